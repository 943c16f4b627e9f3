"""The telemetry service: Prometheus metrics, broker-measured lag and dead letters, and
per-agent per-minute rollups, from runs.events, tools.results and runs.completed."""
