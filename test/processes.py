"""Start and stop the separate processes of multi-process ROS tests."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from isar_ros.ros.launcher import stop_process_group

PEERS = Path(__file__).resolve().parent / "peers"


class Process:
    """A child process whose combined output goes to a temporary file (no pipe can fill up)."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None):
        self.args = args
        self._log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)  # noqa: SIM115 - lives with the process
        self.popen = subprocess.Popen(
            args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env or os.environ.copy(),
            start_new_session=True,
        )

    @property
    def output(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(
                f"{self.args} did not finish within {timeout} s; output:\n{self.output}"
            ) from None

    def stop(self, timeout: float = 10.0) -> int:
        return stop_process_group(self.popen, timeout)


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


@contextmanager
def running(*args: str, env: dict[str, str] | None = None):
    """Run a Python peer for the duration of a ``with`` block; it is always stopped afterwards."""
    process = Process(python(*args), env=env)
    try:
        yield process
    finally:
        process.stop()
