"""Frame-to-frame tracking in the image: expect each object near where the last frame found it (``track``).

A camera stream is a video: between two frames an object moves a little, and a look-alike elsewhere in
the image (a wall of the same colour, another red thing) does not take its place. With ``track`` on, the
finder remembers, per object, the patches of the region it *surely* found in the previous frame (the same
"sure" as the pose prior: present even with the raised threshold). In the next frame that region, grown
by the distance an object may move between frames, is an :class:`~isar_ros.core.pose_prior.Expectation`
exactly like one of the pose prior, and acts the same way: a region touching it is preferred over stronger
ones elsewhere and needs ``track_weight`` x |threshold| less; regions away from it need that much more, and
only regions touching it are painted.

The memory is one frame deep, so it resets itself: an object that was not surely found in the previous
frame (hidden, left the view, doubted) has no expectation, and is found as without tracking. A jump of
the camera costs at most one frame: the object is doubted where it now is for that frame (and found if it
is strong enough), then the expectation is gone. Where the pose prior (depth and a pose) expects an
object, its expectation wins: it knows about camera motion, this one does not. Needs no depth, no pose.
"""

from __future__ import annotations

import cv2
import numpy as np

from isar_ros.core.pose_prior import Expectation

REACH_FRACTION = 0.5  # the region grows by this share of its own size (square root of its patch count)...
MIN_REACH = 1  # ...and by at least this many patches


class RegionTrack:
    """Per stream: the patch region of each object surely found in the previous frame."""

    def __init__(self) -> None:
        self.regions: dict[int, np.ndarray] = {}  # object id -> rows x cols bool

    def reset(self) -> None:
        self.regions = {}

    def keep_only(self, ids: set[int]) -> None:
        self.regions = {i: r for i, r in self.regions.items() if i in ids}

    def expect(self, ids: np.ndarray, grid_shape: tuple[int, int]) -> dict[int, Expectation]:
        """Per object index into ``ids`` found surely in the previous frame: its region grown by the reach."""
        result: dict[int, Expectation] = {}
        if not self.regions:
            return result
        for j in np.flatnonzero(np.isin(ids, list(self.regions))).tolist():  # not a loop over every object
            region = self.regions[int(ids[j])]
            if region.shape != grid_shape:
                continue  # not seen, or the stream changed resolution
            reach = max(MIN_REACH, int(round(REACH_FRACTION * np.sqrt(np.count_nonzero(region)))))
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))
            result[j] = Expectation(cv2.dilate(region.view(np.uint8), kernel).astype(bool))
        return result

    def update(self, sure_regions: dict[int, np.ndarray]) -> None:
        """After a frame: the regions (object id -> rows x cols bool) of the objects found surely; every
        other object's expectation ends."""
        self.regions = {i: r.copy() for i, r in sure_regions.items() if r.any()}
