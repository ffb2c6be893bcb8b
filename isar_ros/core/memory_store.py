"""Saving and loading an :class:`~isar_ros.core.memory.InstanceMemory`: atomic, checked, never pickled.

A memory folder::

    manifest.json                          schema version, backbone id, objects, the name + SHA-256 of the
    arrays file
    arrays-<version>-<sha256 prefix>.npz   numeric arrays only, read with allow_pickle=False

:func:`save_memory` writes the arrays file first (fsynced, then renamed into place, then the folder
fsynced), then replaces the manifest atomically (``os.replace``), then removes older arrays files: a
crash at any moment leaves the previous or the new complete version. The checksum in the arrays
file's name keeps two different memories of one version (one ``~/load``-ed from elsewhere) from ever
writing the same file name. :func:`load_memory` checks every field and array and raises
:class:`MemoryFormatError` naming the file; nothing is ever unpickled, so a memory cannot run code.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from isar_ros.core.images import THUMBNAIL_SIDE
from isar_ros.core.memory import (
    MAX_THUMBNAILS,
    InstanceMemory,
    MemoryConfig,
    ObjectExemplars,
    TaughtObject,
)
from isar_ros.core.memory_snapshot import MAX_OBJECT_ID, MemoryFormatError, ObjectClassifier, check_name

SCHEMA_VERSION = 1
FORMAT = "isar_ros.instance_memory"
MANIFEST = "manifest.json"
# Older saves are named arrays-<version>.npz.
ARRAYS_PATTERN = re.compile(r"^arrays-\d{6,}(-[0-9a-f]{16})?\.npz$")


def check_writable(directory: str | os.PathLike) -> Path:
    """Create ``directory`` if needed and prove a file can be written there; :class:`MemoryFormatError` if
    not."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".write-probe-", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise MemoryFormatError(
            f"the memory folder {directory} cannot be written ({error.strerror or error}); "
            "set memory_dir to a folder this user can write"
        ) from error
    return directory


