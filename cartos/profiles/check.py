"""``cartos profile check``: can this profile run here, and does it fit its memory budget?

The check never opens hardware (camera, serial port): it must run on a bench machine for a board
that is not plugged in, and on a cart without disturbing a running session. It checks what
would stop the runtime at start-up (the backend is installed, the model exists and matches its
card), then measures the footprint. Things that only matter on the target itself (a serial port
or camera node absent on this machine, a different CPU architecture) become notes, not errors.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cartos.inference import backend as backends
from cartos.inference.model_card import ModelCard
from cartos.profiles.errors import ProfileError
from cartos.profiles.footprint import Footprint, measure_footprint
from cartos.profiles.loader import display_path
from cartos.profiles.model_file import verified_model
from cartos.profiles.schema import DeviceProfile


@dataclass(frozen=True)
class ProfileCheck:
    """Everything ``profile check`` found out about one profile on this machine."""

    profile: DeviceProfile
    source: Path
    model_path: Path
    card: ModelCard
    available_backends: tuple[str, ...]
    skipped_backends: dict[str, str]
    footprint: Footprint
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        inf = self.profile.inference
        return {
            "profile": self.profile.name,
            "file": str(self.source),
            "arch": self.profile.arch,
            "backend": {
                "name": inf.backend,
                "available": inf.backend in self.available_backends,
                "available_backends": list(self.available_backends),
                "skipped_backends": self.skipped_backends,
                "threads": inf.threads,
                "max_batch": inf.max_batch,
            },
            "model": {
                "path": str(self.model_path),
                "variant": inf.variant,
                "verified": True,
                "sha256": self.card.sha256,
                "embedding_size": self.card.embedding_size,
            },
            "footprint": self.footprint.to_dict(),
            "fits": self.footprint.fits,
            "notes": list(self.notes),
        }


def require_backend(profile: DeviceProfile) -> tuple[tuple[str, ...], dict[str, str]]:
    """The installed backends; raises ProfileError when the profile's backend is not one."""
    available = tuple(backends.available())
    skipped = backends.skipped()
    wanted = profile.inference.backend
    if wanted not in available:
        why = _skip_reason(wanted, skipped)
        raise ProfileError(
            f"profile {profile.name}: inference backend {wanted!r} is not available on this "
            f"machine{why}; available: {', '.join(available) or 'none'}"
        )
    return available, skipped


def _skip_reason(backend: str, skipped: dict[str, str]) -> str:
    for module, reason in skipped.items():
        if module.startswith(backend):
            return f" ({module} not importable: {reason})"
    return ""


def target_notes(profile: DeviceProfile) -> tuple[str, ...]:
    """Differences between this machine and the profile's target that make numbers estimates."""
    notes: list[str] = []
    machine = platform.machine()
    if machine != profile.arch:
        notes.append(
            f"measured on {machine}, profile targets {profile.arch}: the footprint is an "
            "estimate until the check runs on the device"
        )
    port = profile.bridge.port
    if not profile.bridge.is_emulated and not Path(port).exists():
        notes.append(f"bridge port {port} is not present on this machine")
    cam = profile.camera
    if cam.source == "device" and not Path(f"/dev/video{cam.device}").exists():
        notes.append(f"camera /dev/video{cam.device} is not present on this machine")
    if cam.source in ("file", "replay") and cam.path is not None and not cam.path.exists():
        notes.append(f"camera path {display_path(cam.path)} does not exist")
    return tuple(notes)


def check_profile(profile: DeviceProfile, source: Path) -> ProfileCheck:
    """Backend, model and footprint of ``profile`` (read from ``source``) on this machine.

    Raises ProfileError when the profile cannot run here at all; a footprint over budget is
    returned (``footprint.fits`` is False) so the caller can still print the table.
    """
    available, skipped = require_backend(profile)
    model_path, card = verified_model(profile.inference)
    footprint = measure_footprint(profile, model_path)
    return ProfileCheck(
        profile=profile,
        source=source,
        model_path=model_path,
        card=card,
        available_backends=available,
        skipped_backends=skipped,
        footprint=footprint,
        notes=target_notes(profile),
    )
