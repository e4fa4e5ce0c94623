"""Fast, numpy-only readers for interaction files.

Two formats are understood:

* Elliot TSV: ``user item [rating [timestamp]]`` separated by ``separator`` (tab by default), no header
  unless ``header`` is true or the first row looks like one (its rating column is not numeric, or every
  field is a known column name).
* MMRec ``.inter``: a header naming the columns (``userID itemID rating x_label`` and optionally
  ``timestamp``, any order); ``x_label`` 0/1/2 = train/validation/test.

The file is read once into a numpy byte buffer and tokenised without a Python loop per row: separator and
newline positions are found chunk by chunk, and each column is parsed from a ``(width, chunk)`` byte
matrix gathered at its token starts.  Ids stay raw: a column whose tokens are all plain non-negative
integers (no leading zeros) comes back as int64, any other as fixed-width bytes
(:func:`elliot.dataset.arrays.encode_keys` turns them into dense codes).
"""
from __future__ import annotations

import os
from typing import Optional

import numpy as np

from elliot.errors import DataError

_ALIASES = {
    "user": {"user", "userid", "user_id", "users", "uid"},
    "item": {"item", "itemid", "item_id", "items", "iid", "movieid", "movie_id", "artistid"},
    "rating": {"rating", "ratings", "score", "value", "weight"},
    "timestamp": {"timestamp", "time", "ts", "date", "datetime"},
    "label": {"x_label", "xlabel", "label", "split"},
}
_POSITIONAL = ("user", "item", "rating", "timestamp")
_PAD = 512  # zero bytes after the data: column gathers may run past the last token
_SCAN = 1 << 23  # bytes per delimiter-scan chunk
_CHUNK = 1 << 16  # rows per column-parse chunk
_POW10 = 10 ** np.arange(19, dtype=np.int64)


class Table:
    """Raw columns of one interaction file.

    ``users``/``items`` are int64 (plain integer ids) or fixed-width bytes; ``ratings`` float64 (1.0 when the
    file has none).  ``timestamps`` (int64 or float64) and ``labels`` (MMRec x_label, int64) are parsed on
    first access and are None when the file lacks the column.
    """

    def __init__(self, path: str, users: np.ndarray, items: np.ndarray, ratings: np.ndarray,
                 timestamps=None, labels=None, has_header: bool = False, lazy: Optional[dict] = None):
        self.path = path
        self.users, self.items, self.ratings = users, items, ratings
        self._timestamps, self._labels = timestamps, labels
        self.has_header = has_header
        self._lazy = lazy or {}  # column name -> zero-argument parser

    def _get(self, name: str):
        if getattr(self, "_" + name) is None and name in self._lazy:
            setattr(self, "_" + name, self._lazy.pop(name)())
        return getattr(self, "_" + name)

    @property
    def timestamps(self) -> Optional[np.ndarray]:
        return self._get("timestamps")

    @property
    def labels(self) -> Optional[np.ndarray]:
        return self._get("labels")

    @property
    def has_timestamps(self) -> bool:
        return self._timestamps is not None or "timestamps" in self._lazy

    def __len__(self) -> int:
        return len(self.users)


def _canon(name: str) -> Optional[str]:
    n = name.strip().strip('"').strip("'").lower().split(":")[0]  # RecBole-style "user_id:token"
    for key, names in _ALIASES.items():
        if n in names:
            return key
    return None