def save_memory(memory: InstanceMemory, directory: str | os.PathLike) -> Path:
    """Write ``memory`` atomically into ``directory`` (created if missing). Returns the manifest's path.

    Raises ``OSError`` when the folder cannot be written; the folder then still holds the previous version.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"background": memory.background}
    entries = []
    for o in sorted(memory.objects.values(), key=lambda o: o.object_id):
        data, fitted = o.exemplars, o.classifier
        assert fitted is not None, "every taught object is fitted before it can be saved"
        prefix = f"object_{o.object_id}_"
        arrays.update(
            {
                prefix + "positives": data.positives,
                prefix + "negatives": data.negatives,
                prefix + "weights": fitted.weights,
                prefix + "prototypes": fitted.prototypes,
                prefix + "appearance": fitted.appearance,
            }
        )
        arrays.update({f"{prefix}thumbnail_{k}": t for k, t in enumerate(data.thumbnails)})
        if data.closer is not None:
            arrays[prefix + "closer"] = data.closer
        entries.append(
            {
                "id": o.object_id,
                "name": o.name,
                "num_exemplars": data.num_exemplars,
                "bias": fitted.bias,
                "mask_threshold": fitted.mask_threshold,
                "presence_threshold": fitted.presence_threshold,
                "min_patches": data.min_patches,
                "exemplar_patches": data.exemplar_patches,
                "prototype_threshold": fitted.prototype_threshold,
                "appearance_threshold": fitted.appearance_threshold,
                "thumbnails": len(data.thumbnails),
            }
        )
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".arrays-", suffix=".tmp")
    with os.fdopen(fd, "wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]
        handle.flush()
        os.fsync(handle.fileno())
    digest = _sha256(Path(tmp))
    arrays_name = f"arrays-{memory.version:06d}-{digest[:16]}.npz"
    os.replace(tmp, directory / arrays_name)
    _fsync_dir(directory)  # the arrays file is durable before a manifest names it
    manifest = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "backbone_id": memory.backbone_id,
        "feature_dim": memory.feature_dim,
        "version": memory.version,
        "next_id": memory.next_id,
        "arrays": arrays_name,
        "arrays_sha256": digest,
        "objects": entries,
    }
    _atomic_write_text(directory / MANIFEST, json.dumps(manifest, indent=1))
    _fsync_dir(directory)
    for stale in directory.glob("arrays-*.npz"):
        if stale.name != arrays_name:
            stale.unlink(missing_ok=True)
    for stale in directory.glob(".*.tmp"):
        stale.unlink(missing_ok=True)
    return directory / MANIFEST


def load_memory(
    directory: str | os.PathLike, backbone_id: str | None = None, config: MemoryConfig | None = None
) -> InstanceMemory:
    """Read a saved memory; refuses one built with another backbone than ``backbone_id``.

    Every problem raises :class:`MemoryFormatError` naming the file; nothing is unpickled.
    """
    directory = Path(directory)
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise MemoryFormatError(f"{path}: no saved memory here") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MemoryFormatError(f"{path}: unreadable or truncated manifest ({error})") from error
    try:
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ValueError("not an isar_ros instance memory manifest")
        if manifest.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(
                f"schema version {manifest.get('schema_version')!r}, this isar_ros reads {SCHEMA_VERSION}"
            )
        stored_backbone = _typed(manifest, "backbone_id", str)
        if backbone_id is not None and stored_backbone != backbone_id:
            raise MemoryFormatError(
                f"{path}: this memory was built with backbone {stored_backbone!r}, "
                f"but {backbone_id!r} is running; teach again or start with backbone {stored_backbone!r}"
            )
        dim = _typed(manifest, "feature_dim", int)
        memory = InstanceMemory(stored_backbone, dim, config)
        memory.version = _typed(manifest, "version", int)
        memory.next_id = _typed(manifest, "next_id", int)
        if memory.version < 0 or not 1 <= memory.next_id <= MAX_OBJECT_ID + 1:
            raise ValueError(f"version {memory.version} or next_id {memory.next_id} is out of range")
        arrays_name = _typed(manifest, "arrays", str)
        if not ARRAYS_PATTERN.match(arrays_name):
            raise ValueError(
                f"arrays file name {arrays_name!r} is not of the form arrays-NNNNNN-<checksum>.npz"
            )
        arrays_path = directory / arrays_name
        if _sha256(arrays_path) != _typed(manifest, "arrays_sha256", str):
            raise ValueError(
                f"{arrays_name} does not match the checksum in the manifest (edited or truncated)"
            )
        with np.load(arrays_path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        memory.background = _array(arrays, "background", dim)
        entries = manifest.get("objects")
        if not isinstance(entries, list):
            raise ValueError("'objects' must be a list")
        for entry in entries:
            object_id = _typed(entry, "id", int)
            if (
                not 1 <= object_id < memory.next_id
                or object_id > MAX_OBJECT_ID
                or object_id in memory.objects
            ):
                raise ValueError(f"object id {object_id} is out of range or repeated")
            prefix = f"object_{object_id}_"
            patches = [int(c) for c in _typed(entry, "exemplar_patches", list)]
            if not patches or min(patches) < 1:
                raise ValueError(f"object {object_id}: exemplar_patches must list positive counts")
            exemplars = ObjectExemplars(
                _array(arrays, prefix + "positives", dim),
                _array(arrays, prefix + "negatives", dim),
                patches,
                _typed(entry, "num_exemplars", int),
                _thumbnails(arrays, entry, prefix),
            )
            if prefix + "closer" in arrays:  # memories saved before it existed have none
                exemplars.closer = _array(arrays, prefix + "closer", dim, vector=True)
            classifier = ObjectClassifier(
                weights=_array(arrays, prefix + "weights", dim, vector=True),
                bias=_finite(entry, "bias"),
                mask_threshold=_finite(entry, "mask_threshold"),
                presence_threshold=_finite(entry, "presence_threshold"),
                prototypes=_array(arrays, prefix + "prototypes", dim),
                prototype_threshold=_finite(entry, "prototype_threshold"),
                **_appearance(arrays, entry, prefix, dim),
            )
            memory.objects[object_id] = TaughtObject(
                object_id, check_name(_typed(entry, "name", str)), exemplars, classifier
            )
    except MemoryFormatError:
        raise
    except (KeyError, TypeError, ValueError, OSError, EOFError) as error:
        raise MemoryFormatError(f"{path}: refused ({error})") from error
    return memory


def _typed(entry: dict[str, Any], key: str, kind: type) -> Any:
    value = entry[key]
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{key!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


def _finite(entry: dict[str, Any], key: str) -> float:
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{key!r} must be a finite number, got {value!r}")
    return float(value)


def _array(arrays: dict[str, np.ndarray], key: str, dim: int, vector: bool = False) -> np.ndarray:
    if key not in arrays:
        raise KeyError(f"array {key!r} missing")
    value = arrays[key]
    expected = (dim,) if vector else (None, dim)
    if value.dtype != np.float32 or value.ndim != len(expected) or value.shape[-1] != dim:
        raise ValueError(f"array {key!r} is {value.dtype} {value.shape}, expected float32 {expected}")
    if not np.isfinite(value).all():
        raise ValueError(f"array {key!r} holds NaN or infinite values")
    return value


def _appearance(arrays: dict[str, np.ndarray], entry: dict[str, Any], prefix: str, dim: int) -> dict:
    """The appearance check of an object; memories saved before it existed load without one (off)."""
    if prefix + "appearance" not in arrays and "appearance_threshold" not in entry:
        return {}
    return {
        "appearance": _array(arrays, prefix + "appearance", dim, vector=True),
        "appearance_threshold": _finite(entry, "appearance_threshold"),
    }


def _thumbnails(arrays: dict[str, np.ndarray], entry: dict[str, Any], prefix: str) -> list[np.ndarray]:
    """An object's thumbnails; memories saved before they existed have none."""
    count = _typed(entry, "thumbnails", int) if "thumbnails" in entry else 0
    if not 0 <= count <= MAX_THUMBNAILS:
        raise ValueError(f"'thumbnails' must be 0 to {MAX_THUMBNAILS}, got {count}")
    result = []
    for k in range(count):
        key = f"{prefix}thumbnail_{k}"
        if key not in arrays:
            raise KeyError(f"array {key!r} missing")
        value = arrays[key]
        small_rgb = value.ndim == 3 and value.shape[2] == 3 and max(value.shape[:2]) <= THUMBNAIL_SIDE
        if value.dtype != np.uint8 or not small_rgb or min(value.shape) < 1:
            raise ValueError(f"array {key!r} is {value.dtype} {value.shape}, expected a small RGB image")
        result.append(value)
    return result


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def export_archive(directory: str | os.PathLike, archive: str | os.PathLike) -> Path:
    """One file holding the memory saved in ``directory`` (a tar of its manifest and arrays), written
    atomically.

    The folder is loaded (and so checked) first: a corrupt memory is not exported."""
    import tarfile

    directory, archive = Path(directory), Path(archive)
    load_memory(directory)
    manifest = json.loads((directory / MANIFEST).read_text())
    archive.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=archive.parent, prefix=f".{archive.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as handle, tarfile.open(fileobj=handle, mode="w:gz") as tar:
        for name in (MANIFEST, manifest["arrays"]):
            tar.add(directory / name, arcname=name, recursive=False)
    os.replace(tmp, archive)
    return archive


