"""The layers of docs/architecture.md, checked: imports only point down, and no module imports itself back.

Every import counts, also those inside functions (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("isar_ros", "sim_bridge")
ROS_ONLY = ("rclpy", "launch", "launch_ros", "tf2_ros", "message_filters")
MESSAGE_PACKAGES = (
    "isar_ros_msgs",
    "sensor_msgs",
    "std_msgs",
    "geometry_msgs",
    "diagnostic_msgs",
    "std_srvs",
    "builtin_interfaces",
    "rcl_interfaces",
    "rosgraph_msgs",
    "visualization_msgs",
    "lifecycle_msgs",
)

# layer -> project modules it may import (prefixes). The rest of the project is above it.
BASE = ("isar_ros.errors", "isar_ros.settings", "isar_ros.paths")
ALLOWED = {
    "isar_ros.core": ("isar_ros.core", *BASE),
    "isar_ros.msgio": ("isar_ros.msgio", *BASE),
    "isar_ros.isar": ("isar_ros.isar", "isar_ros.core", "isar_ros.msgio", *BASE),
    "sim_bridge": ("sim_bridge", "isar_ros.isar", "isar_ros.core", "isar_ros.msgio", *BASE),
    "sim_bridge.bridge_node": (
        "sim_bridge",
        "isar_ros.isar",
        "isar_ros.core",
        "isar_ros.msgio",
        "isar_ros.ros",
        *BASE,
    ),
    "isar_ros.web": ("isar_ros.web", "isar_ros.core", *BASE),
    "isar_ros.ros": (
        "isar_ros.ros",
        "isar_ros.isar",
        "isar_ros.core",
        "isar_ros.msgio",
        "isar_ros.web",
        *BASE,
    ),
}
ROS_FREE = (
    "isar_ros.core",
    "isar_ros.isar",
    "isar_ros.msgio",
    "isar_ros.web",
    "sim_bridge.generator",
    "sim_bridge.raycast",
    "sim_bridge.bags",
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Every module ``path`` imports (``from a import b`` counts as a.b when that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in known else node.module)
    return found


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    known = set(modules)
    return {name: imports_of(path, known) for name, path in modules.items()}


def layer_of(module: str) -> str | None:
    matches = [layer for layer in ALLOWED if module == layer or module.startswith(layer + ".")]
    return max(matches, key=len) if matches else None


def within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_the_ros_free_layers_import_neither_rclpy_nor_ros_nor_sim_bridge():
    problems = []
    for module, imported in graph().items():
        if not within(module, ROS_FREE):
            continue
        for name in imported:
            top = name.split(".")[0]
            if top in ROS_ONLY or within(name, ("isar_ros.ros", "sim_bridge.bridge_node", "isar_ros.cli")):
                problems.append(f"{module} imports {name}")
            elif top in MESSAGE_PACKAGES and not module.startswith("isar_ros.msgio"):
                problems.append(f"{module} imports the ROS message package {name}")
    assert not problems, "\n".join(sorted(problems))


def test_imports_only_point_down():
    problems = []
    for module, imported in graph().items():
        layer = layer_of(module)
        if layer is None:
            continue  # the top: isar_ros.cli and the package roots
        for name in imported:
            if within(name, PACKAGES) and not within(name, ALLOWED[layer]):
                problems.append(f"{module} ({layer}) imports {name}")
    assert not problems, "\n".join(sorted(problems))


def test_there_is_no_import_cycle():
    edges = {m: {i for i in imported if i in project_modules()} for m, imported in graph().items()}
    cycles, state = [], {}

    def visit(module: str, stack: list[str]) -> None:
        state[module] = "open"
        for other in sorted(edges.get(module, ())):
            if state.get(other) == "open":
                cycles.append(
                    " -> ".join(stack[stack.index(other) :] + [module, other])
                    if other in stack
                    else f"{module} -> {other}"
                )
            elif other not in state:
                visit(other, [*stack, module])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checks_see_a_violation(tmp_path):
    """The checker itself: a module importing rclpy and one importing upwards are found."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import rclpy\nfrom isar_ros.ros import teach_node\n\ndef f():\n    from sim_bridge import bags\n"
    )
    assert imports_of(bad, {"isar_ros.ros.teach_node", "sim_bridge.bags"}) == {
        "rclpy",
        "isar_ros.ros.teach_node",
        "sim_bridge.bags",
    }
    assert layer_of("isar_ros.core.memory") == "isar_ros.core" and not within(
        "isar_ros.ros.teach_node", ALLOWED["isar_ros.core"]
    )
