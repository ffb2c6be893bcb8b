"""Backbones: an RGB image in, a grid of L2-normalised patch features out (see :class:`Backbone`)."""

from isar_ros.core.backbones.base import Backbone, FeatureGrid, create_backbone

__all__ = ["Backbone", "FeatureGrid", "create_backbone"]
