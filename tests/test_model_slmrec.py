import pytest
import torch

from elliot.recommender.base import TripletBatch
from external.models.slmrec import SLMRec
from tests.helpers import random_dataset

D = 8


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: thread hand-offs cost more than the work on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(ds, seed=0, **hp):
    params = {p.name: p.default for p in SLMRec.declared_params()}
    params.update({"factors": D, "n_layers": 2, "lr": 0.01}, **hp)
    torch.manual_seed(seed)
    return SLMRec(ds, params, torch.device("cpu"))


def _batch(ds, n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    coo = ds.train.tocoo()
    pick = torch.randint(0, coo.nnz, (n,), generator=g)
    return TripletBatch(users=torch.as_tensor(coo.row, dtype=torch.long)[pick],
                        pos_items=torch.as_tensor(coo.col, dtype=torch.long)[pick],
                        neg_items=torch.randint(0, ds.n_items, (n,), generator=g))


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
    users = torch.arange(ds.n_users)
    items = torch.randint(0, ds.n_items, (ds.n_users,))
    with torch.no_grad():
        full = model.score(users)
        assert full.shape == (ds.n_users, ds.n_items) and torch.isfinite(full).all()
        model.prepare_scoring()
        cached = model.score(users)
        model.end_scoring()
        pairs = model.score_pairs(users, items)
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
