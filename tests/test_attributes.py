"""Tabular side information (ItemAttributes / UserAttributes: Elliot's TSV and ML-100K's u.item / u.user on
generated fixtures), DLRM with attributes against a hand-written forward, DLRM_CLIP on synthetic
shared-space vectors, and a rating run end to end with attributes."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import yaml

from elliot.config import coerce_params, expand_grid, load_config
from elliot.dataset.builder import build_dataset
from elliot.dataset.side_information import parse_attribute_entries, parse_entries
from elliot.dataset.side_information.attributes import ML100K_GENRES, Attribute
from elliot.errors import ConfigError, DataError
from external.models.dlrm import DLRM, DLRM_CLIP
from tests.test_rating import fit, rating_dataset, ratings_fixture

OCCUPATIONS = ("artist", "doctor", "writer", "student")


def _u_item(path, ids, seed=0, blank_date=()):
    """A u.item-like file: id|title|date|video date|url|19 genre flags (latin-1)."""
    rng = np.random.default_rng(seed)
    lines = []
    for k, raw in enumerate(ids):
        flags = (rng.random(19) < 0.15).astype(int)
        flags[k % 19] = 1
        date = "" if raw in blank_date else f"01-Jan-{1950 + k % 50}"
        lines.append("|".join([str(raw), f"Film é {k} ({1950 + k % 50})", date, "", "http://x", *map(str, flags)]))
    path.write_text("\n".join(lines) + "\n", encoding="latin-1")
    return {str(raw): (flags_of(line), line.split("|")[2]) for raw, line in zip(ids, lines)}


def flags_of(line):
    return [ML100K_GENRES[g] for g, f in enumerate(line.split("|")[5:24]) if f == "1"]


def _u_user(path, ids):
    """A u.user-like file: id|age|gender|occupation|zip."""
    rows = {str(raw): (15 + 7 * k % 50, "MF"[k % 2], OCCUPATIONS[k % 4], f"{k % 10}{k:04d}" if k % 5 else f"T{k}A")
            for k, raw in enumerate(ids)}
    path.write_text("".join(f"{raw}|{a}|{g}|{o}|{z}\n" for raw, (a, g, o, z) in rows.items()))
    return rows


def _data(tmp_path, users=("7", "3", "12", "5"), items=("40", "3", "17", "8", "25")):
    rows = [(users[k % len(users)], items[(3 * k) % len(items)], 1 + k % 5) for k in range(13)]
    seen, train = set(), []
    for u, i, r in rows:
        if (u, i) not in seen:
            seen.add((u, i))
            train.append(f"{u}\t{i}\t{r}\n")
    (tmp_path / "train.tsv").write_text("".join(train))
    test = [(u, i) for u in users for i in items if (u, i) not in seen][:4]
    (tmp_path / "test.tsv").write_text("".join(f"{u}\t{i}\t3\n" for u, i in test))
    return lambda side: {"dataset": "t", "data_config": {
        "strategy": "fixed", "train_path": str(tmp_path / "train.tsv"), "test_path": str(tmp_path / "test.tsv"),
        "side_information": side}}


def _decode(attr: Attribute, row: int) -> list:
    return sorted(attr.vocabulary[c] for c in attr.values[row] if c >= 0)


# ---- loaders ----------------------------------------------------------------------------------------
def test_ml100k_files_are_read_as_shipped_and_aligned_by_raw_id(tmp_path):
    exp = _data(tmp_path)
    items = _u_item(tmp_path / "u.item", ["25", "8", "3", "99", "40", "17"], blank_date=("17",))  # 99: not rated
    users = _u_user(tmp_path / "u.user", ["12", "5", "7", "3"])
    ds = build_dataset(exp([{"dataloader": "ItemAttributes", "attribute_file": str(tmp_path / "u.item"),
                             "format": "ml100k"},
                            {"dataloader": "UserAttributes", "attribute_file": str(tmp_path / "u.user"),
                             "format": "ml100k"}]))
    assert list(ds.item_attributes) == ["genres", "year"]
    assert list(ds.user_attributes) == ["age", "age_bucket", "gender", "occupation", "zip_region"]
    genres, year = ds.item_attributes["genres"], ds.item_attributes["year"]
    assert genres.kind == "categorical" and genres.values.dtype == np.int64 and genres.vocabulary[0] == "<unknown>"
    assert year.kind == "dense" and year.values.dtype == np.float32 and year.values.shape == (ds.n_items, 1)
    for idx, raw in enumerate(ds.item_ids.tolist()):
        assert _decode(genres, idx) == sorted(items[raw][0])  # multi-hot genres, padded with -1
        if raw != "17":
            assert year.values[idx, 0] == float(items[raw][1][-4:])
    known = [float(items[r][1][-4:]) for r in ds.item_ids.tolist() if r != "17"]
    assert year.values[list(ds.item_ids).index("17"), 0] == pytest.approx(np.mean(known))  # no date: the mean
    assert ds.info["item_attributes"]["year"]["filled_with_mean"] == 1
    for idx, raw in enumerate(ds.user_ids.tolist()):
        age, gender, occupation, zipcode = users[raw]
        assert ds.user_attributes["age"].values[idx, 0] == age
        assert _decode(ds.user_attributes["gender"], idx) == [gender]
        assert _decode(ds.user_attributes["occupation"], idx) == [occupation]
        assert _decode(ds.user_attributes["zip_region"], idx) == [zipcode[0]]
        bucket = _decode(ds.user_attributes["age_bucket"], idx)[0]
        assert bucket == ("<18" if age < 18 else "56+" if age >= 56 else bucket) and "<unknown>" != bucket
    assert "user attributes age" in ds.summary()


def test_elliot_tsv_format_missing_rows_and_errors(tmp_path):
    exp = _data(tmp_path)
    tsv = tmp_path / "attrs.tsv"
    tsv.write_text("40\t1\t2\n3\t2\t2\n17\n8\t3\n")  # 25 has no row; 17 a row without values; 3 repeats a value
    side = [{"dataloader": "ItemAttributes", "attribute_file": str(tsv), "name": "tags"}]
    with pytest.warns(UserWarning, match="1 items of the dataset have no row"):
        ds = build_dataset(exp(side))
    tags, ids = ds.item_attributes["tags"], list(ds.item_ids)
    assert tags.vocabulary == ("<unknown>", "1", "2", "3") and tags.width == 2
    assert tags.values[ids.index("40")].tolist() == [1, 2] and tags.values[ids.index("3")].tolist() == [2, -1]
    assert tags.values[ids.index("25")].tolist() == [0, -1] and tags.values[ids.index("17")].tolist() == [0, -1]
    assert ds.info["item_attributes"]["tags"]["rows_missing"] == 1 and ds.train.nnz  # no interaction dropped
    with pytest.raises(DataError, match=r"attrs\.tsv: 1 items of the dataset have no row \(e\.g\. 25\)") as e:
        build_dataset(exp([{**side[0], "missing": "error"}]))
    assert "\n" not in str(e.value)
    (tmp_path / "short.item").write_text("1|x|01-Jan-1990\n")
    with pytest.raises(DataError, match=r"short\.item: line 1 has 3 '\|'-separated fields"):
        build_dataset(exp([{"dataloader": "ItemAttributes", "attribute_file": str(tmp_path / "short.item"),
                            "format": "ml100k"}]))
    (tmp_path / "other.tsv").write_text("q1\ta\n")
    with pytest.raises(DataError, match=r"other\.tsv: no item of the dataset has a row"):
        build_dataset(exp([{"dataloader": "ItemAttributes", "attribute_file": str(tmp_path / "other.tsv")}]))
    with pytest.raises(ConfigError, match=r"format 'ml10k'.*did you mean 'ml100k'"):
        parse_attribute_entries([{"dataloader": "UserAttributes", "attribute_file": "/x", "format": "ml10k"}])
    with pytest.raises(ConfigError, match="from both"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the item file read for users: no user has a row of it
        build_dataset(exp([side[0], {**side[0], "dataloader": "UserAttributes"}]))
    # the feature-matrix entries do not see the attribute entries
    assert parse_entries([side[0], {"modality": "v", "features": "/a"}]) == [
        {"modality": "v", "features": "/a", "item_mapping": None}]


def test_yaml_keys_are_checked_with_did_you_mean(tmp_path):
    users, items, ratings = ratings_fixture(n_users=20, n_items=15, density=0.5)
    (tmp_path / "r.tsv").write_text("".join(f"{u}\t{i}\t{int(r)}\n" for u, i, r in zip(users, items, ratings)))
    _u_user(tmp_path / "u.user", range(20))

    def config(entry):
        exp = {"dataset": "t", "data_config": {"strategy": "fixed", "train_path": "r.tsv", "test_path": "r.tsv",
                                               "side_information": [entry]},
               "evaluation": {"simple_metrics": ["RMSE"]}, "models": {"GlobalMean": {}}}
        (tmp_path / "c.yml").write_text(yaml.safe_dump({"experiment": exp}))
        return tmp_path / "c.yml"

    with pytest.raises(ConfigError, match=r"unknown key 'formt'.*did you mean 'format'"):
        load_config(config({"dataloader": "UserAttributes", "attribute_file": "u.user", "formt": "ml100k"}))
    with pytest.raises(ConfigError, match=r"attribute_file: file not found"):
        load_config(config({"dataloader": "UserAttributes", "attribute_file": "nope.user"}))
    cfg = load_config(config({"dataloader": "userattributes", "attribute_file": "u.user", "format": "ml100k"}))
    entry = cfg.experiment_dict()["data_config"]["side_information"][0]
    assert entry["dataloader"] == "UserAttributes" and entry["attribute_file"] == str(tmp_path / "u.user")


# ---- DLRM with attributes ----------------------------------------------------------------------------
def attribute_dataset(seed=0):
    ds = rating_dataset(seed=seed)
    rng = np.random.default_rng(seed)
    genres = np.full((ds.n_items, 3), -1, dtype=np.int64)
    genres[:, 0] = rng.integers(1, 5, ds.n_items)
    genres[::2, 1] = rng.integers(1, 5, len(genres[::2]))
    gender = rng.integers(0, 3, (ds.n_users, 1))
    return ds.__class__(**{**ds.__dict__, "user_attributes": {
        "age": Attribute("age", "dense", rng.uniform(15, 70, (ds.n_users, 1)).astype(np.float32)),
        "gender": Attribute("gender", "categorical", gender, ("<unknown>", "F", "M"))},
        "item_attributes": {
        "genres": Attribute("genres", "categorical", genres, ("<unknown>", "a", "b", "c", "d")),
        "year": Attribute("year", "dense", rng.uniform(1930, 1998, (ds.n_items, 1)).astype(np.float32))}})


def build(cls, ds, **raw):
    hp = expand_grid(coerce_params(cls.declared_params(), raw, cls.name))[0]
    torch.manual_seed(hp.get("seed", 42))
    return cls(ds, hp, torch.device("cpu"))


def _standard(x, used):
    return (x - x[used].mean(0)) / x[used].std(0)


def test_dlrm_forward_with_attributes_matches_a_hand_written_reference():
    ds = attribute_dataset()
    model = build(DLRM, ds, factors=4, bottom_mlp=[5], top_mlp=[6], clip=False)
    assert [n for _, n in model.sparse_attrs] == ["gender", "genres"] and model.n_dense == {"user": 1, "item": 1}
    assert model.top[0].in_features == 4 + 10  # 5 vectors [x, e_u, e_i, e_gender, e_genres]: 10 products
    model.eval()
    users, items = torch.tensor([0, 3, 7, 7]), torch.tensor([1, 2, 4, 5])
    used_u, used_i = np.diff(ds.train.indptr) > 0, np.diff(ds.train.tocsc().indptr) > 0
    age = _standard(ds.user_attributes["age"].values.astype(np.float64), used_u)
    year = _standard(ds.item_attributes["year"].values.astype(np.float64), used_i)
    with torch.no_grad():
        dense = torch.tensor(np.hstack([age[users.numpy()], year[items.numpy()]]), dtype=torch.float32)
        x = model.bottom(dense)

        def bag(name, codes):
            rows = [model.bags[name].weight[[c for c in r if c >= 0]].mean(0) for r in codes.tolist()]
            return torch.stack(rows)

        vectors = [x, model.user_emb.weight[users], model.item_emb.weight[items],
                   bag("gender", ds.user_attributes["gender"].values[users.numpy()]),
                   bag("genres", ds.item_attributes["genres"].values[items.numpy()])]
        z = torch.tensor([[float(vectors[a][b] @ vectors[c][b]) for a in range(5) for c in range(a + 1, 5)]
                          for b in range(len(users))])
        expected = model.top(torch.cat([x, z], dim=1)).squeeze(-1)
        assert torch.allclose(model.predict(users, items), expected, atol=1e-5)
    only = build(DLRM, ds, factors=4, attributes=["genres"])
    assert [n for _, n in only.sparse_attrs] == ["genres"] and only.n_dense == {"user": 0, "item": 0}
    assert build(DLRM, ds, factors=4, attributes=[]).top[0].in_features == 4 + 3
    with pytest.raises(ConfigError, match=r"attributes \['occupation'\] are not in the dataset; .*age, gender"):
        build(DLRM, ds, attributes=["occupation"])


def test_dlrm_with_attributes_and_weight_decay_trains():
    ds = attribute_dataset()
    model = build(DLRM, ds, epochs=3, factors=8, weight_decay=1e-4, dropout=0.2,
                  modalities=[], attributes=["all"])
    groups = model.make_optimizer().param_groups
    assert [g["weight_decay"] for g in groups] == [0.0, 1e-4]
    assert all(isinstance(m, (torch.nn.Embedding, torch.nn.EmbeddingBag)) for m in model.modules()
               if any(p is q for p in m.parameters(recurse=False) for q in groups[0]["params"]))
    result, _ = fit(model, ds)
    assert result.epochs_run == 3 and np.isfinite(result.best_validation[10]["RMSE"])


# ---- DLRM_CLIP -----------------------------------------------------------------------------------------
def test_dlrm_clip_feeds_projected_shared_space_vectors_without_towers():
    rng = np.random.default_rng(0)
    ds0 = rating_dataset()
    # synthetic shared-space embeddings: one random CLIP-like projector of a latent item vector, per modality
    latent = rng.standard_normal((ds0.n_items, 6))
    shared = {m: (latent @ rng.standard_normal((6, 16)) + 0.1 * rng.standard_normal((ds0.n_items, 16)))
              .astype(np.float32) for m in ("visual", "textual")}
    ds = ds0.__class__(**{**ds0.__dict__, "features": shared})
    sep = build(DLRM_CLIP, ds, factors=8, clip=False)
    mean = build(DLRM_CLIP, ds, factors=8, clip_fusion="mean", clip=False)
    assert sep.top[0].in_features == 8 + 10 and mean.top[0].in_features == 8 + 6  # 5 / 4 interaction vectors
    assert not hasattr(sep, "towers") or not len(sep.towers)
    assert sum(isinstance(m, torch.nn.Linear) and m.in_features == 16 for m in sep.modules()) == 1  # one projection
    items = torch.tensor([3, 9])
    with torch.no_grad():
        v = torch.tensor(shared["visual"][[3, 9]])
        t = torch.tensor(shared["textual"][[3, 9]])
        vis, txt = sep._modality_vectors(items)
        assert torch.allclose(vis, sep.projection(v / v.norm(dim=1, keepdim=True)), atol=1e-6)
        assert torch.allclose(txt, sep.projection(t / t.norm(dim=1, keepdim=True)), atol=1e-6)
        (both,) = mean._modality_vectors(items)
        ref = mean.projection((v / v.norm(dim=1, keepdim=True) + t / t.norm(dim=1, keepdim=True)) / 2)
        assert torch.allclose(both, ref, atol=1e-6)
    result, _ = fit(build(DLRM_CLIP, ds, epochs=2, factors=8), ds)
    assert result.epochs_run == 2 and np.isfinite(result.best_validation[10]["RMSE"])
    other = ds0.__class__(**{**ds0.__dict__, "features": {"visual": shared["visual"],
                                                           "textual": shared["textual"][:, :5].copy()}})
    with pytest.raises(ConfigError, match=r"visual \(16-d\), textual \(5-d\) are not one shared space"):
        build(DLRM_CLIP, other)
    with pytest.raises(ConfigError, match="modalities is empty"):
        build(DLRM_CLIP, ds, modalities=[])


# ---- end to end ------------------------------------------------------------------------------------------
def test_rating_run_end_to_end_with_attributes(tmp_path):
    from elliot.run import run_experiment

    users, items, ratings = ratings_fixture(n_users=60, n_items=40, density=0.4)
    test = np.random.default_rng(5).random(len(users)) < 0.2
    (tmp_path / "data").mkdir()
    for name, mask in (("train.tsv", ~test), ("test.tsv", test)):
        (tmp_path / "data" / name).write_text("".join(f"u{u}\tm{i}\t{int(r)}\n" for u, i, r in
                                                      zip(users[mask], items[mask], ratings[mask])))
    _u_item(tmp_path / "data" / "u.item", [f"m{i}" for i in range(40)])
    _u_user(tmp_path / "data" / "u.user", [f"u{u}" for u in range(55)])  # u55..u59: no row -> <unknown>
    exp = {"dataset": "stars", "data_config": {
        "strategy": "fixed", "train_path": "../data/train.tsv", "test_path": "../data/test.tsv",
        "side_information": [{"dataloader": "ItemAttributes", "attribute_file": "../data/u.item", "format": "ml100k"},
                             {"dataloader": "UserAttributes", "attribute_file": "../data/u.user",
                              "format": "ml100k"}]},
        "splitting": {"validation_splitting": {"strategy": "random_subsampling", "test_ratio": 0.1}},
        "evaluation": {"cutoffs": [10], "simple_metrics": ["RMSE", "MAE"]},
        "models": {"external.DLRM": {"meta": {"validation_metric": "RMSE", "save_recs": True}, "epochs": 3,
                                     "factors": 8, "attributes": [["all"], ["genres", "gender"]]}}}
    (tmp_path / "config_files").mkdir()
    path = tmp_path / "config_files" / "stars.yml"
    path.write_text(yaml.safe_dump({"experiment": exp}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run_experiment(path, progress=False)
    trials = result.trials["external.DLRM"]
    assert sorted(t.params["attributes"] for t in trials) == [["all"], ["genres", "gender"]]
    best = result.best["external.DLRM"]
    assert np.isfinite(best.test[10]["RMSE"]) and best.test[10]["RMSE"] < 2.0
    from elliot.utils.paths import file_stem  # the writers' name (long configuration names get a hash)

    recs = (tmp_path / "results" / "stars" / "recs" / f"{file_stem(best.name)}.tsv").read_text().splitlines()
    assert recs and all(1.0 <= float(line.split("\t")[2]) <= 5.0 for line in recs)
