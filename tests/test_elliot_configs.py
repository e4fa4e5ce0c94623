"""Configs written for Elliot 0.3.1 and its multimodal forks (Formal-MultiMod-Rec, Multimodal-RSs-
Reproducibility, Ducho-meets-Elliot, the LoG 2023 hands-on notebooks) run here unchanged.

Every config below is written for this file (our own names and values), in the shape those projects use:
the forks' data layout (``data/<name>/{train,val,test}.txt`` as ``user<TAB>item<TAB>1`` without header,
``image_feat/<item>.npy`` and ``text_feat/<item>.npy`` for the training items), a ``config_files/`` folder
next to ``data/`` with ``../data/{0}/...`` paths, ``external_models_path: ../external/models/__init__.py``
(a symlink to this repository's ``external``), Elliot's tuple strings (``"('visual','textual')"``), YAML 1.1
exponents without a dot (``1e-5`` loads as a string), the model block's ``early_stopping`` and the
upstream built-in names ``AMR`` / ``VBPR``.  Each run is tiny (1-8 epochs, factors 8-16).
"""
from __future__ import annotations

import glob
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from elliot.errors import ConfigError, DataError, ElliotError
from elliot.recommender.baselines import BPRMF
from elliot.recommender.registry import resolve_model
from elliot.run import run_experiment
from elliot.utils.paths import file_stem

REPO = Path(__file__).resolve().parents[1]
DATASET = "minishop"
N_USERS, N_ITEMS = 80, 60
COLD_ITEM = 777  # an item seen only in test, with no feature file: Elliot's align_side_with_train drops it


class ForkLayout:
    """``<root>/data/<dataset>/...``, ``<root>/config_files/``, ``<root>/external -> repo/external``."""

    def __init__(self, root: Path, dataset: str = DATASET, seed: int = 0, cold_item: bool = False):
        from elliot.dataset.generator import generate, split_per_user

        self.root, self.dataset = Path(root), dataset
        self.data = self.root / "data" / dataset
        self.data.mkdir(parents=True)
        (self.root / "config_files").mkdir()
        (self.root / "external").symlink_to(REPO / "external", target_is_directory=True)
        users, items, ts, visual, textual, _ = generate(n_users=N_USERS, n_items=N_ITEMS, dim=4, mean_extra=6,
                                                        visual_dim=8, textual_dim=6, seed=seed)
        part = split_per_user(users, ts, val_ratio=0.15, test_ratio=0.2)
        self.splits = {}
        for code, name in ((0, "train.txt"), (1, "val.txt"), (2, "test.txt")):
            rows = [(int(u), int(i)) for u, i in zip(users[part == code], items[part == code])]
            if code == 2 and cold_item:
                rows += [(u, COLD_ITEM) for u in (1, 2, 3)]
            self.splits[name] = rows
            (self.data / name).write_text("".join(f"{u}\t{i}\t1\n" for u, i in rows))
        train_items = sorted({i for _, i in self.splits["train.txt"]})
        for folder, matrix in (("image_feat", visual), ("text_feat", textual)):
            (self.data / folder).mkdir()
            for i in train_items:
                np.save(self.data / folder / f"{i}.npy", matrix[i])

    @property
    def results(self) -> Path:
        return self.root / "results" / self.dataset

    def write(self, name: str, experiment: dict) -> Path:
        path = self.root / "config_files" / f"{name}.yml"
        path.write_text(yaml.safe_dump({"experiment": experiment}, sort_keys=False))
        return path


@pytest.fixture
def layout(tmp_path) -> ForkLayout:
    return ForkLayout(tmp_path / "run")


@pytest.fixture
def make_layout(tmp_path):
    made = []

    def make(tag: str, **kwargs) -> ForkLayout:
        made.append(ForkLayout(tmp_path / tag, **kwargs))
        return made[-1]

    return make


def fixed_data(visual: bool = True, textual: bool = True) -> dict:
    side = []
    if visual:
        side.append({"dataloader": "VisualAttribute", "visual_features": "../data/{0}/image_feat"})
    if textual:
        side.append({"dataloader": "TextualAttribute", "textual_features": "../data/{0}/text_feat"})
    dc = {"strategy": "fixed", "train_path": "../data/{0}/train.txt", "validation_path": "../data/{0}/val.txt",
          "test_path": "../data/{0}/test.txt"}
    if side:
        dc["side_information"] = side
    return dc


