import pytest
import torch

from external.models.slmrec import SLMRec
from tests.helpers import (assert_same_loss_and_grads, model_factory, random_dataset, scoring_views,
                           single_thread_fixture, triplet_batch)

D = 8


_one_thread = single_thread_fixture()
_model = model_factory(SLMRec, factors=D, n_layers=2, lr=0.01)


_batch = triplet_batch


def _seeded_loss(model, batch, seed=123):
    torch.manual_seed(seed)  # same dropout masks / masked branches for comparisons
    return model.loss(batch)


@pytest.mark.parametrize("hp", [{"ssl_task": "FAC"}, {"ssl_task": "FD"}, {"ssl_task": "FM"},
                                {"ssl_task": "FD+FM", "fusion": "mean"}, {"ssl_task": "none", "main_loss": "bpr"}])
def test_training_lowers_loss(hp):
    ds = random_dataset()
    model = _model(ds, **hp)
    opt = model.make_optimizer()
    batch = _batch(ds)
    first = _seeded_loss(model, batch).item()
    for _ in range(25):
        opt.zero_grad()
        loss = model.loss(batch)
        loss.backward()
        opt.step()
    assert torch.isfinite(loss)
    assert _seeded_loss(model, batch).item() < first
    assert model.dense[0].weight.grad is not None and model.dense[0].weight.grad.abs().sum() > 0


