"""Fixtures of the schema tests."""

from __future__ import annotations

import pytest

from schemas.base import Message
from tests.unit.schemas.samples import sample_messages


@pytest.fixture
def messages() -> list[Message]:
    return sample_messages()
