"""Small builders shared by tests."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from elliot.dataset.dataset import Dataset


def csr(rows, cols, shape, values=None):
    values = np.ones(len(rows), dtype=np.float32) if values is None else np.asarray(values, dtype=np.float32)
    return sp.csr_matrix((values, (np.asarray(rows), np.asarray(cols))), shape=shape, dtype=np.float32)


def random_dataset(n_users=30, n_items=40, density=0.15, seed=0, modalities=("visual", "textual"), dims=(8, 6)):
    rng = np.random.default_rng(seed)
    dense = rng.random((n_users, n_items)) < density
    dense[np.arange(n_users), rng.integers(0, n_items, n_users)] = True  # every user has >= 1 interaction
    r, c = np.nonzero(dense)
    part = rng.random(len(r))
    train = csr(r[part < 0.7], c[part < 0.7], (n_users, n_items))
    val = csr(r[(part >= 0.7) & (part < 0.85)], c[(part >= 0.7) & (part < 0.85)], (n_users, n_items))
    test = csr(r[part >= 0.85], c[part >= 0.85], (n_users, n_items))
    feats = {m: rng.standard_normal((n_items, d)).astype(np.float32) for m, d in zip(modalities, dims)}
    return Dataset(name="tiny", user_ids=np.array([f"u{i}" for i in range(n_users)]),
                   item_ids=np.array([f"i{i}" for i in range(n_items)]), train=train, validation=val, test=test,
                   features=feats)


class FixedScores(torch.nn.Module):
    """A model whose scores are a fixed matrix (for evaluator tests)."""

    name = "Fixed"
    trainable = False

    def __init__(self, scores):
        super().__init__()
        self.scores = torch.as_tensor(np.asarray(scores, dtype=np.float32))
        self.device = torch.device("cpu")

    def prepare_scoring(self):
        pass

    def end_scoring(self):
        pass

    def score(self, users):
        return self.scores[users]


def structured_dataset(n_users=120, n_items=60, seed=0):
    """A small dataset drawn from latent factors by the default-data generator (learnable structure,
    unlike :func:`random_dataset`), split per user into train / validation / test."""
    from elliot.dataset.generator import generate, split_per_user

    users, items, ts, visual, textual, _ = generate(n_users=n_users, n_items=n_items, dim=4, mean_extra=6,
                                                    visual_dim=8, textual_dim=6, seed=seed)
    part = split_per_user(users, ts, val_ratio=0.15, test_ratio=0.2)
    splits = [csr(users[part == p], items[part == p], (n_users, n_items)) for p in (0, 1, 2)]
    return Dataset(name="structured", user_ids=np.array([f"u{i}" for i in range(n_users)]),
                   item_ids=np.array([f"i{i}" for i in range(n_items)]), train=splits[0], validation=splits[1],
                   test=splits[2], features={"visual": visual, "textual": textual})


def triplet_batch(ds, n=64, seed=0):
    """``n`` seeded BPR triples: training pairs (u, i) drawn uniformly, j uniform over all items."""
    from elliot.recommender.base import TripletBatch

    g = torch.Generator().manual_seed(seed)
    coo = ds.train.tocoo()
    pick = torch.randint(0, coo.nnz, (n,), generator=g)
    return TripletBatch(users=torch.as_tensor(coo.row, dtype=torch.long)[pick],
                        pos_items=torch.as_tensor(coo.col, dtype=torch.long)[pick],
                        neg_items=torch.randint(0, ds.n_items, (n,), generator=g))


def train_steps(model, batch, steps):
    """``steps`` optimizer steps on one batch (each step counts as an epoch); returns the last loss."""
    opt = model.make_optimizer()
    for epoch in range(steps):
        model.on_epoch_start(epoch)
        opt.zero_grad()
        loss = model.loss(batch)
        loss.backward()
        opt.step()
    return loss


def scoring_views(model, ds, cached_pairs: bool = False):
    """All users' full scores, the same through ``prepare_scoring``'s cache, and ``score_pairs`` on random
    items: ``(users, items, full, cached, pairs)`` (the hook-consistency checks compare them); with
    ``cached_pairs`` also ``score_pairs`` computed while the cache is on, as a sixth value."""
    users = torch.arange(ds.n_users)
    items = torch.randint(0, ds.n_items, (ds.n_users,))
    with torch.no_grad():
        full = model.score(users)
        assert full.shape == (ds.n_users, ds.n_items) and torch.isfinite(full).all()
        model.prepare_scoring()
        cached = model.score(users)
        pairs_cached = model.score_pairs(users, items) if cached_pairs else None
        model.end_scoring()
        pairs = model.score_pairs(users, items)
    views = (users, items, full, cached, pairs)
    return views + (pairs_cached,) if cached_pairs else views


def assert_same_loss_and_grads(model, batch, fast, reference, atol: float, seed=None):
    """``fast(batch)`` and ``reference(batch)`` give the same loss (rtol 1e-5) and the same gradients of
    every parameter (rtol 1e-4); ``seed`` re-seeds torch before each, so random views see the same draws."""
    results = []
    for fn in (fast, reference):
        model.zero_grad()
        if seed is not None:
            torch.manual_seed(seed)
        loss = fn(batch)
        loss.backward()
        results.append((loss.detach(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}))
    (fast_loss, fast_g), (ref_loss, ref_g) = results
    assert torch.allclose(fast_loss, ref_loss, rtol=1e-5, atol=atol)
    assert fast_g.keys() == ref_g.keys()
    for k in ref_g:
        assert torch.allclose(fast_g[k], ref_g[k], rtol=1e-4, atol=atol), k


def fit_through_trainer(model, ds, epochs=1, batch_size=32, seed=0):
    """``epochs`` epochs of the real trainer (sampler, validation, best-epoch restore) on ``ds``; returns
    (fit result, test metrics)."""
    from elliot.evaluation.evaluator import Evaluator
    from elliot.training.trainer import Trainer

    ev = Evaluator(ds, [5, 10], ["Recall", "nDCG"])
    fit = Trainer(model, ds, ev, epochs=epochs, batch_size=batch_size, seed=seed, validation_rate=1,
                  validation_metric="Recall@10", progress=False).fit()
    return fit, ev.evaluate(model, "test")
