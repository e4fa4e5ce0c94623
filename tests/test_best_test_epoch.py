"""benchmarks/best_test_epoch.py: the copy it trains (validation = test, every epoch, grid pinned to our
validation's choice); the training itself needs ../shared and is a diagnostic, not a unit test."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from benchmarks import best_test_epoch as bte

GRCN = bte.ROOT / "config_files" / "bench" / "mmrec_protocol" / "grcn_tiktok.yml"


def test_copy_validates_on_test_every_epoch_at_the_selected_point():
    runs = json.loads((bte.ROOT / "benchmarks" / "results_runs.json").read_text())
    rec = runs["mmrec_protocol/grcn_tiktok.yml::external.GRCN"]
    chosen = next(t["params"] for t in rec["trials"] if t["name"] == rec["best"])
    exp = bte.test_selected_config(GRCN, epochs=7, patience=3)["experiment"]
    data = exp["data_config"]
    assert data["validation_path"] == data["test_path"]
    assert Path(data["train_path"]).is_absolute() and data["train_path"].endswith("{0}/train.tsv")
    assert all(Path(s[k]).is_absolute() for s in data["side_information"] for k in s if k.endswith("_features"))
    block = exp["models"]["external.GRCN"]
    original = yaml.safe_load(GRCN.read_text())["experiment"]["models"]["external.GRCN"]
    assert isinstance(original["lr"], list) and block["lr"] == chosen["lr"]  # the grid axis is pinned
    assert block["epochs"] == 7
    assert block["meta"]["validation_rate"] == 1 and block["meta"]["early_stopping"]["patience"] == 3


def test_config_without_stored_run_is_a_clear_error(tmp_path):
    cfg = tmp_path / "nothing_stored.yml"
    cfg.write_text(yaml.safe_dump({"experiment": {"dataset": "x", "data_config": {
        "strategy": "fixed", "train_path": "a/train.tsv", "test_path": "a/test.tsv"},
        "models": {"BPRMF": {"epochs": 1}}}}))
    with pytest.raises(SystemExit, match="no stored run"):
        bte.test_selected_config(cfg, None)


def test_curves_and_record_from_a_results_folder(tmp_path):
    hist = tmp_path / "history"
    hist.mkdir()
    (hist / "GRCN_lr=0$005.tsv").write_text("epoch\tloss\tval_Recall@20\n1\t0.4\t0.0300\n2\t0.3\t0.0700\n"
                                          "3\t0.2\t0.0650\n")
    (hist / "GRCN_lr=0$001.tsv").write_text("epoch\tloss\tval_Recall@20\n1\t0.4\t0.0200\n2\t0.3\t\n"
                                          "3\t0.2\t0.0720\n")
    trials = bte.curves(tmp_path)
    assert [(t["trial"], t["best_epoch"], t["best"]) for t in trials] == [
        ("GRCN_lr=0$001", 3, 0.072), ("GRCN_lr=0$005", 2, 0.07)]  # rows without a validation value skipped
    raw = bte.test_selected_config(GRCN, epochs=7, patience=3, keep_grid=True)
    (key, rec), = bte.record(GRCN, raw, trials, True, 3).items()
    assert key == "mmrec_protocol/grcn_tiktok.yml::external.GRCN"
    assert rec["grid"] and rec["protocol"] == "mmrec" and rec["dataset"] == "tiktok"
    assert (rec["best"], rec["best_epoch"], rec["best_trial"]) == (0.072, 3, "GRCN_lr=0$001")


def test_curves_name_a_long_trial_by_its_full_name_from_the_trials_store(tmp_path):
    """A long configuration name is cut to a file stem for its history file; the diagnostic records the full
    name (read back from the run's trials store), so it can be compared with the table's selected trial."""
    from elliot.search.store import FORMAT, TrialStore
    from elliot.utils.paths import file_stem

    name = "DiffMM_" + "_".join(f"p{i}={i}" for i in range(60))
    (tmp_path / "history").mkdir()
    (tmp_path / "history" / f"{file_stem(name)}.tsv").write_text("epoch\tloss\tval_Recall@20\n1\t0.4\t0.0500\n")
    TrialStore(tmp_path / "trials", "external.DiffMM").append(
        {"format": FORMAT, "key": "k1", "status": "ok", "result": {"name": name, "model": "external.DiffMM"}})
    (trial,) = bte.curves(tmp_path)
    assert trial["trial"] == name and trial["best"] == 0.05
