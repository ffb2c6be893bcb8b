"""The operator's click-by-click teaching session (rqt_image_view and RViz clicks).

1. ``arm(name)`` (or ``arm(object_id=N)`` to add views of a known object) starts a session;
2. each click adds a point on the newest frame - positive, negative, or a box corner, by ``mode``;
   all clicks of a session refer to the frame of its first click;
3. ``commit()`` returns what to teach (and ends the session); ``cancel()`` drops it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from isar_ros.core.prompt_mask import NEGATIVE, POSITIVE, Prompt, PromptError

MODES = ("positive", "negative", "box")
DEFAULT_MODE = "positive"


@dataclass
class ClickSession:
    name: str = ""
    object_id: int = 0
    mode: str = DEFAULT_MODE
    stamp: tuple[int, int] | None = None
    points: list[tuple[float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    corners: list[tuple[float, float]] = field(default_factory=list)

    @property
    def armed(self) -> bool:
        return bool(self.name) or bool(self.object_id)

    def arm(self, name: str = "", object_id: int = 0) -> str:
        """Start a session for a new object ``name`` or more views of ``object_id`` (named ``name``).

        Every session starts in the default click mode (positive), whatever the last one used."""
        if not name.strip() and not object_id:
            raise PromptError("give the object a name (or the id of a known object) to arm teaching")
        self._reset(name=name.strip(), object_id=object_id)
        what = f"'{self.name}'" + (f" (object {object_id}, adding a view)" if object_id else "")
        return f"armed: click on {what} (mode {self.mode}); commit when done"

    def set_mode(self, mode: str) -> str:
        if mode not in MODES:
            raise PromptError(f"click mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode
        if mode == "box":
            self.corners = []
        return f"click mode: {mode}" + (" (two clicks: opposite corners)" if mode == "box" else "")

    def click(self, u: float, v: float, stamp: tuple[int, int]) -> str:
        if not self.armed:
            raise PromptError("no object armed: publish its name on ~/arm first, then click")
        if self.stamp is None:
            self.stamp = stamp
        if self.mode == "box":
            self.corners = (self.corners + [(u, v)])[-2:]
            return "box corner 1 of 2" if len(self.corners) == 1 else "box set"
        self.points.append((u, v))
        self.labels.append(POSITIVE if self.mode == "positive" else NEGATIVE)
        return f"{self.mode} click {len(self.points)} at ({u:.0f}, {v:.0f})"

    def prompt(self) -> Prompt:
        box = None
        if len(self.corners) == 2:
            (x0, y0), (x1, y1) = self.corners
            box = np.array([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], np.float32)
        points = np.array(self.points, np.float32).reshape(-1, 2)
        return Prompt(points, np.array(self.labels, np.int32), box)

    def commit(self) -> tuple[str, int, tuple[int, int], Prompt]:
        """(name, object_id, stamp of the frame, prompt); the session ends."""
        if not self.armed:
            raise PromptError("nothing to commit: arm an object and click on it first")
        if self.stamp is None:
            raise PromptError(
                "no clicks yet: click on the object (or drag two box corners) before committing"
            )
        result = (self.name, self.object_id, self.stamp, self.prompt())
        self.cancel()
        return result

    def cancel(self) -> None:
        self._reset()

    def _reset(self, name: str = "", object_id: int = 0) -> None:
        self.name, self.object_id, self.mode, self.stamp = name, object_id, DEFAULT_MODE, None
        self.points, self.labels, self.corners = [], [], []
