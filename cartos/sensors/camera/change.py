"""Change detection: how much moved between frames, and where an item appeared.

Two questions drive item crops. *Is the scene still?* A motion score per frame
(the share of pixels that changed since the previous frame) tells when a hand
is in the basket and when it has left. *What changed?* Comparing a settled
frame from before an item event with a settled frame after it gives the box
the item occupies, which is what the recogniser must look at.

Both work on a small, blurred colour copy of the frames: small for speed on the
cart's CPU, blurred because that is the cheapest denoiser, colour because a
red packet can have exactly the grey level of the basket floor. Store lights
flicker and cameras adjust exposure and white balance, so before differencing
each channel of the "after" image is explained as an affine function of the
"before" image (``gain * before + offset``, fitted robustly so the item itself
does not skew the fit) and only what that fails to explain counts as change.
A brightness step of +20 % thus leaves no trace.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cartos.sensors.camera.region import Region


@dataclass(frozen=True)
class ChangeParams:
    """Knobs of the change detector, with why each default is what it is.

    ``work_width``: frames are shrunk to this width first. 320 px keeps the
    smallest product (about 1 % of the basket view) at hundreds of pixels while
    keeping a comparison at a few milliseconds whatever the camera resolution.

    ``blur_kernel``: Gaussian kernel (odd, pixels at work width). 5 removes
    sensor noise and JPEG blocking that would otherwise pass the threshold,
    without smearing an item's edge by more than a couple of pixels.

    ``diff_threshold``: levels (0..255, in the worst colour channel) of
    unexplained difference that count as changed. 25 sits well above blurred
    sensor noise (a few levels) and below the contrast between packaging and a
    basket floor.

    ``open_kernel`` / ``close_kernel``: morphology on the changed-pixel mask.
    Opening (3) removes isolated specks (noise, the basket's wire shimmering);
    closing (9) fills an item's interior where its colour happens to match
    the background, so one item gives one blob, not a ring.

    ``min_area_fraction``: blobs smaller than this share of the frame are
    ignored. 0.002 is a fifth of the smallest product's footprint, larger than
    any noise blob that survives opening.

    ``merge_fraction`` / ``merge_gap_fraction``: the reported box is the
    largest blob merged with blobs at least ``merge_fraction`` of its area
    (a two-part item, e.g. a bottle whose middle matches the background) or
    within ``merge_gap_fraction`` of the frame width of the box so far
    (fragments of the same item). Far, small blobs stay out: they are noise or
    a shadow, and including them would dilute the crop.

    ``max_gain_change``: the illumination fit may scale brightness by at most
    this factor either way; beyond it the change is not lighting but a blocked
    or moved camera, and the raw difference is reported.
    """

    work_width: int = 320
    blur_kernel: int = 5
    diff_threshold: float = 25.0
    open_kernel: int = 3
    close_kernel: int = 9
    min_area_fraction: float = 0.002
    merge_fraction: float = 0.2
    merge_gap_fraction: float = 0.03
    max_gain_change: float = 2.0

    def __post_init__(self) -> None:
        if self.work_width < 16:
            raise ValueError("work_width must be at least 16 pixels")
        if self.blur_kernel < 1 or self.blur_kernel % 2 == 0:
            raise ValueError("blur_kernel must be a positive odd number")


DEFAULT_CHANGE = ChangeParams()


def prepare(image: np.ndarray, params: ChangeParams = DEFAULT_CHANGE) -> np.ndarray:
    """The small, blurred float32 colour image (H×W×C) both questions are answered on.

    Colour, not grey: a red packet and a grey basket floor can have the same
    grey level, and a grey-only detector would not see the packet at all.
    """
    h, w = image.shape[:2]
    small = image
    if w > params.work_width:
        size = (params.work_width, max(1, round(h * params.work_width / w)))
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    k = params.blur_kernel
    blurred = cv2.GaussianBlur(small, (k, k), 0) if k > 1 else small
    prepared = blurred.astype(np.float32)
    return prepared if prepared.ndim == 3 else prepared[:, :, None]


FIT_STRIDE = 2
"""The illumination fit samples every second row and column: thousands of
samples pin down two numbers per channel, and the fit then costs less than the
difference image itself."""


@dataclass(frozen=True)
class _FitSamples:
    """Sampled pixel values, channel-major, and the products the least-squares fit sums."""

    x: np.ndarray  # (C, N) float64 "before" values
    y: np.ndarray  # (C, N) "after" values
    xx: np.ndarray
    xy: np.ndarray

    @classmethod
    def of(cls, before: np.ndarray, after: np.ndarray) -> _FitSamples:
        channels = before.shape[2]
        step = FIT_STRIDE
        x = before[::step, ::step].reshape(-1, channels).T.astype(np.float64, order="C")
        y = after[::step, ::step].reshape(-1, channels).T.astype(np.float64, order="C")
        return cls(x=x, y=y, xx=x * x, xy=x * y)

    def fit(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel least squares ``y ≈ gain * x + offset`` over the weighted samples."""
        n = max(float(weights.sum()), 1.0)
        x_mean = self.x @ weights / n
        y_mean = self.y @ weights / n
        var = self.xx @ weights / n - x_mean * x_mean
        cov = self.xy @ weights / n - x_mean * y_mean
        flat = var < 1e-3
        gain = np.where(flat, 1.0, cov / np.where(flat, 1.0, var))
        return gain, y_mean - gain * x_mean

    def residual(self, gain: np.ndarray, offset: np.ndarray) -> np.ndarray:
        """Largest channel's misprediction per sample."""
        predicted = gain[:, None] * self.x + offset[:, None]
        residual: np.ndarray = np.abs(self.y - predicted).max(axis=0)
        return residual


def _as_channels(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 3 else image[:, :, None]


def unexplained_difference(
    before: np.ndarray, after: np.ndarray, params: ChangeParams = DEFAULT_CHANGE
) -> np.ndarray:
    """Per-pixel change (H×W float32) between two prepared images that lighting does not explain.

    For each channel ``after`` is predicted as ``gain * before + offset`` and
    the largest channel's misprediction is the change. The fit uses sampled,
    unsaturated pixels (clipped ones do not follow a gain) and is refitted on
    the pixels it already explains within the threshold, so an item covering a
    good part of the view does not bend it. Predictions are clipped to 0..255
    like the camera's own output, so highlights that saturate are not change.
    """
    if before.shape != after.shape:
        raise ValueError(f"frames differ in size: {before.shape} vs {after.shape}")
    before = _as_channels(before)
    after = _as_channels(after)
    channels = before.shape[2]
    samples = _FitSamples.of(before, after)
    x, y = samples.x, samples.y
    usable = ((x > 4) & (x < 251) & (y > 4) & (y < 251)).all(axis=0)
    gain = np.ones(channels)
    offset = np.zeros(channels)
    inliers = usable
    for _ in range(3):
        if int(inliers.sum()) < 64:
            break
        gain, offset = samples.fit(np.asarray(inliers, dtype=np.float64))
        inliers = usable & (samples.residual(gain, offset) < params.diff_threshold)
    limit = params.max_gain_change
    if not bool(((gain >= 1.0 / limit) & (gain <= limit)).all()):
        gain, offset = np.ones(channels), np.zeros(channels)
    planes_before = cv2.split(before)
    planes_after = cv2.split(after)
    change: np.ndarray | None = None
    for c in range(channels):
        predicted = np.clip(planes_before[c] * float(gain[c]) + float(offset[c]), 0.0, 255.0)
        miss = cv2.absdiff(planes_after[c], predicted)
        change = miss if change is None else cv2.max(change, miss)
    assert change is not None
    return change


def motion_score(
    previous: np.ndarray, current: np.ndarray, params: ChangeParams = DEFAULT_CHANGE
) -> float:
    """Share (0..1) of pixels that changed between two prepared images."""
    changed = unexplained_difference(previous, current, params) > params.diff_threshold
    return float(changed.mean())


class MotionScorer:
    """Per-frame motion scores for a stream, preparing each frame once.

    ``update`` returns the score of a frame against the previous one (None for
    the first), which the runtime compares with a stillness threshold to know
    when a hand has left the basket.
    """

    def __init__(self, params: ChangeParams = DEFAULT_CHANGE) -> None:
        self.params = params
        self._previous: np.ndarray | None = None

    def update(self, image: np.ndarray) -> float | None:
        current = prepare(image, self.params)
        previous, self._previous = self._previous, current
        if previous is None or previous.shape != current.shape:
            return None
        return motion_score(previous, current, self.params)

    def reset(self) -> None:
        self._previous = None


def _changed_mask(before: np.ndarray, after: np.ndarray, params: ChangeParams) -> np.ndarray:
    diff = unexplained_difference(before, after, params)
    mask: np.ndarray = (diff > params.diff_threshold).astype(np.uint8)
    if params.open_kernel > 1:
        kernel = cv2.getStructuringElement(
            cv2.MORPH_ELLIPSE, (params.open_kernel, params.open_kernel)
        )
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    if params.close_kernel > 1:
        kernel = cv2.getStructuringElement(
            cv2.MORPH_ELLIPSE, (params.close_kernel, params.close_kernel)
        )
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
    return mask


def _merged_blobs(mask: np.ndarray, params: ChangeParams) -> Region | None:
    """The largest blob's box merged with its companions (see :class:`ChangeParams`)."""
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    min_area = params.min_area_fraction * mask.size
    blobs = sorted(
        (
            (int(stats[i, cv2.CC_STAT_AREA]), Region(*(int(v) for v in stats[i, :4])))
            for i in range(1, count)
            if stats[i, cv2.CC_STAT_AREA] >= min_area
        ),
        key=lambda blob: blob[0],
        reverse=True,
    )
    if not blobs:
        return None
    largest_area, box = blobs[0]
    rest = blobs[1:]
    max_gap = params.merge_gap_fraction * mask.shape[1]
    grew = True
    while grew and rest:
        grew = False
        for blob in list(rest):
            area, region = blob
            if area >= params.merge_fraction * largest_area or box.gap(region) <= max_gap:
                box = box.union(region)
                rest.remove(blob)
                grew = True
    return box


def changed_region(
    before: np.ndarray, after: np.ndarray, params: ChangeParams = DEFAULT_CHANGE
) -> Region | None:
    """Box (in ``after``'s pixels) of what changed between two settled frames; None if nothing.

    Both images must have the same size. Noise, flicker and global brightness
    changes give None; an item put in (or taken out) gives its bounding box.
    """
    if before.shape[:2] != after.shape[:2]:
        raise ValueError(f"frames differ in size: {before.shape[:2]} vs {after.shape[:2]}")
    prepared_after = prepare(after, params)
    return region_from_prepared(prepare(before, params), prepared_after, after.shape[:2], params)


def region_from_prepared(
    before: np.ndarray,
    after: np.ndarray,
    full_shape: tuple[int, ...],
    params: ChangeParams = DEFAULT_CHANGE,
) -> Region | None:
    """:func:`changed_region` for already prepared images of a ``full_shape`` frame."""
    box = _merged_blobs(_changed_mask(before, after, params), params)
    if box is None:
        return None
    full_h, full_w = int(full_shape[0]), int(full_shape[1])
    work_h, work_w = after.shape[:2]
    scaled = box.scaled(full_w / work_w, full_h / work_h)
    return Region.from_corners(
        max(0, scaled.x), max(0, scaled.y), min(full_w, scaled.x2), min(full_h, scaled.y2)
    )
