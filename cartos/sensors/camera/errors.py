"""Errors raised by the camera package.

Every expected camera failure derives from :class:`CameraError` so the CLI and
the runtime can report it in one line; a lost device is *not* an error here
(sources reconnect on their own and count it in their stats).
"""

from __future__ import annotations

from cartos.errors import CartosError


class CameraError(CartosError):
    """Base class for camera and frame-replay failures."""


class SourceStateError(CameraError):
    """A source was used out of order (read before start, started twice)."""


class FrameFormatError(CameraError):
    """An image is not something a frame can hold (wrong dtype, channels, empty)."""


class ReplaySourceError(CameraError):
    """A replay input cannot be used at all (missing folder, no images, unopenable video)."""


class ScenarioOrderError(CameraError):
    """A scenario frame was pushed with a time earlier than one already pushed."""


class RingCapacityError(CameraError):
    """A frame cannot fit in a ring buffer's memory bound even on its own."""
