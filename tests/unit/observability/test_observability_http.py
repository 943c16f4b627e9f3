from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from shared.observability.http import MAX_HEAD_BYTES, HealthServer
from shared.observability.metrics import ServiceMetrics

pytestmark = pytest.mark.unit

TOPIC = "mindstream.tools.calls.v1"


class Switch:
    """A readiness check whose answer the test sets."""

    def __init__(self, ok: bool) -> None:
        self.ok = ok

    async def __call__(self) -> bool:
        return self.ok


async def broken_check() -> bool:
    raise ConnectionError("mongo down")


async def hanging_check() -> bool:
    await asyncio.Event().wait()
    return True


@pytest.fixture
async def metrics() -> ServiceMetrics:
    metrics = ServiceMetrics("tools", topics=[TOPIC])
    metrics.consumed(TOPIC)
    return metrics


@pytest.fixture
async def kafka() -> Switch:
    return Switch(ok=True)


@pytest.fixture
async def mongo() -> Switch:
    return Switch(ok=True)


@pytest.fixture
async def server(
    metrics: ServiceMetrics, kafka: Switch, mongo: Switch
) -> AsyncIterator[HealthServer]:
    async with HealthServer(
        "127.0.0.1", 0, metrics.registry, {"kafka": kafka, "mongo": mongo}, idle_timeout=5.0
    ) as server:
        yield server


@pytest.fixture
async def client(server: HealthServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        yield client


async def raw(server: HealthServer, request: bytes) -> bytes:
    """Send ``request`` on a fresh connection; everything the server sends until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(request)
        await writer.drain()
        return await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status, *lines = head.decode().rstrip("\r\n").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    body = await reader.readexactly(int(headers["content-length"]))
    return status.encode(), headers, body


async def test_metrics_endpoint_exposes_declared_names(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert (
        'mindstream_messages_consumed_total{service="tools",topic="mindstream.tools.calls.v1"} 1.0'
        in response.text
    )
    assert "# TYPE mindstream_handler_duration_seconds histogram" in response.text


async def test_metrics_endpoint_speaks_openmetrics_when_asked(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")


async def test_healthz_is_ok_even_when_dependencies_are_not(
    client: httpx.AsyncClient, kafka: Switch
) -> None:
    kafka.ok = False
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readiness_flips_with_its_checks(
    client: httpx.AsyncClient, kafka: Switch, mongo: Switch
) -> None:
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"kafka": "ok", "mongo": "ok"}}

    mongo.ok = False
    not_ready = await client.get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.json() == {
        "status": "not_ready",
        "failing": ["mongo"],
        "checks": {"kafka": "ok", "mongo": "failing"},
    }

    kafka.ok = False
    assert (await client.get("/readyz")).json()["failing"] == ["kafka", "mongo"]

    kafka.ok = mongo.ok = True
    assert (await client.get("/readyz?verbose=1")).status_code == 200


async def test_a_raising_or_hanging_check_counts_as_failing(metrics: ServiceMetrics) -> None:
    checks = {"mongo": broken_check, "kafka": hanging_check}
    async with (
        HealthServer("127.0.0.1", 0, metrics.registry, checks, check_timeout=0.05) as server,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client,
    ):
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["kafka", "mongo"]
    assert "mongo down" not in response.text


async def test_checks_added_later_are_used(server: HealthServer, client: httpx.AsyncClient) -> None:
    server.add_check("model", Switch(ok=False))
    response = await client.get("/readyz")
    assert response.json()["failing"] == ["model"]


async def test_no_checks_means_ready(metrics: ServiceMetrics) -> None:
    async with (
        HealthServer("127.0.0.1", 0, metrics.registry) as server,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client,
    ):
        assert (await client.get("/readyz")).status_code == 200


async def test_unknown_path_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/admin")
    assert response.status_code == 404
    assert response.json() == {"error": "not found"}


async def test_other_methods_are_405(client: httpx.AsyncClient) -> None:
    response = await client.post("/readyz", content=b"{}")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


async def test_head_sends_headers_without_body(server: HealthServer) -> None:
    reply = await raw(server, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"Content-Length: 16" in head
    assert body == b""


async def test_keep_alive_serves_several_requests_on_one_connection(server: HealthServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        for path in (b"/healthz", b"/readyz", b"/nope"):
            writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, _ = await read_response(reader)
            assert headers["connection"] == "keep-alive"
            assert status.split()[1] in (b"200", b"404")
        writer.write(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
        _, headers, _ = await read_response(reader)
        assert headers["connection"] == "close"
        assert await reader.read() == b""
    finally:
        writer.close()
        await writer.wait_closed()


async def test_http_1_0_closes_after_one_response(server: HealthServer) -> None:
    reply = await raw(server, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 OK")
    assert b"Connection: close" in reply


async def test_connection_closes_after_the_request_limit(metrics: ServiceMetrics) -> None:
    async with HealthServer(
        "127.0.0.1", 0, metrics.registry, max_requests_per_connection=2
    ) as server:
        reply = await raw(server, b"GET /healthz HTTP/1.1\r\n\r\n" * 3)
    assert reply.count(b"HTTP/1.1 200 OK") == 2
    assert reply.count(b"Connection: close") == 1


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"garbage\r\n\r\n", b"400"),
        (b"GET nohost HTTP/1.1\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", b"400"),
        (b"GET /healthz HTTP/2.0\r\n\r\n", b"505"),
        (b"GET /healthz HTTP/1.1\r\n\xff\xfe: x\r\n\r\n", b"400"),
        (b"GET /healthz HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", b"413"),
        (b"GET /healthz HTTP/1.1\r\nX: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n", b"431"),
    ],
)
async def test_malformed_requests_get_an_error_and_a_closed_connection(
    server: HealthServer, request_bytes: bytes, status: bytes
) -> None:
    reply = await raw(server, request_bytes)
    assert reply.split(b" ")[1] == status
    assert b"Connection: close" in reply


async def test_truncated_request_is_answered_once_the_client_stops_sending(
    server: HealthServer,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x")
    writer.write_eof()
    reply = await reader.read()
    writer.close()
    await writer.wait_closed()
    assert reply.startswith(b"HTTP/1.1 400")


async def test_idle_connections_are_closed(metrics: ServiceMetrics) -> None:
    async with HealthServer("127.0.0.1", 0, metrics.registry, idle_timeout=0.05) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()


async def test_stop_drops_open_connections_and_is_idempotent(metrics: ServiceMetrics) -> None:
    server = HealthServer("127.0.0.1", 0, metrics.registry)
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.port
    await server.start()
    port = server.port
    assert port > 0
    with pytest.raises(RuntimeError, match="already started"):
        await server.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\n\r\n")
    await read_response(reader)
    await server.stop()
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()
    await server.stop()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
