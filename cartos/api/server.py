"""Running the API in the cart process: uvicorn on a background thread.

The runtime's main thread belongs to the sensor loop, so the HTTP server
runs beside it: :class:`ApiServer` binds its socket itself (so ``port=0``
gives a free port that is known before the first request), starts uvicorn's
``Server`` on a daemon thread and returns once it accepts connections.
:meth:`ApiServer.stop` first ends the open event streams, which would
otherwise hold uvicorn's graceful shutdown open, then asks uvicorn to exit.

The default host is ``127.0.0.1``: the kiosk browser runs on the cart, and
nothing else on the store network should be able to answer a shopper's
prompt. Binding elsewhere is a deliberate configuration choice.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Final, Self

import uvicorn

from cartos.api.app import create_app, streams_of
from cartos.api.errors import ApiServerError
from cartos.api.sse import DEFAULT_HEARTBEAT_S
from cartos.api.view import CartView
from cartos.telemetry.metrics import Metrics

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8420
"""The kiosk page's fixed port on the cart; tests use ``port=0`` for a free one."""


class ApiServer:
    """The local API for ``view`` on ``host:port``; ``start()``/``stop()`` or ``with``."""

    def __init__(
        self,
        view: CartView,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        metrics: Metrics | None = None,
        heartbeat_s: float = DEFAULT_HEARTBEAT_S,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.app = create_app(view, metrics=metrics, heartbeat_s=heartbeat_s)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.port = port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8420``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 10.0) -> None:
        """Bind, start serving on a background thread, return once it accepts connections."""
        if self._thread is not None:
            raise ApiServerError("the API server was already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self._requested_port))
        except OSError as exc:
            sock.close()
            raise ApiServerError(
                f"cannot bind the API to {self.host}:{self._requested_port}: {exc}"
            ) from exc
        self._socket = sock
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        self._server = server
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="cartos-api", daemon=True
        )
        self._thread = thread
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive():
                self._release_socket()
                raise ApiServerError("the API server stopped while starting (see the log)")
            if time.monotonic() > deadline:
                self.stop()
                raise ApiServerError(f"the API server did not start within {timeout} s")
            time.sleep(0.01)

    def stop(self, timeout: float = 5.0) -> None:
        """End open event streams, shut uvicorn down and wait for its thread; idempotent."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        streams_of(self.app).close_all()
        server.should_exit = True
        thread.join(timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout)
        self._release_socket()
        if thread.is_alive():
            raise ApiServerError(f"the API server did not stop within {2 * timeout} s")

    def _release_socket(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
