"""Rates and latencies over a sliding window, for status reporting."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np


class RateMeter:
    """Events per second over the last ``window_s`` seconds."""

    def __init__(self, window_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.window_s, self.clock = window_s, clock
        self._times: deque[float] = deque()
        self._lock = threading.Lock()
        self.count = 0

    def tick(self) -> None:
        with self._lock:
            now = self.clock()
            self._times.append(now)
            self.count += 1
            self._trim(now)

    def rate(self) -> float:
        with self._lock:
            now = self.clock()
            self._trim(now)
            if len(self._times) < 2:
                return 0.0
            span = max(now - self._times[0], 1e-9)
            return (len(self._times) - 1) / span if span < self.window_s else len(self._times) / self.window_s

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()


class LatencyMeter:
    """Percentiles of the latencies (milliseconds) of the last ``window_s`` seconds, at most ``size`` of them:
    a stream that stopped reports no latency, not the last one it had."""

    def __init__(self, size: int = 300, window_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self._values: deque[tuple[float, float]] = deque(maxlen=size)
        self.window_s, self.clock = window_s, clock
        self._lock = threading.Lock()

    def add(self, milliseconds: float) -> None:
        with self._lock:
            self._values.append((self.clock(), milliseconds))

    def percentiles(self, *qs: float) -> list[float]:
        with self._lock:
            now = self.clock()
            while self._values and now - self._values[0][0] > self.window_s:
                self._values.popleft()
            if not self._values:
                return [float("nan")] * len(qs)
            values = [v for _, v in self._values]
            return [float(np.percentile(values, q)) for q in qs]


class RunningMean:
    """An exponentially weighted mean of recent durations (0 until the first)."""

    def __init__(self, weight: float = 0.2):
        self.value, self.weight = 0.0, weight

    def add(self, sample: float) -> None:
        self.value = sample if self.value == 0.0 else self.value + self.weight * (sample - self.value)


class StagePacer:
    """When a two-stage pipeline's first stage should take its next item.

    The second stage (post-processing, publishing) takes over an item at ``taken(now)`` and is done at
    ``done(now)``; the first stage (features) reports its durations with ``first_stage(seconds)``. An item
    started earlier than :meth:`start_at` would only wait for the second stage while newer input
    arrives: the first stage should start so late that it finishes just as the second becomes free.
    """

    def __init__(self) -> None:
        self.second, self.first = RunningMean(), RunningMean()
        self._taken = 0.0

    def taken(self, now: float) -> None:
        self._taken = now

    def done(self, now: float) -> None:
        self.second.add(now - self._taken)

    def first_stage(self, seconds: float) -> None:
        self.first.add(seconds)

    def start_at(self) -> float:
        """The monotonic time at which to start the first stage of the next item."""
        return self._taken + self.second.value - self.first.value
