"""AMR (external.AMR) and the Modality-Balanced model variants (external.*_MB)."""
import pytest
import torch

from elliot.config.params import coerce_params, expand_grid
from elliot.errors import ConfigError
from elliot.evaluation.attacks import evaluate_attacks, validate_attacks
from elliot.recommender.base import TripletBatch
from elliot.recommender.registry import available_models
from elliot.training.defenses import validate_defense
from external.models.amr import AMR
from tests.helpers import random_dataset
from tests.robustness_helpers import train

DS = random_dataset(n_users=40, n_items=50, density=0.2, seed=6, dims=(8, 6))


def _amr(seed=0, **raw):
    raw = {"epochs": 4, "batch_size": 32, "factors": 8, "factors_d": 4, "lr": 0.01, **raw}
    hp = expand_grid(coerce_params(AMR.declared_params(), raw, "AMR"))[0]
    torch.manual_seed(seed)
    return AMR(DS, hp, torch.device("cpu"))


def _batch(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TripletBatch(users=torch.randint(0, DS.n_users, (n,), generator=g),
                        pos_items=torch.randint(0, DS.n_items, (n,), generator=g),
                        neg_items=torch.randint(0, DS.n_items, (n,), generator=g))


def test_hooks_and_scores_agree():
    model = _amr()
    users, items = torch.tensor([0, 3, 5, 5]), torch.tensor([1, 2, 2, 49])
    with torch.no_grad():
        full = model.score(users).gather(1, items.view(-1, 1)).squeeze(1)
        pairs = model.score_pairs(users, items)
        branches = model.modality_scores(users, items)
    assert torch.allclose(full, pairs, atol=1e-5)
    assert set(branches) == {"id", "visual", "textual"}
    assert torch.allclose(sum(branches.values()), pairs, atol=1e-5)


def test_adversarial_schedule_and_budgets():
    model = _amr(epochs=6, adversarial_epochs=2, eps=0.3, attack="fgsm")
    flags = []
    for epoch in range(6):
        model.on_epoch_start(epoch)
        flags.append(model.adversarial)
    assert flags == [False] * 4 + [True] * 2  # Elliot: the last `adversarial_epochs` epochs
    assert _amr(epochs=6).adv_start == 3  # default adversarial_epochs = epochs // 2
    deltas, uniq, _, _ = model.adversarial_deltas(_batch())
    for d in deltas:  # FGSM: ||Δ_i||_2 = eps for every item with a gradient
        norms = d.norm(dim=1)
        assert torch.allclose(norms[norms > 0], torch.full_like(norms[norms > 0], 0.3), rtol=1e-5)
    msap = _amr(attack="msap", nb_iter=4, eps=0.05)
    deltas, _, _, _ = msap.adversarial_deltas(_batch())
    assert all(float(d.abs().max()) <= 0.05 + 1e-7 for d in deltas)  # element-wise clip (Elliot's MSAP)
    rel = _amr(attack="fgsm", eps=0.1, eps_relative=True)
    deltas, uniq, _, _ = rel.adversarial_deltas(_batch())
    x = rel.feature("visual")[uniq]
    moved = deltas[0].norm(dim=1) > 0
    assert torch.allclose(deltas[0].norm(dim=1)[moved], 0.1 * x.norm(dim=1)[moved], rtol=1e-5)


def test_perturb_positives_leaves_negatives_clean():
    model = _amr(eps=0.5, perturb="positives")
    batch = _batch()
    deltas, uniq, inv_pos, inv_neg = model.adversarial_deltas(batch)
    clean_pos, clean_neg = model._triple_scores(batch, None, None, inv_pos, inv_neg, uniq)
    adv_pos, adv_neg = model._triple_scores(batch, deltas, None, inv_pos, inv_neg, uniq)
    assert torch.allclose(adv_neg, clean_neg) and not torch.allclose(adv_pos, clean_pos)
    both = _amr(eps=0.5, perturb="both")
    deltas, uniq, inv_pos, inv_neg = both.adversarial_deltas(batch)
    _, clean_neg = both._triple_scores(batch, None, None, inv_pos, inv_neg, uniq)
    _, adv_neg = both._triple_scores(batch, deltas, None, inv_pos, inv_neg, uniq)
    assert not torch.allclose(adv_neg, clean_neg)


def test_adversarial_training_runs_lowers_loss_and_keeps_features():
    model = _amr(epochs=6, adversarial_epochs=3, l_adv=1.0, attack="msap", nb_iter=2, eps=0.2)
    x = {m: model.feature(m).clone() for m in model.modalities}
    batch = _batch(64)
    model.on_epoch_start(5)
    first = float(model.loss(batch).detach())
    evaluator = train(model, DS, epochs=6)
    model.on_epoch_start(5)
    assert float(model.loss(batch).detach()) < first
    assert model.last_adv_loss is not None
    assert all(torch.equal(x[m], model.feature(m)) for m in model.modalities)
    attacks = validate_attacks(model.perturbation_attacks())
    assert [a["method"] for a in attacks] == ["fgsm_l2", "msap"] and attacks[1]["step"] == "l2"
    records = evaluate_attacks(model, DS, evaluator, model.perturbation_attacks(),
                               clean=evaluator.evaluate(model, "test"), seed=0)
    assert {r["name"] for r in records} == {"amr_fgsm-all-abs0.2", "amr_msap-all-abs0.2"}


def test_balanced_variants_are_registered_and_add_the_balance_term():
    models = available_models()
    assert "external.AMR" in models and "external.VBPR_MB" in models
    cls = models["external.VBPR_MB"]
    raw = {"epochs": 1, "batch_size": 32, "factors": 8, "factors_d": 4, "robust_modality": "textual", "N": 8,
           "pgd_steps": 2}
    hp = expand_grid(coerce_params(cls.declared_params(), raw, "VBPR_MB"))[0]
    assert hp["fusion"] == "per_modality" and hp["lambda"] == 0.01  # MB needs per-modality branches
    torch.manual_seed(0)
    balanced = cls(DS, hp, torch.device("cpu"))
    base_hp = {k: v for k, v in hp.items() if k in {p.name for p in models["external.VBPR"].declared_params()}}
    torch.manual_seed(0)
    plain = models["external.VBPR"](DS, base_hp, torch.device("cpu"))
    batch = _batch()
    assert float(balanced.loss(batch).detach()) > float(plain.loss(batch).detach()) - 1e-7
    assert not torch.equal(balanced.loss(_batch(seed=1)), plain.loss(_batch(seed=1)))
    with pytest.raises(ConfigError, match="already trains with Modality Balancing"):
        validate_defense({"method": "modality_balancing"}, None, cls, "experiment.models.external.VBPR_MB")
