"""The emulated cart microcontroller on a pseudo-terminal.

It runs the real firmware application (``firmware_bridge/firmware/app.py``)
with simulated peripherals, and exposes the board as a serial device: a pty
slave reached through a stable symlink, the way ``/dev/serial/by-id/…`` names
a USB board. Unplugging closes the pty (the host sees the device vanish);
replugging creates a new one behind the same symlink. The MCU keeps its state
across an unplug, as a cart-powered board does when only its USB cable moves.
"""

from __future__ import annotations

import logging
import os
import pty
import random
import select
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from firmware_bridge import codec
from firmware_bridge.emulator.faults import LineFaults
from firmware_bridge.emulator.peripherals import (
    FakeHx711,
    FakeScanner,
    LoadCellCalibration,
    WeightModel,
)
from firmware_bridge.firmware.app import App

log = logging.getLogger(__name__)


@dataclass
class GroundTruth:
    """Every message the board sent, decoded before any fault touched it."""

    samples: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # clock -> values
    events: dict[int, tuple[str, dict[str, object]]] = field(default_factory=dict)  # eid -> msg
    frames_sent: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Emulator:
    """A running emulated board; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        link_path: Path,
        calibration: LoadCellCalibration | None = None,
        adc_rate_hz: float = 80.0,
        seed: int = 0,
        board: str = "emulator",
        record_truth: bool = False,
        idle_sleep_s: float = 0.0005,
    ) -> None:
        self.link_path = Path(link_path)
        self.calibration = calibration or LoadCellCalibration()
        self.weight = WeightModel(seed=seed)
        self.scanner = FakeScanner()
        self.to_host = LineFaults(seed=seed + 1)
        self.from_host = LineFaults(seed=seed + 2)
        self.truth: GroundTruth | None = GroundTruth() if record_truth else None
        self._tap = codec.FrameDecoder()
        self._t0 = time.monotonic()
        self.hx711 = FakeHx711(self.weight, self.calibration, self.now, adc_rate_hz)
        self.board = board
        self._seed = seed
        self._idle_sleep = idle_sleep_s
        self.feedback: list[int] = []
        self._master = -1
        self._slave = -1
        self._plugged = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._rx = bytearray()
        self._tx_held = bytearray()
        self.bytes_dropped = 0
        self.app = self._new_app()

    def now(self) -> float:
        """Seconds on the emulator's clock (the MCU's view of time)."""
        return time.monotonic() - self._t0

    def _new_app(self) -> App:
        return App(
            self.board,
            self.hx711,
            self.scanner,
            self._link_read,
            self._link_write,
            ticks_us=lambda: int(self.now() * 1_000_000),
            ticks_diff=lambda a, b: a - b,
            boot_id=random.Random(self._seed + int(time.time() * 1000)).getrandbits(31),
            feedback=self.feedback.append,
        )

    # -- the pty ----------------------------------------------------------

    def _open_pty(self) -> None:
        master, slave = pty.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        tmp = self.link_path.with_name(self.link_path.name + ".new")
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, self.link_path)
        self._plugged.set()

    def _close_pty(self) -> None:
        self._plugged.clear()
        for fd in (self._master, self._slave):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = -1
        if self.link_path.is_symlink():
            self.link_path.unlink()

    def unplug(self) -> None:
        """The USB cable comes out: the device node disappears."""
        with self._lock:
            self._close_pty()
            self._rx.clear()
            self._tx_held.clear()

    def replug(self) -> None:
        with self._lock:
            if not self._plugged.is_set():
                self._open_pty()

    def reboot(self) -> None:
        """Power-cycle the MCU: volatile state (event queue, link sync) is gone."""
        with self._lock:
            self.app = self._new_app()

    # -- link callbacks used by the firmware --------------------------------

    def _link_read(self) -> bytes:
        if self.from_host.stalled() or not self._rx:
            return b""
        data = bytes(self._rx)
        self._rx.clear()
        return self.from_host.apply(data)

    def _link_write(self, frame: bytes) -> None:
        if self.truth is not None:
            self._record(frame)
        if not self._plugged.is_set():
            self.bytes_dropped += len(frame)
            return
        self._tx_held.extend(self.to_host.apply(frame))
        self._drain_tx()

    def _drain_tx(self) -> None:
        if not self._tx_held or self.to_host.stalled() or self._master < 0:
            return
        try:
            n = os.write(self._master, self._tx_held)
        except BlockingIOError:
            n = 0
        except OSError:  # nobody has the port open: bytes fall on the floor
            n = len(self._tx_held)
            self.bytes_dropped += n
        del self._tx_held[:n]
        if len(self._tx_held) > 65536:  # a UART FIFO does not grow without bound
            self.bytes_dropped += len(self._tx_held)
            self._tx_held.clear()

    def _record(self, frame: bytes) -> None:
        truth = self.truth
        assert truth is not None
        dictionary = self.app.dictionary
        with truth.lock:
            truth.frames_sent += 1
            for _, payload in self._tap.feed(frame):
                for name, values in dictionary.decode_responses(payload):
                    if name == "sample":
                        truth.samples[int(values["clock"])] = (  # type: ignore[call-overload]
                            int(values["weight_mg"]),  # type: ignore[call-overload]
                            int(values["raw"]),  # type: ignore[call-overload]
                            int(values["state"]),  # type: ignore[call-overload]
                        )
                    elif name in codec.EVENT_MESSAGES:
                        truth.events[int(values["eid"])] = (name, values)  # type: ignore[call-overload]

    # -- the main loop ------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                master = self._master
                if master >= 0:
                    try:
                        ready, _, _ = select.select([master], [], [], 0)
                        if ready:
                            self._rx.extend(os.read(master, 4096))
                    except OSError:  # EIO: no process holds the slave right now
                        pass
                self.app.step()
                self._drain_tx()
            if self._idle_sleep:
                time.sleep(self._idle_sleep)

    def start(self) -> Emulator:
        self._open_pty()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="mcu-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            self._close_pty()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_until(self, cond: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return True
            time.sleep(0.005)
        return cond()
