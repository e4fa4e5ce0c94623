"""Targeted item promotion: long-tail targets, the objective raises the targets, only target rows move,
exact budgets, records and tables, determinism, config errors."""
import math

import numpy as np
import pytest
import torch

from elliot.errors import ConfigError
from elliot.evaluation.attacks import (PromotionAttack, evaluate_attacks, fgsm, long_tail_items, msap, promotion_pairs,
                                       resolve_targets, target_exposure, validate_attacks)
from elliot.evaluation.metrics import short_head_items
from elliot.results.robustness import write_attack_tables
from external.models.lightgcnm import LightGCNM
from tests.helpers import random_dataset
from tests.robustness_helpers import make_model, train

CUTOFFS = [5, 10]


@pytest.fixture(scope="module")
def trained():
    ds = random_dataset(n_users=50, n_items=70, density=0.2, seed=3, dims=(8, 6))
    model = make_model(ds, seed=1)
    evaluator = train(model, ds, epochs=8)
    return ds, model, evaluator


def _graph_model(ds):
    params = {p.name: p.default for p in LightGCNM.declared_params()}
    params.update({"factors": 8, "n_layers": 2, "lr": 0.01, "l_w": 1e-4, "epochs": 1, "batch_size": 64, "seed": 0})
    torch.manual_seed(0)
    return LightGCNM(ds, params, torch.device("cpu"))


def _attack(ds, model, evaluator, targets, modalities=("visual", "textual"), batch_size=1 << 18):
    _, refs = target_exposure(model, ds, evaluator, targets, "test", CUTOFFS, reference_k=10)
    return PromotionAttack(model, list(modalities), targets, promotion_pairs(ds, evaluator, targets, refs, "test"),
                           batch_size=batch_size)


def _target_mean_score(model, targets, replaced=None):
    users = torch.arange(model.n_users)
    with torch.no_grad(), model.features_replaced(replaced or {}):
        return float(model.score(users)[:, torch.as_tensor(targets)].mean())


# ---- targets -------------------------------------------------------------------------------------------
def test_targets_are_seeded_long_tail_items_or_listed_ids(trained):
    ds, _, _ = trained
    tail = long_tail_items(ds)
    head = short_head_items(ds.item_popularity())
    assert len(tail) == int((~head).sum()) and not head[tail].any()
    a = resolve_targets(5, ds, 7, "x")
    assert len(a) == 5 and len(set(a)) == 5 and np.isin(a, tail).all() and (np.diff(a) > 0).all()
    assert np.array_equal(a, resolve_targets(5, ds, 7, "x"))  # seeded
    assert not np.array_equal(a, resolve_targets(5, ds, 8, "x"))
    assert resolve_targets(["i3", "i1"], ds, 0, "x").tolist() == [1, 3]  # original ids, any item
    with pytest.raises(ConfigError, match=r"item id 'i700' is not in the dataset.*did you mean") as info:
        resolve_targets(["i1", "i700"], ds, 0, "experiment.evaluation.attacks[0]")
    assert "\n" not in str(info.value) and "attacks[0].targets" in str(info.value)
    with pytest.raises(ConfigError, match="long tail has only"):
        resolve_targets(len(tail) + 1, ds, 0, "x")


# ---- the objective -------------------------------------------------------------------------------------
def test_promotion_raises_the_targets(trained):
    ds, model, evaluator = trained
    targets = resolve_targets(5, ds, 0, "x")
    clean, _ = target_exposure(model, ds, evaluator, targets, "test", CUTOFFS)
    attack = _attack(ds, model, evaluator, targets)
    j0, _ = attack.loss_and_grad({m: torch.zeros_like(x) for m, x in attack.clean.items()})
    for deltas in fgsm(attack, "ratio", [0.5, 1.0], "l2") + [msap(attack, "ratio", 1.0, "l2", "l2", 5, None)]:
        replaced = {m: attack.clean[m] + d for m, d in deltas.items()}
        j1, _ = attack.loss_and_grad(deltas)
        assert j1 > j0
        assert _target_mean_score(model, targets, replaced) > _target_mean_score(model, targets)
        with model.features_replaced(replaced):
            hit, _ = target_exposure(model, ds, evaluator, targets, "test", CUTOFFS)
        assert hit["mean_rank"] < clean["mean_rank"]
        assert hit["exposure"][10] > clean["exposure"][10]
    assert model._feature_overrides == {}