def _is_number(text: bytes) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _normalise(data: bytes) -> bytes:
    """Slow path for unusual files: BOM, CR line ends, blank lines."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    while b"\n\n" in data:
        data = data.replace(b"\n\n", b"\n")
    return data.strip(b"\n")


def _as_buffer(data) -> tuple:
    """(bytearray with zero padding, logical length) with exactly one trailing newline."""
    ba = bytearray(len(data) + _PAD)
    ba[:len(data)] = data
    n = len(data)
    ba[n] = 10
    return ba, n + 1


def _load(path: str) -> tuple:
    try:
        size = os.path.getsize(path)
        ba = bytearray(size + _PAD)
        with open(path, "rb") as f:
            got = f.readinto(memoryview(ba)[:size])
    except OSError as e:
        raise DataError(f"cannot read interaction file {path}: {e.strerror or e}") from None
    end = got
    if ba.startswith(b"\xef\xbb\xbf") or ba.find(b"\r", 0, end) >= 0 or ba.startswith(b"\n"):
        return _as_buffer(_normalise(bytes(ba[:end])))
    while end and ba[end - 1] == 10:
        end -= 1
    if end == 0:
        return ba, 0
    ba[end] = 10
    return ba, end + 1


class _Tokens:
    """Token boundaries of the body of a delimited file; columns are parsed in cache-sized chunks."""

    def __init__(self, path: str, ba: bytearray, begin: int, end: int, sep: int, n_cols: int,
                 first_line_no: int):
        self.path, self.first_line_no, self.n_cols, self.begin = path, first_line_no, n_cols, begin
        self.buf = np.frombuffer(ba, dtype=np.uint8)
        idx_t = np.int32 if end < 2**31 - _PAD else np.int64
        m1 = np.empty(_SCAN, dtype=bool)
        m2 = np.empty(_SCAN, dtype=bool)
        parts = []
        for a in range(begin, end, _SCAN):
            c = self.buf[a:min(a + _SCAN, end)]
            k = len(c)
            np.equal(c, sep, out=m1[:k])
            np.equal(c, 10, out=m2[:k])
            np.logical_or(m1[:k], m2[:k], out=m1[:k])
            p = np.flatnonzero(m1[:k])
            parts.append((p + a).astype(idx_t) if a else p.astype(idx_t))
        self.pos = np.concatenate(parts) if parts else np.zeros(0, dtype=idx_t)
        is_nl = self.buf[self.pos] == 10
        grid = is_nl.reshape(-1, n_cols) if len(self.pos) % n_cols == 0 else None
        if grid is None or not (grid[:, -1].all() and not grid[:, :-1].any()):
            per_line = np.diff(np.concatenate([[-1], np.flatnonzero(is_nl)]))
            bad = int(np.flatnonzero(per_line != n_cols)[0])
            raise DataError(f"{path}: line {bad + first_line_no}: expected {n_cols} fields, found "
                            f"{int(per_line[bad])} (separator {chr(sep)!r}; is data_config.separator right?)")
        self.n_rows = len(self.pos) // n_cols

    def _prepare(self, col: int):
        ends = self.pos[col::self.n_cols]
        if col:
            st = self.pos[col - 1::self.n_cols] + 1
        else:
            st = np.empty_like(ends)
            st[0] = self.begin
            st[1:] = self.pos[self.n_cols - 1::self.n_cols][:-1] + 1
        ln = ends - st
        if self.n_rows and ln.min() == 0:
            row = int(np.flatnonzero(ln == 0)[0])
            raise DataError(f"{self.path}: line {row + self.first_line_no}: empty field in column {col + 1}")
        width = int(ln.max()) if self.n_rows else 1
        if width > _PAD // 2:
            row = int(np.argmax(ln))
            raise DataError(f"{self.path}: line {row + self.first_line_no}: field of {width} characters in "
                            f"column {col + 1} (is data_config.separator right?)")
        return st, ln, width

    def _chunks(self, st, ln, width):
        ar = np.arange(width, dtype=st.dtype)[:, None]
        for c0 in range(0, self.n_rows, _CHUNK):
            s, ln_c = st[c0:c0 + _CHUNK], ln[c0:c0 + _CHUNK]
            m = self.buf[s[None, :] + ar]  # (width, chunk) bytes, left-aligned
            yield c0, ln_c, m, ar < ln_c[None, :]

    def bytes_column(self, col: int) -> np.ndarray:
        """Fixed-width zero-padded bytes (``S<width>``) of column ``col``."""
        st, ln, width = self._prepare(col)
        out = np.empty((self.n_rows, width), dtype=np.uint8)
        for c0, _, m, valid in self._chunks(st, ln, width):
            m[~valid] = 0
            out[c0:c0 + m.shape[1]] = m.T
        return out.view(f"S{width}").ravel()

    def id_column(self, col: int) -> np.ndarray:
        """int64 when every token is a plain non-negative integer without leading zeros, else bytes."""
        st, ln, width = self._prepare(col)
        if width > 18:
            return self.bytes_column(col)
        out = np.empty(self.n_rows, dtype=np.int64)
        for c0, ln_c, m, valid in self._chunks(st, ln, width):
            d = m - np.uint8(48)
            d[~valid] = 0
            if (d > 9).any() or ((d[0] == 0) & (ln_c > 1)).any():
                return self.bytes_column(col)
            acc = d[0].astype(np.int64)
            for k in range(1, width):
                acc *= 10
                acc += d[k]
            out[c0:c0 + len(acc)] = acc // _POW10[width - ln_c]
        return out

    def number_column(self, col: int, what: str, integer_ok: bool = False) -> np.ndarray:
        """Vectorised ``[-]digits[.digits]`` parser (int64 when ``integer_ok`` and no token has a dot);
        anything else (exponents, ``nan``) goes through numpy's string cast."""
        st, ln, width = self._prepare(col)
        out = np.empty(self.n_rows, dtype=np.float64)
        ints = np.empty(self.n_rows, dtype=np.int64)
        any_dot = False
        simple = width <= 17
        if simple:
            for c0, ln_c, m, valid in self._chunks(st, ln, width):
                d = m - np.uint8(48)
                digit = (d < 10) & valid
                dot = (m == 46) & valid
                neg = m[0] == 45
                other = valid & ~digit & ~dot
                other[0] &= ~(neg & (ln_c > 1))
                if other.any() or (dot.sum(axis=0) > 1).any() or not digit.any(axis=0).all():
                    simple = False
                    break
                d[~digit] = 0
                acc = d[0].astype(np.int64)
                sl = slice(c0, c0 + len(acc))
                if dot.any():
                    any_dot = True
                    frac = np.zeros(len(acc), dtype=np.int64)
                    seen_dot = dot[0].copy()
                    for k in range(1, width):
                        dk = digit[k]
                        acc = np.where(dk, acc * 10 + d[k], acc)
                        frac += dk & seen_dot
                        seen_dot |= dot[k]
                    acc = np.where(neg, -acc, acc)
                    out[sl] = acc / _POW10[frac]
                else:
                    for k in range(1, width):
                        acc *= 10
                        acc += d[k]
                    acc //= _POW10[width - ln_c + neg]
                    acc = np.where(neg, -acc, acc)
                    out[sl] = acc
                ints[sl] = acc
            if simple:
                return ints if integer_ok and not any_dot else out
        strings = self.bytes_column(col)
        try:
            return strings.astype(np.float64)
        except ValueError:
            for row, s in enumerate(strings.tolist()):
                if not _is_number(s):
                    raise DataError(f"{self.path}: line {row + self.first_line_no}: {what} "
                                    f"'{s.decode(errors='replace')}' is not a number") from None
            raise DataError(f"{self.path}: {what} column is not numeric") from None


