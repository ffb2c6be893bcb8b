"""Where the package's shipped files are: config/ and launch/ in a source checkout, or share/isar_ros."""

from __future__ import annotations

import os
from pathlib import Path

from isar_ros.errors import MissingResource

PACKAGE = "isar_ros"
SOURCE_ROOT = Path(__file__).resolve().parents[1]


def share_dir() -> Path:
    """The folder holding config/ and launch/: the source checkout, else the installed share folder."""
    if (SOURCE_ROOT / "config").is_dir() and (SOURCE_ROOT / "package.xml").is_file():
        return SOURCE_ROOT
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE))
    except Exception as error:  # noqa: BLE001 - any failure means the same thing to the user
        raise MissingResource(
            "cannot find isar_ros's config/ folder (not a source checkout, and the ament index says: "
            f"{error})"
        ) from error


def config_file(name: str) -> Path:
    path = share_dir() / "config" / name
    if not path.is_file():
        raise MissingResource(f"no config file {name!r} in {path.parent}")
    return path


def workspace_dir() -> Path:
    """Where the demo writes its dataset and outputs (``data/``, ``out/``): the source checkout when
    running from one (``make demo``), else ``$XDG_DATA_HOME/isar_ros`` (``~/.local/share/isar_ros``),
    never the installed package's own folder."""
    if (SOURCE_ROOT / "package.xml").is_file() and (SOURCE_ROOT / "config").is_dir():
        return SOURCE_ROOT
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / PACKAGE
