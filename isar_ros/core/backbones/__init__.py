"""Backbones: an RGB image in, a grid of L2-normalised patch features out (see :class:`Backbone`).

The factory (``create_backbone``, ``resolve_device``) is in :mod:`isar_ros.core.backbones.factory`.
"""

from isar_ros.core.backbones.base import Backbone, FeatureGrid

__all__ = ["Backbone", "FeatureGrid"]
