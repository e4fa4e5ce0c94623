"""Tabular side information: categorical and dense attributes of users and items.

Two loaders of ``data_config.side_information`` (Elliot's names), one file each:

* ``ItemAttributes`` (Elliot's, ``attribute_file``) and ``UserAttributes`` (the same for users);
* ``format: elliot`` (default): Elliot's TSV ``id<TAB>attr<TAB>attr...``, one line per item (user), the
  attributes categorical ids (Elliot's ``ItemAttributes.load_attribute_file``; it reads them as integers,
  any token is taken here).  One multi-valued categorical attribute set, named by ``name`` (default
  ``item_attributes`` / ``user_attributes``); a repeated id: its last line wins, as in Elliot;
* ``format: ml100k``: MovieLens-100K's own files, read as shipped (``|``-separated, latin-1).
  ``u.item`` (ItemAttributes) gives ``genres`` (categorical, multi-valued: the 19 genre flags) and ``year``
  (dense: the release date's year); ``u.user`` (UserAttributes) gives ``age`` (dense, years),
  ``age_bucket`` (categorical, MovieLens-1M's age groups), ``gender``, ``occupation`` and ``zip_region``
  (categorical: the zip code's first character).

Every attribute is aligned with the dataset's user / item indices (rows looked up by raw id) as an
:class:`Attribute`: ``categorical`` = an int64 ``(n, width)`` code matrix into ``vocabulary`` (code 0 is
``<unknown>``, -1 pads rows with fewer values than ``width``; a multi-valued set such as genres has one
code per value), ``dense`` = a float32 ``(n, width)`` matrix.

Missing (``missing``): ``unknown`` (default) -- an entity of the dataset without a row in the file gets
the ``<unknown>`` code in every categorical attribute and the mean of the entities that have a value in
every dense one (so does a row whose dense value is empty, e.g. u.item's movie 267 without a date), counted
in ``Dataset.info`` and warned about; ``error`` -- a dataset entity without a row is a :class:`DataError`
naming the file.  Interactions are never dropped for a missing attribute row.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from elliot.errors import ConfigError, DataError, unknown_name

#: lower-cased dataloader name -> (its spelling, the side it describes)
ATTRIBUTE_LOADERS = {"itemattributes": ("ItemAttributes", "item"), "userattributes": ("UserAttributes", "user")}
FORMATS = ("elliot", "ml100k")
MISSING = ("unknown", "error")
UNKNOWN = "<unknown>"
#: u.genre, in u.item's flag order
ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                 "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
                 "War", "Western")
#: MovieLens-1M's age groups (its README): lower bounds and names
AGE_BUCKETS = ((0, "<18"), (18, "18-24"), (25, "25-34"), (35, "35-44"), (45, "45-49"), (50, "50-55"), (56, "56+"))


@dataclass(frozen=True)
class Attribute:
    """One attribute set aligned with the dataset's users or items (row r = index r)."""

    name: str
    kind: str  # "categorical" | "dense"
    values: np.ndarray  # categorical: int64 (n, width) codes, -1 = padding; dense: float32 (n, width)
    vocabulary: Tuple[str, ...] = ()  # categorical: code -> value; code 0 = "<unknown>"
    source: str = ""

    @property
    def width(self) -> int:
        return int(self.values.shape[1])

    @property
    def cardinality(self) -> int:
        return len(self.vocabulary)


def is_attribute_entry(entry) -> bool:
    return isinstance(entry, dict) and str(entry.get("dataloader", "")).lower() in ATTRIBUTE_LOADERS


def parse_attribute_entries(side_information) -> List[dict]:
    """The ``ItemAttributes`` / ``UserAttributes`` entries of ``side_information``, normalised to
    ``{side, loader, attribute_file, format, name, missing}`` (the other entries are
    :func:`elliot.dataset.side_information.parse_entries`')."""
    if isinstance(side_information, dict):
        side_information = [side_information]
    out = []
    for k, entry in enumerate(side_information or []):
        if not is_attribute_entry(entry):
            continue
        where = f"data_config.side_information[{k}]"
        loader, side = ATTRIBUTE_LOADERS[str(entry["dataloader"]).lower()]
        path = entry.get("attribute_file")
        if not path:
            raise ConfigError(f"{where}: {loader} needs 'attribute_file' (a TSV id<TAB>attr<TAB>... or, with "
                              "format: ml100k, u.item / u.user)")
        fmt = str(entry.get("format") or "elliot")
        if fmt not in FORMATS:
            raise ConfigError(unknown_name(f"{where}.format", fmt, FORMATS))
        missing = str(entry.get("missing") or "unknown")
        if missing not in MISSING:
            raise ConfigError(unknown_name(f"{where}.missing", missing, MISSING))
        name = entry.get("name")
        if name is not None and fmt != "elliot":
            raise ConfigError(f"{where}.name: format {fmt} names its own attributes (ml100k: "
                              f"{', '.join(n for n, _ in _ML100K_FIELDS[side])}); name is for format elliot")
        out.append({"side": side, "loader": loader, "attribute_file": str(path), "format": fmt,
                    "name": str(name or f"{side}_attributes"), "missing": missing})
    return out


