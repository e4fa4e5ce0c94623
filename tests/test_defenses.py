"""Defenses: disabled = bit-identical training, Modality Balancing, CRMT (both steps), Mirror Gradient, config errors."""
import math

import pytest
import torch

from elliot.errors import ConfigError
from elliot.recommender.base import TripletBatch
from elliot.recommender.baselines import BPRMF, MostPop
from elliot.training.defenses import build_addons, finalize, validate_defense
from elliot.evaluation.certified import certified_radius, lipschitz, margins
from elliot.training.defenses.crmt import CRMTRegulariser, IntegratedModel
from elliot.training.defenses.mirror_gradient import MirrorGradient
from elliot.training.defenses.modality_balancing import ModalityBalancing
from tests.helpers import random_dataset
from tests.robustness_helpers import TinyVBPR, make_model, train

DS = random_dataset(n_users=40, n_items=50, density=0.2, seed=4, dims=(8, 6))
MB = {"method": "modality_balancing", "sensitive_modality": "visual", "robust_modality": "textual", "N": 8,
      "pgd_steps": 3}


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _batch(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TripletBatch(users=torch.randint(0, DS.n_users, (n,), generator=g),
                        pos_items=torch.randint(0, DS.n_items, (n,), generator=g),
                        neg_items=torch.randint(0, DS.n_items, (n,), generator=g))


def test_disabled_defense_trains_bit_for_bit_like_no_block():
    plain = make_model(DS, seed=3)
    train(plain, DS, epochs=3, seed=3)
    off = make_model(DS, seed=3)
    addons = build_addons(off, DS, defense={**MB, "enable": False},
                          training={"mirror_gradient": {"enable": False, "alpha2": 0.3}}, seed=3)
    assert addons == []
    train(off, DS, epochs=3, seed=3, addons=addons)
    a, b = _weights(plain), _weights(off)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_building_enabled_addons_does_not_touch_the_global_rng():
    model = make_model(DS, seed=0)
    state = torch.get_rng_state()
    build_addons(model, DS, defense=[MB, {"method": "crmt"}], training={"mirror_gradient": {}}, seed=0)
    assert torch.equal(state, torch.get_rng_state())


def test_modality_balancing_distillation_and_loss():
    model = make_model(DS, seed=0)
    (mb,) = build_addons(model, DS, defense={**MB, "distill_eps": 0.3}, seed=0)
    assert isinstance(mb, ModalityBalancing) and (mb.sensitive, mb.robust) == ("visual", "textual")
    batch = _batch()
    x = model.feature("visual").clone()
    _, ei = model.modality_embeddings(batch.users, batch.neg_items)["visual"]
    adv = mb.distill(model, batch.users, batch.pos_items, ei.detach())
    diff = (adv - x).abs()
    assert float(diff.max()) <= 0.3 + 1e-6  # L∞ projection in feature space
    untouched = torch.ones(DS.n_items, dtype=torch.bool)
    untouched[batch.pos_items] = False
    assert float(diff[untouched].max()) == 0  # only the positives' features are distilled
    extra = mb.extra_loss(model, batch, 0)
    assert extra is not None and torch.isfinite(extra) and float(extra.detach()) >= 0
    model.zero_grad()
    (extra + 1.0 * model.loss(batch)).backward()
    assert model.E["visual"].grad is not None and model.theta["textual"].grad is not None
    assert torch.equal(model.feature("visual"), x)  # stored features never change


def test_enabled_modality_balancing_changes_training_but_not_features():
    plain = make_model(DS, seed=1)
    train(plain, DS, epochs=2, seed=1)
    model = make_model(DS, seed=1)
    x = model.feature("visual").clone()
    train(model, DS, epochs=2, seed=1, addons=build_addons(model, DS, defense={**MB, "lambda": 1.0}, seed=1))
    assert not torch.equal(plain.E["visual"], model.E["visual"])
    assert torch.equal(model.feature("visual"), x)


def test_crmt_regulariser_value():
    model = make_model(DS, seed=0)
    batch = _batch()
    reg = CRMTRegulariser(rho=2.0).extra_loss(model, batch, 0)
    n = len(batch.users)
    s = model.modality_scores(torch.cat([batch.users, batch.users]), torch.cat([batch.pos_items, batch.neg_items]))
    deltas = torch.stack([s[m][:n] - s[m][n:] for m in ("visual", "textual")])
    expected = 2.0 * torch.log(torch.exp(-deltas).sum(0)).mean()
    assert torch.allclose(reg, expected, atol=1e-6)


def test_crmt_step2_integrated_model_is_consistent():
    model = make_model(DS, seed=0)
    addons = build_addons(model, DS, defense={"method": "crmt", "integration_sample": 64, "integration_steps": 30},
                          seed=0)
    train(model, DS, epochs=2, seed=0, addons=addons)
    wrapped = finalize(model, DS, addons)
    assert isinstance(wrapped, IntegratedModel)
    w = wrapped.weights
    assert (w >= 0).all() and torch.isclose(w.sum(), torch.tensor(2.0))
    users = torch.arange(6)
    with torch.no_grad():
        full = wrapped.score(users)
        items = torch.arange(DS.n_items)
        pairs = wrapped.score_pairs(users.repeat_interleave(DS.n_items), items.repeat(6)).view(6, -1)
        assert torch.allclose(full, pairs, atol=1e-5)
        ones = IntegratedModel(model, {"visual": 1.0, "textual": 1.0})
        assert torch.allclose(ones.score(users), model.score(users), atol=1e-5)
    stats = certified_radius(wrapped, DS, sample_size=32, seed=0)
    assert stats["a_visual"] == pytest.approx(float(w[0]))


def test_certified_radius_is_tight_for_linear_branches():
    """For linear per-modality branches the bound is exact: the worst-case perturbation of norm r
    (Cauchy–Schwarz equality) brings the margin to zero; 0.99 r keeps i above j, 1.01 r does not."""
    model = make_model(DS, seed=2)
    train(model, DS, epochs=4, seed=2)
    u, i, j = torch.tensor([3, 7, 11]), torch.tensor([1, 5, 9]), torch.tensor([20, 30, 40])
    with torch.no_grad():
        fused, deltas = margins(model, u, i, j)
    k = int(torch.argmax(fused))
    assert fused[k] > 0
    tau_i, tau_j = lipschitz(model, u[k:k + 1], i[k:k + 1], ["visual", "textual"]), \
        lipschitz(model, u[k:k + 1], j[k:k + 1], ["visual", "textual"])
    den = math.sqrt(sum(float(tau_i[m] ** 2 + tau_j[m] ** 2) for m in ("visual", "textual")))
    r = float(fused[k]) / den
    # worst direction: δ_i^m ∝ -∇_{x_i^m} s^m(u,i), δ_j^m ∝ +∇_{x_j^m} s^m(u,j), all scaled by 1/den
    grads = {}
    for m in ("visual", "textual"):
        leaf = torch.zeros_like(model.feature(m)).requires_grad_(True)
        with model.features_replaced({m: model.feature(m) + leaf}):
            s = model.modality_scores(u[k:k + 1].repeat(2), torch.stack([i[k], j[k]]))[m]
        gi, = torch.autograd.grad(s[0], leaf, retain_graph=True)
        gj, = torch.autograd.grad(s[1], leaf)
        grads[m] = (gi, gj)
    for factor, sign in ((0.99, 1), (1.01, -1)):
        rep = {m: model.feature(m) + factor * r / den * (-gi + gj) for m, (gi, gj) in grads.items()}
        with torch.no_grad(), model.features_replaced(rep):
            margin = model.score_pairs(u[k:k + 1], i[k:k + 1]) - model.score_pairs(u[k:k + 1], j[k:k + 1])
        assert float(margin) * sign > 0


def test_mirror_gradient_steps():
    model = make_model(DS, seed=0)
    (mg,) = build_addons(model, DS, training={"mirror_gradient": {"alpha1": 1.0, "alpha2": 0.2, "interval": 2}},
                         seed=0)
    assert isinstance(mg, MirrorGradient) and mg.beta == 2
    train(model, DS, epochs=2, seed=0, addons=[mg], batch_size=32)
    batches = -(-DS.train.nnz // 32)
    assert mg.mirror_steps == 2 * -(-batches // 2)
    plain = make_model(DS, seed=0)
    train(plain, DS, epochs=2, seed=0, batch_size=32)
    assert not torch.equal(plain.gu, model.gu)


@pytest.mark.parametrize("defense, training, cls, message", [
    ({"method": "modality_balance"}, None, TinyVBPR, "did you mean 'modality_balancing'"),
    ({"method": "modality_balancing", "lamda": 0.1}, None, TinyVBPR, "did you mean 'lambda'"),
    ({"method": "crmt", "rho": -1}, None, TinyVBPR, "must be >= 0"),
    ({"method": "crmt", "N": 2.5}, None, TinyVBPR, "not an integer"),
    ({"enable": "yes"}, None, TinyVBPR, "not true/false"),
    (MB, None, BPRMF, "not a multimodal model"),
    (None, {"mirror_gradien": {}}, BPRMF, "did you mean 'mirror_gradient'"),
    (None, {"mirror_gradient": {"alpha3": 1}}, BPRMF, "did you mean 'alpha"),
    (None, {"mirror_gradient": {"beta": 2, "interval": 3}}, BPRMF, "not both"),
    (None, {"mirror_gradient": {"beta": 0}}, BPRMF, "must be > 0"),
    (None, {"mirror_gradient": {"enable": True}}, MostPop, "not trained"),
])
def test_validate_defense_errors(defense, training, cls, message):
    with pytest.raises(ConfigError, match=message) as info:
        validate_defense(defense, training, cls, "experiment.models.M")
    assert "\n" not in str(info.value)


def test_unknown_modality_is_reported_at_build_time():
    model = make_model(DS, seed=0)
    with pytest.raises(ConfigError, match="sensitive_modality: 'audio'"):
        build_addons(model, DS, defense={**MB, "sensitive_modality": "audio"}, seed=0)
    (mb,) = build_addons(model, DS, defense={"method": "modality_balancing"}, seed=0)
    assert (mb.sensitive, mb.robust) == ("visual", "textual")  # defaults: visual vs the first other branch
    defenses, options = validate_defense({"method": "crmt"}, {"mirror_gradient": True}, TinyVBPR, "m")
    assert defenses[0]["rho"] == 2.0 and options["mirror_gradient"] == {"enable": True, "alpha1": 1.0,
                                                                         "alpha2": 0.1, "beta": 3}
