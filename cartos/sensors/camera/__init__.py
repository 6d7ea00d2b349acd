"""The basket camera: live capture, replay, recent-frame history and change detection.

The runtime reads timestamped :class:`Frame` objects from a :class:`FrameSource`
(a live :class:`OpenCVSource` on the cart; an :class:`ImageDirectoryReplay`,
:class:`VideoFileReplay` or :class:`ScenarioReplay` on the bench and in tests),
keeps recent ones in a :class:`FrameRing`, and for each item event asks an
:class:`EventFramePicker` (or :func:`pick_event_frames`) for the still frames
around it and the crop of what changed.
"""

from cartos.sensors.camera.change import (
    ChangeParams,
    MotionScorer,
    changed_region,
    motion_score,
    prepare,
)
from cartos.sensors.camera.errors import (
    CameraError,
    FrameFormatError,
    ReplaySourceError,
    RingCapacityError,
    ScenarioOrderError,
    SourceStateError,
)
from cartos.sensors.camera.events import (
    EventFrameParams,
    EventFramePicker,
    EventFrames,
    pick_event_frames,
)
from cartos.sensors.camera.frame import Frame, as_bgr
from cartos.sensors.camera.opencv_source import Backoff, CaptureSettings, OpenCVSource
from cartos.sensors.camera.region import Region
from cartos.sensors.camera.replay import ImageDirectoryReplay, ScenarioReplay, VideoFileReplay
from cartos.sensors.camera.ring import FrameRing
from cartos.sensors.camera.source import FrameSource, SourceStats, ThreadedSource

__all__ = [
    "Backoff",
    "CameraError",
    "CaptureSettings",
    "ChangeParams",
    "EventFrameParams",
    "EventFramePicker",
    "EventFrames",
    "Frame",
    "FrameFormatError",
    "FrameRing",
    "FrameSource",
    "ImageDirectoryReplay",
    "MotionScorer",
    "OpenCVSource",
    "Region",
    "ReplaySourceError",
    "RingCapacityError",
    "ScenarioOrderError",
    "ScenarioReplay",
    "SourceStateError",
    "SourceStats",
    "ThreadedSource",
    "VideoFileReplay",
    "as_bgr",
    "changed_region",
    "motion_score",
    "pick_event_frames",
    "prepare",
]
