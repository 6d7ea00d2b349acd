"""A real notification socket standing in for systemd's, and what it received."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


class NotifyListener:
    """An AF_UNIX datagram socket bound where ``$NOTIFY_SOCKET`` points, as systemd binds it."""

    def __init__(self, sock: socket.socket, env_value: str) -> None:
        self.sock = sock
        self.env_value = env_value
        self.received: list[tuple[float, list[str]]] = []

    def drain(self, timeout: float = 0.0) -> list[list[str]]:
        """Datagrams that arrive within ``timeout`` (all that are queued when 0)."""
        got: list[list[str]] = []
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            self.sock.settimeout(max(remaining, 0.0) if timeout else 0.0)
            try:
                data = self.sock.recv(4096)
            except (BlockingIOError, TimeoutError):
                return got
            lines = data.decode("utf-8").split("\n")
            self.received.append((time.monotonic(), lines))
            got.append(lines)

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float) -> list[str]:
        """The first datagram satisfying ``predicate``; fails the test after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.drain(min(0.05, max(deadline - time.monotonic(), 0.001))):
                if predicate(message):
                    return message
        pytest.fail(f"no matching notification within {timeout} s; got {self.received}")


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifyListener]:
    """A notification socket on the file system (what systemd uses for services)."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    try:
        yield NotifyListener(sock, str(path))
    finally:
        sock.close()


@pytest.fixture
def abstract_notify_socket() -> Iterator[NotifyListener]:
    """A notification socket in the abstract namespace (``@name`` in ``$NOTIFY_SOCKET``)."""
    name = f"cartos-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    try:
        yield NotifyListener(sock, "@" + name)
    finally:
        sock.close()
