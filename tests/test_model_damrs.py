import pytest
import torch
from torch.nn import functional as F

from external.models.damrs import DAMRS
from external.models.damrs.damrs import behaviour_graph, consistent_knn_graphs
from tests.helpers import (assert_branches_sum_to_score, assert_deterministic_training, assert_one_trainer_epoch,
                           assert_same_loss_and_grads, assert_training_lowers_loss, assert_views_agree, dense_graph,
                           dense_layer_mean, dense_sym_norm, model_factory, random_dataset,
                           scores_with_replaced_feature, single_thread_fixture, structured_dataset, train_steps,
                           triplet_batch)


_one_thread = single_thread_fixture()
_model = model_factory(DAMRS, factors=8, top_k=4, n_pseudo=3, lr=0.01, batch_size=64)


def _norm(adj):
    """MMRec compute_normalized_laplacian on a dense binary matrix (row degrees + 1e-7)."""
    return dense_sym_norm(adj, eps=1e-7)


def _reference_graphs(v, t, k, train, k_session=2):
    """MMRec ``get_knn_adj_mat`` (its per-item loop) and ``get_session_adj`` from build_iib_graph's counts."""
    vs, ts = F.normalize(v, dim=1) @ F.normalize(v, dim=1).T, F.normalize(t, dim=1) @ F.normalize(t, dim=1).T
    mask_v, mask_t = vs < vs.mean(), ts < ts.mean()
    vs, ts = vs.clone(), ts.clone()
    ts[mask_v], vs[mask_t], ts[mask_t], vs[mask_v] = 0, 0, 0, 0
    n = len(v)
    av, at = torch.zeros(n, n), torch.zeros(n, n)
    for i in range(n):
        num = min(len(torch.nonzero(ts[i])), k)
        av[i, torch.topk(vs[i], num).indices] = 1
        at[i, torch.topk(ts[i], num).indices] = 1
    r = torch.as_tensor(train.toarray())
    co = r.T @ r
    co.fill_diagonal_(0)
    co[co < 2] = 0
    s = torch.eye(n)
    for i in range(n):
        num = min(int((co[i] > 0).sum()), k_session)
        if num:
            vals, idx = torch.sort(co[i], descending=True, stable=True)
            s[i, idx[:num]] = 1
    return _norm(av), _norm(at), _norm(s)


def _reference_loss(model, batch, graphs):
    """MMRec ``DAMRS.forward`` + ``calculate_loss`` (image = visual, text = textual) with dense matrices."""
    nu = model.n_users
    allemb = dense_layer_mean(_norm(dense_graph(model._train)), model.embeddings, model.n_ui_layers)
    user_e, item_e = allemb[:nu], allemb[nu:]
    hs = []
    for g in graphs:  # v, t, s
        h = model.embeddings[nu:]
        for _ in range(model.n_layers):
            h = g @ h
        hs.append(h)
    h_v, h_t, h_s = hs
    users, pos, neg = batch.users, batch.pos_items, batch.neg_items
    u_id, i_id = torch.unique(users), torch.unique(torch.cat([pos, neg]))
    pred = [torch.softmax(F.normalize(h[i_id], dim=1) @ F.normalize(h, dim=1).T, 1) for h in (h_t, h_v, h_s)]
    lp_t, lp_v, lp_s = pred
    k = model.n_pseudo

    def pseudo(p1, p2, p3):
        mm = torch.topk(p1 + p2 + p3 + p3, k, dim=-1).indices
        return mm, torch.topk(p3.clone().scatter_(1, mm, 0), k, dim=-1).indices

    def nd(mm, sp, emb, aug):
        na, ne = F.normalize(aug, dim=1), F.normalize(emb, dim=1)
        mm_s = torch.exp((ne.unsqueeze(1) * na[mm]).sum(2) / 0.2).sum(1)
        s_s = torch.exp((ne.unsqueeze(1) * na[sp]).sum(2) / 0.2).sum(1)
        ttl = torch.exp(ne @ na.T / 0.2).sum(1)
        return (-torch.log(mm_s / ttl + 10e-10) - torch.log(s_s / (ttl - mm_s) + 10e-10)).mean()

    l1 = nd(*pseudo(lp_t, lp_v, lp_s), h_s[i_id], h_s)
    l2 = nd(*pseudo(lp_t, lp_s, lp_v), h_v[i_id], h_v)
    l3 = nd(*pseudo(lp_v, lp_s, lp_t), h_t[i_id], h_t)
    it = (h_t + h_s + h_v) / 3.0
    p_g = torch.sigmoid(user_e[u_id] @ F.normalize(item_e[i_id], dim=-1).T)
    p_t = torch.sigmoid(user_e[u_id] @ F.normalize(it[i_id], dim=-1).T)

    def kl(p1, p2):
        return p1 * torch.log(p1) - p1 * torch.log(p2) + (1 - p1) * torch.log(1 - p1) - (1 - p1) * torch.log(1 - p2)

    kl_loss = torch.mean(kl(p_g, p_t) + kl(p_t, p_g))
    ug = user_e[users]
    ps = torch.sigmoid(torch.stack([(ug * F.normalize(h[pos], dim=-1)).sum(1) for h in (h_t, h_s, h_v)]))
    ns = torch.sigmoid(torch.stack([(ug * F.normalize(h[neg], dim=-1)).sum(1) for h in (h_t, h_s, h_v)]))
    pm, nm = ps.mean(0).detach(), ns.mean().detach()
    pw = (pm * torch.exp(-ps.var(0).detach()).pow(2)).clamp(0, 1)
    nw = ((ps.max(0).values - nm) * (pm < nm).float()).clamp(0, 1).detach()
    ia = item_e + it
    sp, sn = (ug * ia[pos]).sum(1), (ug * ia[neg]).sum(1)
    mf = -torch.mean(torch.log(torch.sigmoid(sp - sn)) * pw + torch.log(torch.sigmoid(sn - sp)) * nw)
    return mf + model.neighbor_weight * (l1 + l2 + l3) / 3.0 + kl_loss * model.kl_weight


