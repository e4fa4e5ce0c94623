"""Elliot's sampled evaluation (``experiment.negative_sampling``): each evaluated user ranks only its
split items plus a set of negative items instead of the whole catalogue.

YAML (Elliot's keys)::

    negative_sampling:
      strategy: random        # num_items negatives per user, drawn uniformly (seeded)
      num_items: 99
      save_on_disk: true      # optional: write them (default file ../data/{0}/negative.tsv, or file_path)
      file_path: ../data/{0}/negative.tsv

    negative_sampling:
      strategy: fixed         # negatives read from files: [test file, validation file (optional)]
      files: [../data/{0}/test.negative, ../data/{0}/val.negative]

Negative files (Elliot's / NCF's format, tab separated, raw ids): ``(user_id, item_id)<TAB>neg<TAB>neg...``;
the first field may also be ``(user_id,)`` (what Elliot writes) or a bare ``user_id``.  Several lines of
one user are united.  Ids the dataset does not know are ignored (Elliot ignores unknown items).

The dict the Evaluator takes (what :func:`parse_negative_sampling` returns)::

    {"strategy": "random", "num_items": 99, "seed": 42, "file_path": "/abs/negative.tsv" or None}
    {"strategy": "fixed", "files": ["/abs/test.negative"] or ["/abs/test.negative", "/abs/val.negative"]}

Protocol: the candidates of user u in split s are u's items of s (every stored interaction, relevant or
not, as Elliot's ``sp_i_test``) plus u's negatives of s; the evaluator's masks (training items, plus
validation items at test) still apply.  ``random`` draws, for each evaluated user of each split, ``num_items``
distinct items that are in none of u's train / validation / test interactions (Elliot excludes train and
test only), uniformly without replacement from a generator seeded by (seed, split); a user with fewer
such items gets all of them.  With ``file_path`` the test negatives are written there and the validation
negatives next to it (``negative.validation.tsv``), so ``strategy: fixed, files: [both]`` reproduces them.
``fixed`` with a single file ranks the validation split on the full catalogue (Elliot requires two files
when there is a validation split); an evaluated user without a line in its file is an error.
"""
from __future__ import annotations

import os
from typing import Callable, Dict, List, Optional

import numpy as np
import scipy.sparse as sp

from elliot.errors import ConfigError, DataError, unknown_name

STRATEGIES = ("random", "fixed")
KEYS = ("strategy", "num_items", "files", "file_path", "save_on_disk")
DEFAULT_FILE = "../data/{0}/negative.tsv"  # Elliot's place for the random negatives, relative to the config
_SPLIT_CODE = {"test": 0, "validation": 1}
_CHUNK_USERS = 4096  # users per sampling chunk: fixed, so the draw never depends on a batch size


