"""A real Mosquitto broker for the sync tests and benchmarks, with the failures a store network has.

The sync layer's guarantees (nothing lost, nothing applied twice) only mean
something against a real broker that can crash, restart and stall, so the
tests drive ``mosquitto`` itself rather than a fake:

* :meth:`Broker.stop` (SIGTERM) is a clean shutdown: Mosquitto writes its
  persistence file, so retained messages and persistent sessions survive;
* :meth:`Broker.kill` (SIGKILL) is a crash or power cut: everything since the
  last save is gone, including messages the broker already PUBACKed. This is
  why the cart deletes an outbox row only on the hub's own ack;
* :meth:`Broker.pause` / :meth:`Broker.resume` (SIGSTOP/SIGCONT) is a
  partition or a wedged broker: TCP connections stay up but nothing moves.

The configuration saves only on shutdown (``autosave_interval`` is an hour),
so what a kill loses is deterministic.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

HOST = "127.0.0.1"
_SEARCH_PATH = ("/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin")


class BrokerError(RuntimeError):
    """The broker did not start, or did not stop, as the test needed."""


def find_mosquitto() -> str | None:
    """The ``mosquitto`` executable (``CARTOS_MOSQUITTO``, then PATH, then the sbin folders)."""
    override = os.environ.get("CARTOS_MOSQUITTO")
    if override:
        return override if os.access(override, os.X_OK) else None
    path = os.pathsep.join([os.environ.get("PATH", ""), *_SEARCH_PATH])
    return shutil.which("mosquitto", path=path)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class Broker:
    """One Mosquitto process on 127.0.0.1, its config, log and persistence in ``tmp_dir``.

    Started by the constructor. ``port`` stays the same across
    :meth:`restart`, so clients reconnect to the same address, as they would
    to a rebooted hub.
    """

    def __init__(
        self,
        tmp_dir: str | Path,
        port: int | None = None,
        persistence: bool = True,
        conf_extra: str = "",
        *,
        allow_anonymous: bool = True,
        executable: str | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        exe = executable or find_mosquitto()
        if exe is None:
            raise BrokerError("mosquitto is not installed (set CARTOS_MOSQUITTO to its path)")
        self.executable = exe
        self.dir = Path(tmp_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = HOST
        self.port = port if port is not None else free_port()
        self.persistence = persistence
        self.start_timeout = start_timeout
        self.conf_path = self.dir / "mosquitto.conf"
        self.log_path = self.dir / "mosquitto.log"
        self.db_path = self.dir / "mosquitto.db"
        self.conf_path.write_text(self._config(allow_anonymous, conf_extra), encoding="utf-8")
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False
        self.start()

    def _config(self, allow_anonymous: bool, conf_extra: str) -> str:
        lines = [
            f"listener {self.port} {HOST}",
            f"allow_anonymous {'true' if allow_anonymous else 'false'}",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if os.name == "posix" and os.geteuid() == 0:
            # Run as root, Mosquitto would switch to the 'mosquitto' user, which
            # cannot write the persistence file in a root-owned temporary folder.
            lines.append("user root")
        if self.persistence:
            lines += [
                "persistence true",
                f"persistence_location {self.dir}/",
                f"persistence_file {self.db_path.name}",
                "autosave_interval 3600",
            ]
        else:
            lines.append("persistence false")
        if conf_extra:
            lines.append(conf_extra.rstrip("\n"))
        return "\n".join(lines) + "\n"

    # -- lifecycle -----------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start Mosquitto and wait until its port accepts connections."""
        if self.running:
            raise BrokerError("broker already running")
        log = self.log_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                [self.executable, "-c", str(self.conf_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            log.close()
        self._paused = False
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerError(
                    f"mosquitto exited with {self._proc.returncode}:\n{self.log_tail()}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=0.2),
            ):
                return
            time.sleep(0.02)
        self.kill()
        raise BrokerError(f"mosquitto did not listen on {self.port}:\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> int:
        """Clean shutdown (SIGTERM): Mosquitto saves its persistence file and exits."""
        proc = self._require_proc()
        if self._paused:
            self.resume()
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise BrokerError(f"mosquitto ignored SIGTERM for {timeout} s") from None

    def kill(self) -> int:
        """Crash (SIGKILL): nothing is saved; what arrived since the last save is lost."""
        proc = self._proc
        if proc is None:
            raise BrokerError("broker was never started")
        if proc.poll() is None:
            proc.kill()  # SIGKILL also ends a paused (SIGSTOPped) process
        self._paused = False
        return proc.wait(10)

    def restart(self, *, crash: bool = False) -> None:
        """Stop (or, with ``crash``, kill) and start again on the same port and files."""
        if self.running:
            if crash:
                self.kill()
            else:
                self.stop()
        self.start()

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open, nothing is delivered."""
        self._require_proc().send_signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """Thaw a paused broker (SIGCONT): it carries on with what queued up meanwhile."""
        self._require_proc().send_signal(signal.SIGCONT)
        self._paused = False

    def close(self) -> None:
        """Stop the broker whatever its state (fixture teardown); never raises."""
        if self._proc is None or self._proc.poll() is not None:
            return
        with contextlib.suppress(BrokerError):
            self.stop(timeout=5.0)
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(5)

    def _require_proc(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            raise BrokerError("broker is not running")
        return self._proc

    def log_tail(self, lines: int = 30) -> str:
        """The end of the broker's log, for failure messages."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "paused" if self._paused else ("running" if self.running else "stopped")
        return f"Broker({self.host}:{self.port}, {state}, persistence={self.persistence})"
