"""Prompt -> object mask: SAM when its checkpoint is found, OpenCV GrabCut otherwise.

Like SAM's predictor, the cost is split: ``set_image`` once per frame (SAM's image encoder), then
``predict`` per object prompted on that frame (cheap)::

    predictor = GrabCutPredictor()               # or create_mask_predictor() (isar_ros.core.mask_predictors)
    predictor.set_image(rgb)
    mask = predictor.predict(Prompt.from_isar(point_xy=(120, 80), box_xyxy=(90, 50, 160, 130)))
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np

from isar_ros.core.seeding import content_seed
from isar_ros.errors import InvalidInput

POSITIVE, NEGATIVE = 1, 0
# Click-only prompts: the window sides tried (fractions of the image's longer side), and the width of
# the ring a candidate mask is compared with (a fraction of the square root of its area). Relative,
# so they hold at any resolution; first guesses, not tuned (docs/evaluation.md, "Teaching masks").
CLICK_WINDOWS = (0.08, 0.14, 0.22, 0.32, 0.45, 0.6)
RING_FRACTION = 0.15
LAB_BINS = [6, 8, 8]
# A clicked GrabCut component no larger than this many times the click disks grew nothing around the click
# (the click hit a spot GrabCut's colour model put in the background): the largest component is kept too.
# First guess, not tuned (DAVIS libby: 64 px clicked, 6967 px largest; the taught mask was 1 % of the dog).
CLICK_GREW_NOTHING = 4.0
# A box drawn around an object is crossed by it on every row and column (the tight-box prior of Lempitsky
# et al., "Image segmentation with a bounding box prior", ICCV 2009). Where GrabCut's mask misses more than
# this share of the box's rows or of its columns, its colour models have lost part of the object (a box that
# fills most of the image leaves the background model outside it little but the object's own colours:
# PerSeg's cat was taught as its head); each missed line's most object-like pixel then becomes sure
# foreground and GrabCut runs again from its result. It assumes a box drawn close around the object (ISAR's
# prompts are the visible mask's box): a box more than twice the object's size can be pinned on background.
# Not tuned (one half: what a box twice the object's size leaves uncrossed); docs/evaluation.md, "A drawn box
# is crossed by its object".
BOX_UNCROSSED = 0.5
# OpenCV's GrabCut colour models (1 x 65): 5 Gaussians (5 weights, 5 x 3 means, 5 x 3 x 3 covariances).
GMM_COMPONENTS = 5
# Refining a found mask (`refine: grabcut`): the crop's margin (a fraction of the mask's box), its working
# size (pixels, longer side; and pixels per feature patch: finer than a patch is all refinement needs) and
# the share of the mask's depth that is sure foreground. Chosen on the dev suite's found masks
# (docs/evaluation.md, "Refining found masks").
REFINE_MARGIN = 0.25
REFINE_MAX_SIDE = 160
REFINE_CELL = 4.0
REFINE_CORE = 0.6


def _crop_window(
    box: Sequence[float] | np.ndarray, margin: float, shape: tuple[int, int]
) -> tuple[int, int, int, int]:
    """The inclusive pixel box (x0, y0, x1, y1) GrabCut works in: ``box`` grown by ``margin`` of its size
    and 4 px on every side, clipped to an image of ``shape`` (rows, cols)."""
    x0, y0, x1, y1 = box
    height, width = shape
    pad_x, pad_y = (x1 - x0 + 1) * margin + 4, (y1 - y0 + 1) * margin + 4
    return (
        int(max(x0 - pad_x, 0)),
        int(max(y0 - pad_y, 0)),
        int(min(x1 + pad_x, width - 1)),
        int(min(y1 + pad_y, height - 1)),
    )


class PromptError(InvalidInput):
    """A prompt that cannot be used; the message says what is wrong and what to do."""


@dataclass
class Prompt:
    """Clicked pixels and/or a box on one image. x = column, y = row, pixels of the full image."""

    points_xy: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    labels: np.ndarray = field(
        default_factory=lambda: np.zeros(0, np.int32)
    )  # POSITIVE or NEGATIVE per point
    box_xyxy: np.ndarray | None = None  # x_min, y_min, x_max, y_max (inclusive)

    @classmethod
    def from_isar(
        cls, point_xy: Sequence[float] | None = None, box_xyxy: Sequence[float] | None = None
    ) -> Prompt:
        """A positive click and/or a box (x_min, y_min, x_max, y_max, inclusive), as ISAR prompts are."""
        points = np.asarray([point_xy], np.float32) if point_xy is not None else np.zeros((0, 2), np.float32)
        return cls(
            points,
            np.ones(len(points), np.int32),
            None if box_xyxy is None else np.asarray(box_xyxy, np.float32),
        )

    def validate(self, width: int, height: int) -> None:
        """Raise :class:`PromptError` unless the prompt is usable on a ``width`` x ``height`` image."""
        points = (
            np.asarray(self.points_xy, dtype=np.float64).reshape(-1, 2)
            if np.size(self.points_xy)
            else np.zeros((0, 2))
        )
        labels = np.asarray(self.labels).ravel()
        if len(labels) != len(points):
            raise PromptError(
                f"{len(points)} points but {len(labels)} labels; give one label (1 = object, 0 = not) per "
                "point"
            )
        if not np.isfinite(points).all():
            raise PromptError("a prompt point is NaN or infinite")
        if len(labels) and not np.isin(labels, (POSITIVE, NEGATIVE)).all():
            raise PromptError(
                f"point labels must be 1 (object) or 0 (not the object), got {sorted(set(labels.tolist()))}"
            )
        for x, y in points:
            if not (0 <= x < width and 0 <= y < height):
                raise PromptError(
                    f"point ({x:g}, {y:g}) is outside the {width}x{height} image; click inside the image"
                )
        if self.box_xyxy is not None:
            box = np.asarray(self.box_xyxy, dtype=np.float64).ravel()
            if box.shape != (4,) or not np.isfinite(box).all():
                raise PromptError("the box needs 4 finite numbers: x_min, y_min, x_max, y_max")
            x0, y0, x1, y1 = box
            if x1 <= x0 or y1 <= y0:
                raise PromptError(
                    f"the box {box.tolist()} is empty (x_max must exceed x_min and y_max y_min); drag a "
                    "larger box"
                )
            if x0 < 0 or y0 < 0 or x1 > width - 1 or y1 > height - 1:
                raise PromptError(
                    f"the box {box.tolist()} reaches outside the {width}x{height} image (x 0..{width - 1}, "
                    f"y 0..{height - 1}); drag the box inside the image"
                )
            for (x, y), label in zip(points, labels, strict=False):
                if label == POSITIVE and not (x0 <= x <= x1 and y0 <= y <= y1):
                    raise PromptError(
                        f"the object click ({x:g}, {y:g}) lies outside the box {box.tolist()}; "
                        "click on the object inside the box, or drag the box around the click"
                    )
        if not (labels == POSITIVE).any() and self.box_xyxy is None:
            raise PromptError(
                "the prompt has neither a positive point nor a box; click on the object or drag a box "
                "around it"
            )

    def clipped_box(self, width: int, height: int) -> np.ndarray | None:
        if self.box_xyxy is None:
            return None
        x0, y0, x1, y1 = np.asarray(self.box_xyxy, np.float64).ravel()
        return np.array([max(x0, 0), max(y0, 0), min(x1, width - 1), min(y1, height - 1)])


class MaskPredictor(ABC):
    """Prompt -> mask for one image at a time."""

    name = "mask_predictor"

    @abstractmethod
    def set_image(self, rgb: np.ndarray) -> None:
        """The expensive step, once per image (H x W x 3 uint8 RGB)."""

    @abstractmethod
    def predict(self, prompt: Prompt) -> np.ndarray:
        """Boolean H x W mask of the prompted object."""

    def for_another_thread(self) -> MaskPredictor | None:
        """An independent predictor with the same settings that may run beside this one in another
        thread, or None when this kind must run one image at a time (SAM: one large shared model)."""
        return None

    def refine(self, mask: np.ndarray, cell: float = 1.0) -> np.ndarray:
        """A coarse mask of the current image (H x W bool, not empty) made precise; ``cell``: the side
        of the patches it was made from (pixels), a hint of how coarse it is. By default the mask
        predicted from a prompt made of it (the mask's pixel nearest its centroid and its box)."""
        ys, xs = np.nonzero(mask)
        centre = int(np.argmin((xs - xs.mean()) ** 2 + (ys - ys.mean()) ** 2))
        return self.predict(
            Prompt(
                np.array([[xs[centre], ys[centre]]], np.float32),
                np.array([POSITIVE]),
                np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float32),
            )
        )


