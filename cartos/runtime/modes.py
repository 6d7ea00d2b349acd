"""Degraded modes: which sensors the cart is deciding with right now.

A cart keeps working with whatever is left and says so, so the screen and the
store hub know why it asks more than usual:

* ``full``: everything healthy; camera × scale × barcode.
* ``barcode_weight``: camera down (no frame for a while); barcode and scale,
  unscanned items prompt.
* ``vision_barcode``: scale down (disconnected, overload); camera and barcode.
* ``barcode_only``: the model would not load (or no memory headroom);
  barcode, everything else prompts.
* ``camera_only``: microcontroller link down; camera, with prompts.

Recovery needs no restart: health is re-evaluated on every loop pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CAMERA_STALE_S = 3.0


@dataclass
class Health:
    """Latest known state of each part, updated by the runtime loop."""

    link: bool = False
    scale: bool = True
    model: bool = True
    camera_expected: bool = True
    last_frame: float | None = None
    headroom: float | None = None
    """Free share of the profile's memory budget (see :mod:`cartos.runtime.memory`)."""
    detail: dict[str, str] = field(default_factory=dict)

    def camera_ok(self, now: float) -> bool:
        return (
            self.camera_expected
            and self.last_frame is not None
            and now - self.last_frame <= CAMERA_STALE_S
        )

    def to_dict(self, now: float) -> dict[str, object]:
        return {
            "mode": mode_for(self, now),
            "sensors": {
                "link": self.link,
                "scale": self.scale and self.link,
                "camera": self.camera_ok(now),
                "model": self.model,
            },
            "headroom": None if self.headroom is None else round(self.headroom, 4),
            "detail": dict(self.detail),
        }


def mode_for(health: Health, now: float) -> str:
    """The degraded mode for this health snapshot (first failing part wins)."""
    if not health.model:
        return "barcode_only"
    if not health.link:
        return "camera_only"
    if not health.scale:
        return "vision_barcode"
    if not health.camera_ok(now):
        return "barcode_weight"
    return "full"
