"""The clock tool tells the time in a zone, from an injectable clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.tools.builtins.clock import make_current_time
from services.tools.errors import ToolFailedError
from services.tools.registry import spec_of

pytestmark = pytest.mark.unit

SUMMER = datetime(2030, 7, 1, 10, 30, tzinfo=UTC)
WINTER = datetime(2030, 1, 15, 10, 30, tzinfo=UTC)


def test_time_in_a_zone_with_daylight_saving() -> None:
    summer = make_current_time(lambda: SUMMER)(timezone="Europe/Paris")
    assert summer["iso"] == "2030-07-01T12:30:00+02:00"
    assert summer["utc_offset"] == "+0200"
    assert summer["weekday"] == "Monday"
    assert summer["dst"] is True
    winter = make_current_time(lambda: WINTER)(timezone="Europe/Paris")
    assert winter["time"] == "11:30:00"
    assert winter["utc_offset_seconds"] == 3600
    assert winter["dst"] is False


def test_default_zone_is_utc() -> None:
    assert make_current_time(lambda: SUMMER)()["iso"] == "2030-07-01T10:30:00+00:00"


@pytest.mark.parametrize(
    "zone", ["Mars/Olympus", "../../etc/passwd", "/etc/localtime", "", "Europe"]
)
def test_unknown_zones_are_refused_by_name(zone: str) -> None:
    with pytest.raises(ToolFailedError, match="unknown time zone"):
        make_current_time(lambda: SUMMER)(timezone=zone)


def test_spec() -> None:
    spec = spec_of(make_current_time())
    assert spec.name == "current_time"
    assert spec.parameters_schema()["properties"]["timezone"]["default"] == "UTC"
