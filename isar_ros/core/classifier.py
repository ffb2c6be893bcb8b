"""The per-object classifier, in the scikit-learn convention: hyper-parameters in the constructor,
:meth:`LinearObjectClassifier.fit` sets the learned attributes (trailing underscore).

A linear SVM (``LinearSVC``, balanced classes) separates an object's positive patch features from
its negatives. From the fit come the thresholds inference uses:

* presence: the mean of the object's best patch scores, as a logit, must reach ``presence_fraction``
  of its typical (median) positive patch score - and never fall below the SVM boundary;
* prototypes: k-means centres of the positives (unit length), with a cosine threshold halfway
  between the positives' median similarity and the hardest 1 % of negatives;
* appearance: the direction of the positives' mean feature (for an object taught from one view, halfway
  to its mean feature in that view seen closer: the next sighting may be nearer), and a cosine threshold
  ``APPEARANCE_FRACTION`` of the way from the cosine of the negatives' mean (what the object's
  surroundings look like, pooled) to 1. A region that scores high patch by patch but whose mean
  feature is barely closer to the object than its surroundings are (a patch of similar colour in
  another scene) is not the object. Both ends are the object's own, so the rule holds for any
  backbone's feature scale. The fraction was chosen on the dev suite (docs/evaluation.md): 0.3
  removed a few more false alarms on DAVIS absent-object videos but lost more objects photographed in
  other scenes (PerSeg); 0.5 lost more still.
"""

from __future__ import annotations

import math

import numpy as np

from isar_ros.core.memory_snapshot import ObjectClassifier

APPEARANCE_FRACTION = 0.15  # appearance threshold: this share of the way from the surroundings' cosine to 1


def _f32(x: float) -> float:
    """The InstanceMemory message carries float32: keep exactly what it can."""
    return float(np.float32(x))


def _unit(vector: np.ndarray) -> np.ndarray:
    return (vector / max(float(np.linalg.norm(vector)), 1e-6)).astype(np.float32)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


class LinearObjectClassifier:
    """Linear SVM + presence threshold + prototypes for one object.

    Parameters: ``svm_c`` (the SVM's C), ``presence_fraction`` (see the module), ``prototypes`` (k of
    k-means), ``random_state`` (the solvers' seed). After :meth:`fit`: ``coef_`` (C,) float32,
    ``intercept_``, ``mask_threshold_``, ``presence_threshold_``, ``prototypes_`` (k, C) float32,
    ``prototype_threshold_``, ``appearance_`` (C,) float32, ``appearance_threshold_``.
    """

    def __init__(
        self, svm_c: float = 0.5, presence_fraction: float = 0.6, prototypes: int = 6, random_state: int = 0
    ):
        self.svm_c = svm_c
        self.presence_fraction = presence_fraction
        self.prototypes = prototypes
        self.random_state = random_state

    def fit(
        self, positives: np.ndarray, negatives: np.ndarray, closer: np.ndarray | None = None
    ) -> LinearObjectClassifier:
        """``positives`` (P, C) and ``negatives`` (Q, C) float32 patch features; ``closer`` (C,): the mean
        feature of the object seen closer, which the appearance takes in equally with the positives'."""
        from sklearn.cluster import KMeans
        from sklearn.svm import LinearSVC

        x = np.concatenate([positives, negatives])
        y = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))])
        svm = LinearSVC(
            C=self.svm_c, class_weight="balanced", dual=False, max_iter=2000, random_state=self.random_state
        )
        svm.fit(x, y)
        self.coef_ = svm.coef_[0].astype(np.float32)
        self.intercept_ = _f32(svm.intercept_[0])
        self.mask_threshold_ = 0.0
        positive_logit = float(np.median(positives @ self.coef_ + self.intercept_))
        self.presence_threshold_ = _f32(_sigmoid(max(self.presence_fraction * positive_logit, 0.0)))
        k = min(self.prototypes, len(positives))
        if k > 1:
            centres = (
                KMeans(n_clusters=k, n_init=1, random_state=self.random_state).fit(positives).cluster_centers_
            )
        else:
            centres = positives[:1]
        self.prototypes_ = (
            centres / np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-6)
        ).astype(np.float32)
        positive_sim = float(np.median((positives @ self.prototypes_.T).max(axis=1)))
        negative_sim = float(np.quantile((negatives @ self.prototypes_.T).max(axis=1), 0.99))
        self.prototype_threshold_ = _f32(0.5 * (positive_sim + negative_sim))
        self.appearance_ = _unit(positives.mean(axis=0))
        if closer is not None:
            self.appearance_ = _unit(self.appearance_ + _unit(closer))
        surroundings = float(self.appearance_ @ _unit(negatives.mean(axis=0)))
        self.appearance_threshold_ = _f32(surroundings + APPEARANCE_FRACTION * (1.0 - surroundings))
        return self

    def decision_function(self, features: np.ndarray) -> np.ndarray:
        """Patch scores (N,) of ``features`` (N, C)."""
        return features @ self.coef_ + self.intercept_

    def to_record(self) -> ObjectClassifier:
        """The fitted values as an immutable :class:`ObjectClassifier`."""
        return ObjectClassifier(
            self.coef_,
            self.intercept_,
            self.mask_threshold_,
            self.presence_threshold_,
            self.prototypes_,
            self.prototype_threshold_,
            self.appearance_,
            self.appearance_threshold_,
        )
