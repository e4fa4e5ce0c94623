"""Downloads through ``gdown`` (Google Drive ids, Drive folders and plain URLs), checksums, mirrors.

Every download goes through ``gdown.download`` (plain URLs too, so the code path tests run is the
one users run); ``gdown`` uses ``requests``, so the standard ``HTTPS_PROXY`` / ``REQUESTS_CA_BUNDLE``
variables apply.  Each failure becomes one :class:`DatasetError` line naming the URL or Drive id.
"""
from __future__ import annotations

import hashlib
import inspect
import os
import re
import tempfile
import urllib.parse
from pathlib import Path
from typing import Callable, List, Optional, Tuple

from elliot.datasets.registry import DatasetError, Source, parse_checksum

MIRROR_ENV = "ELLIOT_DATASETS_MIRROR"
TIMEOUT_S = 60  # seconds without a byte before a transfer is given up (where the installed gdown supports it)


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def apply_mirror(url: str, mirror: Optional[str]) -> str:
    """Replace scheme and host of ``url`` by ``mirror`` (``http://host:port[/prefix]``), keeping the path."""
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV)
    if not mirror:
        return url
    m = urllib.parse.urlsplit(mirror.rstrip("/"))
    u = urllib.parse.urlsplit(url)
    if not m.scheme or not m.netloc:
        raise DatasetError(f"mirror '{mirror}' is not a URL like http://host:port[/prefix] ({MIRROR_ENV})")
    return urllib.parse.urlunsplit((m.scheme, m.netloc, m.path + u.path, u.query, ""))


def file_digests(path: Path, algos=("sha256",)) -> dict:
    hashers = {a: hashlib.new(a) for a in algos}
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            for h in hashers.values():
                h.update(block)
    return {a: h.hexdigest() for a, h in hashers.items()}


def verify(path: Path, checksum: Optional[str], label: str, log: Callable[[str], None]) -> Tuple[str, bool]:
    """Check ``path`` against ``checksum``; returns (sha256, verified).  A mismatch raises naming both digests."""
    parsed = parse_checksum(checksum)
    algos = ("sha256",) if parsed is None or parsed[0] == "sha256" else ("sha256", parsed[0])
    got = file_digests(path, algos)
    if parsed is None:
        log(f"  {label}: NOT VERIFIED (the registry has no checksum); computed sha256:{got['sha256']}")
        return got["sha256"], False
    algo, expected = parsed
    if got[algo] != expected:
        raise DatasetError(f"{label}: checksum mismatch: expected {algo}:{expected}, got {algo}:{got[algo]}")
    log(f"  {label}: {algo} verified")
    return got["sha256"], True


def _gdown():
    try:
        import gdown
    except ImportError:  # pragma: no cover - gdown is in requirements
        raise DatasetError("the 'gdown' package is needed to download datasets: pip install gdown") from None
    return gdown


def _gdown_errors(gdown) -> tuple:
    """gdown's exception classes that exist in the installed version (4.7 lacks DownloadError)."""
    names = ("DownloadError", "FileURLRetrievalError", "FolderContentsMaximumLimitError")
    return tuple(c for c in (getattr(gdown.exceptions, n, None) for n in names) if isinstance(c, type))