def parse_negative_sampling(raw, resolve_path: Callable[[str, str], str], where: str, file: str,
                            seed: int = 42) -> Optional[dict]:
    """Validate the ``negative_sampling`` block; the Evaluator's dict (see the module doc) or None when the
    block is absent / empty.  ``resolve_path(value, where)`` resolves an existing path ({0}, relative to the
    config); an output ``file_path`` is resolved through its folder, which must exist."""
    if not raw:
        return None
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: {where} must be a mapping with a 'strategy' key")
    for key in raw:
        if key not in KEYS:
            raise ConfigError(f"{file}: {unknown_name('key', key, KEYS, where=where)}")
    strategy = raw.get("strategy")
    if strategy not in STRATEGIES:
        if strategy is None:
            raise ConfigError(f"{file}: {where}.strategy is required; valid: {', '.join(STRATEGIES)}")
        message = unknown_name("negative sampling strategy", strategy, STRATEGIES, where=f"{where}.strategy")
        raise ConfigError(f"{file}: {message}")
    if strategy == "fixed":
        for key in ("num_items", "file_path", "save_on_disk"):
            if key in raw:
                raise ConfigError(f"{file}: {where}.{key} is for strategy random; strategy fixed reads 'files'")
        files = raw.get("files")
        files = [files] if isinstance(files, str) else files
        if not isinstance(files, list) or not 1 <= len(files) <= 2 or not all(isinstance(f, str) for f in files):
            raise ConfigError(f"{file}: {where}.files must be a list of one or two paths "
                              f"([test negatives, validation negatives]), got {raw.get('files')!r}")
        return {"strategy": "fixed", "files": [resolve_path(f, f"{where}.files[{n}]") for n, f in enumerate(files)]}
    if "files" in raw:
        raise ConfigError(f"{file}: {where}.files is for strategy fixed; strategy random takes num_items")
    num = raw.get("num_items")
    if isinstance(num, str) and num.isdigit():
        num = int(num)
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ConfigError(f"{file}: {where}.num_items: {num!r} must be a positive integer "
                          f"(the negatives per user of strategy random)")
    save = raw.get("save_on_disk", False)
    if not isinstance(save, bool):
        raise ConfigError(f"{file}: {where}.save_on_disk: {save!r} must be true or false")
    path = raw.get("file_path")
    if path is not None and not isinstance(path, str):
        raise ConfigError(f"{file}: {where}.file_path: expected a path string, got {path!r}")
    if path is None and save:
        path = DEFAULT_FILE
    if path is not None:
        folder, name = os.path.split(path)
        path = os.path.join(resolve_path(folder or ".", f"{where}.file_path"), name)
    return {"strategy": "random", "num_items": num, "seed": int(seed), "file_path": path}


# ---- sampling --------------------------------------------------------------------------------------
def sample_uniform_negatives(users: np.ndarray, exclude: sp.csr_matrix, num: int,
                             rng: np.random.Generator) -> sp.csr_matrix:
    """(n_users, n_items) bool CSR: for each of ``users``, ``min(num, available)`` distinct items drawn
    uniformly among those not in its row of ``exclude``.  Vectorised: per chunk of users, an oversampled
    draw with replacement keeps the first ``num`` distinct allowed items in draw order (a uniform sample
    without replacement); users it leaves short redraw by sorting random keys over all items."""
    exclude = exclude.tocsr().astype(bool)
    exclude.sum_duplicates()
    n_users, n_items = exclude.shape
    users = np.asarray(users, dtype=np.int64)
    rows_out, cols_out = [], []
    draws = num + num // 2 + 16
    for start in range(0, len(users), _CHUNK_USERS):
        chunk = users[start:start + _CHUNK_USERS]
        sub = exclude[chunk]
        take = np.minimum(num, n_items - np.diff(sub.indptr))
        excluded_keys = np.repeat(np.arange(len(chunk)), np.diff(sub.indptr)) * n_items + sub.indices
        drawn = rng.integers(0, n_items, size=(len(chunk), draws))
        keys = np.arange(len(chunk))[:, None] * n_items + drawn
        pos = np.searchsorted(excluded_keys, keys)
        allowed = excluded_keys[np.minimum(pos, len(excluded_keys) - 1)] != keys if len(excluded_keys) else \
            np.ones_like(keys, dtype=bool)
        order = np.argsort(drawn, axis=1, kind="stable")
        srt = np.take_along_axis(drawn, order, 1)
        first = np.ones_like(srt, dtype=bool)
        first[:, 1:] = srt[:, 1:] != srt[:, :-1]  # stable sort: the earliest draw of a value comes first
        unique = np.empty_like(first)
        np.put_along_axis(unique, order, first, 1)
        ok = allowed & unique
        chosen = ok & (np.cumsum(ok, 1) <= take[:, None])
        short = chosen.sum(1) < take
        chosen[short] = False
        r, c = np.nonzero(chosen)
        rows_out.append(chunk[r])
        cols_out.append(drawn[r, c])
        for u_local in np.flatnonzero(short):  # rare: few allowed items; exact fallback per user
            keys_u = rng.random(n_items)
            keys_u[sub.indices[sub.indptr[u_local]:sub.indptr[u_local + 1]]] = np.inf
            pick = np.argsort(keys_u, kind="stable")[: take[u_local]]
            rows_out.append(np.full(len(pick), chunk[u_local]))
            cols_out.append(pick)
    r = np.concatenate(rows_out) if rows_out else np.zeros(0, np.int64)
    c = np.concatenate(cols_out) if cols_out else np.zeros(0, np.int64)
    return sp.csr_matrix((np.ones(len(r), dtype=bool), (r, c)), shape=(n_users, n_items), dtype=bool)


