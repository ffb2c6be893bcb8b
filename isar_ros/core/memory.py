"""The instance memory: taught objects, their exemplar features and their classifiers.

Teaching turns masks on a frame's feature grid into positive patch features (a patch is positive
when the mask covers more than ``positive_coverage`` of it, as in ISAR) and negative ones (patches
the mask does not touch). Each object gets a linear SVM (scikit-learn ``LinearSVC``, balanced
classes) against: the background of its own teaching frames, the other objects' positives, and a
background bank pooled from every teaching frame. After each change the changed object is refit,
and so is every other object whose classifier fires on the new positives (the refit that pays);
the rest keep their weights. Each object also keeps a few prototypes (k-means of its positives)
for the prototype matcher, and calibrated thresholds (see :mod:`isar_ros.core.inference`).

Persistence (:meth:`InstanceMemory.save` / :meth:`InstanceMemory.load`) is a directory::

    manifest.json          schema version, backbone id, objects, the name + SHA-256 of the arrays file
    arrays-<version>-<sha256 prefix>.npz   numeric arrays only, read with allow_pickle=False

The arrays file is written first, then the manifest is replaced atomically (``os.replace``), then
older arrays files are removed: a crash at any moment leaves the previous or the new complete
version. Nothing is ever unpickled, so a memory directory cannot run code.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from isar_ros.core.seeding import content_seed

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
# Older saves are named arrays-<version>.npz; the checksum in the name keeps two different memories of
# one version (one ~/load-ed from elsewhere) from ever writing the same file name.
ARRAYS_PATTERN = re.compile(r"^arrays-\d{6,}(-[0-9a-f]{16})?\.npz$")
MAX_OBJECT_ID = 65535  # label images are mono16
MAX_NAME_LENGTH = 256
MIN_PATCHES_FRACTION = 0.3  # presence is judged on this share of the smallest taught view's patches


class MemoryFormatError(ValueError):
    """A memory that cannot be loaded or changed; the message says what is wrong."""


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
    refit_fire_fraction: float = 0.05  # refit another object when it fires on this share of new positives
    seed: int = 0


@dataclass
class TaughtObject:
    object_id: int
    name: str
    positives: np.ndarray  # (P, C) float32
    negatives: np.ndarray  # (Q, C) float32: background of its teaching frames
    exemplar_patches: list[int] = field(default_factory=list)  # positive patches per teaching frame
    num_exemplars: int = 0
    min_patches: int = 1
    weights: np.ndarray | None = None  # (C,)
    bias: float = 0.0
    mask_threshold: float = 0.0
    presence_threshold: float = 0.5
    prototypes: np.ndarray | None = None  # (M, C)
    prototype_threshold: float = 0.5  # cosine similarity to the nearest prototype that counts as the object


def patch_coverage(mask: np.ndarray, grid_size: tuple[int, int]) -> np.ndarray:
    """Fraction of each patch covered by ``mask`` (rows x cols), by area averaging onto the grid."""
    cols, rows = grid_size
    return cv2.resize(mask.astype(np.float32), (cols, rows), interpolation=cv2.INTER_AREA)


def _subsample(rows: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    if len(rows) <= limit:
        return rows
    return rows[np.sort(rng.choice(len(rows), limit, replace=False))]


def _f32(x: float) -> float:
    return float(np.float32(x))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


class InstanceMemory:
    """Objects with stable ids (never reused), names, exemplars and fitted classifiers."""

    def __init__(self, backbone_id: str, feature_dim: int, config: MemoryConfig | None = None):
        self.backbone_id, self.feature_dim = backbone_id, int(feature_dim)
        self.config = config or MemoryConfig()
        self.objects: dict[int, TaughtObject] = {}
        self.background = np.zeros((0, self.feature_dim), np.float32)
        self.next_id = 1
        self.version = 0

    # ---- teaching -------------------------------------------------------------------------------
    def teach(self, exemplars: list[tuple[np.ndarray, np.ndarray]], name: str = "", object_id: int = 0,
              num_exemplars: int | None = None) -> int:
        """Teach from ``exemplars``: (features (rows, cols, C) float32 array, mask H x W bool) per frame.

        ``object_id`` 0 makes a new object called ``name``; an existing id gets more exemplars.
        ``num_exemplars``: how many prompted frames these are (fewer than the views when some are
        augmented variants); default one per view.
        Returns the object's id. Raises :class:`MemoryFormatError` for unknown ids, bad names or
        masks that cover no patch.
        """
        if not exemplars:
            raise MemoryFormatError("nothing to teach: give at least one prompted frame")
        if object_id and object_id not in self.objects:
            raise MemoryFormatError(f"no object with id {object_id}; list the objects to see the ids")
        if not object_id:
            name = check_name(name)
            if self.next_id > MAX_OBJECT_ID:
                raise MemoryFormatError(f"the memory has used all {MAX_OBJECT_ID} object ids")
        # Seeds come from the content, not from the memory's history: the same prompts give the same
        # object whether it is the first one taught or comes after many forgotten ones.
        rng = np.random.default_rng([self.config.seed, content_seed(exemplars[0][0])])
        positives, negatives, counts = [], [], []
        for features, mask in exemplars:
            features = np.asarray(features, np.float32)
            if features.ndim != 3 or features.shape[2] != self.feature_dim:
                raise MemoryFormatError(f"features of shape {features.shape} do not match this memory (dim {self.feature_dim})")
            coverage = patch_coverage(mask, (features.shape[1], features.shape[0]))
            positive = coverage > self.config.positive_coverage
            if not positive.any():  # a small object: take its best-covered patches
                best = coverage.max()
                if best <= 0:
                    raise MemoryFormatError("the mask covers no part of the image; nothing to learn from this prompt")
                positive = coverage >= max(best * 0.6, 0.2)
            positives.append(features[positive])
            negatives.append(features[coverage < self.config.negative_coverage])
            counts.append(int(positive.sum()))
        new_positives = np.concatenate(positives)
        new_negatives = _subsample(np.concatenate(negatives), self.config.max_object_negatives, rng)
        if object_id:
            obj = self.objects[object_id]
            obj.positives = _subsample(np.concatenate([obj.positives, new_positives]), self.config.max_positives, rng)
            obj.negatives = _subsample(np.concatenate([obj.negatives, new_negatives]), self.config.max_object_negatives, rng)
        else:
            object_id = self.next_id
            self.next_id += 1
            obj = TaughtObject(object_id, name, _subsample(new_positives, self.config.max_positives, rng), new_negatives)
            self.objects[object_id] = obj
        obj.num_exemplars += len(exemplars) if num_exemplars is None else num_exemplars
        obj.exemplar_patches += counts
        obj.min_patches = max(1, int(round(MIN_PATCHES_FRACTION * min(obj.exemplar_patches))))
        self.background = _subsample(np.concatenate([self.background, new_negatives]), self.config.background_bank_size, rng)
        self._refit_after_change(object_id, new_positives)
        self.version += 1
        return object_id

    def forget(self, object_id: int) -> TaughtObject:
        if object_id not in self.objects:
            raise MemoryFormatError(f"no object with id {object_id}")
        removed = self.objects.pop(object_id)
        # Objects that learned "not this one" from it keep valid (slightly conservative) classifiers.
        self.version += 1
        return removed

    def rename(self, object_id: int, name: str) -> None:
        if object_id not in self.objects:
            raise MemoryFormatError(f"no object with id {object_id}")
        self.objects[object_id].name = check_name(name)
        self.version += 1

    def find(self, name: str) -> int:
        matches = [i for i, o in self.objects.items() if o.name == name]
        if not matches:
            raise MemoryFormatError(f"no object named {name!r}")
        return matches[0]

    # ---- classifiers ----------------------------------------------------------------------------
    def _refit_after_change(self, changed: int, new_positives: np.ndarray) -> None:
        self._fit(changed)
        for other_id, other in self.objects.items():
            if other_id == changed or other.weights is None:
                continue
            fires = (new_positives @ other.weights + other.bias) > other.mask_threshold
            if fires.mean() > self.config.refit_fire_fraction:
                self._fit(other_id)

    def refit_all(self) -> None:
        for object_id in self.objects:
            self._fit(object_id)

    def _fit(self, object_id: int) -> None:
        from sklearn.cluster import KMeans
        from sklearn.svm import LinearSVC

        obj = self.objects[object_id]
        rng = np.random.default_rng([self.config.seed, len(obj.positives), obj.num_exemplars])
        others = [o.positives for i, o in self.objects.items() if i != object_id]
        negatives = np.concatenate([obj.negatives, self.background, *others]) if others else np.concatenate([obj.negatives, self.background])
        negatives = _subsample(negatives, self.config.max_negatives, rng)
        x = np.concatenate([obj.positives, negatives])
        y = np.concatenate([np.ones(len(obj.positives)), np.zeros(len(negatives))])
        svm = LinearSVC(C=self.config.svm_c, class_weight="balanced", dual=False, max_iter=2000, random_state=0)
        svm.fit(x, y)
        obj.weights = svm.coef_[0].astype(np.float32)
        obj.bias = _f32(svm.intercept_[0])  # the InstanceMemory message carries float32: keep exactly what it can
        obj.mask_threshold = 0.0
        # Presence: the mean of the top `min_patches` patch scores, as a logit, must reach a fraction
        # of the object's typical (median) positive patch score - and never fall below the SVM boundary.
        positive_logit = float(np.median(obj.positives @ obj.weights + obj.bias))
        obj.presence_threshold = _f32(_sigmoid(max(self.config.presence_fraction * positive_logit, 0.0)))
        k = min(self.config.prototypes, len(obj.positives))
        centres = KMeans(n_clusters=k, n_init=1, random_state=0).fit(obj.positives).cluster_centers_ if k > 1 else obj.positives[:1]
        obj.prototypes = (centres / np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-6)).astype(np.float32)
        # Similarity threshold: halfway between its positives' median and the hardest 1 % of negatives.
        positive_sim = float(np.median((obj.positives @ obj.prototypes.T).max(axis=1)))
        negative_sim = float(np.quantile((negatives @ obj.prototypes.T).max(axis=1), 0.99))
        obj.prototype_threshold = _f32(0.5 * (positive_sim + negative_sim))

    # ---- export for inference -------------------------------------------------------------------
    def export(self) -> dict:
        """What an inference node needs (no exemplars): the content of the InstanceMemory message."""
        return {
            "version": self.version,
            "backbone_id": self.backbone_id,
            "feature_dim": self.feature_dim,
            "objects": [
                {
                    "object_id": o.object_id, "name": o.name, "num_exemplars": o.num_exemplars,
                    "weights": o.weights, "bias": o.bias, "mask_threshold": o.mask_threshold,
                    "presence_threshold": o.presence_threshold, "min_patches": o.min_patches,
                    "max_patches": max(o.exemplar_patches, default=1), "prototypes": o.prototypes,
                    "prototype_threshold": o.prototype_threshold,
                }
                for o in sorted(self.objects.values(), key=lambda o: o.object_id)
            ],
        }

    # ---- persistence ----------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> Path:
        """Write atomically into ``directory`` (created if missing). Returns the manifest's path."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {"background": self.background}
        entries = []
        for o in sorted(self.objects.values(), key=lambda o: o.object_id):
            prefix = f"object_{o.object_id}_"
            arrays.update({prefix + "positives": o.positives, prefix + "negatives": o.negatives,
                           prefix + "weights": o.weights, prefix + "prototypes": o.prototypes})
            entries.append({"id": o.object_id, "name": o.name, "num_exemplars": o.num_exemplars, "bias": o.bias,
                            "mask_threshold": o.mask_threshold, "presence_threshold": o.presence_threshold,
                            "min_patches": o.min_patches, "exemplar_patches": o.exemplar_patches,
                            "prototype_threshold": o.prototype_threshold})
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".arrays-", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        digest = _sha256(Path(tmp))
        arrays_name = f"arrays-{self.version:06d}-{digest[:16]}.npz"
        os.replace(tmp, directory / arrays_name)
        _fsync_dir(directory)  # the arrays file is durable before a manifest names it
        manifest = {
            "format": "isar_ros.instance_memory", "schema_version": SCHEMA_VERSION, "backbone_id": self.backbone_id,
            "feature_dim": self.feature_dim, "version": self.version, "next_id": self.next_id,
            "arrays": arrays_name, "arrays_sha256": digest, "objects": entries,
        }
        _atomic_write_text(directory / MANIFEST, json.dumps(manifest, indent=1))
        _fsync_dir(directory)
        for stale in directory.glob("arrays-*.npz"):
            if stale.name != arrays_name:
                stale.unlink(missing_ok=True)
        for stale in directory.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        return directory / MANIFEST

    @classmethod
    def load(cls, directory: str | os.PathLike, backbone_id: str | None = None,
             config: MemoryConfig | None = None) -> "InstanceMemory":
        """Read a saved memory; refuses one built with another backbone than ``backbone_id``.

        Every problem raises :class:`MemoryFormatError` naming the file; nothing is unpickled.
        """
        directory = Path(directory)
        path = directory / MANIFEST
        try:
            manifest = json.loads(path.read_text())
        except FileNotFoundError:
            raise MemoryFormatError(f"{path}: no saved memory here") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise MemoryFormatError(f"{path}: unreadable or truncated manifest ({error})") from error
        try:
            if not isinstance(manifest, dict) or manifest.get("format") != "isar_ros.instance_memory":
                raise ValueError("not an isar_ros instance memory manifest")
            if manifest.get("schema_version") != SCHEMA_VERSION:
                raise ValueError(f"schema version {manifest.get('schema_version')!r}, this isar_ros reads {SCHEMA_VERSION}")
            stored_backbone = _typed(manifest, "backbone_id", str)
            if backbone_id is not None and stored_backbone != backbone_id:
                raise MemoryFormatError(f"{path}: this memory was built with backbone {stored_backbone!r}, "
                                   f"but {backbone_id!r} is running; teach again or start with backbone {stored_backbone!r}")
            dim = _typed(manifest, "feature_dim", int)
            memory = cls(stored_backbone, dim, config)
            memory.version = _typed(manifest, "version", int)
            memory.next_id = _typed(manifest, "next_id", int)
            if memory.version < 0 or not 1 <= memory.next_id <= MAX_OBJECT_ID + 1:
                raise ValueError(f"version {memory.version} or next_id {memory.next_id} is out of range")
            arrays_name = _typed(manifest, "arrays", str)
            if not ARRAYS_PATTERN.match(arrays_name):
                raise ValueError(f"arrays file name {arrays_name!r} is not of the form arrays-NNNNNN-<checksum>.npz")
            arrays_path = directory / arrays_name
            if _sha256(arrays_path) != _typed(manifest, "arrays_sha256", str):
                raise ValueError(f"{arrays_name} does not match the checksum in the manifest (edited or truncated)")
            with np.load(arrays_path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            memory.background = _array(arrays, "background", dim)
            entries = manifest.get("objects")
            if not isinstance(entries, list):
                raise ValueError("'objects' must be a list")
            for entry in entries:
                object_id = _typed(entry, "id", int)
                if not 1 <= object_id < memory.next_id or object_id > MAX_OBJECT_ID or object_id in memory.objects:
                    raise ValueError(f"object id {object_id} is out of range or repeated")
                prefix = f"object_{object_id}_"
                obj = TaughtObject(
                    object_id, check_name(_typed(entry, "name", str)),
                    _array(arrays, prefix + "positives", dim), _array(arrays, prefix + "negatives", dim),
                    num_exemplars=_typed(entry, "num_exemplars", int), min_patches=max(1, _typed(entry, "min_patches", int)),
                    weights=_array(arrays, prefix + "weights", dim, vector=True), bias=_finite(entry, "bias"),
                    mask_threshold=_finite(entry, "mask_threshold"), presence_threshold=_finite(entry, "presence_threshold"),
                    prototype_threshold=_finite(entry, "prototype_threshold"),
                    prototypes=_array(arrays, prefix + "prototypes", dim),
                    exemplar_patches=[int(c) for c in _typed(entry, "exemplar_patches", list)],
                )
                memory.objects[object_id] = obj
        except MemoryFormatError:
            raise
        except (KeyError, TypeError, ValueError, OSError, EOFError) as error:
            raise MemoryFormatError(f"{path}: refused ({error})") from error
        return memory


def check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise MemoryFormatError("an object needs a non-empty name")
    if len(name) > MAX_NAME_LENGTH or any(ord(c) < 32 for c in name):
        raise MemoryFormatError(f"object names must be at most {MAX_NAME_LENGTH} printable characters")
    return name.strip()


def _typed(entry: dict, key: str, kind: type):
    value = entry[key]
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{key!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


def _finite(entry: dict, key: str) -> float:
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{key!r} must be a finite number, got {value!r}")
    return float(value)


def _array(arrays: dict, key: str, dim: int, vector: bool = False) -> np.ndarray:
    if key not in arrays:
        raise KeyError(f"array {key!r} missing")
    value = arrays[key]
    expected = (dim,) if vector else (None, dim)
    if value.dtype != np.float32 or value.ndim != len(expected) or value.shape[-1] != dim:
        raise ValueError(f"array {key!r} is {value.dtype} {value.shape}, expected float32 {expected}")
    if not np.isfinite(value).all():
        raise ValueError(f"array {key!r} holds NaN or infinite values")
    return value


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
