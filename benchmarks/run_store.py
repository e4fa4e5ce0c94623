"""The benchmarks' JSON run stores, updated under a file lock so several benchmark processes can write
one store at once without losing each other's runs; writes are atomic (never a half-written file)."""
from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")


def merge_runs(path: Path, update: Callable[[T], T], empty: T) -> T:
    """Load the store at ``path`` (``empty`` when absent), apply ``update`` to it and write the result
    back, all under ``path``'s lock file; returns what was written."""
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        runs = update(json.loads(path.read_text()) if path.exists() else empty)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(runs, indent=1, sort_keys=isinstance(runs, dict), default=float) + "\n")
        os.replace(tmp, path)
    return runs
