"""The probe and scrape endpoint every service opens: ``/metrics``, ``/healthz``, ``/readyz``.

A few dozen lines of HTTP/1.1 on ``asyncio.start_server`` instead of a web
framework: the only clients are Kubernetes probes and a Prometheus scraper,
and a service that is not an HTTP service should not carry one.

- ``/healthz`` is liveness: it is answered by the service's own event loop,
  so a 200 proves the loop is turning. It checks nothing else, because a
  broker outage must not make Kubernetes restart every replica.
- ``/readyz`` is readiness: 200 only when every registered check (broker
  connected, MongoDB ping...) returns true within ``check_timeout``; else
  503 with a JSON body naming the failing checks.
- ``/metrics`` is the Prometheus exposition of the service's registry.

Requests are bounded (head size, idle time, requests per connection); only
GET and HEAD are served, and anything malformed gets a 4xx and a closed
connection, never an exception in the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

__all__ = ["HealthServer", "ReadinessCheck"]

_log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[bool]]

MAX_HEAD_BYTES = 8192
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}
_JSON = "application/json"


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    version: str
    headers: Mapping[str, str]
    has_body: bool

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return connection == "keep-alive"
        return connection != "close"


@dataclass(frozen=True)
class _Response:
    status: int
    body: bytes
    content_type: str = _JSON


class _BadRequest(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class HealthServer:
    """Serves the three endpoints until :meth:`stop`; also an async context manager.

    ``checks`` maps a name (it appears in the 503 body) to an async callable
    returning whether that dependency is usable. A check that raises or
    times out counts as failing; its exception is logged, not returned.
    """

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        checks: Mapping[str, ReadinessCheck] | None = None,
        *,
        check_timeout: float = 2.0,
        idle_timeout: float = 15.0,
        max_requests_per_connection: int = 100,
    ) -> None:
        self._host = host
        self._requested_port = port
        self._registry = registry
        self._checks = dict(checks or {})
        self._check_timeout = check_timeout
        self._idle_timeout = idle_timeout
        self._max_requests = max_requests_per_connection
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The bound port (the kernel's choice when constructed with port 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("HealthServer is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def add_check(self, name: str, check: ReadinessCheck) -> None:
        """Register a readiness check after construction (e.g. once the broker exists)."""
        self._checks[name] = check

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("HealthServer is already started")
        self._server = await asyncio.start_server(
            self._on_connection, self._host, self._requested_port, limit=MAX_HEAD_BYTES
        )

    async def stop(self) -> None:
        """Stop listening and drop open connections; safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await server.wait_closed()

    async def __aenter__(self) -> HealthServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- connections -----------------------------------------------------------

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:
            _log.exception("health endpoint connection failed")
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for served in range(1, self._max_requests + 1):
            try:
                async with asyncio.timeout(self._idle_timeout):
                    request = await _read_request(reader)
            except TimeoutError:
                return
            except _BadRequest as bad:
                await _write(writer, _error(bad.status), head_only=False)
                return
            if request is None:
                return
            response = await self._route(request)
            # A body is never read, so the connection cannot be reused after one.
            close = request.has_body or not request.keep_alive or served == self._max_requests
            await _write(writer, response, head_only=request.method == "HEAD", close=close)
            if close:
                return

    async def _route(self, request: _Request) -> _Response:
        path = request.path.split("?", 1)[0]
        if path not in ("/metrics", "/healthz", "/readyz"):
            return _error(404)
        if request.method not in ("GET", "HEAD"):
            return _error(405)
        if request.has_body:
            return _error(413)
        if path == "/healthz":
            return _json(200, {"status": "ok"})
        if path == "/readyz":
            return await self._readiness()
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return _Response(200, encoder(self._registry), content_type)

    async def _readiness(self) -> _Response:
        names = sorted(self._checks)
        results = await asyncio.gather(*(self._run_check(n) for n in names))
        checks = {name: "ok" if ok else "failing" for name, ok in zip(names, results, strict=True)}
        failing = [name for name, ok in zip(names, results, strict=True) if not ok]
        if failing:
            return _json(503, {"status": "not_ready", "failing": failing, "checks": checks})
        return _json(200, {"status": "ready", "checks": checks})

    async def _run_check(self, name: str) -> bool:
        try:
            async with asyncio.timeout(self._check_timeout):
                return bool(await self._checks[name]())
        except TimeoutError:
            _log.warning("readiness check timed out", extra={"check": name})
        except Exception:
            _log.warning("readiness check raised", extra={"check": name}, exc_info=True)
        return False


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    """The next request head, or None when the client closed between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as partial:
        if not partial.partial.strip():
            return None
        raise _BadRequest(400) from None
    except asyncio.LimitOverrunError:
        raise _BadRequest(431) from None
    if len(head) > MAX_HEAD_BYTES:
        raise _BadRequest(431)
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        raise _BadRequest(400) from None
    request_line, *header_lines = text.rstrip("\r\n").split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[1].startswith("/"):
        raise _BadRequest(400)
    method, path, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise _BadRequest(505)
    headers: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise _BadRequest(400)
        headers[name.lower()] = value.strip()
    has_body = "transfer-encoding" in headers or headers.get("content-length", "0") != "0"
    return _Request(method, path, version, headers, has_body)


def _json(status: int, body: Mapping[str, object]) -> _Response:
    return _Response(status, json.dumps(body, sort_keys=True).encode(), _JSON)


def _error(status: int) -> _Response:
    return _json(status, {"error": _REASONS[status].lower()})


async def _write(
    writer: asyncio.StreamWriter, response: _Response, *, head_only: bool, close: bool = True
) -> None:
    headers = [
        f"HTTP/1.1 {response.status} {_REASONS[response.status]}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        "Cache-Control: no-store",
        f"Connection: {'close' if close else 'keep-alive'}",
    ]
    if response.status == 405:
        headers.append("Allow: GET, HEAD")
    writer.write(("\r\n".join(headers) + "\r\n\r\n").encode("ascii"))
    if not head_only:
        writer.write(response.body)
    await writer.drain()
