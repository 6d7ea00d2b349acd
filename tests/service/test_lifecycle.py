"""READY only after every start-up mark; STATUS for degraded modes; STOPPING on SIGTERM."""

from __future__ import annotations

import os
import signal

import pytest

from cartos.service.errors import LifecycleError
from cartos.service.lifecycle import Lifecycle
from cartos.service.notify import Notifier
from tests.service.conftest import NotifyListener


def _has_ready(messages: list[list[str]]) -> bool:
    return any("READY=1" in message for message in messages)


@pytest.mark.parametrize("order", [("catalogue", "sensors"), ("sensors", "catalogue")])
def test_ready_only_after_all_marks(notify_socket: NotifyListener, order: tuple[str, str]) -> None:
    lifecycle = Lifecycle(Notifier(notify_socket.env_value))
    first, second = order
    assert lifecycle.mark(first) is False
    before = notify_socket.drain()
    assert not _has_ready(before)
    assert not lifecycle.ready
    assert lifecycle.pending == {second}
    assert before == [[f"STATUS=starting: {first} ok; waiting for {second}"]]
    assert lifecycle.mark(second) is True
    assert lifecycle.ready
    assert notify_socket.drain() == [["READY=1", "STATUS=running"]]


def test_a_repeated_mark_sends_no_second_ready(notify_socket: NotifyListener) -> None:
    lifecycle = Lifecycle(Notifier(notify_socket.env_value), required=["catalogue"])
    assert lifecycle.mark("catalogue", "2000 SKUs") is True
    assert lifecycle.mark("catalogue") is False
    assert sum(1 for m in notify_socket.drain() if "READY=1" in m) == 1


def test_an_unknown_mark_is_an_error() -> None:
    lifecycle = Lifecycle(Notifier(None))
    with pytest.raises(LifecycleError, match=r"'sensor'.*catalogue, sensors"):
        lifecycle.mark("sensor")
    with pytest.raises(LifecycleError):
        Lifecycle(Notifier(None), required=[])


def test_degraded_components_in_the_status_line(notify_socket: NotifyListener) -> None:
    lifecycle = Lifecycle(Notifier(notify_socket.env_value))
    lifecycle.mark("catalogue")
    lifecycle.mark("sensors")
    notify_socket.drain()
    lifecycle.set_degraded("camera", "no frames for 5 s")
    lifecycle.set_degraded("bridge", "link down, reconnecting")
    lifecycle.clear_degraded("camera")
    lifecycle.clear_degraded("camera")  # already clear: nothing sent
    lifecycle.clear_degraded("bridge")
    assert notify_socket.drain() == [
        ["STATUS=degraded: camera: no frames for 5 s"],
        ["STATUS=degraded: bridge: link down, reconnecting; camera: no frames for 5 s"],
        ["STATUS=degraded: bridge: link down, reconnecting"],
        ["STATUS=running"],
    ]
    assert lifecycle.degraded == {}


def test_sigterm_sets_the_stop_event_and_sends_stopping(notify_socket: NotifyListener) -> None:
    lifecycle = Lifecycle(Notifier(notify_socket.env_value))
    restore = lifecycle.install_stop_signals()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        assert lifecycle.stop_event.wait(1.0)
        os.kill(os.getpid(), signal.SIGTERM)  # a second signal: STOPPING is sent once
    finally:
        restore()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert notify_socket.drain() == [["STOPPING=1", "STATUS=stopping: received SIGTERM"]]