def test_chunked_objective_equals_one_pass(trained):
    ds, model, evaluator = trained
    targets = resolve_targets(4, ds, 1, "x")
    whole, chunked = _attack(ds, model, evaluator, targets), _attack(ds, model, evaluator, targets, batch_size=37)
    delta = {m: 0.1 * torch.randn_like(x) for m, x in whole.clean.items()}
    (j1, g1), (j2, g2) = whole.loss_and_grad(delta), chunked.loss_and_grad(delta)
    assert j1 == pytest.approx(j2, rel=1e-5)
    assert all(torch.allclose(g1[m], g2[m], rtol=1e-4, atol=1e-7) for m in g1)


# ---- confinement and budgets ---------------------------------------------------------------------------
def test_only_target_rows_move_even_when_other_items_have_gradient():
    ds = random_dataset(n_users=30, n_items=40, density=0.2, seed=2, dims=(8, 6))
    model = _graph_model(ds)  # LightGCNM: a target's score depends on its neighbours' features too
    evaluator = train(model, ds, epochs=2)
    targets = resolve_targets(3, ds, 0, "x")
    attack = _attack(ds, model, evaluator, targets)
    off = np.setdiff1d(np.arange(ds.n_items), targets)
    zero = {m: torch.zeros_like(x) for m, x in attack.clean.items()}
    # the unmasked gradient reaches other items (so the mask is doing the work)
    leaves = {m: z.clone().requires_grad_(True) for m, z in zero.items()}
    u, t, r = attack.triples
    with model.features_replaced({m: attack.clean[m] + leaves[m] for m in leaves}):
        s = model.score_pairs(torch.cat([u, u]), torch.cat([t, r]))
    raw = torch.autograd.grad(torch.nn.functional.logsigmoid(s[:len(u)] - s[len(u):]).sum(), list(leaves.values()))
    assert any(float(g[off].abs().sum()) > 0 for g in raw)
    _, grads = attack.loss_and_grad(zero)
    sweeps = fgsm(attack, "ratio", [0.1], "l2") + fgsm(attack, "ratio", [0.1], "linf") + \
        [msap(attack, "ratio", 0.1, "l2", "l2", 3, None), msap(attack, "ratio", 0.1, "linf", "sign", 3, None)]
    for d in [grads] + sweeps:
        for m, x in d.items():
            assert float(x[off].abs().sum()) == 0.0
            assert (x[targets].norm(dim=1) > 0).all()


def test_budgets_are_exact_per_target(trained):
    ds, model, evaluator = trained
    targets = resolve_targets(6, ds, 2, "x")
    attack = _attack(ds, model, evaluator, targets)
    l2, = fgsm(attack, "ratio", [0.1], "l2")
    linf, = fgsm(attack, "ratio", [0.1], "linf")
    for m, x in attack.clean.items():
        eps = 0.1 * x[targets].norm(dim=1)
        assert torch.allclose(l2[m][targets].norm(dim=1), eps, rtol=1e-5)  # ||δ_t||_2 = eps_ratio ||x_t||
        assert torch.allclose(linf[m][targets].abs().amax(1), eps / math.sqrt(x.shape[1]), rtol=1e-5)
    for projection, step in (("l2", "l2"), ("linf", "sign")):
        d = msap(attack, "ratio", 0.1, projection, step, 6, None)
        for m, x in attack.clean.items():
            eps = 0.1 * x[targets].norm(dim=1)
            if projection == "l2":
                assert torch.allclose(d[m][targets].norm(dim=1), eps, rtol=1e-4)  # on the sphere after 2.5 eps
            else:
                assert (d[m][targets].abs().amax(1) <= eps / math.sqrt(x.shape[1]) * (1 + 1e-6)).all()
    absolute, = fgsm(attack, "abs", [0.3], "l2")
    assert all(torch.allclose(d[targets].norm(dim=1), torch.full((6,), 0.3), rtol=1e-5) for d in absolute.values())


# ---- records, tables, determinism ----------------------------------------------------------------------
ENTRY = {"method": "promotion", "targets": 5, "attack": "fgsm_l2", "modality": "each", "eps_ratio": [0.5, 1.0]}


