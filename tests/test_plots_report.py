"""Plots (``results/<dataset>/plots/``) and ``report.html`` after an experiment and from ``python -m elliot.plots``.

Two tiny experiments on generated data: a ranking one (a BPRMF grid, MostPop, VBPR under an FGSM ε sweep on
each modality, paired t-test and Wilcoxon) and a rating one (a BiasedMF grid and GlobalMean with saved
predictions).  Every PNG must decode, each plot kind must be written when its inputs exist and only then,
and the report must parse, carry the tables and embed every plot.
"""
import base64
import io
import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from PIL import Image

from elliot.run import run_experiment

ROOT = Path(__file__).resolve().parents[1]


def _experiment(folder: Path, name: str, exp: dict) -> Path:
    (folder / "config_files").mkdir(parents=True, exist_ok=True)
    path = folder / "config_files" / f"{name}.yml"
    path.write_text(yaml.safe_dump({"experiment": {"dataset": name, **exp}}))
    return path


def _ranking_config(folder: Path) -> Path:
    from elliot.dataset.generator import generate, split_per_user

    users, items, ts, visual, textual, _ = generate(n_users=60, n_items=40, dim=4, mean_extra=6, visual_dim=6,
                                                    textual_dim=4, seed=3)
    part = split_per_user(users, ts, val_ratio=0.15, test_ratio=0.2)
    data = folder / "data" / "tiny"
    data.mkdir(parents=True)
    for code, split in ((0, "train"), (1, "val"), (2, "test")):
        m = part == code
        rows = zip(users[m], items[m], ts[m])
        (data / f"{split}.tsv").write_text("".join(f"u{u}\t{i}\t1\t{t}\n" for u, i, t in rows))
    np.save(data / "visual.npy", visual)
    np.save(data / "textual.npy", textual)
    return _experiment(folder, "tiny", {
        "data_config": {"strategy": "fixed", "train_path": "../data/{0}/train.tsv",
                        "validation_path": "../data/{0}/val.tsv", "test_path": "../data/{0}/test.tsv",
                        "side_information": [
                            {"dataloader": "VisualAttribute", "visual_features": "../data/{0}/visual.npy"},
                            {"dataloader": "TextualAttribute", "textual_features": "../data/{0}/textual.npy"}]},
        "top_k": 10,
        "evaluation": {"cutoffs": [10], "simple_metrics": ["Recall", "nDCG"],
                       "paired_ttest": True, "wilcoxon_test": True,
                       "attacks": [{"method": "fgsm_l2", "modality": "each", "eps_ratio": [0.01, 0.1]}]},
        "models": {"MostPop": {},
                   "BPRMF": {"meta": {"validation_metric": "Recall@10"}, "epochs": 3, "factors": 8,
                             "lr": [0.005, 0.05], "seed": 1},
                   "external.VBPR": {"meta": {"validation_metric": "Recall@10"}, "epochs": 2, "factors": 8,
                                     "modalities": ["visual", "textual"], "seed": 1}}})


