"""Where a bench phase keeps its data: a database per service, or one for all."""

from __future__ import annotations

import pytest

from mindstream.bench.stack import Layout
from mindstream.dev import services

pytestmark = pytest.mark.unit


def test_each_service_gets_its_own_database_and_all_are_dropped() -> None:
    layout = Layout.fresh("120000", "a", 12, db_per_service=True)
    names = {s: layout.database_of(s) for s in services.SERVICES}
    assert len(set(names.values())) == len(names)
    assert names["control-plane"] == f"{layout.database}_controlplane"
    assert all(n.startswith(layout.database) and len(n) <= 63 for n in names.values())
    assert set(names.values()) | {layout.database} == set(layout.databases())


def test_shared_database_is_one_for_all() -> None:
    layout = Layout.fresh("120000", "a", 12)
    assert {layout.database_of(s) for s in services.SERVICES} == {layout.database}
    assert layout.databases() == [layout.database]
