"""The isar-ros command line: every command a message or a document points to exists; weights management."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from isar_ros.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
HINT = re.compile(r"isar-ros ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?")


def subcommands(parser) -> dict:
    """{command: {subcommand: {}}} of an argparse parser."""
    found = {}
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, child in action.choices.items():
                found[name] = subcommands(child)
    return found


def hints() -> list[tuple[str, str, str | None]]:
    """(file, command, subcommand) of every `isar-ros <command> [<subcommand>]` in the code and the docs."""
    files = [
        *ROOT.glob("isar_ros/**/*.py"),
        *ROOT.glob("sim_bridge/*.py"),
        *ROOT.glob("scripts/*.py"),
        *ROOT.glob("docs/*.md"),
        ROOT / "README.md",
        *ROOT.glob("config/*.yaml"),
        *ROOT.glob("launch/*.py"),
    ]
    found = []
    for path in files:
        for match in HINT.finditer(path.read_text(errors="replace")):
            found.append((str(path.relative_to(ROOT)), match.group(1), match.group(2)))
    return found


def test_every_command_a_message_or_document_names_exists():
    known = subcommands(build_parser())
    assert {"weights", "up", "replay", "demo", "benchmark", "bag", "generate"} <= set(known)
    found = hints()
    assert any(command == "weights" for _, command, _ in found), (
        "the missing-checkpoint hint names isar-ros weights"
    )
    wrong = []
    for path, command, sub in found:
        if command not in known:
            wrong.append(f"{path}: isar-ros {command}")
        elif known[command] and sub is not None and sub not in known[command]:
            wrong.append(f"{path}: isar-ros {command} {sub}")
    assert not wrong, "commands that do not exist:\n" + "\n".join(sorted(set(wrong)))


def isar_ros(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "isar_ros.cli", *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_weights_download_without_internet_fails_fast_with_one_line(tmp_path):
    import os

    env = {**os.environ, "ISAR_ROS_WEIGHTS": str(tmp_path)}
    result = isar_ros("weights", "download", "sam_vit_b", "--timeout", "3", env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "could not download" in lines[0] and str(tmp_path) in lines[0], result.stderr
    assert "Traceback" not in result.stderr and not list(tmp_path.iterdir())  # nothing half-written is left


def test_weights_list_says_where_files_go_and_what_is_found(tmp_path):
    import os

    (tmp_path / "dinov2_vits14_pretrain.pth").write_bytes(b"x")
    result = isar_ros("weights", "list", env={**os.environ, "ISAR_ROS_WEIGHTS": str(tmp_path)})
    assert result.returncode == 0
    assert f"weights folder: {tmp_path}" in result.stdout
    assert re.search(r"dinov2_vits14 +dinov2_vits14_pretrain.pth +found: ", result.stdout)
    assert re.search(r"sam_vit_b +sam_vit_b_01ec64.pth +missing", result.stdout)


def test_weights_verify_finds_a_corrupt_file(tmp_path, monkeypatch):
    import hashlib

    from isar_ros.core import weights

    monkeypatch.setenv("ISAR_ROS_WEIGHTS", str(tmp_path))
    good = b"official bytes" * 100
    prefix = hashlib.md5(good).hexdigest()[:6]
    monkeypatch.setitem(
        weights.CHECKPOINTS, "tiny", weights.Checkpoint("tiny", "tiny.pth", "http://x", prefix, 100)
    )
    (tmp_path / "tiny.pth").write_bytes(good)
    assert weights.verify("tiny") == (True, f"{tmp_path / 'tiny.pth'}: size, MD5 prefix ok")
    (tmp_path / "tiny.pth").write_bytes(good[:-1] + b"?")
    ok, detail = weights.verify("tiny")
    assert not ok and f"the official file's starts with {prefix}" in detail


@pytest.mark.parametrize(
    "argv,message",
    [
        (
            ["benchmark", "--data", "/nonexistent/isar", "--method", "empty", "--out", "/tmp/x"],
            "/nonexistent/isar",
        ),
        (["benchmark", "--data", "{tiny}", "--method", "nope", "--out", "/tmp/x"], "unknown method 'nope'"),
        (
            ["benchmark", "--data", "{tiny}", "--option", "presence_offset=abc", "--out", "/tmp/x"],
            "presence_offset: expected float",
        ),
        (["up", "-p", "presense_offset:=0.4"], "known: "),
        (["up", "-p", "port:=9000"], "the web panel's need --web"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(argv, message, tiny_dataset):
    result = isar_ros(*[a.replace("{tiny}", str(tiny_dataset)) for a in argv])
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_up_with_web_adds_the_panel_node_with_its_parameters_and_the_camera():
    from isar_ros.cli import _node_specs, build_parser

    args = build_parser().parse_args(
        ["up", "--web", "--image", "/cam/color/image_raw", "-p", "port:=9000", "-p", "presence_offset:=0.2"]
    )
    specs = {s.executable: s for s in _node_specs(args, None)}
    assert set(specs) == {"teach_node", "inference_node", "web_node"}
    web = specs["web_node"]
    assert web.parameters == {"port": 9000} and web.remappings == {"image": "/cam/color/image_raw"}
    assert specs["inference_node"].parameters == {"presence_offset": 0.2}
    without = build_parser().parse_args(["up"])
    assert "web_node" not in {s.executable for s in _node_specs(without, None)}


def _image(tmp_path):
    import cv2
    from test_perception import scene

    rgb, masks = scene({"red_stripes": (30, 40, 70, 60), "blue_dots": (180, 120, 80, 70)})
    path = tmp_path / "frame.png"
    cv2.imwrite(str(path), rgb[..., ::-1])
    return path, rgb


def test_teach_and_objects_on_folders_and_export_import_give_identical_predictions(tmp_path):
    import numpy as np

    from isar_ros.core.memory_store import load_memory
    from isar_ros.core.perception import Perception, PerceptionConfig

    image, rgb = _image(tmp_path)
    robot_a, robot_b = tmp_path / "robot_a", tmp_path / "robot_b"
    for box, name in (("30 40 99 99", "red mug"), ("180 120 259 189", "blue box")):
        taught = isar_ros(
            "teach", str(image), "--box", *box.split(), "--name", name, "--memory-dir", str(robot_a)
        )
        assert taught.returncode == 0 and f"({name}) into {robot_a}" in taught.stdout, taught.stderr
    listed = isar_ros("objects", "--memory-dir", str(robot_a), "list")
    assert "2 objects" in listed.stdout and "red mug  (1 views)" in listed.stdout
    assert (
        isar_ros("objects", "--memory-dir", str(robot_a), "rename", "blue box", "blue crate").returncode == 0
    )
    archive = tmp_path / "kitchen.isar.tar.gz"
    assert isar_ros("objects", "--memory-dir", str(robot_a), "export", str(archive)).returncode == 0
    imported = isar_ros("objects", "--memory-dir", str(robot_b), "import", str(archive))
    assert imported.returncode == 0 and "imported 2 objects" in imported.stdout, imported.stderr

    def predict(folder):
        perception = Perception(PerceptionConfig(device="cpu", mask_predictor="grabcut"))
        perception.memory = load_memory(folder, perception.backbone.backbone_id)
        perception.finder.set_model(perception._model())
        return perception.find(perception.encode(rgb))

    a, b = predict(robot_a), predict(robot_b)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert [(i.object_id, i.name, i.score) for i in a.instances] == [
        (i.object_id, i.name, i.score) for i in b.instances
    ]
    assert {i.name for i in a.instances} == {"red mug", "blue crate"}
    forgotten = isar_ros("objects", "--memory-dir", str(robot_b), "forget", "1")
    assert (
        forgotten.returncode == 0
        and "2 objects" not in isar_ros("objects", "--memory-dir", str(robot_b), "list").stdout
    )


def test_a_corrupt_or_foreign_archive_is_refused_and_nothing_is_written(tmp_path):
    import tarfile

    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        payload = tmp_path / "payload"
        payload.write_text("x")
        tar.add(payload, arcname="../outside.txt")
    result = isar_ros("objects", "--memory-dir", str(tmp_path / "target"), "import", str(evil))
    assert result.returncode == 2 and "not a memory archive" in result.stderr
    assert not (tmp_path / "target").exists() and not (tmp_path / "outside.txt").exists()
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tar")
    result = isar_ros(
        "objects", "--memory-dir", str(tmp_path / "target"), "import", str(tmp_path / "junk.tar.gz")
    )
    assert result.returncode == 2 and "not a readable memory archive" in result.stderr


@pytest.mark.ros
def test_teach_and_objects_against_a_running_teach_node(tmp_path):
    from isar_ros.ros.launcher import Graph, NodeSpec

    image, _ = _image(tmp_path)
    with Graph(log_dir=tmp_path / "logs") as graph:
        graph.start(
            NodeSpec("teach_node", {"memory_dir": str(tmp_path / "node_memory")}, namespace="cli"), "teach"
        )
        node = ["--node", "/cli/isar_teach", "--timeout", "60"]
        taught = isar_ros(
            "teach",
            str(image),
            "--box",
            "30",
            "40",
            "99",
            "99",
            "--point",
            "60",
            "70",
            "--name",
            "red mug",
            *node,
        )
        assert taught.returncode == 0 and "taught object 1 (red mug)" in taught.stdout, (
            taught.stdout + taught.stderr
        )
        listed = isar_ros("objects", *node, "list")
        assert "1 objects" in listed.stdout and "red mug" in listed.stdout, listed.stderr
        archive = tmp_path / "from_node.tar.gz"
        assert isar_ros("objects", *node, "export", str(archive)).returncode == 0
        assert isar_ros("objects", *node, "forget", "red mug").returncode == 0
        back = isar_ros("objects", *node, "import", str(archive))
        assert back.returncode == 0 and "loaded 1 objects" in back.stdout, back.stderr
        assert "red mug" in isar_ros("objects", *node, "list").stdout
    missing = isar_ros("objects", "--node", "/nobody/isar_teach", "--timeout", "2", "list")
    assert missing.returncode == 2 and "pass --memory-dir" in missing.stderr
