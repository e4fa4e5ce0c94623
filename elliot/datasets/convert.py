"""Post-processing steps that turn a source's files into the layout the configs read.

Each step takes the (temporary) dataset folder and rewrites files in it.  They run only after
every download has passed its checksum, and before the layout check.
"""
from __future__ import annotations

import importlib
import io
import pickle
from pathlib import Path
from typing import Callable, Dict

import numpy as np

from elliot.datasets.registry import DatasetError

# Only what a pickled scipy COO matrix needs: anything else in the pickle is refused.
_ALLOWED = {
    ("scipy.sparse.coo", "coo_matrix"), ("scipy.sparse._coo", "coo_matrix"),
    ("scipy.sparse._arrays", "coo_array"), ("scipy.sparse._coo", "coo_array"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}


class _SparseUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module.startswith("numpy.core"):
            try:  # NumPy 2 keeps numpy.core only as a deprecated alias
                importlib.import_module("numpy._core.multiarray")
                module = module.replace("numpy.core", "numpy._core", 1)
            except ImportError:
                pass
        if module == "scipy.sparse.coo":
            module = "scipy.sparse"
        return getattr(importlib.import_module(module), name)


def load_sparse_pickle(path: Path):
    """A pickled scipy sparse matrix, loaded with an unpickler that accepts only sparse/ndarray classes."""
    try:
        with open(path, "rb") as fh:
            return _SparseUnpickler(fh).load().tocoo()
    except (pickle.UnpicklingError, AttributeError, EOFError, ValueError) as exc:
        raise DatasetError(f"{path.name}: not a pickled scipy sparse matrix ({exc})") from None


def coo_to_tsv(path: Path, out: Path) -> int:
    """Write ``user<TAB>item<TAB>1`` for each non-zero, sorted by (user, item); returns the row count."""
    m = load_sparse_pickle(path)
    rows, cols = np.asarray(m.row)[m.data != 0], np.asarray(m.col)[m.data != 0]
    order = np.lexsort((cols, rows))
    buf = io.StringIO()
    for r, c in zip(rows[order].tolist(), cols[order].tolist()):
        buf.write(f"{r}\t{c}\t1\n")
    out.write_text(buf.getvalue())
    return len(order)


def diffmm_tiktok(folder: Path) -> None:
    """DiffMM's trnMat/valMat/tstMat.pkl -> train/val/test.tsv (the pickles are removed)."""
    for src, dst in (("trnMat.pkl", "train.tsv"), ("valMat.pkl", "val.tsv"), ("tstMat.pkl", "test.tsv")):
        coo_to_tsv(folder / src, folder / dst)
        (folder / src).unlink()


def lfm2k_float32(folder: Path) -> None:
    """Store vggish.npy as float32 like the other feature files (upstream is float64, same values)."""
    path = folder / "vggish.npy"
    arr = np.load(path, allow_pickle=False)
    np.save(path, arr.astype(np.float32))


STEPS: Dict[str, Callable[[Path], None]] = {"diffmm_tiktok": diffmm_tiktok, "lfm2k_float32": lfm2k_float32}
