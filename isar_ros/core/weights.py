"""Finding (and, where the internet is reachable, downloading) the DINOv2 and SAM checkpoints.

A checkpoint is looked for, in order:

1. an explicit path (a parameter or ``--checkpoint``), which must exist;
2. the environment variable ``ISAR_ROS_<NAME>`` (e.g. ``ISAR_ROS_DINOV2_VITS14``, ``ISAR_ROS_SAM_VIT_B``);
3. the official file name in ``$ISAR_ROS_WEIGHTS`` (default ``~/.cache/isar_ros/weights``).

``isar-ros weights download NAME`` fetches an official checkpoint into that cache folder and checks
it: SAM files against the MD5 prefix their official names carry, DINOv2 files (whose publishers
list no checksum) against their expected size and by loading them; the SHA-256 of each download is
written beside it. Without internet it fails within ``timeout`` seconds with a clear message.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from isar_ros.errors import ConfigurationError, InvalidInput, MissingResource


class DownloadFailed(MissingResource):
    """A checkpoint could not be downloaded (no internet here, or the server refused); says what to do
    instead."""


class WeightsNotFound(MissingResource):
    """A checkpoint was asked for and is not where it may be; the message says where to put it."""


@dataclass(frozen=True)
class Checkpoint:
    name: str  # our name, e.g. dinov2_vits14 or sam_vit_b
    filename: str  # official file name
    url: str
    md5_prefix: str | None = None  # SAM file names carry the first hex digits of their MD5
    min_bytes: int = 0


_DINO = "https://dl.fbaipublicfiles.com/dinov2"
_SAM = "https://dl.fbaipublicfiles.com/segment_anything"
CHECKPOINTS = {
    c.name: c
    for c in [
        *(
            Checkpoint(
                f"dinov2_vit{v}14{r}",
                f"dinov2_vit{v}14{r}_pretrain.pth",
                f"{_DINO}/dinov2_vit{v}14{r}/dinov2_vit{v}14{r}_pretrain.pth",
                min_bytes=size,
            )
            for v, size in (("s", 80_000_000), ("b", 330_000_000), ("l", 1_200_000_000), ("g", 4_000_000_000))
            for r in ("", "_reg4")
        ),
        Checkpoint(
            "sam_vit_b", "sam_vit_b_01ec64.pth", f"{_SAM}/sam_vit_b_01ec64.pth", "01ec64", 350_000_000
        ),
        Checkpoint(
            "sam_vit_l", "sam_vit_l_0b3195.pth", f"{_SAM}/sam_vit_l_0b3195.pth", "0b3195", 1_200_000_000
        ),
        Checkpoint(
            "sam_vit_h", "sam_vit_h_4b8939.pth", f"{_SAM}/sam_vit_h_4b8939.pth", "4b8939", 2_400_000_000
        ),
    ]
}
SAM_PREFERENCE = ("sam_vit_h", "sam_vit_l", "sam_vit_b")


def cache_dir() -> Path:
    return Path(
        os.environ.get("ISAR_ROS_WEIGHTS", Path.home() / ".cache" / "isar_ros" / "weights")
    ).expanduser()


def env_var(name: str) -> str:
    return "ISAR_ROS_" + name.upper()


def _checkpoint(name: str) -> Checkpoint:
    try:
        return CHECKPOINTS[name]
    except KeyError:
        raise ConfigurationError(f"unknown checkpoint {name!r}; known: {', '.join(CHECKPOINTS)}") from None


def find_checkpoint(name: str, explicit: str | os.PathLike | None = None) -> Path:
    """Path of checkpoint ``name``, or :class:`WeightsNotFound` saying where it was looked for."""
    spec = _checkpoint(name)
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise WeightsNotFound(f"checkpoint file {path} (given for {name}) does not exist")
        return path
    from_env = os.environ.get(env_var(name))
    if from_env:
        path = Path(from_env).expanduser()
        if not path.is_file():
            raise WeightsNotFound(f"{env_var(name)}={from_env} does not name an existing file")
        return path
    path = cache_dir() / spec.filename
    if path.is_file():
        return path
    raise WeightsNotFound(
        f"no {name} checkpoint: put the official {spec.filename} into {cache_dir()} "
        f"(or set {env_var(name)}=/path/to/{spec.filename}); with internet access: "
        f"isar-ros weights download {name}   (source: {spec.url})"
    )


def found(name: str) -> Path | None:
    """Where checkpoint ``name`` is found, or None (for listings; :func:`find_checkpoint` explains a miss)."""
    try:
        return find_checkpoint(name)
    except WeightsNotFound:
        return None


def find_sam_checkpoint(explicit: str | None = None) -> Path:
    """The largest SAM checkpoint found (ViT-H, then L, then B), or an explicit file."""
    if explicit:
        return find_checkpoint(sam_variant_of(explicit), explicit)
    for name in SAM_PREFERENCE:
        try:
            return find_checkpoint(name)
        except WeightsNotFound:
            continue
    raise WeightsNotFound(
        "no SAM checkpoint: put sam_vit_h_4b8939.pth, sam_vit_l_0b3195.pth or sam_vit_b_01ec64.pth into "
        f"{cache_dir()} "
        f"(or set ISAR_ROS_SAM_VIT_H/L/B); with internet access: isar-ros weights download sam_vit_b"
    )


def sam_variant_of(path: str | os.PathLike) -> str:
    stem = Path(path).name
    for name in SAM_PREFERENCE:
        if stem.startswith(name):
            return name
    return "sam_vit_b"


def download(name: str, timeout: float = 15.0) -> Path:
    """Download an official checkpoint into :func:`cache_dir`, verify it, and return its path."""
    spec = _checkpoint(name)
    target = cache_dir() / spec.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    with tempfile.NamedTemporaryFile(
        dir=target.parent, prefix=spec.filename, suffix=".part", delete=False
    ) as tmp:
        try:
            with urllib.request.urlopen(spec.url, timeout=timeout) as response:
                while chunk := response.read(1 << 20):
                    tmp.write(chunk)
                    md5.update(chunk)
                    sha256.update(chunk)
        except (urllib.error.URLError, OSError, TimeoutError) as error:
            os.unlink(tmp.name)
            raise DownloadFailed(
                f"could not download {spec.url} ({error}). This machine cannot reach it; download "
                f"{spec.filename} "
                f"elsewhere and copy it into {target.parent} (or set {env_var(name)})."
            ) from error
    size = os.path.getsize(tmp.name)
    problem = None
    if size < spec.min_bytes:
        problem = f"is {size} bytes, expected at least {spec.min_bytes}"
    elif spec.md5_prefix and not md5.hexdigest().startswith(spec.md5_prefix):
        problem = f"has MD5 {md5.hexdigest()}, expected one starting with {spec.md5_prefix}"
    if problem:
        os.unlink(tmp.name)
        raise InvalidInput(f"downloaded {spec.filename} {problem}; not kept")
    shutil.move(tmp.name, target)
    target.with_name(target.name + ".sha256").write_text(f"{sha256.hexdigest()}  {spec.filename}\n")
    return target


def _digests(path: Path) -> tuple[str, str]:
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            md5.update(chunk)
            sha256.update(chunk)
    return md5.hexdigest(), sha256.hexdigest()


def verify(name: str) -> tuple[bool, str]:
    """(ok, what was checked or what is wrong) for checkpoint ``name`` where :func:`find_checkpoint` finds it.

    Checks the size, the MD5 prefix SAM's file names carry, and the SHA-256 written beside a file by
    :func:`download`; DINOv2 files without one are also loaded strictly by the backbone when used.
    """
    spec = _checkpoint(name)
    path = find_checkpoint(name)
    size = path.stat().st_size
    if size < spec.min_bytes:
        return False, f"{path} is {size} bytes, expected at least {spec.min_bytes} (truncated download?)"
    md5, sha256 = _digests(path)
    if spec.md5_prefix and not md5.startswith(spec.md5_prefix):
        return False, f"{path} has MD5 {md5}, the official file's starts with {spec.md5_prefix}"
    recorded = path.with_name(path.name + ".sha256")
    if recorded.is_file() and recorded.read_text().split()[0] != sha256:
        return False, f"{path} does not match the SHA-256 recorded in {recorded} when it was downloaded"
    checks = (
        ["size"] + (["MD5 prefix"] if spec.md5_prefix else []) + (["SHA-256"] if recorded.is_file() else [])
    )
    return True, f"{path}: {', '.join(checks)} ok"