def test_records_tables_isolation_and_determinism(tmp_path, trained):
    ds, model, evaluator = trained
    before = {k: v.clone() for k, v in model.state_dict().items()}
    feats = {m: model.feature(m).clone() for m in model.modalities}
    clean = evaluator.evaluate(model, "test")
    records = evaluate_attacks(model, ds, evaluator, [ENTRY, {"method": "promotion", "targets": ["i2", "i5"],
                                                              "attack": "msap", "nb_iter": 3, "modality": "all"}],
                               clean=clean, seed=0, target_seed=11)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(feats[m], model.feature(m)) for m in model.modalities) and model._feature_overrides == {}
    names = sorted({r["name"] for r in records})
    assert names == ["promotion-fgsm_l2-textual-eps0.5-t5", "promotion-fgsm_l2-textual-eps1-t5",
                     "promotion-fgsm_l2-visual-eps0.5-t5", "promotion-fgsm_l2-visual-eps1-t5",
                     "promotion-msap_linf-all-eps0.05-t2"]
    rec = next(r for r in records if r["name"] == "promotion-fgsm_l2-visual-eps1-t5" and r["cutoff"] == 10)
    expected = [str(ds.item_ids[t]) for t in resolve_targets(5, ds, 11, "x")]  # target_seed, not seed
    assert rec["targets"] == expected and rec["clean"] == clean.values[10]
    assert rec["perturbation"]["visual"]["items_perturbed"] == 5
    assert rec["perturbation"]["visual"]["mean_rel_l2"] == pytest.approx(1.0, rel=1e-5)
    stats = rec["promotion"]
    assert stats["target_exposure_attacked"] > stats["target_exposure_clean"]
    assert stats["target_mean_rank_attacked"] < stats["target_mean_rank_clean"]
    listed = next(r for r in records if r["name"].startswith("promotion-msap"))
    assert listed["targets"] == ["i2", "i5"] and listed["perturbation"]["textual"]["items_perturbed"] == 2
    again = evaluate_attacks(model, ds, evaluator, [ENTRY], clean=clean, seed=0, target_seed=11)
    first = [r for r in records if r["name"].startswith("promotion-fgsm")]
    assert [(r["name"], r["values"], r["promotion"]) for r in again] == \
        [(r["name"], r["values"], r["promotion"]) for r in first]

    class R:
        name, attacks = "TinyVBPR_seed=1", records

    paths = write_attack_tables(tmp_path, [R()], CUTOFFS, ["Recall"], 0.0, "TS")
    table = tmp_path / "rec_cutoff_10_relthreshold_0_TS_attack-promotion-fgsm_l2-visual-eps1-t5.tsv"
    assert table in paths
    header, row = [line.split("\t") for line in table.read_text().splitlines()]
    assert header == ["model", "Recall", "Recall_attacked", "Recall_drop", "target_exposure_clean",
                      "target_exposure_attacked", "target_hr_clean", "target_hr_attacked", "target_mean_rank_clean",
                      "target_mean_rank_attacked"]
    assert float(row[header.index("target_exposure_attacked")]) == pytest.approx(stats["target_exposure_attacked"],
                                                                                abs=1e-6)
    long = next(p for p in paths if p.name.startswith("attacks_")).read_text()
    assert "\ttarget_exposure\t" in long and "\ttarget_mean_rank\t" in long


# ---- validation ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("entry, message", [
    ({"method": "promotion", "attack": "fgsm_l3"}, "did you mean 'fgsm_l2'"),
    ({"method": "promotion", "target": 5}, "did you mean 'targets'"),
    ({"method": "promotion", "targets": 0}, "targets: 0 must be an integer >= 1"),
    ({"method": "promotion", "targets": True}, "targets"),
    ({"method": "promotion", "targets": []}, "non-empty list of item ids"),
    ({"method": "promotion", "targets": ["a", "a"]}, "listed twice"),
    ({"method": "promotion", "nb_iter": 3}, "only with attack: msap"),
    ({"method": "promotion", "eps": 0.1, "eps_ratio": 0.1}, "not both"),
    ({"method": "promotion", "sample_size": 10}, "unknown key"),
    ({"method": "promotions"}, "did you mean 'promotion'"),
])
def test_promotion_config_errors(entry, message):
    with pytest.raises(ConfigError, match=message) as info:
        validate_attacks([entry])
    assert "\n" not in str(info.value) and "experiment.evaluation.attacks[0]" in str(info.value)


