"""Test-time feature attacks: budgets, effect, gradient isolation, records, tables, config validation."""
import math

import numpy as np
import pytest
import torch

from elliot.errors import ConfigError
from elliot.evaluation.attacks import (DEFAULT_ATTACK, FeatureAttack, check_attackable, evaluate_attacks, fgsm, msap,
                                       sample_triples, validate_attacks)
from elliot.recommender.baselines import BPRMF
from elliot.results.robustness import write_attack_tables
from tests.helpers import random_dataset
from tests.robustness_helpers import TinyVBPR, make_model, train


@pytest.fixture(scope="module")
def trained():
    ds = random_dataset(n_users=50, n_items=70, density=0.2, seed=3, dims=(8, 6))
    model = make_model(ds, seed=1)
    evaluator = train(model, ds, epochs=8)
    return ds, model, evaluator


def _margins(model, triples):
    u, i, j = (torch.as_tensor(a) for a in triples)
    with torch.no_grad():
        return model.score_pairs(u, i), model.score_pairs(u, j)


# ---- budgets -------------------------------------------------------------------------------------------
def test_l2_and_linf_budgets_are_exact(trained):
    ds, model, _ = trained
    attack = FeatureAttack(model, ["visual", "textual"], sample_triples(ds, None, 0))
    l2, = fgsm(attack, "ratio", [0.1], "l2")
    linf, = fgsm(attack, "ratio", [0.1], "linf")
    for m in ("visual", "textual"):
        x = attack.clean[m]
        eps = 0.1 * x.norm(dim=1)
        moved = l2[m].norm(dim=1) > 0
        assert moved.sum() > 0.9 * len(x)  # every item reached by a triple is perturbed
        assert torch.allclose(l2[m].norm(dim=1)[moved], eps[moved], rtol=1e-5)  # ||δ_i||_2 = ε_i
        eps_inf = eps / math.sqrt(x.shape[1])
        assert torch.allclose(linf[m].abs().amax(1)[moved], eps_inf[moved], rtol=1e-5)  # ||δ_i||_∞ = ε_i
    for projection in ("l2", "linf"):
        d = msap(attack, "ratio", 0.1, projection, "sign" if projection == "linf" else "l2", 4, None)
        for m, x in attack.clean.items():
            if projection == "l2":
                assert (d[m].norm(dim=1) <= 0.1 * x.norm(dim=1) * (1 + 1e-6) + 1e-9).all()
            else:
                assert (d[m].abs() <= (0.1 * x.norm(dim=1, keepdim=True) / math.sqrt(x.shape[1])) * (1 + 1e-6)).all()
    absolute = msap(attack, "abs", 0.05, "linf", "l2", 3, None)  # Elliot's MSAP: L2 steps, element clip
    assert all(float(d.abs().max()) <= 0.05 + 1e-7 for d in absolute.values())


def test_attack_lowers_scores_of_positives(trained):
    ds, model, _ = trained
    triples = sample_triples(ds, None, 0)
    pos0, neg0 = _margins(model, triples)
    attack = FeatureAttack(model, ["visual", "textual"], triples)
    for deltas in fgsm(attack, "ratio", [0.05, 0.2], "l2") + [msap(attack, "ratio", 0.2, "l2", "l2", 5, None)]:
        with model.features_replaced({m: attack.clean[m] + d for m, d in deltas.items()}):
            pos1, neg1 = _margins(model, triples)
        assert (pos1 - neg1).mean() < (pos0 - neg0).mean()  # the BPR margin shrinks
        assert pos1.mean() < pos0.mean()  # positives are scored lower
    loss0, _ = attack.loss_and_grad({m: torch.zeros_like(x) for m, x in attack.clean.items()})
    loss1, _ = attack.loss_and_grad(msap(attack, "ratio", 0.2, "linf", "sign", 5, None))
    assert loss1 > loss0


