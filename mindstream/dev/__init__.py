"""Local infrastructure without Docker: a real Kafka broker and a MongoDB-wire server.

Both run as plain processes started and stopped by this package, with their
data, logs and pid files under one project-local cache folder, so tests and
the demo run on a machine that has Java, Maven and Go but no container engine.
"""

from mindstream.dev.errors import DevError
from mindstream.dev.settings import DevSettings
from mindstream.dev.stack import Endpoints, down, status, up

__all__ = ["DevError", "DevSettings", "Endpoints", "down", "status", "up"]
