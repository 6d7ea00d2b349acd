"""Choosing the frames that show an item event: the still scene before and after.

A weight event gives a time, but the frames at that time usually show a hand.
What the recogniser needs is the basket *before* the hand came in and *after*
it left: their difference is the item, unobstructed. This module finds the
burst of motion nearest the event in the ring buffer's recent history and
returns the last still frame before it, the first frame of the settled scene
after it, the changed region between the two and the crop of the item.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace

import numpy as np

from cartos.sensors.camera.change import (
    DEFAULT_CHANGE,
    ChangeParams,
    changed_region,
    motion_score,
    prepare,
)
from cartos.sensors.camera.frame import Frame
from cartos.sensors.camera.region import Region
from cartos.sensors.camera.ring import FrameRing


@dataclass(frozen=True)
class EventFrameParams:
    """How the frames around an event are chosen, and why the defaults.

    ``lookback_s`` / ``lookahead_s``: history searched around the event time.
    A weight reading settles up to about two seconds after the hand entered
    the view and a shopper's hand leaves within a couple of seconds, so 3 s on
    each side covers a placement without reaching back into the previous one
    (which would put two items into one diff).

    ``still_score``: a frame whose motion score (share of changed pixels since
    the previous frame) is at most this is still. 0.003 is far above what noise
    and flicker leave after blurring and the illumination fit (about 0) and
    far below a hand in view (several percent).

    ``settle_s``: the scene counts as settled only after staying still this
    long. 0.3 s bridges the brief pauses of a hand letting go of an item (which
    would otherwise yield an "after" frame with the hand in it) while adding
    little delay before the item is recognised.

    ``crop_pad``: the crop is the changed region grown by this fraction of its
    size on each side; the detected box hugs the changed pixels, and the
    recogniser does better with a little context than with a clipped edge.

    ``motion_width``: width the motion score (is the scene still?) is computed
    at, below the change detector's own width. Every frame the camera delivers
    is scored, so this is the per-frame cost of the camera path; a hand covers
    several percent of the view and stays obvious at 160 px, where a score
    costs about a third of one at 320 px. Where the item is (the changed
    region) is still found at the full work width.
    """

    lookback_s: float = 3.0
    lookahead_s: float = 3.0
    still_score: float = 0.003
    settle_s: float = 0.3
    crop_pad: float = 0.1
    motion_width: int = 160


DEFAULT_EVENT_FRAMES = EventFrameParams()


@dataclass(frozen=True, eq=False)
class EventFrames:
    """The still frames around an event, what changed between them and its crop.

    ``region`` and ``crop`` are None when the camera saw no change (an item put
    in outside the view, or a weight event from someone leaning on the cart).
    """

    before: Frame
    after: Frame
    region: Region | None
    crop: np.ndarray | None


def _still_run(moving: list[bool], start: int, step: int) -> int:
    """Index just past the run of still frames from ``start`` going ``step`` (+1 or -1)."""
    i = start
    while 0 <= i < len(moving) and not moving[i]:
        i += step
    return i


_FrameKey = tuple[str, int, float]


def _key(frame: Frame) -> _FrameKey:
    return (frame.source, frame.seq, frame.t)


class EventFramePicker:
    """Finds event frames repeatedly without rescoring the same frames.

    The runtime asks again and again while a hand is still in the basket, and
    most of the window was already scored on the previous call; scores (not
    images, which would cost megabytes) are remembered per frame pair, up to
    ``max_cached_scores`` pairs. Safe to share between threads.
    """

    def __init__(
        self,
        params: EventFrameParams = DEFAULT_EVENT_FRAMES,
        change: ChangeParams = DEFAULT_CHANGE,
        max_cached_scores: int = 2048,
    ) -> None:
        self.params = params
        self.change = change
        self.motion = replace(change, work_width=min(change.work_width, params.motion_width))
        self._max_cached = max_cached_scores
        self._scores: OrderedDict[tuple[_FrameKey, _FrameKey], float] = OrderedDict()
        self._lock = threading.Lock()
        self._last: tuple[_FrameKey, np.ndarray] | None = None

    def observe(self, frame: Frame) -> float | None:
        """Score ``frame`` against the previously observed one as it arrives.

        The runtime calls this for every frame it pushes into the ring, so the
        motion scoring is spread over the camera's frame rate instead of landing
        on the item event that needs the answer; :meth:`pick` then finds every
        score of the window already computed. Returns the score (None for the
        first frame, or after a change of frame size).
        """
        current = prepare(frame.image, self.motion)
        key = _key(frame)
        with self._lock:
            last, self._last = self._last, (key, current)
        if last is None or last[1].shape != current.shape:
            return None
        score = motion_score(last[1], current, self.motion)
        self._remember((last[0], key), score)
        return score

    def _remember(self, pair: tuple[_FrameKey, _FrameKey], score: float) -> None:
        with self._lock:
            self._scores[pair] = score
            while len(self._scores) > self._max_cached:
                self._scores.popitem(last=False)

    def motion_scores(self, frames: list[Frame]) -> list[float]:
        """Motion score of each frame against the one before it (0 for the first)."""
        prepared: dict[int, np.ndarray] = {}

        def prepared_at(i: int) -> np.ndarray:
            if i not in prepared:
                prepared[i] = prepare(frames[i].image, self.motion)
            return prepared[i]

        scores = [0.0]
        for i in range(1, len(frames)):
            pair = (_key(frames[i - 1]), _key(frames[i]))
            with self._lock:
                score = self._scores.get(pair)
            if score is None:
                previous, current = prepared_at(i - 1), prepared_at(i)
                same_size = previous.shape == current.shape
                score = motion_score(previous, current, self.motion) if same_size else 1.0
                self._remember(pair, score)
            scores.append(score)
        return scores

    def pick(self, ring: FrameRing, t_event: float) -> EventFrames | None:
        """See :func:`pick_event_frames`."""
        params = self.params
        history = ring.snapshot()
        times = [f.t for f in history]
        lo = bisect.bisect_left(times, t_event - params.lookback_s)
        hi = bisect.bisect_right(times, t_event + params.lookahead_s)
        first = max(0, lo - 1)  # one earlier frame, so the first in the window gets a score
        frames = history[first:hi]
        if not frames:
            return None
        moving = [s > params.still_score for s in self.motion_scores(frames)]
        chosen = _choose(times[first:hi], moving, t_event, params)
        if chosen is None:
            return None
        before, after = frames[chosen[0]], frames[chosen[1]]
        if before.image.shape != after.image.shape:
            return EventFrames(before=before, after=after, region=None, crop=None)
        region = changed_region(before.image, after.image, self.change)
        if region is None:
            return EventFrames(before=before, after=after, region=None, crop=None)
        crop = region.padded(params.crop_pad, after.width, after.height).crop(after.image)
        return EventFrames(before=before, after=after, region=region, crop=crop)


def pick_event_frames(
    ring: FrameRing,
    t_event: float,
    params: EventFrameParams = DEFAULT_EVENT_FRAMES,
    change: ChangeParams = DEFAULT_CHANGE,
) -> EventFrames | None:
    """Still frames before and after the motion nearest ``t_event``, the change and its crop.

    Returns None while the answer is not known yet: the scene has not stayed
    still for ``settle_s`` after the motion (call again when more frames have
    arrived), or the ring holds no still frame from before it. With no motion
    at all near the event, the frames just before the event and ``settle_s``
    after it are compared. Each call scores every frame in the window; a caller
    that asks repeatedly should keep an :class:`EventFramePicker` instead.
    """
    return EventFramePicker(params, change).pick(ring, t_event)


def _choose(
    times: list[float], moving: list[bool], t_event: float, params: EventFrameParams
) -> tuple[int, int] | None:
    """Indices of the before and after frames, or None when not decidable yet."""
    n = len(times)
    motion = [i for i in range(n) if moving[i]]
    if not motion:
        i_before = bisect.bisect_right(times, t_event) - 1
        i_after = bisect.bisect_left(times, t_event + params.settle_s)
        if i_before < 0 or i_after >= n:
            return None
        return i_before, i_after
    nearest = min(motion, key=lambda i: (abs(times[i] - t_event), times[i]))

    start = nearest
    while True:
        end_of_run = _still_run(moving, start - 1, -1)
        if end_of_run == start - 1:  # the previous frame moves too
            if end_of_run < 0:
                return None
            start = end_of_run
            continue
        bridged = end_of_run >= 0 and times[start - 1] - times[end_of_run + 1] < params.settle_s
        if not bridged:
            break
        start = end_of_run

    end = nearest
    while True:
        end_of_run = _still_run(moving, end + 1, +1)
        if end_of_run == end + 1:  # the next frame moves too, or there is none
            if end_of_run >= n:
                return None
            end = end_of_run
            continue
        settled = times[end_of_run - 1] - times[end + 1] >= params.settle_s
        if settled:
            return start - 1, end + 1
        if end_of_run >= n:
            return None  # still for too short a time so far: wait for more frames
        end = end_of_run
