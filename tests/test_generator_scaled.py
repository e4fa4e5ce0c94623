"""generate_scaled: the O(interactions) generator of the scaling benchmark (benchmarks/performance.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from elliot.dataset.generator import generate_scaled, split_per_user, write_default_dataset

ROOT = Path(__file__).resolve().parents[1]


def test_sizes_distinct_pairs_and_determinism():
    out = generate_scaled(20_000, 2_000, 300, seed=7)
    users, items, ts, visual, textual, zi = out
    assert len(users) == len(items) == len(ts)
    assert 0.99 * 20_000 <= len(users) <= 20_000
    assert users.min() >= 0 and users.max() < 2_000 and items.min() >= 0 and items.max() < 300
    keys = users * 300 + items
    assert np.all(np.diff(keys) > 0)  # sorted by (user, item), no repeated pair
    assert np.bincount(users, minlength=2_000).min() >= 3  # every user can be split train/val/test
    assert visual.shape == (300, 64) and textual.shape == (300, 48) and visual.dtype == np.float32
    again = generate_scaled(20_000, 2_000, 300, seed=7)
    for a, b in zip(out, again):
        np.testing.assert_array_equal(a, b)
    other = generate_scaled(20_000, 2_000, 300, seed=8)
    assert not np.array_equal(other[1], items)
    part = split_per_user(users, ts)
    assert set(np.unique(part)) == {0, 1, 2}


def test_no_dense_user_item_matrix():
    """10^4 users x 3·10^5 items would be 2.4·10^10 bytes dense: the generator must not need it."""
    users, items, *_ = generate_scaled(30_000, 10_000, 300_000, seed=1, visual_dim=4, textual_dim=4)
    assert len(users) == 30_000 and items.max() < 300_000


def test_planted_structure_in_interactions_and_features():
    """Items consumed by the same user are closer in visual-feature space than random item pairs, and
    popularity is skewed (Zipf)."""
    users, items, _, visual, _, _ = generate_scaled(50_000, 5_000, 1_000, seed=3)
    x = visual / np.linalg.norm(visual, axis=1, keepdims=True)
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    a, b = items[starts], items[starts + 1]  # two items of the same user
    same_user = float(np.mean(np.sum(x[a] * x[b], axis=1)))
    rng = np.random.default_rng(0)
    r1, r2 = rng.integers(0, 1_000, 5_000), rng.integers(0, 1_000, 5_000)
    random_pairs = float(np.mean(np.sum(x[r1] * x[r2], axis=1)))
    assert same_user > random_pairs + 0.1
    pop = np.sort(np.bincount(items, minlength=1_000))[::-1]
    assert pop[:100].sum() > 0.3 * pop.sum()  # top 10% of the items hold > 30% of the interactions


def test_default_dataset_unchanged(tmp_path):
    """Adding the scaled generator left the embedded default dataset byte-identical."""
    write_default_dataset(tmp_path)
    for name in ("train.tsv", "val.tsv", "test.tsv", "visual.npy", "textual.npy"):
        assert (tmp_path / name).read_bytes() == (ROOT / "data" / "default" / name).read_bytes(), name