def _separator(separator) -> bytes:
    if separator in (None, ""):
        return b"\t"
    sep = str(separator)
    if "\\" in sep:  # a literal "\t" written in single quotes in the YAML
        sep = sep.encode().decode("unicode_escape")
    return sep.encode()


def read_table(path, separator: Optional[str] = "\t", header: Optional[bool] = None,
               mmrec: bool = False) -> Table:
    """Read one interaction file (Elliot TSV, or MMRec ``.inter`` when ``mmrec`` or the header has x_label).

    ``header``: True/False, or None to auto-detect.  Raises :class:`DataError` naming the file (and line)
    on unreadable files, ragged rows, empty fields and non-numeric ratings/timestamps/labels.
    """
    path = str(path)
    ba, end = _load(path)
    if end == 0:
        raise DataError(f"interaction file {path} is empty")
    sep_b = _separator(separator)
    if len(sep_b) != 1 or sep_b == b"\n":
        ba, end = _as_buffer(bytes(ba[:end - 1]).replace(sep_b, b"\x1f"))
        sep_b = b"\x1f"
    first_end = ba.find(b"\n", 0, end)
    first = bytes(ba[:first_end]).split(sep_b)
    names = [_canon(f.decode(errors="replace")) for f in first]
    if header is None:
        recognised = all(n is not None for n in names) and len(first) >= 2
        rating_text = len(first) >= 3 and not _is_number(first[2])
        header = recognised or rating_text or (mmrec and not all(_is_number(f) for f in first))
    if header:
        if "user" in names and "item" in names:
            roles = {}
            for k, n in enumerate(names):
                if n is not None and n not in roles:
                    roles[n] = k
        else:
            roles = {r: k for k, r in enumerate(_POSITIONAL[:len(first)])}
        begin, first_line_no = first_end + 1, 2
    else:
        order = ("user", "item", "rating", "label") if mmrec else _POSITIONAL
        roles = {r: k for k, r in enumerate(order[:len(first)])}
        begin, first_line_no = 0, 1
    n_cols = len(first)
    if n_cols < 2:
        raise DataError(f"{path}: expected at least 2 columns (user, item) separated by {sep_b.decode()!r}, "
                        "found 1 (is data_config.separator right?)")
    if mmrec and "label" not in roles:
        raise DataError(f"{path}: an MMRec .inter file needs an x_label column (0/1/2 = train/validation/test); "
                        f"header: {' '.join(f.decode(errors='replace') for f in first)}")
    if begin >= end:
        empty = np.zeros(0, dtype=np.int64)
        return Table(path, empty, empty.copy(), np.zeros(0), empty.copy() if "timestamp" in roles else None,
                     empty.copy() if "label" in roles else None, bool(header))
    try:
        tok = _Tokens(path, ba, begin, end, sep_b[0], n_cols, first_line_no)
    except DataError:
        if ba.find(b"\n\n", 0, end) < 0:
            raise
        ba, end = _as_buffer(_normalise(bytes(ba[:end])))  # blank lines inside the file
        tok = _Tokens(path, ba, ba.find(b"\n") + 1 if header else 0, end, sep_b[0], n_cols, first_line_no)
    users = tok.id_column(roles["user"])
    items = tok.id_column(roles["item"])
    if "rating" in roles:
        ratings = tok.number_column(roles["rating"], "rating").astype(np.float64, copy=False)
        bad = ~np.isfinite(ratings)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(f"{path}: line {row + first_line_no}: rating {ratings[row]} is not a finite number "
                            f"({int(bad.sum())} such row(s)); fix or remove them")
    else:
        ratings = np.ones(tok.n_rows, dtype=np.float64)
    lazy = {}
    if "timestamp" in roles:
        lazy["timestamps"] = lambda: tok.number_column(roles["timestamp"], "timestamp", integer_ok=True)
    if "label" in roles:
        def labels():
            lab = tok.number_column(roles["label"], "x_label", integer_ok=True)
            bad = ~np.isin(lab, (0, 1, 2))
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise DataError(f"{path}: line {row + first_line_no}: x_label {lab[row]} (valid: 0 train, "
                                "1 validation, 2 test)")
            return lab.astype(np.int64)
        lazy["labels"] = labels
    return Table(path, users, items, ratings, has_header=bool(header), lazy=lazy)
