"""The instance memory: taught objects, the exemplar features they were taught from, their classifiers.

Teaching turns masks on a frame's feature grid into positive patch features (a patch is positive
when the mask covers more than ``positive_coverage`` of it, as in ISAR) and negative ones (patches
the mask does not touch). Each object gets a :class:`~isar_ros.core.classifier.LinearObjectClassifier`
against: the background of its own teaching frames, the other objects' positives, and a background
bank pooled from every teaching frame. After each change the changed object is refit, and so is
every other object whose classifier fires on the new positives (the refit that pays); the rest keep
their weights.

Names are unique: teaching a name that exists adds views to that object (multi-shot), renaming onto
a name that exists is refused. Ids are stable and never reused (label images are mono16).

What inference needs is an immutable :class:`~isar_ros.core.memory_snapshot.MemorySnapshot`
(:meth:`InstanceMemory.snapshot`); saving and loading are in :mod:`isar_ros.core.memory_store`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from isar_ros.core.classifier import LinearObjectClassifier
from isar_ros.core.memory_snapshot import (
    MAX_OBJECT_ID,
    MemoryFormatError,
    MemorySnapshot,
    ObjectClassifier,
    SnapshotObject,
    check_name,
)
from isar_ros.core.seeding import content_seed

MIN_PATCHES_FRACTION = 0.3  # presence is judged on this share of the smallest taught view's patches
MAX_THUMBNAILS = 8  # per object: the crops of its first prompted frames, for UIs and ~/list


@dataclass
class MemoryConfig:
    positive_coverage: float = 0.8  # a patch is positive when the mask covers more than this (ISAR)
    negative_coverage: float = 0.05  # ... and negative when it covers less than this
    svm_c: float = 0.5
    max_positives: int = 3000  # per object, subsampled deterministically beyond
    max_negatives: int = 12000  # per fit
    max_object_negatives: int = 3000  # kept per object from its teaching frames (the saved memory's bulk)
    background_bank_size: int = 8000
    prototypes: int = 6
    presence_fraction: float = 0.6  # presence threshold = this fraction of the median positive patch score
    # ... for an object taught from one prompted frame: its positives are that one view (and its photometric
    # variants), which the classifier fits closely, so its median score overstates what other views of it
    # reach (dev suite: 0.5 found more single-shot objects within the false-detection bounds, 0.4 did not;
    # docs/evaluation.md, "Objects taught from one view").
    presence_fraction_one_view: float = 0.5
    refit_fire_fraction: float = 0.05  # refit another object when it fires on this share of new positives
    seed: int = 0


@dataclass
class ObjectExemplars:
    """What an object was taught from: the data its classifier is (re)fitted on."""

    positives: np.ndarray  # (P, C) float32
    negatives: np.ndarray  # (Q, C) float32: background of its teaching frames
    exemplar_patches: list[int] = field(default_factory=list)  # positive patches per taught view
    num_exemplars: int = 0  # prompted frames (augmented variants not counted)
    thumbnails: list[np.ndarray] = field(default_factory=list)  # small RGB crops of prompted frames
    # An object taught from one prompted frame: the mean of its positives in that view seen closer (the
    # teacher's closer_view), which its appearance takes in; None once it has more views, which show it at
    # several distances (and for memories saved before it existed).
    closer: np.ndarray | None = None

    @property
    def min_patches(self) -> int:
        return (
            max(1, int(round(MIN_PATCHES_FRACTION * min(self.exemplar_patches))))
            if self.exemplar_patches
            else 1
        )

    @property
    def max_patches(self) -> int:
        return max(self.exemplar_patches, default=1)


@dataclass
class TaughtObject:
    object_id: int
    name: str
    exemplars: ObjectExemplars
    classifier: ObjectClassifier | None = None  # None only between teaching and the first fit

    @property
    def num_exemplars(self) -> int:
        return self.exemplars.num_exemplars


def patch_coverage(mask: np.ndarray, grid_size: tuple[int, int]) -> np.ndarray:
    """Fraction of each patch covered by ``mask`` (rows x cols), by area averaging onto the grid."""
    cols, rows = grid_size
    return cv2.resize(mask.astype(np.float32), (cols, rows), interpolation=cv2.INTER_AREA)


def subsample(rows: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``limit`` of ``rows``, chosen by ``rng``, in their original order."""
    if len(rows) <= limit:
        return rows
    return rows[np.sort(rng.choice(len(rows), limit, replace=False))]


