"""The trials file: round trip, keys, and corrupt or partial records detected (never used)."""
import json

import numpy as np
import pytest

from elliot.config.schema import Meta, ModelSpec
from elliot.search.store import (TrialStore, dataset_fingerprint, per_user_bytes, protocol_fingerprint,
                                 record_to_result, result_to_record, trial_key)
from elliot.trial import TrialResult
from tests.helpers import random_dataset


def make_result(lr=0.01, seed=0):
    rng = np.random.default_rng(seed)
    return TrialResult(
        model="BPRMF", name=f"BPRMF_lr={lr}", params={"epochs": 3, "lr": lr, "modalities": ["visual"], "flag": True},
        selected_on="validation", best_epoch=2, epochs_run=3, seconds_per_epoch=0.125, train_seconds=0.4,
        validation={10: {"Recall": 0.1, "nDCG": 0.05}, 20: {"Recall": 1 / 3, "nDCG": float("nan")}},
        test={10: {"Recall": 0.2, "nDCG": 0.1}, 20: {"Recall": 0.30000000000000004, "nDCG": 0.15}},
        history=[{"epoch": 1, "loss": 0.69, "seconds": 0.1}, {"epoch": 2, "loss": 0.5, "seconds": 0.1,
                                                               "val_Recall@20": 1 / 3}],
        test_per_user={10: {"Recall": rng.random(7), "nDCG": rng.random(7)}, 20: {"Recall": rng.random(7)}},
        test_users=np.arange(7), attacks=[{"name": "fgsm", "cutoff": 20, "values": {"Recall": np.float64(0.1)}}],
        extra={"note": "x"})


def write(store, result, key="k1"):
    store.append(result_to_record(result, key, "proto", wall_seconds=1.5), per_user_bytes(result))


def test_round_trip(tmp_path):
    result = make_result()
    write(TrialStore(tmp_path, "BPRMF"), result)
    store = TrialStore(tmp_path, "BPRMF").load()
    assert len(store) == 1 and not store.corrupt
    record, per_user = store.get("k1")
    assert record["status"] == "ok" and record["wall_seconds"] == 1.5 and record["protocol"] == "proto"
    back = record_to_result(record, per_user)
    for field in ("model", "name", "params", "selected_on", "best_epoch", "epochs_run", "seconds_per_epoch",
                  "train_seconds", "history", "test"):
        assert getattr(back, field) == getattr(result, field), field
    assert back.validation[10] == result.validation[10] and np.isnan(back.validation[20]["nDCG"])
    assert back.validation[20]["Recall"] == 1 / 3  # exact float round trip
    assert back.attacks[0]["values"]["Recall"] == 0.1
    assert back.extra["restored"] and back.extra["note"] == "x"
    np.testing.assert_array_equal(back.test_users, result.test_users)
    for k in result.test_per_user:
        for m in result.test_per_user[k]:
            np.testing.assert_array_equal(back.test_per_user[k][m], result.test_per_user[k][m])
    assert store.get("other") is None
    line = json.loads(store.path.read_text().splitlines()[0])
    assert set(line) == {"sha256", "record"} and line["record"]["result"]["params"]["lr"] == 0.01  # readable


def test_partial_last_line_is_ignored_and_appending_goes_on(tmp_path):
    store = TrialStore(tmp_path, "BPRMF")
    write(store, make_result(0.1), "k1")
    write(store, make_result(0.2), "k2")
    text = store.path.read_bytes()
    store.path.write_bytes(text[: len(text) - 40])  # a writer killed in the middle of the second record
    loaded = TrialStore(tmp_path, "BPRMF").load()
    assert loaded.keys() == {"k1"} and len(loaded.corrupt) == 1 and "interrupted" in loaded.corrupt[0]
    write(loaded, make_result(0.2), "k2")  # the re-run trial starts on a fresh line
    again = TrialStore(tmp_path, "BPRMF").load()
    assert again.keys() == {"k1", "k2"} and len(again.corrupt) == 1
    assert record_to_result(*again.get("k2")).params["lr"] == 0.2


