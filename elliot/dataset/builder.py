"""``build_dataset``: from the experiment dict (Elliot's YAML keys) to the immutable :class:`Dataset`.

Pipeline (all vectorised over rows):

1. read the interaction file(s): ``fixed`` (train/validation/test TSVs), ``mmrec`` (one ``.inter`` with
   x_label), ``dataset`` (one file, split here; a file with an x_label column is taken as MMRec);
2. encode raw ids jointly over all files; ``binarize``; drop duplicate (user, item) rows inside a split
   (the last one wins);
3. side information: items lacking a modality are dropped from every split (``missing_features: drop``,
   Elliot's behaviour) or imputed later (``mean`` / ``zeros``);
4. prefiltering: on the whole data for ``dataset``, on the training split for ``fixed`` / ``mmrec``;
5. splitting (``dataset``), optionally saved to disk with raw ids; for ``fixed`` without a
   ``validation_path``, ``splitting.validation_splitting`` carves the validation split out of the training
   file (the test file stays the test split), e.g. ML-100K's u1.base / u1.test with a 10% validation;
6. internal indices (sorted by raw id, numerically when all are integers): users from the TRAIN split; items
   from the catalogue ``data_config.item_catalogue`` names (below); validation/test rows with unseen users,
   with items outside the catalogue, or repeating a training pair, are dropped;
7. CSR matrices and feature matrices aligned with ``item_ids``; tabular user / item attributes
   (``ItemAttributes`` / ``UserAttributes``, :mod:`elliot.dataset.side_information.attributes`) aligned with
   ``user_ids`` / ``item_ids`` (they never drop an interaction).

Item catalogue (``data_config.item_catalogue``):

* ``train`` (default; Elliot's behaviour): the items with a training interaction.  Validation/test rows of
  any other item are dropped (TikTok: 448 of the 6,130 test interactions, and their users leave the test).
* ``all`` (MMRec's and the HKUDS code's): every item of any split (after the missing-features drop and the
  prefiltering) plus every item that has side information and no interaction in the input at all (a
  prefiltered item is not brought back).  Items without a training interaction ("cold") get indices like
  the others: their train CSR columns are empty, their feature rows are filled, their validation/test
  rows are kept, ranked and relevant.  MMRec's ``RecDataset`` sets ``item_num = max(itemID) + 1`` over
  the whole ``.inter`` file (``src/utils/dataset.py`` l.47), i.e. the items of every split.

Users are always those with a training interaction, in both settings: MMRec drops the validation/test rows
of users absent from training too (``filter_out_cod_start_users: True`` in ``src/configs/overall.yaml``
l.9, applied in ``RecDataset.split`` l.64-70); its ``user_num = max(userID) + 1`` gives them an embedding
that is never trained nor evaluated, which changes no metric.  (The HKUDS code, e.g. HKUDS/MMSSL
``MMSSL/utility/batch_test.py`` l.90-93, does evaluate such users; not followed.)

Every dropped row is counted in ``Dataset.info`` (and warned about when it changes the evaluation).
"""
from __future__ import annotations

import os
import warnings
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import scipy.sparse as sp

from elliot.dataset.arrays import encode_keys, sort_rows
from elliot.dataset.dataset import Dataset
from elliot.dataset.prefiltering import apply_prefilters
from elliot.dataset.readers import Table, read_table
from elliot.dataset.side_information import (feature_item_ids, load_attributes, load_modality,
                                             parse_attribute_entries, parse_entries)
from elliot.dataset.splitting import holdout, split
from elliot.errors import ConfigError, DataError, unknown_name

STRATEGIES = ("fixed", "dataset", "mmrec")
MISSING = ("drop", "mean", "zeros")
CATALOGUES = ("train", "all")  # data_config.item_catalogue
SPLITS = ("train", "validation", "test")


def _warn(msg: str, say: Callable[[str], None]) -> None:
    """A data-changing event: a Python warning (the runner logs captured warnings), not a log line."""
    warnings.warn(msg, UserWarning, stacklevel=3)