class InstanceMemory:
    """Objects with stable ids (never reused), unique names, exemplars and fitted classifiers."""

    def __init__(self, backbone_id: str, feature_dim: int, config: MemoryConfig | None = None):
        self.backbone_id, self.feature_dim = backbone_id, int(feature_dim)
        self.config = config or MemoryConfig()
        self.objects: dict[int, TaughtObject] = {}
        self.background = np.zeros((0, self.feature_dim), np.float32)
        self.next_id = 1
        self.version = 0
        self._snapshot: MemorySnapshot | None = None

    # ---- queries --------------------------------------------------------------------------------
    def snapshot(self) -> MemorySnapshot:
        """The memory as inference sees it (made once per version)."""
        if self._snapshot is None or self._snapshot.version != self.version:
            objects = []
            for o in sorted(self.objects.values(), key=lambda o: o.object_id):
                if o.classifier is None:
                    raise RuntimeError(
                        f"object {o.object_id} has never been fitted"
                    )  # a bug, not a user error
                objects.append(
                    SnapshotObject(
                        o.object_id,
                        o.name,
                        o.exemplars.num_exemplars,
                        o.exemplars.min_patches,
                        o.exemplars.max_patches,
                        o.classifier,
                    )
                )
            self._snapshot = MemorySnapshot(self.version, self.backbone_id, self.feature_dim, tuple(objects))
        return self._snapshot

    def id_by_name(self, name: str) -> int:
        """The id of the object called ``name``; :class:`MemoryFormatError` if none or several are."""
        matches = [i for i, o in self.objects.items() if o.name == name.strip()]
        if not matches:
            raise MemoryFormatError(f"no object named {name!r}; list the objects to see the names")
        if len(matches) > 1:
            raise MemoryFormatError(
                f"{len(matches)} objects are named {name!r} (ids {sorted(matches)}); use the id, "
                "and rename one of them"
            )
        return matches[0]

    def is_new(self, name: str, object_id: int = 0) -> bool:
        """Whether :meth:`teach` with ``name`` and ``object_id`` would make a new object."""
        return not object_id and all(o.name != name.strip() for o in self.objects.values())

    def _require(self, object_id: int) -> TaughtObject:
        if object_id not in self.objects:
            raise MemoryFormatError(f"no object with id {object_id}; list the objects to see the ids")
        return self.objects[object_id]

    # ---- changes --------------------------------------------------------------------------------
    def teach(
        self,
        exemplars: list[tuple[np.ndarray, np.ndarray]],
        name: str = "",
        object_id: int = 0,
        num_exemplars: int | None = None,
        thumbnails: list[np.ndarray] | None = None,
        closer: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> int:
        """Teach from ``exemplars``: (features (rows, cols, C) float32 array, mask H x W bool) per view.

        ``object_id`` 0 and a new ``name`` make a new object; an existing id - or the name of an
        existing object - gets more exemplars (multi-shot). ``num_exemplars``: how many prompted frames
        these are (fewer than the views when some are augmented variants); default one per view.
        ``thumbnails``: small RGB crops of the prompted frames (the first :data:`MAX_THUMBNAILS` are kept).
        ``closer``: (features, mask) of a new object's one view seen closer: its surroundings join the
        negatives (and the background bank) like any view's, the mean of its positives joins the object's
        appearance while the object has that one view (not its positives: they widen the classifier).
        Returns the object's id. Raises :class:`MemoryFormatError` for unknown ids, bad names or masks
        that cover no patch; the memory is unchanged then.
        """
        if not exemplars:
            raise MemoryFormatError("nothing to teach: give at least one prompted frame")
        if object_id:
            self._require(object_id)
        else:
            name = check_name(name)
            existing = [i for i, o in self.objects.items() if o.name == name]
            if existing:
                object_id = existing[0]
            elif self.next_id > MAX_OBJECT_ID:
                raise MemoryFormatError(f"the memory has used all {MAX_OBJECT_ID} object ids")
        # Seeds come from the content, not from the memory's history: the same prompts give the same
        # object whether it is the first one taught or comes after many forgotten ones. From the mask,
        # not the features: a change in the last bits of a backbone's arithmetic must not redraw the
        # samples (it moved dev mIoU by 0.03 when the seed hashed the feature bytes).
        rng = np.random.default_rng([self.config.seed, content_seed(np.asarray(exemplars[0][1], bool))])
        positives, negatives = [], []
        for features, mask in exemplars:
            inside, outside = self._split(features, mask)
            positives.append(inside)
            negatives.append(outside)
        counts = [len(p) for p in positives]
        closer_mean = None
        if closer is not None:
            closer_positives, closer_negatives = self._split(*closer)
            closer_mean = closer_positives.mean(axis=0, dtype=np.float32)
            negatives.append(closer_negatives)
        new_positives = np.concatenate(positives)
        new_negatives = subsample(np.concatenate(negatives), self.config.max_object_negatives, rng)
        if object_id:
            data = self.objects[object_id].exemplars
            data.positives = subsample(
                np.concatenate([data.positives, new_positives]), self.config.max_positives, rng
            )
            data.negatives = subsample(
                np.concatenate([data.negatives, new_negatives]), self.config.max_object_negatives, rng
            )
        else:
            object_id = self.next_id
            self.next_id += 1
            data = ObjectExemplars(subsample(new_positives, self.config.max_positives, rng), new_negatives)
            data.closer = closer_mean
            self.objects[object_id] = TaughtObject(object_id, name, data)
        data.num_exemplars += len(exemplars) if num_exemplars is None else num_exemplars
        if data.num_exemplars > 1:
            data.closer = None
        data.exemplar_patches += counts
        room = MAX_THUMBNAILS - len(data.thumbnails)
        data.thumbnails += [np.ascontiguousarray(t, np.uint8) for t in (thumbnails or [])[: max(0, room)]]
        self.background = subsample(
            np.concatenate([self.background, new_negatives]), self.config.background_bank_size, rng
        )
        self._refit_after_change(object_id, new_positives)
        self.version += 1
        return object_id

    def _split(self, features: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A view's positive and negative patch features, by the share of each patch ``mask`` covers."""
        features = np.asarray(features, np.float32)
        if features.ndim != 3 or features.shape[2] != self.feature_dim:
            raise MemoryFormatError(
                f"features of shape {features.shape} do not match this memory (dim {self.feature_dim})"
            )
        coverage = patch_coverage(mask, (features.shape[1], features.shape[0]))
        positive = coverage > self.config.positive_coverage
        if not positive.any():  # a small object: take its best-covered patches
            best = coverage.max()
            if best <= 0:
                raise MemoryFormatError(
                    "the mask covers no part of the image; nothing to learn from this prompt"
                )
            positive = coverage >= max(best * 0.6, 0.2)
        return features[positive], features[coverage < self.config.negative_coverage]

    def forget(self, object_id: int) -> TaughtObject:
        removed = self._require(object_id)
        del self.objects[object_id]
        # Objects that learned "not this one" from it keep valid (slightly conservative) classifiers.
        self.version += 1
        return removed

    def rename(self, object_id: int, name: str) -> None:
        obj = self._require(object_id)
        name = check_name(name)
        taken = [i for i, o in self.objects.items() if o.name == name and i != object_id]
        if taken:
            raise MemoryFormatError(
                f"the name {name!r} is taken by object {taken[0]}; choose another or forget that one"
            )
        obj.name = name
        self.version += 1

    # ---- classifiers ----------------------------------------------------------------------------
    def _refit_after_change(self, changed: int, new_positives: np.ndarray) -> None:
        self._fit(changed)
        for other_id, other in self.objects.items():
            c = other.classifier
            if other_id == changed or c is None:
                continue
            fires = (new_positives @ c.weights + c.bias) > c.mask_threshold
            if fires.mean() > self.config.refit_fire_fraction:
                self._fit(other_id)

    def _fit(self, object_id: int) -> None:
        obj = self.objects[object_id]
        data = obj.exemplars
        rng = np.random.default_rng([self.config.seed, len(data.positives), data.num_exemplars])
        others = [o.exemplars.positives for i, o in self.objects.items() if i != object_id]
        negatives = subsample(
            np.concatenate([data.negatives, self.background, *others]), self.config.max_negatives, rng
        )
        fraction = (
            self.config.presence_fraction_one_view
            if data.num_exemplars <= 1
            else self.config.presence_fraction
        )
        classifier = LinearObjectClassifier(self.config.svm_c, fraction, self.config.prototypes)
        obj.classifier = classifier.fit(data.positives, negatives, data.closer).to_record()