# ---- isolation -----------------------------------------------------------------------------------------
def test_attack_changes_neither_parameters_nor_features(trained):
    ds, model, evaluator = trained
    before = {k: v.clone() for k, v in model.state_dict().items()}
    feats = {m: model.feature(m).clone() for m in model.modalities}
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    clean = evaluator.evaluate(model, "test")
    clean_copy = {k: dict(v) for k, v in clean.values.items()}
    records = evaluate_attacks(model, ds, evaluator, [{"method": "fgsm_l2", "modality": "each"},
                                                      {"method": "msap", "projection": "l2", "nb_iter": 3}],
                               clean=clean, seed=5)
    assert records
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    for p, g in zip(model.parameters(), grads):  # no gradient accumulated into any parameter
        assert (p.grad is None and g is None) or torch.equal(p.grad, g)
    assert all(torch.equal(feats[m], model.feature(m)) for m in model.modalities)
    assert model._feature_overrides == {}  # the replacement is released
    assert clean.values == clean_copy  # clean metrics untouched
    again = evaluator.evaluate(model, "test")
    assert again.values == clean.values


def test_records_names_sweep_and_drop(trained):
    ds, model, evaluator = trained
    clean = evaluator.evaluate(model, "test")
    records = evaluate_attacks(model, ds, evaluator, [{"method": "fgsm_l2", "modality": "visual",
                                                       "eps_ratio": [0.05, 0.5]},
                                                      {"method": "fgsm", "modality": "all", "eps": 0.1},
                                                      {"method": "certified_radius", "sample_size": 16}],
                               clean=clean, seed=5)
    names = sorted({r["name"] for r in records})
    assert names == ["certified_radius", "fgsm-all-abs0.1", "fgsm_l2-visual-eps0.05", "fgsm_l2-visual-eps0.5"]
    rec = next(r for r in records if r["name"] == "fgsm_l2-visual-eps0.5" and r["cutoff"] == 10)
    assert rec["clean"] == clean.values[10] and rec["modality"] == "visual" and rec["method"] == "fgsm_l2"
    assert rec["budget"] == {"kind": "eps_ratio", "value": 0.5}
    for metric, value in rec["values"].items():
        c = clean.values[10][metric]
        assert rec["drop"][metric] == pytest.approx((c - value) / c) if c else math.isnan(rec["drop"][metric])
    assert sum(r["cutoff"] is not None for r in records) == 3 * 2  # 3 attacks x 2 cutoffs
    radius = next(r for r in records if r["name"] == "certified_radius")
    assert 0 <= radius["values"]["ranked"] <= 1 and radius["cutoff"] is None


def test_non_multimodal_model_is_skipped_with_a_message():
    ds = random_dataset(n_users=20, n_items=25, seed=1)
    model = BPRMF(ds, {"factors": 4, "lr": 0.01, "l_w": 0.0, "l_b": 0.0, "epochs": 1, "batch_size": 32, "seed": 1},
                  torch.device("cpu"))
    records = evaluate_attacks(model, ds, None, [DEFAULT_ATTACK], clean=None, seed=1)
    assert len(records) == 1 and "reads no item features" in records[0]["skipped"]


def test_write_attack_tables(tmp_path, trained):
    ds, model, evaluator = trained
    clean = evaluator.evaluate(model, "test")
    records = evaluate_attacks(model, ds, evaluator, [DEFAULT_ATTACK, {"method": "certified_radius",
                                                                      "sample_size": 8}], clean=clean, seed=2)

    class R:
        name, attacks = "TinyVBPR_seed=1", records

    paths = write_attack_tables(tmp_path, [R()], [5, 10], ["Recall", "nDCG"], 0.0, "TS")
    names = sorted(p.name for p in paths)
    assert "rec_cutoff_10_relthreshold_0_TS_attack-fgsm_l2-all-eps0.05.tsv" in names
    assert any(n.startswith("certified_radius") for n in names)
    lines = (tmp_path / "rec_cutoff_10_relthreshold_0_TS_attack-fgsm_l2-all-eps0.05.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["model", "Recall", "Recall_attacked", "Recall_drop", "nDCG", "nDCG_attacked",
                                    "nDCG_drop"]
    assert lines[1].startswith("TinyVBPR_seed=1\t")


