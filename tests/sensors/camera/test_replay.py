"""Replay sources: image folders, video files and scripted scenarios behind the camera API."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from cartos.sensors.camera import (
    FrameFormatError,
    ImageDirectoryReplay,
    ReplaySourceError,
    ScenarioOrderError,
    ScenarioReplay,
    SourceStateError,
    VideoFileReplay,
)
from tests.sensors.camera.scenes import index_of, numbered_frame, write_video


def image_folder(folder: Path, count: int, suffix: str = ".png") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        assert cv2.imwrite(str(folder / f"frame_{i:04d}{suffix}"), numbered_frame(i))
    return folder


def test_folder_replays_in_name_order_with_stamped_times(tmp_path: Path) -> None:
    folder = image_folder(tmp_path / "frames", 7)
    (folder / "notes.txt").write_text("not an image, not counted")
    with ImageDirectoryReplay(folder, fps=10.0, realtime=False, origin=50.0) as source:
        frames = list(source.frames(idle_timeout=5.0))
        assert source.exhausted
    assert [index_of(f.image, 7) for f in frames] == list(range(7))
    assert [f.seq for f in frames] == list(range(7))
    assert [f.t for f in frames] == pytest.approx([50.0 + i / 10 for i in range(7)])
    assert source.stats.frames == 7 and source.stats.errors == 0
    assert all(f.image.shape == (120, 160, 3) and not f.image.flags.writeable for f in frames)


def test_broken_images_are_skipped_and_counted(tmp_path: Path) -> None:
    folder = image_folder(tmp_path / "frames", 6)
    (folder / "frame_0001.png").write_bytes(b"\x89PNG this is not really a png")
    (folder / "frame_0003.png").write_bytes(b"")
    good_png = cv2.imencode(".png", numbered_frame(4))[1].tobytes()
    (folder / "frame_0004.png").write_bytes(good_png[:40])  # truncated
    with ImageDirectoryReplay(folder, fps=10.0, realtime=False, origin=0.0) as source:
        frames = list(source.frames(idle_timeout=5.0))
    assert [index_of(f.image, 6) for f in frames] == [0, 2, 5]
    # skipped files keep their time slots, so later frames keep their recorded times
    assert [f.t for f in frames] == pytest.approx([0.0, 0.2, 0.5])
    stats = source.stats
    assert stats.errors == 3
    assert stats.last_error is not None and "frame_0004" in stats.last_error


def test_looping_folder_cycles_with_increasing_times(tmp_path: Path) -> None:
    folder = image_folder(tmp_path / "frames", 3)
    with ImageDirectoryReplay(folder, fps=5.0, loop=True, realtime=False, origin=0.0) as source:
        frames = [source.read(5.0) for _ in range(8)]
    assert all(f is not None for f in frames)
    assert [index_of(f.image, 3) for f in frames if f] == [0, 1, 2, 0, 1, 2, 0, 1]
    times = [f.t for f in frames if f]
    assert times == pytest.approx([i / 5 for i in range(8)])


def test_looping_over_only_broken_images_ends_instead_of_spinning(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"nope")
    with ImageDirectoryReplay(folder, loop=True, realtime=False) as source:
        assert source.read(5.0) is None
        deadline = time.monotonic() + 5
        while not source.exhausted and time.monotonic() < deadline:
            time.sleep(0.01)
        assert source.exhausted
    assert source.stats.frames == 0
    assert source.stats.errors == 2  # the failed image, then the refusal to loop


def test_realtime_folder_is_paced(tmp_path: Path) -> None:
    folder = image_folder(tmp_path / "frames", 5)
    start = time.monotonic()
    with ImageDirectoryReplay(folder, fps=20.0) as source:
        frames = list(source.frames(idle_timeout=5.0))
        origin = source.origin
    elapsed = time.monotonic() - start
    assert len(frames) == 5
    assert origin is not None and origin >= start
    assert elapsed >= 4 / 20  # frame 4 is due 0.2 s after frame 0


def test_missing_or_empty_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ReplaySourceError):
        ImageDirectoryReplay(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReplaySourceError):
        ImageDirectoryReplay(tmp_path / "empty")
    with pytest.raises(ReplaySourceError):
        ImageDirectoryReplay(image_folder(tmp_path / "ok", 1), fps=0.0)


def test_video_file_replays_every_frame_at_its_rate(tmp_path: Path) -> None:
    video = tmp_path / "basket.avi"
    write_video(str(video), [numbered_frame(i) for i in range(12)], fps=25.0)
    source = VideoFileReplay(video, realtime=False, origin=10.0)
    assert source.fps == 25.0 and source.frame_count == 12
    with source:
        frames = list(source.frames(idle_timeout=5.0))
    assert [index_of(f.image, 12) for f in frames] == list(range(12))
    assert [f.t for f in frames] == pytest.approx([10.0 + i / 25 for i in range(12)])
    assert source.stats.errors == 0


def test_video_file_loops_and_fps_can_be_overridden(tmp_path: Path) -> None:
    video = tmp_path / "short.avi"
    write_video(str(video), [numbered_frame(i) for i in range(4)], fps=25.0)
    with VideoFileReplay(video, fps=8.0, loop=True, realtime=False, origin=0.0) as source:
        frames = [source.read(5.0) for _ in range(10)]
    assert [index_of(f.image, 4) for f in frames if f] == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    assert frames[-1] is not None and frames[-1].t == pytest.approx(9 / 8)


def test_unusable_video_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ReplaySourceError):
        VideoFileReplay(tmp_path / "absent.avi")
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"definitely not a video" * 10)
    with pytest.raises(ReplaySourceError):
        VideoFileReplay(junk)


def test_scenario_frames_appear_at_their_times(tmp_path: Path) -> None:
    path = tmp_path / "two.png"
    cv2.imwrite(str(path), numbered_frame(2))
    scenario = ScenarioReplay()
    scenario.push(0.05, numbered_frame(1))
    scenario.push(0.25, path)
    with scenario:
        first = scenario.read(5.0)
        assert first is not None
        seen_first = time.monotonic()
        scenario.push(0.3, numbered_frame(3))  # pushed while running
        scenario.finish()
        rest = list(scenario.frames(idle_timeout=5.0))
        seen_last = time.monotonic()
    origin = scenario.origin
    assert origin is not None
    assert [index_of(f.image, 4) for f in [first, *rest]] == [1, 2, 3]
    assert [f.t - origin for f in [first, *rest]] == pytest.approx([0.05, 0.25, 0.3])
    assert seen_first >= origin + 0.05  # never early
    assert seen_last >= origin + 0.3
    assert scenario.exhausted


def test_scenario_without_realtime_is_immediate_and_lossless(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 truncated jpeg")
    scenario = ScenarioReplay(realtime=False, origin=1000.0, max_queue=2)
    for i in range(10):
        scenario.push(60.0 * i, broken if i == 4 else numbered_frame(i))
    scenario.finish()
    start = time.monotonic()
    with scenario:
        frames = list(scenario.frames(idle_timeout=5.0))
    assert time.monotonic() - start < 5.0  # ten minutes of scenario, no waiting
    assert [index_of(f.image, 10) for f in frames] == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    assert frames[-1].t == 1000.0 + 540.0
    assert scenario.stats.drops == 0 and scenario.stats.errors == 1


def test_scenario_keeps_its_own_copy_of_pushed_arrays() -> None:
    image = numbered_frame(0)
    scenario = ScenarioReplay(realtime=False)
    scenario.push(0.0, image)
    image[:] = 255
    scenario.finish()
    with scenario:
        frame = scenario.read(5.0)
    assert frame is not None and index_of(frame.image, 1) == 0


def test_scenario_refuses_bad_pushes() -> None:
    scenario = ScenarioReplay(realtime=False)
    scenario.push(1.0, numbered_frame(0))
    with pytest.raises(ScenarioOrderError):
        scenario.push(0.5, numbered_frame(1))
    with pytest.raises(FrameFormatError):
        scenario.push(2.0, np.zeros((4, 4, 3), np.float64))
    scenario.finish()
    with pytest.raises(ScenarioOrderError):
        scenario.push(3.0, numbered_frame(2))


def test_a_lagging_reader_loses_the_oldest_frames_and_they_are_counted() -> None:
    scenario = ScenarioReplay(max_queue=3)  # realtime: behaves like a camera
    for i in range(8):
        scenario.push(0.0, numbered_frame(i))
    scenario.finish()
    with scenario:
        deadline = time.monotonic() + 5
        while scenario.stats.frames < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        frames = list(scenario.frames(idle_timeout=1.0))
        latest = scenario.latest()
    assert [f.seq for f in frames] == [5, 6, 7]
    assert scenario.stats.drops == 5
    assert latest is not None and latest.seq == 7


def test_concurrent_readers_get_each_frame_once(tmp_path: Path) -> None:
    folder = image_folder(tmp_path / "frames", 40, suffix=".jpg")
    seen: list[int] = []
    lock = threading.Lock()
    with ImageDirectoryReplay(folder, realtime=False, max_queue=4) as source:

        def reader() -> None:
            for frame in source.frames(idle_timeout=5.0):
                with lock:
                    seen.append(frame.seq)

        readers = [threading.Thread(target=reader) for _ in range(3)]
        for thread in readers:
            thread.start()
        for thread in readers:
            thread.join(10)
    assert sorted(seen) == list(range(40))


def test_lifecycle_is_enforced_and_stop_joins_the_thread(tmp_path: Path) -> None:
    source = ImageDirectoryReplay(image_folder(tmp_path / "f", 3), loop=True, name="lifecycle")
    with pytest.raises(SourceStateError):
        source.read(0.1)
    source.start()
    with pytest.raises(SourceStateError):
        source.start()
    assert source.read(5.0) is not None
    source.stop()
    assert not any(t.name == "camera-lifecycle" for t in threading.enumerate())
    assert source.exhausted
    start = time.monotonic()
    assert source.read(2.0) is None  # unread frames are dropped on stop
    assert time.monotonic() - start < 1.0
