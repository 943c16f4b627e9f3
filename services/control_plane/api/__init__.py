"""The management API (FastAPI): small routers over one :class:`ApiContext`."""

from services.control_plane.api.app import create_api
from services.control_plane.api.context import ApiContext

__all__ = ["ApiContext", "create_api"]