def fork_meta(**extra) -> dict:
    """The meta block every fork config repeats (hyper_opt_alg grid, verbose, no weights / recs)."""
    meta = {"hyper_opt_alg": "grid", "verbose": True, "save_weights": False, "save_recs": False,
            "validation_rate": 10, "validation_metric": "Recall@20", "restore": False}
    meta.update(extra)
    return meta


def assert_finite_test(result, model: str, cutoffs, metrics):
    best = result.best[model]
    for k in cutoffs:
        for m in metrics:
            value = best.test[k][m]
            assert math.isfinite(value), (model, k, m, value)
    return best


def performance_table(results: Path, cutoff: int, prefix: str = "rec") -> list:
    files = sorted(glob.glob(str(results / "performance" / f"{prefix}_cutoff_{cutoff}_relthreshold_*.tsv")))
    assert files, f"no {prefix}_cutoff_{cutoff} table in {results / 'performance'}"
    lines = Path(files[-1]).read_text().splitlines()
    return [line.split("\t") for line in lines]


# ---- 1. the LoG 2023 hands-on #2 notebook ----------------------------------------------------------
def test_log_notebook_lightgcnm_then_lattice(make_layout):
    lay = make_layout("log", cold_item=True)
    tuple_modalities = "('visual','textual')"
    tuple_loaders = "('VisualAttribute','TextualAttribute')"
    meta = fork_meta(validation_rate=10)
    exp = {"backend": "pytorch", "gpu": 0, "dataset": lay.dataset, "top_k": 20, "data_config": fixed_data(),
           "evaluation": {"cutoffs": [20], "simple_metrics": ["Recall", "nDCG"]},
           "external_models_path": "../external/models/__init__.py",
           "models": {
               "external.LightGCNM": {"meta": meta, "lr": 0.004, "epochs": 2, "n_layers": 1, "factors": 16,
                                      "l_w": 1.0e-05, "normalize": True, "aggregation": "mean",
                                      "batch_size": 128, "modalities": tuple_modalities,
                                      "loaders": tuple_loaders, "seed": 99},
               "external.LATTICE": {"meta": meta, "epochs": 2, "batch_size": 128, "factors": 16, "lr": 0.004,
                                    "l_w": 1.0e-05, "n_layers": 1, "n_ui_layers": 2, "top_k": 8, "l_m": 0.6,
                                    "factors_multimod": 16, "cf": "lightgcn", "modalities": tuple_modalities,
                                    "loaders": tuple_loaders, "seed": 99}}}
    result = run_experiment(lay.write("log_hands_on", exp), progress=False)

    assert set(result.best) == {"external.LightGCNM", "external.LATTICE"}
    for model in result.best:
        best = assert_finite_test(result, model, [20], ["Recall", "nDCG"])
        assert best.params["modalities"] == ["visual", "textual"]
        assert best.params["loaders"] == ["VisualAttribute", "TextualAttribute"]
        assert best.epochs_run == 2
        # validation_rate 10 with 2 epochs: the last epoch is still validated and kept
        assert (best.selected_on, best.best_epoch) == ("validation", 2)
        assert [("val_Recall@20" in row) for row in best.history] == [False, True]
    assert result.best["external.LightGCNM"].params["aggregation"] == "mean"
    assert result.best["external.LATTICE"].params["l_m"] == pytest.approx(0.6)

    history = sorted((lay.results / "history").iterdir())
    assert len(history) == 2
    for path in history:
        assert len(path.name.encode("utf-8")) <= 255, path.name
    lattice = result.best["external.LATTICE"].name
    assert len(lattice.encode()) > 200  # every hyperparameter in the name: too long for one file name
    (path,) = [p for p in history if p.name.startswith("LATTICE_")]
    assert path.stem == file_stem(lattice)
    assert re.search(r"_h[0-9a-f]{10}$", path.stem)
    assert lattice.startswith(path.stem[:-12])  # a readable prefix of the configuration name
    assert path.stem.startswith("LATTICE_modalities=visual-textual_loaders=VisualAttribute-TextualAttribute")
    # the item seen only in test has no features: dropped, and said in the log (align_side_with_train)
    (log,) = (lay.root / "log").glob("elliot_*.log")
    assert re.search(r"1 items? lacks? side information", log.read_text())
    # the full name is still in the performance table
    rows = performance_table(lay.results, 20)
    assert rows[0][:3] == ["model", "Recall", "nDCG"]
    assert lattice in [r[0] for r in rows[1:]]