def _rating_config(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    p, q = rng.normal(0, 0.6, (50, 3)), rng.normal(0, 0.6, (30, 3))
    users, items = np.nonzero(rng.random((50, 30)) < 0.3)
    stars = np.clip(np.rint(3.5 + (p[users] * q[items]).sum(1) + rng.normal(0, 0.3, len(users))), 1, 5)
    test = rng.random(len(users)) < 0.2
    data = folder / "data" / "stars"
    data.mkdir(parents=True)
    for split, m in (("train", ~test), ("test", test)):
        (data / f"{split}.tsv").write_text("".join(f"user_{u}\titem_{i}\t{int(r)}\n"
                                                   for u, i, r in zip(users[m], items[m], stars[m])))
    return _experiment(folder, "stars", {
        "data_config": {"strategy": "fixed", "train_path": "../data/{0}/train.tsv",
                        "test_path": "../data/{0}/test.tsv"},
        "splitting": {"validation_splitting": {"strategy": "random_subsampling", "test_ratio": 0.1}},
        "evaluation": {"cutoffs": [10], "simple_metrics": ["RMSE", "MAE"]},
        "models": {"GlobalMean": {"meta": {"save_recs": True}},
                   "BiasedMF": {"meta": {"validation_metric": "RMSE", "save_recs": True}, "epochs": 4, "factors": 4,
                                "lr": 0.01, "reg": [0.02, 0.5], "seed": 1}}})


@pytest.fixture(scope="module")
def ranking(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ranking")
    result = run_experiment(_ranking_config(folder), progress=False)
    return result, folder / "results" / "tiny"


@pytest.fixture(scope="module")
def rating(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rating")
    result = run_experiment(_rating_config(folder), progress=False)
    return result, folder / "results" / "stars"


def _decodes(data: bytes) -> tuple:
    with Image.open(io.BytesIO(data)) as im:
        im.verify()
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        assert im.format == "PNG" and im.width >= 300 and im.height >= 200
        return im.size


def _pngs(folder: Path) -> dict:
    plots = folder / "plots"
    return {p.relative_to(plots).as_posix(): _decodes(p.read_bytes()) for p in plots.rglob("*.png")}


class _Report(HTMLParser):
    """Tables (rows of cell texts), images (src), headings and links of report.html."""

    def __init__(self):
        super().__init__()
        self.tables, self.images, self.headings, self.external = [], [], [], []
        self._cell = self._heading = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag in ("h1", "h2", "h3"):
            self._heading = ""
        elif tag == "img":
            self.images.append(attrs)
        if tag in ("link", "script") or (tag == "img" and not attrs.get("src", "").startswith("data:")):
            self.external.append((tag, attrs))

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self._cell.strip())
            self._cell = None
        elif tag in ("h1", "h2", "h3"):
            self.headings.append(self._heading.strip())
            self._heading = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        if self._heading is not None:
            self._heading += data


def _report(folder: Path) -> _Report:
    parser = _Report()
    parser.feed((folder / "report.html").read_text(encoding="utf-8"))
    parser.close()
    return parser


def _table_with(report: _Report, header: list) -> list:
    return [t for t in report.tables if t and t[0][:len(header)] == header]


def test_every_ranking_plot_kind_is_written_and_decodes(ranking):
    result, folder = ranking
    pngs = _pngs(folder)
    curves = {n for n in pngs if n.startswith("training/")}
    trained = [t for rs in result.trials.values() for t in rs if t.epochs_run]
    assert len(curves) == len(trained) == 3  # two BPRMF trials and VBPR; MostPop trains nothing
    assert {"selected_cutoff_10.png", "search_BPRMF.png", "attack_VBPR_cutoff_10.png"} <= set(pngs)
    assert not any(n.startswith(("search_MostPop", "search_VBPR", "attack_BPRMF", "rating")) for n in pngs)
    assert len(pngs) == 3 + 3
    assert str(folder / "report.html") in map(str, result.files)


def test_the_data_summary_is_written(ranking):
    result, folder = ranking
    summary = json.loads((folder / "data_summary.json").read_text())
    train = sum(1 for _ in open(folder.parents[1] / "data" / "tiny" / "train.tsv"))
    assert summary["users"] == 60 and summary["items"] == 40 and summary["item_catalogue"] == "train"
    assert summary["splits"]["train"]["interactions"] == train
    assert set(summary["splits"]) == {"train", "validation", "test"}
    assert summary["modalities"] == {"visual": {"dim": 6}, "textual": {"dim": 4}}


def test_the_report_has_the_tables_and_embeds_every_plot(ranking):
    result, folder = ranking
    report = _report(folder)
    assert not report.external  # self-contained: no stylesheet, script or image from elsewhere
    sizes = sorted(_decodes(base64.b64decode(img["src"].split(",", 1)[1])) for img in report.images)
    assert sizes == sorted(_pngs(folder).values())  # every plot, once
    assert all(img["src"].startswith("data:image/png;base64,") and img.get("alt") for img in report.images)
    for heading in ("Data", "Protocol", "Test results", "Significance tests", "Selected configurations",
                    "Training curves", "Hyperparameter searches", "Robustness", "Cutoff 10"):
        assert heading in report.headings
    splits = _table_with(report, ["split", "interactions", "users", "items"])[0]
    summary = json.loads((folder / "data_summary.json").read_text())
    assert splits[1] == ["train", str(summary["splits"]["train"]["interactions"]), "60", "40"]
    assert _table_with(report, ["modality", "dimensions"])[0][1][:2] == ["visual", "6"]
    protocol = {row[0]: row[1] for t in report.tables for row in t if len(row) == 2}
    assert "validation items are masked at test" in protocol["masking"]
    assert protocol["cutoffs"] == "10" and "paired t-test" in protocol["significance tests"]
    finals = _table_with(report, ["model", "configuration", "Recall", "nDCG", "best epoch"])
    assert len(finals) == 1  # one per cutoff
    by_model = {row[0]: row for row in finals[0][1:]}
    assert set(by_model) == {"MostPop", "BPRMF", "VBPR"}
    best = result.best["BPRMF"]
    assert by_model["BPRMF"][1] == best.name
    assert by_model["BPRMF"][2] == f"{best.test[10]['Recall']:.4f}"
    assert by_model["BPRMF"][4] == str(best.best_epoch)
    assert len(_table_with(report, ["model A", "model B", "Recall"])) == 2  # the t-test and Wilcoxon
    attacked = _table_with(report, ["model", "attack", "modalities", "budget", "cutoff", "Recall clean"])[0]
    assert {(row[2], row[3]) for row in attacked[1:]} == {(m, f"eps_ratio={e}") for m in ("visual", "textual")
                                                         for e in (0.01, 0.1)}
    skipped = _table_with(report, ["model", "attack", "skipped because"])[0]
    assert {row[0] for row in skipped[1:]} == {"MostPop", "BPRMF"}


def test_a_rating_run_gets_predicted_vs_true(rating):
    result, folder = rating
    pngs = _pngs(folder)
    assert {"rating_predicted_vs_true.png", "selected_cutoff_10.png", "search_BiasedMF.png"} <= set(pngs)
    assert not any(n.startswith("attack_") for n in pngs)
    assert len([n for n in pngs if n.startswith("training/")]) == 2  # the BiasedMF grid; GlobalMean trains nothing
    report = _report(folder)
    assert "Rating predictions" in report.headings and "Every test pair" in report.headings
    assert "Robustness" not in report.headings and "Significance tests" not in report.headings
    assert len(report.images) == len(pngs)
    finals = _table_with(report, ["model", "configuration", "RMSE", "MAE"])[0]
    assert {row[0] for row in finals[1:]} == {"BiasedMF", "GlobalMean"}


def test_the_cli_redraws_an_old_results_folder(ranking, tmp_path, capsys):
    """An old folder: no plots, no report, no data summary, no trial records (the history TSVs are read)."""
    _, folder = ranking
    old = tmp_path / "results" / "tiny"
    shutil.copytree(folder, old)
    written = _pngs(folder)
    for path in ("plots", "trials"):
        shutil.rmtree(old / path)
    for path in ("report.html", "data_summary.json"):
        (old / path).unlink()
    (old / "plots" / "training").mkdir(parents=True)
    (old / "plots" / "training" / "stale.png").write_bytes((folder / "plots" / "selected_cutoff_10.png").read_bytes())
    from elliot.plots import main

    assert main([str(tmp_path / "results")]) == 0  # a folder of results folders: each is drawn
    assert "report" in capsys.readouterr().out
    again = _pngs(old)
    assert "training/stale.png" not in again  # a PNG of a configuration no longer in the run is removed
    assert set(again) == set(written) - {"search_BPRMF.png"}  # a search plot needs the trial records
    report = _report(old)
    assert len(report.images) == len(again)
    assert "data_summary.json" in (old / "report.html").read_text()


def test_the_cli_says_what_is_wrong_in_one_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "elliot.plots", str(tmp_path)], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0 and str(tmp_path) in run.stderr and "not a results folder" in run.stderr


def test_validation_curves_still_draw_trial_results(tmp_path):
    """The notebook's call (elliot.results.plots.validation_curves on TrialResult objects)."""
    from elliot.results.plots import validation_curves

    runs = {name: SimpleNamespace(best_epoch=2, history=[{"epoch": e, "loss": 1.0 / e, "val_Recall@20": v}
                                                         for e, v in ((1, 0.1), (2, 0.3), (3, 0.2))])
            for name in ("LightGCNM", "LATTICE")}
    path = validation_curves(runs, "Recall@20", tmp_path / "v.png", title="validation Recall@20")
    _decodes(path.read_bytes())
