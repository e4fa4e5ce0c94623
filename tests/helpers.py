"""Small builders shared by tests."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch.nn import functional as F

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


def fit_through_trainer(model, ds, epochs=1, batch_size=32, seed=0, cutoffs=(5, 10), metrics=("Recall", "nDCG")):
    """``epochs`` epochs of the real trainer (sampler, validation, best-epoch restore) on ``ds``; returns
    (fit result, test metrics)."""
    from elliot.evaluation.evaluator import Evaluator
    from elliot.training.trainer import Trainer

    ev = Evaluator(ds, list(cutoffs), list(metrics))
    fit = Trainer(model, ds, ev, epochs=epochs, batch_size=batch_size, seed=seed, validation_rate=1,
                  validation_metric="Recall@10", progress=False).fit()
    return fit, ev.evaluate(model, "test")


def single_thread_fixture():
    """An autouse, module-scoped fixture running the module's tests on one torch thread (tiny tensors: thread
    hand-offs cost more than the work on a shared 2-core machine). Bind it in the test module:
    ``_one_thread = single_thread_fixture()``."""

    @pytest.fixture(autouse=True, scope="module")
    def _one_thread():
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        yield
        torch.set_num_threads(threads)

    return _one_thread


def make_model(cls, ds, seed=0, **hp):
    """``cls`` on ``ds`` on the CPU with its declared defaults overridden by ``hp``; torch is seeded with
    ``seed`` first (``None``: not seeded)."""
    return _built(cls, ds, seed, hp)


def _built(cls, ds, seed, hp):
    params = {p.name: p.default for p in cls.declared_params()}
    params.update(hp)
    if seed is not None:
        torch.manual_seed(seed)
    return cls(ds, params, torch.device("cpu"))


def model_factory(cls, seed=0, seed_param=False, **defaults):
    """A test module's ``_model(ds, seed=..., **hp)``: :func:`make_model` with ``defaults`` under ``hp``; with
    ``seed_param`` the seed is also the model's own ``seed`` parameter (between ``defaults`` and ``hp``)."""

    def build(ds, seed=seed, **hp):
        own = {"seed": seed} if seed_param else {}
        return _built(cls, ds, seed, {**defaults, **own, **hp})

    return build


def assert_views_agree(model, ds, atol=1e-5, exact_cache=False):
    """:func:`scoring_views`: the cached full scores equal (``exact_cache``) or are close to the uncached ones,
    and ``score_pairs`` is the full score gathered at the pairs (rtol 1e-5, ``atol``); returns
    ``(users, items, full, pairs)``."""
    users, items, full, cached, pairs = scoring_views(model, ds)
    assert torch.equal(full, cached) if exact_cache else torch.allclose(full, cached)
    torch.testing.assert_close(pairs, full.gather(1, items.view(-1, 1)).squeeze(1), rtol=1e-5, atol=atol)
    return users, items, full, pairs


def assert_branches_sum_to_score(model, users, items, pairs, branches, dim=8, atol=1e-5):
    """``modality_embeddings`` has exactly ``branches``, each ``(len(users), dim)`` on both sides, and the
    branch scores sum to the fused ``pairs`` score (rtol 1e-5, ``atol``)."""
    emb = model.modality_embeddings(users, items)
    assert set(emb) == set(branches)
    assert all(eu.shape == (len(users), dim) and ei.shape == (len(users), dim) for eu, ei in emb.values())
    torch.testing.assert_close(sum(model.modality_scores(users, items).values()), pairs, rtol=1e-5, atol=atol)


def replaced_feature_grad(model, score, modality="visual"):
    """The gradient of ``score().sum()`` with respect to a zero change added to ``modality``'s stored
    features through ``features_replaced``; the stored features are left as they were."""
    stored = model.feature(modality).clone()
    delta = torch.zeros_like(stored, requires_grad=True)
    with model.features_replaced({modality: stored + delta}):
        score().sum().backward()
    assert torch.equal(model.feature(modality), stored)
    return delta.grad


def scores_with_replaced_feature(model, score, modality="visual"):
    """``score()`` (no grad) with ``modality``'s features replaced by ``3 x + 1``, then with the stored ones
    (left as they were): ``(attacked, clean)``."""
    stored = model.feature(modality).clone()
    with torch.no_grad():
        with model.features_replaced({modality: stored * 3 + 1}):
            attacked = score()
        clean = score()
    assert torch.equal(model.feature(modality), stored)
    return attacked, clean


def assert_deterministic_training(build, ds, batch, steps=4, seed=3, n_scored=5, eval_mode=False):
    """Two models from ``build(ds, seed=seed)`` trained ``steps`` steps on ``batch`` end with the same loss
    and parameters and (in eval mode with ``eval_mode``) score the first ``n_scored`` users the same;
    returns them."""
    a, b = build(ds, seed=seed), build(ds, seed=seed)
    assert torch.equal(train_steps(a, batch, steps), train_steps(b, batch, steps))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    if eval_mode:
        a.eval(), b.eval()
    with torch.no_grad():
        assert torch.equal(a.score(torch.arange(n_scored)), b.score(torch.arange(n_scored)))
    return a, b


def assert_deterministic_fit(build, ds, epochs=2, seed=3, **hp):
    """Two models from ``build(ds, seed=seed, **hp)`` fitted ``epochs`` epochs by :func:`fit_through_trainer`
    run every epoch with a finite last loss and end with the same test metrics and parameters; returns them."""
    a, b = build(ds, seed=seed, **hp), build(ds, seed=seed, **hp)
    fa, ta = fit_through_trainer(a, ds, epochs=epochs)
    _, tb = fit_through_trainer(b, ds, epochs=epochs)
    assert fa.epochs_run == epochs and math.isfinite(fa.history[-1]["loss"])
    assert ta.values == tb.values
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    return a, b


