"""DINOv2: official-format state dicts load strictly, and the forward pass matches an independent
re-computation."""

import json
import math
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from isar_ros.core.backbones.dinov2 import (
    SPECS,
    Dinov2Backbone,
    DinoVisionTransformer,
    autocast_dtype,
    input_size,
    load_checkpoint,
)
from isar_ros.core.perception import Perception, PerceptionConfig
from isar_ros.core.prompt_mask import Prompt
from isar_ros.core.weights import WeightsNotFound
from isar_ros.errors import ConfigurationError


def official_state_dict(size: str, registers: int, seed: int) -> dict[str, torch.Tensor]:
    """Random tensors under the official DINOv2 checkpoint keys and shapes, written out here by hand."""
    dim, depth = {"s": (384, 12), "b": (768, 12)}[size]
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *shape, std=0.02: torch.randn(*shape, generator=g) * std  # noqa: E731
    state = {
        "cls_token": rnd(1, 1, dim),
        "pos_embed": rnd(1, 1370, dim),
        "mask_token": rnd(1, dim),
        "patch_embed.proj.weight": rnd(dim, 3, 14, 14),
        "patch_embed.proj.bias": rnd(dim),
        "norm.weight": 1 + rnd(dim),
        "norm.bias": rnd(dim),
    }
    if registers:
        state["register_tokens"] = rnd(1, registers, dim)
    for i in range(depth):
        p = f"blocks.{i}."
        state.update(
            {
                p + "norm1.weight": 1 + rnd(dim),
                p + "norm1.bias": rnd(dim),
                p + "attn.qkv.weight": rnd(3 * dim, dim),
                p + "attn.qkv.bias": rnd(3 * dim),
                p + "attn.proj.weight": rnd(dim, dim),
                p + "attn.proj.bias": rnd(dim),
                p + "ls1.gamma": rnd(dim, std=0.5),
                p + "norm2.weight": 1 + rnd(dim),
                p + "norm2.bias": rnd(dim),
                p + "mlp.fc1.weight": rnd(4 * dim, dim),
                p + "mlp.fc1.bias": rnd(4 * dim),
                p + "mlp.fc2.weight": rnd(dim, 4 * dim),
                p + "mlp.fc2.bias": rnd(dim),
                p + "ls2.gamma": rnd(dim, std=0.5),
            }
        )
    return state


def reference_forward(state: dict, x: torch.Tensor, heads: int, registers: int) -> torch.Tensor:
    """Straightforward re-computation of the DINOv2 layers from the state dict (float64)."""
    s = {k: v.double() for k, v in state.items()}
    x = x.double()
    dim = s["cls_token"].shape[-1]
    rows, cols = x.shape[2] // 14, x.shape[3] // 14

    def layer_norm(t, w, b):
        mean = t.mean(-1, keepdim=True)
        var = ((t - mean) ** 2).mean(-1, keepdim=True)
        return (t - mean) / torch.sqrt(var + 1e-6) * w + b

    patches = x.unfold(2, 14, 14).unfold(3, 14, 14)  # 1 x 3 x rows x cols x 14 x 14
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(1, rows * cols, 3 * 14 * 14)
    tokens = patches @ s["patch_embed.proj.weight"].reshape(dim, -1).T + s["patch_embed.proj.bias"]
    grid = s["pos_embed"][0, 1:].reshape(37, 37, dim).permute(2, 0, 1)[None]
    pos = F.interpolate(
        grid, scale_factor=((rows + 0.1) / 37, (cols + 0.1) / 37), mode="bicubic", antialias=False
    )
    pos = pos[0].permute(1, 2, 0).reshape(rows * cols, dim)
    tokens = torch.cat([s["cls_token"][0] + s["pos_embed"][0, :1], tokens[0] + pos])
    if registers:
        tokens = torch.cat([tokens[:1], s["register_tokens"][0], tokens[1:]])
    head = dim // heads
    for i in range(12):
        p = f"blocks.{i}."
        h = layer_norm(tokens, s[p + "norm1.weight"], s[p + "norm1.bias"])
        q, k, v = (h @ s[p + "attn.qkv.weight"].T + s[p + "attn.qkv.bias"]).chunk(3, dim=-1)
        out = []
        for j in range(heads):
            sl = slice(j * head, (j + 1) * head)
            weights = torch.softmax(q[:, sl] @ k[:, sl].T / math.sqrt(head), dim=-1)
            out.append(weights @ v[:, sl])
        attn = torch.cat(out, dim=-1) @ s[p + "attn.proj.weight"].T + s[p + "attn.proj.bias"]
        tokens = tokens + attn * s[p + "ls1.gamma"]
        h = layer_norm(tokens, s[p + "norm2.weight"], s[p + "norm2.bias"])
        h = (
            F.gelu(h @ s[p + "mlp.fc1.weight"].T + s[p + "mlp.fc1.bias"]) @ s[p + "mlp.fc2.weight"].T
            + s[p + "mlp.fc2.bias"]
        )
        tokens = tokens + h * s[p + "ls2.gamma"]
    tokens = layer_norm(tokens, s["norm.weight"], s["norm.bias"])
    return tokens[1 + registers :].reshape(rows, cols, dim)


