"""The sd_notify protocol against a real datagram socket."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cartos.service.errors import NotifyError
from cartos.service.notify import Notifier, socket_address, watchdog_interval
from tests.service.conftest import NotifyListener


def test_each_message_arrives_as_one_datagram(notify_socket: NotifyListener) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": notify_socket.env_value})
    assert notifier.enabled
    assert notifier.ready("running")
    assert notifier.status("degraded: camera")
    assert notifier.watchdog()
    assert notifier.extend_timeout(30_000_000)
    assert notifier.stopping()
    assert notifier.reloading()
    got = notify_socket.drain()
    notifier.close()
    assert got[:5] == [
        ["READY=1", "STATUS=running"],
        ["STATUS=degraded: camera"],
        ["WATCHDOG=1"],
        ["EXTEND_TIMEOUT_USEC=30000000"],
        ["STOPPING=1"],
    ]
    reload_msg = got[5]
    assert reload_msg[0] == "RELOADING=1"
    assert reload_msg[1].startswith("MONOTONIC_USEC=")
    assert int(reload_msg[1].split("=", 1)[1]) > 0


def test_abstract_namespace_socket(abstract_notify_socket: NotifyListener) -> None:
    assert abstract_notify_socket.env_value.startswith("@")
    notifier = Notifier.from_env({"NOTIFY_SOCKET": abstract_notify_socket.env_value})
    assert notifier.ready()
    assert notifier.watchdog()
    assert abstract_notify_socket.drain() == [["READY=1"], ["WATCHDOG=1"]]
    notifier.close()


def test_a_status_cannot_forge_another_assignment(notify_socket: NotifyListener) -> None:
    notifier = Notifier(notify_socket.env_value)
    notifier.status("camera lost\nREADY=1")
    assert notify_socket.drain() == [["STATUS=camera lost READY=1"]]
    notifier.close()


def test_outside_systemd_every_call_is_a_no_op() -> None:
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    results = [
        notifier.ready("x"),
        notifier.status("x"),
        notifier.watchdog(),
        notifier.stopping(),
        notifier.reloading(),
        notifier.extend_timeout(1),
    ]
    assert results == [False] * 6
    assert not Notifier.from_env({"NOTIFY_SOCKET": ""}).enabled


def test_a_vanished_socket_is_reported_not_raised(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "nobody-listens.sock"))
    assert notifier.enabled
    assert notifier.watchdog() is False


@pytest.mark.parametrize("value", ["relative.sock", "@", "vsock:2:9999"])
def test_an_address_systemd_never_sets_is_an_error(value: str) -> None:
    with pytest.raises(NotifyError, match="NOTIFY_SOCKET"):
        Notifier(value)


def test_abstract_names_get_a_leading_nul() -> None:
    assert socket_address("@abc") == "\0abc"
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"


def test_extend_timeout_needs_a_positive_amount(notify_socket: NotifyListener) -> None:
    with pytest.raises(ValueError, match="positive"):
        Notifier(notify_socket.env_value).extend_timeout(0)


@given(st.integers(min_value=1, max_value=10**12))
def test_watchdog_interval_is_half_the_timeout(usec: int) -> None:
    interval = watchdog_interval({"WATCHDOG_USEC": str(usec)})
    assert interval == pytest.approx(usec / 2_000_000)


def test_watchdog_interval_for_this_process_only() -> None:
    mine = {"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval(mine) == pytest.approx(5.0)
    parents = {"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert watchdog_interval(parents) is None
    assert watchdog_interval({}) is None


@pytest.mark.parametrize(
    "env",
    [{"WATCHDOG_USEC": "ten"}, {"WATCHDOG_USEC": "0"}, {"WATCHDOG_USEC": "5", "WATCHDOG_PID": "x"}],
)
def test_malformed_watchdog_variables_are_errors(env: dict[str, str]) -> None:
    with pytest.raises(NotifyError):
        watchdog_interval(env)
