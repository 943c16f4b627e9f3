"""The runtime every service shares: settings, Kafka and MongoDB plumbing,
resilience, observability. Message contracts live in ``schemas``, not here."""