# ---- 2. Formal-MultiMod-Rec: four fork models in one file -----------------------------------------
def test_formal_multimod_four_models(layout):
    shared = {"epochs": 2, "batch_size": 128, "seed": 21, "modalities": "('visual', 'textual')"}
    metrics = ["Recall", "nDCG", "EFD", "Gini", "APLT", "ItemCoverage"]
    exp = {"backend": "pytorch", "data_config": fixed_data(), "dataset": layout.dataset, "top_k": 20,
           "evaluation": {"cutoffs": [10, 20], "simple_metrics": metrics}, "gpu": 0,
           "external_models_path": "../external/models/__init__.py",
           "models": {
               "external.VBPR": {"meta": fork_meta(), **shared, "lr": [0.001, 0.01], "factors": 8,
                                 "l_w": "1e-5", "comb_mod": "concat"},
               "external.MMGCN": {"meta": fork_meta(), **shared, "lr": 0.002, "num_layers": 2, "factors": 8,
                                  "factors_multimod": "(16, None)", "aggregation": "mean",
                                  "concatenation": False, "has_id": True, "l_w": "1e-5"},
               "external.GRCN": {"meta": fork_meta(), **shared, "lr": 0.002, "num_layers": 1, "num_routings": 2,
                                 "factors": 8, "factors_multimod": 12, "aggregation": "add",
                                 "weight_mode": "confid", "pruning": True, "has_act": False,
                                 "fusion_mode": "concat", "l_w": "1e-5"},
               "external.FREEDOM": {"meta": fork_meta(), **shared, "lr": 0.002, "factors": 16, "l_w": "1e-2",
                                    "n_layers": 1, "n_ui_layers": 2, "top_k": 5, "factors_multimod": 16,
                                    "loaders": "('VisualAttribute','TextualAttribute')", "mw": "(0.1,0.9)",
                                    "drop": 0.5, "lr_sched": "(1.0,50)"}}}
    result = run_experiment(layout.write("formal_like", exp), progress=False)

    assert set(result.best) == {"external.VBPR", "external.MMGCN", "external.GRCN", "external.FREEDOM"}
    for model in result.best:
        assert_finite_test(result, model, [10, 20], metrics)
    # the grid on VBPR: two trials, the one kept is the best on validation Recall@20
    vbpr = result.trials["external.VBPR"]
    assert sorted(t.params["lr"] for t in vbpr) == [0.001, 0.01]
    assert result.best["external.VBPR"].validation[20]["Recall"] == max(t.validation[20]["Recall"] for t in vbpr)
    assert result.best["external.VBPR"].params["fusion"] == "concat"  # comb_mod
    assert result.best["external.VBPR"].params["l_w"] == pytest.approx(1e-5)  # "1e-5" is a YAML string
    mmgcn = result.best["external.MMGCN"].params
    assert (mmgcn["n_layers"], mmgcn["aggr_mode"], mmgcn["concate"], mmgcn["has_id"]) == (2, "mean", False, True)
    assert mmgcn["factors_multimod"] == [16, 0]  # None: the raw features
    grcn = result.best["external.GRCN"].params
    assert (grcn["n_layers"], grcn["num_routing"], grcn["dim_latent"], grcn["aggr_mode"]) == (1, 2, 12, "add")
    assert grcn["fusion_mode"] == "concat" and grcn["weight_mode"] == "confid"
    for alias in ("num_layers", "num_routings", "factors_multimod", "aggregation"):
        assert alias not in grcn
    freedom = result.best["external.FREEDOM"].params
    assert freedom["mw"] == pytest.approx([0.1, 0.9]) and freedom["lr_sched"] == pytest.approx([1.0, 50.0])
    assert freedom["loaders"] == ["VisualAttribute", "TextualAttribute"]
    # one row per trial (5), a column per simple metric
    rows = performance_table(layout.results, 10)
    assert rows[0] == ["model", *metrics]
    assert len(rows) == 1 + 5
    for row in rows[1:]:
        assert all(math.isfinite(float(v)) for v in row[1:])


