"""launch/*.launch.py cannot run here (no `launch` on PyPI): check statically what they name exists."""

import ast
import re
from pathlib import Path

import pytest
import yaml

from isar_ros.ros.launcher import NODES

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))


def node_calls(path: Path) -> list[ast.Call]:
    tree = ast.parse(path.read_text())
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "id", "") in ("Node", "LifecycleNode")
    ]


def config_sections() -> dict:
    """config/isar_ros.yaml by node name (its keys are /**/<node>, for any namespace)."""
    raw = yaml.safe_load((ROOT / "config" / "isar_ros.yaml").read_text())
    assert all(key.startswith("/**/") for key in raw), (
        "keys must be /**/<node> so that namespaced nodes get them"
    )
    return {key.removeprefix("/**/"): value for key, value in raw.items()}


def declared_parameters(node: str) -> set[str]:
    from isar_ros.ros import inference_node, teach_node, web_node
    from isar_ros.ros.lifecycle import AUTOSTART
    from isar_ros.settings import specs
    from sim_bridge.bridge_node import SimBridgeSettings

    declared = {
        "isar_teach": teach_node.parameter_specs() + [AUTOSTART],
        "isar_inference": inference_node.parameter_specs() + [AUTOSTART],
        "isar_web": web_node.parameter_specs() + [AUTOSTART],
        "isar_sim_bridge": specs(SimBridgeSettings),
    }[node]
    return {s.name for s in declared}


def keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


def console_scripts() -> set[str]:
    text = (ROOT / "setup.py").read_text()
    return set(re.findall(r'"([\w-]+) = [\w.]+:main"', text))


def topics_subscribed_or_published(module: str) -> set[str]:
    """The topics.NAME constants a node module subscribes or publishes, as their names."""
    from isar_ros.msgio import topics

    source = (ROOT / (module.replace(".", "/") + ".py")).read_text()
    used = re.findall(
        r"create_(?:lifecycle_publisher|subscription|publisher)\(\s*\w+,\s*topics\.(\w+)", source
    )
    return {getattr(topics, name) for name in used}


def test_there_are_launch_files():
    assert {p.name for p in LAUNCH_FILES} >= {"isar_ros.launch.py", "replay.launch.py"}


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_names_only_what_exists(path):
    calls = node_calls(path)
    assert calls
    params = config_sections()
    assert "config" in path.read_text() and "isar_ros.yaml" in path.read_text()
    for call in calls:
        package = ast.literal_eval(keyword(call, "package"))
        executable = ast.literal_eval(keyword(call, "executable"))
        name = ast.literal_eval(keyword(call, "name"))
        assert package == "isar_ros"
        assert executable in console_scripts() and executable in NODES, (
            f"{executable} is not an installed executable"
        )
        assert name in params, f"node name {name} has no section in config/isar_ros.yaml"
        remaps = keyword(call, "remappings")
        topics = topics_subscribed_or_published(NODES[executable])
        for pair in getattr(remaps, "elts", []):
            source = ast.literal_eval(pair.elts[0]) if isinstance(pair, ast.Tuple) else None
            if source is not None:
                assert source in topics, f"{path.name}: {executable} has no topic {source!r} to remap"
        if isinstance(remaps, ast.Name):  # a list built above in the file
            assigned = [
                n
                for n in ast.walk(ast.parse(path.read_text()))
                if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == remaps.id
            ]
            for pair in assigned[0].value.elts:
                assert ast.literal_eval(pair.elts[0]) in topics


def test_config_parameters_are_ones_the_nodes_declare():
    for node, section in config_sections().items():
        unknown = set(section["ros__parameters"]) - declared_parameters(node)
        assert not unknown, f"config/isar_ros.yaml sets {unknown} that {node} does not declare"


def test_inference_defaults_in_the_config_match_the_core():
    from isar_ros.core.inference import InferenceConfig

    params = config_sections()["isar_inference"]["ros__parameters"]
    core = InferenceConfig()
    for key in (
        "matcher",
        "presence",
        "presence_offset",
        "mask_offset",
        "hysteresis",
        "temporal",
        "edge_aware",
        "max_area_factor",
        "min_component_fraction",
        "refine",
    ):
        assert params[key] == getattr(core, key), (
            f"{key}: config says {params[key]}, the core default is {getattr(core, key)}"
        )
