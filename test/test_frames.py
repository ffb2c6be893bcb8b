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
    for stamp in [(3, 0), (1, 0), (2, 0)]:
        frames.add(stamp, "image", stamp)
    assert len(frames) == 2
    assert frames.newest().stamp == (3, 0)
    with pytest.raises(FrameNotFound, match="no frame with stamp 1.000"):
        frames.get((1, 0))