def import_archive(
    archive: str | os.PathLike, backbone_id: str | None = None, config: MemoryConfig | None = None
) -> InstanceMemory:
    """The memory in an archive of :func:`export_archive`, checked like a memory folder; never unpickled.

    Only a manifest and one arrays file (regular files, plain names) are read from the archive;
    anything else in it is refused, so an archive cannot write outside the temporary folder it is
    unpacked into."""
    import tarfile

    archive = Path(archive)
    try:
        with (
            tarfile.open(archive, mode="r:*") as tar,
            tempfile.TemporaryDirectory(prefix="isar_ros_import_") as tmp,
        ):
            members = tar.getmembers()
            for member in members:
                if not member.isfile() or "/" in member.name or member.name.startswith("."):
                    raise MemoryFormatError(
                        f"{archive}: unexpected entry {member.name!r}; not a memory archive (isar-ros "
                        "objects export writes them)"
                    )
                if member.name != MANIFEST and not ARRAYS_PATTERN.match(member.name):
                    raise MemoryFormatError(
                        f"{archive}: unexpected file {member.name!r}; not a memory archive (isar-ros "
                        "objects export writes them)"
                    )
                source = tar.extractfile(member)
                assert source is not None
                (Path(tmp) / member.name).write_bytes(source.read())
            try:
                return load_memory(tmp, backbone_id, config)
            except MemoryFormatError as error:
                raise MemoryFormatError(f"{archive}: {str(error).replace(tmp, 'the archive')}") from error
    except (tarfile.TarError, OSError, EOFError) as error:
        raise MemoryFormatError(f"{archive}: not a readable memory archive ({error})") from error
