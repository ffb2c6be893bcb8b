"""Rates and latencies over a sliding window, for status reporting."""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np


class RateMeter:
    """Events per second over the last ``window_s`` seconds."""

    def __init__(self, window_s: float = 5.0, clock=time.monotonic):
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
    """Percentiles of the last ``size`` latencies (milliseconds)."""

    def __init__(self, size: int = 300):
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, milliseconds: float) -> None:
        with self._lock:
            self._values.append(milliseconds)

    def percentiles(self, *qs: float) -> list[float]:
        with self._lock:
            if not self._values:
                return [float("nan")] * len(qs)
            return [float(np.percentile(self._values, q)) for q in qs]
