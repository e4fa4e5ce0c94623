"""The trials file: every finished trial, appended the moment it ends, so a killed sweep resumes.

``results/<dataset>/trials/<Model>.jsonl``: JSON Lines, one record per finished trial::

    {"sha256": "<sha256 of the record serialised with sorted keys>", "record": {...}}

The record holds the trial's key, typed parameters, status (``ok`` or ``diverged``), best
epoch, per-epoch history, validation and test metrics, seconds, robustness results, and a pointer to
its per-user test metrics (``per_user/<key>.npz``, with its own sha256; needed by the paired tests).
The key is a hash of (model name, typed parameters, fingerprint of the data and of the protocol:
dataset content, cutoffs, metrics, relevance threshold, masking, top-k, validation settings, early
stopping, defense/training/attack blocks, and the source files of the model's class and its base
classes), so a record is reused only for the very same trial.

Writing: the per-user file is written to a temporary name, fsync'ed and renamed; then the record is
appended with one ``write`` on an ``O_APPEND`` descriptor and fsync'ed (a newline is written first when
a killed writer left a partial last line).  Reading: a line that is not JSON, whose checksum does not
match, whose format is unknown, or whose per-user file is missing or altered is reported and ignored,
so that trial runs again; never used.  The newest valid record of a key wins.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
from dataclasses import fields
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

FORMAT = 1
logger = logging.getLogger("elliot")


# ---- fingerprints and keys --------------------------------------------------------------------
def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _serialise(record: dict) -> str:
    """The checksummed form: sorted keys, Python's exact float repr (NaN/Infinity allowed)."""
    return json.dumps(record, sort_keys=True, default=_json_default)


def dataset_fingerprint(dataset) -> str:
    """Hash of the dataset's content: ids, the three splits (CSR arrays) and the item features."""
    h = hashlib.blake2b(digest_size=20)
    h.update(f"{dataset.n_users}x{dataset.n_items}".encode())
    for ids in (dataset.user_ids, dataset.item_ids):
        h.update("\x1f".join(map(str, ids.tolist())).encode())
    for split in ("train", "validation", "test"):
        m = getattr(dataset, split)
        h.update(split.encode())
        if m is None:
            continue
        m = m.tocsr()
        for arr in (m.indptr, m.indices, m.data):
            h.update(np.ascontiguousarray(arr).tobytes())
    for name in sorted(dataset.features):
        x = np.ascontiguousarray(dataset.features[name])
        h.update(f"{name}{x.shape}{x.dtype}".encode())
        h.update(x.tobytes())
    return h.hexdigest()


def code_fingerprint(model_cls) -> str:
    """Hash of the source files of the model's class and its project base classes: editing the model's
    code makes its stored trials stale (shared code such as the trainer is not covered)."""
    import inspect

    h = hashlib.blake2b(digest_size=16)
    seen = set()
    for klass in getattr(model_cls, "__mro__", ()):
        module = getattr(klass, "__module__", "") or ""
        if module.split(".")[0] in ("builtins", "torch", "typing", "abc") or module in seen:
            continue
        seen.add(module)
        try:
            path = inspect.getsourcefile(klass)
            if path:
                h.update(Path(path).read_bytes())
        except (TypeError, OSError):
            continue
    return h.hexdigest()


def protocol_fingerprint(data_hash: str, experiment: dict, spec, model_cls=None) -> str:
    """Everything besides the model's parameters that changes a trial's numbers."""
    ev = dict(experiment.get("evaluation") or {})
    meta = spec.meta
    protocol = {
        "data": data_hash,
        "code": code_fingerprint(model_cls) if model_cls is not None else None,
        "evaluation": {k: ev.get(k) for k in ("cutoffs", "simple_metrics", "relevance_threshold",
                                                "mask_validation_in_test", "attacks", "complex_metrics")},
        "negative_sampling": experiment.get("negative_sampling"),
        "meta_selection": {"optimize_internal_loss": meta.optimize_internal_loss, "restore": meta.restore},
        "top_k": experiment.get("top_k"),
        "meta": {"validation_rate": meta.validation_rate, "validation_metric": meta.validation_metric,
                 "early_stopping": meta.early_stopping, "eval_perturbations": meta.eval_perturbations},
        "defense": spec.defense, "training": spec.training,
    }
    return hashlib.sha256(_canonical(protocol).encode()).hexdigest()[:24]


