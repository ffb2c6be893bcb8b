"""The typed contract between teaching and inference: what a memory *is* to everyone who serves it.

A :class:`MemorySnapshot` is an immutable picture of a taught memory without its exemplars: per
object its id, name, how it was taught (exemplar and patch counts) and its fitted
:class:`ObjectClassifier`. The teach side makes one (:meth:`InstanceMemory.snapshot`), the ROS
conversions map it to and from the ``InstanceMemory`` message, and the inference side builds its
stacked scoring model from it (:class:`isar_ros.core.inference.ObjectModel`). Numbers are kept as
float32 values, so a snapshot survives the message unchanged, bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from isar_ros.errors import InvalidInput

MAX_OBJECT_ID = 65535  # label images are mono16
MAX_NAME_LENGTH = 256


class MemoryFormatError(InvalidInput):
    """A memory (folder, message or change) that cannot be used; the message says what is wrong."""


@dataclass(frozen=True)
class ObjectClassifier:
    """One object's fitted classifier, in the feature space of the memory's backbone.

    ``weights`` (C,) float32 and ``bias``: the linear SVM; a patch's score is ``features @ weights + bias``.
    ``mask_threshold``: a patch belongs to the object where its score exceeds this.
    ``presence_threshold``: in (0, 1); the object is in view when the sigmoid of its presence statistic
    (the mean of its ``min_patches`` best patch scores) exceeds it.
    ``prototypes`` (M, C) float32, unit rows, and ``prototype_threshold``: the prototype matcher's
    cosine-similarity model of the same object.
    ``appearance`` (C,) float32, unit length: the direction of the mean positive feature; a region judged
    present must have a mean feature whose cosine with it reaches ``appearance_threshold``. An empty
    ``appearance`` (memories saved before it existed) turns that check off.
    """

    weights: np.ndarray
    bias: float
    mask_threshold: float
    presence_threshold: float
    prototypes: np.ndarray
    prototype_threshold: float
    appearance: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    appearance_threshold: float = -1.0

    @property
    def scalars(self) -> tuple[float, ...]:
        """Every single-number field (bias and thresholds): what must be finite."""
        return (
            self.bias,
            self.mask_threshold,
            self.presence_threshold,
            self.prototype_threshold,
            self.appearance_threshold,
        )


@dataclass(frozen=True)
class SnapshotObject:
    """A taught object as inference sees it: identity, how it was taught, and its classifier."""

    object_id: int
    name: str
    num_exemplars: int
    min_patches: int  # presence is judged on this many best patches
    max_patches: int  # positive patches of its largest taught view
    classifier: ObjectClassifier


@dataclass(frozen=True)
class MemorySnapshot:
    """An immutable, exemplar-free picture of a memory at one ``version``."""

    version: int
    backbone_id: str
    feature_dim: int
    objects: tuple[SnapshotObject, ...] = field(default_factory=tuple)

    @classmethod
    def empty(cls, backbone_id: str, feature_dim: int) -> MemorySnapshot:
        return cls(0, backbone_id, int(feature_dim), ())

    def object_by_id(self, object_id: int) -> SnapshotObject:
        for obj in self.objects:
            if obj.object_id == object_id:
                return obj
        raise MemoryFormatError(f"no object with id {object_id}; list the objects to see the ids")

    def validate(self) -> MemorySnapshot:
        """Check what a message or file could get wrong; raises :class:`MemoryFormatError` naming it."""
        dim = self.feature_dim
        if dim <= 0:
            raise MemoryFormatError(f"memory version {self.version} has feature_dim {dim}")
        seen: set[int] = set()
        for o in self.objects:
            c = o.classifier
            problem = None
            if not 1 <= o.object_id <= MAX_OBJECT_ID or o.object_id in seen:
                problem = "has id 0, an id above 65535 or a repeated id"
            elif c.weights.shape != (dim,):
                problem = f"has {c.weights.size} weights, feature_dim is {dim}"
            elif c.prototypes.ndim != 2 or c.prototypes.shape[1] != dim:
                problem = f"has prototypes of shape {c.prototypes.shape}, expected (M, {dim})"
            elif c.appearance.shape not in ((0,), (dim,)):
                problem = f"has {c.appearance.size} appearance values, feature_dim is {dim} (or none)"
            elif not (
                np.isfinite(c.weights).all()
                and np.isfinite(c.prototypes).all()
                and np.isfinite(c.appearance).all()
                and all(math.isfinite(v) for v in c.scalars)
            ):
                problem = "holds NaN or infinite numbers"
            elif o.min_patches < 1 or o.max_patches < 1:
                problem = f"has min_patches {o.min_patches} / max_patches {o.max_patches} (both must be >= 1)"
            if problem:
                raise MemoryFormatError(
                    f"memory version {self.version}: object {o.object_id} ({o.name!r}) {problem}"
                )
            seen.add(o.object_id)
        return self


def check_name(name: object) -> str:
    """A usable object name (stripped), or :class:`MemoryFormatError` saying why not."""
    if not isinstance(name, str) or not name.strip():
        raise MemoryFormatError("an object needs a non-empty name")
    if len(name) > MAX_NAME_LENGTH or any(ord(c) < 32 for c in name):
        raise MemoryFormatError(f"object names must be at most {MAX_NAME_LENGTH} printable characters")
    return name.strip()
