import numpy as np
import pytest
import torch
from torch.nn import functional as F

from external.models.grcn import GRCN
from external.models.grcn.grcn import _Attention, _Bipartite, _normalize, _segment_softmax
from tests.helpers import model_factory, random_dataset, scoring_views, single_thread_fixture, triplet_batch

VARIANTS = [
    {},  # defaults: confid weights, pruning, add aggregation, the released code's routing
    {"weight_mode": "max", "aggr_mode": "mean", "has_act": True, "routing": "paper"},  # 3 routing iterations
    {"weight_mode": "mean", "pruning": False, "num_routing": 0, "n_layers": 1},
]


_single_thread = single_thread_fixture()
_model = model_factory(GRCN, factors=8, dim_latent=6, lr=0.01, l_w=1e-3)


_batch = triplet_batch


def _dense_reference(model, ds):
    """GRCN's forward pass written with dense (users x items) masks, modality by modality."""
    mask = torch.as_tensor(ds.train.toarray() > 0)
    nu = ds.n_users

    def masked_softmax(s, dim):
        out = torch.softmax(s.masked_fill(~mask, float("-inf")), dim=dim)
        return torch.nan_to_num(out) * mask

    users, items, to_user, to_item = [], [], [], []
    for b, m in enumerate(model.modalities):
        f = F.normalize(F.leaky_relu(model.mlp[b](model.feature(m))), dim=1)
        p = F.normalize(model.preference[b], dim=1)
        for _ in range(model.num_routing if model.routing == "paper" else 0):
            p = F.normalize(p + masked_softmax(p @ f.T, 1) @ f, dim=1)
        au, ai = masked_softmax(p @ f.T, 1), masked_softmax(p @ f.T, 0)
        hu, hi = au @ f, ai.T @ p
        if model.has_act:
            hu, hi = F.leaky_relu(hu), F.leaky_relu(hi)
        users.append(p + hu)
        items.append(f + hi)
        to_user.append(au)
        to_item.append(ai)
    au, ai = torch.stack(to_user), torch.stack(to_item)  # (M, U, I)
    if model.weight_mode == "mean":
        wu, wi = au.mean(0), ai.mean(0)
    elif model.weight_mode == "max":
        wu, wi = au.max(0).values, ai.max(0).values
    else:
        conf_u, conf_i = model.confidence[:nu], model.confidence[nu:]
        wu = (au * conf_i.T.unsqueeze(1)).max(0).values  # item -> user message scaled by the item's confidence
        wi = (ai * conf_u.T.unsqueeze(2)).max(0).values  # user -> item message scaled by the user's confidence
    wu, wi = wu * mask, wi * mask
    if model.pruning:
        wu, wi = F.relu(wu), F.relu(wi)
    x = F.normalize(model.id_embedding, dim=1)
    xu, xi = x[:nu], x[nu:]
    out_u, out_i = xu, xi
    deg_u = mask.sum(1, keepdim=True).clamp(min=1)
    deg_i = mask.sum(0).unsqueeze(1).clamp(min=1)
    for _ in range(model.n_layers):
        hu, hi = wu @ xi, wi.T @ xu
        if model.aggr_mode == "mean":
            hu, hi = hu / deg_u, hi / deg_i
        if model.has_act:
            hu, hi = F.leaky_relu(hu), F.leaky_relu(hi)
        xu, xi = hu, hi
        out_u, out_i = out_u + xu, out_i + xi
    return [out_u] + users, [out_i] + items


@pytest.mark.parametrize("variant", VARIANTS)
def test_matches_dense_reference(variant):
    ds = random_dataset()
    model = _model(ds, **variant)
    with torch.no_grad():
        model.confidence.normal_()  # make pruning bite
        users, items = model.branches()
        ref_users, ref_items = _dense_reference(model, ds)
    for a, b in zip(users + items, ref_users + ref_items):
        assert torch.allclose(a, b, atol=1e-5)


def _reference_loss(model, users, items, batch):
    """The model's loss written out from per-branch representations (the original formulation)."""
    from elliot.recommender.base import bpr_loss

    u = torch.cat([x[batch.users] for x in users], 1)
    pos = (u * torch.cat([x[batch.pos_items] for x in items], 1)).sum(-1)
    neg = (u * torch.cat([x[batch.neg_items] for x in items], 1)).sum(-1)
    rows = torch.cat([batch.pos_items, batch.neg_items]) + model.n_users
    reg = model.id_embedding[batch.users].pow(2).mean() + model.id_embedding[rows].pow(2).mean()
    for pref in model.preference:
        reg = reg + pref[batch.users].pow(2).mean()
    return bpr_loss(pos, neg) + model.l_w * reg


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradients_match_dense_reference(variant):
    """The fused kernels' backward passes against plain autograd through the dense formulation."""
    ds = random_dataset()
    model = _model(ds, **variant)
    with torch.no_grad():
        model.confidence.normal_()
    batch = _batch(ds)
    loss = model.loss(batch)
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    ref = _reference_loss(model, *_dense_reference(model, ds), batch)
    ref_grads = torch.autograd.grad(ref, list(model.parameters()), allow_unused=True)
    assert torch.allclose(loss, ref, atol=1e-6)
    for (name, _), a, b in zip(model.named_parameters(), grads, ref_grads):
        assert (a is None) == (b is None), name  # confidences are used by weight_mode confid only
        assert a is None or torch.allclose(a, b, rtol=1e-4, atol=1e-7), name


