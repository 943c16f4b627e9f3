"""``mindstream bench`` arguments: bad input is one clear error, never a traceback."""

from __future__ import annotations

import pytest

from mindstream.cli import bench_cmd
from mindstream.cli.errors import CliError
from mindstream.cli.main import build_parser

pytestmark = pytest.mark.unit


def test_rates_are_parsed_and_sorted() -> None:
    assert bench_cmd._rates("50, 10,200") == (10.0, 50.0, 200.0)
    assert bench_cmd._rates(None) is None


@pytest.mark.parametrize("text", ["ten", "10,,x", "0,5", "-1", ","])
def test_bad_rates_are_refused(text: str) -> None:
    with pytest.raises(CliError, match="--rates"):
        bench_cmd._rates(text)


def test_bench_is_a_registered_command() -> None:
    args = build_parser().parse_args(["bench", "--quick", "--no-scaling", "--bound-ms", "100"])
    assert args.handler is bench_cmd._bench
    assert (args.quick, args.no_scaling, args.bound_ms) == (True, True, 100.0)


def test_shared_database_is_a_flag_and_per_service_the_default() -> None:
    from mindstream.bench import FULL, QUICK, SMOKE

    assert build_parser().parse_args(["bench", "--shared-database"]).shared_database
    assert not build_parser().parse_args(["bench"]).shared_database
    assert FULL.db_per_service and QUICK.db_per_service and SMOKE.db_per_service
