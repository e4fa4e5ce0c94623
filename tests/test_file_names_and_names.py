"""Bounded file names (a long configuration name never costs a trial), short progress labels, Elliot's
model names and the forks' parameter aliases."""
import os

import pytest

from elliot.config import Param, coerce_params
from elliot.errors import ConfigError
from elliot.recommender.registry import resolve_model
from elliot.trial import config_name, short_label
from elliot.utils.paths import MAX_STEM_BYTES, file_stem


def test_file_stem_keeps_short_names_and_bounds_long_ones():
    assert file_stem("BPRMF_seed=42_e=10") == "BPRMF_seed=42_e=10"
    long_a = "LATTICE_modalities=visual-textual_loaders=VisualAttribute-TextualAttribute_" + "x=1_" * 80 + "a"
    long_b = long_a[:-1] + "b"
    sa, sb = file_stem(long_a), file_stem(long_b)
    assert len(sa.encode()) <= MAX_STEM_BYTES and sa != sb and file_stem(long_a) == sa  # distinct, stable
    assert sa.startswith("LATTICE_modalities=visual-textual_loaders=VisualAttribute-TextualAttribute_")
    assert len(file_stem("é" * 300).encode()) <= MAX_STEM_BYTES  # multi-byte names are cut on a character


def test_short_label_names_only_what_varies():
    params = {"epochs": 20, "batch_size": 1024, "lr": 0.005, "modalities": ["visual", "textual"], "l_w": 1e-5}
    assert short_label("external.LATTICE", params, ["lr"]) == "LATTICE lr=0$005"
    assert len(short_label("external.LATTICE", params, list(params) * 5)) <= 60
    assert len(config_name("external.LATTICE", params)) > len(short_label("external.LATTICE", params, ["lr"]))


def test_a_refused_write_keeps_the_trial(tmp_path):
    """The record is stored before the artefacts; a write that fails is one line and a rerun reuses the trial."""
    from elliot.errors import ElliotError
    from elliot.run import run_experiment
    from tests.test_search_run import bprmf, make_config, make_data

    data = make_data(tmp_path / "d", n_users=60)
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the recs folder should be")
    config = make_config(tmp_path, data, {"BPRMF": bprmf(meta={"save_recs": True})},
                         path_output_rec_result=str(blocker))
    with pytest.raises(ElliotError, match="finished and is stored in .*BPRMF.jsonl, but writing"):
        run_experiment(config, progress=False)
    os.remove(blocker)
    again = run_experiment(config, progress=False)
    assert again.restored["BPRMF"] == 1 and again.ran["BPRMF"] == 0


def test_elliot_model_names_resolve():
    assert resolve_model("AMR") is resolve_model("external.AMR")
    assert resolve_model("VBPR") is resolve_model("external.VBPR")
    assert resolve_model("external.BPRMF") is resolve_model("BPRMF")
    assert resolve_model("external.LightGCN") is resolve_model("LightGCN")
    assert resolve_model("RecommendationFolder").name == "RecommendationFolder"
    with pytest.raises(ConfigError, match="'external.SimGCL' is a model of Elliot's multimodal forks"):
        resolve_model("external.SimGCL")
    with pytest.raises(ConfigError, match="'EASER' is an Elliot 0.3.1 built-in"):
        resolve_model("EASER")
    with pytest.raises(ConfigError, match="did you mean 'external.LightGCNM'"):
        resolve_model("external.LightGCNN")


def test_fork_parameter_aliases_and_tuple_grids():
    grcn = resolve_model("external.GRCN")
    space = coerce_params(grcn.declared_params(), {"num_layers": 3, "num_routings": 2, "factors_multimod": 32,
                                                   "aggregation": "mean", "fusion_mode": "concat"}, "m")
    assert (space.fixed["n_layers"], space.fixed["num_routing"], space.fixed["dim_latent"],
            space.fixed["aggr_mode"]) == (3, 2, 32, "mean")
    with pytest.raises(ConfigError, match="fusion_mode"):
        coerce_params(grcn.declared_params(), {"fusion_mode": "id"}, "m")
    with pytest.raises(ConfigError, match="same parameter"):
        coerce_params(grcn.declared_params(), {"num_layers": 3, "n_layers": 2}, "m")
    mmgcn = resolve_model("external.MMGCN")
    assert coerce_params(mmgcn.declared_params(), {"factors_multimod": "(256, None)"}, "m").fixed[
        "factors_multimod"] == [256, 0]
    vbpr = resolve_model("external.VBPR")
    assert coerce_params(vbpr.declared_params(), {"comb_mod": "concat"}, "m").fixed["fusion"] == "concat"
    ws = Param("ws", "list[int]", [64])
    assert coerce_params([ws], {"ws": ["(32", 16, "8)", "(64", 32, "16)"]}, "m").axes["ws"] == [[32, 16, 8],
                                                                                               [64, 32, 16]]


@pytest.mark.parametrize("raw, message", [
    ({"epochs": 0}, r"epochs: 0 is out of range; epochs must be >= 1"),
    ({"epochs": -3}, r"epochs must be >= 1"),
    ({"batch_size": 0}, r"batch_size must be >= 1"),
    ({"factors": [16, 0]}, r"factors must be >= 1"),
    ({"lr": 0.0}, r"lr must be > 0"),
    ({"lr": float("nan")}, r"not a finite number"),
    ({"lr_sched": "(1.0,50,3)"}, r"lr_sched takes 0 or 2"),
    ({"user_regularization": 0.1}, r"Elliot's numpy BPRMF"),
])
def test_numbers_users_mistype_are_refused_before_any_work(raw, message):
    from elliot.config.schema import Meta, ModelSpec
    from elliot.search import plan_trials

    with pytest.raises(ConfigError, match=message):
        plan_trials(resolve_model("BPRMF"), ModelSpec("BPRMF", Meta(validation_metric="Recall@10"), params=raw),
                    where="experiment.models.BPRMF")


def test_a_numeric_space_for_a_list_of_numbers_draws_one_value():
    """Graph-RSs-Reproducibility searches NGCF's per-layer dropout tuple with [loguniform, a, b]."""
    from elliot.config.schema import Meta, ModelSpec
    from elliot.search import plan_trials

    spec = ModelSpec("NGCF", Meta(validation_metric="Recall@10", hyper_opt_alg="rand", hyper_max_evals=4),
                     params={"node_dropout": ["loguniform", -2.3, -0.22], "n_layers": ["choice", [1, 2]]})
    points = [c for _, c in plan_trials(resolve_model("NGCF"), spec, where="m", seed=3).ask(4)]
    assert all(len(c["node_dropout"]) == 1 and 0.1 <= c["node_dropout"][0] <= 0.81 for c in points)