def test_promotion_defaults():
    (spec,) = validate_attacks([{"method": "promotion"}])
    assert spec["targets"] == 50 and spec["attack"] == "fgsm_l2" and spec["budgets"] == [0.05]
    assert spec["modality"] == "all" and spec["cutoff"] is None and spec["split"] == "test"
    (pgd,) = validate_attacks([{"method": "promotion", "attack": "pgd", "targets": [1, "b"]}])
    assert pgd["attack"] == "msap" and pgd["projection"] == "linf" and pgd["nb_iter"] == 10
    assert pgd["targets"] == ["1", "b"]  # YAML integers are ids as in the data files


# ---- through run_experiment ----------------------------------------------------------------------------
def _experiment(folder, attacks):
    import yaml

    ds = random_dataset(n_users=40, n_items=50, density=0.2, seed=9, dims=(6, 5))
    data = folder / "data" / "tiny"
    data.mkdir(parents=True, exist_ok=True)
    for split in ("train", "validation", "test"):
        coo = getattr(ds, split).tocoo()
        (data / f"{split}.tsv").write_text("".join(f"{ds.user_ids[u]}\t{ds.item_ids[i]}\t1\n"
                                                   for u, i in zip(coo.row, coo.col)))
    for m in ("visual", "textual"):
        np.save(data / f"{m}.npy", ds.features[m])
    (data / "items.tsv").write_text("".join(f"{i}\t{n}\n" for n, i in enumerate(ds.item_ids)))
    exp = {"dataset": "tiny", "random_seed": 3,
           "data_config": {"strategy": "fixed", "train_path": "../data/{0}/train.tsv",
                           "validation_path": "../data/{0}/validation.tsv", "test_path": "../data/{0}/test.tsv",
                           "side_information": [
                               {"dataloader": "VisualAttribute", "visual_features": "../data/{0}/visual.npy",
                                "item_mapping": "../data/{0}/items.tsv"},
                               {"dataloader": "TextualAttribute", "textual_features": "../data/{0}/textual.npy",
                                "item_mapping": "../data/{0}/items.tsv"}]},
           "evaluation": {"cutoffs": [10], "simple_metrics": ["Recall"], "attacks": attacks},
           "models": {"external.VBPR": {"meta": {"validation_metric": "Recall@10"}, "epochs": 2, "factors": 8,
                                        "seed": 1}}}
    (folder / "config_files").mkdir(exist_ok=True)
    path = folder / "config_files" / "tiny.yml"
    path.write_text(yaml.safe_dump({"experiment": exp}))
    return path


def test_run_experiment_writes_promotion_table_and_checks_entries_first(tmp_path):
    from elliot.run import run_experiment

    bad = _experiment(tmp_path, [{"method": "promotion", "attack": "msap", "modality": "visul"}])
    with pytest.raises(ConfigError, match="did you mean 'visual'") as info:
        run_experiment(bad, progress=False)
    assert "\n" not in str(info.value) and not (tmp_path / "results").exists()  # before any data is read
    good = _experiment(tmp_path, [{"method": "promotion", "targets": 3, "eps_ratio": 0.5},
                                  {"method": "missing_modality", "modality": "visual", "mode": "swap"}])
    result = run_experiment(good, progress=False)
    (trial,) = [t for t in result.best.values()]
    promo = next(a for a in trial.attacks if a["name"] == "promotion-fgsm_l2-all-eps0.5-t3")
    assert len(promo["targets"]) == 3  # seeded by the experiment's random_seed
    tables = sorted(p.name for p in (tmp_path / "results" / "tiny" / "performance").glob("*_attack-*.tsv"))
    assert any("attack-promotion-fgsm_l2-all-eps0.5-t3" in n for n in tables)
    assert any("attack-missing_modality-visual-swap-f1" in n for n in tables)
    table = next((tmp_path / "results" / "tiny" / "performance").glob("*_attack-promotion-*.tsv"))
    assert table.read_text().splitlines()[0].split("\t")[4:6] == ["target_exposure_clean", "target_exposure_attacked"]