def test_attention_matches_segment_softmax():
    """The fused, shift-free attention step against the max-shifted segment softmax and autograd."""
    ds = random_dataset(n_users=12, n_items=15, density=0.3)
    g = _Bipartite(ds.train, torch.device("cpu"), copies=2)  # block-diagonal: two modalities
    g.pattern = g.pattern.to(torch.float64)
    gen = torch.Generator().manual_seed(0)
    p0 = torch.randn(g.n_users, 5, dtype=torch.float64, generator=gen).requires_grad_()
    f0 = torch.randn(g.n_items, 5, dtype=torch.float64, generator=gen).requires_grad_()

    def fused(p, f):
        return _Attention.apply(g, _normalize(p), _normalize(f), True)

    def reference(p, f):
        p, f = F.normalize(p, dim=1), F.normalize(f, dim=1)
        s = (p[g.users] * f[g.items]).sum(-1)
        a_u, a_i = _segment_softmax(s, g.users, g.n_users), _segment_softmax(s, g.items, g.n_items)
        hu = torch.zeros_like(p).index_add_(0, g.users, a_u[:, None] * f[g.items])
        hi = torch.zeros_like(f).index_add_(0, g.items, a_i[:, None] * p[g.users])
        return a_u, hu, a_i, hi

    for a, b in zip(fused(p0, f0), reference(p0, f0)):
        assert torch.allclose(a, b, atol=1e-12)
    weights = [torch.randn(t.shape, dtype=torch.float64, generator=gen) for t in reference(p0, f0)]

    def grads(fn):
        return torch.autograd.grad(sum((w * t).sum() for w, t in zip(weights, fn(p0, f0))), (p0, f0))

    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(grads(fused), grads(reference)))
    assert torch.autograd.gradcheck(lambda p, f: fused(p, f), (p0, f0))
    route = lambda p, f: _Attention.apply(g, _normalize(p), _normalize(f), False)  # noqa: E731
    assert torch.autograd.gradcheck(route, (p0, f0))


def test_normalize_matches_functional():
    x = torch.randn(7, 4, dtype=torch.float64)
    x[3] = 0.0  # the eps branch
    x.requires_grad_()
    w = torch.randn(7, 4, dtype=torch.float64)
    a = _normalize(x)
    ga, = torch.autograd.grad((a * w).sum(), x)
    b = F.normalize(x, dim=1)
    gb, = torch.autograd.grad((b * w).sum(), x)
    assert torch.allclose(a, b) and torch.allclose(ga, gb)
    assert torch.autograd.gradcheck(_normalize, (torch.randn(5, 3, dtype=torch.float64, requires_grad=True),))