# ---- 3. early_stopping in the model block; external.BPRMF with lr_sched -----------------------------
def test_block_early_stopping_moves_into_meta_and_fork_bprmf(layout):
    exp = {"backend": "pytorch", "dataset": layout.dataset, "top_k": 20, "data_config": fixed_data(False, False),
           "evaluation": {"cutoffs": [20], "simple_metrics": ["Recall", "nDCG"]},
           "external_models_path": "../external/models/__init__.py",
           "models": {"external.BPRMF": {
               "meta": {"verbose": True, "validation_rate": 1, "validation_metric": "Recall@20"},
               "early_stopping": {"patience": 1, "mode": "auto", "monitor": "Recall@20", "verbose": True},
               "epochs": 8, "batch_size": 64, "factors": 8, "lr": 0.05, "lr_sched": "(0.5, 1)", "seed": 5}}}
    result = run_experiment(layout.write("early_stop", exp), progress=False)

    assert resolve_model("external.BPRMF") is BPRMF  # the forks' name for the built-in
    best = assert_finite_test(result, "external.BPRMF", [20], ["Recall", "nDCG"])
    assert best.name.startswith("BPRMF_")
    assert best.params["lr_sched"] == pytest.approx([0.5, 1.0])
    assert best.epochs_run <= 8
    assert best.epochs_run < 8, "patience 1 with a halving learning rate stops before the last epoch"
    assert len(best.history) == best.epochs_run
    assert 1 <= best.best_epoch <= best.epochs_run

    (resolved,) = layout.results.glob("config_*.yml")
    block = yaml.safe_load(resolved.read_text())["experiment"]["models"]["external.BPRMF"]
    es = block["meta"]["early_stopping"]
    assert (es["patience"], es["mode"], es["monitor"], es["verbose"]) == (1, "auto", "Recall@20", True)
    assert "early_stopping" not in block and "early_stopping" not in block["search"]["fixed"]
    assert block["search"]["fixed"]["lr_sched"] == [0.5, 1.0]


# ---- 4. Elliot upstream: AMR / VBPR built-ins, hierarchy, triplets, save_weights -> restore -----------
def upstream_experiment(lay: ForkLayout, restore: bool, loader: str = "VisualAttribute") -> dict:
    """Elliot 0.3.1's demo shape: bare model names, batch_eval, loader, version, hierarchy splits."""
    meta = {"hyper_opt_alg": "grid", "validation_rate": 1, "verbose": True, "save_weights": True,
            "save_recs": True, "validation_metric": "HR@10", "restore": restore}
    return {"version": "0.3.1", "dataset": lay.dataset, "random_seed": 42, "print_results_as_triplets": True,
            "align_side_with_train": True, "top_k": 10, "gpu": -1,
            "data_config": {"strategy": "hierarchy", "root_folder": "../data/{0}/splits",
                            "side_information": [{"dataloader": "VisualAttribute",
                                                  "visual_features": "../data/{0}/image_feat"}]},
            "evaluation": {"cutoffs": [10], "simple_metrics": ["HR", "nDCG", "Precision"]},
            "models": {
                "VBPR": {"meta": meta, "lr": 0.005, "epochs": 2, "factors": 16, "factors_d": 8,
                         "batch_size": 128, "batch_eval": 256, "l_w": 0.00001, "l_b": 0, "loader": loader},
                "AMR": {"meta": meta, "lr": 0.005, "epochs": 2, "factors": 16, "factors_d": 8, "batch_size": 128,
                        "batch_eval": 256, "l_w": 0.00001, "l_b": 0, "l_adv": 1, "eps": 0.5,
                        "adversarial_epochs": 1, "eps_iter": 0.0625, "nb_iter": 2, "loader": loader}}}


def hierarchy_splits(lay: ForkLayout) -> None:
    """Elliot's saved splits: ``<root>/0/test.tsv`` and ``<root>/0/0/{train,val}.tsv``."""
    inner = lay.data / "splits" / "0" / "0"
    inner.mkdir(parents=True)
    shutil.copy(lay.data / "test.txt", inner.parent / "test.tsv")
    shutil.copy(lay.data / "train.txt", inner / "train.tsv")
    shutil.copy(lay.data / "val.txt", inner / "val.tsv")


