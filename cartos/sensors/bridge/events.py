"""What the cart microcontroller tells the runtime, in host units and host time.

Weights are grams (the wire carries milligrams), times are host monotonic
seconds mapped from the MCU clock (``t``) next to the raw MCU clock, so fusion
can line weight changes up with camera frames.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Settled:
    """The scale came to rest at a new weight."""

    eid: int
    t: float  # host time the weight became stable
    mcu_clock: int
    weight_g: float
    delta_g: float


@dataclass(frozen=True)
class Scan:
    """A code read by the scanner (raw text; validate with cartos.sensors.barcode)."""

    eid: int
    t: float
    mcu_clock: int
    code: str


@dataclass(frozen=True)
class ScaleState:
    """The scale's condition changed: ok, unstable, overload or disconnected."""

    eid: int
    t: float
    mcu_clock: int
    state: str


@dataclass(frozen=True)
class Tared:
    eid: int
    t: float
    mcu_clock: int
    token: int


@dataclass(frozen=True)
class Sample:
    """One streamed reading: lossy, for live display and motion cues, never for billing."""

    t: float
    mcu_clock: int
    weight_g: float
    raw: int
    state: str


@dataclass(frozen=True)
class LinkState:
    """The link came up, went down, or was refused; ``detail`` says why."""

    state: str  # connecting | ready | disconnected | refused
    detail: str = ""


BridgeEvent = Settled | Scan | ScaleState | Tared | LinkState
