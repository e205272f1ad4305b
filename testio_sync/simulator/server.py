"""Serving an ASGI app with uvicorn in a daemon thread, started and stopped in well under a second.

The socket is bound here, before uvicorn starts, so ``port=0`` yields the real
port at once and a bind error surfaces in the caller's thread. uvicorn only
installs signal handlers in the main thread, so in this thread it leaves the
process's signals alone.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


class SimulatorServer:
    """One listening server; a context manager, or call ``start()`` and ``stop()``."""

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._socket = _bind(host, port)
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_level="warning",
            log_config=None,  # leave the host process's logging setup alone
            access_log=False,
            lifespan="off",
            ws="none",
            http="h11",
            loop="asyncio",
            # Requests held by the hang fault must not hold up a stop.
            timeout_graceful_shutdown=0.5,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._run, name=f"testio-simulator:{self.port}", daemon=True
        )

    @property
    def root_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/customer/v2"

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._socket])
        except Exception:
            logger.exception("simulator server on port %s failed", self.port)

    def start(self) -> SimulatorServer:
        """Start serving; returns when the server accepts connections.

        Raises:
            RuntimeError: the server did not come up within 10 seconds.
        """
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        # uvicorn offers no readiness event; its ``started`` flag is polled, bounded.
        while not self._server.started and self._thread.is_alive():
            if time.monotonic() > deadline:
                break
            time.sleep(0.005)
        if not self._server.started:
            self.stop()
            raise RuntimeError(f"the simulator did not start on port {self.port}")
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread; safe to call twice."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(STOP_TIMEOUT_S)
        self._socket.close()

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._server.should_exit

    def __enter__(self) -> SimulatorServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be TCP explicitly: asyncio only sets TCP_NODELAY on sockets that say so, and
    # without it every answer waits ~40 ms for a delayed ACK (headers and body are two writes).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock
