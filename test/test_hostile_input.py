"""Random and adversarial inputs: a clear error of the module's own type every time, nothing else.

Property-based (hypothesis): image conversion, prompt validation, the memory manifest loader and the
ISAR reader. A loader never writes outside its directory and never runs code from a memory folder.
"""

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sensor_msgs.msg import Image

from isar_ros.core.memory_snapshot import MemoryFormatError, check_name
from isar_ros.core.memory_store import load_memory
from isar_ros.core.prompt_mask import Prompt, PromptError
from isar_ros.isar.dataset import IsarDataset, IsarFormatError
from isar_ros.msgio.image_codec import ENCODINGS, ImageConversionError, image_to_numpy

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.integers(-(10**12), 10**12))


@SETTINGS
@given(
    encoding=st.one_of(st.sampled_from(sorted(ENCODINGS)), st.text(max_size=8)),
    height=st.integers(-5, 70),
    width=st.integers(-5, 70),
    step=st.integers(-5, 600),
    size=st.integers(0, 5000),
    bigendian=st.integers(0, 1),
)
def test_image_conversion_only_raises_its_own_error(encoding, height, width, step, size, bigendian):
    msg = Image(
        encoding=encoding,
        height=max(height, 0),
        width=max(width, 0),
        step=max(step, 0),
        is_bigendian=bigendian,
        data=bytes(size),
    )
    try:
        array = image_to_numpy(msg)
    except ImageConversionError as error:
        assert str(error)
        return
    spec = ENCODINGS[encoding]
    assert array.shape[:2] == (msg.height, msg.width) and array.dtype == spec.dtype


@SETTINGS
@given(
    points=st.lists(st.tuples(numbers, numbers), max_size=5),
    labels=st.lists(st.integers(-3, 3), max_size=6),
    box=st.one_of(st.none(), st.lists(numbers, min_size=0, max_size=6)),
    width=st.integers(1, 4000),
    height=st.integers(1, 4000),
)
def test_prompt_validation_only_raises_prompt_error(points, labels, box, width, height):
    prompt = Prompt(
        np.array(points, np.float64).reshape(-1, 2),
        np.array(labels),
        None if box is None else np.array(box, np.float64),
    )
    try:
        prompt.validate(width, height)
    except PromptError as error:
        assert str(error)
        return
    for x, y in np.asarray(points, np.float64).reshape(-1, 2):
        assert 0 <= x < width and 0 <= y < height


@SETTINGS
@given(name=st.text(max_size=300))
def test_object_names_are_accepted_or_refused_clearly(name):
    try:
        accepted = check_name(name)
    except MemoryFormatError:
        return
    assert accepted and len(accepted) <= 256 and all(ord(c) >= 32 for c in accepted)


@pytest.fixture(scope="module")
def saved_memory(tmp_path_factory):
    from isar_ros.core.perception import Perception, PerceptionConfig

    perception = Perception(PerceptionConfig(device="cpu", mask_predictor="grabcut"))
    rgb = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    frame = perception.encode(rgb)
    perception.teach([(frame, [Prompt.from_isar(box_xyxy=(40, 30, 90, 80))])], name="cup")
    directory = tmp_path_factory.mktemp("memory") / "m"
    perception.save(directory)
    return directory


