"""Serve the HTTP side with uvicorn in a thread of the node process (the node and its HTTP side share the
ledger, the registry and the metrics in memory)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from dermnode.kernel.errors import ConfigurationError

LOG = logging.getLogger("dermnode.http")


class HttpServer:
    """``start()`` binds and returns once listening; ``stop()`` closes and joins."""

    def __init__(self, app: Starlette, host: str, port: int,
                 what: str = "HTTP side (healthz, readyz, metrics, api, status page)",
                 tls: tuple[Path, Path] | None = None) -> None:
        """``tls``: certificate and private key files; HTTPS instead of HTTP."""
        self._what = what
        # No access log: paths carry Study Instance UIDs, and the log is not the audit trail.
        config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="off",
                                timeout_graceful_shutdown=5,
                                ssl_certfile=str(tls[0]) if tls else None, ssl_keyfile=str(tls[1]) if tls else None)
        access = logging.getLogger("uvicorn.access")
        access.handlers, access.propagate = [], False
        self._server = uvicorn.Server(config)
        self._host = host
        self._thread = threading.Thread(target=self._run, name="dermnode-http", daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self._server.serve())
        except BaseException as e:  # SystemExit from uvicorn when the port is taken
            self._error = e

    @property
    def port(self) -> int:
        servers = getattr(self._server, "servers", [])
        if not servers:
            raise RuntimeError("the HTTP server is not started")
        return int(servers[0].sockets[0].getsockname()[1])

    def start(self, timeout_s: float = 30.0) -> HttpServer:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ConfigurationError(
                    f"the {self._what} could not listen on {self._host}:{self._server.config.port} "
                    f"({self._error!r}): choose another port or stop the program using it")
            time.sleep(0.02)
        LOG.info("%s on %s:%d", self._what, self._host, self.port)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
