"""Recent camera frames keyed by stamp, with the messages that share that stamp.

The teach node keeps the last few frames so that a prompt (a click, a service call) can refer to the
frame it was made on. Image, depth, camera info and camera pose of one frame carry identical stamps
(as drivers and the sim bridge publish them); :class:`FrameBuffer` collects them per stamp - the
exact-time pairing ``message_filters.TimeSynchronizer`` gives where it is installed.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from isar_ros.errors import ConfigurationError, InvalidInput

Stamp = tuple[int, int]  # (sec, nanosec)
JUMP_BACK_S = 1.0  # a part this much older than every held frame means time jumped back
LIVE_S = 1.0  # a part (topic) counts as being published when one arrived this recently


class FrameNotFound(InvalidInput):
    """A prompt refers to a frame the buffer does not hold (too old, or none received yet)."""


def stamp_of(header: Any) -> Stamp:
    return int(header.stamp.sec), int(header.stamp.nanosec)


def stamp_seconds(stamp: Stamp) -> float:
    return stamp[0] + stamp[1] * 1e-9


@dataclass
class BufferedFrame:
    stamp: Stamp
    parts: dict[str, Any] = field(default_factory=dict)  # "image", "depth", "camera_info", "pose" -> message

    def get(self, name: str) -> Any:
        return self.parts.get(name)


class FrameBuffer:
    """The newest ``capacity`` stamps, each with the parts received for it. Thread-safe."""

    def __init__(self, capacity: int = 30):
        if capacity < 1:
            raise ConfigurationError("the frame buffer needs room for at least one frame")
        self.capacity = capacity
        self._frames: OrderedDict[Stamp, BufferedFrame] = OrderedDict()
        self._lock = threading.Condition()
        self._seen: dict[str, float] = {}  # part name -> when one last arrived (monotonic)

    def add(self, stamp: Stamp, name: str, message: Any) -> None:
        """Add one part of the frame ``stamp``. A stamp more than ``JUMP_BACK_S`` older than every frame
        held means time jumped back (a replay restarted, a new scene): the old frames are dropped, else
        the new ones would be evicted at once as the oldest."""
        with self._lock:
            frame = self._frames.get(stamp)
            if frame is None and self._frames:
                oldest = next(iter(self._frames))
                if stamp_seconds(stamp) < stamp_seconds(oldest) - JUMP_BACK_S:
                    self._frames.clear()
            if frame is None:
                frame = self._frames[stamp] = BufferedFrame(stamp)
                self._frames = OrderedDict(sorted(self._frames.items()))
                while len(self._frames) > self.capacity:
                    self._frames.popitem(last=False)
            frame.parts[name] = message
            self._seen[name] = time.monotonic()
            self._lock.notify_all()

    def get(self, stamp: Stamp) -> BufferedFrame:
        """The frame with exactly this stamp; KeyError with the buffer's time span otherwise."""
        with self._lock:
            frame = self._frames.get(stamp)
            if frame is None or "image" not in frame.parts:
                raise FrameNotFound(self._missing(stamp))
            return frame

    def newest(self, *needed: str) -> BufferedFrame:
        """The newest frame holding every part in ``needed`` (default: the image).

        Parts of one stamp arrive on separate topics in any order, so the newest stamp may still be
        incomplete; this skips back to the newest complete one.
        """
        needed = needed or ("image",)
        with self._lock:
            for frame in reversed(self._frames.values()):
                if all(part in frame.parts for part in needed):
                    return frame
            received = bool(self._frames)
        if not received:
            raise FrameNotFound("no camera frame received yet; is the camera publishing on the image topic?")
        raise FrameNotFound(
            f"none of the last {len(self)} frames has all of {', '.join(needed)} with one stamp; "
            "check that these topics are published with identical header stamps"
        )

    def parts(self, stamp: Stamp) -> dict[str, Any]:
        """The parts received so far for exactly this stamp (empty when none)."""
        with self._lock:
            frame = self._frames.get(stamp)
            return dict(frame.parts) if frame is not None else {}

    def wait_for(self, stamp: Stamp, timeout_s: float, needed: Iterable[str] | None = None) -> dict[str, Any]:
        """The parts of exactly this stamp once every part in ``needed`` is there, or what arrived within
        ``timeout_s`` (parts of one stamp come on separate topics, and may come after the image).
        ``needed`` defaults to the parts being published: one of them arrived in the last ``LIVE_S``."""
        with self._lock:
            if needed is None:
                now = time.monotonic()
                needed = [name for name, seen in self._seen.items() if now - seen < LIVE_S]
            wanted = tuple(needed)
            self._lock.wait_for(
                lambda: all(part in self._frames.get(stamp, BufferedFrame(stamp)).parts for part in wanted),
                timeout=timeout_s,
            )
            frame = self._frames.get(stamp)
            return dict(frame.parts) if frame is not None else {}

    def clear(self) -> None:
        with self._lock:
            self._frames.clear()

    def __len__(self) -> int:
        return len(self._frames)

    def _missing(self, stamp: Stamp) -> str:
        if not self._frames:
            return f"no frame with stamp {stamp_seconds(stamp):.3f}: no camera frame received yet"
        first, last = next(iter(self._frames)), next(reversed(self._frames))
        return (
            f"no frame with stamp {stamp_seconds(stamp):.3f} in the buffer (it holds {len(self._frames)} "
            "frames, "
            f"{stamp_seconds(first):.3f} .. {stamp_seconds(last):.3f}); prompt a recent frame or send the "
            "image with the request"
        )
