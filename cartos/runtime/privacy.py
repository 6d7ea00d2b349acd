"""What of a basket camera frame may leave RAM, and for how long.

A basket camera sees shoppers as well as items: a hand on the rim, a face bending over the
cart, a child in the seat. The rules, and where each is kept:

* whole frames live only in the RAM ring (:class:`~cartos.sensors.camera.FrameRing`); nothing
  writes one to disk or queues one for the store hub;
* the one image that may be written is the review crop of an item: the changed region's box,
  padded like the recognition crop, with everything outside the box painted flat grey
  (:func:`masked_crop`);
* every such write is preceded by :func:`assert_not_full_frame`, which refuses an image the
  size of the frame or larger than a share of it: a "crop" that big means change detection saw
  the whole view change (camera knocked, lens covered) and the image would be the scene, shopper
  included;
* review crops and evidence files are deleted once older than the profile's retention
  (:func:`sweep_expired`, :class:`RetentionSweeper`), so a disk that is never emptied by hand
  still holds only recent items;
* events and telemetry name SKUs, weights, prompts and random session ids; no image, address
  or name of a person is ever put in them.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from cartos.profiles.schema import DeviceProfile
from cartos.runtime.errors import PrivacyError
from cartos.sensors.camera.region import Region

log = logging.getLogger(__name__)

NEUTRAL_GREY = 128
"""Fill of the masked margin: mid grey reads as "nothing here" to a reviewer and sits near the
mean colour a recogniser normalises to, so a crop re-embedded later is not skewed by it."""

DEFAULT_MAX_CROP_SHARE = 0.6
"""Largest share of the frame area a written crop may cover (the profile's default)."""

SWEEP_INTERVAL_S = 60.0
"""How often :class:`RetentionSweeper` looks at the disk: retention is counted in hours, so a
minute of lateness is nothing, and one directory scan a minute costs nothing measurable."""


def masked_crop(frame_image: np.ndarray, region: Region, pad_fraction: float) -> np.ndarray:
    """The padded crop around ``region`` with every pixel outside ``region`` flat grey.

    The recogniser is given the changed box grown by ``pad_fraction`` on each side because a
    little context helps it. For storage that margin is the problem: the changed box hugs what
    differs between the still frames before and after the event (the item), so whatever else
    is in the crop sits in the margin: fingers still on the rim, a sleeve, the edge of a face.
    The margin is kept (the stored crop has the recognition crop's size and framing, so a
    reviewer sees the item as the recogniser did) but painted :data:`NEUTRAL_GREY`; the pixels
    inside the box are an exact copy of the frame's. The result is a new array, never a view
    of the frame.

    Raises ``ValueError`` when ``region`` lies wholly outside the frame.
    """
    height, width = frame_image.shape[:2]
    x1, y1 = max(region.x, 0), max(region.y, 0)
    x2, y2 = min(region.x2, width), min(region.y2, height)
    if x1 >= x2 or y1 >= y2:
        raise ValueError(f"region {region} lies outside the {width}x{height} frame")
    inside = Region.from_corners(x1, y1, x2, y2)
    box = inside.padded(pad_fraction, width, height)
    out = np.full((box.h, box.w, *frame_image.shape[2:]), NEUTRAL_GREY, dtype=frame_image.dtype)
    out[y1 - box.y : y2 - box.y, x1 - box.x : x2 - box.x] = frame_image[y1:y2, x1:x2]
    return out


def assert_not_full_frame(
    image: np.ndarray,
    frame_shape: tuple[int, ...],
    max_share: float = DEFAULT_MAX_CROP_SHARE,
) -> None:
    """Refuse, with :class:`PrivacyError`, an image that may show the whole scene.

    Called right before any camera-derived image is written or queued. ``frame_shape`` is the
    shape of the frame the image was cut from. An image as wide and as tall as the frame is a
    frame, whatever the caller meant; one covering more than ``max_share`` of the frame's area
    is not an item crop either (items fill a fraction of the basket view), it is what change
    detection returns when the whole view changed, and the scene around the item, shoppers
    included, would be written with it.
    """
    if not 0.0 < max_share <= 1.0:
        raise ValueError(f"max_share must be in (0, 1], got {max_share}")
    frame_h, frame_w = int(frame_shape[0]), int(frame_shape[1])
    image_h, image_w = int(image.shape[0]), int(image.shape[1])
    if image_h >= frame_h and image_w >= frame_w:
        raise PrivacyError(
            f"refusing to store a {image_w}x{image_h} image: it is the whole {frame_w}x{frame_h} "
            "frame"
        )
    share = (image_h * image_w) / float(frame_h * frame_w)
    if share > max_share:
        raise PrivacyError(
            f"refusing to store a {image_w}x{image_h} crop: it covers {share:.0%} of the "
            f"{frame_w}x{frame_h} frame (at most {max_share:.0%}); change detection saw the "
            "whole view change (camera moved or covered?)"
        )


def review_crop(
    frame_image: np.ndarray,
    region: Region,
    pad_fraction: float,
    max_share: float = DEFAULT_MAX_CROP_SHARE,
) -> np.ndarray:
    """The image the review queue may store for ``region``: masked, and checked not a frame."""
    crop = masked_crop(frame_image, region, pad_fraction)
    assert_not_full_frame(crop, frame_image.shape, max_share)
    return crop


def retention_seconds(profile: DeviceProfile) -> float:
    """How long review crops and evidence files of ``profile``'s cart are kept, in seconds."""
    return profile.privacy.review_retention_hours * 3600.0


def sweep_expired(directory: Path, max_age_s: float, now: float | None = None) -> list[Path]:
    """Delete the files under ``directory`` last modified ``max_age_s`` or more ago.

    Age is counted from the file's modification time to ``now`` (wall-clock seconds, as
    ``time.time()``; the default), so ``max_age_s = 0`` deletes every file not written in
    the future. Subfolders are searched too; symbolic links are deleted by their own age and
    never followed. A file that vanishes between listing and deleting (another sweep, an
    upload that moved it) is skipped; a file that cannot be deleted is logged and skipped, so
    a periodic caller never stops on one bad file. A missing ``directory`` is an empty one.
    Returns the deleted paths.
    """
    if max_age_s < 0:
        raise ValueError(f"max_age_s must be >= 0, got {max_age_s}")
    cutoff = (time.time() if now is None else now) - max_age_s
    deleted: list[Path] = []
    pending = [directory]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as listing:
                entries = list(listing)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            log.warning("retention sweep cannot list %s: %s", folder, exc)
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(Path(entry.path))
                    continue
                if entry.stat(follow_symlinks=False).st_mtime > cutoff:
                    continue
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("retention sweep cannot delete %s: %s", entry.path, exc)
                continue
            deleted.append(Path(entry.path))
    if deleted:
        log.info("retention sweep deleted %d file(s) older than %.0f s under %s",
                 len(deleted), max_age_s, directory)
    else:
        log.debug("retention sweep: nothing older than %.0f s under %s", max_age_s, directory)
    return deleted


class RetentionSweeper:
    """:func:`sweep_expired` for a loop: call :meth:`tick` every pass, it sweeps once a minute.

    The first tick sweeps at once, so what expired while the cart was off goes at start-up.
    ``tick`` takes the loop's monotonic clock (interval) and reads the wall clock only for
    file ages, so a clock step neither stops nor floods the sweeps.
    """

    def __init__(
        self, directory: Path, max_age_s: float, interval_s: float = SWEEP_INTERVAL_S
    ) -> None:
        if max_age_s < 0:
            raise ValueError(f"max_age_s must be >= 0, got {max_age_s}")
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.directory = directory
        self.max_age_s = max_age_s
        self.interval_s = interval_s
        self._last: float | None = None

    def tick(self, now: float | None = None) -> list[Path]:
        """Sweep if ``interval_s`` passed since the last sweep (``now``: ``time.monotonic()``)."""
        now = time.monotonic() if now is None else now
        if self._last is not None and now - self._last < self.interval_s:
            return []
        self._last = now
        return sweep_expired(self.directory, self.max_age_s)
