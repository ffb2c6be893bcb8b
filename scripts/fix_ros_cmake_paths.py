"""Point the ROS 2 wheels' exported CMake files at this virtual environment.

The Kilted wheels on PyPI were built under ``/opt/python/cpXY-cpXY``; their
``share/*/cmake/*.cmake`` exports still name that prefix for site-packages and the Python
include directory, so building our own interfaces against them fails. This rewrites those
paths to the ones of the interpreter running this script. Safe to run repeatedly.

Usage: python scripts/fix_ros_cmake_paths.py VENV
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

import numpy

BUILDER_PREFIX = re.compile(r"/opt/python/cp\d+-cp\d+")


def rewrite(text: str) -> str:
    """Replace the builder's include and site-packages paths with this interpreter's."""
    include_dir = sysconfig.get_paths()["include"]
    site_packages = sysconfig.get_paths()["purelib"]
    numpy_include = numpy.get_include()
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    text = re.sub(
        BUILDER_PREFIX.pattern + rf"/lib/{version}/site-packages/numpy/_core/include", numpy_include, text
    )
    text = re.sub(BUILDER_PREFIX.pattern + rf"/lib/{version}/site-packages", site_packages, text)
    text = re.sub(BUILDER_PREFIX.pattern + rf"/include/{version}", include_dir, text)
    return text


def main(venv: str) -> int:
    changed = 0
    for path in Path(venv, "share").glob("*/cmake/*.cmake"):
        original = path.read_text()
        if not BUILDER_PREFIX.search(original):
            continue
        fixed = rewrite(original)
        if BUILDER_PREFIX.search(fixed):
            print(f"[bootstrap] warning: unrecognised builder path left in {path}", file=sys.stderr)
        path.write_text(fixed)
        changed += 1
    if changed:
        print(f"[bootstrap] rewrote builder paths in {changed} ROS CMake files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else sys.prefix))