def _describe(exc: BaseException, limit: int = 300) -> str:
    """Why a gdown/requests call failed, in one short phrase."""
    import requests

    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code} {exc.response.reason or ''}".strip()
    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS error ({_one_line(text, 160)})"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        m = re.search(r"(\[Errno -?\d+\][^'\")\]]*|Failed to resolve [^(]*|Connection (?:refused|reset)[^'\")]*)", text)
        return f"connection failed ({(m.group(1).strip() if m else _one_line(text, 160))})"
    gdown = _gdown()
    if type(exc).__name__ == "FileURLRetrievalError":
        reason = text.split("You may still be able", 1)[0].replace("Failed to retrieve file url:", "")
        return f"Google Drive did not hand out the file ({_one_line(reason, 240)})"
    if isinstance(exc, _gdown_errors(gdown)):  # e.g. 'Download is incomplete: received ... bytes.'
        return _one_line(text.splitlines()[0] if text else "", 200).rstrip(".") or type(exc).__name__
    return _one_line(text, limit) or type(exc).__name__


def _supported(fn, **optional) -> dict:
    """The optional keyword arguments the installed gdown's ``fn`` accepts (gdown >= 4.7 is allowed)."""
    params = inspect.signature(fn).parameters
    return {k: v for k, v in optional.items() if k in params}


def _call_gdown(label: str, quiet: bool, **kwargs) -> None:
    gdown = _gdown()
    import requests

    try:
        out = gdown.download(quiet=quiet, **kwargs, **_supported(gdown.download, timeout=TIMEOUT_S))
    except (requests.RequestException, OSError, *_gdown_errors(gdown)) as exc:
        raise DatasetError(f"{label}: download failed: {_describe(exc)}") from None
    if out is None:  # gdown < 5 returns None instead of raising on some failures
        raise DatasetError(f"{label}: download failed (gdown returned nothing)")


def download_url(url: str, output: Path, quiet: bool = False) -> None:
    _call_gdown(url, quiet, url=url, output=str(output))


def download_gdrive(file_id: str, output: Path, quiet: bool = False) -> None:
    _call_gdown(f"Google Drive id {file_id}", quiet, id=file_id, output=str(output))


def list_gdrive_folder(folder_id: str, subfolder: Optional[str], quiet: bool = False) -> List[Tuple[str, str]]:
    """(file id, path relative to ``subfolder``) of every file in a Drive folder (no file is downloaded)."""
    gdown = _gdown()
    import requests

    label = f"Google Drive folder {folder_id}"
    try:
        listing = gdown.download_folder(id=folder_id, skip_download=True, quiet=quiet, output=os.devnull + os.sep,
                                        **_supported(gdown.download_folder, timeout=TIMEOUT_S))
    except (requests.RequestException, OSError, *_gdown_errors(gdown)) as exc:
        raise DatasetError(f"{label}: listing failed: {_describe(exc, 220)}") from None
    files = [(f.id, Path(f.path).as_posix()) for f in listing or []]
    if subfolder is None:
        return files
    picked = [(fid, p.split("/", 1)[1]) for fid, p in files
              if "/" in p and p.split("/", 1)[0].lower() == subfolder.lower()]
    if not picked:
        tops = sorted({p.split("/", 1)[0] for _, p in files if "/" in p})
        raise DatasetError(f"{label}: no files under sub-folder '{subfolder}' (it has: {', '.join(tops) or 'none'})")
    return picked


def fetch_source(source: Source, workdir: Path, mirror: Optional[str], quiet: bool,
                 log: Callable[[str], None]) -> List[Tuple[Path, Optional[str], str, bool]]:
    """Download one source into ``workdir``; returns (file, place, sha256, verified) per downloaded file,
    where ``place`` is the file's path under the dataset folder for Drive-folder files (stored as they
    are) and ``None`` for a URL / Drive file (unpacked as ``source.unpack`` says)."""
    workdir = Path(tempfile.mkdtemp(prefix="src-", dir=workdir))  # two sources may share a file name
    if source.kind == "url":
        url = apply_mirror(source.location, mirror)
        name = Path(urllib.parse.urlsplit(url).path).name or "download"
        target = workdir / name
        log(f"  downloading {url}")
        download_url(url, target, quiet)
        return [(target, None, *verify(target, source.checksum, url, log))]
    if source.kind == "gdrive":
        target = workdir / f"gdrive-{source.location}"
        log(f"  downloading Google Drive id {source.location}")
        download_gdrive(source.location, target, quiet)
        return [(target, None, *verify(target, source.checksum, source.label, log))]
    if source.kind == "gdrive_folder":
        out = []
        for fid, rel in list_gdrive_folder(source.location, source.subfolder, quiet):
            target = workdir / "folder" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            log(f"  downloading Google Drive id {fid} ({rel})")
            download_gdrive(fid, target, quiet)
            place = f"{source.dest.rstrip('/')}/{rel}" if source.dest else rel
            out.append((target, place, *verify(target, None, f"Google Drive id {fid} ({rel})", log)))
        return out
    raise DatasetError(f"{source.label}: a manual source cannot be downloaded")
