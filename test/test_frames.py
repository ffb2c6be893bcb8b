"""The teach node's frame buffer: parts of one stamp collected from topics that arrive in any order."""

import pytest

from isar_ros.core.frames import FrameBuffer, FrameNotFound


def test_newest_skips_a_stamp_whose_parts_have_not_all_arrived():
    frames = FrameBuffer(capacity=5)
    for part in ("image", "camera_info", "pose"):
        frames.add((1, 0), part, f"{part} 1")
    # The next frame's pose came first; its image and camera_info are still on their way.
    frames.add((2, 0), "pose", "pose 2")
    assert frames.newest("pose").stamp == (2, 0)
    complete = frames.newest("pose", "camera_info", "image")
    assert complete.stamp == (1, 0) and complete.get("image") == "image 1"
    frames.add((2, 0), "image", "image 2")
    frames.add((2, 0), "camera_info", "camera_info 2")
    assert frames.newest("pose", "camera_info", "image").stamp == (2, 0)
    assert frames.newest().stamp == (2, 0)


def test_newest_names_what_is_missing():
    frames = FrameBuffer(capacity=3)
    with pytest.raises(FrameNotFound, match="no camera frame received yet"):
        frames.newest()
    frames.add((1, 0), "image", "image 1")
    with pytest.raises(FrameNotFound, match="pose, camera_info, image with one stamp"):
        frames.newest("pose", "camera_info", "image")


def test_the_buffer_keeps_only_the_newest_stamps_in_order():
    frames = FrameBuffer(capacity=2)
    for stamp in [(1, 300_000_000), (1, 100_000_000), (1, 200_000_000)]:  # out of order, within 1 s
        frames.add(stamp, "image", stamp)
    assert len(frames) == 2
    assert frames.newest().stamp == (1, 300_000_000)
    with pytest.raises(FrameNotFound, match="no frame with stamp 1.100"):
        frames.get((1, 100_000_000))


def test_waiting_for_the_parts_of_a_stamp_returns_when_they_arrive_or_after_the_timeout():
    import threading
    import time

    buffer = FrameBuffer(5)
    buffer.add((7, 0), "image", "img")
    late = threading.Timer(0.05, lambda: buffer.add((7, 0), "depth", "d"))
    late.start()
    started = time.monotonic()
    parts = buffer.wait_for((7, 0), 5.0, ["depth"])
    late.join()
    assert parts == {"image": "img", "depth": "d"} and time.monotonic() - started < 4.0
    started = time.monotonic()
    assert buffer.wait_for((7, 0), 0.1, ["depth", "pose"]) == {"image": "img", "depth": "d"}
    assert time.monotonic() - started >= 0.09  # the pose never came: what there is, after the timeout
    assert buffer.wait_for((8, 0), 5.0, []) == {}  # nothing to wait for: at once
    # by default it waits for the parts being published: depth came a moment ago, so a new stamp waits
    # for its depth and gets it; no pose was ever published, so none is waited for
    parts = FrameBuffer(5)
    parts.add((1, 0), "depth", "d1")
    threading.Timer(0.05, lambda: parts.add((2, 0), "depth", "d2")).start()
    started = time.monotonic()
    assert parts.wait_for((2, 0), 5.0) == {"depth": "d2"} and time.monotonic() - started < 4.0


def test_time_jumping_back_starts_the_buffer_afresh_instead_of_evicting_the_new_frames():
    buffer = FrameBuffer(3)
    for k in range(5):
        buffer.add((1002, k * 100_000_000), "image", k)
    buffer.add((1002, 50_000_000), "depth", "late")  # a late part, not a jump: dropped as too old
    assert len(buffer) == 3 and buffer.parts((1002, 50_000_000)) == {}
    buffer.add((1000, 0), "depth", "d")  # the replay restarted at 1000 s
    buffer.add((1000, 0), "image", "i")
    assert buffer.parts((1000, 0)) == {"depth": "d", "image": "i"} and len(buffer) == 1