def test_fac_alignment_widths():
    ds = random_dataset()
    two = _model(ds)
    assert [lin.out_features for lin in two.chain] == [D, D // 2]  # v: d, t: d/2 (coarsest)
    one = _model(random_dataset(modalities=("visual",), dims=(8,)))
    assert [lin.out_features for lin in one.chain] == [D]  # kwai-like: v only, d wide


@pytest.mark.parametrize("fusion", ["concat", "mean"])
def test_score_and_pairs_agree(fusion):
    ds = random_dataset()
    model = _model(ds, fusion=fusion)
    users, items, full, cached, pairs = scoring_views(model, ds)
    assert torch.allclose(full, cached)
    assert torch.allclose(pairs, full.gather(1, items.view(-1, 1)).squeeze(1), atol=1e-5)


@pytest.mark.parametrize("fusion", ["concat", "mean"])
def test_branch_scores_sum_to_fused_score(fusion):
    ds = random_dataset()
    model = _model(ds, fusion=fusion)
    with torch.no_grad():  # non-trivial fusion biases
        model.fuse_user.bias.normal_()
        model.fuse_item.bias.normal_()
    users, items = torch.arange(10), torch.arange(10, 20)
    emb = model.modality_embeddings(users, items)
    assert set(emb) == {"id", "visual", "textual"}
    for eu, ei in emb.values():
        assert eu.shape == (10, 2 * D + 1) and ei.shape == (10, 2 * D + 1)
    total = sum(model.modality_scores(users, items).values())
    assert torch.allclose(total, model.score_pairs(users, items), atol=1e-5)
    raw = model.branch_embeddings(users, items)
    assert set(raw) == {"id", "visual", "textual"}
    assert all(u.shape == (10, D) and i.shape == (10, D) for u, i in raw.values())


def test_gradients_reach_replaced_features():
    ds = random_dataset()
    model = _model(ds)
    stored = model.feature("visual").clone()
    users, items = torch.arange(5), torch.arange(5)
    delta = torch.zeros_like(stored, requires_grad=True)
    with model.features_replaced({"visual": stored + delta}):
        model.score_pairs(users, items).sum().backward()
    assert delta.grad is not None and delta.grad.abs().sum() > 0
    delta2 = torch.zeros_like(stored, requires_grad=True)
    with model.features_replaced({"visual": stored + delta2}):
        model.modality_scores(users, items)["visual"].sum().backward()
    assert delta2.grad.abs().sum() > 0
    delta3 = torch.zeros_like(stored, requires_grad=True)
    with model.features_replaced({"visual": stored + delta3}):
        u, i = model.branch_embeddings(users, items)["visual"]
        (u * i).sum().backward()
    assert delta3.grad.abs().sum() > 0
    assert torch.equal(model.feature("visual"), stored)
    with torch.no_grad(), model.features_replaced({"visual": stored * 3 + 1}):
        changed = model.score_pairs(users, items)
    assert not torch.allclose(changed, model.score_pairs(users, items))


@pytest.mark.parametrize("task", ["FAC", "FD+FM"])
def test_deterministic_with_fixed_seed(task):
    ds = random_dataset()
    batch = _batch(ds)
    losses = []
    for _ in range(2):
        model = _model(ds, seed=3, ssl_task=task)
        opt = model.make_optimizer()
        for _ in range(3):
            opt.zero_grad()
            loss = model.loss(batch)
            loss.backward()
            opt.step()
        losses.append(loss.detach())
    assert torch.equal(losses[0], losses[1])


def _reference_loss(model, batch):
    """The loss written directly over the batch rows: every branch propagated side by side from
    ``_ego()``, in-batch softmax over all batch rows (what the fast path must reproduce)."""
    from torch.nn import functional as F

    from elliot.recommender.base import bpr_loss
    from external.models.slmrec.slmrec import info_nce

    ego = model._ego()
    out = model._propagate(ego)
    users, pos, n_u = batch.users, batch.pos_items, model.n_users
    ub, ib = out[users], out[n_u + pos]
    zu, zi = model._fuse(ub, model.fuse_user), model._fuse(ib, model.fuse_item)
    if model.main_loss == "infonce":
        loss = info_nce(F.normalize(zu, dim=1), F.normalize(zi, dim=1), model.temp)
    else:
        zj = model._fuse(out[n_u + batch.neg_items], model.fuse_item)
        loss = bpr_loss((zu * zi).sum(-1), (zu * zj).sum(-1))
    if model.ssl_task == "none" or not model.ssl_alpha:
        return loss
    d, t = model.factors, model.ssl_temp
    if model.ssl_task == "FAC":
        a, ssl = ib[:, :d], 0.0
        for k, (chain, align) in enumerate(zip(model.chain, model.align)):
            a = chain(a)
            ssl = ssl + info_nce(a, align(ib[:, (k + 1) * d:(k + 2) * d]), t)
        return loss + model.ssl_alpha * ssl
    nb = len(model.branches)
    if model.ssl_task in ("FM", "FD+FM"):
        picks = torch.randperm(nb)[:2]
        masks = torch.ones(2, nb)
        masks[0, picks[0]] = 0.0
        masks[1, picks[1]] = 0.0
        masks = masks.repeat_interleave(d, dim=1)
        x_items = ego[n_u:]
        ego2 = torch.cat([ego[:n_u].repeat(1, 2), torch.cat([x_items * masks[0], x_items * masks[1]], 1)])
    else:
        ego2 = ego.repeat(1, 2)
    views = model._propagate(ego2, dropout=model.ssl_task != "FM")
    ssl = 0.0
    for rows, lin in ((views[users], model.fuse_user), (views[n_u + pos], model.fuse_item)):
        v1 = F.normalize(model._fuse(rows[:, :nb * d], lin), dim=1)
        v2 = F.normalize(model._fuse(rows[:, nb * d:], lin), dim=1)
        ssl = ssl + info_nce(v1, v2, t)
    return loss + model.ssl_alpha * ssl


@pytest.mark.parametrize("cache", [True, False])
@pytest.mark.parametrize("hp", [{"ssl_task": "FAC"}, {"ssl_task": "FAC", "n_layers": 3, "fusion": "mean"},
                                {"ssl_task": "FD"}, {"ssl_task": "FM"}, {"ssl_task": "FD+FM"},
                                {"ssl_task": "none", "main_loss": "bpr", "n_layers": 1}])
def test_loss_and_gradients_match_dense_reference(hp, cache, monkeypatch):
    """Distinct-row losses, the bipartite parity split and the cached propagated features give the
    loss (and gradients) of the plain formulation; random views see the same draws."""
    if not cache:
        monkeypatch.setattr(SLMRec, "feature_cache_bytes", 0)
    ds = random_dataset()
    model = _model(ds, **hp)
    batch = _batch(ds)
    assert_same_loss_and_grads(model, batch, model.loss, lambda b: _reference_loss(model, b), atol=1e-6, seed=5)


def test_outputs_match_propagated_ego_and_track_features():
    ds = random_dataset()
    model = _model(ds, n_layers=3)
    rows = torch.tensor([0, 3, 3, ds.n_users + 1, ds.n_users + 7])
    with torch.no_grad():
        ref = model._propagate(model._ego())
        assert torch.allclose(model._outputs(rows), ref[rows], atol=1e-6)
        assert torch.allclose(model._outputs(), ref, atol=1e-6)
        model._feat_visual.mul_(2.0).add_(1.0)  # in-place change of the stored features: cache refreshed
        assert torch.allclose(model._outputs(rows), model._propagate(model._ego())[rows], atol=1e-6)


def test_grouped_info_nce_equals_batch_info_nce():
    from external.models.slmrec.slmrec import grouped_info_nce, info_nce

    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 4, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(5, 4, dtype=torch.float64, generator=g, requires_grad=True)
    rows = torch.tensor([0, 1, 2, 3, 4, 5, 0, 0, 3, 5, 2])
    cols = torch.tensor([0, 1, 2, 3, 4, 4, 4, 1, 0, 2, 2])
    ref = info_nce(a[rows], b[cols], 0.3)
    got = grouped_info_nce(a, b, rows, cols, torch.bincount(cols, minlength=5), 0.3)
    assert torch.allclose(got, ref)
    for x, y in zip(torch.autograd.grad(ref, (a, b)), torch.autograd.grad(got, (a, b))):
        assert torch.allclose(x, y)
