"""Find every taught object in a frame: one matrix product, a presence decision, masks, a label image.

Per frame (:meth:`InstanceFinder.find`):

1. *scoring* - the frame's patch features (N x C) times the stacked classifier weights (C x K):
   one matrix product on the inference device scores every patch for all K objects. With many objects
   (``CASCADE_MIN_OBJECTS``) each object's best patch score is first bounded on blocks of patches and
   the objects that cannot reach their lowest possible gate are not scored patch by patch (the same
   decisions; it pauses itself where it would skip too few objects to pay);
2. *presence* - per object, the mean of its ``min_patches`` best patch scores, through a sigmoid,
   against its calibrated threshold (vectorised over all objects; with ``temporal`` on, an object
   seen in the previous frame stays on down to the fraction ``hysteresis`` below its threshold). The
   threshold is the object's own: a fraction of its typical positive score (the classifier module),
   so no constant depends on the backbone's scale; the region that passes must also look like the
   object as a whole (its mean feature close enough to the object's appearance). A region far larger
   than any taught view is replaced by its cores (where patches alone would pass), which must look
   like the object more closely (``CARVED_APPEARANCE``) - unless, where the object was just found, the
   whole region looks like it that closely: the object seen closer than taught. Objects judged
   absent are never painted: the authors' baseline always prompts the global maximum and so paints
   absent objects; this is where we differ most;
3. *post-processing*, for present objects only - connected components on the patch grid: the region
   presence chose and those near it (``PART_REACH``: one instance per frame, its parts split by an
   occluder, not a look-alike elsewhere), larger than ``min_component_fraction`` of the largest (as
   ISAR does); the margin maps
   upsampled to the image (bilinear, optionally edge-aware with a guided filter on the image), and
   every pixel given to the object with the highest positive margin, so each pixel has at most one;
4. *refinement* (``refine``): each found mask snapped to the object's colour edges by GrabCut seeded
   with it (the default; :meth:`~isar_ros.core.prompt_mask.GrabCutPredictor.refine`), or SAM prompted
   from the mask's centre and box;
5. with a frame's :class:`~isar_ros.core.geometry.FrameGeometry` (depth, intrinsics, camera pose):
   masks optionally trimmed to each object's depth band (``depth_trim``), every instance located in
   3-D (:mod:`isar_ros.core.locate`), and, with ``pose_prior``, each object expected where it was last
   seen (:mod:`isar_ros.core.pose_prior`; this changes step 2);
6. with ``track`` (no geometry needed), each object expected next to the region where the previous frame
   surely found it (:mod:`isar_ros.core.track`; this too changes step 2, and only regions touching the
   expected place are painted in step 3).

The prototype matcher (``matcher="prototype"``) replaces step 1's classifier by cosine similarity
to each object's prototypes, takes connected regions of its similarity maps as mask proposals, and
gives each proposal to the object whose prototypes its mean feature matches best (the "No Time to
Train!" way, with proposals from the score maps when SAM's mask generator is not available).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from isar_ros.core.backbones.base import FeatureGrid
from isar_ros.core.geometry import FrameGeometry
from isar_ros.core.locate import locate_instances, trim_to_depth
from isar_ros.core.memory_snapshot import MemorySnapshot
from isar_ros.core.pose_prior import Expectation, PosePrior
from isar_ros.core.prompt_mask import GrabCutPredictor, MaskPredictor
from isar_ros.core.regions import components_near_largest, regions_within
from isar_ros.core.segmentation import Instance, Segmentation
from isar_ros.core.track import RegionTrack
from isar_ros.errors import ConfigurationError, InvalidInput
from isar_ros.settings import setting


@dataclass
class InferenceConfig:
    matcher: str = setting(
        "svm",
        "svm (per-object linear classifiers, ISAR) or prototype (No Time to Train!)",
        runtime=True,
        choices=("svm", "prototype"),
    )
    presence: bool = setting(
        True,
        "decide per object whether it is in view before painting it (false: paint every "
        "object wherever it scores best, as the ISAR authors' baseline does)",
        runtime=True,
    )
    presence_offset: float = setting(
        0.0, "raise (>0) or lower every presence threshold, logit units", runtime=True, low=-100.0, high=100.0
    )
    mask_offset: float = setting(
        0.0,
        "raise (>0) or lower every mask threshold, classifier score units",
        runtime=True,
        low=-100.0,
        high=100.0,
    )
    min_component_fraction: float = setting(
        0.2,
        "keep mask regions with at least this share of the largest one's area",
        runtime=True,
        low=0.0,
        high=1.0,
    )
    max_area_factor: float = setting(
        4.0,
        "regions this many times larger than any taught view are cut to their cores (not the whole object)",
        runtime=True,
        low=1.0,
        high=1000.0,
    )
    edge_aware: bool = setting(True, "snap mask borders to image edges (guided filter)", runtime=True)
    temporal: bool = setting(True, "use the previous frame's decisions (hysteresis)", runtime=True)
    hysteresis: float = setting(
        0.25,
        "an object seen last frame stays present down to this fraction below its presence threshold",
        runtime=True,
        low=0.0,
        high=1.0,
    )
    depth_trim: bool = setting(
        True,
        "with depth: cut mask pixels whose depth is far from the object's own (bleeding onto what is "
        "behind or in front)",
        runtime=True,
    )
    pose_prior: bool = setting(
        False,
        "with depth and a camera pose: expect each object where this stream last saw it (static "
        "objects) - weak views there count, look-alikes elsewhere are doubted",
        runtime=True,
    )
    pose_prior_weight: float = setting(
        0.25,
        "how much the pose prior lowers (near the expected place) or raises (elsewhere) a presence "
        "threshold, as a fraction of it",
        runtime=True,
        low=0.0,
        high=1.0,
    )
    track: bool = setting(
        True,
        "expect each object near where the previous frame surely found it (a video stream): its region "
        "there is preferred, look-alikes elsewhere are doubted and not painted",
        runtime=True,
    )
    track_weight: float = setting(
        0.25,
        "how much tracking lowers (near the previous region) or raises (elsewhere) a presence threshold, "
        "as a fraction of it",
        runtime=True,
        low=0.0,
        high=1.0,
    )
    refine: str = setting(
        "grabcut",
        "none; grabcut: snap each found mask to the object's colour edges (GrabCut seeded by it); sam: "
        "refine each found mask with SAM prompted from it (needs a SAM checkpoint)",
        choices=("none", "grabcut", "sam"),
    )

    def __post_init__(self) -> None:
        if self.matcher not in ("svm", "prototype"):
            raise ConfigurationError(f"matcher must be 'svm' or 'prototype', not {self.matcher!r}")
        if self.refine not in ("none", "grabcut", "sam"):
            raise ConfigurationError(f"refine must be 'none', 'grabcut' or 'sam', not {self.refine!r}")


COMPONENT_CHECK = 1.0  # logits below threshold within which presence is re-judged on the best region
CEILING_TOLERANCE = 1e-9  # logits: a region's mean and its bound are summed in different orders
# A core carved out of a region too large to be the object (_plausible_regions) must look like it more
# closely: its appearance threshold moves this share of the way from the object's own threshold to 1 (dev
# suite: 0.3 / 0.5 kept more false detections than before carving, 0.7 none; docs/evaluation.md).
CARVED_APPEARANCE = 0.7
# A memory holds instances, one per frame: besides the region presence chose, only regions within this
# share of its size (the square root of its area, in patches; at least one patch) are painted - the parts
# of the one object that an occluder splits, not a look-alike elsewhere in the frame. Dev suite (docs/
# evaluation.md, "One instance per frame"): 0.5 gained less; 0 (one patch) gained DAVIS a little more,
# lost the worst synthetic set a little, and would cut an object behind any occluder wider than a patch.
PART_REACH = 0.25
PROTOTYPE_LOGIT_SCALE = 10.0  # cosine similarity above the object's threshold -> logit
# The block-bound cascade (speed only: the decisions are the same with and without it). With at least
# CASCADE_MIN_OBJECTS objects, each object's best patch score is first bounded on blocks of patches
# (CASCADE_BLOCKS); objects whose bound cannot reach their lowest possible gate are not scored patch by
# patch. Where it skips fewer than CASCADE_MIN_SKIPPED of the objects (look-alike objects
# near their gates: the bound costs more than it saves) it pauses for CASCADE_PAUSE_FRAMES frames.
CASCADE_MIN_OBJECTS = 200
CASCADE_BLOCKS = (
    8,
    4,
)  # patches per block side, coarse to fine: the fine bound only for what the coarse left
CASCADE_MIN_SKIPPED = 0.5
CASCADE_PAUSE_FRAMES = 30
CASCADE_TOLERANCE = 1e-3  # logits: the bound and the exact score are summed in different orders


@dataclass(frozen=True)
class Place:
    """How strongly an expected place holds an object's choice of region (``InstanceFinder._best_region``):
    ``advantage`` (logits) - the place's threshold is this much lower than elsewhere's; ``held`` (a logit) -
    a region there scoring at least this (a sure view) holds the place whatever shows elsewhere."""

    advantage: float
    held: float


def _appearance_row(appearance: np.ndarray, dim: int) -> np.ndarray:
    return np.asarray(appearance, np.float32) if appearance.size else np.zeros(dim, np.float32)


def _window_around(cells: np.ndarray, image_shape: tuple[int, int], reach: int) -> tuple[slice, slice]:
    """The image rows and columns of the box around the true ``cells`` of a patch grid, grown by
    ``reach`` pixels (clipped to the image)."""
    height, width = image_shape
    rows, cols = cells.shape
    occupied_rows, occupied_cols = np.flatnonzero(cells.any(axis=1)), np.flatnonzero(cells.any(axis=0))
    return (
        slice(
            max(int(occupied_rows[0] * height / rows) - reach, 0),
            min(math.ceil((occupied_rows[-1] + 1) * height / rows) + reach, height),
        ),
        slice(
            max(int(occupied_cols[0] * width / cols) - reach, 0),
            min(math.ceil((occupied_cols[-1] + 1) * width / cols) + reach, width),
        ),
    )


def _upsampled_window(
    cells: np.ndarray, image_shape: tuple[int, int], window: tuple[slice, slice]
) -> np.ndarray:
    """``window`` of ``cells`` (a patch grid) resized bilinearly to the image. When the image is a whole
    number of pixels per cell, only the cells under the window and one more on each side are resized
    (the same values: each pixel's interpolation weights depend on its place within its cell alone)."""
    height, width = image_shape
    rows, cols = cells.shape
    if height % rows or width % cols:
        return cv2.resize(cells, (width, height), interpolation=cv2.INTER_LINEAR)[window]
    per_row, per_col = height // rows, width // cols
    r0, c0 = max(window[0].start // per_row - 1, 0), max(window[1].start // per_col - 1, 0)
    r1 = min(-(-window[0].stop // per_row) + 1, rows)
    c1 = min(-(-window[1].stop // per_col) + 1, cols)
    part = cv2.resize(
        cells[r0:r1, c0:c1], ((c1 - c0) * per_col, (r1 - r0) * per_row), interpolation=cv2.INTER_LINEAR
    )
    y0, x0 = r0 * per_row, c0 * per_col
    return part[window[0].start - y0 : window[0].stop - y0, window[1].start - x0 : window[1].stop - x0]


def _block_extremes(high: torch.Tensor, low: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per block of ``size`` x ``size`` cells of ``high`` and ``low`` (rows x cols x C: each feature's
    largest and smallest value per cell), the largest and smallest of the block's; the last row and
    column repeat to fill the edge blocks (which changes no block's extremes)."""
    result = []
    for values, reduce in ((high, torch.amax), (low, torch.amin)):
        rows, cols, dim = values.shape
        if rows % size:
            values = torch.cat([values, values[-1:].expand(size - rows % size, cols, dim)])
        if cols % size:
            values = torch.cat([values, values[:, -1:].expand(len(values), size - cols % size, dim)], 1)
        rows, cols = len(values) // size, values.shape[1] // size
        by_rows = reduce(values.reshape(rows, size, -1, dim), dim=1)  # one axis at a time, the rows first:
        result.append(reduce(by_rows.reshape(rows, cols, size, dim), dim=2))  # 10x faster than both at once
    return result[0], result[1]


def _lowered(threshold: np.ndarray, fraction: float | np.ndarray) -> np.ndarray:
    """``threshold`` moved down by ``fraction`` of its size (up for a negative fraction): how hysteresis and
    expectations relax or raise a presence threshold, whatever its sign."""
    return threshold - fraction * np.abs(threshold)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


class ObjectModel:
    """All objects' classifiers of one :class:`MemorySnapshot`, stacked on the inference device."""

    def __init__(self, snapshot: MemorySnapshot, device: torch.device | str = "cpu"):
        self.version = snapshot.version
        self.backbone_id = snapshot.backbone_id
        self.feature_dim = dim = snapshot.feature_dim
        objects = snapshot.objects
        classifiers = [o.classifier for o in objects]
        self.ids = np.array([o.object_id for o in objects], np.int64)
        self.names = [o.name for o in objects]
        self.device = torch.device(device)
        weights = (
            np.stack([np.asarray(c.weights, np.float32) for c in classifiers])
            if objects
            else np.zeros((0, dim), np.float32)
        )
        self.weights = torch.from_numpy(weights).to(self.device)  # K x C: scores come out object-major
        # For the cascade's bound w.x <= w+ . high + w- . low over a block's per-feature extremes: K x 2C.
        self.weights_split = torch.cat([self.weights.clamp(min=0), self.weights.clamp(max=0)], dim=1)
        self.bias = torch.tensor(
            [float(c.bias) for c in classifiers], dtype=torch.float32, device=self.device
        )
        self.mask_threshold = np.array([c.mask_threshold for c in classifiers], np.float32)
        self.presence_logit = _logit(np.array([c.presence_threshold for c in classifiers], np.float64))
        self.min_patches = np.array([max(1, int(o.min_patches)) for o in objects], np.int64)
        self.max_patches = np.array([max(1, int(o.max_patches)) for o in objects], np.int64)
        self.prototype_threshold = np.array([c.prototype_threshold for c in classifiers], np.float32)
        # Objects without an appearance check get a zero direction and a threshold every region passes.
        self.appearance = torch.from_numpy(
            np.stack([_appearance_row(c.appearance, dim) for c in classifiers])
            if objects
            else np.zeros((0, dim), np.float32)
        ).to(self.device)
        self.appearance_threshold = np.array(
            [c.appearance_threshold if c.appearance.size else -2.0 for c in classifiers], np.float32
        )
        protos = [np.asarray(c.prototypes, np.float32).reshape(-1, dim) for c in classifiers]
        owners = [np.full(len(p), k, np.int64) for k, p in enumerate(protos)]
        self.prototype_owner = np.concatenate(owners) if objects else np.zeros(0, np.int64)
        self.prototype_owner_t = torch.from_numpy(self.prototype_owner).to(
            self.device
        )  # built once, used every frame
        self.prototypes = torch.from_numpy(
            np.concatenate(protos) if objects else np.zeros((0, dim), np.float32)
        ).to(self.device)

    @classmethod
    def empty(cls, backbone_id: str, feature_dim: int, device: torch.device | str = "cpu") -> ObjectModel:
        return cls(MemorySnapshot.empty(backbone_id, feature_dim), device)

    def __len__(self) -> int:
        return len(self.ids)


class InstanceFinder:
    """Stateful per stream (temporal presence); :meth:`reset` at a new sequence."""

    def __init__(
        self, model: ObjectModel, config: InferenceConfig | None = None, refiner: MaskPredictor | None = None
    ):
        self.config = config or InferenceConfig()
        if self.config.refine == "sam" and refiner is None:
            raise ConfigurationError(
                "refine: sam needs a SAM mask predictor; give the finder one "
                "(Perception does this when a SAM checkpoint is found)"
            )
        if self.config.refine == "grabcut" and refiner is None:
            refiner = GrabCutPredictor()
        self.refiner = refiner
        self.model = model
        self._previously_present: set[int] = set()
        self.prior = PosePrior()
        self.track = RegionTrack()
        # Priors, per frame: object index -> its expected place where its best region touched it; the
        # objects sure enough to feed the priors (present even with the doubt's higher threshold), and
        # the best region of each object judged (object index -> rows x cols bool).
        self._near: dict[int, np.ndarray] = {}
        self._sure: set[int] = set()
        self._regions: dict[int, np.ndarray] = {}
        self.cascade_min_objects = CASCADE_MIN_OBJECTS
        self.cascade_pause = 0  # frames left without the cascade
        self.cascade_skipped = 0  # objects the cascade left unscored in the last frame

    def set_model(self, model: ObjectModel) -> None:
        """Swap in a new memory between frames (temporal state of objects that remain is kept)."""
        self.model = model
        self.cascade_pause = 0
        self._previously_present &= set(model.ids.tolist())
        self.prior.keep_only(dict(zip(model.ids.tolist(), model.names, strict=True)))
        self.track.keep_only(set(model.ids.tolist()))

    def reset(self) -> None:
        self._previously_present = set()
        self.prior.reset()
        self.track.reset()

    # ---- stages ---------------------------------------------------------------------------------
    def score(self, grid: FeatureGrid) -> torch.Tensor:
        """(rows, cols, K) patch scores for all objects: one matrix product. The result is a view of an
        object-major (K, rows, cols) tensor: each object's score map is contiguous, and so is what
        :meth:`presence` reduces over."""
        rows, cols = grid.features.shape[:2]
        flat = grid.features.reshape(-1, grid.features.shape[-1]).to(self.model.device, torch.float32)
        if self.config.matcher == "svm":
            scores = torch.addmm(self.model.bias[:, None], self.model.weights, flat.T)  # K x N
        else:
            similarity = self.model.prototypes @ flat.T  # total prototypes x N
            owner = self.model.prototype_owner_t
            scores = torch.full((len(self.model), flat.shape[0]), -1.0, device=similarity.device)
            scores = scores.scatter_reduce(
                0, owner[:, None].expand(-1, flat.shape[0]), similarity, reduce="amax", include_self=True
            )
        return scores.reshape(-1, rows, cols).permute(1, 2, 0)

    def _cascade_scores(self, grid: FeatureGrid) -> tuple[torch.Tensor, np.ndarray | None]:
        """:meth:`score` for :meth:`find`: with many objects, through the block-bound cascade. Returns the
        scores and, per object, the bound on its best patch score where the cascade skipped it (its rows of
        the scores are then left unset: nothing reads them) and NaN elsewhere; None without the cascade."""
        k = len(self.model)
        due = k >= self.cascade_min_objects and self.config.matcher == "svm" and self.config.presence
        self.cascade_skipped = 0
        if not due or self.cascade_pause > 0:
            self.cascade_pause = max(0, self.cascade_pause - 1) if due else 0
            return self.score(grid), None
        rows, cols = grid.features.shape[:2]
        features = grid.features.to(self.model.device, torch.float32)
        floor = self._lowest_gates() - COMPONENT_CHECK - CASCADE_TOLERANCE
        levels = [_block_extremes(features, features, CASCADE_BLOCKS[-1])]  # the finest from the patches,
        for finer, coarser in zip(CASCADE_BLOCKS[::-1], CASCADE_BLOCKS[-2::-1], strict=False):
            levels.append(_block_extremes(*levels[-1], coarser // finer))  # each coarser from the finer
        best = np.full(k, np.inf)
        left = np.arange(k)  # the objects no coarser bound has ruled out
        for high, low in levels[::-1]:
            extremes = torch.cat([high, low], dim=-1).reshape(-1, 2 * high.shape[-1])  # blocks x 2C
            chosen = torch.from_numpy(left).to(features.device)
            weights = self.model.weights_split.index_select(0, chosen)
            bound = torch.addmm(self.model.bias.index_select(0, chosen)[:, None], weights, extremes.T)
            best[left] = bound.max(dim=1).values.cpu().numpy()
            left = left[best[left] >= floor[left]]
        skip = best < floor
        if skip.mean() < CASCADE_MIN_SKIPPED:
            self.cascade_pause = CASCADE_PAUSE_FRAMES
        self.cascade_skipped = int(skip.sum())
        flat = features.reshape(-1, features.shape[-1])
        scores = torch.empty((k, flat.shape[0]), device=flat.device)
        kept = torch.from_numpy(np.flatnonzero(~skip)).to(flat.device)
        scores[kept] = torch.addmm(self.model.bias[kept, None], self.model.weights[kept], flat.T)
        return scores.reshape(-1, rows, cols).permute(1, 2, 0), np.where(skip, best, np.nan)

    def _lowest_gates(self) -> np.ndarray:
        """Per object, the lowest presence gate :meth:`presence` can set this frame (seen last frame and
        expected somewhere, with the stronger of the two expectations' weights)."""
        threshold = self._thresholds()
        if self.config.temporal:
            threshold = _lowered(threshold, self.config.hysteresis)
        return _lowered(threshold, max(self.config.pose_prior_weight, self.config.track_weight))

    def _thresholds(self) -> np.ndarray:
        """Per object, its presence threshold as a logit (the prototype matcher's logits are relative to
        its own threshold already), with the operator's offset."""
        svm = self.config.matcher == "svm"
        base = self.model.presence_logit if svm else np.zeros(len(self.model))
        return base + self.config.presence_offset

    def presence(
        self,
        scores: torch.Tensor,
        features: torch.Tensor | None = None,
        expected: dict[int, Expectation] | None = None,
        weights: dict[int, float] | None = None,
        skipped: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Presence probability and decision per object.

        The statistic is the mean of an object's ``min_patches`` best patch scores (as a logit).
        It is computed for all objects at once; objects within ``COMPONENT_CHECK`` logits of their
        threshold are then re-judged on their best connected region alone, since a real object is
        a compact blob while false alarms are scattered patches (not those whose ceiling from
        :meth:`_top_means` is below their threshold: no region of theirs can pass, the same decision
        without the region search). With the frame's ``features``
        (rows, cols, C), a region that passes must also look like the object as a whole: its mean
        feature's cosine with the object's appearance reaches the object's appearance threshold.
        ``expected`` (object index -> :class:`Expectation`, from the pose prior or tracking) prefers
        regions at the expected place and moves those objects' thresholds down there and up elsewhere, by
        ``weights`` (object index -> fraction of the threshold; default ``pose_prior_weight``). ``skipped``
        (from the cascade): a bound on the best patch score of the objects whose scores were not computed,
        NaN for the others.
        """
        k = len(self.model)
        own = self._thresholds()
        threshold = own.copy()
        if self.config.temporal:
            was = np.isin(self.model.ids, list(self._previously_present))
            threshold[was] = _lowered(threshold[was], self.config.hysteresis)
        threshold_before_priors = threshold.copy()
        expected = expected or {}
        weight = np.full(k, self.config.pose_prior_weight)
        for index, w in (weights or {}).items():
            weight[index] = w
        lower, higher = _lowered(threshold, weight), _lowered(threshold, -weight)
        gate = threshold.copy()
        visible = [j for j, e in expected.items() if e.near is not None]
        gate[visible] = lower[visible]
        logits, m, ceiling = self._top_means(scores, gate - COMPONENT_CHECK, skipped)
        sure_level = self._sure_level(threshold_before_priors)
        # A place is held by a view sure on its own: without the previous frame's hysteresis, which is what
        # lets a look-alike once followed hold it frame after frame.
        held = self._sure_level(own)
        unlike = np.zeros(k, bool)
        self._near, self._regions = {}, {}
        for j in np.flatnonzero(logits > gate - COMPONENT_CHECK):
            expectation = expected.get(int(j))
            if ceiling[j] < (lower[j] if expectation is not None else threshold[j]) - CEILING_TOLERANCE:
                continue  # none of its regions can pass, even where it is expected: absent, no region needed
            near = expectation.near if expectation is not None else None
            region, logits[j], at_place, carved = self._best_region(
                scores[..., j].cpu().numpy(),
                int(j),
                int(m[j]),
                near,
                features,
                Place(float(higher[j] - lower[j]), float(held[j])),
            )
            if region is not None:
                self._regions[int(j)] = region
            if expectation is not None:
                threshold[j] = lower[j] if at_place else higher[j]
            if at_place and near is not None:
                self._near[int(j)] = near
            if features is not None and region is not None and logits[j] > threshold[j]:
                unlike[j] = self._appearance_cosine(features, region, int(j)) < self._appearance_bar(
                    int(j), carved
                )
        probability = 1.0 / (1.0 + np.exp(-logits))
        present = (logits > threshold) & ~unlike if self.config.presence else np.ones(k, bool)
        self._sure = {int(self.model.ids[j]) for j in np.flatnonzero(present & (logits > sure_level))}
        return probability, present

    def _sure_level(self, threshold: np.ndarray) -> np.ndarray:
        """Per object, the logit at which a view is *sure*: it would pass even when doubted (``threshold``
        raised by the priors' weight). Only sure views feed the priors - a recovered weak view or a marginal
        look-alike must not teach them where to look (they would feed themselves) - and only a view sure
        against the object's own threshold holds the expected place against a better region elsewhere
        (:meth:`_best_region`)."""
        weight = max(
            self.config.pose_prior_weight if self.config.pose_prior else 0.0,
            self.config.track_weight if self.config.track else 0.0,
        )
        return threshold + weight * np.abs(threshold)

    def _top_means(
        self, scores: torch.Tensor, floor: np.ndarray, skipped: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per object, the mean of its ``min_patches`` best patch scores as a logit, how many patches
        that is (``m``), and the most any one region of it can score in :meth:`_best_region` (a logit:
        the same mean with each score raised to the mask threshold, which is what a small region is
        padded with). Exact for every object whose best patch reaches ``floor`` (logits); the others
        cannot reach their gate, and get their best patch's logit instead (an upper bound): with many
        objects, most are far from present and one maximum per object replaces a top-k. Objects the
        cascade ``skipped`` (not NaN there) get its bound, below their floor."""
        k = len(self.model)
        by_object = scores.permute(2, 0, 1).reshape(k, -1)  # K x N, contiguous as score() made it
        m_max = int(min(self.model.min_patches.max(initial=1), by_object.shape[1]))
        m = np.minimum(self.model.min_patches, m_max)
        if skipped is None:
            best = by_object.max(dim=1).values.cpu().numpy().astype(np.float64)
        else:
            best, scored = skipped.copy(), np.flatnonzero(np.isnan(skipped))
            if scored.size:
                rows = by_object[torch.from_numpy(scored).to(by_object.device)]
                best[scored] = rows.max(dim=1).values.cpu().numpy()
        logits = self._as_logits(best)
        exact = np.flatnonzero(logits >= floor) if self.config.presence else np.arange(k)
        ceiling = logits.copy()
        if exact.size:
            chosen = torch.from_numpy(exact).to(by_object.device)
            top = torch.topk(by_object[chosen], m_max, dim=1).values.cpu().numpy()  # exact x m_max
            means = np.cumsum(top, axis=1)[np.arange(exact.size), m[exact] - 1] / m[exact]
            logits[exact] = self._as_logits(means, exact)
            padded = np.maximum(top, self._mask_thresholds(exact)[:, None])
            ceiling[exact] = self._as_logits(
                np.cumsum(padded, axis=1)[np.arange(exact.size), m[exact] - 1] / m[exact], exact
            )
        return logits, m, ceiling

    def _as_logits(self, values: np.ndarray, objects: np.ndarray | None = None) -> np.ndarray:
        """Scores -> presence logits: the svm's are logits; the prototype matcher's cosines are scaled."""
        if self.config.matcher != "prototype":
            return values
        own = self.model.prototype_threshold if objects is None else self.model.prototype_threshold[objects]
        return (values - own) * PROTOTYPE_LOGIT_SCALE

    def _appearance_cosine(self, features: torch.Tensor, region: np.ndarray, j: int) -> float:
        """Cosine between the mean feature of ``region`` (rows x cols bool) and object ``j``'s appearance."""
        inside = features.reshape(-1, features.shape[-1])[
            torch.from_numpy(region.ravel()).to(features.device)
        ]
        mean = inside.to(self.model.device, torch.float32).mean(0)
        return float(mean @ self.model.appearance[j] / mean.norm().clamp_min(1e-6))

    def _plausible_regions(
        self,
        score_map: np.ndarray,
        j: int,
        near: np.ndarray | None = None,
        features: torch.Tensor | None = None,
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Connected regions above object ``j``'s mask threshold that are not far larger than any taught view.

        Returns (region label image, ids of the plausible regions, the first id of a carved core). A region
        of more than ``max_area_factor`` times the object's largest taught view is not the object as a
        whole: a wall or floor of its colours, or the object run into one. Such a region is replaced by its
        cores, the parts where patches alone would pass the presence threshold (:meth:`_core_level`); a
        core no larger than the limit is a candidate like any region, and must look like the object more
        closely (``CARVED_APPEARANCE``). Before cores were carved, an object that touched a surface of its
        colours was lost whole, in every frame it touched it (docs/evaluation.md, "Objects run into surfaces
        of their colours").

        Unless it is the object seen closer than it was taught: a too-large region touching ``near`` (rows x
        cols bool: where tracking or the pose prior expects the object, or the region already chosen) whose
        mean feature (``features``, rows x cols x C) looks like the object as closely as a carved core must
        is kept whole. A camera driving up to an object, or an object brought to it, grows past every taught
        view; a wall of the object's colours seldom touches the place where the object itself was just found
        and looks like it that closely as a whole (docs/evaluation.md, "An object seen closer than taught").
        """
        limit = self._mask_threshold(j)
        count, regions, stats, _ = cv2.connectedComponentsWithStats(
            (score_map > limit).astype(np.uint8), connectivity=8
        )
        largest = self._area_limit(j)
        too_large = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] > largest) + 1
        closer = np.zeros(0, np.int64)
        if too_large.size and near is not None and features is not None:
            # The object seen closer than it was taught, where it was just found: kept whole when the whole
            # region looks like the object as closely as a carved core must.
            bar = self._carved_bar(j)
            closer = np.array(
                [
                    r
                    for r in np.intersect1d(too_large, regions[near])
                    if self._appearance_cosine(features, regions == r, j) >= bar
                ],
                np.int64,
            )
            too_large = np.setdiff1d(too_large, closer)
        core = self._core_level(j, limit) if too_large.size else limit
        if core > limit:
            # The object run into a surface of its colours, or that surface alone: the region's cores, where
            # patches score as the object's own views do, stand in for it (each judged like any region).
            large = np.isin(regions, too_large)
            inside = large & (score_map > core)
            _, cores = cv2.connectedComponents(inside.astype(np.uint8), connectivity=8)
            regions = np.where(inside, cores + count - 1, np.where(large, 0, regions)).astype(np.int32)
        areas = np.bincount(regions.ravel(), minlength=regions.max() + 1)[1:]
        plausible = np.flatnonzero((areas > 0) & (areas <= largest)) + 1
        return regions, np.union1d(plausible, closer), count

    def _area_limit(self, j: int) -> float:
        """Patches: a region larger than this is too large to be object ``j`` as taught."""
        return float(self.config.max_area_factor * self.model.max_patches[j])

    def _appearance_bar(self, j: int, carved: bool) -> float:
        """The appearance cosine a region must reach to be object ``j``: the carved cores' bar for a core."""
        return self._carved_bar(j) if carved else float(self.model.appearance_threshold[j])

    def _carved_bar(self, j: int) -> float:
        """The appearance cosine a region cut out of a surface of object ``j``'s colours must reach."""
        needed = float(self.model.appearance_threshold[j])
        return needed + CARVED_APPEARANCE * (1.0 - needed)

    def _core_level(self, j: int, limit: float) -> float:
        """The patch score at which a patch alone would pass object ``j``'s presence threshold (the svm's
        scores are logits), at least its mask threshold ``limit``; ``limit`` for the prototype matcher,
        whose threshold is its own."""
        if self.config.matcher != "svm":
            return limit
        return max(limit, float(self.model.presence_logit[j]))

    def _best_region(
        self,
        score_map: np.ndarray,
        j: int,
        m: int,
        near: np.ndarray | None = None,
        features: torch.Tensor | None = None,
        place: Place | None = None,
    ) -> tuple[np.ndarray | None, float, bool, bool]:
        """Object ``j``'s best plausible connected region (rows x cols bool, None if there is none), the
        presence logit judged on it alone, whether it touches ``near`` (rows x cols bool: where tracking or
        the pose prior expects the object; regions touching it are preferred), and whether it is a core
        carved out of a region too large to be the object (:meth:`_plausible_regions`, which also keeps a
        region touching ``near`` whole when its mean in ``features`` looks like the object closely enough).

        The expected place holds unless what stands there is not sure (``place``) and a region elsewhere is
        better by every measure: it clears its raised threshold by more than the place's region clears its
        lowered one, it passes its own appearance bar, and it looks more like the object. A look-alike that
        tracking followed while the object was out of view gives way when the object itself comes into
        view (docs/evaluation.md, "A followed look-alike gives way"); a weak view of the object at its
        place still wins over a stronger look-alike elsewhere.
        """
        limit = self._mask_threshold(j)
        regions, plausible, first_core = self._plausible_regions(score_map, j, near, features)
        if plausible.size == 0:
            return None, float(self._as_logits(np.array([limit - 1.0]), np.array([j]))[0]), False, False
        sums = np.bincount(
            regions.ravel(), weights=np.maximum(score_map - limit, 0).ravel(), minlength=regions.max() + 1
        )

        def strongest(candidates: np.ndarray) -> tuple[int, float]:
            region = int(candidates[int(np.argmax(sums[candidates]))])
            inside = np.sort(score_map[regions == region])[::-1]
            best = np.concatenate([inside, np.full(max(m - len(inside), 0), limit)])[
                :m
            ]  # too small: pad at the boundary
            return region, float(self._as_logits(np.array([float(best.mean())]), np.array([j]))[0])

        touching = np.intersect1d(plausible, regions[near]) if near is not None else plausible[:0]
        at_place = touching.size > 0
        region, value = strongest(touching if at_place else plausible)
        elsewhere = np.setdiff1d(plausible, touching)
        if at_place and place is not None and value < place.held and elsewhere.size and features is not None:
            other, other_value = strongest(elsewhere)
            if other_value - place.advantage > value:
                likeness = self._appearance_cosine(features, regions == other, j)
                if likeness >= self._appearance_bar(
                    j, other >= first_core
                ) and likeness > self._appearance_cosine(features, regions == region, j):
                    region, value, at_place = other, other_value, False
        return regions == region, value, at_place, region >= first_core

    def _mask_threshold(self, j: int) -> float:
        return float(self._mask_thresholds(np.array([j]))[0])

    def _mask_thresholds(self, objects: np.ndarray) -> np.ndarray:
        prototype = self.config.matcher == "prototype"
        base = self.model.prototype_threshold if prototype else self.model.mask_threshold
        return base[objects].astype(np.float64) + self.config.mask_offset

    def find(
        self, grid: FeatureGrid, rgb: np.ndarray | None = None, geometry: FrameGeometry | None = None
    ) -> Segmentation:
        """Label image and instances for one frame whose features are ``grid`` (``rgb`` for edge-aware
        masks; ``geometry`` for 3-D locations, depth trimming and the pose prior). Raises InvalidInput when
        the depth image is not the size of the colour image."""
        width, height = grid.image_size
        timings: dict[str, float] = {}
        if geometry is not None and geometry.depth_m.shape != (height, width):
            raise InvalidInput(
                f"depth {geometry.depth_m.shape[1]}x{geometry.depth_m.shape[0]} does not match the image "
                f"{width}x{height}; publish depth registered to the colour image"
            )
        if len(self.model) == 0:
            return Segmentation(np.zeros((height, width), np.uint16), [], timings, self.model.version)
        start = time.perf_counter()
        scores, skipped = self._cascade_scores(grid)
        posed, expected, weights = self._expectations(geometry, (scores.shape[0], scores.shape[1]))
        probability, present = self.presence(scores, grid.features, expected, weights, skipped)
        timings["scoring"] = (time.perf_counter() - start) * 1000
        start = time.perf_counter()
        labels, instances = self._masks(grid, scores, probability, present, rgb)
        timings["postprocess"] = (time.perf_counter() - start) * 1000
        if self.config.refine != "none" and self.refiner is not None and instances and rgb is not None:
            start = time.perf_counter()
            cell = max(width / grid.features.shape[1], height / grid.features.shape[0])
            labels, instances = self._refine(rgb, labels, instances, cell)
            timings["refinement"] = (time.perf_counter() - start) * 1000
        segmentation = Segmentation(labels, instances, timings, self.model.version)
        if geometry is not None:
            start = time.perf_counter()
            self._use_geometry(segmentation, geometry, posed)
            timings["locate"] = (time.perf_counter() - start) * 1000
        self._previously_present = {i.object_id for i in segmentation.instances}
        if self.config.track:
            found = self._previously_present & self._sure
            ids = self.model.ids
            self.track.update({int(ids[j]): r for j, r in self._regions.items() if int(ids[j]) in found})
        return segmentation

    def _expectations(
        self, geometry: FrameGeometry | None, grid_shape: tuple[int, int]
    ) -> tuple[dict[int, Expectation], dict[int, Expectation], dict[int, float]]:
        """The pose prior's expectations (object index -> Expectation); those of both priors (the pose
        prior's where it has one, else tracking's), and how strongly each acts (object index -> fraction
        of the threshold)."""
        posed: dict[int, Expectation] = {}
        if geometry is not None and self.config.pose_prior:
            posed = self.prior.expect(self.model.ids, geometry, grid_shape)
        tracked = self.track.expect(self.model.ids, grid_shape) if self.config.track else {}
        weights = dict.fromkeys(tracked, self.config.track_weight)
        weights |= dict.fromkeys(posed, self.config.pose_prior_weight)
        return posed, tracked | posed, weights

    def _use_geometry(
        self, segmentation: Segmentation, geometry: FrameGeometry, expected: dict[int, Expectation]
    ) -> None:
        if self.config.depth_trim:
            trim_to_depth(segmentation, geometry.depth_m)
        locate_instances(segmentation, geometry.depth_m, geometry.camera, geometry.T_world_camera)
        if self.config.pose_prior and geometry.T_world_camera is not None:
            found = {i.object_id for i in segmentation.instances}
            at_place = {int(self.model.ids[j]) for j in self._near} & found
            sure = [i for i in segmentation.instances if i.object_id in self._sure]
            self.prior.update(sure, expected, self.model.ids, at_place)

    def _masks(
        self,
        grid: FeatureGrid,
        scores: torch.Tensor,
        probability: np.ndarray,
        present: np.ndarray,
        rgb: np.ndarray | None,
    ) -> tuple[np.ndarray, list[Instance]]:
        width, height = grid.image_size
        rows, cols = scores.shape[:2]
        chosen = np.flatnonzero(present)
        if chosen.size == 0:
            return np.zeros((height, width), np.uint16), []
        thresholds = self._mask_thresholds(chosen).astype(np.float32)
        selected = scores[..., torch.from_numpy(chosen).to(scores.device)].cpu().numpy()  # rows x cols x P
        if not self.config.presence:
            # Like the authors' baseline, which always prompts each object's global maximum: every
            # object keeps at least its `min_patches` best patches, present or not.
            flat = np.sort(selected.reshape(-1, len(chosen)), axis=0)[::-1]
            mth_best = flat[np.minimum(self.model.min_patches[chosen], len(flat)) - 1, np.arange(len(chosen))]
            thresholds = np.minimum(thresholds, mth_best - 0.25)
        margins = selected - thresholds
        keep = np.zeros_like(margins, dtype=bool)
        for j, k in enumerate(chosen):
            chosen_region = self._regions.get(int(k))
            # A chosen region larger than the limit is the object seen closer: keep it whole here too.
            closer = (
                chosen_region
                if chosen_region is not None and np.count_nonzero(chosen_region) > self._area_limit(int(k))
                else None
            )
            regions, plausible, _ = self._plausible_regions(selected[..., j], int(k), closer, grid.features)
            if int(k) in self._near:  # the pose prior found it at its place: only regions there
                plausible = np.intersect1d(plausible, regions[self._near[int(k)]])
            if chosen_region is not None and self.config.presence:  # the one instance: its parts only
                reach = max(1, round(PART_REACH * math.sqrt(np.count_nonzero(chosen_region))))
                plausible = regions_within(regions, chosen_region, plausible, reach)
            candidate = np.isin(regions, plausible) if self.config.presence else margins[..., j] > 0
            keep[..., j] = components_near_largest(
                candidate & (margins[..., j] > 0), self.config.min_component_fraction
            )
        if self.config.matcher == "prototype":
            keep = self._match_proposals(grid, keep, chosen)
        margins = np.where(keep, margins, np.minimum(margins, -1e-3))
        # Full resolution only around each object's kept patches: its margin map is upsampled and filtered
        # in the box around them grown by `reach` (one patch of interpolation, two filter radii, and two
        # more so that the filter's values there equal the whole image's); outside, the margin is negative.
        stride = max(width / cols, height / rows)
        radius = max(int(stride), 2)
        guide = None
        if rgb is not None and self.config.edge_aware:
            guide = GuideImage(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0, radius)
        reach = math.ceil(stride) + (4 * radius if guide is not None else 0)
        best_margin = np.zeros((height, width), np.float32)
        best = np.zeros((height, width), np.int64)
        for j in range(len(chosen)):
            if not keep[..., j].any():
                continue
            window = _window_around(keep[..., j], (height, width), reach)
            up = _upsampled_window(margins[..., j], (height, width), window)
            if guide is not None:
                up = guide.filter(up, eps=1e-3, window=window)
            higher = up > best_margin[window]  # ties keep the earlier object, as argmax does
            best_margin[window][higher] = up[higher]
            best[window][higher] = j
        labels = np.where(best_margin > 0, self.model.ids[chosen][best], 0).astype(np.uint16)
        instances = []
        for k in chosen:
            object_id = int(self.model.ids[k])
            mask = labels == object_id
            area = int(np.count_nonzero(mask))
            if area == 0:
                continue
            x, y, w, h = cv2.boundingRect(mask.view(np.uint8))  # the tight box of the published mask
            box = (int(x), int(y), int(w), int(h))
            instances.append(Instance(object_id, self.model.names[k], float(probability[k]), box, area))
        return labels, instances

    def _match_proposals(self, grid: FeatureGrid, keep: np.ndarray, chosen: np.ndarray) -> np.ndarray:
        """Each proposal (a region of an object's similarity map) goes to the object its mean feature matches
        best."""
        flat = grid.features.reshape(-1, grid.features.shape[-1]).to(self.model.device, torch.float32)
        owner = self.model.prototype_owner
        result = np.zeros_like(keep)
        for j, k in enumerate(chosen):
            count, regions = cv2.connectedComponents(keep[..., j].astype(np.uint8), connectivity=8)
            for r in range(1, count):
                region = torch.from_numpy((regions == r).ravel()).to(flat.device)
                mean = flat[region].mean(0)
                mean = mean / mean.norm().clamp_min(1e-6)
                sims = (self.model.prototypes @ mean).cpu().numpy()
                best_object = owner[int(np.argmax(sims))]
                if best_object == k:
                    result[..., j] |= regions == r
        return result

    def _refine(
        self, rgb: np.ndarray, labels: np.ndarray, instances: list[Instance], cell: float
    ) -> tuple[np.ndarray, list[Instance]]:
        """Each instance's mask refined by the mask predictor (where two refined masks overlap, the
        earlier instance keeps the pixels); instances whose refined mask is empty are dropped."""
        assert self.refiner is not None
        self.refiner.set_image(rgb)
        refined = np.zeros_like(labels)
        for instance in instances:
            better = self.refiner.refine(labels == instance.object_id, cell)
            refined[better & (refined == 0)] = instance.object_id
        kept = []
        for instance in instances:
            mask = refined == instance.object_id
            if mask.any():
                x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
                instance.box_xywh = (int(x), int(y), int(w), int(h))
                instance.area = int(np.count_nonzero(mask))
                kept.append(instance)
        return refined, kept


class GuideImage:
    """He et al.'s guided filter with a grey guide. The guide's local statistics are computed for the
    windows that are filtered (grown by the filter's radius: inside, they are the whole image's)."""

    def __init__(self, guide: np.ndarray, radius: int):
        self.guide, self.radius, self.size = guide, radius, (2 * radius + 1, 2 * radius + 1)

    def _statistics(self, window: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray]:
        """The guide's local mean and variance within ``window``."""
        height, width = self.guide.shape
        rows, cols = (slice(*w.indices(n)[:2]) for w, n in zip(window, (height, width), strict=True))
        grown = (
            slice(max(rows.start - self.radius, 0), min(rows.stop + self.radius, height)),
            slice(max(cols.start - self.radius, 0), min(cols.stop + self.radius, width)),
        )
        guide = self.guide[grown]
        mean = self._mean(guide)
        variance = self._mean(guide * guide) - mean * mean
        inner = (
            slice(rows.start - grown[0].start, rows.stop - grown[0].start),
            slice(cols.start - grown[1].start, cols.stop - grown[1].start),
        )
        return mean[inner], variance[inner]

    def _mean(self, x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, self.size, borderType=cv2.BORDER_REFLECT)

    def filter(
        self, source: np.ndarray, eps: float, window: tuple[slice, slice] = (slice(None), slice(None))
    ) -> np.ndarray:
        """``source`` (the guide's ``window``) smoothed while following the guide's edges; equal to
        filtering the whole image except within two radii of the window's edges inside the image."""
        guide = self.guide[window]
        mean_i, var_i = self._statistics(window)
        mean_p = self._mean(source)
        cov_ip = self._mean(guide * source) - mean_i * mean_p
        a = cov_ip / (var_i + eps)
        b = mean_p - a * mean_i
        return self._mean(a) * guide + self._mean(b)
