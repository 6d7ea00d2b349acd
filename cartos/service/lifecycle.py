"""What systemd is told about the cart's start-up, health and shutdown.

``READY=1`` is a promise: units ordered after cartos (the kiosk UI, the sync agent) start as
soon as it arrives, and ``systemctl start`` returns. Sending it when the process merely exists
would let a cart with an unreadable catalogue or an unplugged scale look started. So the
runtime reports each start-up step it has really completed (``mark("catalogue")`` once the
catalogue DB is checked, ``mark("sensors")`` once camera and serial link are open) and READY is
sent only when every required mark is in. After that the ``STATUS=`` line says whether the cart
runs fully or degraded (camera lost, scale link down) so ``systemctl status`` shows why a cart
misbehaves, and ``STOPPING=1`` marks a requested shutdown so it is not taken for a crash.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable
from types import FrameType

from cartos.service.errors import LifecycleError
from cartos.service.notify import Notifier

CATALOGUE_MARK = "catalogue"
SENSORS_MARK = "sensors"
DEFAULT_REQUIRED_MARKS: tuple[str, ...] = (CATALOGUE_MARK, SENSORS_MARK)

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)

SignalHandler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


class Lifecycle:
    """Start-up marks, health status and shutdown of one service run."""

    def __init__(
        self,
        notifier: Notifier,
        required: Iterable[str] = DEFAULT_REQUIRED_MARKS,
    ) -> None:
        self._notifier = notifier
        self._required = frozenset(required)
        if not self._required:
            raise LifecycleError("a lifecycle needs at least one required start-up mark")
        self._marks: set[str] = set()
        self._degraded: dict[str, str] = {}
        self._ready = False
        self._lock = threading.RLock()
        self.stop_event = threading.Event()

    @property
    def ready(self) -> bool:
        """True once READY=1 has been sent."""
        return self._ready

    @property
    def pending(self) -> frozenset[str]:
        """Required marks not reported yet."""
        return self._required - self._marks

    @property
    def degraded(self) -> dict[str, str]:
        """Degraded components and why, as currently reported."""
        return dict(self._degraded)

    def mark(self, name: str, detail: str | None = None) -> bool:
        """Report a start-up step as done; True when this mark completed start-up (READY sent).

        An unknown name is an error rather than ignored: a misspelt mark would otherwise keep
        the cart "activating" until ``TimeoutStartSec=`` kills it.
        """
        if name not in self._required:
            known = ", ".join(sorted(self._required))
            raise LifecycleError(f"unknown start-up mark {name!r} (expected one of: {known})")
        with self._lock:
            if name in self._marks:
                return False
            self._marks.add(name)
            if self.pending:
                waiting = ", ".join(sorted(self.pending))
                done = f"{name} ok" + (f" ({detail})" if detail else "")
                self._notifier.status(f"starting: {done}; waiting for {waiting}")
                return False
            self._ready = True
            self._notifier.ready(self._status_text())
            return True

    def set_degraded(self, component: str, reason: str) -> None:
        """Report a component as degraded; the STATUS line lists every degraded component."""
        with self._lock:
            self._degraded[component] = reason
            self._send_status()

    def clear_degraded(self, component: str) -> None:
        """A degraded component works again."""
        with self._lock:
            if self._degraded.pop(component, None) is not None:
                self._send_status()

    def stopping(self, reason: str | None = None) -> None:
        """Shutdown begins: send STOPPING=1 (once) and set :attr:`stop_event`."""
        # No lock: this runs inside a signal handler, possibly while the main thread holds it.
        first = not self.stop_event.is_set()
        self.stop_event.set()
        if first:
            text = f"stopping: {reason}" if reason else "stopping"
            self._notifier.notify("STOPPING=1", f"STATUS={text}")

    def install_stop_signals(
        self, signals: Iterable[signal.Signals] = STOP_SIGNALS
    ) -> Callable[[], None]:
        """Make SIGTERM/SIGINT call :meth:`stopping`; returns a function restoring the old handlers.

        systemd stops a service with SIGTERM; the default handler would kill the process in the
        middle of writing the basket DB. The handler only sets the stop event, and the main loop
        finishes its iteration and shuts down cleanly. Must be called from the main thread.
        """
        previous: dict[signal.Signals, SignalHandler] = {}

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            self.stopping(f"received {signal.Signals(signum).name}")

        for sig in signals:
            previous[sig] = signal.signal(sig, on_signal)

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

        return restore

    def _status_text(self) -> str:
        if self.stop_event.is_set():
            return "stopping"
        if not self._ready:
            return "starting: waiting for " + ", ".join(sorted(self.pending))
        if not self._degraded:
            return "running"
        parts = "; ".join(f"{name}: {why}" for name, why in sorted(self._degraded.items()))
        return f"degraded: {parts}"

    def _send_status(self) -> None:
        self._notifier.status(self._status_text())
