"""Privacy by design: no file or outbound message holds a camera frame, crops are masked and expire.

The unit tests pin each rule of :mod:`cartos.runtime.privacy` (masking, the full-frame guard,
retention); the trip test plays a real simulated shopping trip and then searches everything it
left behind (every file, every outbox message) for frames and for anything naming a shopper.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import socket
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from cartos.basket.events import ReviewQueued
from cartos.errors import CartosError
from cartos.fusion.catalogue_view import CatalogueItem, CatalogueView
from cartos.fusion.policy import FusionPolicy
from cartos.profiles import PrivacyConfig, ProfileError, load_profile
from cartos.profiles.loader import load_profile_file
from cartos.runtime.decider import NO_CROP, DeciderSettings, EventDecider
from cartos.runtime.errors import PrivacyError
from cartos.runtime.item_events import ItemEvent
from cartos.runtime.privacy import (
    DEFAULT_MAX_CROP_SHARE,
    NEUTRAL_GREY,
    RetentionSweeper,
    assert_not_full_frame,
    masked_crop,
    retention_seconds,
    review_crop,
    sweep_expired,
)
from cartos.runtime.simulation import FRAME_H, FRAME_W, SimulatedStore, Step, run_trip
from cartos.sensors.bridge.events import Settled
from cartos.sensors.camera import EventFrames, Frame, FrameRing, Region
from tests.profiles.conftest import shipped_text
from tests.sensors.camera.scenes import basket_background, place, product_image

H, W = 480, 640
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
# Signatures of an encoded image or a numpy array dump, wherever they sit in a file.
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"\x93NUMPY")


def noise_frame(seed: int = 0, shape: tuple[int, ...] = (H, W, 3)) -> np.ndarray:
    """A frame in which every pixel differs from its neighbours, so any misplaced copy shows."""
    frame: np.ndarray = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    return frame


def outside(box: Region, inner: Region) -> np.ndarray:
    """Mask (box-sized) of the pixels of ``box`` that lie outside ``inner``."""
    mask = np.ones((box.h, box.w), bool)
    mask[inner.y - box.y : inner.y2 - box.y, inner.x - box.x : inner.x2 - box.x] = False
    return mask


# -- masking ---------------------------------------------------------------------------------


def test_masked_crop_greys_the_margin_and_copies_the_box_exactly() -> None:
    frame = noise_frame()
    region = Region(100, 120, 200, 150)
    box = region.padded(0.1, W, H)

    crop = masked_crop(frame, region, 0.1)

    assert crop.shape == (box.h, box.w, 3)
    assert (box.w, box.h) == (240, 180)
    inside = crop[region.y - box.y : region.y2 - box.y, region.x - box.x : region.x2 - box.x]
    assert np.array_equal(inside, frame[region.y : region.y2, region.x : region.x2])
    margin = crop[outside(box, region)]
    assert margin.size > 0 and np.all(margin == NEUTRAL_GREY)
    assert not np.shares_memory(crop, frame)


def test_masked_crop_at_the_frame_edge_and_in_grey() -> None:
    frame = noise_frame(1, (H, W))
    region = Region(0, 400, 100, 80)  # touches the left and bottom edges
    box = region.padded(0.25, W, H)

    crop = masked_crop(frame, region, 0.25)

    assert crop.shape == (box.h, box.w) == (100, 125)
    assert np.array_equal(crop[20:, :100], frame[400:480, 0:100])
    assert np.all(crop[outside(box, region)] == NEUTRAL_GREY)


def test_masked_crop_refuses_a_region_outside_the_frame() -> None:
    with pytest.raises(ValueError, match="outside"):
        masked_crop(noise_frame(), Region(700, 10, 50, 50), 0.1)


# -- the full-frame guard --------------------------------------------------------------------


def test_guard_refuses_a_whole_frame() -> None:
    frame = noise_frame()
    with pytest.raises(PrivacyError, match="whole 640x480 frame"):
        assert_not_full_frame(frame, frame.shape)
    with pytest.raises(PrivacyError, match="whole"):  # even when the share would allow it
        assert_not_full_frame(frame, frame.shape, max_share=1.0)
    assert issubclass(PrivacyError, CartosError)


def test_guard_refuses_a_crop_over_the_share_and_passes_an_item_crop() -> None:
    frame_shape = (H, W, 3)
    big = np.zeros((400, 600, 3), np.uint8)  # 78 % of the frame
    with pytest.raises(PrivacyError, match="78%"):
        assert_not_full_frame(big, frame_shape)
    assert_not_full_frame(big, frame_shape, max_share=0.9)
    assert_not_full_frame(np.zeros((204, 204, 3), np.uint8), frame_shape)
    at_limit = np.zeros((H, round(W * DEFAULT_MAX_CROP_SHARE)), np.uint8)
    assert_not_full_frame(at_limit, frame_shape)  # exactly the share is allowed
    with pytest.raises(ValueError):
        assert_not_full_frame(big, frame_shape, max_share=0.0)


def test_review_crop_of_a_region_as_large_as_the_view_is_refused() -> None:
    with pytest.raises(PrivacyError):
        review_crop(noise_frame(), Region(10, 10, 620, 460), 0.1)
    crop = review_crop(noise_frame(), Region(200, 150, 120, 100), 0.1)
    assert crop.shape == (120, 144, 3)


# -- the decider writes only masked, bounded crops ------------------------------------------------


def settled_add(t: float, grams: float = 300.0) -> ItemEvent:
    return ItemEvent("w:0:1", Settled(1, t, 0, grams, grams))


def basket_ring(after: np.ndarray) -> FrameRing:
    """Two seconds of the empty basket at 10 frames/s, then two seconds of ``after``."""
    ring = FrameRing(max_frames=64)
    empty = basket_background()
    for i in range(40):
        ring.push(Frame(empty if i < 20 else after, t=i / 10, seq=i, source="test"))
    return ring


@pytest.fixture
def decider(tmp_path: Path) -> EventDecider:
    """A decider without a recogniser: the review-crop path needs none."""
    catalogue = CatalogueView([CatalogueItem("sku-1", "Tin", weight_g=1000.0, weight_tol_g=10.0)])
    return EventDecider(None, catalogue, FusionPolicy(), tmp_path / "review")


def test_saved_review_crop_is_the_masked_item_box(decider: EventDecider) -> None:
    scene, item = place(basket_background(), product_image(150, 110, seed=3), 250, 180)
    ring = basket_ring(scene)
    frames = decider.picker.pick(ring, 2.0)
    assert frames is not None and frames.region is not None
    assert frames.region.iou(item) > 0.8

    path = decider._save_crop(settled_add(2.0), frames)

    assert path is not None and path.parent == decider.review_dir
    stored = cv2.imread(str(path))
    assert stored is not None
    box = frames.region.padded(decider.picker.params.crop_pad, W, H)
    assert stored.shape == (box.h, box.w, 3)
    assert stored.shape[0] < H and stored.shape[1] < W
    # JPEG smears edges by a few pixels: look at the margin away from the box's border.
    margin = outside(box, frames.region)
    core = cv2.erode(margin.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    assert core.sum() > 0
    assert np.abs(stored[core].astype(int) - NEUTRAL_GREY).max() <= 12
    # The recognition crop (in RAM) still has the context the recogniser wants.
    assert frames.crop is not None and frames.crop.shape == stored.shape
    assert not np.allclose(frames.crop[core], NEUTRAL_GREY, atol=12)


def test_a_crop_the_size_of_the_view_is_not_written(decider: EventDecider) -> None:
    before = Frame(basket_background(), t=0.0, seq=0, source="test")
    after = Frame(noise_frame(), t=1.0, seq=1, source="test")
    for region in (Region(0, 0, W, H), Region(30, 20, 580, 440)):
        frames = EventFrames(before, after, region, region.crop(after.image))
        assert decider._save_crop(settled_add(1.0), frames) is None
    assert not decider.review_dir.exists() or not any(decider.review_dir.iterdir())


def test_a_tight_share_from_the_profile_refuses_an_item_crop(tmp_path: Path) -> None:
    catalogue = CatalogueView([])
    strict = EventDecider(None, catalogue, FusionPolicy(), tmp_path / "review",
                          DeciderSettings(max_crop_share=0.01))
    scene, _ = place(basket_background(), product_image(150, 110, seed=3), 250, 180)
    frames = strict.picker.pick(basket_ring(scene), 2.0)
    assert frames is not None and frames.region is not None
    assert strict._save_crop(settled_add(2.0), frames) is None


@pytest.mark.parametrize(
    ("covered", "stored"),
    [(Region(250, 180, 150, 110), True), (Region(10, 10, 620, 460), False)],
    ids=["item", "view-covered"],
)
def test_decide_records_a_masked_crop_or_no_crop(
    decider: EventDecider, monkeypatch: pytest.MonkeyPatch, covered: Region, stored: bool
) -> None:
    scene, _ = place(basket_background(), product_image(covered.w, covered.h, seed=5),
                     covered.x, covered.y)
    ring = basket_ring(scene)
    seen = decider.picker.pick(ring, 2.0)
    assert seen is not None and seen.region is not None and seen.region.iou(covered) > 0.8

    def frames_only(
        event: ItemEvent, ring: FrameRing | None
    ) -> tuple[None, EventFrames | None, None, float]:
        assert ring is not None
        return None, decider.picker.pick(ring, event.t), None, 0.0

    monkeypatch.setattr(decider, "_vision", frames_only)
    decision = decider.decide(settled_add(2.0), ring, [])

    assert decision.decision == "unknown"  # nothing identified it: it goes to review
    written = sorted(decider.review_dir.glob("*")) if decider.review_dir.exists() else []
    if stored:
        assert decision.crop_path != NO_CROP and [Path(decision.crop_path)] == written
        image = cv2.imread(decision.crop_path)
        assert image is not None and image.shape[0] < H and image.shape[1] < W
    else:
        assert decision.crop_path == NO_CROP and written == []
    reviews = [c for c in decision.commands if isinstance(c, ReviewQueued)]
    assert [c.crop_path for c in reviews] == [decision.crop_path]


# -- retention -------------------------------------------------------------------------------


def aged(path: Path, age_s: float, now: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"crop")
    os.utime(path, (now - age_s, now - age_s))
    return path


def test_sweep_deletes_only_what_outlived_the_retention(tmp_path: Path) -> None:
    now = 1_800_000_000.0
    retention = 72 * 3600.0
    old = [aged(tmp_path / "w_0_1.jpg", retention + 60, now),
           aged(tmp_path / "evidence" / "w_0_2.json", retention * 3, now),
           aged(tmp_path / "w_0_3.jpg", retention, now)]
    young = [aged(tmp_path / "w_0_4.jpg", retention - 60, now),
             aged(tmp_path / "evidence" / "w_0_5.json", 0, now)]

    deleted = sweep_expired(tmp_path, retention, now=now)

    assert sorted(deleted) == sorted(old)
    assert not any(p.exists() for p in old)
    assert all(p.exists() for p in young)
    assert sweep_expired(tmp_path, retention, now=now) == []


def test_sweep_with_zero_retention_deletes_everything_written_so_far(tmp_path: Path) -> None:
    files = [aged(tmp_path / f"w_0_{i}.jpg", 0.5, 1_000.0) for i in range(3)]
    assert sorted(sweep_expired(tmp_path, 0, now=1_000.0)) == files
    with pytest.raises(ValueError):
        sweep_expired(tmp_path, -1)


def test_sweep_tolerates_a_file_deleted_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = 5_000.0
    raced = aged(tmp_path / "a.jpg", 100, now)
    kept = aged(tmp_path / "b.jpg", 100, now)
    real_unlink = os.unlink

    def unlink_after_someone_else(path: str | os.PathLike[str]) -> None:
        if Path(path) == raced:
            real_unlink(path)  # another sweep (or an upload) got there first
        real_unlink(path)

    monkeypatch.setattr("cartos.runtime.privacy.os.unlink", unlink_after_someone_else)
    deleted = sweep_expired(tmp_path, 10, now=now)

    assert deleted == [kept]
    assert not raced.exists() and not kept.exists()


def test_sweep_of_a_missing_folder_finds_nothing(tmp_path: Path) -> None:
    assert sweep_expired(tmp_path / "review", 0) == []


def test_sweeper_sweeps_at_once_then_once_per_interval(tmp_path: Path) -> None:
    sweeper = RetentionSweeper(tmp_path, max_age_s=0, interval_s=60)
    first = tmp_path / "1.jpg"
    first.write_bytes(b"crop")  # written now: expired at once for a zero retention
    assert sweeper.tick(now=100.0) == [first]
    second = tmp_path / "2.jpg"
    second.write_bytes(b"crop")
    assert sweeper.tick(now=130.0) == []  # within the minute
    assert second.exists()
    assert sweeper.tick(now=160.0) == [second]


def sim_with_privacy(folder: Path, lines: str) -> Path:
    path = folder / "sim.toml"
    path.write_text(shipped_text("sim") + f"\n[privacy]\n{lines}\n", encoding="utf-8")
    return path


def test_retention_comes_from_the_profile(tmp_path: Path) -> None:
    assert retention_seconds(load_profile("sim")) == 72 * 3600.0
    assert load_profile("sim").privacy == PrivacyConfig()
    text = "review_retention_hours = 0.5\nmax_crop_share = 0.4"
    profile = load_profile_file(sim_with_privacy(tmp_path, text))
    assert retention_seconds(profile) == 1800.0
    assert profile.privacy.max_crop_share == 0.4


@pytest.mark.parametrize(
    "line",
    ["review_retention_hours = -1.0", "review_retention_hours = 1000.0", "max_crop_share = 1.0",
     "max_crop_share = 0.0", "keep_frames = true"],
)
def test_privacy_section_rejects_bad_values(tmp_path: Path, line: str) -> None:
    with pytest.raises(ProfileError, match=r"privacy\."):
        load_profile_file(sim_with_privacy(tmp_path, line))


# -- a whole trip ----------------------------------------------------------------------------


def regular_files(root: Path) -> Iterator[Path]:
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink():
                yield path


def decoded_images(data: bytes) -> Iterator[tuple[int, np.ndarray | None]]:
    """Every image signature in ``data``: its offset and the image decoded from there."""
    for magic in IMAGE_MAGIC:
        for match in re.finditer(re.escape(magic), data):
            start = match.start()
            if magic == b"\x93NUMPY":
                yield start, None  # a raw array dump is never allowed
                continue
            image = cv2.imdecode(np.frombuffer(data[start:], np.uint8), cv2.IMREAD_UNCHANGED)
            if image is not None:
                yield start, image


def walk_json(value: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """(path, key, value) of every entry of a JSON document."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield f"{path}.{key}", str(key), item
            yield from walk_json(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from walk_json(item, f"{path}[{i}]")


IDENTIFYING_KEYS = {
    "frame", "frames", "image", "images", "img", "jpeg", "jpg", "png", "pixels", "photo", "face",
    "ip", "ip_address", "addr", "address", "mac", "mac_address", "hostname", "email", "phone",
    "user", "username", "shopper", "customer", "customer_id", "loyalty", "loyalty_id",
    "first_name", "last_name", "full_name", "card", "card_number",
}
BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{257,}={0,2}")
IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
MAC = re.compile(r"(?i)(?<![0-9a-f])(?:[0-9a-f]{2}[:-]){5}[0-9a-f]{2}(?![0-9a-f])")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


def test_a_trip_leaves_no_frame_in_any_file_or_message(
    sim_store: SimulatedStore, tmp_path: Path
) -> None:
    unknown_product = sorted(sim_store.unknown.values(), key=lambda p: p.sku)[0]
    run_trip(sim_store, [Step("put", unknown_product)], tmp_path)
    share = load_profile("sim").privacy.max_crop_share

    # Files: every image anywhere (standalone or embedded in another file) is a small crop.
    crops: list[tuple[Path, np.ndarray]] = []
    for path in regular_files(tmp_path):
        data = path.read_bytes()
        whole = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
        found = [(0, whole)] if whole is not None else list(decoded_images(data))
        for offset, image in found:
            assert image is not None, f"{path} holds a raw array dump at byte {offset}"
            h, w = image.shape[:2]
            assert h < FRAME_H and w < FRAME_W, f"{path}@{offset}: {w}x{h} is frame-sized"
            assert h * w <= share * FRAME_H * FRAME_W, f"{path}@{offset}: {w}x{h} too large"
            if offset == 0 and path.suffix.lower() in IMAGE_SUFFIXES:
                crops.append((path, image))
        if path.suffix.lower() in IMAGE_SUFFIXES:
            assert whole is not None, f"{path} is named an image but is not one"
    assert crops, "the unknown item should have left a review crop"
    for path, crop in crops:
        assert path.parent == tmp_path / "review"
        corner = crop[:4, :4].astype(int)  # in the masked margin of an item away from the edge
        assert np.abs(corner - NEUTRAL_GREY).max() <= 12, f"{path}: margin is not masked"

    # Messages for the hub: no images, no blobs, nothing naming a shopper.
    conn = sqlite3.connect(f"file:{tmp_path / 'basket.db'}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT stream, payload FROM outbox ORDER BY stream, seq").fetchall()
        review_paths = [r[0] for r in conn.execute("SELECT crop_path FROM review").fetchall()]
    finally:
        conn.close()
    assert rows and {"events", "review"} <= {stream for stream, _ in rows}
    assert any(Path(p).parent == tmp_path / "review" for p in review_paths)
    host = socket.gethostname()
    exemplars = 0
    for stream, text in rows:
        payload = json.loads(text)
        # The one image a message may carry: a review item's masked item crop (and the crop's
        # embedding), for the hub's attendant. It is checked as a crop here, then left out of
        # the search for anything else.
        exemplar = payload.get("command", {}).pop("exemplar", None)
        if exemplar is not None:
            assert stream == "review", f"{stream}: only review items carry an exemplar"
            assert set(exemplar) <= {"embedding_f16", "crop_jpeg"}, sorted(exemplar)
            if "crop_jpeg" in exemplar:
                data = base64.b64decode(exemplar["crop_jpeg"], validate=True)
                assert len(data) <= 64 * 1024 and data.startswith(b"\xff\xd8\xff")
                crop = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                assert crop is not None
                h, w = crop.shape[:2]
                assert h < FRAME_H and w < FRAME_W and h * w <= share * FRAME_H * FRAME_W
                corner = crop[:4, :4].astype(int)
                assert np.abs(corner - NEUTRAL_GREY).max() <= 12, "review: margin not masked"
                exemplars += 1
        for where, key, value in walk_json(payload):
            assert key.lower() not in IDENTIFYING_KEYS, f"{stream}{where}: key {key!r}"
            if key in ("session", "session_id") and isinstance(value, str):
                assert uuid.UUID(value).version == 4, f"{stream}{where}: {value!r} is not random"
            if not isinstance(value, str):
                continue
            for blob in BASE64_RUN.findall(value):
                raise AssertionError(f"{stream}{where}: {len(blob)}-char blob under {key!r}")
            assert not IPV4.search(value), f"{stream}{where}: IP address in {value!r}"
            assert not MAC.search(value), f"{stream}{where}: MAC address in {value!r}"
            assert not EMAIL.search(value), f"{stream}{where}: e-mail address in {value!r}"
            if len(host) >= 6:
                assert host not in value, f"{stream}{where}: host name in {value!r}"
            try:
                raw = base64.b64decode(value, validate=True) if len(value) >= 16 else b""
            except (binascii.Error, ValueError):
                raw = b""
            assert not raw.startswith(IMAGE_MAGIC), f"{stream}{where}: base64 image"
    assert exemplars, "the unknown item's review message should carry its masked crop"
