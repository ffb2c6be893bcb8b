"""SAM without torchvision: our import, strict loading of a state dict in SAM's format, prompting."""

import sys

import numpy as np
import pytest
import torch

from isar_ros.core.mask_predictors import create_mask_predictor
from isar_ros.core.prompt_mask import Prompt
from isar_ros.core.sam import SamMaskPredictor, batched_nms, build_sam_model, load_sam_state
from isar_ros.core.weights import WeightsNotFound

TINY = dict(encoder_embed_dim=32, encoder_depth=1, encoder_num_heads=2, encoder_global_attn_indexes=[])


def test_segment_anything_imports_without_leaving_a_fake_torchvision():
    build_sam_model(**TINY)
    assert "torchvision" not in sys.modules and "torchvision.ops.boxes" not in sys.modules


def test_sam_state_dict_loads_strictly_and_one_encoding_serves_many_prompts(tmp_path):
    torch.manual_seed(0)
    reference = build_sam_model(**TINY)
    path = tmp_path / "sam_tiny.pth"
    torch.save(reference.state_dict(), path)
    model = build_sam_model(**TINY)
    load_sam_state(model, path)
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)
    predictor = SamMaskPredictor(model)
    rgb = np.random.default_rng(0).integers(0, 255, (120, 200, 3), dtype=np.uint8)
    predictor.set_image(rgb)
    embedding = predictor.embedding
    point = predictor.predict(Prompt(np.array([[50.0, 60.0]]), np.array([1])))
    boxed = predictor.predict(Prompt.from_isar((50, 60), (20, 30, 90, 100)))
    assert point.shape == boxed.shape == (120, 200) and point.dtype == bool
    assert predictor.embedding is embedding  # the image was encoded once for both prompts


def test_a_checkpoint_of_another_variant_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(build_sam_model(**{**TINY, "encoder_embed_dim": 64}).state_dict(), path)
    with pytest.raises(ValueError, match="is not a checkpoint of this SAM model"):
        load_sam_state(build_sam_model(**TINY), path)


def test_batched_nms_keeps_the_best_of_overlapping_boxes_per_category():
    boxes = torch.tensor(
        [[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]], dtype=torch.float32
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    categories = torch.tensor([0, 0, 1, 0])
    assert batched_nms(boxes, scores, categories, 0.5).tolist() == [0, 2, 3]


def test_sam_requested_without_a_checkpoint_says_where_to_put_one(tmp_path, monkeypatch):
    monkeypatch.setenv("ISAR_ROS_WEIGHTS", str(tmp_path))
    for name in ("ISAR_ROS_SAM_VIT_H", "ISAR_ROS_SAM_VIT_L", "ISAR_ROS_SAM_VIT_B"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(WeightsNotFound, match=rf"sam_vit_h_4b8939.pth.*into {tmp_path}"):
        create_mask_predictor("sam")
    assert create_mask_predictor("auto").name == "grabcut"  # auto falls back to GrabCut


def test_refine_sam_changes_the_masks_that_inference_publishes():
    """Regression: refine="sam" was accepted and silently never ran (no caller passed a refiner)."""
    from test_perception import box_prompt, scene

    from isar_ros.core.inference import InferenceConfig
    from isar_ros.core.perception import Perception, PerceptionConfig

    torch.manual_seed(0)
    refiner = SamMaskPredictor(build_sam_model(**TINY))
    plain = Perception(
        PerceptionConfig(mask_predictor="grabcut", device="cpu", inference=InferenceConfig(refine="none"))
    )
    refined = Perception(
        PerceptionConfig(mask_predictor="grabcut", device="cpu", inference=InferenceConfig(refine="sam")),
        refiner=refiner,
    )
    rgb, masks = scene({"red_stripes": (30, 40, 70, 60)}, seed=1)
    for perception in (plain, refined):
        perception.teach([(perception.encode(rgb), [box_prompt(masks["red_stripes"])])], name="red")
    other, _ = scene({"red_stripes": (150, 90, 70, 60)}, seed=2)
    without = plain.find(plain.encode(other))
    with_sam = refined.find(refined.encode(other))
    assert (
        without.instances and "refinement" in with_sam.timings_ms and "refinement" not in without.timings_ms
    )
    assert not np.array_equal(without.labels, with_sam.labels)


def test_refine_sam_without_a_checkpoint_says_what_to_supply(tmp_path, monkeypatch):
    from isar_ros.core.inference import InferenceConfig
    from isar_ros.core.perception import Perception, PerceptionConfig

    monkeypatch.setenv("ISAR_ROS_WEIGHTS", str(tmp_path))
    for name in ("ISAR_ROS_SAM_VIT_H", "ISAR_ROS_SAM_VIT_L", "ISAR_ROS_SAM_VIT_B"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(WeightsNotFound, match="no SAM checkpoint"):
        Perception(PerceptionConfig(device="cpu", inference=InferenceConfig(refine="sam")))
