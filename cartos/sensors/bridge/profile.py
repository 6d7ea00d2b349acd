"""The microcontroller side of a device profile: scale settings, and the emulated board.

Every caller that talks to a cart's board (the runtime, the harness, the
monitor, the simulated trip) takes both from here, so the host's scale
configuration and the emulator's physical calibration cannot disagree.
"""

from __future__ import annotations

from pathlib import Path

from cartos.profiles.schema import DeviceProfile
from cartos.sensors.bridge.client import ScaleConfig
from firmware_bridge.emulator.board import Emulator
from firmware_bridge.emulator.peripherals import LoadCellCalibration


def scale_config(profile: DeviceProfile) -> ScaleConfig:
    """What the host tells the MCU about the load cell, from the profile's ``[scale]``."""
    s = profile.scale
    return ScaleConfig(
        zero_counts=s.zero_counts,
        span_counts=s.span_counts,
        span_grams=s.span_grams,
        capacity_g=s.capacity_g,
        tolerance_g=s.settle_tolerance_g,
        window_ms=s.settle_window_ms,
    )


def emulator_for(profile: DeviceProfile, link_path: Path) -> Emulator:
    """The emulated board of a ``sim``-style profile: its load cell reads as the profile says.

    The emulator's physical calibration is the profile's scale calibration, so
    the host's ``config_scale`` (from the same profile) turns counts back into
    the grams the scenario put in.
    """
    s = profile.scale
    hil = profile.hil
    emulator = Emulator(
        link_path,
        calibration=LoadCellCalibration(s.zero_counts, s.span_counts, s.span_grams),
        adc_rate_hz=s.sample_rate_hz,
        seed=hil.emulator_seed if hil else 0,
    )
    if hil is not None:
        emulator.weight.noise_g = hil.emulator_noise_g
    return emulator