# ---- reading a file: ids and per-field raw values -------------------------------------------------------
#: a field read from a file: (kind, value) with value = (row ids, tokens) for categorical (one token per
#: (row, value) pair), a float64 (n_rows, width) matrix with NaN = no value for dense
Field = Tuple[str, object]

_ML100K_FIELDS = {"item": (("genres", "categorical"), ("year", "dense")),
                  "user": (("age", "dense"), ("age_bucket", "categorical"), ("gender", "categorical"),
                           ("occupation", "categorical"), ("zip_region", "categorical"))}


def _lines(path: str, encoding: str) -> List[str]:
    try:
        with open(path, encoding=encoding) as f:
            return [ln.rstrip("\r\n") for ln in f if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"attribute file {path}: unreadable ({e})") from None


def _read_elliot(path: str, name: str) -> Tuple[List[str], Dict[str, Field]]:
    rows = [ln.split("\t") for ln in _lines(path, "utf-8")]
    if not rows:
        raise DataError(f"attribute file {path} is empty (expected lines id<TAB>attr<TAB>attr...)")
    ids = [r[0].strip() for r in rows]
    tokens = [[t.strip() for t in r[1:] if t.strip()] for r in rows]
    lengths = np.array([len(t) for t in tokens], dtype=np.int64)
    owner = np.repeat(np.arange(len(rows), dtype=np.int64), lengths)
    return ids, {name: ("categorical", (owner, np.array([t for ts in tokens for t in ts], dtype=str)))}


def _split(path: str, n_fields: int, what: str) -> List[List[str]]:
    rows = [ln.split("|") for ln in _lines(path, "latin-1")]
    if not rows:
        raise DataError(f"attribute file {path} is empty (expected ML-100K's {what})")
    bad = next((k for k, r in enumerate(rows) if len(r) != n_fields), None)
    if bad is not None:
        raise DataError(f"attribute file {path}: line {bad + 1} has {len(rows[bad])} '|'-separated fields, "
                        f"ML-100K's {what} has {n_fields} (format: ml100k)")
    return rows


def _read_ml100k_items(path: str) -> Tuple[List[str], Dict[str, Field]]:
    rows = _split(path, 24, "u.item (id|title|date|video date|url|19 genre flags)")
    flags = np.array([r[5:24] for r in rows])
    if not np.isin(flags, ("0", "1")).all():
        k = int(np.flatnonzero(~np.isin(flags, ("0", "1")).all(1))[0])
        raise DataError(f"attribute file {path}: line {k + 1}: the genre flags (fields 6-24) are not 0/1")
    owner, genre = np.nonzero(flags == "1")
    dates = np.array([r[2].strip()[-4:] for r in rows])
    has = np.char.isdigit(dates) & (np.char.str_len(dates) == 4)
    year = np.full((len(rows), 1), np.nan)
    year[has, 0] = dates[has].astype(np.float64)
    return [r[0].strip() for r in rows], {
        "genres": ("categorical", (owner.astype(np.int64), np.array(ML100K_GENRES)[genre])),
        "year": ("dense", year)}


def _read_ml100k_users(path: str) -> Tuple[List[str], Dict[str, Field]]:
    rows = _split(path, 5, "u.user (id|age|gender|occupation|zip)")
    ages = np.array([r[1].strip() for r in rows])
    bad = ~np.char.isdigit(ages)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise DataError(f"attribute file {path}: line {k + 1}: age {ages[k]!r} is not an integer")
    age = ages.astype(np.float64)
    bounds = np.array([b for b, _ in AGE_BUCKETS], dtype=np.float64)
    bucket = np.array([n for _, n in AGE_BUCKETS])[np.searchsorted(bounds, age, side="right") - 1]
    every = np.arange(len(rows), dtype=np.int64)

    def column(k: int) -> Field:
        vals = np.array([r[k].strip() for r in rows])
        keep = np.char.str_len(vals) > 0
        return "categorical", (every[keep], vals[keep])

    zips = np.array([r[4].strip()[:1] for r in rows])
    keep = np.char.str_len(zips) > 0
    return [r[0].strip() for r in rows], {
        "age": ("dense", age[:, None]), "age_bucket": ("categorical", (every, bucket)), "gender": column(2),
        "occupation": column(3), "zip_region": ("categorical", (every[keep], zips[keep]))}


def read_attribute_file(entry: dict) -> Tuple[List[str], Dict[str, Field]]:
    """(raw ids of the file's rows, attribute name -> field) of one normalised entry."""
    path = entry["attribute_file"]
    if entry["format"] == "elliot":
        return _read_elliot(path, entry["name"])
    return (_read_ml100k_items if entry["side"] == "item" else _read_ml100k_users)(path)


