"""benchmarks/seed_spread.py: the copy it trains (selected point pinned, seed the only axis) and its doc; the
training itself needs ../shared and is a measurement, not a unit test."""
from __future__ import annotations

import json

import pytest
import yaml

from benchmarks import seed_spread as ss

FREEDOM = ss.ROOT / "config_files" / "bench" / "mmrec_protocol" / "freedom_tiktok.yml"
BASELINES = ss.ROOT / "config_files" / "bench" / "mmrec_protocol" / "baselines_tiktok.yml"


def test_copy_pins_the_selected_point_and_grids_the_seed_only():
    rec = json.loads(ss.RESULTS.read_text())["mmrec_protocol/freedom_tiktok.yml::external.FREEDOM"]
    chosen = next(t["params"] for t in rec["trials"] if t["name"] == rec["best"])
    block = ss.seeded_config(FREEDOM, [1, 2, 3])["experiment"]["models"]["external.FREEDOM"]
    original = yaml.safe_load(FREEDOM.read_text())["experiment"]["models"]["external.FREEDOM"]
    assert isinstance(original["l_w"], list) and block["l_w"] == chosen["l_w"]
    assert block["drop"] == chosen["drop"] and block["seed"] == [1, 2, 3]
    axes = [k for k, v in block.items() if isinstance(v, list) and k not in ("mw",)]
    assert axes == ["seed"]  # mw is a list-valued parameter, not an axis


def test_one_model_of_several_and_a_clear_error_for_an_unknown_one():
    models = ss.seeded_config(BASELINES, [7], model="LightGCN")["experiment"]["models"]
    assert list(models) == ["LightGCN"] and models["LightGCN"]["seed"] == [7]
    with pytest.raises(SystemExit, match="no model 'LightGCM'"):
        ss.seeded_config(BASELINES, [7], model="LightGCM")


def test_doc_counts_the_stored_row_once(tmp_path, monkeypatch):
    monkeypatch.setattr(ss, "DOC", tmp_path / "seed_spread.md")
    runs = {"x::FREEDOM": {"model": "FREEDOM", "dataset": "tiktok", "protocol": "mmrec", "config": "c.yml",
                           "commit": "abc", "date": "2026-12-07",
                           "stored": {"seed": 42, "test": 0.10},
                           "seeds": [{"seed": 1, "test": 0.12}, {"seed": 42, "test": 0.10}]}}
    monkeypatch.setattr(ss, "mmrec_here", lambda model: 0.13)
    ss.write_doc(runs)
    row = (tmp_path / "seed_spread.md").read_text().splitlines()[-1]
    # values 0.10 and 0.12: mean 0.11, sample sd 0.0141, MMRec 0.13 lies +1.4 sd above
    assert "| 0.1000 | 1: 0.1200 | 0.1100 | 0.0141 | 0.1000 - 0.1200 | 0.1300 | +1.4 |" in row and row.endswith("|  |")


def test_an_axis_spelled_with_an_alias_is_pinned_too():
    smore = ss.ROOT / "config_files" / "bench" / "mmrec_protocol" / "smore_tiktok.yml"
    original = yaml.safe_load(smore.read_text())["experiment"]["models"]["external.SMORE"]
    assert isinstance(original["reg_weight"], list)  # MMRec's name of l_w
    rec = json.loads(ss.RESULTS.read_text())["mmrec_protocol/smore_tiktok.yml::external.SMORE"]
    chosen = next(t["params"] for t in rec["trials"] if t["name"] == rec["best"])
    block = ss.seeded_config(smore, [1])["experiment"]["models"]["external.SMORE"]
    assert block["reg_weight"] == chosen["l_w"]


def test_a_run_keeps_the_entry_another_process_stored_meanwhile(tmp_path, monkeypatch):
    """Two spreads of different configs run at once: the one that ends last must not drop the other's entry
    (the store is re-read under its lock when a run ends, not when it starts)."""
    monkeypatch.setattr(ss, "RUNS", tmp_path / "runs.json")
    monkeypatch.setattr(ss, "DOC", tmp_path / "seed_spread.md")
    monkeypatch.setattr(ss, "mmrec_here", lambda model: None)
    entry = {"model": "M", "dataset": "tiktok", "protocol": "mmrec", "config": "c.yml", "commit": "abc",
             "date": "2026-12-07", "stored": {"seed": 42, "test": 0.10}, "seeds": [{"seed": 1, "test": 0.11}]}
    ss.RUNS.write_text(json.dumps({"old::M": entry}))

    def run(config, seeds, model, work):  # another process finishes its spread while this one trains
        stored = json.loads(ss.RUNS.read_text())
        ss.RUNS.write_text(json.dumps({**stored, "other::M": entry}))
        return {"mine::M": entry}

    monkeypatch.setattr(ss, "run", run)
    ss.main([str(FREEDOM), "--seeds", "1", "--work", str(tmp_path)])
    assert set(json.loads(ss.RUNS.read_text())) == {"old::M", "other::M", "mine::M"}
