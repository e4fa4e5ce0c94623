"""benchmarks/mmrec_same_host.py (MMRec next to ours on one host): the model pairs, the settings passed to
MMRec and the doc, without MMRec (the measurement itself needs a checkout and is not a unit test)."""
from __future__ import annotations

import json

import pytest
import yaml

from benchmarks import mmrec_same_host as msh
from benchmarks import performance

BENCH = msh.ROOT / "config_files" / "bench"


@pytest.mark.parametrize("name", list(msh.MODELS))
def test_same_host_pair_points_at_a_bench_model(name):
    pair = msh.MODELS[name]
    cfg = yaml.safe_load((BENCH / pair.config).read_text())
    models = cfg["experiment"]["models"]
    ours = [k for k in models if k.split(".")[-1] == pair.ours]
    assert ours, f"{pair.config} has no model {pair.ours}"
    assert not any(isinstance(v, (list, tuple)) and k != "learning_rate_scheduler" and len(v) != 1
                   for k, v in pair.params.items()), "one MMRec configuration per pair"
    # the shared settings: 64 factors and batch 2048 on our side (MMRec gets them in mmrec_run)
    block = models[ours[0]]
    assert block.get("batch_size") == 2048
    assert (block.get("factors") or block.get("embedding_size")) == 64


def test_same_host_skipped_models_are_not_pairs():
    assert not set(msh.SKIPPED) & set(msh.MODELS)
    assert all(len(v) == 3 and v[2] for v in msh.SKIPPED.values())


def _fake_mmrec(tmp_path, model, spec):
    folder = tmp_path / "src" / "configs" / "model"
    folder.mkdir(parents=True)
    (folder / f"{model}.yaml").write_text(yaml.safe_dump(spec))
    return tmp_path


def test_same_host_overrides_wrap_axes_and_narrow_the_rest(tmp_path):
    mmrec = _fake_mmrec(tmp_path, "X", {"n_layers": [1, 2], "reg_weight": ["1e-04", 0.1], "dropout": [0.3, 0.5],
                                        "cl_weight": 2.0, "hyper_parameters": ["n_layers", "reg_weight", "dropout"]})
    out, narrowed = msh.mmrec_overrides(mmrec, "X", {"n_layers": 1, "dropout": [0.3], "cl_weight": 2.0,
                                                     "learning_rate_scheduler": [0.96, 50]})
    assert out == {"n_layers": [1], "dropout": [0.3], "cl_weight": 2.0, "reg_weight": [1e-4],
                   "learning_rate_scheduler": [0.96, 50]}
    assert narrowed == ["reg_weight 0.0001"]


def _record(mm, before, after, **extra):
    return {"mmrec": {"epoch_s": mm, "epoch_s_all": [mm] * 3, "eval_s": 0.5, "threads": 1},
            "ours_before": {"epoch_s": before, "epoch_s_all": [9.0, before], "threads": 1},
            "ours_after": {"epoch_s": after, "epoch_s_all": [9.0, after], "threads": 1},
            "mmrec_params": {"reg_weight": [1e-4]}, "mmrec_commit": "abc", "when": "now", "load": [3.0, 4.0],
            **extra}


def test_same_host_doc_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(msh, "DOC", tmp_path / "doc.md")
    runs = {"BPR": _record(1.0, 0.2, 0.3, earlier=[_record(0.5, 0.2, 0.2)]),
            "GRCN": _record(2.0, 1.0, 1.0, narrowed=["reg 0.1"]), "MGCN": {"error": "boom", "when": "now"}}
    msh.write_doc(runs)
    text = (tmp_path / "doc.md").read_text()
    assert "| BPR / BPRMF | 1.00 | 3 | 0.200 | 0.300 | 4.0x | yes | 5.0x |" in text
    assert "| GRCN / GRCN | 2.00 | 3 | 1.000 | 1.000 | 2.0x | **no** |" in text
    assert "narrowed to MMRec's first value: reg 0.1" in text
    assert "| MGCN / MGCN | failed: boom |" in text
    assert "| BPR / BPRMF | 0.50 | 3 | 0.200 | 0.200 | 2.5x |" in text  # the earlier run
    assert "3.0 → 4.0" in text and "**DA-MRS**" in text


def test_same_host_stored_runs_render(tmp_path, monkeypatch):
    monkeypatch.setattr(msh, "DOC", tmp_path / "doc.md")
    runs = json.loads(msh.RUNS.read_text())
    msh.write_doc(runs)
    text = (tmp_path / "doc.md").read_text()
    for name, r in runs.items():
        if "mmrec" in r:
            assert f"| {name} / {msh.MODELS[name].ours} | {r['mmrec']['epoch_s']:.2f} |" in text