class GrabCutPredictor(MaskPredictor):
    """OpenCV GrabCut from a box and/or clicks: the offline default.

    Works on a crop around the prompt (the box with a margin), scaled down to at most ``max_side``
    pixels. Positive clicks are sure foreground, negative clicks sure background. Of the result, the
    connected component under the positive clicks (or the largest) is kept, and the largest too where the
    clicked one is hardly more than the clicks' own disks (``CLICK_GREW_NOTHING``); a mask that misses more
    than half of a drawn box's rows or columns is pinned across it first (``BOX_UNCROSSED``); if GrabCut finds
    nothing, the box (or the window, below) is returned so that teaching never silently fails.

    Clicks without a box say where the object is but not how large it is. GrabCut then runs once per
    window of ``click_windows`` (squares around the clicks, as fractions of the image's longer side;
    inside probable foreground, outside probable background) and keeps the mask that stands out most
    from its surroundings: the product of its colour contrast with a ring around it (total variation
    distance of Lab histograms) and the image gradient along its outline (relative to the image's
    mean). A window smaller than the object cuts it where there is no edge; a larger one takes in
    background of other colours, which lowers the contrast with the ring. On the dev data this
    chose better than any single window (docs/evaluation.md, "Teaching masks").
    """

    name = "grabcut"

    def __init__(
        self,
        iterations: int = 2,
        max_side: int = 256,
        click_radius: int = 3,
        margin: float = 0.15,
        click_windows: Sequence[float] = CLICK_WINDOWS,
    ):
        self.iterations, self.max_side, self.click_radius = iterations, max_side, click_radius
        self.margin, self.click_windows = margin, tuple(click_windows)
        self.image: np.ndarray | None = None
        # Of the current image, made on its first click-only prompt: Lab colours, relative gradient.
        self._lab: np.ndarray | None = None
        self._gradient: np.ndarray | None = None

    def set_image(self, rgb: np.ndarray) -> None:
        # GrabCut's models do not care about the colour order; OpenCV's is BGR (and its conversion is
        # about ten times faster than numpy's reversed-axis copy).
        self.image = cv2.cvtColor(np.asarray(rgb, np.uint8), cv2.COLOR_RGB2BGR)
        self._lab = self._gradient = None

    def for_another_thread(self) -> GrabCutPredictor:
        # OpenCV releases the GIL in grabCut, and its RNG (seeded per call) is per thread: the masks are
        # the same in any thread.
        return GrabCutPredictor(
            self.iterations, self.max_side, self.click_radius, self.margin, self.click_windows
        )

    def predict(self, prompt: Prompt) -> np.ndarray:
        if self.image is None:
            raise RuntimeError("call set_image() before predict()")
        height, width = self.image.shape[:2]
        prompt.validate(width, height)
        points = np.asarray(prompt.points_xy, np.float64).reshape(-1, 2)
        labels = np.asarray(prompt.labels).ravel()
        box = prompt.clipped_box(width, height)
        if box is not None:
            return self._segment(box, points, labels, False)
        positives = points[labels == POSITIVE]
        low, high = positives.min(axis=0), positives.max(axis=0)
        windows = [
            np.clip(
                np.concatenate([low - half, high + half]), 0, [width - 1, height - 1, width - 1, height - 1]
            )
            for half in (fraction * max(width, height) / 2 for fraction in self.click_windows)
        ]
        # GrabCut releases the GIL, and its RNG is seeded per call in the calling thread: the windows
        # run side by side with the same result as one after another.
        with ThreadPoolExecutor(min(len(windows), os.cpu_count() or 1)) as pool:
            candidates = list(pool.map(lambda window: self._segment(window, points, labels, True), windows))
        return max(candidates, key=self._standing_out)

    def _segment(
        self,
        box: np.ndarray,
        points: np.ndarray,
        labels: np.ndarray,
        inside_is_probable: bool,
    ) -> np.ndarray:
        """GrabCut on a crop around ``box``: inside probable foreground, outside (probable) background."""
        assert self.image is not None
        height, width = self.image.shape[:2]
        positives = points[labels == POSITIVE]
        x0, y0, x1, y1 = box
        cx0, cy0, cx1, cy1 = _crop_window(box, self.margin, (height, width))
        crop = self.image[cy0 : cy1 + 1, cx0 : cx1 + 1]
        scale = min(1.0, self.max_side / max(crop.shape[:2]))
        small = (
            cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else crop
        )
        sh, sw = small.shape[:2]
        to_small = lambda x, y: (int(round((x - cx0) * scale)), int(round((y - cy0) * scale)))  # noqa: E731
        init = np.full((sh, sw), cv2.GC_BGD, np.uint8)
        bx0, by0 = to_small(x0, y0)
        bx1, by1 = to_small(x1, y1)
        init[max(by0, 0) : by1 + 1, max(bx0, 0) : bx1 + 1] = cv2.GC_PR_FGD
        if inside_is_probable:
            init[init == cv2.GC_BGD] = cv2.GC_PR_BGD
        for (x, y), label in zip(points, labels, strict=False):
            cv2.circle(
                init,
                to_small(x, y),
                self.click_radius,
                int(cv2.GC_FGD if label == POSITIVE else cv2.GC_BGD),
                -1,
            )
        result = init.copy()
        models = None
        if (result == cv2.GC_PR_FGD).any() or (result == cv2.GC_FGD).any():
            models = _grabcut(small, result, self.iterations)
            if models is None:
                result = init  # degenerate colour models (e.g. a flat image): keep the prompt itself
        foreground = _foreground(result)
        if models is not None and not inside_is_probable and foreground.any():
            foreground = self._cross_box(small, result, foreground, (bx0, by0, bx1, by1), *models)
        mask_small = self._keep_prompted_component(
            foreground, [to_small(x, y) for x, y in positives], self.click_radius
        )
        if not mask_small.any():
            mask_small = init == cv2.GC_PR_FGD
        mask = np.zeros((height, width), bool)
        full = cv2.resize(
            mask_small.astype(np.uint8), (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_NEAREST
        )
        mask[cy0 : cy1 + 1, cx0 : cx1 + 1] = full.astype(bool)
        return mask

    def _cross_box(
        self,
        small: np.ndarray,
        result: np.ndarray,
        foreground: np.ndarray,
        box: tuple[int, int, int, int],
        bgd: np.ndarray,
        fgd: np.ndarray,
    ) -> np.ndarray:
        """GrabCut's ``foreground`` of ``result`` (labels on ``small``), made to cross the drawn ``box``
        (pixels of ``small``) where it misses more than :data:`BOX_UNCROSSED` of its rows or columns: on
        every missed line the pixel most likely foreground under the colour models ``bgd`` / ``fgd`` becomes
        sure foreground, and GrabCut runs again from ``result``."""
        height, width = result.shape
        x0, y0 = max(box[0], 0), max(box[1], 0)
        x1, y1 = min(box[2], width - 1), min(box[3], height - 1)
        inside = foreground[y0 : y1 + 1, x0 : x1 + 1]
        rows, cols = np.flatnonzero(~inside.any(axis=1)), np.flatnonzero(~inside.any(axis=0))
        if len(rows) <= BOX_UNCROSSED * inside.shape[0] and len(cols) <= BOX_UNCROSSED * inside.shape[1]:
            return foreground
        pixels = small[y0 : y1 + 1, x0 : x1 + 1].reshape(-1, 3).astype(np.float64)
        odds = (_gmm_log_likelihood(fgd, pixels) - _gmm_log_likelihood(bgd, pixels)).reshape(inside.shape)
        pinned = result.copy()
        pinned[y0 + rows, x0 + np.argmax(odds[rows], axis=1)] = cv2.GC_FGD
        pinned[y0 + np.argmax(odds[:, cols], axis=0), x0 + cols] = cv2.GC_FGD
        return foreground if _grabcut(small, pinned, self.iterations) is None else _foreground(pinned)

    def refine(self, mask: np.ndarray, cell: float = 1.0) -> np.ndarray:
        """A coarse mask of the current image (H x W bool) snapped to the object's colour edges.

        One GrabCut iteration on a crop around the mask (its box grown by :data:`REFINE_MARGIN` of its
        size), scaled down to at most :data:`REFINE_MAX_SIDE` pixels and so that a ``cell`` (the side
        of the patches the mask was made from, pixels) is :data:`REFINE_CELL` pixels: the mask's core
        (pixels at least :data:`REFINE_CORE` of the deepest pixel's distance from its outline) is sure
        foreground, the rest of the mask probable foreground, the rest of the crop probable background
        and the crop's border sure background. Of the result, the components that overlap the mask are
        kept (brought back to the image's size by linear interpolation: nearest-neighbour makes jagged
        edges); a result that GrabCut cannot give (degenerate colour models) or that is empty keeps the mask.
        """
        assert self.image is not None
        height, width = self.image.shape[:2]
        rows, cols = np.nonzero(mask)
        if len(rows) == 0:
            return mask
        box = (cols.min(), rows.min(), cols.max(), rows.max())
        cx0, cy0, cx1, cy1 = _crop_window(box, REFINE_MARGIN, (height, width))
        crop = self.image[cy0 : cy1 + 1, cx0 : cx1 + 1]
        inside: np.ndarray = mask[cy0 : cy1 + 1, cx0 : cx1 + 1].astype(np.uint8)
        scale = min(1.0, REFINE_MAX_SIDE / max(crop.shape[:2]), REFINE_CELL / max(cell, 1e-6))
        if scale < 1:
            size = (max(int(round(crop.shape[1] * scale)), 1), max(int(round(crop.shape[0] * scale)), 1))
            crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
            inside = cv2.resize(inside, size, interpolation=cv2.INTER_NEAREST)
        init = np.where(inside > 0, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
        border = np.zeros(init.shape, bool)
        border[[0, -1], :] = True
        border[:, [0, -1]] = True
        init[border & (inside == 0)] = cv2.GC_BGD
        depth = cv2.distanceTransform(inside, cv2.DIST_L2, 3)
        if depth.max() == 0:
            return mask
        init[depth >= REFINE_CORE * depth.max()] = cv2.GC_FGD
        result = init.copy()
        if _grabcut(crop, result, 1) is None:
            return mask
        foreground = _foreground(result).astype(np.uint8)
        _, components = cv2.connectedComponents(foreground, connectivity=8)
        overlapping = np.unique(components[(inside > 0) & (foreground > 0)])
        kept = np.isin(components, overlapping[overlapping > 0]).astype(np.uint8)
        refined = np.zeros((height, width), bool)
        refined[cy0 : cy1 + 1, cx0 : cx1 + 1] = (
            cv2.resize(
                kept.astype(np.float32), (cx1 - cx0 + 1, cy1 - cy0 + 1), interpolation=cv2.INTER_LINEAR
            )
            > 0.5
        )
        return refined if refined.any() else mask

    def _standing_out(self, mask: np.ndarray) -> float:
        """How much a candidate mask stands out: its colour contrast with a ring around it times the
        image gradient along its outline (relative to the image's mean gradient)."""
        assert self.image is not None
        if self._lab is None or self._gradient is None:
            self._lab = cv2.cvtColor(self.image, cv2.COLOR_BGR2LAB)
            gray = cv2.cvtColor(self.image, cv2.COLOR_BGR2GRAY).astype(np.float32)
            gradient = np.hypot(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1))
            self._gradient = gradient / max(float(gradient.mean()), 1e-6)
        rows, cols = np.nonzero(mask)
        if len(rows) == 0:
            return 0.0
        radius = max(3, int(RING_FRACTION * np.sqrt(len(rows))))
        height, width = mask.shape
        around = (  # the mask's bounding box grown by the ring
            slice(max(rows.min() - radius, 0), min(rows.max() + radius + 1, height)),
            slice(max(cols.min() - radius, 0), min(cols.max() + radius + 1, width)),
        )
        inside = mask[around].astype(np.uint8)
        # Pixels within ``radius`` of the mask (a distance transform: a dilation by a disc this wide
        # costs the disc's area per pixel).
        ring = (cv2.distanceTransform(1 - inside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE) <= radius).astype(
            np.uint8
        ) & (1 - inside)
        if not ring.any():  # the mask fills the image: nothing to compare it with
            return 0.0
        lab = self._lab[around]
        inner, outer = (
            cv2.calcHist([lab], [0, 1, 2], part, LAB_BINS, [0, 256, 0, 256, 0, 256]).ravel()
            for part in (inside, ring)
        )
        colour = 0.5 * float(np.abs(inner / inner.sum() - outer / outer.sum()).sum())  # total variation
        outline = inside - cv2.erode(inside, np.ones((3, 3), np.uint8))
        return colour * float(self._gradient[around][outline > 0].mean())

    @staticmethod
    def _keep_prompted_component(
        mask: np.ndarray, clicks: list[tuple[int, int]], click_radius: int
    ) -> np.ndarray:
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        if count <= 1:
            return mask
        keep = {
            labels[y, x]
            for x, y in clicks
            if 0 <= y < mask.shape[0] and 0 <= x < mask.shape[1] and labels[y, x] > 0
        }
        side = 2 * click_radius + 1
        disk = np.count_nonzero(
            cv2.circle(np.zeros((side, side), np.uint8), (click_radius, click_radius), click_radius, 1, -1)
        )
        grew_nothing = stats[list(keep), cv2.CC_STAT_AREA].sum() <= CLICK_GREW_NOTHING * disk * len(clicks)
        if not keep or grew_nothing:
            keep.add(1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA])))
        return np.isin(labels, list(keep))