def _path(dc: dict, key: str, strategy: str, required: bool = True) -> Optional[str]:
    value = dc.get(key)
    if value in (None, ""):
        if required:
            raise ConfigError(f"data_config.{key} is required with data_config.strategy '{strategy}'")
        return None
    return str(value)


def _read(dc: dict, strategy: str, say) -> Tuple[List[Table], List[np.ndarray], bool, str]:
    """Tables, the split code (0/1/2) of each table's rows, whether a validation split exists, and the
    path that a 'dataset' split comes from ('' otherwise; part = -1 marks rows still to split)."""
    sep, header = dc.get("separator", "\t"), dc.get("header")
    if isinstance(header, str):
        header = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}.get(
            header.strip().lower())
    if strategy == "fixed":
        paths = [(_path(dc, "train_path", strategy), 0), (_path(dc, "validation_path", strategy, False), 1),
                 (_path(dc, "test_path", strategy), 2)]
        tables, parts = [], []
        for path, code in paths:
            if path is None:
                continue
            t = read_table(path, sep, header)
            say(f"read {path}: {len(t)} interactions{' (header row skipped)' if t.has_header else ''}")
            tables.append(t)
            parts.append(np.full(len(t), code, dtype=np.int8))
        return tables, parts, paths[1][0] is not None, ""
    path = _path(dc, "dataset_path", strategy, False) or _path(dc, "train_path", strategy, False)
    if path is None:
        raise ConfigError(f"data_config.dataset_path is required with data_config.strategy '{strategy}'")
    t = read_table(path, sep, header, mmrec=strategy == "mmrec")
    say(f"read {path}: {len(t)} interactions{' (header row skipped)' if t.has_header else ''}")
    if t.labels is not None:  # MMRec x_label: 0 train, 1 validation, 2 test
        if strategy == "dataset":
            say(f"{path} has an x_label column: using its train/validation/test split (MMRec format)")
        return [t], [t.labels.astype(np.int8)], True, ""
    return [t], [np.full(len(t), -1, dtype=np.int8)], False, path


def _dedupe(part, users, items):
    """(rows, part, users, items) in (part, user, item) order, keeping only the last row of each duplicate
    (part, user, item)."""
    order, (p, u, i) = sort_rows([part.astype(np.int64) + 1, users, items], return_sorted=True)
    last = np.ones(len(order), dtype=bool)
    if len(order):
        last[:-1] = (p[1:] != p[:-1]) | (u[1:] != u[:-1]) | (i[1:] != i[:-1])
    return order[last], (p[last] - 1).astype(np.int8), u[last], i[last]


def _csr(users, items, ratings, shape) -> sp.csr_matrix:
    if len(users) > 1:
        key = users * shape[1] + items
        if not np.all(key[1:] > key[:-1]):
            order = sort_rows([users, items])
            users, items, ratings = users[order], items[order], ratings[order]
    indptr = np.zeros(shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=shape[0]), out=indptr[1:])
    index_t = np.int32 if max(shape[1], len(users)) < 2**31 else np.int64
    return sp.csr_matrix((ratings.astype(np.float32), items.astype(index_t), indptr.astype(index_t)),
                         shape=shape)


def _by_split(part, mask) -> Dict[str, int]:
    """Count of ``mask`` rows per split (part -1 = not split yet: 'dataset')."""
    counts = np.bincount(part[mask].astype(np.int64) + 1, minlength=4)
    return {name: int(c) for name, c in zip(("dataset",) + SPLITS, counts) if c}


def _save_splits(folder: str, user_vocab, item_vocab, users, items, ratings, ts, part, say) -> None:
    os.makedirs(folder, exist_ok=True)
    for p, fname in ((0, "train.tsv"), (1, "val.tsv"), (2, "test.tsv")):
        rows = np.flatnonzero(part == p)
        if p == 1 and not len(rows):
            continue
        cols = [user_vocab[users[rows]], item_vocab[items[rows]],
                np.char.mod("%.10g", ratings[rows])]
        if ts is not None:
            cols.append(np.char.mod("%d" if ts.dtype.kind in "iu" else "%.10g", ts[rows]))
        lines = ["\t".join(fields) for fields in zip(*[c.tolist() for c in cols])]
        with open(os.path.join(folder, fname), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + ("\n" if lines else ""))
    say(f"splits saved to {folder}")


