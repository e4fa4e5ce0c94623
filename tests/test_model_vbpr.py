import pytest
import torch

from external.models.vbpr import VBPR
from tests.helpers import model_factory, random_dataset, scoring_views, triplet_batch

FUSIONS = ["concat", "per_modality"]


_model = model_factory(VBPR, factors=8, factors_d=6, lr=0.01, l_b=1e-3)


_batch = triplet_batch


@pytest.mark.parametrize("fusion", FUSIONS)
def test_training_lowers_loss(fusion):
    ds = random_dataset()
    model = _model(ds, fusion=fusion)
    opt = model.make_optimizer()
    batch = _batch(ds)
    first = model.loss(batch).item()
    for _ in range(30):
        opt.zero_grad()
        loss = model.loss(batch)
        loss.backward()
        opt.step()
    assert torch.isfinite(loss)
    assert model.loss(batch).item() < first
    assert model.E[0].grad is not None and model.E[0].grad.abs().sum() > 0


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("normalize", [True, False])
def test_score_and_pairs_agree(fusion, normalize):
    ds = random_dataset()
    model = _model(ds, fusion=fusion, normalize=normalize)
    users, items, full, cached, pairs = scoring_views(model, ds)
    assert torch.allclose(full, cached)
    assert torch.allclose(pairs, full.gather(1, items.view(-1, 1)).squeeze(1), atol=1e-5)


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("normalize", [True, False])
def test_branch_scores_sum_to_fused_score(fusion, normalize):
    ds = random_dataset()
    model = _model(ds, fusion=fusion, normalize=normalize)
    with torch.no_grad():  # make biases non-trivial
        model.item_factors[:, -1].normal_()
    users, items = torch.arange(10), torch.arange(10, 20)
    emb = model.modality_embeddings(users, items)
    expected = {"id", "multimodal"} if fusion == "concat" else {"id", "visual", "textual"}
    assert set(emb) == expected
    assert emb["id"][0].shape == (10, 9) and emb["id"][1].shape == (10, 9)
    for branch in expected - {"id"}:
        assert emb[branch][0].shape == (10, 7) and emb[branch][1].shape == (10, 7)
    total = sum(model.modality_scores(users, items).values())
    assert torch.allclose(total, model.score_pairs(users, items), atol=1e-5)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_gradients_reach_replaced_features(fusion):
    ds = random_dataset()
    model = _model(ds, fusion=fusion)
    stored = model.feature("visual").clone()
    users, items = torch.arange(5), torch.arange(5)
    delta = torch.zeros_like(stored, requires_grad=True)
    with model.features_replaced({"visual": stored + delta}):
        model.score_pairs(users, items).sum().backward()
    assert delta.grad is not None and delta.grad[:5].abs().sum() > 0
    assert delta.grad[5:].abs().sum() == 0  # only the scored items' features matter
    branch = "multimodal" if fusion == "concat" else "visual"
    delta2 = torch.zeros_like(stored, requires_grad=True)
    with model.features_replaced({"visual": stored + delta2}):
        scores = model.modality_scores(users, items)[branch]
        scores.sum().backward()
    assert delta2.grad[:5].abs().sum() > 0
    assert torch.equal(model.feature("visual"), stored)
    # the replacement is really used
    with torch.no_grad(), model.features_replaced({"visual": stored * 3}):
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
    model = _model(ds, modalities=["textual"], fusion="per_modality")
    assert set(model.modality_embeddings(torch.arange(3), torch.arange(3))) == {"id", "textual"}
    assert model.score(torch.arange(3)).shape == (3, ds.n_items)


def test_concat_matches_the_paper_formula():
    ds = random_dataset()
    model = _model(ds, normalize=False)
    with torch.no_grad():
        model.item_factors[:, -1].normal_()
        f = torch.cat([model.feature("visual"), model.feature("textual")], 1)
        k = model.factors
        gamma_u, theta_u = model.user_factors[:, :k], model.user_factors[:, k:]
        gamma_i, beta_i = model.item_factors[:, :k], model.item_factors[:, k]
        E, beta_p = model.E[0][:, :-1], model.E[0][:, -1]
        expected = beta_i + gamma_u @ gamma_i.T + theta_u @ (f @ E).T + f @ beta_p
        assert torch.allclose(model.score(torch.arange(ds.n_users)), expected, atol=1e-5)