def _grabcut(image: np.ndarray, labels: np.ndarray, iterations: int) -> tuple[np.ndarray, np.ndarray] | None:
    """GrabCut on ``image`` from ``labels`` (updated in place); its colour models (background, foreground), or
    None where it cannot make them (degenerate colours, e.g. a flat image). Its k-means initialisation uses
    OpenCV's RNG (one per thread), seeded here from the content: the same input, the same mask."""
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.setRNGSeed(content_seed(labels) ^ content_seed(image))
        cv2.grabCut(image, labels, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)  # type: ignore[call-overload]
    except cv2.error:
        return None
    return bgd, fgd


def _foreground(labels: np.ndarray) -> np.ndarray:
    """GrabCut's labels -> its foreground (sure or probable)."""
    return (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)


def _gmm_log_likelihood(model: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Log-likelihood of ``pixels`` (N x 3) under one of OpenCV GrabCut's colour models (1 x 65)."""
    k = GMM_COMPONENTS
    weights, means = model[0, :k], model[0, k : 4 * k].reshape(k, 3)
    covariances = model[0, 4 * k :].reshape(k, 3, 3)  # OpenCV keeps them invertible (it adds 0.01 where not)
    total = np.full(len(pixels), -np.inf)
    for weight, mean, covariance in zip(weights, means, covariances, strict=True):
        sign, log_det = np.linalg.slogdet(covariance)
        if weight <= 0 or sign <= 0:
            continue
        offset = pixels - mean
        distance = np.einsum("ni,ij,nj->n", offset, np.linalg.inv(covariance), offset)
        total = np.logaddexp(total, np.log(weight) - 0.5 * (3 * np.log(2 * np.pi) + log_det + distance))
    return total