# ---- aligning with the dataset ---------------------------------------------------------------------------
def _codes(owner: np.ndarray, tokens: np.ndarray, rows: np.ndarray, n_file: int) -> Tuple[np.ndarray, tuple]:
    """(n, width) codes of the dataset's entities (``rows``: file row of each, -1 none) and the vocabulary."""
    values, inverse = np.unique(tokens, return_inverse=True) if len(tokens) else (np.zeros(0, str),
                                                                                np.zeros(0, np.int64))
    pairs = np.unique(np.stack([owner, inverse.ravel() + 1]), axis=1)  # (row, code) once, sorted by row
    counts = np.bincount(pairs[0], minlength=n_file)
    width = max(int(counts.max()) if n_file else 1, 1)
    table = np.full((n_file + 1, width), -1, dtype=np.int64)  # the last row: entities without a file row
    starts = np.cumsum(counts) - counts
    table[pairs[0], np.arange(pairs.shape[1]) - starts[pairs[0]]] = pairs[1]
    table[np.flatnonzero(counts == 0), 0] = 0  # a row without any value: <unknown>
    table[n_file, 0] = 0
    return table[np.where(rows >= 0, rows, n_file)], (UNKNOWN,) + tuple(values.tolist())


def _dense(x: np.ndarray, rows: np.ndarray, path: str, name: str) -> Tuple[np.ndarray, int]:
    """(n, width) float32 of the dataset's entities, empty values filled with the mean of the others."""
    out = np.where((rows >= 0)[:, None], x[np.maximum(rows, 0)], np.nan)
    empty = np.isnan(out)
    if empty.all(axis=0).any():
        raise DataError(f"attribute file {path}: no entity of the dataset has a value of '{name}'")
    out = np.where(empty, np.nanmean(out, axis=0, keepdims=True), out)
    return out.astype(np.float32), int(empty.any(axis=1).sum())


def align(entry: dict, raw_ids: Sequence[str], ids: List[str], fields: Dict[str, Field],
          info: Optional[dict] = None) -> Dict[str, Attribute]:
    """The entry's attributes for the dataset's ``raw_ids`` (its users or items, in index order)."""
    path, side = entry["attribute_file"], entry["side"]
    lookup = {r: k for k, r in enumerate(ids)}  # a repeated id: its last line wins (Elliot's dict)
    rows = np.array([lookup.get(str(r), -1) for r in np.asarray(raw_ids).tolist()], dtype=np.int64)
    absent = rows < 0
    if len(rows) and absent.all():
        raise DataError(f"attribute file {path}: no {side} of the dataset has a row (dataset {side} ids look like "
                        f"{', '.join(str(r) for r in list(raw_ids)[:3])}; the file's like {', '.join(ids[:3])})")
    if absent.any():
        example = ", ".join(str(r) for r in np.asarray(raw_ids)[absent][:3].tolist())
        if entry["missing"] == "error":
            raise DataError(f"attribute file {path}: {int(absent.sum())} {side}s of the dataset have no row (e.g. "
                            f"{example}); add them or set missing: unknown")
        warnings.warn(f"attribute file {path}: {int(absent.sum())} {side}s of the dataset have no row (e.g. "
                      f"{example}): <unknown> categories, mean dense values (missing: unknown)", UserWarning,
                      stacklevel=3)
    out, filled = {}, {}
    for name, (kind, value) in fields.items():
        if kind == "categorical":
            codes, vocab = _codes(value[0], value[1], rows, len(ids))
            out[name] = Attribute(name, kind, codes, vocab, path)
        else:
            x, n_filled = _dense(np.asarray(value, dtype=np.float64), rows, path, name)
            out[name] = Attribute(name, kind, x, (), path)
            if n_filled:
                filled[name] = n_filled
    if info is not None:
        info.setdefault(f"{side}_attributes", {}).update({name: {
            "file": path, "rows_missing": int(absent.sum()), **({"filled_with_mean": filled[name]} if name in filled
                                                               else {})} for name in out})
    return out


def load_attributes(entries: List[dict], user_ids, item_ids, info: Optional[dict] = None,
                    say=None) -> Tuple[Dict[str, Attribute], Dict[str, Attribute]]:
    """(user attributes, item attributes) of the normalised entries, aligned with the dataset's indices.
    Attribute names are unique across both sides (a model's ``attributes`` hyperparameter lists them)."""
    sides: Dict[str, Dict[str, Attribute]] = {"user": {}, "item": {}}
    origin: Dict[str, str] = {}
    for entry in entries:
        ids, fields = read_attribute_file(entry)
        attrs = align(entry, user_ids if entry["side"] == "user" else item_ids, ids, fields, info)
        for name, attr in attrs.items():
            if name in origin:
                raise ConfigError(f"side_information: attribute '{name}' comes from both {origin[name]} and "
                                  f"{entry['attribute_file']}; give one of them another name")
            origin[name] = entry["attribute_file"]
            sides[entry["side"]][name] = attr
            if say is not None:
                shape = f"{attr.cardinality} values, up to {attr.width} per {entry['side']}" \
                    if attr.kind == "categorical" else f"{attr.width}-d"
                say(f"{entry['side']} attribute {name}: {attr.kind}, {shape}, from {entry['attribute_file']}")
    return sides["user"], sides["item"]
