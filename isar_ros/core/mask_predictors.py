"""Pick a prompt -> mask predictor: SAM when its checkpoint is found (or asked for), GrabCut otherwise."""

from __future__ import annotations

from isar_ros.core.prompt_mask import GrabCutPredictor, MaskPredictor
from isar_ros.core.weights import WeightsNotFound, find_sam_checkpoint
from isar_ros.errors import ConfigurationError


def create_mask_predictor(
    kind: str = "auto", checkpoint: str | None = None, device: str = "auto"
) -> MaskPredictor:
    """``grabcut``, ``sam`` (needs a checkpoint; see isar_ros.core.weights), or ``auto`` (SAM if found)."""
    if kind == "grabcut":
        return GrabCutPredictor()
    if kind in ("sam", "auto"):
        try:
            path = find_sam_checkpoint(checkpoint)
        except WeightsNotFound:
            if kind == "sam":
                raise
            return GrabCutPredictor()
        from isar_ros.core.sam import SamMaskPredictor

        return SamMaskPredictor.from_checkpoint(path, device=device)
    raise ConfigurationError(f"unknown mask predictor {kind!r}; use auto, sam or grabcut")