FIELDS = [
    "format",
    "schema_version",
    "backbone_id",
    "feature_dim",
    "version",
    "next_id",
    "arrays",
    "arrays_sha256",
    "objects",
]
hostile_values = st.one_of(
    numbers,
    st.text(max_size=20),
    st.none(),
    st.booleans(),
    st.sampled_from(["../../../etc/passwd", "/tmp/x.npz", "arrays-000001.npz/../../y", "\x00", "é" * 50]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


@SETTINGS
@given(
    field=st.sampled_from(
        FIELDS + ["objects.0.id", "objects.0.name", "objects.0.bias", "objects.0.min_patches"]
    ),
    value=hostile_values,
)
def test_manifest_loader_refuses_edits_clearly_and_writes_nothing(
    saved_memory, tmp_path_factory, field, value
):
    directory = tmp_path_factory.mktemp("edited") / "m"
    shutil.copytree(saved_memory, directory)
    manifest = json.loads((directory / "manifest.json").read_text())
    target, key = manifest, field
    if field.startswith("objects.0."):
        target, key = manifest["objects"][0], field.split(".")[-1]
    original = target.get(key)
    target[key] = value
    (directory / "manifest.json").write_text(json.dumps(manifest))
    before = sorted(p.name for p in directory.parent.rglob("*"))
    try:
        memory = load_memory(directory)
    except MemoryFormatError as error:
        assert str(error)
    else:  # an edit that leaves a valid memory loads, and what loads is valid in every field
        del original
        assert isinstance(memory.version, int) and isinstance(memory.next_id, int) and memory.next_id <= 65536
        for object_id, obj in memory.objects.items():
            assert isinstance(object_id, int) and 1 <= object_id < memory.next_id
            assert check_name(obj.name) == obj.name and obj.exemplars.min_patches >= 1
            c = obj.classifier
            assert all(math.isfinite(v) for v in c.scalars)
            assert c.appearance.shape in ((0,), (memory.feature_dim,)) and np.isfinite(c.appearance).all()
            assert (
                obj.classifier.weights.shape == (memory.feature_dim,)
                and np.isfinite(obj.classifier.weights).all()
            )
    assert sorted(p.name for p in directory.parent.rglob("*")) == before  # nothing written


@SETTINGS
@given(
    content=st.one_of(
        st.text(max_size=200),
        st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
        st.recursive(
            st.one_of(numbers, st.text(max_size=8), st.none()),
            lambda inner: st.one_of(
                st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
            ),
            max_leaves=12,
        ).map(json.dumps),
    ),
    target=st.sampled_from(["prompts_multi.json", "camera_poses.json", "color_map.json", "attributes.json"]),
)
def test_isar_reader_refuses_malformed_files_clearly(tiny_dataset, tmp_path_factory, content, target):
    root = tmp_path_factory.mktemp("isar")
    task = sorted(p for p in Path(tiny_dataset).iterdir() if p.is_dir())[0]
    shutil.copytree(task, root / task.name)
    scene = IsarDataset(root).tasks[0].train_scenes[0]
    (scene.path / target).write_text(content)
    scene = IsarDataset(root).tasks[0].train_scenes[0]  # fresh, no cached files
    try:
        if target == "prompts_multi.json":
            scene.prompts("multi_shot")
        elif target == "camera_poses.json":
            scene.frame(0).pose()
        elif target == "color_map.json":
            _ = scene.color_map
        else:
            _ = scene.attributes
    except IsarFormatError as error:
        assert target in str(error)


@pytest.mark.parametrize(
    "field,value",
    [
        ("next_id", 10**12),
        ("next_id", -1),
        ("version", -5),
        ("feature_dim", 3),
        ("arrays", "../arrays-000001.npz"),
        ("schema_version", 99),
    ],
)
def test_out_of_range_manifest_values_are_refused(saved_memory, tmp_path, field, value):
    directory = tmp_path / "m"
    shutil.copytree(saved_memory, directory)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest[field] = value
    (directory / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(MemoryFormatError):
        load_memory(directory)


def test_a_memory_folder_cannot_run_code(saved_memory, tmp_path):
    """A pickle bomb under the arrays name is never unpickled: loading fails on the checksum or the format."""
    import pickle

    directory = tmp_path / "m"
    shutil.copytree(saved_memory, directory)
    marker = tmp_path / "ran"

    class Bomb:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    arrays = next(directory.glob("arrays-*.npz"))
    arrays.write_bytes(pickle.dumps(Bomb()))
    manifest = json.loads((directory / "manifest.json").read_text())
    import hashlib

    manifest["arrays_sha256"] = hashlib.sha256(
        arrays.read_bytes()
    ).hexdigest()  # even with a matching checksum
    (directory / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(MemoryFormatError):
        load_memory(directory)
    assert not marker.exists()