def _extract(entry: dict, where: str, say: Callable[[str], None]) -> dict:
    """Run an entry's ``extract`` job (elliot.features; a cache hit when nothing changed): its features path
    and item mapping, as written."""
    import copy

    from elliot.features import Job, run_job

    job = entry["extract"]
    if not isinstance(job, Job):
        raise ConfigError(f"{where}.extract: {type(job).__name__} is not an extraction job; configs are resolved "
                          "by elliot.config.load_config, which validates extract: and keeps the job")
    # a private copy: the encoder loads its weights into the copy, so the experiment dict (handed to trial
    # workers) never carries a loaded model
    res = run_job(copy.deepcopy(job), quiet=True, log=lambda line: say(f"{where}.extract: {line}"))
    return {"features": res.features, "item_mapping": res.item_mapping}


def build_dataset(experiment: dict, log: Optional[Callable[[str], None]] = None) -> Dataset:
    """Build the :class:`Dataset` described by ``experiment`` (a plain dict with Elliot's key names)."""
    say = log or (lambda *_: None)
    exp = experiment or {}
    dc = dict(exp.get("data_config") or {})
    strategy = str(dc.get("strategy", "fixed"))
    if strategy not in STRATEGIES:
        raise ConfigError(unknown_name("data_config.strategy", strategy, STRATEGIES))
    missing = str(dc.get("missing_features", "drop") or "drop")
    if missing not in MISSING:
        raise ConfigError(unknown_name("data_config.missing_features", missing, MISSING))
    catalogue = str(dc.get("item_catalogue") or "train")
    if catalogue not in CATALOGUES:
        raise ConfigError(unknown_name("data_config.item_catalogue", catalogue, CATALOGUES))
    seed = exp.get("random_seed", 42)
    seed = 42 if seed is None else int(seed)
    entries = parse_entries(dc.get("side_information"))
    attribute_entries = parse_attribute_entries(dc.get("side_information"))  # ItemAttributes / UserAttributes
    info: Dict[str, object] = {"strategy": strategy, "item_catalogue": catalogue}
    for k, entry in enumerate(entries):  # extraction first: its output names the feature items
        if entry.get("extract") is not None:
            entry.update(_extract(entry, f"data_config.side_information[{k}]", say))
    # 'all': the raw ids that have side information join the item vocabulary
    feature_ids = [feature_item_ids(entry) for entry in entries] if catalogue == "all" else []

    # 1-2. read, encode, binarize, dedupe
    tables, parts, has_val, split_source = _read(dc, strategy, say)
    part = np.concatenate(parts)
    if split_source:
        info["rows_read"] = {"dataset": len(part)}
    else:
        info["rows_read"] = {SPLITS[p]: int(c) for p, c in enumerate(np.bincount(part, minlength=3))}
    user_vocab, ucodes = encode_keys([t.users for t in tables])
    item_vocab, icodes = encode_keys([t.items for t in tables] + feature_ids)
    users, items = np.concatenate(ucodes), np.concatenate(icodes[:len(tables)])
    ratings = np.concatenate([t.ratings for t in tables])
    read = np.bincount(items, minlength=len(item_vocab)) > 0  # items with a row in the input
    info["raw_users"], info["raw_items"] = len(user_vocab), int(read.sum())
    if exp.get("binarize", False):
        ratings = np.ones(len(ratings), dtype=np.float64)
    # src: row numbers into the concatenated input, in (part, user, item) order
    src, part_d, users, items = _dedupe(part, users, items)
    info["duplicates_dropped"] = {k: v for k, v in zip(
        [SPLITS[p] if p >= 0 else "dataset" for p in range(-1, 3)],
        (np.bincount(part.astype(np.int64) + 1, minlength=4) - np.bincount(part_d.astype(np.int64) + 1,
                                                                         minlength=4)).tolist()) if v}
    if info["duplicates_dropped"]:
        say(f"duplicate (user, item) rows dropped (last kept): {info['duplicates_dropped']}")
    ratings, part = ratings[src], part_d

    # 3. side information on the whole item vocabulary
    vocab_feats: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
    for entry in entries:
        mat, present = load_modality(entry, item_vocab)
        vocab_feats[entry["modality"]] = (mat, present)
        say(f"side information {entry['modality']}: {mat.shape[1]}-d from {entry['features']} "
            f"({int(present.sum())} of {len(item_vocab)} items)")
    if vocab_feats and missing == "drop":
        used = np.bincount(items, minlength=len(item_vocab)) > 0
        has_all = np.ones(len(item_vocab), dtype=bool)
        lacking = {}
        for m, (_, present) in vocab_feats.items():
            has_all &= present
            if np.count_nonzero(used & ~present):
                lacking[m] = int(np.count_nonzero(used & ~present))
        keep = has_all[items]
        if not keep.all():
            info["items_without_features"] = lacking
            info["rows_dropped_missing_features"] = _by_split(part, ~keep)
            _warn(f"{int(np.count_nonzero(used & ~has_all))} items lack side information ({lacking}); their "
                  f"{int((~keep).sum())} interactions are dropped (data_config.missing_features: drop)", say)
            users, items, ratings, part, src = users[keep], items[keep], ratings[keep], part[keep], src[keep]

    # 4. prefiltering
    specs = exp.get("prefiltering")
    if specs:
        to_split = split_source != ""
        keep, reports = apply_prefilters(specs, users, items, ratings, None if to_split else part == 0, say)
        if not to_split:
            keep |= part != 0
        info["prefiltering"] = reports
        users, items, ratings, part, src = users[keep], items[keep], ratings[keep], part[keep], src[keep]

    # 5. splitting
    timestamps = None
    splitting = exp.get("splitting") or {}
    if split_source:
        blocks = [splitting.get("test_splitting"), splitting.get("validation_splitting")]
        needs_ts = splitting.get("save_on_disk") or any(
            isinstance(b, dict) and b.get("strategy") in ("temporal_hold_out", "fixed_timestamp") for b in blocks)
        ts_all = tables[0].timestamps if needs_ts else None
        timestamps = None if ts_all is None else ts_all[src]
        part = split(splitting, users, seed, timestamps, split_source, say)
        has_val = bool(np.count_nonzero(part == 1)) or bool(splitting.get("validation_splitting"))
    elif strategy == "fixed" and splitting.get("validation_splitting"):
        if has_val:
            raise ConfigError("data_config.validation_path and splitting.validation_splitting both give a "
                              "validation split; keep one")
        spec = splitting["validation_splitting"]
        ts = None
        if spec.get("strategy") in ("temporal_hold_out", "fixed_timestamp"):
            if any(t.timestamps is None for t in tables):
                raise DataError(f"{dc.get('train_path')}: splitting.validation_splitting strategy "
                                f"'{spec.get('strategy')}' needs a timestamp column (user item rating timestamp)")
            ts = np.concatenate([t.timestamps for t in tables])[src]
        rows = np.flatnonzero(part == 0)
        held = holdout(spec, users[rows], seed + 1, None if ts is None else ts[rows], str(dc.get("train_path")),
                       "splitting.validation_splitting")
        part = part.copy()
        part[rows[held]] = 1
        has_val = True
        say(f"validation carved from the training file ({spec.get('strategy')}): train "
            f"{int((part == 0).sum())}, validation {int((part == 1).sum())}, test {int((part == 2).sum())}")

    # 6. train-based indices; drop what cannot be evaluated
    train = part == 0
    if not train.any():
        raise DataError("no training interactions left" + (" after prefiltering" if specs else "") +
                        f" (data_config.strategy {strategy})")
    u_has = np.bincount(users[train], minlength=len(user_vocab)) > 0
    i_train = np.bincount(items[train], minlength=len(item_vocab)) > 0
    if catalogue == "all":  # every item of any split, plus the feature items never read in the input
        i_has = np.bincount(items, minlength=len(item_vocab)) > 0
        if vocab_feats:
            presence = [present for _, present in vocab_feats.values()]
            described = np.logical_and.reduce(presence) if missing == "drop" else np.logical_or.reduce(presence)
            i_has |= described & ~read
    else:
        i_has = i_train
    u_map, i_map = np.cumsum(u_has) - 1, np.cumsum(i_has) - 1
    nu = np.where(u_has[users], u_map[users], -1)
    ni = np.where(i_has[items], i_map[items], -1)
    unseen_u, unseen_i = nu < 0, (nu >= 0) & (ni < 0)
    drop = unseen_u | unseen_i
    for key, mask, what in (("unseen_users_dropped", unseen_u, "users"), ("unseen_items_dropped", unseen_i, "items")):
        counts = _by_split(part, mask)
        if counts:
            info[key] = counts
            hint = " (data_config.item_catalogue: all keeps them as cold items)" if what == "items" else ""
            _warn(f"interactions of {what} absent from the training split are dropped: {counts}{hint}", say)
    n_users, n_items = int(u_has.sum()), int(i_has.sum())
    if catalogue == "all":
        cold = i_has & ~i_train
        info["cold_items"] = int(cold.sum())
        counts = _by_split(part, ~drop & cold[items])
        if counts:
            info["cold_item_interactions"] = counts
        say(f"item catalogue 'all': {n_items} items, {info['cold_items']} without a training interaction "
            f"(cold); their validation/test interactions are kept: {counts or 'none'}")
    train_keys = nu[train] * n_items + ni[train]  # sorted: rows are in (user, item) order
    if len(train_keys) > 1 and not np.all(train_keys[1:] > train_keys[:-1]):
        train_keys = np.sort(train_keys)
    rest = np.flatnonzero(~train & ~drop)
    rest_keys = nu[rest] * n_items + ni[rest]
    pos = np.minimum(np.searchsorted(train_keys, rest_keys), max(len(train_keys) - 1, 0))
    overlap = np.zeros(len(part), dtype=bool)
    overlap[rest[train_keys[pos] == rest_keys]] = True
    if overlap.any():
        info["train_overlap_dropped"] = _by_split(part, overlap)
        _warn(f"validation/test interactions that repeat a training pair are dropped: "
              f"{info['train_overlap_dropped']}", say)
    keep = ~(drop | overlap)
    nu, ni, ratings, part, src = nu[keep], ni[keep], ratings[keep], part[keep], src[keep]
    users, items = users[keep], items[keep]
    if timestamps is not None:
        timestamps = timestamps[keep]
    if split_source and splitting.get("save_on_disk"):
        folder = splitting.get("save_folder") or os.path.join(os.path.dirname(split_source), "splitting")
        _save_splits(str(folder), user_vocab, item_vocab, users, items, ratings, timestamps, part, say)

    # 7. matrices
    shape = (n_users, n_items)
    mats = {p: _csr(nu[part == p], ni[part == p], ratings[part == p], shape) for p in range(3)}
    features = {}
    for m, (mat, present) in vocab_feats.items():
        x = mat[i_has]
        pres = present[i_has]
        if not pres.all():
            if not pres.any():
                raise DataError(f"feature path {next(e['features'] for e in entries if e['modality'] == m)}: "
                                f"no {'' if catalogue == 'all' else 'training '}item has features")
            x[~pres] = x[pres].mean(axis=0) if missing == "mean" else 0.0
            info.setdefault("features_imputed", {})[m] = int((~pres).sum())
            _warn(f"{int((~pres).sum())} items lack {m} features: filled with "
                  f"{'the modality mean' if missing == 'mean' else 'zeros'}", say)
        features[m] = np.ascontiguousarray(x, dtype=np.float32)
    user_attrs, item_attrs = load_attributes(attribute_entries, user_vocab[u_has], item_vocab[i_has], info, say)
    ds = Dataset(name=str(exp.get("dataset", "dataset")), user_ids=user_vocab[u_has], item_ids=item_vocab[i_has],
                 train=mats[0], test=mats[2], validation=mats[1] if has_val else None, features=features,
                 info=info, item_catalogue=catalogue, user_attributes=user_attrs, item_attributes=item_attrs)
    say(ds.summary())
    return ds
