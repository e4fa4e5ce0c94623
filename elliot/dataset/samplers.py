"""Training samplers: the sampler decides the batch kind (``batch_kind``, mapped to a batch class by
:data:`elliot.recommender.base.BATCH_TYPES` in the trainer; this module knows nothing of models).

* :class:`BPRSampler` (``batch_kind = "triplets"``): BPR triples (users, pos_items, neg_items), ranking;
* :class:`RatingSampler` (``batch_kind = "ratings"``): the training split's (users, items, ratings),
  rating prediction;
* :class:`UserChunkSampler` (``batch_kind = "triplets_with_users"``): BPR triples plus a chunk of all users
  per batch (each user once per epoch), for a per-user objective trained in the same loop (DiffMM).

:class:`BPRSampler` -- one epoch visits every training interaction ``(u, i)`` once, in a seeded random
order, and pairs it with a negative item ``j`` drawn uniformly among the items ``u`` has NOT interacted
with in training (with ``negative_items``: among those items only -- the trainer passes the items that have a
training interaction when ``data_config.item_catalogue`` is ``all``, as MMRec's ``TrainDataLoader`` draws
negatives from the training split's items only, ``src/utils/dataloader.py`` l.116 and l.307-309: a cold
item is never a positive nor a negative).  Negatives come from vectorised rejection sampling: all candidates of a chunk are drawn
at once, checked against the sorted int64 keys ``u * n_items + i`` of the training positives with
``np.searchsorted``, and only the offending entries are redrawn.  Randomness comes only from the
sampler's own ``np.random.default_rng(seed)``: the same seed gives the same sequence of epochs.
"""
from __future__ import annotations

from typing import Iterator, Tuple

import numpy as np
import scipy.sparse as sp

Triples = Tuple[np.ndarray, np.ndarray, np.ndarray]


def training_pairs(train: sp.spmatrix):
    """(canonical CSR, users, items) of the stored training entries, user-major with sorted items (so
    ``users * n_items + items`` ascends), int64."""
    csr = sp.csr_matrix(train)
    if not csr.has_canonical_format:  # sorted indices, no duplicates
        csr = csr.copy()
        csr.sum_duplicates()
    counts = np.diff(csr.indptr).astype(np.int64)
    return csr, np.repeat(np.arange(csr.shape[0], dtype=np.int64), counts), csr.indices.astype(np.int64)