# ---- validation ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("attacks, message", [
    ([{"method": "fgsm_l3"}], "did you mean 'fgsm_l2'"),
    ([{"method": "fgsm_l2", "eps_ration": 0.1}], "did you mean 'eps_ratio'"),
    ([{"method": "fgsm_l2", "eps": 0.1, "eps_ratio": 0.1}], "not both"),
    ([{"method": "fgsm", "eps_ratio": -0.1}], "must be > 0"),
    ([{"method": "msap", "projection": "l3"}], "projection"),
    ([{"method": "fgsm_l2", "projection": "l2"}], "unknown key"),
    ([{"eps": 0.1}], "needs 'method'"),
    ("nonsense", "unknown attack method"),
])
def test_validate_attacks_errors(attacks, message):
    with pytest.raises(ConfigError, match=message) as info:
        validate_attacks(attacks)
    assert "\n" not in str(info.value)


def test_validate_attacks_defaults_and_check_attackable():
    (spec,) = validate_attacks([DEFAULT_ATTACK])
    assert spec["budgets"] == [0.05] and spec["budget_kind"] == "ratio" and spec["sample_size"] is None
    (pgd,) = validate_attacks({"method": "pgd", "eps": [0.1, 0.2]})
    assert pgd["method"] == "msap" and pgd["projection"] == "linf" and pgd["step"] == "sign" and pgd["nb_iter"] == 10
    assert check_attackable(TinyVBPR, [DEFAULT_ATTACK], "experiment.models.X", modalities=["visual", "textual"])
    with pytest.raises(ConfigError, match="reads none"):
        check_attackable(BPRMF, [DEFAULT_ATTACK], "experiment.models.BPRMF")
    assert check_attackable(BPRMF, [DEFAULT_ATTACK], "experiment.models.BPRMF", strict=False) is False
    with pytest.raises(ConfigError, match="did you mean 'visual'"):
        check_attackable(TinyVBPR, [{"method": "fgsm", "modality": "visul"}], "x", modalities=["visual", "textual"])


def test_eval_perturbations_adds_attacked_validation_to_history_only():
    from elliot.evaluation.evaluator import Evaluator
    from elliot.training.addons import PerturbedValidation
    from elliot.training.trainer import Trainer

    ds = random_dataset(n_users=40, n_items=50, density=0.2, seed=5, dims=(8, 6))
    runs = []
    for addons in ([], "probe"):
        model = make_model(ds, seed=2)
        ev = Evaluator(ds, cutoffs=[5], metrics=["Recall"])
        extra = [PerturbedValidation(ds, ev, seed=0)] if addons else []
        fit = Trainer(model, ds, ev, epochs=4, batch_size=64, seed=0, validation_rate=2,
                      validation_metric="Recall@5", addons=extra, progress=False).fit()
        runs.append(fit)
    plain, probed = runs
    keys = set(probed.history[1]) - set(plain.history[1])
    assert keys == {"val_fgsm-all-eps0.05_Recall@5", "val_msap-all-eps0.05_Recall@5"}
    # selection, losses and clean validation are untouched by the probe
    assert [h["loss"] for h in plain.history] == [h["loss"] for h in probed.history]
    assert plain.best_validation == probed.best_validation and plain.best_epoch == probed.best_epoch


def test_evaluation_never_imports_training():
    """Layering: the attacks and the certified radius (a measurement) import nothing from elliot.training."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, elliot.evaluation.attacks, elliot.evaluation.certified, elliot.evaluation.attacks.promotion, "
            "elliot.evaluation.attacks.missing; "
            "bad = [m for m in sys.modules if m.startswith('elliot.training')]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(Path(__file__).parents[1]))