def test_upstream_amr_vbpr_hierarchy_triplets_and_restore(layout):
    hierarchy_splits(layout)
    config = layout.write("upstream", upstream_experiment(layout, restore=False))
    first = run_experiment(config, progress=False)

    assert set(first.best) == {"VBPR", "AMR"}
    for model in first.best:
        best = assert_finite_test(first, model, [10], ["HR", "nDCG", "Precision"])
        assert best.epochs_run == 2
        assert best.model == model and best.name.startswith(f"{model}_")
        assert resolve_model(model) is resolve_model(f"external.{model}")  # Elliot's built-ins live in external
    triplets = performance_table(layout.results, 10, prefix="triplets_rec")
    assert triplets[0] == ["model", "metric", "value"]
    assert {r[1] for r in triplets[1:]} == {"HR", "nDCG", "Precision"}
    assert len(triplets) == 1 + 2 * 3
    weights = sorted((layout.results / "weights").glob("*.pt"))
    assert len(weights) == 2 and all(len(w.name.encode()) <= 255 for w in weights)
    assert len(list((layout.results / "recs").glob("*.tsv"))) == 2

    # restore: the saved weights are evaluated, nothing is trained
    config = layout.write("upstream", upstream_experiment(layout, restore=True))
    second = run_experiment(config, progress=False)
    for model in ("VBPR", "AMR"):
        assert second.best[model].epochs_run == 0
        assert second.best[model].history == []
        assert second.best[model].name == first.best[model].name
        for metric, value in first.best[model].test[10].items():
            assert second.best[model].test[10][metric] == pytest.approx(value, abs=1e-9), (model, metric)

    # restore without weights: a one-line error naming the missing file
    shutil.rmtree(layout.results / "weights")
    with pytest.raises(ElliotError) as err:
        run_experiment(config, progress=False)
    message = str(err.value)
    assert "\n" not in message
    assert re.search(r"restore", message)
    assert str(layout.results / "weights") in message
    assert re.search(r"(AMR|VBPR)_[^ ]*\.pt", message)


def test_upstream_plural_loader_spelling(layout):
    hierarchy_splits(layout)
    exp = upstream_experiment(layout, restore=False, loader="VisualAttributes")
    exp["models"]["VBPR"]["meta"]["save_weights"] = exp["models"]["AMR"]["meta"]["save_weights"] = False
    result = run_experiment(layout.write("upstream_plural", exp), progress=False)
    for model in ("VBPR", "AMR"):  # the plural spelling names the visual loader; the model trained on it
        assert result.best[model].params["loaders"] == ["VisualAttributes"]
        assert all(v == v for v in result.best[model].test[10].values())


# ---- 5. refusals: one line, a useful message, before any training -----------------------------------
def base_experiment(lay: ForkLayout) -> dict:
    return {"backend": "pytorch", "dataset": lay.dataset, "top_k": 10, "data_config": fixed_data(),
            "evaluation": {"cutoffs": [10], "simple_metrics": ["Recall", "nDCG"]},
            "external_models_path": "../external/models/__init__.py",
            "models": {"BPRMF": {"meta": {"validation_rate": 1}, "epochs": 1, "batch_size": 128, "factors": 8,
                                 "lr": 0.01, "seed": 1}}}


def _set(path: str, value):
    """A mutation of the base experiment: ``path`` is dotted (``models.BPRMF.epochs``)."""
    def apply(exp: dict, lay: ForkLayout):
        node = exp
        keys = path.split(".")
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    return apply


def _only_model(name: str, block: dict):
    def apply(exp: dict, lay: ForkLayout):
        exp["models"] = {name: block}
    return apply


def _nan_rating(exp: dict, lay: ForkLayout):
    lines = (lay.data / "train.txt").read_text().splitlines()
    user, item, _ = lines[6].split("\t")
    lines[6] = f"{user}\t{item}\tnan"
    (lay.data / "train.txt").write_text("\n".join(lines) + "\n")


def _early_stopping_twice(exp: dict, lay: ForkLayout):
    block = exp["models"]["BPRMF"]
    block["early_stopping"] = {"patience": 2}
    block["meta"]["early_stopping"] = {"patience": 3}


