"""Unpacking a verified download (zip, tar.gz or a single file) into the dataset's staging folder."""
from __future__ import annotations

import shutil
import sys
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Iterable

from elliot.datasets.registry import DatasetError

_JUNK = {"__MACOSX", ".DS_Store"}


def sniff(path: Path) -> str:
    """``zip`` | ``tar.gz`` | ``file`` from the first bytes."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "tar.gz"
    return "file"


def _head(path: Path) -> str:
    with open(path, "rb") as fh:
        return repr(fh.read(16))


def _extract_zip(path: Path, into: Path, label: str) -> None:
    if not zipfile.is_zipfile(path):
        if sniff(path) == "zip":
            raise DatasetError(f"{label}: truncated or damaged zip archive ({path.stat().st_size} bytes, "
                               "no end-of-archive record)")
        raise DatasetError(f"{label}: not a zip archive (the download starts with {_head(path)})")
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise DatasetError(f"{label}: corrupt zip archive (member '{bad}' fails its CRC check)")
            zf.extractall(into)  # ZipFile.extract drops absolute paths and '..' components
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise DatasetError(f"{label}: corrupt zip archive ({exc})") from None


def _extract_tar(path: Path, into: Path, label: str) -> None:
    try:
        with tarfile.open(path, "r:gz") as tf:
            if sys.version_info >= (3, 12) or hasattr(tarfile, "data_filter"):
                tf.extractall(into, filter="data")
            else:  # pragma: no cover - Python without extraction filters
                for m in tf.getmembers():
                    if m.issym() or m.islnk() or Path(m.name).is_absolute() or ".." in Path(m.name).parts:
                        raise DatasetError(f"{label}: tar member '{m.name}' points outside the archive")
                tf.extractall(into)
    except DatasetError:
        raise
    except (tarfile.TarError, zlib.error, EOFError, OSError) as exc:
        raise DatasetError(f"{label}: not a readable tar.gz archive ({exc})") from None


def _archive_root(staging: Path, layout: Iterable[str]) -> Path:
    """The folder whose contents are the dataset: the single top folder of an archive is stripped,
    unless the layout itself starts with that folder's name."""
    entries = [e for e in staging.iterdir() if e.name not in _JUNK]
    tops = {Path(p).parts[0] for p in layout if Path(p).parts}
    if len(entries) == 1 and entries[0].is_dir() and entries[0].name not in tops:
        return entries[0]
    return staging


def _merge(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.name in _JUNK:
            continue
        target = dst / item.name
        if item.is_dir() and target.is_dir():
            _merge(item, target)
            continue
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        shutil.move(str(item), str(target))


def unpack(path: Path, kind: str, dest: str, folder: Path, layout: Iterable[str], label: str) -> str:
    """Unpack ``path`` into ``folder/dest`` (``kind`` from the registry; ``auto`` sniffs); returns the kind used."""
    if kind == "auto":
        kind = sniff(path)
    if kind == "file":
        name = dest or path.name
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), str(target))
        return kind
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=folder))
    try:
        (_extract_zip if kind == "zip" else _extract_tar)(path, staging, label)
        _merge(_archive_root(staging, layout), folder / dest if dest else folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return kind
