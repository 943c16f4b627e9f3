"""http_fetch fetches only allowlisted public hosts, pinned, bounded and timed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from services.tools.builtins.http_fetch import TOOLS, make_http_fetch
from services.tools.errors import ToolFailedError, TransientToolError
from services.tools.registry import spec_of

pytestmark = pytest.mark.unit

BIG = b"a" * 300_000


@dataclass
class LocalServer:
    port: int
    requests: list[dict[str, str]] = field(default_factory=list)
    hang: asyncio.Event = field(default_factory=asyncio.Event)


def _response(status: str, body: bytes, extra: str = "") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n"
    )
    return head.encode() + body


@pytest.fixture
async def server() -> AsyncIterator[LocalServer]:
    state = LocalServer(port=0)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        line, *header_lines = head.strip().split("\r\n")
        path = line.split()[1]
        headers = {k.lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
        state.requests.append({"path": path, **headers})
        if path == "/hang":
            await state.hang.wait()
        elif path == "/big":
            writer.write(_response("200 OK", BIG))
        elif path == "/redirect":
            writer.write(_response("302 Found", b"", "Location: http://elsewhere.test/\r\n"))
        elif path == "/busy":
            writer.write(_response("503 Service Unavailable", b"later"))
        else:
            writer.write(_response("200 OK", "héllo".encode()))
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.port = srv.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        state.hang.set()
        srv.close()
        await srv.wait_closed()


def resolver_to(*addresses: str) -> Any:
    async def resolve(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolve


async def must_not_resolve(host: str, port: int) -> list[str]:
    raise AssertionError(f"resolved {host} although it should have been refused first")


async def test_fetches_an_allowlisted_private_host(server: LocalServer) -> None:
    fetch = make_http_fetch(allowed_hosts=["127.0.0.1"], private_hosts=["127.0.0.1"])
    result = await fetch(url=f"http://127.0.0.1:{server.port}/hello")
    assert result.status == 200
    assert result.content_type == "text/plain; charset=utf-8"
    assert result.text == "héllo"
    assert result.truncated is False


async def test_connection_is_pinned_to_the_checked_address(server: LocalServer) -> None:
    fetch = make_http_fetch(
        allowed_hosts=["api.internal.test"],
        private_hosts=["api.internal.test"],
        resolver=resolver_to("127.0.0.1"),
    )
    result = await fetch(url=f"http://api.internal.test:{server.port}/x")
    assert result.status == 200
    assert server.requests[-1]["host"] == f"api.internal.test:{server.port}"
    assert result.url == f"http://api.internal.test:{server.port}/x"


async def test_body_is_cut_at_max_bytes(server: LocalServer) -> None:
    fetch = make_http_fetch(
        allowed_hosts=["127.0.0.1"], private_hosts=["127.0.0.1"], max_bytes=1000
    )
    result = await fetch(url=f"http://127.0.0.1:{server.port}/big")
    assert result.truncated is True
    assert result.bytes_read == 1000
    assert result.text == "a" * 1000


async def test_redirects_are_reported_not_followed(server: LocalServer) -> None:
    fetch = make_http_fetch(allowed_hosts=["127.0.0.1"], private_hosts=["127.0.0.1"])
    result = await fetch(url=f"http://127.0.0.1:{server.port}/redirect")
    assert result.status == 302
    assert result.location == "http://elsewhere.test/"
    assert len(server.requests) == 1


async def test_overload_and_timeout_are_transient(server: LocalServer) -> None:
    fetch = make_http_fetch(
        allowed_hosts=["127.0.0.1"], private_hosts=["127.0.0.1"], timeout_s=0.05
    )
    with pytest.raises(TransientToolError, match="503"):
        await fetch(url=f"http://127.0.0.1:{server.port}/busy")
    with pytest.raises(TransientToolError, match="timed out"):
        await fetch(url=f"http://127.0.0.1:{server.port}/hang")


async def test_loopback_is_refused_unless_explicitly_private(server: LocalServer) -> None:
    fetch = make_http_fetch(allowed_hosts=["127.0.0.1"])
    with pytest.raises(ToolFailedError, match="non-public address"):
        await fetch(url=f"http://127.0.0.1:{server.port}/hello")
    assert server.requests == []


async def test_non_allowlisted_host_is_refused_before_resolving() -> None:
    fetch = make_http_fetch(allowed_hosts=["example.com"], resolver=must_not_resolve)
    with pytest.raises(ToolFailedError, match="not on the allowlist"):
        await fetch(url="https://evil.example.net/")
    with pytest.raises(ToolFailedError, match="not on the allowlist"):
        await fetch(url="https://example.com.evil.net/")


async def test_wildcard_allowlist_matches_subdomains_only() -> None:
    fetch = make_http_fetch(allowed_hosts=["*.example.com"], resolver=resolver_to("10.0.0.1"))
    with pytest.raises(ToolFailedError, match="non-public"):  # allowed, then refused as private
        await fetch(url="https://api.example.com/")
    with pytest.raises(ToolFailedError, match="not on the allowlist"):
        await fetch(url="https://badexample.com/")


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",  # cloud metadata
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",  # noqa: S104 - an address to refuse, not one we bind
        "224.0.0.1",
        "::1",
        "fe80::1%eth0",
        "fd00:ec2::254",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
    ],
)
async def test_internal_addresses_are_refused(address: str) -> None:
    fetch = make_http_fetch(allowed_hosts=["site.test"], resolver=resolver_to("8.8.8.8", address))
    with pytest.raises(ToolFailedError, match="non-public address"):
        await fetch(url="http://site.test/")


async def test_metadata_ip_literal_is_refused_even_if_allowlisted() -> None:
    fetch = make_http_fetch(allowed_hosts=["169.254.169.254"])
    with pytest.raises(ToolFailedError, match="non-public address"):
        await fetch(url="http://169.254.169.254/latest/meta-data/")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "only http and https"),
        ("ftp://site.test/x", "only http and https"),
        ("gopher://site.test/", "only http and https"),
        ("http://user:pw@site.test/", "credentials"),
        ("http:///nohost", "no host"),
        ("http://[::1/", "not a valid URL"),
    ],
)
async def test_bad_urls_are_refused(url: str, message: str) -> None:
    fetch = make_http_fetch(allowed_hosts=["site.test"], resolver=must_not_resolve)
    with pytest.raises(ToolFailedError, match=message):
        await fetch(url=url)


async def test_unresolvable_host() -> None:
    async def fail(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    fetch = make_http_fetch(allowed_hosts=["site.test"], resolver=fail)
    with pytest.raises(ToolFailedError, match="cannot resolve"):
        await fetch(url="http://site.test/")


def test_tools_factory_reads_config_and_defaults_to_refusing_everything() -> None:
    [configured] = TOOLS({"allowed_hosts": ["a.test"], "max_bytes": 10, "timeout_s": 2})
    spec = spec_of(configured)
    assert spec.name == "http_fetch"
    assert spec.timeout_s == 3.0
    assert spec.retry.max_attempts == 3
    with pytest.raises(ValueError, match="lists of host names"):
        TOOLS({"allowed_hosts": "a.test"})


async def test_default_configuration_allows_no_host() -> None:
    [fetch] = TOOLS({})
    with pytest.raises(ToolFailedError, match="not on the allowlist"):
        await fetch(url="https://example.com/")
