"""Fetching a catalogue entry into ``<root>/<name>/``: download, verify, unpack, check, install.

Nothing is half-written: downloads go to a temporary folder under ``root`` (same filesystem),
each file is verified, unpacked into a temporary staging folder, post-processed and checked
against the expected layout, a marker file (``.elliot-dataset.json``) is written, and only then is
the staging folder renamed into place.  Any failure removes the temporary folders and leaves an
existing ``<root>/<name>/`` as it was.
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile
import urllib.parse
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, List, Optional

from elliot.datasets.convert import STEPS
from elliot.datasets.download import fetch_source, file_digests, verify
from elliot.datasets.registry import DatasetEntry, DatasetError, Registry, load_registry, parse_checksum
from elliot.datasets.unpack import unpack

MARKER = ".elliot-dataset.json"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class FetchResult:
    name: str
    path: Path
    status: str  # present | fetched | copied | linked
    verified: bool


def _quiet_log(_msg: str) -> None:
    pass


def missing_paths(folder: Path, entry: DatasetEntry) -> List[str]:
    out = []
    for rel in entry.layout:
        p = folder / rel.rstrip("/")
        if not (p.is_dir() if rel.endswith("/") else p.is_file()):
            out.append(rel)
    return out


def check_layout(folder: Path, entry: DatasetEntry, where: str) -> None:
    """Every layout path exists, and files whose sha256 the registry records have it."""
    missing = missing_paths(folder, entry)
    if missing:
        found = sorted(p.name for p in folder.iterdir() if p.name != MARKER)[:12] if folder.is_dir() else []
        raise DatasetError(f"{where}: incomplete layout for '{entry.name}': missing {', '.join(missing)} "
                           f"(found: {', '.join(found) or 'nothing'})")
    for rel, checksum in entry.layout.items():
        if checksum is None or rel.endswith("/"):
            continue
        algo, expected = parse_checksum(checksum)
        got = file_digests(folder / rel, (algo,))[algo]
        if got != expected:
            raise DatasetError(f"{where}: {rel}: checksum mismatch: expected {algo}:{expected}, got {algo}:{got}")


def read_marker(folder: Path) -> Optional[dict]:
    try:
        return json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _stale(marker: dict, entry: DatasetEntry) -> bool:
    """The registry now points elsewhere, or records a different checksum than the one fetched against
    (only for copies fetched from the registry's own sources)."""
    if marker.get("origin") != "download":
        return False
    old = marker.get("sources") or []
    if [o.get("location") for o in old] != [s.location for s in entry.sources]:
        return True
    return any(s.checksum and o.get("checksum") and s.checksum != o["checksum"] for s, o in zip(entry.sources, old))


def _install(stage: Path, dest: Path, entry: DatasetEntry) -> None:
    """Rename ``stage`` to ``dest`` (replacing an old ``dest`` through a rename, never half-way)."""
    old = None
    if dest.exists() or dest.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{entry.name}.old-", dir=dest.parent))
        old.rmdir()
        os.rename(dest, old)
    try:
        os.rename(stage, dest)
    except OSError:
        if old is not None and not dest.exists():
            os.rename(old, dest)
            old = None
        if not missing_paths(dest, entry):  # another process installed it meanwhile
            return
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() and not old.is_symlink() else old.unlink()


def _normalise_modes(stage: Path) -> None:
    """Temporary folders/files are created private (0700/0600); give the installed data the usual umask modes."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [stage, *stage.rglob("*")]:
        if path.is_symlink():
            continue
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def _write_marker(stage: Path, entry: DatasetEntry, origin: str, files: list) -> None:
    doc = {"name": entry.name, "origin": origin,
           "fetched_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "sources": [{"location": s.location, "checksum": s.checksum} for s in entry.sources],
           "files": files, "verified": all(f["verified"] for f in files), "layout": list(entry.layout)}
    (stage / MARKER).write_text(json.dumps(doc, indent=1) + "\n")
    _normalise_modes(stage)


def _copy_local(src: Path, stage: Path, link: bool) -> None:
    for item in sorted(src.iterdir()):
        if item.name == MARKER:
            continue
        target = stage / item.name
        if link:
            os.symlink(item.resolve(), target, target_is_directory=item.is_dir())
        elif item.is_dir():
            shutil.copytree(item, target, symlinks=False)
        else:
            shutil.copy2(item, target)


def _manual_message(entry: DatasetEntry, dest: Path, log) -> None:
    where = "; ".join(s.location for s in entry.sources if s.kind == "manual")
    log(f"{entry.name} cannot be downloaded by a program: get it from {where}")
    log(f"then put these under {dest}/: {', '.join(entry.layout)}")
    log(f"or run: python -m elliot.datasets fetch {entry.name} --from-local PATH")


def _resolve_override(entry: DatasetEntry, override: str):
    """source_override -> ('local', Path) | ('file', Path) | ('entry', entry with the URL replaced)."""
    path = Path(override).expanduser()
    if path.is_dir():
        return "local", path
    is_url = urllib.parse.urlsplit(override).scheme in ("http", "https")
    if (path.is_file() or is_url) and len(entry.sources) != 1:
        raise DatasetError(f"{entry.name} has {len(entry.sources)} sources: a file or URL override needs exactly "
                           "one (use a local folder or --registry)")
    if path.is_file():
        return "file", path
    if is_url:
        return "entry", replace(entry, sources=(replace(entry.sources[0], kind="url", location=override),))
    raise DatasetError(f"source override '{override}' is not a folder, a file or an http(s) URL")


def fetch_dataset(name: str, root="data", *, force: bool = False, from_local=None, link: bool = False,
                  source_override: Optional[str] = None, mirror: Optional[str] = None, registry=None,
                  quiet: bool = False, log: Optional[Callable[[str], None]] = print) -> FetchResult:
    """Fetch catalogue entry ``name`` into ``<root>/<name>/`` unless it is already there (see module doc).

    from_local: a folder already in the final layout (``True``: the entry's ``local`` copy), copied,
    or with ``link`` symlinked file by file.  source_override: a folder (as from_local), a local
    archive/file (verified and unpacked like the download would be), or a URL replacing the only source.
    mirror: replaces scheme and host of URL sources (default: ``$ELLIOT_DATASETS_MIRROR``).
    """
    log = log or _quiet_log
    reg = registry if isinstance(registry, Registry) else load_registry(registry)
    entry = reg.get(name)
    root = Path(root)
    dest = root / entry.name
    override_kind, override, origin = None, None, "download"
    if source_override is not None:
        override_kind, override = _resolve_override(entry, str(source_override))
        origin = f"override:{source_override}"
        if override_kind == "entry":
            entry, override_kind = override, None
    if from_local is True:
        if not entry.local:
            raise DatasetError(f"{entry.name} declares no local copy: pass --from-local PATH")
        from_local = (PROJECT_ROOT / entry.local).resolve()
    if override_kind == "local":
        from_local = override

    marker = read_marker(dest) if dest.is_dir() else None
    missing = missing_paths(dest, entry) if dest.is_dir() else list(entry.layout)
    if dest.is_dir() and not missing and not force and not (marker and _stale(marker, entry)):
        if marker:
            how = "verified" if marker.get("verified") else "NOT verified: no recorded checksum for its files"
            log(f"{entry.name}: already present in {dest} ({marker.get('origin')}, {marker.get('fetched_at')}, "
                f"{how}); nothing to do")
        else:
            log(f"{entry.name}: already present in {dest} (complete layout, placed by hand: not verified by "
                "elliot); nothing to do")
        return FetchResult(entry.name, dest, "present", bool(marker and marker.get("verified")))
    if (dest.exists() or dest.is_symlink()) and marker is None and not force:
        raise DatasetError(f"{dest} exists but is not a complete '{entry.name}' (missing: {', '.join(missing)}); "
                           "move it away or pass --force to replace it")
    if marker is not None and not force:
        log(f"{entry.name}: {dest} is {'out of date' if not missing else 'incomplete'}; fetching it again")

    if from_local is None and override_kind is None and entry.manual:
        _manual_message(entry, dest, log)
        raise DatasetError(f"{entry.name}: manual source: download it by hand (see above), then use --from-local PATH")

    try:
        root.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{entry.name}.staging-", dir=root))
        work = Path(tempfile.mkdtemp(prefix=f".{entry.name}.download-", dir=root))
    except OSError as exc:
        raise DatasetError(f"cannot write to {root}: {exc.strerror or exc}") from None
    try:
        if from_local is not None:
            src = Path(from_local)
            if not src.is_dir():
                raise DatasetError(f"--from-local {src}: not a folder")
            check_layout(src, entry, str(src))
            log(f"{entry.name}: {'linking' if link else 'copying'} {src} -> {dest}")
            _copy_local(src, stage, link)
            check_layout(stage, entry, str(src))
            known = all(entry.layout[r] for r in entry.layout if not r.endswith("/"))
            _write_marker(stage, entry, f"local:{src.resolve()}", [{"file": str(src), "verified": known}])
            _install(stage, dest, entry)
            log(f"{entry.name}: ready in {dest}")
            return FetchResult(entry.name, dest, "linked" if link else "copied", known)
        log(f"{entry.name}: fetching {len(entry.sources)} source(s) into {dest}")
        files = []
        for source in entry.sources:
            if override_kind == "file":
                got = [(override, None, *verify(override, source.checksum, str(override), log))]
            else:
                got = fetch_source(source, work, mirror, quiet, log)
            for path, place, sha, ok in got:
                label = place or source.label
                if place is not None:
                    (stage / place).parent.mkdir(parents=True, exist_ok=True)
                    shutil.move(str(path), str(stage / place))
                else:
                    if override_kind == "file":  # never move the user's own file
                        copy = work / override.name
                        shutil.copy2(override, copy)
                        path = copy
                    unpack(path, source.unpack, source.dest, stage, entry.layout, source.label)
                files.append({"file": label, "sha256": sha, "verified": ok})
        for step in entry.postprocess:
            log(f"  {step}")
            STEPS[step](stage)
        check_layout(stage, entry, entry.sources[0].label if len(entry.sources) == 1 else entry.name)
        _write_marker(stage, entry, origin, files)
        _install(stage, dest, entry)
        verified = all(f["verified"] for f in files)
        log(f"{entry.name}: ready in {dest}" + ("" if verified else " (some files NOT verified: see above)"))
        return FetchResult(entry.name, dest, "fetched", verified)
    except OSError as exc:  # disk full, permissions, ... while unpacking or installing
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        raise DatasetError(f"{entry.name}: {exc.strerror or exc}{where}; nothing was installed") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def ensure_dataset(name: str, root: Path, source_override: Optional[str] = None,
                   log: Optional[Callable[[str], None]] = print, **kwargs) -> Path:
    """``<root>/<name>`` once it is complete: a no-op when it already is, else fetched (see :func:`fetch_dataset`;
    keyword arguments force, from_local, link, mirror, registry, quiet pass through).  Raises DatasetError."""
    return fetch_dataset(name, root, source_override=source_override, log=log, **kwargs).path
