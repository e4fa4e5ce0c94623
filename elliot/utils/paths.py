"""File names derived from configuration names: readable, but never over the filesystem's limit.

A configuration name lists every hyperparameter (Elliot's convention), so a LATTICE grid over
``modalities`` and ``loaders`` easily passes the 255-byte limit of one path component.  Every writer
(recs, history, weights) uses :func:`file_stem`: names that fit are kept as they are, longer ones become
a readable prefix plus a short hash of the full name, so two configurations never share a file and
the same configuration always maps to the same one.  The full name stays inside the files, in the
performance tables and in the trials record.
"""
from __future__ import annotations

import hashlib

#: bytes of a file's stem: 255 (ext4, xfs, btrfs, APFS) minus room for ``.tsv.tmp`` / ``.pt`` and a prefix
MAX_STEM_BYTES = 200
_HASH_CHARS = 10


def file_stem(name: str, limit: int = MAX_STEM_BYTES) -> str:
    """``name`` when its UTF-8 form fits in ``limit`` bytes, else ``<prefix>_h<hash>`` within the limit."""
    encoded = name.encode("utf-8")
    if len(encoded) <= limit:
        return name
    digest = hashlib.sha256(encoded).hexdigest()[:_HASH_CHARS]
    prefix = encoded[: limit - _HASH_CHARS - 2].decode("utf-8", errors="ignore").rstrip("_=-$")
    return f"{prefix}_h{digest}"
