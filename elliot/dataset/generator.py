"""The embedded default dataset: implicit feedback with planted multimodal structure, generated offline.

Users and items get latent factors z_u, z_i ~ N(0, I_d); item i also has a popularity offset b_i.
Each user picks n_u items (n_u ~ 8 + Poisson(mean_extra)) without replacement with probability
proportional to exp((z_u·z_i)/sqrt(d)/temperature + b_i) (Gumbel top-k, vectorised).  Item side
information is a noisy projection of the item factors into two modalities:
visual = z_i W_v + σ_v ε (less noisy) and textual = z_i W_t + σ_t ε (noisier), so a model that reads
features can recover item similarity that sparse interactions hide.  Everything is seeded, so the
same call writes byte-identical files.

Written in the fixed-split format of real data: ``train.tsv``, ``val.tsv``, ``test.tsv``
(``user item rating timestamp``, no header) and ``visual.npy`` / ``textual.npy`` (row i = item i).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def generate(n_users: int = 3000, n_items: int = 1500, dim: int = 16, mean_extra: int = 17,
             temperature: float = 0.35, visual_dim: int = 64, textual_dim: int = 48,
             visual_noise: float = 0.5, textual_noise: float = 1.5, seed: int = 2024):
    """Return (users, items, timestamps, visual, textual, item_factors) as numpy arrays."""
    rng = np.random.default_rng(seed)
    zu = rng.standard_normal((n_users, dim))
    zi = rng.standard_normal((n_items, dim))
    bias = rng.gumbel(0.0, 0.6, size=n_items)
    counts = np.minimum(8 + rng.poisson(mean_extra, size=n_users), n_items // 2)
    logits = (zu @ zi.T) / np.sqrt(dim) / temperature + bias
    keys = logits + rng.gumbel(size=logits.shape)
    order = np.argsort(-keys, axis=1)
    take = np.arange(n_items)[None, :] < counts[:, None]
    users = np.repeat(np.arange(n_users), counts)
    items = order[take]
    timestamps = rng.integers(1_500_000_000, 1_600_000_000, size=len(users))
    visual = zi @ rng.standard_normal((dim, visual_dim)) / np.sqrt(dim) + visual_noise * rng.standard_normal(
        (n_items, visual_dim))
    textual = zi @ rng.standard_normal((dim, textual_dim)) / np.sqrt(dim) + textual_noise * rng.standard_normal(
        (n_items, textual_dim))
    return users, items, timestamps, visual.astype(np.float32), textual.astype(np.float32), zi


def generate_scaled(n_interactions: int, n_users: int, n_items: int, dim: int = 16, seed: int = 2024,
                    n_clusters: int = 0, clusters_per_user: int = 3, zipf_exponent: float = 0.8,
                    explore: float = 0.1, min_per_user: int = 3, visual_dim: int = 64, textual_dim: int = 48,
                    visual_noise: float = 0.5, textual_noise: float = 1.5):
    """Like :func:`generate` at any size: O(interactions + items·dim) time and memory (no users x items matrix).

    Items belong to ``n_clusters`` latent clusters (default ``clip(n_items // 50, 4, 2048)``): item factors
    z_i = c_{k(i)} + 0.5 ε, with Zipf popularity w_i ∝ rank_i^(-zipf_exponent) (ranks randomly permuted).
    Each user has a mixture of ``clusters_per_user`` clusters (drawn by cluster popularity, Dirichlet(1)
    weights) and a number of interactions n_u >= ``min_per_user`` (lognormal shares of the total).  Each
    interaction picks one of the user's clusters by its weight, then an item of that cluster by popularity
    (with probability ``explore`` an item of the whole catalogue by popularity instead): a vectorised
    inverse-CDF draw (``searchsorted`` in the cumulative popularity of the items sorted by cluster).
    Repeated (user, item) pairs are dropped and redrawn (5 rounds as above, then 3 rounds uniformly over
    the catalogue for users whose clusters are saturated), so the result has about ``n_interactions``
    distinct pairs (each user ``min(n_u, n_items // 2)``, up to a residue of repeated draws).  Item side
    information is the noisy projection of the item factors of :func:`generate`.

    Returns (users, items, timestamps, visual, textual, item_factors) as :func:`generate`, sorted by
    (user, item); deterministic for a seed.
    """
    rng = np.random.default_rng(seed)
    n_users, n_items = int(n_users), int(n_items)
    if n_users < 1 or n_items < 2:
        raise ValueError("generate_scaled needs n_users >= 1 and n_items >= 2")
    k = int(n_clusters) if n_clusters else int(np.clip(n_items // 50, 4, 2048))
    k = max(1, min(k, n_items))
    m = max(1, min(int(clusters_per_user), k))
    # items: cluster, factors, popularity
    cluster = rng.integers(0, k, size=n_items)
    cluster[:k] = np.arange(k)  # no empty cluster
    centers = rng.standard_normal((k, dim))
    zi = centers[cluster] + 0.5 * rng.standard_normal((n_items, dim))
    pop = (1.0 + rng.permutation(n_items)) ** (-float(zipf_exponent))
    by_cluster = np.argsort(cluster, kind="stable")  # items grouped by cluster
    cum = np.cumsum(pop[by_cluster])
    total = cum[-1]
    bounds = np.searchsorted(cluster[by_cluster], np.arange(k + 1))  # cluster c = by_cluster[bounds[c]:bounds[c+1]]
    lo = np.concatenate([[0.0], cum])[bounds[:-1]]
    hi = cum[bounds[1:] - 1]
    cluster_pop = hi - lo
    # users: interactions per user, clusters, weights
    base = min(int(min_per_user), max(int(n_interactions) // n_users, 1))
    shares = rng.lognormal(0.0, 1.0, size=n_users)
    extra = max(int(n_interactions) - base * n_users, 0)
    counts = base + np.floor(shares / shares.sum() * extra).astype(np.int64)
    short = int(n_interactions) - int(counts.sum())
    if short > 0:
        counts[rng.choice(n_users, size=min(short, n_users), replace=False)] += 1
    counts = np.minimum(counts, n_items // 2 if n_items >= 4 else n_items - 1)
    user_clusters = np.searchsorted(np.cumsum(cluster_pop) / cluster_pop.sum(), rng.random((n_users, m)))
    user_clusters = np.minimum(user_clusters, k - 1)
    weights = rng.gamma(1.0, size=(n_users, m))
    cum_w = np.cumsum(weights, axis=1) / weights.sum(axis=1, keepdims=True)

    def draw(users: np.ndarray) -> np.ndarray:
        slot = (rng.random(len(users))[:, None] > cum_w[users, : m - 1]).sum(axis=1) if m > 1 \
            else np.zeros(len(users), dtype=np.int64)
        c = user_clusters[users, slot]
        r = lo[c] + rng.random(len(users)) * (hi[c] - lo[c])
        wide = rng.random(len(users)) < explore
        r[wide] = rng.random(int(wide.sum())) * total
        return by_cluster[np.minimum(np.searchsorted(cum, r, side="right"), n_items - 1)]

    keys = np.zeros(0, dtype=np.int64)
    need = counts.copy()
    for rnd in range(8):  # draw, drop repeated pairs (sort-based: O(n log n), same on every numpy), redraw;
        users = np.repeat(np.arange(n_users, dtype=np.int64), need)  # the last rounds draw uniformly
        if not len(users):
            break
        drawn = draw(users) if rnd < 5 else rng.integers(0, n_items, size=len(users))
        keys = np.concatenate([keys, users * n_items + drawn])
        keys.sort(kind="stable")
        keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]
        need = counts - np.bincount(keys // n_items, minlength=n_users)
    users, items = keys // n_items, keys % n_items
    timestamps = rng.integers(1_500_000_000, 1_600_000_000, size=len(users))
    visual = zi @ rng.standard_normal((dim, visual_dim)) / np.sqrt(dim) + visual_noise * rng.standard_normal(
        (n_items, visual_dim))
    textual = zi @ rng.standard_normal((dim, textual_dim)) / np.sqrt(dim) + textual_noise * rng.standard_normal(
        (n_items, textual_dim))
    return users, items, timestamps, visual.astype(np.float32), textual.astype(np.float32), zi


def split_per_user(users: np.ndarray, timestamps: np.ndarray, val_ratio: float = 0.1, test_ratio: float = 0.1):
    """Temporal per-user holdout: each user's latest ``test_ratio`` -> test, the previous ``val_ratio`` -> val."""
    order = np.lexsort((timestamps, users))
    counts = np.bincount(users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(users), dtype=np.int64)
    rank[order] = np.arange(len(users)) - np.repeat(starts, counts)
    n = counts[users]
    n_test = np.maximum(1, np.round(n * test_ratio)).astype(int)
    n_val = np.maximum(1, np.round(n * val_ratio)).astype(int)
    part = np.zeros(len(users), dtype=np.int8)
    part[rank >= n - n_test] = 2
    part[(rank >= n - n_test - n_val) & (rank < n - n_test)] = 1
    return part


def write_default_dataset(folder, seed: int = 2024, **kwargs) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    users, items, ts, visual, textual, _ = generate(seed=seed, **kwargs)
    part = split_per_user(users, ts)
    for code, name in ((0, "train.tsv"), (1, "val.tsv"), (2, "test.tsv")):
        sel = part == code
        rows = np.column_stack([users[sel], items[sel], np.ones(sel.sum(), dtype=np.int64), ts[sel]])
        np.savetxt(folder / name, rows, fmt="%d", delimiter="\t")
    np.save(folder / "visual.npy", visual)
    np.save(folder / "textual.npy", textual)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description="Write the embedded default dataset (deterministic).")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "data" / "default"))
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args()
    print(f"wrote {write_default_dataset(args.out, seed=args.seed)}")


if __name__ == "__main__":
    main()