class BPRSampler:
    """Uniform BPR triples ``(users, pos_items, neg_items)`` (int64) over a CSR training matrix."""

    batch_kind = "triplets"
    chunk_rows = 1 << 20  # triples drawn per vectorised step (batches are sliced from a chunk)
    bitmap_max_bits = 1 << 30  # users x items up to this size: membership by a bitmap (<= 128 MiB)

    def __init__(self, train: sp.spmatrix, seed: int = 42, negative_items=None):
        csr, self.users, self.items = training_pairs(train)
        self.n_users, self.n_items = csr.shape
        counts = np.diff(csr.indptr).astype(np.int64)
        self.keys = self.users * self.n_items + self.items  # ascending
        # the negative pool: None = every item (a draw is the item index itself)
        self.pool = None
        n_pool = self.n_items
        if negative_items is not None:
            pool = np.unique(np.asarray(negative_items, dtype=np.int64))
            if len(pool) and (pool[0] < 0 or pool[-1] >= self.n_items):
                raise ValueError(f"BPRSampler: negative_items must be item indices in [0, {self.n_items})")
            if len(pool) < self.n_items:
                self.pool, n_pool = pool, len(pool)
                in_pool = np.zeros(self.n_items, dtype=bool)
                in_pool[pool] = True
                counts = np.bincount(self.users[in_pool[self.items]], minlength=self.n_users)  # positives in the pool
        full = np.flatnonzero(counts >= n_pool)
        if len(full) and self.n_items:
            raise ValueError(f"BPRSampler: user index {int(full[0])} interacted with every "
                             f"{'' if self.pool is None else 'negative-pool '}item ({n_pool}); no negative item "
                             f"exists ({len(full)} such users)")
        self.rng = np.random.default_rng(seed)
        n_bits = self.n_users * self.n_items
        self.bitmap = None
        if n_bits <= self.bitmap_max_bits:  # one random byte read per check instead of a binary search
            self.bitmap = np.zeros((n_bits >> 3) + 1, dtype=np.uint8)
            if len(self.keys):
                byte = self.keys >> 3
                bit = (np.uint8(1) << (self.keys & 7).astype(np.uint8)).astype(np.uint8)
                starts = np.flatnonzero(np.r_[True, byte[1:] != byte[:-1]])
                self.bitmap[byte[starts]] = np.bitwise_or.reduceat(bit, starts)
        self._index_bits = 0
        if len(self.keys):
            self._index_bits = int(self.chunk_rows).bit_length()
        self._packable = (max(n_bits, 1).bit_length() + self._index_bits) <= 63

    def __len__(self) -> int:
        """Number of triples per epoch (= training interactions)."""
        return len(self.items)

    def n_batches(self, batch_size: int) -> int:
        """Batches per epoch for ``batch_size``."""
        return -(-len(self.items) // max(int(batch_size), 1))

    def is_positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Whether each (user, item) is a training interaction."""
        k = np.asarray(users, dtype=np.int64) * self.n_items + np.asarray(items, dtype=np.int64)
        if self.bitmap is not None:
            return ((self.bitmap[k >> 3] >> (k & 7).astype(np.uint8)) & 1).astype(bool)
        if not len(self.keys):
            return np.zeros(len(k), dtype=bool)
        if self._packable and len(k) <= (1 << self._index_bits):  # sorted queries search ~20x faster
            packed = (k << self._index_bits) | np.arange(len(k), dtype=np.int64)
            packed.sort()
            order = packed & ((1 << self._index_bits) - 1)
            ks = packed >> self._index_bits
        else:
            order = np.argsort(k)
            ks = k[order]
        pos = np.searchsorted(self.keys, ks)
        pos[pos == len(self.keys)] = 0
        hit = np.empty(len(k), dtype=bool)
        hit[order] = self.keys[pos] == ks
        return hit

    def negatives(self, users: np.ndarray) -> np.ndarray:
        """Uniform non-positive items for ``users`` (rejection sampling, vectorised)."""
        users = np.asarray(users, dtype=np.int64)
        n = self.n_items if self.pool is None else len(self.pool)
        draw = (lambda size: self.rng.integers(0, n, size=size, dtype=np.int64)) if self.pool is None else \
            (lambda size: self.pool[self.rng.integers(0, n, size=size, dtype=np.int64)])
        neg = draw(len(users))
        todo = np.flatnonzero(self.is_positive(users, neg))
        while len(todo):
            neg[todo] = draw(len(todo))
            todo = todo[self.is_positive(users[todo], neg[todo])]
        return neg

    def epoch(self, batch_size: int) -> Iterator[Triples]:
        """Yield the epoch's batches (the last one may be smaller)."""
        batch_size = max(int(batch_size), 1)
        n = len(self.items)
        perm = self.rng.permutation(n)
        step = max(self.chunk_rows // batch_size, 1) * batch_size
        for c0 in range(0, n, step):
            idx = perm[c0:c0 + step]
            u, i = self.users[idx], self.items[idx]
            j = self.negatives(u)
            for b0 in range(0, len(idx), batch_size):
                sl = slice(b0, b0 + batch_size)
                yield u[sl], i[sl], j[sl]


class RatingSampler:
    """The training ratings as (users int64, items int64, ratings float32) batches: one epoch visits every
    stored (u, i) of the CSR training matrix once, in an order drawn by the sampler's own
    ``np.random.default_rng(seed)`` (a fresh permutation per epoch; the same seed gives the same epochs).
    Vectorised: one permutation and three gathers per epoch, batches are slices."""

    batch_kind = "ratings"

    def __init__(self, train: sp.spmatrix, seed: int = 42):
        csr, self.users, self.items = training_pairs(train)
        self.n_users, self.n_items = csr.shape
        self.ratings = np.asarray(csr.data, dtype=np.float32)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        """Ratings per epoch (= stored training entries)."""
        return len(self.items)

    def n_batches(self, batch_size: int) -> int:
        return -(-len(self.items) // max(int(batch_size), 1))

    def epoch(self, batch_size: int) -> Iterator[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yield the epoch's batches (the last one may be smaller)."""
        batch_size = max(int(batch_size), 1)
        perm = self.rng.permutation(len(self.items))
        u, i, r = self.users[perm], self.items[perm], self.ratings[perm]
        for b0 in range(0, len(perm), batch_size):
            sl = slice(b0, b0 + batch_size)
            yield u[sl], i[sl], r[sl]


class UserChunkSampler:
    """BPR triples from ``base`` (a triplet sampler) plus, on each batch, ``epoch_users``: a chunk of a seeded
    permutation of all ``n_users`` users (``batch_kind = "triplets_with_users"``).

    Every user is in exactly one chunk per epoch; the C = ⌈n_users / chunk_size⌉ chunks of ``chunk_size``
    users ride on the epoch's B batches spread evenly (chunk j on batch ⌊j·B / C⌋; when C > B several chunks
    share a batch, concatenated), every other batch carries an empty array.  For models with a per-user
    objective next to BPR (DiffMM's denoisers over interaction rows): that objective gets C optimisation steps
    of ``chunk_size`` users per epoch, as a separate loop over users would, inside the trainer's one loop.
    Randomness: ``base``'s own, and ``np.random.default_rng(seed)`` for the permutations."""

    batch_kind = "triplets_with_users"

    def __init__(self, base, n_users: int, chunk_size: int, seed: int = 42):
        if getattr(base, "batch_kind", "triplets") != "triplets":
            raise ValueError("UserChunkSampler wraps a sampler of BPR triples")
        self.base, self.n_users, self.chunk_size = base, int(n_users), max(int(chunk_size), 1)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.base)

    def n_batches(self, batch_size: int) -> int:
        return self.base.n_batches(batch_size)

    def chunk_bounds(self, n_batches: int) -> np.ndarray:
        """(n_batches + 1,) offsets into the epoch's user permutation: batch b carries users [o_b, o_b+1)."""
        n_chunks = -(-self.n_users // self.chunk_size)
        owner = (np.arange(n_chunks, dtype=np.int64) * max(n_batches, 1)) // max(n_chunks, 1)
        first = np.searchsorted(owner, np.arange(n_batches + 1), side="left")
        return np.minimum(first * self.chunk_size, self.n_users)

    def epoch(self, batch_size: int) -> Iterator[Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        perm = self.rng.permutation(self.n_users).astype(np.int64)
        bounds = self.chunk_bounds(self.n_batches(batch_size))
        for b, (u, i, j) in enumerate(self.base.epoch(batch_size)):
            yield u, i, j, perm[bounds[b]:bounds[b + 1]]
