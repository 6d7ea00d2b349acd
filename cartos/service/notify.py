"""The sd_notify protocol, written out: readiness, status and watchdog messages to systemd.

A ``Type=notify`` service tells systemd how it is doing by sending newline-separated
``KEY=VALUE`` assignments as one datagram to the AF_UNIX socket named in ``$NOTIFY_SOCKET``
(a name starting with ``@`` is in the abstract namespace, i.e. a leading NUL byte), see
sd_notify(3). The protocol is small and stable, so it is implemented here rather than pulling
in a binding to libsystemd that the ARM boards would have to build. Outside systemd (a
developer's shell, the tests without a fake socket) every call is a no-op that returns False,
so the runtime never has to ask whether it runs under systemd.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping

from cartos.service.errors import NotifyError

NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"
WATCHDOG_USEC_ENV = "WATCHDOG_USEC"
WATCHDOG_PID_ENV = "WATCHDOG_PID"

_log = logging.getLogger(__name__)


def socket_address(name: str) -> str:
    """The ``sendto`` address for a ``$NOTIFY_SOCKET`` value (``@x`` -> abstract ``\\0x``)."""
    if name.startswith("@") and len(name) > 1:
        return "\0" + name[1:]
    if name.startswith("/"):
        return name
    raise NotifyError(
        f"{NOTIFY_SOCKET_ENV}={name!r}: expected an absolute socket path or an abstract "
        "name starting with '@'"
    )


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between watchdog pings, or None when systemd does not watch this process.

    Like sd_watchdog_enabled(3): ``$WATCHDOG_USEC`` is the ``WatchdogSec=`` timeout and
    ``$WATCHDOG_PID``, when set, must be this process (a child that inherited the variables
    must not ping on its parent's behalf). The returned interval is half the timeout, as that
    man page recommends, so one late ping does not get the service killed.
    """
    env = os.environ if environ is None else environ
    raw_usec = env.get(WATCHDOG_USEC_ENV)
    if not raw_usec:
        return None
    raw_pid = env.get(WATCHDOG_PID_ENV)
    if raw_pid:
        try:
            pid = int(raw_pid)
        except ValueError as exc:
            raise NotifyError(f"{WATCHDOG_PID_ENV}={raw_pid!r}: not a process id") from exc
        if pid != os.getpid():
            return None
    try:
        usec = int(raw_usec)
    except ValueError as exc:
        raise NotifyError(f"{WATCHDOG_USEC_ENV}={raw_usec!r}: not a number of µs") from exc
    if usec <= 0:
        raise NotifyError(f"{WATCHDOG_USEC_ENV}={raw_usec!r}: must be positive")
    return usec / 2 / 1_000_000


def _one_line(text: str) -> str:
    """Status text on one line: a newline would start a new (forged) assignment."""
    return " ".join(text.splitlines()).strip()


class Notifier:
    """Sends sd_notify assignments to systemd; a disabled notifier silently does nothing.

    Sending never raises: a lost status message must not take the cart down, so a failed send
    is logged and reported as False. The socket is opened lazily and kept for the process.
    """

    def __init__(self, socket_name: str | None) -> None:
        self._address = socket_address(socket_name) if socket_name else None
        self._socket_name = socket_name
        self._sock: socket.socket | None = None
        # The watchdog thread and the main loop share the socket.
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """A notifier for ``$NOTIFY_SOCKET``, disabled when it is unset or empty."""
        env = os.environ if environ is None else environ
        return cls(env.get(NOTIFY_SOCKET_ENV) or None)

    @property
    def enabled(self) -> bool:
        """True when a notification socket is known (the process runs under systemd)."""
        return self._address is not None

    @property
    def socket_name(self) -> str | None:
        """The ``$NOTIFY_SOCKET`` value this notifier sends to."""
        return self._socket_name

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` assignments in one datagram; True when it was sent."""
        if self._address is None or not assignments:
            return False
        payload = "\n".join(assignments).encode("utf-8")
        try:
            with self._lock:
                if self._sock is None:
                    self._sock = socket.socket(
                        socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                    )
                self._sock.sendto(payload, self._address)
        except OSError as exc:
            _log.warning("cannot notify systemd at %s: %s", self._socket_name, exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: start-up is complete; systemd starts the units ordered after us."""
        if status is None:
            return self.notify("READY=1")
        return self.notify("READY=1", f"STATUS={_one_line(status)}")

    def status(self, text: str) -> bool:
        """``STATUS=``: one line shown by ``systemctl status``."""
        return self.notify(f"STATUS={_one_line(text)}")

    def stopping(self) -> bool:
        """``STOPPING=1``: shutdown has begun, so the stop is not mistaken for a crash."""
        return self.notify("STOPPING=1")

    def reloading(self) -> bool:
        """``RELOADING=1`` with the ``MONOTONIC_USEC`` that ``Type=notify-reload`` requires."""
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: the keep-alive ping that resets the ``WatchdogSec=`` timer."""
        return self.notify("WATCHDOG=1")

    def extend_timeout(self, usec: int) -> bool:
        """``EXTEND_TIMEOUT_USEC=``: a slow start (catalogue migration) needs ``usec`` more."""
        if usec <= 0:
            raise ValueError(f"extend_timeout needs a positive number of µs, got {usec}")
        return self.notify(f"EXTEND_TIMEOUT_USEC={usec}")

    def close(self) -> None:
        """Close the socket; a later message opens a new one."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
