"""Stored recommendation files are scored under the same protocol as the model that wrote them."""
import numpy as np
import pytest
import torch

from elliot.errors import ConfigError, DataError
from elliot.evaluation.evaluator import Evaluator
from elliot.recommender.baselines import BPRMF
from elliot.recommender.recfolder import RecommendationFile, RecommendationFolder
from elliot.results.writers import write_recommendations
from tests.helpers import structured_dataset
from tests.test_trainer import _train


def _write_top(model, ds, ev, path, k):
    users = ev.evaluated_users("test")
    parts = list(ev.top_items(model, users, k, ev._masks("test")))
    write_recommendations(path, ds, np.repeat(np.concatenate([p[0] for p in parts]), k),
                          np.concatenate([p[1] for p in parts]).ravel(), np.concatenate([p[2] for p in parts]).ravel())


def test_file_metrics_equal_the_models(tmp_path):
    ds = structured_dataset()
    model, _, direct = _train(BPRMF, ds, epochs=3)
    ev = Evaluator(ds, [5, 10], ["Recall", "nDCG", "Precision", "HR", "MRR"])
    direct = ev.evaluate(model, "test")
    path = tmp_path / "recs" / "bprmf.tsv"
    _write_top(model, ds, ev, path, 10)
    stored = RecommendationFile(ds, {"path": str(path)}, torch.device("cpu"))
    again = ev.evaluate(stored, "test")
    for k in (5, 10):
        for metric, value in direct.values[k].items():
            assert again.values[k][metric] == pytest.approx(value, abs=1e-9), (k, metric)


def test_unlisted_items_are_never_hits(tmp_path):
    ds = structured_dataset()
    ev = Evaluator(ds, [10], ["Recall", "HR"])
    user = int(ev.evaluated_users("test")[0])
    wrong = np.setdiff1d(np.arange(ds.n_items), np.concatenate([ds.test[user].indices, ds.train[user].indices,
                                                                  ds.validation[user].indices]))[:2]
    path = tmp_path / "one.tsv"
    path.write_text("user\titem\tscore\n" + "".join(f"{ds.user_ids[user]}\t{ds.item_ids[i]}\t1\n" for i in wrong))
    stored = RecommendationFile(ds, {"path": str(path)}, torch.device("cpu"))
    assert ev.evaluate(stored, "test").values[10]["HR"] == 0.0  # only two wrong items listed for one user


def test_unknown_ids_warn_and_bad_files_error(tmp_path):
    ds = structured_dataset()
    path = tmp_path / "x.tsv"
    path.write_text(f"ghost\t{ds.item_ids[0]}\t1.0\n{ds.user_ids[0]}\t{ds.item_ids[1]}\t0.5\n")
    with pytest.warns(UserWarning, match="1 rows with users"):
        RecommendationFile(ds, {"path": str(path)}, torch.device("cpu"))
    path.write_text("onlyonecolumn\n")
    with pytest.raises(DataError, match="x.tsv: line 1"):
        RecommendationFile(ds, {"path": str(path)}, torch.device("cpu"))
    with pytest.raises(ConfigError, match="holds no .tsv"):
        RecommendationFolder.expand_configurations({"folder": str(tmp_path / "empty")}, "m") if (
            (tmp_path / "empty").mkdir() or True) else None
    files = RecommendationFolder.expand_configurations({"folder": str(tmp_path), "path": ""}, "m")
    assert [f["path"] for f in files] == [str(path)]
