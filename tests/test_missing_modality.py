"""Missing / noisy modalities at test time: zero, mean and swap replacements, fractions, seeding, records,
stored features untouched, config errors."""
import numpy as np
import pytest
import torch

from elliot.errors import ConfigError
from elliot.evaluation.attacks import affected_items, evaluate_attacks, replaced_features, swap_sources, validate_attacks
from tests.helpers import random_dataset
from tests.robustness_helpers import make_model, train


@pytest.fixture(scope="module")
def trained():
    ds = random_dataset(n_users=40, n_items=60, density=0.2, seed=6, dims=(8, 6))
    model = make_model(ds, seed=2)
    evaluator = train(model, ds, epochs=6)
    return ds, model, evaluator


def test_fraction_and_seeding():
    for fraction, expected in ((1.0, 60), (0.5, 30), (0.25, 15), (0.01, 1)):
        items = affected_items(60, fraction, seed=3)
        assert len(items) == expected and len(set(items)) == expected and (np.diff(items) > 0).all()
    assert np.array_equal(affected_items(60, 0.5, 3), affected_items(60, 0.5, 3))
    assert not np.array_equal(affected_items(60, 0.5, 3), affected_items(60, 0.5, 4))
    assert set(affected_items(60, 0.25, 3)) <= set(affected_items(60, 0.5, 3))  # nested fractions
    items = affected_items(60, 1.0, 3)
    src = swap_sources(items, 60, 3)
    assert (src != items).all() and ((0 <= src) & (src < 60)).all()
    assert np.array_equal(src, swap_sources(items, 60, 3))


def test_modes_replace_only_the_affected_rows():
    g = torch.Generator().manual_seed(0)
    clean = {"visual": torch.randn(20, 4, generator=g), "textual": torch.randn(20, 3, generator=g)}
    copy = {m: x.clone() for m, x in clean.items()}
    items = affected_items(20, 0.3, 1)
    others = np.setdiff1d(np.arange(20), items)
    src = swap_sources(items, 20, 1)
    for mode in ("zero", "mean", "swap"):
        out = replaced_features(clean, mode, items, src)
        for m, x in clean.items():
            assert torch.equal(out[m][others], x[others])
            want = {"zero": torch.zeros_like(x[items]), "mean": x.mean(0, keepdim=True).expand(len(items), -1),
                    "swap": x[src]}[mode]
            assert torch.allclose(out[m][items], want)
            assert out[m].data_ptr() != x.data_ptr()
    assert all(torch.equal(clean[m], copy[m]) for m in clean)  # inputs untouched


def test_evaluate_records_and_isolation(trained):
    ds, model, evaluator = trained
    feats = {m: model.feature(m).clone() for m in model.modalities}
    stored = {m: ds.features[m].copy() for m in ds.features}
    clean = evaluator.evaluate(model, "test")
    entry = {"method": "missing_modality", "mode": ["zero", "mean", "swap"], "fraction": [1.0, 0.5]}
    records = evaluate_attacks(model, ds, evaluator, [entry, {"method": "missing", "modality": "all"}], clean=clean,
                               seed=0, target_seed=5)
    assert all(torch.equal(feats[m], model.feature(m)) for m in model.modalities) and model._feature_overrides == {}
    assert all(np.array_equal(stored[m], ds.features[m]) for m in stored)
    names = {r["name"] for r in records}
    assert len(names) == 2 * 3 * 2 + 1 and "missing_modality-visual-swap-f0.5" in names
    assert "missing_modality-all-zero-f1" in names
    rec = next(r for r in records if r["name"] == "missing_modality-textual-zero-f0.5" and r["cutoff"] == 10)
    assert rec["mode"] == "zero" and rec["budget"] == {"kind": "fraction", "value": 0.5}
    assert rec["perturbation"]["textual"]["items_replaced"] == 30 and rec["clean"] == clean.values[10]
    # the model sees exactly the replaced features: re-evaluating by hand gives the recorded values
    items = affected_items(ds.n_items, 0.5, 5)
    replaced = replaced_features({"textual": model.feature("textual")}, "zero", items, swap_sources(items, 60, 5))
    with model.features_replaced(replaced):
        assert evaluator.evaluate(model, "test").values[10] == rec["values"]
    full = next(r for r in records if r["name"] == "missing_modality-visual-zero-f1" and r["cutoff"] == 10)
    assert full["values"] != full["clean"]  # the visual branch matters to the trained model
    again = evaluate_attacks(model, ds, evaluator, [entry], clean=clean, seed=0, target_seed=5)
    assert [(r["name"], r["values"]) for r in again] == [(r["name"], r["values"]) for r in records[:len(again)]]


@pytest.mark.parametrize("entry, message", [
    ({"method": "missing_modality", "mode": "zeros"}, "did you mean 'zero'"),
    ({"method": "missing_modality", "mode": ["zero", "avg"]}, "mode: 'avg' is not one of zero, mean, swap"),
    ({"method": "missing_modality", "fraction": 1.5}, "must be in \\(0, 1\\]"),
    ({"method": "missing_modality", "fraction": 0}, "must be > 0"),
    ({"method": "missing_modality", "fractions": 0.5}, "did you mean 'fraction'"),
    ({"method": "missing_modality", "eps_ratio": 0.5}, "unknown key"),
    ({"method": "missing_modalty"}, "did you mean 'missing_modality'"),
])
def test_missing_modality_config_errors(entry, message):
    with pytest.raises(ConfigError, match=message) as info:
        validate_attacks([entry])
    assert "\n" not in str(info.value)


def test_defaults():
    (spec,) = validate_attacks([{"method": "missing_modality"}])
    assert spec["modality"] == "each" and spec["modes"] == ["zero"] and spec["fractions"] == [1.0]
