"""Device profiles: one typed, validated TOML file per hardware target.

The runtime and the hardware-in-the-loop harness read a profile to learn everything that differs
between targets (memory budget, inference runtime, camera, serial port, scale calibration), so
moving from the emulator to a real board is a profile change. ``cartos profile check`` measures
the real memory footprint a profile implies before a cart is trusted with it.
"""

from __future__ import annotations

from cartos.profiles.errors import FootprintExceededError, ProfileError, ProfileNotFoundError
from cartos.profiles.loader import list_profiles, load_profile, locate_profile, profiles_dir
from cartos.profiles.schema import (
    BridgeConfig,
    CameraConfig,
    CatalogueConfig,
    DeviceProfile,
    HilConfig,
    InferenceConfig,
    MemoryConfig,
    PrivacyConfig,
    ScaleConfig,
)

__all__ = [
    "BridgeConfig",
    "CameraConfig",
    "CatalogueConfig",
    "DeviceProfile",
    "FootprintExceededError",
    "HilConfig",
    "InferenceConfig",
    "MemoryConfig",
    "PrivacyConfig",
    "ProfileError",
    "ProfileNotFoundError",
    "ScaleConfig",
    "list_profiles",
    "load_profile",
    "locate_profile",
    "profiles_dir",
]
