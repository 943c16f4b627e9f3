"""Ports handed to services are bindable and never from the ephemeral range, where
any outgoing client connection could take them before the service binds."""

from __future__ import annotations

import socket

import pytest

from mindstream.dev.process import _ephemeral_range, free_port

pytestmark = pytest.mark.unit


def test_free_ports_are_below_the_ephemeral_range_and_bindable() -> None:
    low, _high = _ephemeral_range()
    for _ in range(20):
        port = free_port()
        assert port < low
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
