"""HTTP GET for a model, fenced against server-side request forgery.

A model chooses the URL, so the URL is hostile until proven otherwise:

- only ``http`` and ``https``; no credentials in the URL;
- the host must be on the configured allowlist (exact names, or
  ``*.example.com`` for subdomains);
- every address the host resolves to must be public: loopback, private,
  link-local (including cloud metadata at 169.254.169.254), multicast,
  reserved and unspecified addresses are refused unless the host is also in
  ``private_hosts`` (meant for tests and deliberate internal use);
- the connection goes to the address that was checked (the URL is rewritten
  to the IP, with ``Host`` and TLS SNI set to the name), so a DNS answer that
  changes between check and connect cannot redirect it;
- redirects are not followed (the model sees the status and ``Location``);
- the body is streamed and cut at ``max_bytes``; the whole call has a timeout.

Configuration comes from the service settings through ``TOOLS(config)``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Annotated, Any

import httpx
from pydantic import BaseModel, Field

from services.tools.errors import ToolFailedError, TransientToolError
from services.tools.registry import tool
from shared.resilience import RetryPolicy

__all__ = ["TOOLS", "FetchResult", "HostPolicy", "make_http_fetch"]

Resolver = Callable[[str, int], Awaitable[list[str]]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class FetchResult(BaseModel):
    url: str
    status: int
    content_type: str | None
    text: str
    truncated: bool
    bytes_read: int
    location: str | None = None


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class HostPolicy:
    """Which hosts may be fetched, and which of them may be private addresses."""

    def __init__(self, allowed_hosts: Collection[str], private_hosts: Collection[str] = ()) -> None:
        self.allowed = {h.lower().rstrip(".") for h in allowed_hosts}
        self.private = {h.lower().rstrip(".") for h in private_hosts}

    @staticmethod
    def _matches(host: str, patterns: set[str]) -> bool:
        if host in patterns:
            return True
        return any(p.startswith("*.") and host.endswith(p[1:]) for p in patterns)

    def check_host(self, host: str) -> None:
        if not self._matches(host, self.allowed):
            raise ToolFailedError(f"host {host!r} is not on the allowlist of http_fetch")

    def check_addresses(self, host: str, addresses: list[str]) -> None:
        if not addresses:
            raise ToolFailedError(f"host {host!r} did not resolve to any address")
        if self._matches(host, self.private):
            return
        for raw in addresses:
            addr = ipaddress.ip_address(raw.split("%", 1)[0])
            if _is_internal(addr):
                raise ToolFailedError(
                    f"host {host!r} resolves to a non-public address ({addr}); refused"
                )


def _is_internal(addr: IPAddress) -> bool:
    if isinstance(addr, ipaddress.IPv6Address):
        mapped = addr.ipv4_mapped or addr.sixtofour
        if mapped is not None and _is_internal(mapped):
            return True
    return (
        addr.is_private
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_multicast
        or addr.is_reserved
        or addr.is_unspecified
        or not addr.is_global
    )


def make_http_fetch(
    *,
    allowed_hosts: Collection[str],
    private_hosts: Collection[str] = (),
    max_bytes: int = 200_000,
    timeout_s: float = 10.0,
    user_agent: str = "mindstream-http-fetch/1",
    resolver: Resolver = system_resolver,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Any:
    """Build the ``http_fetch`` tool for one configuration."""
    policy = HostPolicy(allowed_hosts, private_hosts)
    if max_bytes < 1:
        raise ValueError("max_bytes must be positive")

    @tool(
        name="http_fetch",
        timeout_s=timeout_s + 1.0,
        max_concurrency=16,
        retry=RetryPolicy(max_attempts=3, base_delay=0.2, max_delay=2.0),
    )
    async def http_fetch(
        url: Annotated[str, Field(description="http(s) URL to GET", max_length=2048)],
    ) -> FetchResult:
        """Fetch a web page or API response by HTTP GET and return its text (truncated)."""
        target, host, port = _parse(url)
        policy.check_host(host)
        try:
            addresses = await resolver(host, port)
        except OSError as exc:
            raise ToolFailedError(f"cannot resolve host {host!r}: {exc}") from None
        policy.check_addresses(host, addresses)
        return await _get(
            target,
            host,
            address=addresses[0],
            max_bytes=max_bytes,
            timeout_s=timeout_s,
            user_agent=user_agent,
            transport=transport,
        )

    return http_fetch


def _parse(url: str) -> tuple[httpx.URL, str, int]:
    try:
        target = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise ToolFailedError(f"not a valid URL: {exc}") from None
    if target.scheme not in ("http", "https"):
        raise ToolFailedError("only http and https URLs can be fetched")
    if not target.host:
        raise ToolFailedError("the URL has no host")
    if target.userinfo:
        raise ToolFailedError("credentials in URLs are not allowed")
    port = target.port or (443 if target.scheme == "https" else 80)
    return target, target.host.lower().rstrip("."), port


async def _get(
    target: httpx.URL,
    host: str,
    *,
    address: str,
    max_bytes: int,
    timeout_s: float,
    user_agent: str,
    transport: httpx.AsyncBaseTransport | None,
) -> FetchResult:
    pinned = target.copy_with(host=address)
    host_header = host if target.port is None else f"{host}:{target.port}"
    headers = {"Host": host_header, "User-Agent": user_agent, "Accept-Encoding": "identity"}
    extensions: dict[str, Any] = {"sni_hostname": host} if target.scheme == "https" else {}
    try:
        async with (
            httpx.AsyncClient(
                timeout=timeout_s, follow_redirects=False, transport=transport, trust_env=False
            ) as client,
            client.stream("GET", pinned, headers=headers, extensions=extensions) as response,
        ):
            body = bytearray()
            truncated = False
            async for chunk in response.aiter_raw():
                room = max_bytes - len(body)
                if len(chunk) > room:
                    body += chunk[:room]
                    truncated = True
                    break
                body += chunk
            status = response.status_code
            content_type = response.headers.get("content-type")
            location = response.headers.get("location")
            encoding = response.charset_encoding or "utf-8"
    except httpx.TimeoutException:
        raise TransientToolError(f"timed out fetching {target}") from None
    except httpx.TransportError as exc:
        raise TransientToolError(f"could not fetch {target}: {type(exc).__name__}") from None
    if status in (429, 502, 503, 504):
        raise TransientToolError(f"{target} answered {status}; try again later")
    try:
        text = bytes(body).decode(encoding, errors="replace")
    except LookupError:
        text = bytes(body).decode("utf-8", errors="replace")
    return FetchResult(
        url=str(target),
        status=status,
        content_type=content_type,
        text=text,
        truncated=truncated,
        bytes_read=len(body),
        location=location,
    )


def TOOLS(config: Mapping[str, Any]) -> list[Any]:
    """``config`` keys: allowed_hosts, private_hosts, max_bytes, timeout_s."""
    allowed = config.get("allowed_hosts", ())
    private = config.get("private_hosts", ())
    if isinstance(allowed, str) or isinstance(private, str):
        raise ValueError("allowed_hosts and private_hosts must be lists of host names")
    return [
        make_http_fetch(
            allowed_hosts=list(allowed),
            private_hosts=list(private),
            max_bytes=int(config.get("max_bytes", 200_000)),
            timeout_s=float(config.get("timeout_s", 10.0)),
        )
    ]
