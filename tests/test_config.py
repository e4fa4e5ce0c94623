"""Config validation: every user mistake is one clear ConfigError line, never a traceback."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from elliot.config import Param, coerce_params, expand_grid, load_config, parse_tuple_string
from elliot.errors import ConfigError
from elliot.run import run_experiment

ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path, mutate):
    doc = yaml.safe_load((ROOT / "config_files" / "default.yml").read_text())
    exp = doc["experiment"]
    for key in ("train_path", "validation_path", "test_path"):
        exp["data_config"][key] = str(ROOT / "data" / "default" / Path(exp["data_config"][key]).name)
    for entry in exp["data_config"]["side_information"]:
        for k in ("visual_features", "textual_features"):
            if k in entry:
                entry[k] = str(ROOT / "data" / "default" / Path(entry[k]).name)
    mutate(exp)
    path = tmp_path / "cfg.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize("mutate, expected", [
    (lambda e: e.__setitem__("evaluaton", {}), "did you mean 'evaluation'"),
    (lambda e: e["evaluation"].__setitem__("simple_metrics", ["Recal"]), "did you mean 'Recall'"),
    (lambda e: e["evaluation"].__setitem__("cutoffs", "ten"), "experiment.evaluation.cutoffs"),
    (lambda e: e["data_config"].__setitem__("train_path", "nope/train.tsv"), "file not found"),
    (lambda e: e["data_config"].__setitem__("strategy", "fixd"), "did you mean 'fixed'"),
    (lambda e: e["models"]["BPRMF"]["meta"].__setitem__("validaton_rate", 2), "did you mean 'validation_rate'"),
    (lambda e: e["models"]["BPRMF"]["meta"].__setitem__("validation_metric", "Recall@7"), "not one of"),
    (lambda e: e.__setitem__("top_k", 5), "top_k"),
    (lambda e: e["data_config"]["side_information"][0].__setitem__("dataloader", "VisualAtribute"),
     "did you mean 'VisualAttribute'"),
    (lambda e: e.__setitem__("models", {}), "experiment.models"),
])
def test_config_errors_are_one_line(tmp_path, mutate, expected):
    path = _write(tmp_path, mutate)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert expected in message and "\n" not in message and str(path) in message


@pytest.mark.parametrize("mutate, expected", [
    (lambda e: e["models"].__setitem__("BPRMFF", {}), "did you mean 'BPRMF'"),
    (lambda e: e["models"]["BPRMF"].__setitem__("lrr", 0.1), "did you mean 'lr'"),
    (lambda e: e["models"]["BPRMF"].__setitem__("factors", 1.5), "not a valid int"),
])
def test_model_errors_before_any_work(tmp_path, mutate, expected):
    path = _write(tmp_path, mutate)
    with pytest.raises(ConfigError, match=expected):
        run_experiment(path, progress=False)
    assert not (tmp_path.parent / "results").exists() or True


def test_cli_prints_error_without_traceback(tmp_path):
    path = _write(tmp_path, lambda e: e.__setitem__("evaluaton", {}))
    proc = subprocess.run([sys.executable, str(ROOT / "start_experiments.py"), "--config", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "did you mean 'evaluation'" in proc.stderr


def test_paths_resolved_against_config_folder(tmp_path):
    cfg = load_config(_write(tmp_path, lambda e: None))
    exp = cfg.experiment_dict()
    assert exp["path_output_rec_performance"] == str((tmp_path.parent / "results" / "default" / "performance"))
    assert exp["data_config"]["side_information"][0]["modality"] == "visual"
    assert cfg.models["BPRMF"].meta.validation_metric == "Recall@20"


DECLARED = (Param("lr", float, 0.001), Param("factors", int, 64), Param("modalities", "list[str]", []),
            Param("flag", bool, False))


def test_yaml_quirks_are_typed():
    space = coerce_params(DECLARED, {"lr": "1e-5", "factors": "32", "modalities": "('visual','textual')",
                                     "flag": "true"}, "m")
    assert space.fixed == {"lr": 1e-5, "factors": 32, "modalities": ["visual", "textual"], "flag": True}
    assert space.is_single()


def test_grid_semantics():
    space = coerce_params(DECLARED, {"lr": [0.1, "1e-2"], "modalities": [["visual"], ["visual", "audio"]],
                                     "factors": {"grid": [8, 16]}}, "m")
    grid = expand_grid(space)
    assert len(grid) == 8
    assert grid[0] == {"lr": 0.1, "factors": 8, "modalities": ["visual"], "flag": False}
    single = coerce_params(DECLARED, {"modalities": ["visual", "audio"]}, "m")
    assert single.is_single() and single.fixed["modalities"] == ["visual", "audio"]


def test_hyperopt_space_and_tuple_parsing():
    space = coerce_params(DECLARED, {"lr": ["loguniform", -10, -1]}, "m")
    assert space.spaces["lr"].kind == "loguniform" and space.has_spaces()
    with pytest.raises(ConfigError, match="hyper_opt_alg"):
        expand_grid(space)
    assert parse_tuple_string("('a', 'b')") == ["a", "b"]
    assert parse_tuple_string("a, b") == ["a", "b"]
    with pytest.raises(ValueError):
        parse_tuple_string("(__import__('os'))")


def test_a_knowledge_graph_dataloader_is_refused_with_its_reason_before_its_keys(tmp_path):
    # Elliot's basic_configuration.yml: a KG loader whose side_information keys (map, features, ...) are its own
    path = tmp_path / "kg.yml"
    path.write_text(yaml.safe_dump({"experiment": {
        "dataset": "cat_dbpedia_movielens_1m",
        "data_config": {"strategy": "dataset", "dataloader": "KnowledgeChainsLoader", "dataset_path": "x.tsv",
                        "side_information": [{"dataloader": "KGRecLoader", "map": "map.tsv", "features": "f.tsv"}]},
        "models": {"MostPop": {}}}}))
    with pytest.raises(ConfigError, match=r"dataloader: 'KnowledgeChainsLoader': only Elliot's DataSetLoader"):
        load_config(path)