REFUSALS = [
    ("backend_tensorflow", _set("backend", "tensorflow"), ConfigError, r"backend.*tensorflow"),
    ("fork_model_simgcl", _only_model("external.SimGCL", {"epochs": 1, "factors": 8}),
     ConfigError, r"external\.SimGCL.*fork.*not implemented"),
    ("elliot_easer", _only_model("EASER", {"epochs": 1, "neighborhood": 10}), ConfigError,
     r"EASER.*not implemented"),
    ("meta_typo", _set("models.BPRMF.meta", {"validaton_rate": 1}), ConfigError,
     r"validaton_rate.*did you mean 'validation_rate'"),
    ("epochs_zero", _set("models.BPRMF.epochs", 0), ConfigError, r"epochs"),
    ("epochs_negative", _set("models.BPRMF.epochs", -3), ConfigError, r"epochs"),
    ("batch_size_zero", _set("models.BPRMF.batch_size", 0), ConfigError, r"batch_size"),
    ("factors_zero", _set("models.BPRMF.factors", 0), ConfigError, r"factors"),
    ("top_k_zero", _set("top_k", 0), ConfigError, r"top_k"),
    ("cutoff_zero", _set("evaluation.cutoffs", [0]), ConfigError, r"cutoffs"),
    ("k_core_zero", _set("prefiltering", [{"strategy": "user_k_core", "core": 0}]), ConfigError,
     r"prefiltering\[0\]\.core"),
    ("nan_rating", _nan_rating, DataError, r"train\.txt.*line 7.*nan"),
    ("early_stopping_twice", _early_stopping_twice, ConfigError, r"early_stopping.*both"),
    ("experiment_restore", _set("restore", True), ConfigError, r"experiment\.restore.*reuse_trials"),
    ("dataloader_chainedkg", _set("data_config.dataloader", "ChainedKG"), ConfigError,
     r"dataloader.*ChainedKG"),
    ("side_information_chainedkg", _set("data_config.side_information", [{"dataloader": "ChainedKG",
                                                                           "map": "../data/{0}/kg.tsv"}]),
     ConfigError, r"side_information\[0\]\.dataloader.*ChainedKG"),
]


