"""Reading the raw inputs: a folder of ``<item_id>.<ext>`` images, or a CSV/TSV table of item texts.

Both return the items in output order (raw ids sorted numerically when they are all integers, else as
strings), the items skipped before encoding (``(id, reason)``), and a fingerprint of the input for the cache:
images by (file name, size, mtime), a table by the sha256 of its bytes.
"""
from __future__ import annotations

import csv
import hashlib
import io
import re
import sys
from pathlib import Path

from elliot.errors import DataError, unknown_name

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
_INT = re.compile(r"^(0|[1-9][0-9]*)$")


def id_order(ids) -> list:
    ids = list(ids)
    if all(_INT.match(i) for i in ids):
        return sorted(ids, key=int)
    return sorted(ids)


def list_images(folder: Path, where: str):
    """([(id, path)], fingerprint).  The id is the file name without its extension."""
    try:
        names = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    except OSError as e:
        raise DataError(f"{where}.input_path {folder}: cannot list it ({e.strerror or e})") from None
    by_id, fingerprint = {}, []
    for p in names:
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if p.stem in by_id:
            raise DataError(f"{where}.input_path {folder}: item '{p.stem}' has two images ({by_id[p.stem].name}, "
                            f"{p.name}); keep one")
        by_id[p.stem] = p
        st = p.stat()
        fingerprint.append([p.name, st.st_size, st.st_mtime_ns])
    if not by_id:
        raise DataError(f"{where}.input_path {folder}: no images ({', '.join(IMAGE_SUFFIXES)}) named <item_id>.<ext>")
    return [(i, by_id[i]) for i in id_order(by_id)], fingerprint


def _sep(path: Path, sep, first_line: str) -> str:
    if sep:
        return "\t" if sep in ("\\t", "tab") else str(sep)
    if path.suffix.lower() in (".tsv", ".tab"):
        return "\t"
    if path.suffix.lower() == ".csv":
        return ","
    return "\t" if "\t" in first_line else ","


def read_texts(path: Path, item_column, text_columns, sep, where: str):
    """([(id, text)], [(id, reason)], info, fingerprint).  Repeated ids keep their first row; an empty text (all
    of ``text_columns`` blank) is skipped and reported.  Defaults as Ducho: ids in the first column, texts in
    the last."""
    try:
        raw = path.read_bytes()
        content = raw.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{where}.input_path {path}: unreadable ({e})") from None
    if not content.strip():
        raise DataError(f"{where}.input_path {path} is empty")
    delimiter = _sep(path, sep, content.split("\n", 1)[0])
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter)
    try:
        header = [h.strip() for h in next(reader)]
    except csv.Error as e:
        raise DataError(f"{where}.input_path {path}: not a {repr(delimiter)}-separated table ({e})") from None
    if len(header) < 2:
        raise DataError(f"{where}.input_path {path}: one column only with separator {delimiter!r}; give sep: "
                        "(',' or '\\t') or a table with an id and a text column")
    item_column = item_column or header[0]
    text_columns = text_columns or [header[-1]]
    for key, names in (("item_column", [item_column]), ("text_column", text_columns)):
        for name in names:
            if name not in header:
                raise DataError(f"{where}.{key}: {unknown_name('column', name, header)} (in {path.name})")
    id_at, text_at = header.index(item_column), [header.index(c) for c in text_columns]
    texts, duplicates, no_id, rows = {}, 0, 0, 0
    empty = set()
    try:
        for row in reader:
            if not row:
                continue
            rows += 1
            row = row + [""] * (len(header) - len(row))
            item = row[id_at].strip()
            if not item:
                no_id += 1
                continue
            if item in texts or item in empty:
                duplicates += 1
                continue
            text = " ".join(row[k].strip() for k in text_at if row[k].strip())
            if text:
                texts[item] = text
            else:
                empty.add(item)
    except csv.Error as e:
        raise DataError(f"{where}.input_path {path}: line {reader.line_num}: {e}") from None
    col = "/".join(text_columns)
    skipped = [(i, f"empty text in column {col}") for i in id_order(empty)]
    info = {"rows": rows, "duplicate_ids": duplicates, "rows_without_id": no_id}
    return [(i, texts[i]) for i in id_order(texts)], skipped, info, hashlib.sha256(raw).hexdigest()


def image_error(exc: Exception) -> str:
    return f"unreadable image ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
