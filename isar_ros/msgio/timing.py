"""Time of replayed scenes: every message of frame ``i`` is stamped ``start_s + i / SCENE_FPS``.

ISAR scenes are recorded at 30 frames per second; a replay (sim bridge, bag export, demo) starts
at :data:`REPLAY_START_S` of sim time unless told otherwise, far from 0 so that a stamp of zero is
never a valid frame.
"""

from __future__ import annotations

import math

SCENE_FPS = 30.0
REPLAY_START_S = 1000.0

Stamp = tuple[int, int]  # (sec, nanosec), as builtin_interfaces/Time holds it


def frame_seconds(index: int, start_s: float = REPLAY_START_S) -> float:
    """Sim time in seconds of frame ``index`` of a scene replayed from ``start_s``."""
    return start_s + index / SCENE_FPS


def split_seconds(seconds: float) -> Stamp:
    """Seconds -> (sec, nanosec) with 0 <= nanosec < 1e9."""
    sec = int(math.floor(seconds))
    nanosec = int(round((seconds - sec) * 1e9))
    if nanosec >= 1_000_000_000:
        sec, nanosec = sec + 1, nanosec - 1_000_000_000
    return sec, nanosec


def stamp_seconds(stamp: Stamp) -> float:
    return stamp[0] + stamp[1] * 1e-9


def frame_index(stamp: Stamp, start_s: float = REPLAY_START_S) -> int:
    """The frame index a replay stamp belongs to (rounded: stamps carry nanoseconds)."""
    return int(round((stamp_seconds(stamp) - start_s) * SCENE_FPS))
