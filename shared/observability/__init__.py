"""Metrics, health endpoints, structured logs and trace context for every service.

Each concern is its own module (``metrics``, ``http``, ``logging``,
``tracing``) so a service imports only what it wires; nothing here reads the
environment except :func:`shared.observability.tracing.configure_tracing`
when the entrypoint asks it to.
"""
