"""Start isar_ros nodes as separate processes without ``ros2 launch`` (which pip cannot install).

Each node runs as ``python -m <module> --ros-args --params-file config/isar_ros.yaml -p k:=v -r from:=to``,
in its own process group, with the Fast DDS shared-memory profile set; Ctrl-C stops them all.
``launch/*.launch.py`` describe the same graphs for a full ROS 2 install.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from isar_ros.paths import config_file
from isar_ros.ros.environment import ros_environment

NODES = {  # executable name (setup.py console script / launch file) -> module
    "teach_node": "isar_ros.ros.teach_node",
    "inference_node": "isar_ros.ros.inference_node",
    "sim_bridge_node": "sim_bridge.bridge_node",
}


@dataclass
class NodeSpec:
    executable: str
    parameters: dict = field(default_factory=dict)
    remappings: dict = field(default_factory=dict)
    params_file: Path | None = None

    def command(self) -> list[str]:
        args = [sys.executable, "-m", NODES[self.executable], "--ros-args",
                "--params-file", str(self.params_file or config_file("isar_ros.yaml"))]
        for key, value in self.parameters.items():
            args += ["-p", f"{key}:={_ros_value(value)}"]
        for source, target in self.remappings.items():
            args += ["-r", f"{source}:={target}"]
        return args


def _ros_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and (value == "" or value.strip() != value):
        return f"'{value}'"
    return str(value)


def stop_process_group(popen: subprocess.Popen, timeout: float = 10.0) -> int:
    """SIGINT to the process group (as Ctrl-C would), then SIGKILL if it has not ended within ``timeout``."""
    if popen.poll() is None:
        os.killpg(popen.pid, signal.SIGINT)
        try:
            popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(popen.pid, signal.SIGKILL)
            popen.wait()
    return popen.returncode


class NodeProcess:
    def __init__(self, spec: NodeSpec | list[str], env: dict[str, str], log: Path | None = None):
        self.spec = spec
        self.log_path = log
        self.log = open(log, "w") if log else None
        command = spec.command() if isinstance(spec, NodeSpec) else spec
        self.popen = subprocess.Popen(command, env=env, stdout=self.log or None, stderr=subprocess.STDOUT if self.log else None,
                                      start_new_session=True)

    def wait(self, timeout: float | None = None) -> int:
        return self.popen.wait(timeout=timeout)

    def stop(self, timeout: float = 10.0) -> int | None:
        stop_process_group(self.popen, timeout)
        if self.log:
            self.log.close()
        return self.popen.returncode


class Graph:
    """Processes started together and stopped together (also on Ctrl-C)."""

    def __init__(self, env: dict[str, str] | None = None, log_dir: Path | None = None):
        self.env = env or ros_environment()
        self.log_dir = log_dir
        self.processes: list[NodeProcess] = []

    def start(self, spec: NodeSpec | list[str], name: str | None = None) -> NodeProcess:
        """Start a node (NodeSpec) or any command (a list, e.g. ``isar-ros bag record ...``)."""
        log = None
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log = self.log_dir / f"{name or getattr(spec, 'executable', 'process')}.log"
        process = NodeProcess(spec, self.env, log)
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()

    def __enter__(self) -> "Graph":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def wait_any(self) -> None:
        """Block until one process ends (or Ctrl-C)."""
        while all(p.popen.poll() is None for p in self.processes):
            time.sleep(0.5)