def _files_in(params: dict) -> Dict[str, str]:
    """Content hashes of the files a parameter names (a stored recommendation list, say): a trial that
    reads a file is the same trial only while the file is the same."""
    out = {}
    for name, value in params.items():
        if isinstance(value, str) and value and os.path.isfile(value):
            h = hashlib.blake2b(digest_size=16)
            with open(value, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            out[name] = h.hexdigest()
    return out


def trial_key(model: str, params: dict, fingerprint: str) -> str:
    ident = {"model": model, "params": params, "protocol": fingerprint}
    files = _files_in(params)
    if files:
        ident["files"] = files
    return hashlib.sha256(_canonical(ident).encode()).hexdigest()[:32]


# ---- records <-> TrialResult --------------------------------------------------------------------
def _int_keys(d) -> dict:
    return {int(k): dict(v) for k, v in (d or {}).items()}


def result_to_record(result, key: str, fingerprint: str, status: str = "ok", error: Optional[str] = None,
                     wall_seconds: float = float("nan")) -> dict:
    summary = result.summary() if result is not None else None
    if summary is not None:
        summary.pop("artefacts", None)
    return {"format": FORMAT, "key": key, "protocol": fingerprint, "status": status, "error": error,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "wall_seconds": wall_seconds,
            "result": summary}


def record_to_result(record: dict, per_user: Optional[dict] = None):
    from elliot.trial import TrialResult

    data = dict(record["result"])
    names = {f.name for f in fields(TrialResult)}
    kwargs = {k: v for k, v in data.items() if k in names}
    kwargs["validation"] = _int_keys(kwargs.get("validation"))
    kwargs["test"] = _int_keys(kwargs.get("test"))
    result = TrialResult(**kwargs)
    if per_user is not None:
        result.test_users = per_user.get("users")
        result.test_per_user = per_user.get("per_user", {})
    result.extra = dict(result.extra or {})
    result.extra["restored"] = True
    return result


def per_user_bytes(result) -> Optional[bytes]:
    if not result.test_per_user and result.test_users is None:
        return None
    arrays = {}
    if result.test_users is not None:
        arrays["users"] = np.asarray(result.test_users)
    for k, by_metric in result.test_per_user.items():
        for metric, values in by_metric.items():
            arrays[f"{int(k)}/{metric}"] = np.asarray(values)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def per_user_from_bytes(blob: bytes) -> dict:
    out: Dict[int, Dict[str, np.ndarray]] = {}
    users = None
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        for name in z.files:
            if name == "users":
                users = z[name]
                continue
            k, _, metric = name.partition("/")
            out.setdefault(int(k), {})[metric] = z[name]
    return {"users": users, "per_user": out}


# ---- the file -----------------------------------------------------------------------------------
def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class TrialStore:
    """One model's trials file (see the module doc)."""

    def __init__(self, folder, model: str):
        self.folder = Path(folder)
        self.model = model
        self.path = self.folder / f"{model}.jsonl"
        self.per_user_folder = self.folder / "per_user"
        self._records: Dict[str, dict] = {}
        self.corrupt: List[str] = []  # why lines were ignored, for the log
        self._loaded = False

    # reading
    def load(self) -> "TrialStore":
        self._records, self.corrupt = {}, []
        if self.path.exists():
            raw = self.path.read_bytes()
            for n, line in enumerate(raw.split(b"\n"), start=1):
                if not line.strip():
                    continue
                record, why = self._parse(line)
                if record is None:
                    self.corrupt.append(f"line {n}: {why}")
                    continue
                self._records[record["key"]] = record
        self._loaded = True
        return self

    @staticmethod
    def _parse(line: bytes):
        try:
            outer = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None, "not a complete JSON record (a write was interrupted?)"
        if not isinstance(outer, dict) or not isinstance(outer.get("record"), dict) or "sha256" not in outer:
            return None, "not a trial record"
        record = outer["record"]
        if hashlib.sha256(_serialise(record).encode("utf-8")).hexdigest() != outer["sha256"]:
            return None, "checksum mismatch"
        if record.get("format") != FORMAT or not isinstance(record.get("key"), str):
            return None, f"unknown record format {record.get('format')!r}"
        if record.get("status") == "ok" and not isinstance(record.get("result"), dict):
            return None, "record without a result"
        return record, ""

    def __len__(self) -> int:
        return len(self._records)

    def keys(self):
        return set(self._records)

    def records(self) -> List[dict]:
        """Every valid record (the newest of each key), in file order; per-user files are not read."""
        if not self._loaded:
            self.load()
        return list(self._records.values())

    def get(self, key: str):
        """(record, per_user or None) for a valid finished trial, else None (the trial must run)."""
        if not self._loaded:
            self.load()
        record = self._records.get(key)
        if record is None:
            return None
        pointer = record.get("per_user")
        per_user = None
        if pointer:
            path = self.folder / pointer["file"]
            try:
                blob = path.read_bytes()
            except OSError:
                self._invalid(key, f"per-user file {path.name} is missing")
                return None
            if hashlib.sha256(blob).hexdigest() != pointer["sha256"]:
                self._invalid(key, f"per-user file {path.name} does not match its checksum")
                return None
            try:
                per_user = per_user_from_bytes(blob)
            except Exception as exc:  # a damaged archive: run the trial again
                self._invalid(key, f"per-user file {path.name} cannot be read ({exc})")
                return None
        return record, per_user

    def _invalid(self, key: str, why: str) -> None:
        self._records.pop(key, None)
        self.corrupt.append(f"trial {key}: {why}")
        logger.warning("%s: trial %s ignored (%s); it runs again", self.path, key, why)

    # writing
    def append(self, record: dict, per_user: Optional[bytes] = None) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        record = dict(record)
        if per_user is not None:
            self.per_user_folder.mkdir(parents=True, exist_ok=True)
            name = f"{record['key']}.npz"
            tmp = self.per_user_folder / f".{name}.{os.getpid()}.tmp"
            with open(tmp, "wb") as fh:
                fh.write(per_user)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.per_user_folder / name)
            _fsync_dir(self.per_user_folder)
            record["per_user"] = {"file": f"per_user/{name}", "sha256": hashlib.sha256(per_user).hexdigest()}
        record = json.loads(_serialise(record))  # plain JSON types, so the checksum is that of what is read
        digest = hashlib.sha256(_serialise(record).encode("utf-8")).hexdigest()
        line = json.dumps({"sha256": digest, "record": record}, sort_keys=True) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size:
                with open(self.path, "rb") as fh:  # a killed writer may have left half a line
                    fh.seek(size - 1)
                    if fh.read(1) != b"\n":
                        line = "\n" + line
            data = line.encode("utf-8")
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        finally:
            os.close(fd)
        self._records[record["key"]] = record
