"""Serving the API with uvicorn inside the service's own event loop.

The socket is bound in a start hook, so a taken port fails the start with a
clear error (uvicorn would ``sys.exit`` from inside a task) and the bound
port is known before the first request. Serving runs as a background task
of the :class:`~shared.service.ServiceRuntime`, after the broker started,
so the API never answers before it can publish. uvicorn's own signal
handling is not used: the runtime's handler stops everything in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import uvicorn
from fastapi import FastAPI

__all__ = ["ApiServer"]


class ApiServer:
    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        self._config = uvicorn.Config(app, host=host, port=port, lifespan="off",
                                      log_config=None, access_log=False,
                                      timeout_graceful_shutdown=5)
        self._server = uvicorn.Server(self._config)
        self._socket: socket.socket | None = None
        self._host, self._requested_port = host, port

    @property
    def port(self) -> int:
        if self._socket is None:
            raise RuntimeError("the API server is not bound")
        port: int = self._socket.getsockname()[1]
        return port

    async def bind(self) -> None:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self._host, self._requested_port))
        except OSError as exc:
            sock.close()
            raise OSError(f"cannot listen on {self._host}:{self._requested_port} for the "
                          f"control-plane API: {exc.strerror}") from exc
        sock.listen(128)
        sock.setblocking(False)
        self._socket = sock

    async def serve(self) -> None:
        """Serve until cancelled, then close connections gracefully."""
        if self._socket is None:
            await self.bind()
        assert self._socket is not None
        if not self._config.loaded:
            self._config.load()
        self._server.lifespan = self._config.lifespan_class(self._config)
        sockets = [self._socket]
        await self._server.startup(sockets=sockets)
        try:
            await self._server.main_loop()
        finally:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.shield(self._server.shutdown(sockets=sockets))

    async def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