def test_performance_doc_has_the_mmrec_side_by_side_section(tmp_path):
    path = tmp_path / "runs.json"
    path.write_text(json.dumps({"BPR": _record(1.0, 0.2, 0.3), "MGCN": {"error": "boom"}}))
    lines = performance.mmrec_side_by_side(path)
    assert lines[0] == "## MMRec side by side"
    assert "| BPR / BPRMF | 1.00 | 0.250 | 4.0x | yes | 5.0x | 1 / 1 | 3.0 → 4.0 | now |" in lines
    assert any("DA-MRS" in line and "failed in the last run: MGCN" in line for line in lines)
    assert performance.mmrec_side_by_side(tmp_path / "missing.json") == []


def test_accuracy_schedule_follows_our_stopping_rule():
    from benchmarks import mmrec_same_host_accuracy as acc
    s = acc.our_schedule("bm3_tiktok.yml", "BM3")
    assert s == {"epochs": 300, "validation_rate": 5, "patience": 6}


def test_accuracy_parses_mmrec_result_lines_and_writes_the_doc(tmp_path, monkeypatch):
    from benchmarks import mmrec_same_host_accuracy as acc
    line = "recall@10: 0.0312    recall@20: 0.0482    ndcg@20: 0.0201    precision@20: 0.0024    "
    assert acc.parse_metrics(line) == {"recall@10": 0.0312, "recall@20": 0.0482, "ndcg@20": 0.0201,
                                       "precision@20": 0.0024}
    monkeypatch.setattr(acc, "DOC", tmp_path / "acc.md")
    ok = {"mmrec": {"valid": {"recall@20": 0.0473}, "test": {"recall@20": 0.0482}, "best_epoch": 60,
                    "epochs_run": 80, "train_s": 70.0},
          "ours": {"same": {"test": 0.0501, "valid": 0.0460, "best_epoch": 10, "epochs_run": 30, "name": "x"},
                   "selected": {"test": 0.0501, "valid": 0.0460, "best_epoch": 10, "epochs_run": 30, "name": "x"},
                   "trials": 4},
          "mmrec_params": {"reg_weight": [1e-4]}, "schedule": {"epochs": 300, "validation_rate": 5, "patience": 4},
          "when": "now"}
    acc.write_doc({"BPR": ok, "VBPR": {"error": "boom\nline two | pipe"}})
    text = (tmp_path / "acc.md").read_text()
    row = next(l for l in text.splitlines() if l.startswith("| BPR / BPRMF"))
    assert "| 0.0482 | 0.0473 | 60 / 80 | 0.0501 |" in row and "-0.0019" in row
    failed = next(l for l in text.splitlines() if l.startswith("| VBPR / VBPR"))
    assert "boom line two / pipe" in failed
    assert "LightGCN" in text.split("Not run yet")[1]


def test_accuracy_reads_a_finished_run_from_mmrecs_log():
    from benchmarks import mmrec_same_host_accuracy as acc
    log = ("Wed INFO epoch 0 training [time: 1.50s, train loss: 9.1]\n"
           "Wed INFO epoch 4 training [time: 1.20s, train loss: 7.0]\n"
           "Wed INFO epoch 4 evaluating [time: 0.80s, valid_score: 0.040000]\n"
           "Wed INFO test result: \nrecall@20: 0.0300    \n"
           "Wed INFO +++++Finished training, best eval result in epoch 4\n"
           "Wed INFO best valid result: recall@20: 0.0400    ndcg@20: 0.0200    \n"
           "Wed INFO test result: recall@20: 0.0350    ndcg@20: 0.0150    \n")
    out = acc.parse_log(log)
    assert out["valid"] == {"recall@20": 0.04, "ndcg@20": 0.02} and out["test"] == {"recall@20": 0.035, "ndcg@20": 0.015}
    assert (out["best_epoch"], out["epochs_run"], out["stopped_early"], out["train_s"]) == (5, 5, True, 2.7)
    with pytest.raises(RuntimeError, match="did not finish"):
        acc.parse_log(log.split("Wed INFO best valid")[0])


def test_accuracy_only_pairs_are_compared_but_never_timed(capsys):
    assert set(msh.ACCURACY_ONLY) <= set(msh.PAIRS) and not set(msh.ACCURACY_ONLY) & set(msh.MODELS)
    for name, pair in msh.ACCURACY_ONLY.items():
        models = yaml.safe_load((BENCH / pair.config).read_text())["experiment"]["models"]
        assert any(k.split(".")[-1] == pair.ours for k in models)
    from benchmarks import mmrec_same_host_accuracy as acc
    assert acc.our_schedule("itemknncbf_tiktok.yml", "ItemKNNCBF") == {"epochs": 1, "validation_rate": 1,
                                                                       "patience": 1}
    with pytest.raises(SystemExit):
        msh.main(["--mmrec", "/nowhere", "--models", "ItemKNNCBF"])
    assert "no training epoch to time (only with --accuracy)" in capsys.readouterr().err
