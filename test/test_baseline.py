"""isar_baseline: the authors' pipeline, run here on tiny random models (real weights cannot be
downloaded)."""

import numpy as np
import pytest
import torch

from isar_ros.core.backbones.dinov2 import Dinov2Backbone, DinoVisionTransformer, VitSpec
from isar_ros.core.sam import SamMaskPredictor, build_sam_model
from isar_ros.core.weights import WeightsNotFound
from isar_ros.isar import registry
from isar_ros.isar.baseline import IsarBaselineMethod, local_maxima, train_linear
from isar_ros.isar.dataset import IsarDataset


@pytest.fixture(scope="module")
def tiny_baseline():
    torch.manual_seed(0)
    vit = DinoVisionTransformer(VitSpec(dim=48, depth=2, heads=3))
    backbone = Dinov2Backbone(
        vit, "dinov2_tiny", torch.device("cpu"), input_policy="stretch", stretch_size=560
    )
    sam = SamMaskPredictor(
        build_sam_model(
            encoder_embed_dim=32, encoder_depth=1, encoder_num_heads=2, encoder_global_attn_indexes=[]
        )
    )
    return IsarBaselineMethod({}, backbone=backbone, sam=sam)


def test_runs_end_to_end_and_paints_only_task_objects(tiny_baseline, tiny_dataset):
    task = IsarDataset(tiny_dataset).tasks[0]
    tiny_baseline.train(task, "single_shot")
    assert tiny_baseline.ids == task.semantic_ids
    assert tiny_baseline.weights.shape == (len(task.semantic_ids), 48)
    frame = task.test_scenes[0].frame(0)
    labels = tiny_baseline.predict(frame)
    assert labels.shape == frame.ground_truth().shape
    assert set(np.unique(labels)) <= {0, *task.semantic_ids}


def test_hinge_classifier_learns_a_separable_case():
    rng = np.random.default_rng(0)
    positives = (rng.normal(size=(300, 8)) * 0.1 + np.eye(8)[0]).astype(np.float32)
    negatives = (rng.normal(size=(3000, 8)) * 0.1 - np.eye(8)[0]).astype(np.float32)
    w, b = train_linear(positives, negatives)
    assert ((positives @ w + b) > 0).mean() > 0.99 and ((negatives @ w + b) < 0).mean() > 0.99


def test_local_maxima_are_the_strongest_peaks_inside_the_mask():
    score = np.zeros((64, 64), np.float32)
    score[10, 10], score[40, 50], score[60, 5] = 3.0, 2.0, 5.0
    mask = np.ones_like(score, bool)
    mask[55:, :] = False  # the strongest peak lies outside the mask
    assert local_maxima(score, mask, count=2) == [(10, 10), (50, 40)]


def test_only_the_last_train_scene_is_used_by_default(tiny_dataset, tmp_path):
    from sim_bridge.generator import GeneratorConfig, generate

    generate(
        GeneratorConfig(
            tasks=1, seed=4, width=160, height=96, frames=21, train_scenes=2, test_scenes=1, workers=2
        ),
        tmp_path,
        progress=False,
    )
    task = IsarDataset(tmp_path).tasks[0]
    used = []

    class Spy(IsarBaselineMethod):
        def _features(self, rgb):
            used.append(rgb.shape)
            return super()._features(rgb)

    torch.manual_seed(0)
    vit = DinoVisionTransformer(VitSpec(dim=48, depth=1, heads=3))
    sam = SamMaskPredictor(
        build_sam_model(
            encoder_embed_dim=32, encoder_depth=1, encoder_num_heads=2, encoder_global_attn_indexes=[]
        )
    )
    backbone = Dinov2Backbone(vit, "t", torch.device("cpu"), input_policy="stretch")
    Spy({}, backbone=backbone, sam=sam).train(task, "multi_shot")
    last_scene_frames = len(task.train_scenes[-1].prompts("multi_shot"))
    assert len(used) == last_scene_frames
    used.clear()
    Spy({"all_train_scenes": "true"}, backbone=backbone, sam=sam).train(task, "multi_shot")
    assert len(used) == sum(len(s.prompts("multi_shot")) for s in task.train_scenes)


def test_missing_weights_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("ISAR_ROS_WEIGHTS", str(tmp_path))
    monkeypatch.delenv("ISAR_ROS_DINOV2_VITL14", raising=False)
    with pytest.raises(WeightsNotFound, match=r"dinov2_vitl14_pretrain\.pth"):
        registry.create("isar_baseline")
