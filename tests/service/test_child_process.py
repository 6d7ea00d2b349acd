"""A real child process under a fake systemd: READY, pings while it loops, silence when it hangs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.service.conftest import NotifyListener

ROOT = Path(__file__).resolve().parents[2]

# The shape of the runtime loop: start-up marks, a heartbeat per iteration, then a hang
# (a blocking read that never returns) announced on the status line first.
CHILD = textwrap.dedent(
    """
    import time
    from cartos.service.lifecycle import Lifecycle
    from cartos.service.notify import Notifier
    from cartos.service.watchdog import Watchdog

    notifier = Notifier.from_env()
    lifecycle = Lifecycle(notifier)
    lifecycle.mark("catalogue")
    lifecycle.mark("sensors")
    watchdog = Watchdog.from_env(notifier)
    watchdog.start()
    end = time.monotonic() + 0.4
    while time.monotonic() < end:
        watchdog.heartbeat()
        time.sleep(0.01)
    notifier.status("hanging")
    time.sleep(30)
    """
)


def test_a_hung_child_stops_pinging(notify_socket: NotifyListener) -> None:
    env = {
        **os.environ,
        "NOTIFY_SOCKET": notify_socket.env_value,
        "WATCHDOG_USEC": "200000",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("WATCHDOG_PID", None)
    child = subprocess.Popen([sys.executable, "-c", CHILD], env=env)
    try:
        notify_socket.wait_for(lambda m: "READY=1" in m, timeout=5.0)
        notify_socket.wait_for(lambda m: m == ["STATUS=hanging"], timeout=2.0)
        hang_started = time.monotonic()
        alive_pings = [
            at for at, m in notify_socket.received if m == ["WATCHDOG=1"] and at < hang_started
        ]
        # One ping may still leave while the last heartbeat is younger than the interval.
        time.sleep(0.25)
        notify_socket.drain()
        during_hang = notify_socket.drain(0.4)
        assert child.poll() is None, "the child should still be hanging"
    finally:
        child.kill()
        child.wait(timeout=5)
    assert len(alive_pings) >= 2
    assert ["WATCHDOG=1"] not in during_hang
