"""The current time in an IANA time zone: models do not know what time it is."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field

from services.tools.errors import ToolFailedError
from services.tools.registry import tool

__all__ = ["TOOLS", "make_current_time", "time_in_zone"]


def time_in_zone(now_utc: datetime, timezone: str) -> dict[str, Any]:
    """Describe ``now_utc`` (aware) in ``timezone``; unknown zones are refused by name."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ToolFailedError(
            f"unknown time zone {timezone!r}; use an IANA name such as 'Europe/Paris' or 'UTC'"
        ) from None
    local = now_utc.astimezone(zone)
    offset = local.utcoffset()
    return {
        "timezone": timezone,
        "iso": local.isoformat(timespec="seconds"),
        "date": local.date().isoformat(),
        "time": local.strftime("%H:%M:%S"),
        "weekday": local.strftime("%A"),
        "utc_offset": local.strftime("%z"),
        "utc_offset_seconds": int(offset.total_seconds()) if offset is not None else 0,
        "dst": bool(local.dst()),
    }


def make_current_time(now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Any:
    """Build the tool around a clock, so tests can fix the time."""

    @tool(name="current_time", timeout_s=2.0)
    def current_time(
        timezone: Annotated[
            str,
            Field(
                description="IANA time zone, e.g. 'Europe/Paris', 'America/New_York'", max_length=64
            ),
        ] = "UTC",
    ) -> dict[str, Any]:
        """Current date and time in a time zone, with its UTC offset and weekday."""
        return time_in_zone(now(), timezone)

    return current_time


TOOLS = [make_current_time()]
