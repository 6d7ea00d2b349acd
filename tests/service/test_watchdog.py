"""Watchdog pings follow the main loop's heartbeat: a hung loop goes silent."""

from __future__ import annotations

import time

import pytest

from cartos.service.notify import Notifier
from cartos.service.watchdog import Watchdog
from tests.service.conftest import NotifyListener

WATCHDOG_USEC = "200000"  # 0.2 s timeout -> a ping every 0.1 s


def _pings(messages: list[list[str]]) -> int:
    return sum(1 for message in messages if message == ["WATCHDOG=1"])


def test_pings_stop_when_the_heartbeats_stop(notify_socket: NotifyListener) -> None:
    notifier = Notifier(notify_socket.env_value)
    watchdog = Watchdog.from_env(notifier, {"WATCHDOG_USEC": WATCHDOG_USEC})
    assert watchdog.interval_s == pytest.approx(0.1)
    with watchdog:
        end = time.monotonic() + 0.5
        while time.monotonic() < end:  # a healthy loop: a heartbeat every 20 ms
            watchdog.heartbeat()
            time.sleep(0.02)
        alive = notify_socket.drain()
        # The loop hangs: one ping may still go out while the last beat is fresh.
        time.sleep(0.25)
        notify_socket.drain()
        hung = notify_socket.drain(0.4)
    notifier.close()
    assert _pings(alive) >= 3
    assert _pings(hung) == 0


def test_pings_resume_when_the_loop_recovers(notify_socket: NotifyListener) -> None:
    now = [100.0]
    notifier = Notifier(notify_socket.env_value)
    watchdog = Watchdog(notifier, 1.0, clock=lambda: now[0])
    watchdog.heartbeat()
    assert watchdog.ping_if_alive()
    now[0] += 1.5
    assert not watchdog.ping_if_alive()
    watchdog.heartbeat()
    assert watchdog.ping_if_alive()
    assert _pings(notify_socket.drain()) == 2
    assert watchdog.pings_sent == 2
    notifier.close()


def test_disabled_without_a_watchdog_or_outside_systemd(notify_socket: NotifyListener) -> None:
    no_timeout = Watchdog.from_env(Notifier(notify_socket.env_value), {})
    no_systemd = Watchdog(Notifier(None), 0.1)
    for watchdog in (no_timeout, no_systemd):
        assert not watchdog.enabled
        with watchdog:
            watchdog.heartbeat()
            time.sleep(0.05)
        assert not watchdog.ping_if_alive()
    assert notify_socket.drain() == []


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Watchdog(Notifier(None), 0.0)
