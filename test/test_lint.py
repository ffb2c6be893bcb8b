"""The code's habits, checked: ruff (lint rules and formatting, pyproject.toml) and mypy on the ROS-free
layers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_no_lint_error():
    result = run(str(BIN / "ruff"), "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_code_is_formatted_as_ruff_format_writes_it():
    result = run(str(BIN / "ruff"), "format", "--check", "--no-cache", ".")
    assert result.returncode == 0, f"run `.venv/bin/ruff format .`:\n{result.stdout}{result.stderr}"


def test_mypy_finds_no_type_error_in_core_isar_and_msgio():
    result = run(
        sys.executable, "-m", "mypy", "--no-error-summary", "--cache-dir", "/tmp/isar_ros_mypy_cache"
    )
    assert result.returncode == 0, result.stdout + result.stderr