def _dense(graph):
    return graph.to_dense()


def test_graphs_match_the_reference_construction():
    ds = random_dataset(n_items=40, density=0.3)
    v, t = torch.as_tensor(ds.features["visual"]), torch.as_tensor(ds.features["textual"])
    ref = _reference_graphs(v, t, 4, ds.train)
    index_v, index_t = consistent_knn_graphs([v, t], 4, chunk_size=7)
    model = _model(ds)
    for got, want in zip(model.item_graphs, ref):
        assert torch.allclose(_dense(got), want, atol=1e-6)
    assert torch.equal(consistent_knn_graphs([v, t], 4)[0], index_v)  # chunking changes nothing
    assert index_t.shape[1] == index_v.shape[1]
    assert (behaviour_graph(ds.train, 2, 2)[0].bincount(minlength=40) >= 1).all()  # every item has its loop


@pytest.mark.parametrize("hp", [{}, {"n_layers": 2, "n_ui_layers": 1, "neighbor_weight": 0.5, "kl_weight": 0.3}])
def test_loss_and_gradients_match_dense_reference(hp):
    ds = random_dataset(density=0.3)
    model = _model(ds, **hp)
    model._train = ds.train
    graphs = [_dense(g) for g in model.item_graphs]
    batch = triplet_batch(ds)
    assert_same_loss_and_grads(model, batch, model.loss, lambda b: _reference_loss(model, b, graphs), atol=1e-6)


def test_training_lowers_loss():
    ds = random_dataset(density=0.3)
    assert_training_lowers_loss(_model(ds), triplet_batch(ds), 25)


def test_score_pairs_and_branches_agree_and_ignore_features():
    ds = random_dataset()
    model = _model(ds)
    train_steps(model, triplet_batch(ds), steps=3)
    users, items, _, pairs = assert_views_agree(model, ds)
    assert_branches_sum_to_score(model, users, items, pairs, {"id", "visual", "textual"})
    graphs = [_dense(g).clone() for g in model.item_graphs]
    attacked, _ = scores_with_replaced_feature(model, lambda: model.score_pairs(users, items))
    assert torch.equal(attacked, pairs)  # features reach only the frozen graphs
    assert all(torch.equal(_dense(g), old) for g, old in zip(model.item_graphs, graphs))


def test_deterministic_and_other_numbers_of_modalities():
    ds = random_dataset()
    batch = triplet_batch(ds)
    assert_deterministic_training(_model, ds, batch, steps=4)
    one = _model(ds, modalities=["textual"])
    assert len(one.item_graphs) == 2 and torch.isfinite(one.loss(batch))
    three = _model(random_dataset(modalities=("visual", "textual", "audio"), dims=(8, 6, 5)))
    assert len(three.item_graphs) == 4 and torch.isfinite(three.loss(batch))


def test_one_epoch_through_the_trainer():
    ds = structured_dataset()
    assert_one_trainer_epoch(_model(ds, batch_size=128), ds, batch_size=128)