def test_edge_kernels_gradcheck():
    ds = random_dataset(n_users=8, n_items=9, density=0.3)
    g = _Bipartite(ds.train, torch.device("cpu"))
    g.pattern = g.pattern.to(torch.float64)
    e = len(g.users)
    p = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
    f = torch.randn(9, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(e, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: g.dot(a, b), (p, f))
    assert torch.autograd.gradcheck(lambda a, b: g.to_users(a, b), (w, f))
    assert torch.autograd.gradcheck(lambda a, b: g.to_items(a, b), (w, p))
    assert torch.allclose(g.dot(p, f), (p[g.users] * f[g.items]).sum(-1))


@pytest.mark.parametrize("variant", VARIANTS)
def test_training_lowers_loss(variant):
    ds = random_dataset()
    model = _model(ds, **variant)
    opt = model.make_optimizer()
    batch = _batch(ds)
    first = model.loss(batch).item()
    for _ in range(25):
        opt.zero_grad()
        loss = model.loss(batch)
        loss.backward()
        opt.step()
    assert torch.isfinite(loss)
    assert model.loss(batch).item() < first
    assert model.id_embedding.grad.abs().sum() > 0
    assert all(lin.weight.grad.abs().sum() > 0 for lin in model.mlp)


@pytest.mark.parametrize("variant", VARIANTS)
def test_score_and_pairs_agree(variant):
    ds = random_dataset()
    model = _model(ds, **variant)
    users, items, full, cached, pairs = scoring_views(model, ds)
    assert torch.allclose(full, cached)
    assert torch.allclose(pairs, full.gather(1, items.view(-1, 1)).squeeze(1), atol=1e-5)


def test_branch_scores_sum_to_fused_score():
    ds = random_dataset()
    model = _model(ds)
    users, items = torch.arange(10), torch.arange(10, 20)
    emb = model.modality_embeddings(users, items)
    assert set(emb) == {"id", "visual", "textual"}
    assert emb["id"][0].shape == (10, 8) and emb["id"][1].shape == (10, 8)
    assert emb["visual"][0].shape == (10, 6) and emb["textual"][1].shape == (10, 6)
    total = sum(model.modality_scores(users, items).values())
    assert torch.allclose(total, model.score_pairs(users, items), atol=1e-5)


def test_pruned_weights_are_non_negative():
    ds = random_dataset()
    model = _model(ds)
    with torch.no_grad():
        _, _, to_user, to_item, _ = model._refine()
        w_user, w_item = model._edge_weights(to_user, to_item)
    assert (w_user >= 0).all() and (w_item >= 0).all()
    assert (w_user == 0).any()  # xavier-initialised confidences are negative for some nodes


def test_gradients_reach_replaced_features():
    ds = random_dataset()
    model = _model(ds)
    stored = model.feature("visual").clone()
    users, items = torch.arange(5), torch.arange(5)
    delta = torch.zeros_like(stored, requires_grad=True)
    with model.features_replaced({"visual": stored + delta}):
        model.score_pairs(users, items).sum().backward()
    assert delta.grad is not None and delta.grad.abs().sum() > 0
    assert torch.equal(model.feature("visual"), stored)
    delta2 = torch.zeros_like(stored, requires_grad=True)
    with model.features_replaced({"visual": stored + delta2}):
        scores = model.modality_scores(users, items)
        scores["textual"].sum().backward(retain_graph=True)
        assert delta2.grad is None or delta2.grad.abs().sum() == 0  # the textual branch never sees visual
        scores["id"].sum().backward(retain_graph=True)  # the refined ID graph does
        assert delta2.grad.abs().sum() > 0
        scores["visual"].sum().backward()
    with torch.no_grad(), model.features_replaced({"visual": stored * 3 + 1}):
        changed = model.score_pairs(users, items)
    assert not torch.allclose(changed, model.score_pairs(users, items))


def test_deterministic_with_seed():
    ds = random_dataset()
    outs = []
    for _ in range(2):
        model = _model(ds, seed=7)
        opt = model.make_optimizer()
        for step in range(3):
            opt.zero_grad()
            model.loss(_batch(ds, seed=step)).backward()
            opt.step()
        with torch.no_grad():
            outs.append(model.score(torch.arange(ds.n_users)))
    assert torch.equal(outs[0], outs[1])


def test_single_modality_subset():
    ds = random_dataset()
    model = _model(ds, modalities=["textual"])
    assert set(model.modality_embeddings(torch.arange(3), torch.arange(3))) == {"id", "textual"}
    assert model.score(torch.arange(3)).shape == (3, ds.n_items)
    assert np.isfinite(model.loss(_batch(ds)).item())


def test_default_routing_is_the_released_codes():
    """The released code's (and MMRec's) routing never reaches the users: with the default ``routing``,
    ``num_routing`` changes nothing and the prototypes are the normalised preferences; ``routing: paper``
    updates them."""
    ds = random_dataset()
    routed = _model(ds, num_routing=3)
    plain = _model(ds, num_routing=0)
    paper = _model(ds, num_routing=3, routing="paper")
    plain.load_state_dict(routed.state_dict())
    paper.load_state_dict(routed.state_dict())
    with torch.no_grad():
        users, items = routed.branches()
        users0, items0 = plain.branches()
        users_p, _ = paper.branches()
        for a, b in zip(users + items, users0 + items0):
            assert torch.equal(a, b)
        assert not torch.allclose(users[1], users_p[1], atol=1e-4)
        b = 0  # released formula for the first modality: u = L2norm(P) + softmax_u(L2norm(P) . f) f
        f = F.normalize(F.leaky_relu(routed.mlp[b](routed.feature(routed.modalities[b]))), dim=1)
        p = F.normalize(routed.preference[b], dim=1)
        mask = torch.as_tensor(ds.train.toarray() > 0)
        au = torch.nan_to_num(torch.softmax((p @ f.T).masked_fill(~mask, float("-inf")), 1)) * mask
        assert torch.allclose(users[1], p + au @ f, atol=1e-5)
