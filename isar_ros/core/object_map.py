"""Where each taught object was last seen in the world: a running, robust estimate per object.

Observations (an object's world-frame centroid from one image, see :mod:`isar_ros.core.locate`) come
from any number of inference nodes. Per object the map keeps the last ``history`` positions and
reports their per-axis median, so a single wrong observation does not move it. An observation further
than ``moved_m`` from the estimate is held back; when ``moved_after`` such observations come in a row
(and agree with each other) the object has moved: the estimate restarts from them. The map is saved as
JSON beside the memory (``object_map.json``, written atomically, never pickled), and an object's entry
is dropped when the object is forgotten.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from isar_ros.core.memory_snapshot import MemoryFormatError

MAP_FILE = "object_map.json"
FORMAT = "isar_ros.object_map"


@dataclass
class MapEntry:
    object_id: int
    name: str
    frame_id: str
    positions: deque[np.ndarray] = field(default_factory=deque)  # the last few accepted centroids [m]
    extent: np.ndarray = field(default_factory=lambda: np.zeros(3))
    last_seen_s: float = 0.0
    confidence: float = 0.0
    observations: int = 0
    far: list[np.ndarray] = field(default_factory=list)  # observations held back as possible moves

    @property
    def position(self) -> np.ndarray:
        return np.median(np.stack(self.positions), axis=0)


class ObjectMap:
    """The object map; not thread-safe (the teach node calls it from its executor)."""

    def __init__(self, history: int = 15, moved_m: float = 0.25, moved_after: int = 3):
        self.history, self.moved_m, self.moved_after = history, moved_m, moved_after
        self.entries: dict[int, MapEntry] = {}

    def observe(
        self,
        object_id: int,
        name: str,
        position: np.ndarray,
        extent: np.ndarray,
        stamp_s: float,
        confidence: float,
        frame_id: str,
    ) -> bool:
        """Add one observation; returns whether the map's answer for this object changed."""
        position = np.asarray(position, float)
        if not np.isfinite(position).all():
            return False
        entry = self.entries.get(object_id)
        if entry is None or entry.frame_id != frame_id:
            entry = self.entries[object_id] = MapEntry(object_id, name, frame_id, deque(maxlen=self.history))
        if entry.positions and float(np.linalg.norm(position - entry.position)) > self.moved_m:
            entry.far = [*entry.far, position][-self.moved_after :]
            together = np.linalg.norm(np.stack(entry.far) - np.median(np.stack(entry.far), axis=0), axis=1)
            if len(entry.far) < self.moved_after or (together > self.moved_m).any():
                return False
            entry.positions = deque(
                entry.far, maxlen=self.history
            )  # it moved: start again from where it is now
            entry.observations = 0
            entry.far = []
        else:
            entry.far = []
            entry.positions.append(position)
        entry.name, entry.extent = name, np.asarray(extent, float)
        entry.last_seen_s, entry.confidence = float(stamp_s), float(confidence)
        entry.observations += 1
        return True

    def where(self, object_id: int) -> MapEntry | None:
        return self.entries.get(object_id)

    def forget(self, object_id: int) -> None:
        self.entries.pop(object_id, None)

    def keep_only(self, names: dict[int, str]) -> None:
        """Drop entries of objects no longer taught and follow renames (``names``: id -> name)."""
        for object_id in list(self.entries):
            if object_id not in names:
                del self.entries[object_id]
            else:
                self.entries[object_id].name = names[object_id]

    # ---- persistence ----------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": 1,
            "objects": [
                {
                    "id": e.object_id,
                    "name": e.name,
                    "frame_id": e.frame_id,
                    "positions": [p.tolist() for p in e.positions],
                    "extent": e.extent.tolist(),
                    "last_seen_s": e.last_seen_s,
                    "confidence": e.confidence,
                    "observations": e.observations,
                }
                for e in sorted(self.entries.values(), key=lambda e: e.object_id)
            ],
        }

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``object_map.json`` into ``directory`` atomically (temporary file, fsync, rename)."""
        path = Path(directory) / MAP_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{MAP_FILE}.", suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump(self.to_json(), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike, **options: Any) -> ObjectMap:
        """The map saved in ``directory`` (empty when there is none); MemoryFormatError naming the file."""
        path = Path(directory) / MAP_FILE
        result = cls(**options)
        if not path.is_file():
            return result
        try:
            raw = json.loads(path.read_text())
            if raw.get("format") != FORMAT:
                raise ValueError("not an isar_ros object map")
            for item in raw["objects"]:
                positions = [np.asarray(p, float) for p in item["positions"]]
                values = [
                    *np.concatenate(positions).tolist(),
                    *item["extent"],
                    item["last_seen_s"],
                    item["confidence"],
                ]
                if (
                    not positions
                    or any(p.shape != (3,) for p in positions)
                    or not all(math.isfinite(v) for v in values)
                ):
                    raise ValueError(f"object {item['id']}: positions must be finite (x, y, z) triples")
                result.entries[int(item["id"])] = MapEntry(
                    int(item["id"]),
                    str(item["name"]),
                    str(item["frame_id"]),
                    deque(positions, maxlen=result.history),
                    np.asarray(item["extent"], float),
                    float(item["last_seen_s"]),
                    float(item["confidence"]),
                    int(item["observations"]),
                )
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise MemoryFormatError(
                f"{path}: unreadable object map ({error}); move it away to start a new map"
            ) from error
        return result