def assert_one_trainer_epoch(model, ds, batch_size=128):
    """One epoch of the real trainer (Recall@10 validation) runs, is the best epoch, and gives a test
    Recall@10 in [0, 1]."""
    fit, test = fit_through_trainer(model, ds, epochs=1, batch_size=batch_size, cutoffs=[10], metrics=["Recall"])
    assert fit.epochs_run == 1 and fit.best_epoch == 1 and fit.history
    assert 0.0 <= test.values[10]["Recall"] <= 1.0


def assert_training_lowers_loss(model, batch, steps, reset=None):
    """``steps`` :func:`train_steps` on ``batch`` lower its loss; ``reset()`` (if given) runs before each of the
    two measurements so that both see the same random draws. Returns the last training loss."""
    if reset is not None:
        reset()
    first = model.loss(batch).item()
    last = train_steps(model, batch, steps)
    if reset is not None:
        reset()
    assert model.loss(batch).item() < first
    return last


# Dense reference pieces (the published code's operations written out on dense matrices).

def dense_graph(train, self_loops=False):
    """The symmetric user-item adjacency of the binary ``train`` matrix, dense: users first, then items;
    with ``self_loops`` plus the identity."""
    n_users, n_items = train.shape
    r = torch.as_tensor((train > 0).toarray(), dtype=torch.float32)
    a = torch.zeros(n_users + n_items, n_users + n_items)
    a[:n_users, n_users:], a[n_users:, :n_users] = r, r.T
    return a + torch.eye(len(a)) if self_loops else a


def dense_sym_norm(a, eps=0.0):
    """D^-1/2 A D^-1/2 with the row degrees (``+ eps``); an empty row gets zero weight."""
    d = (a.sum(1) + eps).pow(-0.5)
    d[torch.isinf(d)] = 0
    return d.view(-1, 1) * a * d.view(1, -1)


def dense_knn_laplacian(x, k):
    """MMRec: build_sim -> topk with values -> D^-1/2 S D^-1/2 (dense)."""
    xn = x / x.norm(dim=1, keepdim=True)
    sim = xn @ xn.T
    val, ind = torch.topk(sim, k, dim=-1)
    return dense_sym_norm(torch.zeros_like(sim).scatter_(-1, ind, val))


def dense_layer_mean(adj, ego, n_layers):
    """LightGCN's readout: the mean of ``ego`` and its ``n_layers`` propagations through ``adj``."""
    layers = [ego]
    for _ in range(n_layers):
        layers.append(adj @ layers[-1])
    return torch.stack(layers, 1).mean(1)


def reference_info_nce(v1, v2, temp=0.2):
    """MMRec's InfoNCE of the row pairs of ``v1`` and ``v2`` (cosine, temperature ``temp``)."""
    v1, v2 = F.normalize(v1, dim=1), F.normalize(v2, dim=1)
    pos = torch.exp((v1 * v2).sum(-1) / temp)
    ttl = torch.exp(v1 @ v2.T / temp).sum(1)
    return -torch.log(pos / ttl).mean()


def reference_content_view(model, train):
    """MMRec MGCN's (and SMORE's) user-item view, dense: (the user-item block of Â = D^-1/2 A D^-1/2, the
    content embeddings ē = mean of Â^k [e_u; e_i] for k <= ``n_ui_layers``)."""
    norm = dense_sym_norm(dense_graph(train))
    return norm[:model.n_users, model.n_users:], dense_layer_mean(norm, model.embeddings, model.n_ui_layers)


def reference_content_side_loss(model, batch, content, side):
    """MMRec MGCN's (and SMORE's) ``calculate_loss`` from the content and side embeddings (users first): BPR and
    L2 on ``content + side``, InfoNCE of side against content for the batch's users and positive items."""
    nu = model.n_users
    final = content + side
    u, i, j = final[batch.users], final[nu + batch.pos_items], final[nu + batch.neg_items]
    mf = -F.logsigmoid((u * i).sum(1) - (u * j).sum(1)).mean()
    reg = ((u ** 2).sum() / 2 + (i ** 2).sum() / 2 + (j ** 2).sum() / 2) / model.hp["batch_size"]
    cl = (reference_info_nce(side[nu + batch.pos_items], content[nu + batch.pos_items])
          + reference_info_nce(side[batch.users], content[batch.users]))
    return mf + model.l_w * reg + model.cl_loss * cl


def assert_fine_tuned_features(frozen, tuned, batch, steps: int = 3) -> None:
    """``fine_tune_features``: the tuned model trains its feature tables (kept in the state dict, the attack
    surface of ``features_replaced``) while its raw copy stays as loaded; the frozen one keeps the raw features."""
    assert len(frozen.feature_tables) == 0 and set(tuned.feature_tables) == set(tuned.modalities)
    raw = {m: tuned.feature(m).detach().clone() for m in tuned.modalities}
    train_steps(frozen, batch, steps)
    train_steps(tuned, batch, steps)
    for m in tuned.modalities:
        assert torch.equal(frozen.feature(m), getattr(frozen, f"_feat_{m}"))  # raw features, untouched
        assert not torch.equal(tuned.feature(m).detach(), raw[m])  # trained with the model
        assert torch.equal(getattr(tuned, f"_feat_{m}"), raw[m])  # the raw copy stays as loaded
    assert any(k.startswith("feature_tables.") for k in tuned.state_dict())  # restored with the best epoch
    m = tuned.modalities[0]
    replaced = tuned.feature(m).detach() + 1.0
    with tuned.features_replaced({m: replaced}):  # the attack surface is the trained table
        assert tuned.feature(m) is replaced
    assert tuned.feature(m) is tuned.feature_tables[m]