@pytest.mark.parametrize("size,registers", [("s", 0), ("b", 0), ("s", 4)])
def test_official_state_dict_loads_strictly_and_matches_reference(tmp_path, size, registers):
    state = official_state_dict(size, registers, seed=1)
    path = tmp_path / f"dinov2_vit{size}14{'_reg4' if registers else ''}_pretrain.pth"
    torch.save(state, path)
    model = DinoVisionTransformer(SPECS[size], registers)
    load_checkpoint(model, path)  # strict=True inside
    model.eval()
    for height, width in [(224, 224), (168, 252)]:
        x = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(height))
        with torch.no_grad():
            ours = model.forward_features(x)[0]
        expected = reference_forward(state, x, SPECS[size].heads, registers)
        assert ours.shape == (height // 14, width // 14, SPECS[size].dim)
        torch.testing.assert_close(ours.double(), expected, atol=1e-5, rtol=0)


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    path = tmp_path / "vits.pth"
    torch.save(official_state_dict("s", 0, 0), path)
    with pytest.raises(ValueError, match="is not a checkpoint of this DINOv2 model"):
        load_checkpoint(DinoVisionTransformer(SPECS["s"], registers=4), path)


def test_backbone_from_the_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("ISAR_ROS_WEIGHTS", str(tmp_path))
    torch.save(official_state_dict("s", 0, 2), tmp_path / "dinov2_vits14_pretrain.pth")
    backbone = Dinov2Backbone.from_name("dinov2_vits14", torch.device("cpu"), short_side=112)
    grid = backbone.extract(np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8))
    assert grid.features.shape == (112 // 14, 154 // 14, 384)  # 160x120 -> 154x112 keeps the aspect ratio
    torch.testing.assert_close(grid.features.norm(dim=-1), torch.ones(8, 11))
    bf16 = Dinov2Backbone(
        backbone.model, "dinov2_vits14", torch.device("cpu"), short_side=112, precision="bf16"
    )
    cosine = (
        bf16.extract(np.full((120, 160, 3), 90, np.uint8)).features
        * backbone.extract(np.full((120, 160, 3), 90, np.uint8)).features
    ).sum(-1)
    assert cosine.min() > 0.99


def test_missing_checkpoint_names_the_file_and_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("ISAR_ROS_WEIGHTS", str(tmp_path))
    monkeypatch.delenv("ISAR_ROS_DINOV2_VITB14", raising=False)
    with pytest.raises(
        WeightsNotFound, match=rf"dinov2_vitb14_pretrain\.pth into {tmp_path}.*ISAR_ROS_DINOV2_VITB14"
    ):
        Dinov2Backbone.from_name("dinov2_vitb14", torch.device("cpu"))


def test_input_size_policies():
    assert input_size(640, 480, "keep_aspect", 448, 560) == (602, 448)
    assert input_size(1280, 720, "stretch", 448, 560) == (560, 560)


def test_teach_and_find_run_end_to_end_on_dinov2_features(tmp_path, monkeypatch):
    """The isar_ros method with DINOv2 (random weights in the official format): teaching fits a classifier in
    its 384-dim feature space, with the relative presence and appearance thresholds, and finding runs."""
    monkeypatch.setenv("ISAR_ROS_WEIGHTS", str(tmp_path))
    torch.save(official_state_dict("s", 0, 3), tmp_path / "dinov2_vits14_pretrain.pth")
    config = PerceptionConfig(
        backbone="dinov2_vits14", device="cpu", mask_predictor="grabcut", short_side=112
    )
    perception = Perception(config)
    rgb = np.full((120, 160, 3), 110, np.uint8)
    rgb[30:90, 40:100] = (200, 40, 40)
    frame = perception.encode(rgb)
    taught = perception.teach([(frame, [Prompt.from_isar((70, 60), (40, 30, 99, 89))])], name="red box")
    (obj,) = perception.objects()
    assert obj.object_id == taught.object_id and obj.classifier.weights.shape == (384,)
    assert obj.classifier.appearance.shape == (384,) and -1.0 <= obj.classifier.appearance_threshold <= 1.0
    segmentation = perception.find(perception.encode(rgb))
    assert segmentation.labels.shape == (120, 160)
    assert {i.object_id for i in segmentation.instances} <= {taught.object_id}


def test_the_input_size_is_part_of_the_backbone_id():
    model = DinoVisionTransformer(SPECS["s"])
    cpu = torch.device("cpu")
    assert Dinov2Backbone(model, "dinov2_vits14", cpu).backbone_id == "dinov2_vits14"
    assert Dinov2Backbone(model, "dinov2_vits14", cpu, short_side=224).backbone_id == "dinov2_vits14-s224"
    stretched = Dinov2Backbone(model, "dinov2_vits14", cpu, input_policy="stretch")
    assert stretched.backbone_id == "dinov2_vits14-stretch560"


def test_openvino_gives_the_torch_features_and_reuses_its_export(tmp_path, monkeypatch):
    """Random weights in the official format, loaded from a checkpoint as a user's would be."""
    pytest.importorskip("openvino", reason="OpenVINO is optional: pip install openvino")
    monkeypatch.setenv("ISAR_ROS_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("ISAR_OPENVINO_CACHE", str(tmp_path / "ov"))
    torch.save(official_state_dict("s", 0, 4), tmp_path / "dinov2_vits14_pretrain.pth")
    cpu = torch.device("cpu")
    reference = Dinov2Backbone.from_name("dinov2_vits14", cpu, short_side=112)
    fast = Dinov2Backbone.from_name(
        "dinov2_vits14", cpu, short_side=112, backend="openvino", precision="fp32"
    )
    rgb = np.random.default_rng(1).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    a, b = reference.extract(rgb).features, fast.extract(rgb).features
    assert a.shape == b.shape == (8, 11, 384)
    assert (a * b).sum(-1).min() > 0.999
    assert fast.backbone_id == reference.backbone_id  # the same features: the same memories
    (exported,) = (tmp_path / "ov").glob("dinov2_vits14-*-154x112.xml")
    stamp = exported.stat().st_mtime_ns
    again = Dinov2Backbone.from_name(
        "dinov2_vits14", cpu, short_side=112, backend="openvino", precision="fp32"
    )
    torch.testing.assert_close(again.extract(rgb).features, b)
    assert exported.stat().st_mtime_ns == stamp  # loaded from the cache, not exported again
    other = official_state_dict("s", 0, 5)  # other weights: another cache entry, never the old one
    torch.save(other, tmp_path / "dinov2_vits14_pretrain.pth")
    Dinov2Backbone.from_name("dinov2_vits14", cpu, short_side=112, backend="openvino").extract(rgb)
    assert len(list((tmp_path / "ov").glob("dinov2_vits14-*-154x112.xml"))) == 2


def camera_images(count: int, seed: int) -> list[np.ndarray]:
    """Smooth colour images with a few flat shapes (160 x 120), like a camera's more than noise is."""
    import cv2

    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        image = cv2.resize(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8), (160, 120))
        for _shape in range(3):
            x, y = int(rng.integers(0, 130)), int(rng.integers(0, 90))
            image[y : y + 30, x : x + 30] = rng.integers(0, 255, 3)
        images.append(image)
    return images


def test_int8_is_quantised_on_the_users_images_and_gives_the_torch_features(tmp_path, monkeypatch, capsys):
    """isar-ros quantize on a folder of camera images, then precision int8 in the backbone; random weights
    in the official format, loaded from a checkpoint as a user's would be."""
    import cv2

    pytest.importorskip("openvino", reason="OpenVINO is optional: pip install openvino")
    pytest.importorskip("nncf", reason="NNCF is optional: pip install nncf")
    from isar_ros.cli import main

    monkeypatch.setenv("ISAR_ROS_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("ISAR_OPENVINO_CACHE", str(tmp_path / "ov"))
    torch.save(official_state_dict("s", 0, 4), tmp_path / "dinov2_vits14_pretrain.pth")
    cpu = torch.device("cpu")
    with pytest.raises(ConfigurationError, match="isar-ros quantize dinov2_vits14 --images"):
        Dinov2Backbone.from_name("dinov2_vits14", cpu, short_side=112, backend="openvino", precision="int8")
    with pytest.raises(ConfigurationError, match="for backend openvino"):
        Dinov2Backbone.from_name("dinov2_vits14", cpu, short_side=112, precision="int8")
    folder = tmp_path / "camera"
    folder.mkdir()
    assert main(["quantize", "dinov2_vits14", "--images", str(folder), "--short-side", "112"]) == 2
    assert "holds 0 usable colour images" in capsys.readouterr().err
    for k, image in enumerate(camera_images(12, seed=0)):
        cv2.imwrite(str(folder / f"{k:03d}.png"), image[..., ::-1])
    cv2.imwrite(str(folder / "mask.png"), np.zeros((120, 160), np.uint8))  # grey: skipped
    args = ["quantize", "dinov2_vits14", "--images", str(folder), "--short-side", "112", "--check", "3"]
    assert main(args) == 0
    said = capsys.readouterr().out
    assert "on 9 images, 3 held out" in said and "-p precision:=int8 -p short_side:=112" in said
    printed_min = float(said.split("patch cosine min ")[1].split(",")[0])
    assert printed_min > 0.99
    (written,) = (tmp_path / "ov").glob("dinov2_vits14-*-154x112-int8.xml")

    reference = Dinov2Backbone.from_name("dinov2_vits14", cpu, short_side=112)
    int8 = Dinov2Backbone.from_name(
        "dinov2_vits14", cpu, short_side=112, backend="openvino", precision="int8"
    )
    assert int8.backbone_id == reference.backbone_id  # the same features: the same memories
    for rgb in camera_images(3, seed=1):  # images neither the calibration nor its check saw
        a, b = reference.extract(rgb).features, int8.extract(rgb).features
        assert a.shape == b.shape == (8, 11, 384)
        assert (a * b).sum(-1).min() > 0.99
    with pytest.raises(ConfigurationError, match="for a 210x112 network input"):
        int8.extract(np.zeros((100, 190, 3), np.uint8))  # another camera size: not calibrated
    assert written.is_file()


def test_openvino_settings_are_checked_with_a_message(monkeypatch):
    model = DinoVisionTransformer(SPECS["s"])
    with pytest.raises(ConfigurationError, match="backend must be one of torch, openvino"):
        Dinov2Backbone(model, "dinov2_vits14", torch.device("cpu"), backend="onnx")
    with pytest.raises(ConfigurationError, match="runs on the CPU"):
        Dinov2Backbone(model, "dinov2_vits14", torch.device("meta"), backend="openvino")
    monkeypatch.setitem(sys.modules, "openvino", None)  # as where it is not installed
    with pytest.raises(ConfigurationError, match="pip install openvino"):
        Dinov2Backbone(model, "dinov2_vits14", torch.device("cpu"), backend="openvino")


def test_torch_precision_and_compile_give_the_eager_fp32_features():
    cpu = torch.device("cpu")
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("bf16", cpu) is torch.bfloat16
    with pytest.raises(ConfigurationError, match="fp16 needs a CUDA GPU"):
        autocast_dtype("fp16", cpu)
    with pytest.raises(ConfigurationError, match="precision must be one of"):
        autocast_dtype("int4", cpu)
    torch.manual_seed(0)
    model = DinoVisionTransformer(SPECS["s"])
    rgb = np.random.default_rng(2).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    eager = Dinov2Backbone(model, "dinov2_vits14", cpu, short_side=112).extract(rgb).features
    compiled = Dinov2Backbone(model, "dinov2_vits14", cpu, short_side=112, compile=True)
    assert compiled.forward is not model.forward_features
    torch.testing.assert_close(compiled.extract(rgb).features, eager, atol=2e-4, rtol=1e-3)


def test_the_gpu_benchmark_says_plainly_when_there_is_no_gpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the benchmark measures instead (scripts/benchmark_gpu.py)")
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "benchmark_gpu.py"
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stdout.startswith("no GPU present: ") and "Nothing was measured" in result.stdout
    # the same measurement code, dry-run on the CPU: it runs through and prints its table
    out = tmp_path / "gpu.json"
    dry = ["--device", "cpu", "--models", "s", "--precisions", "fp32", "--short-sides", "112"]
    dry += ["--repeats", "1", "--out", str(out)]
    result = subprocess.run([sys.executable, str(script), *dry], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "CPU dry run" in result.stdout and "Hz pipelined" in result.stdout
    (row,) = json.loads(out.read_text())["rows"]
    assert row["model"] == "ViT-S/14" and row["grid"] == [8, 11] and row["node_hz_pipelined"] > 0
