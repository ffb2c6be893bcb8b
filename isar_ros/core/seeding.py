"""Seeds from content, so that results do not depend on what a process did before."""

from __future__ import annotations

import zlib

import numpy as np


def content_seed(array: np.ndarray) -> int:
    """A 31-bit seed from an array's bytes (sampled), the same in every process (unlike ``hash()``)."""
    raw = np.ascontiguousarray(array).view(np.uint8).ravel()
    return zlib.crc32(raw[:: max(1, raw.size // 65536)].tobytes()) & 0x7FFFFFFF
