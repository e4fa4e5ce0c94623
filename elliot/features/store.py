"""Output files, the cache manifest and atomic writes.

``layout: matrix`` (output ``X.npy``): ``X.npy`` (float32, one row per item that has a vector),
``X.ids.tsv`` (``raw_item_id<TAB>row``, the loaders' ``item_mapping``), ``X.skipped.tsv`` (``item_id<TAB>reason``)
and ``X.manifest.json`` (the cache key and what was written).  ``layout: folder`` (output ``D/``):
``D/<raw_item_id>.npy`` (1-D float32 each), ``D/_skipped.tsv``, ``D/_manifest.json``.

Every file is written to a temporary name in the same folder and moved into place with ``os.replace``; a
folder is built beside the old one and swapped in.  The manifest is written last, so an interrupted run
never looks complete.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from elliot.errors import DataError

FORMAT = 1


def cache_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def paths(output: Path, layout: str) -> Dict[str, Path]:
    if layout == "folder":
        return {"folder": output, "report": output / "_skipped.tsv", "manifest": output / "_manifest.json"}
    stem = output.with_suffix("")
    return {"matrix": output, "mapping": Path(f"{stem}.ids.tsv"), "report": Path(f"{stem}.skipped.tsv"),
            "manifest": Path(f"{stem}.manifest.json")}


def read_manifest(output: Path, layout: str) -> Optional[dict]:
    try:
        m = json.loads(paths(output, layout)["manifest"].read_text(encoding="utf-8"))
        return m if isinstance(m, dict) and m.get("format") == FORMAT else None
    except (OSError, ValueError):
        return None


def cache_hit(output: Path, layout: str, key: str) -> Optional[dict]:
    """The manifest when it has ``key`` and every file it lists is there with its recorded size."""
    m = read_manifest(output, layout)
    if not m or m.get("key") != key:
        return None
    base = output if layout == "folder" else output.parent
    for name, size in m.get("files", {}).items():
        p = base / name
        if not p.is_file() or p.stat().st_size != size:
            return None
    return m


def _atomic(target: Path, write) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _text(lines: List[str]):
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    return lambda f: f.write(data)


def _report_lines(skipped: List[Tuple[str, str]]) -> List[str]:
    return ["item_id\treason"] + [f"{i}\t{r.replace(chr(9), ' ').replace(chr(10), ' ')}" for i, r in skipped]


def write_outputs(output: Path, layout: str, ids: List[str], mat: np.ndarray, skipped, manifest: dict) -> dict:
    """Write the vectors, the report and (last) the manifest; returns the manifest as written."""
    p = paths(output, layout)
    mat = np.ascontiguousarray(mat, dtype=np.float32)
    if layout == "matrix":
        _atomic(p["matrix"], lambda f: np.save(f, mat, allow_pickle=False))
        _atomic(p["mapping"], _text([f"{i}\t{r}" for r, i in enumerate(ids)]))
        _atomic(p["report"], _text(_report_lines(skipped)))
        base, names = output.parent, [p["matrix"].name, p["mapping"].name, p["report"].name]
    else:
        bad = [i for i in ids if not i or "/" in i or "\\" in i or i in (".", "..") or i.startswith(".")]
        if bad:
            raise DataError(f"output {output}: item id '{bad[0]}' cannot be a file name; use layout: matrix")
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent))
        try:
            for i, row in zip(ids, mat):
                np.save(tmp / f"{i}.npy", row, allow_pickle=False)
            (tmp / p["report"].name).write_text("".join(x + "\n" for x in _report_lines(skipped)), encoding="utf-8")
            old = None
            if output.exists():
                if not output.is_dir() or not (output / "_manifest.json").exists() and any(output.iterdir()):
                    raise DataError(f"output {output} exists and was not written by feature extraction; "
                                    "remove it or choose another output_path")
                old = output.with_name(f".{output.name}.old-{os.getpid()}-{time.time_ns()}")
                os.replace(output, old)
            os.replace(tmp, output)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        base, names = output, [f"{i}.npy" for i in ids] + [p["report"].name]
    manifest = dict(manifest, format=FORMAT, files={n: (base / n).stat().st_size for n in names})
    _atomic(p["manifest"], lambda f: f.write(json.dumps(manifest, indent=1, sort_keys=True).encode()))
    return manifest