def split_rng(seed: int, split: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), _SPLIT_CODE[split]])


# ---- files -----------------------------------------------------------------------------------------
def _user_field(field: str) -> str:
    field = field.strip()
    if field.startswith("(") and field.endswith(")"):
        field = field[1:-1].split(",")[0].strip()
    return field.strip("'\"")


def read_negative_file(path: str, user_ids: np.ndarray, item_ids: np.ndarray) -> sp.csr_matrix:
    """(n_users, n_items) bool CSR of the negatives listed in an Elliot / NCF negative file."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    users = {str(u): n for n, u in enumerate(user_ids)}
    items = {str(i): n for n, i in enumerate(item_ids)}
    rows: List[int] = []
    cols: List[int] = []
    for line in lines:
        if not line.strip():
            continue
        parts = line.rstrip("\n").split("\t")
        u = users.get(_user_field(parts[0]))
        if u is None:
            continue
        listed = [items[i.strip()] for i in parts[1:] if i.strip() in items]
        rows.extend([u] * len(listed))
        cols.extend(listed)
    m = sp.csr_matrix((np.ones(len(rows), dtype=bool), (np.array(rows, dtype=np.int64),
                                                         np.array(cols, dtype=np.int64))),
                      shape=(len(user_ids), len(item_ids)), dtype=bool)
    m.sum_duplicates()
    return m


def write_negative_file(path: str, negatives: sp.csr_matrix, users: np.ndarray, user_ids: np.ndarray,
                        item_ids: np.ndarray) -> None:
    """Write ``(user,)<TAB>neg<TAB>...`` lines (Elliot's format) for ``users``, atomically."""
    negatives = negatives.tocsr()
    lines = []
    for u in users:
        row = negatives.indices[negatives.indptr[u]:negatives.indptr[u + 1]]
        lines.append("\t".join([f"({user_ids[u]},)", *(str(item_ids[i]) for i in row)]))
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + ("\n" if lines else ""))
    os.replace(tmp, path)


def validation_path(path: str) -> str:
    """negative.tsv -> negative.validation.tsv (where the random validation negatives are written)."""
    stem, ext = os.path.splitext(path)
    return f"{stem}.validation{ext}"


def negatives_for_split(config: Dict, split: str, users: np.ndarray, user_ids: np.ndarray, item_ids: np.ndarray,
                        exclude: sp.csr_matrix) -> Optional[sp.csr_matrix]:
    """The negatives of ``split`` for ``users`` under ``config`` (the parsed dict); None: rank on all items."""
    if config["strategy"] == "fixed":
        files = config["files"]
        path = files[0] if split == "test" else (files[1] if len(files) > 1 else None)
        if path is None:
            return None
        neg = read_negative_file(path, user_ids, item_ids)
        missing = users[np.diff(neg.indptr)[users] == 0]
        if len(missing):
            raise DataError(f"{path}: no negatives for {len(missing)} of the {len(users)} evaluated users of the "
                            f"{split} split (e.g. user '{user_ids[missing[0]]}')")
        return neg
    if config["strategy"] != "random":
        raise ConfigError(unknown_name("negative sampling strategy", config["strategy"], STRATEGIES))
    neg = sample_uniform_negatives(users, exclude, int(config["num_items"]),
                                   split_rng(config.get("seed", 42), split))
    if config.get("file_path"):
        path = config["file_path"] if split == "test" else validation_path(config["file_path"])
        write_negative_file(path, neg, users, user_ids, item_ids)
    return neg
