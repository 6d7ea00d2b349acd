"""Choosing the still frames around an item event from the ring buffer."""

from __future__ import annotations

import numpy as np
import pytest

from cartos.sensors.camera import (
    EventFrameParams,
    EventFramePicker,
    Frame,
    FrameRing,
    as_bgr,
    pick_event_frames,
)
from cartos.sensors.camera import events as events_module
from cartos.sensors.camera.events import DEFAULT_EVENT_FRAMES
from tests.sensors.camera.scenes import Placement, basket_background, placement_sequence


def ring_of(*placements: Placement, limit: int | None = None) -> FrameRing:
    ring = FrameRing(max_frames=200)
    seq = 0
    for placement in placements:
        for t, image in placement.frames:
            if limit is not None and seq >= limit:
                return ring
            ring.push(Frame(image=as_bgr(image), t=t, seq=seq, source="test"))
            seq += 1
    return ring


@pytest.fixture(scope="module")
def placement() -> Placement:
    return placement_sequence(basket_background(seed=3))


@pytest.mark.parametrize("when", ["before", "onset", "middle", "settled"])
def test_still_frames_around_the_motion_show_the_item(placement: Placement, when: str) -> None:
    """Whatever moment the scale reports, the hand-free frames and the item are found."""
    t_event = {
        "before": placement.t_motion_start - 0.3,
        "onset": placement.t_motion_start + 0.05,
        "middle": (placement.t_motion_start + placement.t_motion_end) / 2,
        "settled": placement.t_motion_end + 0.25,
    }[when]
    ring = ring_of(placement)
    picked = pick_event_frames(ring, t_event)
    assert picked is not None
    assert picked.before.t < placement.t_motion_start
    assert picked.before.t >= placement.t_motion_start - 0.1  # the *last* still frame
    assert placement.t_motion_end - 0.1 <= picked.after.t <= placement.t_motion_end + 0.15
    assert picked.region is not None
    assert picked.region.iou(placement.item) >= 0.7
    assert picked.crop is not None
    crop_h, crop_w = picked.crop.shape[:2]
    assert crop_w >= placement.item.w and crop_h >= placement.item.h
    assert crop_w <= placement.item.w * 1.6 and crop_h <= placement.item.h * 1.6


def test_not_settled_yet_gives_none_then_an_answer(placement: Placement) -> None:
    moving_frames = 12 + 9  # still frames + most of the hand motion
    partial = ring_of(placement, limit=moving_frames)
    assert pick_event_frames(partial, placement.t_motion_start + 0.1) is None
    full = ring_of(placement)
    assert pick_event_frames(full, placement.t_motion_start + 0.1) is not None


def test_second_item_is_told_apart_from_the_first() -> None:
    first = placement_sequence(basket_background(seed=7), item_at=(60, 60), seed=7)
    t_next = first.frames[-1][0] + 1 / 15
    second = placement_sequence(
        first.final_scene, t0=t_next, item_at=(380, 300), item_size=(100, 80), seed=9
    )
    ring = ring_of(first, second)
    picked = pick_event_frames(ring, second.t_motion_start + 0.2)
    assert picked is not None and picked.region is not None
    assert picked.region.iou(second.item) >= 0.7
    assert picked.region.intersection_area(first.item) == 0


def test_no_motion_means_no_region() -> None:
    background = basket_background(seed=1)
    ring = FrameRing()
    rng = np.random.default_rng(0)
    for i in range(30):
        noisy = np.clip(background + rng.normal(0, 4, background.shape), 0, 255)
        ring.push(Frame(as_bgr(noisy.astype(np.uint8)), 10.0 + i / 15, i, "test"))
    picked = pick_event_frames(ring, 10.5)
    assert picked is not None
    assert picked.region is None and picked.crop is None
    assert picked.before.t <= 10.5 < picked.after.t


def test_a_long_settle_time_waits_for_more_still_frames(placement: Placement) -> None:
    ring = ring_of(placement)
    patient = EventFrameParams(settle_s=2.0)  # longer than the still tail of the recording
    assert pick_event_frames(ring, placement.t_motion_start, patient) is None


def test_empty_ring_gives_none() -> None:
    assert pick_event_frames(FrameRing(), 5.0) is None


def test_picker_asked_on_every_frame_answers_once_settled(placement: Placement) -> None:
    """As the runtime does: ask after each new frame until an answer comes."""
    picker = EventFramePicker()
    ring = FrameRing(max_frames=200)
    t_event = placement.t_motion_start + 0.2
    answer = None
    for seq, (t, image) in enumerate(placement.frames):
        ring.push(Frame(image=as_bgr(image), t=t, seq=seq, source="live"))
        if t >= t_event:
            answer = picker.pick(ring, t_event)
            if answer is not None:
                answered_at = t
                break
    assert answer is not None and answer.region is not None
    # not before the scene had stayed still for settle_s after the hand left
    assert answered_at >= answer.after.t + DEFAULT_EVENT_FRAMES.settle_s
    assert answered_at <= answer.after.t + DEFAULT_EVENT_FRAMES.settle_s + 0.1
    one_shot = pick_event_frames(ring_of(placement), t_event)
    assert one_shot is not None and one_shot.region is not None
    assert (answer.before.seq, answer.after.seq) == (one_shot.before.seq, one_shot.after.seq)
    assert answer.region == one_shot.region


def test_frames_observed_as_they_arrive_are_not_rescored_at_the_event(
    placement: Placement, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runtime scores motion per frame on arrival; the event then costs no rescoring."""
    picker = EventFramePicker()
    ring = FrameRing(max_frames=200)
    scores = []
    for seq, (t, image) in enumerate(placement.frames):
        frame = Frame(image=as_bgr(image), t=t, seq=seq, source="live")
        ring.push(frame)
        scores.append(picker.observe(frame))
    assert scores[0] is None and all(s is not None for s in scores[1:])
    assert max(s for s in scores[1:] if s is not None) > DEFAULT_EVENT_FRAMES.still_score

    t_event = placement.t_motion_start + 0.2
    one_shot = pick_event_frames(ring_of(placement), t_event)

    def no_rescoring(*_a: object, **_k: object) -> float:
        raise AssertionError("motion rescored at the event")

    monkeypatch.setattr(events_module, "motion_score", no_rescoring)
    answer = picker.pick(ring, t_event)
    assert answer is not None and answer.region is not None
    assert one_shot is not None
    assert (answer.before.seq, answer.after.seq) == (one_shot.before.seq, one_shot.after.seq)
    assert answer.region == one_shot.region
