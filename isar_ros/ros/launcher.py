"""Start isar_ros nodes as separate processes without ``ros2 launch`` (which pip cannot install).

Each node runs as ``python -m <module> --ros-args --params-file config/isar_ros.yaml -p k:=v -r from:=to``,
in its own process group, with the Fast DDS shared-memory profile set. :class:`Graph` supervises
them: when a node exits, it says which one with which code, stops the others and returns non-zero;
Ctrl-C, SIGTERM and SIGHUP (what ``timeout``, systemd and docker send) stop every child and wait for
it, so no node outlives the graph. Helper processes (a bridge that teaches and exits) may finish.
``launch/*.launch.py`` describe the same graphs for a full ROS 2 install.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isar_ros.errors import UserError
from isar_ros.paths import config_file
from isar_ros.ros.environment import ros_environment


class NodeFailed(UserError):
    """A node or helper process of a graph failed; the message names it and where its log is."""


NODES = {  # executable name (setup.py console script / launch file) -> module
    "teach_node": "isar_ros.ros.teach_node",
    "inference_node": "isar_ros.ros.inference_node",
    "web_node": "isar_ros.ros.web_node",
    "sim_bridge_node": "sim_bridge.bridge_node",
}


@dataclass
class NodeSpec:
    executable: str
    parameters: dict[str, Any] = field(default_factory=dict)
    remappings: dict[str, str] = field(default_factory=dict)
    params_file: Path | None = None
    namespace: str = ""

    def command(self) -> list[str]:
        args = [
            sys.executable,
            "-m",
            NODES[self.executable],
            "--ros-args",
            "--params-file",
            str(self.params_file or config_file("isar_ros.yaml")),
        ]
        for key, value in self.parameters.items():
            args += ["-p", f"{key}:={_ros_value(value)}"]
        for source, target in self.remappings.items():
            args += ["-r", f"{source}:={target}"]
        if self.namespace.strip("/"):
            args += ["-r", f"__ns:=/{self.namespace.strip('/')}"]
        return args


def _ros_value(value: Any) -> str:
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
    def __init__(
        self,
        spec: NodeSpec | list[str],
        env: dict[str, str],
        log: Path | None = None,
        name: str = "",
        helper: bool = False,
    ):
        self.spec = spec
        self.name = name or (spec.executable if isinstance(spec, NodeSpec) else Path(spec[0]).name)
        self.helper = helper  # may finish: exit code 0 is not a reason to stop the graph
        self.log_path = log
        self.log = open(log, "w") if log else None  # noqa: SIM115 - open while the process runs; closed in stop()
        command = spec.command() if isinstance(spec, NodeSpec) else spec
        self.popen = subprocess.Popen(
            command,
            env=env,
            stdout=self.log or None,
            stderr=subprocess.STDOUT if self.log else None,
            start_new_session=True,
        )

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

    def start(self, spec: NodeSpec | list[str], name: str | None = None, helper: bool = False) -> NodeProcess:
        """Start a node (NodeSpec) or any command (a list, e.g. ``isar-ros bag record ...``)."""
        log = None
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log = self.log_dir / f"{name or getattr(spec, 'executable', 'process')}.log"
        process = NodeProcess(spec, self.env, log, name or "", helper)
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()

    def __enter__(self) -> Graph:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def failed(self) -> NodeProcess | None:
        """The first process that ended when it should not have: a node that exited, a helper that failed."""
        for process in self.processes:
            code = process.popen.poll()
            if code is not None and (not process.helper or code != 0):
                return process
        return None

    def wait_for(self, process: NodeProcess, poll_s: float = 0.2) -> int | None:
        """Wait until ``process`` ends; None (and nothing waited further) if another process failed first."""
        while process.popen.poll() is None:
            if self.failed() not in (None, process):
                return None
            time.sleep(poll_s)
        return process.popen.returncode

    def supervise(self, poll_s: float = 0.2) -> int:
        """Block until a process fails (returns its code, never 0) or a stop is asked for (returns 0).

        SIGTERM and SIGHUP are turned into KeyboardInterrupt, like Ctrl-C, so the caller's ``with``
        block stops every child either way.
        """
        with stop_signals_as_interrupt():
            try:
                while (failed := self.failed()) is None:
                    time.sleep(poll_s)
            except KeyboardInterrupt:
                return 0
        code = failed.popen.returncode
        print(f"{failed.name} exited with code {code}; stopping the other nodes", file=sys.stderr, flush=True)
        return code if code else 1


@contextmanager
def stop_signals_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise KeyboardInterrupt in the main thread, as SIGINT does."""

    def interrupt(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