@pytest.mark.parametrize("mutate, error, pattern", [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_refusal_is_one_line_before_training(layout, mutate, error, pattern):
    exp = base_experiment(layout)
    mutate(exp, layout)
    config = layout.write("refused", exp)
    with pytest.raises(error) as err:
        run_experiment(config, progress=False)
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message
    assert re.search(pattern, message), message
    assert not (layout.results / "history").exists()  # nothing trained
    assert not (layout.results / "trials").exists()


# ---- 6. sampled evaluation; complex metrics with clustering files ----------------------------------
def test_negative_sampling_and_complex_metrics(make_layout):
    metrics = ["Recall", "nDCG"]

    def experiment(lay: ForkLayout, negative_sampling=None, complex_metrics=None) -> dict:
        exp = {"dataset": lay.dataset, "top_k": 10, "data_config": fixed_data(False, False),
               "evaluation": {"cutoffs": [10], "simple_metrics": metrics},
               "models": {"BPRMF": {"meta": {"validation_rate": 1, "validation_metric": "Recall@10"},
                                    "epochs": 3, "batch_size": 128, "factors": 8, "lr": 0.01, "seed": 3}}}
        if negative_sampling:
            exp["negative_sampling"] = negative_sampling
        if complex_metrics:
            exp["evaluation"]["complex_metrics"] = complex_metrics
        return exp

    full, sampled = make_layout("full"), make_layout("sampled")
    train = np.array(full.splits["train.txt"])
    activity = np.bincount(train[:, 0], minlength=N_USERS)
    popularity = np.bincount(train[:, 1], minlength=N_ITEMS)
    (full.data / "user_clusters.tsv").write_text(
        "".join(f"{u}\t{int(activity[u] > np.median(activity))}\n" for u in range(N_USERS)))
    (full.data / "item_clusters.tsv").write_text(
        "".join(f"{i}\t{int(popularity[i] > np.median(popularity))}\n" for i in range(N_ITEMS)))
    complex_metrics = [
        {"metric": "UserMADranking", "clustering_name": "Activity", "clustering_file": "../data/{0}/user_clusters.tsv"},
        {"metric": "REO", "clustering_name": "Pop", "clustering_file": "../data/{0}/item_clusters.tsv"},
        {"metric": "RSP", "clustering_name": "Pop", "clustering_file": "../data/{0}/item_clusters.tsv"}]

    ranked = run_experiment(full.write("full", experiment(full, complex_metrics=complex_metrics)), progress=False)
    few = run_experiment(sampled.write("sampled", experiment(sampled, {"strategy": "random", "num_items": 20})),
                         progress=False)
    assert ranked.ran["BPRMF"] == few.ran["BPRMF"] == 1
    a = assert_finite_test(ranked, "BPRMF", [10], metrics)
    b = assert_finite_test(few, "BPRMF", [10], metrics)
    assert a.params == b.params  # same model, same seed: only the candidate items differ
    assert b.test[10]["Recall"] != a.test[10]["Recall"]
    assert b.test[10]["Recall"] > a.test[10]["Recall"]  # 20 negatives + the positives vs all 60 items

    expected = ["UserMADranking_Activity", "REO_items:Pop", "RSP_items:Pop",
                "REO-ProbToBeRanked_items:Pop-0", "REO-ProbToBeRanked_items:Pop-1",
                "RSP-ProbToBeRanked_items:Pop-0", "RSP-ProbToBeRanked_items:Pop-1"]
    for name in expected:
        assert math.isfinite(a.test[10][name]), name
    assert a.test[10]["UserMADranking_Activity"] >= 0
    rows = performance_table(full.results, 10)
    header = rows[0]
    assert header[:3] == ["model", *metrics]
    assert set(expected) <= set(header)
    (row,) = rows[1:]
    for name in expected:
        assert float(row[header.index(name)]) == pytest.approx(a.test[10][name], abs=1e-6)


# ---- 7. config_test: a dry run of every model on mock data before the real run ----------------------
def config_test_experiment(lay: ForkLayout, config_test: bool, freedom_factors: int = 16) -> dict:
    return {"backend": "pytorch", "config_test": config_test, "dataset": lay.dataset, "top_k": 10,
            "data_config": fixed_data(), "evaluation": {"cutoffs": [10], "simple_metrics": ["Recall", "nDCG"]},
            "external_models_path": "../external/models/__init__.py",
            "models": {
                "BPRMF": {"meta": {"validation_rate": 1}, "epochs": 2, "batch_size": 128, "factors": 8,
                          "lr": [0.01, 0.02], "seed": 4},
                "external.FREEDOM": {"meta": {"validation_rate": 1}, "epochs": 2, "batch_size": 128,
                                     "factors": freedom_factors, "factors_multimod": 16, "l_w": 0.001, "lr": 0.01,
                                     "top_k": 5, "mw": "(0.5,0.5)", "seed": 4}}}


def test_config_test_dry_run(make_layout, capsys):
    checked, plain = make_layout("checked"), make_layout("plain")
    result = run_experiment(checked.write("ct", config_test_experiment(checked, True)), progress=True)
    said = capsys.readouterr().out
    reference = run_experiment(plain.write("ct", config_test_experiment(plain, False)), progress=False)
    for model in ("BPRMF", "external.FREEDOM"):
        assert re.search(rf"config_test: {re.escape(model)} ran one epoch on mock data", said)
        best = assert_finite_test(result, model, [10], ["Recall", "nDCG"])
        assert best.epochs_run == 2  # the real run is the configured one
        for metric, value in reference.best[model].test[10].items():  # and the dry run changes nothing
            assert best.test[10][metric] == pytest.approx(value, abs=1e-9), (model, metric)
    assert len(result.trials["BPRMF"]) == 2
    # the dry run writes nothing next to the results (its trials have e=1)
    assert not [p for p in (checked.results / "history").iterdir() if "_e=1_" in p.name]
    assert {p.name for p in (checked.results / "history").iterdir()} == \
           {p.name for p in (plain.results / "history").iterdir()}


def test_config_test_stops_a_broken_model_before_the_real_data(layout):
    """FREEDOM with l_w > 0 needs factors == factors_multimod: the dry run says so before BPRMF trains."""
    exp = config_test_experiment(layout, True, freedom_factors=8)
    with pytest.raises(ConfigError) as err:
        run_experiment(layout.write("ct_broken", exp), progress=False)
    message = str(err.value)
    assert "\n" not in message
    assert re.search(r"config_test.*external\.FREEDOM.*factors_multimod", message)
    assert not (layout.results / "history").exists()