def test_altered_records_are_detected(tmp_path):
    store = TrialStore(tmp_path, "BPRMF")
    write(store, make_result(0.1), "k1")
    write(store, make_result(0.2), "k2")
    lines = store.path.read_text().splitlines()
    store.path.write_text(lines[0].replace('"Recall": 0.2', '"Recall": 0.9') + "\n" + lines[1] + "\n"
                          + "garbage\n" + json.dumps({"sha256": "x", "record": {}}) + "\n")
    loaded = TrialStore(tmp_path, "BPRMF").load()
    assert loaded.keys() == {"k2"}
    assert len(loaded.corrupt) == 3 and "checksum mismatch" in loaded.corrupt[0]


def test_missing_or_altered_per_user_file_means_the_trial_runs_again(tmp_path):
    store = TrialStore(tmp_path, "BPRMF")
    write(store, make_result(0.1), "k1")
    write(store, make_result(0.2), "k2")
    (tmp_path / "per_user" / "k1.npz").unlink()
    blob = (tmp_path / "per_user" / "k2.npz").read_bytes()
    (tmp_path / "per_user" / "k2.npz").write_bytes(blob[:-10] + b"0123456789")
    loaded = TrialStore(tmp_path, "BPRMF").load()
    assert loaded.get("k1") is None and loaded.get("k2") is None
    assert any("missing" in c for c in loaded.corrupt) and any("checksum" in c for c in loaded.corrupt)


def test_newest_record_of_a_key_wins(tmp_path):
    store = TrialStore(tmp_path, "BPRMF")
    write(store, make_result(0.1), "k1")
    newer = make_result(0.1)
    newer.best_epoch = 3
    write(store, newer, "k1")
    assert record_to_result(*TrialStore(tmp_path, "BPRMF").load().get("k1")).best_epoch == 3


def test_diverged_record(tmp_path):
    store = TrialStore(tmp_path, "BPRMF")
    store.append(result_to_record(None, "k9", "proto", status="diverged", error="loss became nan"))
    record, per_user = TrialStore(tmp_path, "BPRMF").load().get("k9")
    assert record["status"] == "diverged" and record["error"] == "loss became nan" and per_user is None


def test_keys_and_fingerprints():
    params = {"lr": 0.01, "factors": 8, "modalities": ["visual"]}
    key = trial_key("BPRMF", params, "p")
    assert key == trial_key("BPRMF", dict(reversed(list(params.items()))), "p")  # order does not matter
    assert key != trial_key("BPRMF", {**params, "lr": 0.010000001}, "p")
    assert key != trial_key("LightGCN", params, "p") and key != trial_key("BPRMF", params, "q")
    a, b = random_dataset(seed=0), random_dataset(seed=1)
    assert dataset_fingerprint(a) == dataset_fingerprint(random_dataset(seed=0)) != dataset_fingerprint(b)
    exp = {"evaluation": {"cutoffs": [10, 20], "simple_metrics": ["Recall"]}, "top_k": 20}
    spec = ModelSpec("BPRMF", Meta(validation_metric="Recall@20"))
    base = protocol_fingerprint("d", exp, spec)
    assert base == protocol_fingerprint("d", {**exp, "evaluation": {**exp["evaluation"], "batch_size": 7}}, spec)
    assert base != protocol_fingerprint("d2", exp, spec)
    assert base != protocol_fingerprint("d", {**exp, "top_k": 50}, spec)
    assert base != protocol_fingerprint("d", exp, ModelSpec("BPRMF", Meta(validation_metric="nDCG@20")))
    es = ModelSpec("BPRMF", Meta(validation_metric="Recall@20", early_stopping={"patience": 2}))
    assert base != protocol_fingerprint("d", exp, es)


@pytest.mark.parametrize("bad", ["", "{", '{"sha256": 1}', '{"record": {"format": 1, "key": "k"}}'])
def test_lines_that_are_not_records(tmp_path, bad):
    (tmp_path / "BPRMF.jsonl").write_text(bad + "\n")
    loaded = TrialStore(tmp_path, "BPRMF").load()
    assert len(loaded) == 0 and len(loaded.corrupt) == (1 if bad else 0)


def test_a_file_named_by_a_parameter_is_part_of_the_key(tmp_path):
    recs = tmp_path / "recs.tsv"
    recs.write_text("u1\ti1\t1.0\n")
    key = trial_key("RecommendationFile", {"path": str(recs)}, "p")
    assert key == trial_key("RecommendationFile", {"path": str(recs)}, "p")
    recs.write_text("u1\ti2\t1.0\n")
    assert key != trial_key("RecommendationFile", {"path": str(recs)}, "p")
