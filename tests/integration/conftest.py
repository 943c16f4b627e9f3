"""Fixtures of the integration tests' harnesses (the shared ones are in ``tests/conftest.py``)."""

from tests.integration.memory_harness import make_harness

__all__ = ["make_harness"]
