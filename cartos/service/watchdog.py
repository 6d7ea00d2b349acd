"""Watchdog pings that stop when the main loop stops.

systemd restarts a ``WatchdogSec=`` service that stops sending ``WATCHDOG=1``. Pinging from a
timer thread alone would prove only that the interpreter is alive: a main loop stuck on a
serial read or a wedged camera would keep being "healthy" forever. So the loop calls
:meth:`Watchdog.heartbeat` once per iteration, and the ping thread sends ``WATCHDOG=1`` only
while the last heartbeat is younger than the ping interval. A hung loop therefore goes silent,
and systemd kills and restarts the service within ``WatchdogSec=``.

The loop's longest iteration must stay below the ping interval (half of ``WatchdogSec=``); a
step that legitimately takes longer (a catalogue migration) calls ``heartbeat()`` as it goes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType

from cartos.service.notify import Notifier, watchdog_interval

_log = logging.getLogger(__name__)

Clock = Callable[[], float]


class Watchdog:
    """Sends ``WATCHDOG=1`` every interval while the main loop keeps calling heartbeat().

    Disabled (every method a no-op) when systemd set no watchdog or the notifier is disabled.
    Use as a context manager around the main loop, or call start() and stop().
    """

    def __init__(
        self,
        notifier: Notifier,
        interval_s: float | None,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        if interval_s is not None and interval_s <= 0:
            raise ValueError(f"watchdog interval must be positive, got {interval_s}")
        self._notifier = notifier
        self._interval = interval_s if notifier.enabled else None
        self._clock = clock
        self._last_beat = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pings = 0
        self._withheld = False

    @classmethod
    def from_env(cls, notifier: Notifier, environ: Mapping[str, str] | None = None) -> Watchdog:
        """A watchdog at the interval systemd asked for (``$WATCHDOG_USEC`` / 2)."""
        return cls(notifier, watchdog_interval(environ))

    @property
    def enabled(self) -> bool:
        """True when systemd watches this process and pings will be sent."""
        return self._interval is not None

    @property
    def interval_s(self) -> float | None:
        """Seconds between pings; the main loop must beat at least this often."""
        return self._interval

    @property
    def pings_sent(self) -> int:
        """Pings delivered so far (for tests and the status line)."""
        return self._pings

    def heartbeat(self) -> None:
        """The main loop is alive: call once per iteration."""
        self._last_beat = self._clock()

    def start(self) -> None:
        """Start the ping thread (no-op when disabled or already running)."""
        if self._interval is None or self._thread is not None:
            return
        self._stop.clear()
        self.heartbeat()
        self._thread = threading.Thread(
            target=self._run, args=(self._interval,), name="systemd-watchdog", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop pinging and wait for the thread to end."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Watchdog:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def ping_if_alive(self) -> bool:
        """One tick of the ping thread: ping when the last heartbeat is fresh enough."""
        if self._interval is None:
            return False
        silent_for = self._clock() - self._last_beat
        if silent_for > self._interval:
            if not self._withheld:
                _log.warning(
                    "main loop silent for %.1f s; withholding the watchdog ping", silent_for
                )
                self._withheld = True
            return False
        if self._withheld:
            _log.warning("main loop alive again after a stall; watchdog pings resume")
            self._withheld = False
        sent = self._notifier.watchdog()
        if sent:
            self._pings += 1
        return sent

    def _run(self, interval: float) -> None:
        self.ping_if_alive()
        while not self._stop.wait(interval):
            self.ping_if_alive()
