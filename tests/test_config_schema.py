"""The experiment file's schema: pydantic models -> experiment.schema.json (draft-07, what editors read).

The committed schema must equal ``python -m elliot.config schema``, accept every experiment file of
config_files/ and Elliot's spellings, and reject a typo in any known block; the loader says the same typo
in one line with the key path and "did you mean"."""
import copy
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from elliot.config import load_config
from elliot.config.elliot_compat import rewrite
from elliot.config.json_schema import FILE_NAME, schema_text
from elliot.config.schema import Meta
from elliot.config.validation import document_problems
from elliot.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (ROOT / "config_files").rglob("*.y*ml")
                 if not {"results", "log"} & set(p.relative_to(ROOT / "config_files").parts))


@pytest.fixture(scope="module")
def validator():
    schema = json.loads((ROOT / FILE_NAME).read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_committed_schema_is_the_command_output():
    out = subprocess.run([sys.executable, "-m", "elliot.config", "schema"], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out == schema_text()
    assert (ROOT / FILE_NAME).read_text() == out, \
        f"{FILE_NAME} is stale: run `python -m elliot.config schema > {FILE_NAME}`"
    schema = json.loads(out)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert "$defs" not in out and "prefixItems" not in out  # 2020-12 keywords a draft-07 reader ignores


def test_config_files_exist():
    names = {p.relative_to(ROOT / "config_files").as_posix() for p in CONFIGS}
    assert "default.yml" in names and any(n.startswith("bench/") for n in names)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(ROOT / "config_files").as_posix())
def test_every_config_file_fits_the_schema(validator, path):
    doc = yaml.safe_load(path.read_text())
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
    assert not errors, errors
    assert document_problems(rewrite(doc, str(path))[0]) == []


ELLIOT_SPELLINGS = {"experiment": {
    "version": "0.3.1", "backend": ["tensorflow", "pytorch"], "dataset": "shop", "config_test": False,
    "print_results_as_triplets": True, "align_side_with_train": False, "path_logger_config": "./config/logger.yml",
    "path_log_level": "INFO", "random_seed": 42, "top_k": 10, "gpu": 0,
    "external_models_path": "../external/models/__init__.py",
    "data_config": {"strategy": "hierarchy", "root_folder": "../data/{0}/splits", "dataloader": "DataSetLoader",
                    "side_information": [
                        {"dataloader": "VisualAttributes", "visual_pca_features": "../data/{0}/pca",
                         "images_src_folder": "../data/{0}/images", "output_image_size": "(224,224)"},
                        {"dataloader": "textualattribute", "textual_features": "../data/{0}/text_feat"}]},
    "prefiltering": {"strategy": "global_threshold", "threshold": "average"},
    "splitting": {"save_on_disk": True, "save_folder": "../data/{0}/splits",
                  "test_splitting": {"strategy": "temporal_hold_out", "test_ratio": 0.2},
                  "validation_splitting": {"strategy": "random_subsampling", "leave_n_out": 1, "folds": 1}},
    "evaluation": {"cutoffs": 10, "simple_metrics": "single_nDCG", "relevance_threshold": 1, "paired_ttest": True,
                   "complex_metrics": {"metric": "usermadranking", "clustering_name": "Activity",
                                       "clustering_file": "../data/{0}/users.tsv"}},
    "negative_sampling": {"strategy": "random", "num_items": "99", "save_on_disk": True},
    "models": {
        "MostPop": None,
        "VBPR": {"meta": {"hyper_opt_alg": "grid", "verbose": "True", "save_recs": "false", "restore": False,
                          "validation_rate": 1, "validation_metric": "HR@10", "write_best_iterations": True},
                 "early_stopping": {"patience": 5, "min_delta": "1e-3", "monitor": "loss", "verbose": True},
                 "lr": "1e-4", "factors": [32, 64], "batch_eval": 256, "loader": "('VisualAttribute',)"}}}}


def test_elliot_spellings_fit_the_schema_and_the_models(validator):
    assert list(validator.iter_errors(ELLIOT_SPELLINGS)) == []
    doc, notes = rewrite(ELLIOT_SPELLINGS, "f.yml")
    assert document_problems(doc) == []
    assert "early_stopping" in doc["experiment"]["models"]["VBPR"]["meta"] and notes
    assert ELLIOT_SPELLINGS["experiment"]["models"]["VBPR"]["early_stopping"]  # the input is not changed


def _typo(path: str, value):
    """A mutation of a minimal experiment: ``path`` is dotted (``evaluation.cutof``)."""
    def apply(exp: dict) -> None:
        node = exp
        *parents, last = path.split(".")
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        node[last] = value
    return apply


BASE = {"dataset": "shop",
        "data_config": {"strategy": "fixed", "train_path": "train.tsv", "test_path": "test.tsv",
                        "side_information": [{"dataloader": "VisualAttribute", "visual_features": "visual.npy"}]},
        "evaluation": {"cutoffs": [10], "simple_metrics": ["Recall"]},
        "models": {"BPRMF": {"meta": {"validation_metric": "Recall@10"}, "lr": 0.01}}}
TYPOS = [
    ("evaluaton", {}, "unknown key 'evaluaton' at experiment (did you mean 'evaluation'?)"),
    ("evaluation.cutof", 10, "unknown key 'cutof' at experiment.evaluation (did you mean 'cutoffs'?)"),
    ("data_config.trian_path", "x", "at experiment.data_config (did you mean 'train_path'?)"),
    ("data_config.side_information.0.visual_feature", "x",
     "at experiment.data_config.side_information[0] (did you mean 'visual_features'?)"),
    ("data_config.fetch", {"name": "tiktok", "rot": "../data"}, "at experiment.data_config.fetch (did you mean 'root'?)"),
    ("prefiltering", [{"strategy": "user_k_core", "cores": 5}], "at experiment.prefiltering[0] (did you mean 'core'?)"),
    ("splitting", {"test_splitting": {"strategy": "random_subsampling", "test_ration": 0.2}},
     "at experiment.splitting.test_splitting (did you mean 'test_ratio'?)"),
    ("splitting.save_on_dsk", True, "at experiment.splitting (did you mean 'save_on_disk'?)"),
    ("evaluation.complex_metrics", [{"metric": "REO", "clustering_nme": "pop", "clustering_file": "c.tsv"}],
     "unknown key of REO 'clustering_nme' at experiment.evaluation.complex_metrics[0] (did you mean"),
    ("negative_sampling", {"strategy": "random", "num_item": 99},
     "at experiment.negative_sampling (did you mean 'num_items'?)"),
    ("models.BPRMF.meta.validaton_rate", 2, "at experiment.models.BPRMF.meta (did you mean 'validation_rate'?)"),
    ("models.BPRMF.meta.early_stopping", {"patiense": 3},
     "at experiment.models.BPRMF.meta.early_stopping (did you mean 'patience'?)"),
    ("models.BPRMF.early_stopping", {"patiense": 3},
     "at experiment.models.BPRMF.meta.early_stopping (did you mean 'patience'?)"),
    ("tracking", {"mlflow": {"tracking_url": "file:./mlruns"}},
     "at experiment.tracking.mlflow (did you mean 'tracking_uri'?)"),
    ("tracking.mlflw", {"tracking_uri": "file:./mlruns"}, "at experiment.tracking (did you mean 'mlflow'?)"),
    ("evaluation.attacks", [{"method": "fgsm_l2", "eps_ration": 0.05}], "(did you mean 'eps_ratio'?)"),
    ("evaluation.attacks", [{"method": "PGD", "nb_iters": 10}], "(did you mean 'nb_iter'?)"),
    ("evaluation.attacks", [{"method": "promotion", "target": 50}], "(did you mean 'targets'?)"),
    ("evaluation.attacks", [{"method": "missing_modality", "mode": "zero", "fractoin": 0.5}],
     "(did you mean 'fraction'?)"),
    ("evaluation.attacks", [{"method": "fgsm_l3"}], "did you mean 'fgsm_l2'?"),
]


@pytest.mark.parametrize("path, value, message", TYPOS, ids=[t[0] for t in TYPOS])
def test_a_typo_is_rejected_by_the_schema_and_the_loader(validator, tmp_path, path, value, message):
    exp = copy.deepcopy(BASE)
    assert list(validator.iter_errors({"experiment": exp})) == []
    _typo(path, value)(exp)
    assert list(validator.iter_errors({"experiment": exp})), "the JSON Schema accepts the typo"
    config = tmp_path / "cfg.yml"
    config.write_text(yaml.safe_dump({"experiment": exp}))
    with pytest.raises(ConfigError) as info:
        load_config(config)  # unknown keys are said before any file is looked for
    text = str(info.value)
    assert text.startswith(f"{config}: ") and message in text and "\n" not in text


def test_top_level_typo(validator, tmp_path):
    doc = {"experiment": copy.deepcopy(BASE), "experimnt": {}}
    assert list(validator.iter_errors(doc))
    config = tmp_path / "cfg.yml"
    config.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=r"unknown key 'experimnt' at top level \(did you mean 'experiment'\?\)"):
        load_config(config)


def _on_disk(exp: dict) -> dict:
    """``exp`` reading the embedded default dataset (the values are checked after the paths)."""
    data = ROOT / "data" / "default"
    exp = copy.deepcopy(exp)
    exp["data_config"].update(train_path=str(data / "train.tsv"), test_path=str(data / "test.tsv"))
    exp["data_config"]["side_information"][0]["visual_features"] = str(data / "visual.npy")
    return exp


def test_wrong_value_shapes_are_one_line_never_a_traceback(tmp_path):
    for path, value, message in [("evaluation", [10, 20], "experiment.evaluation must be a mapping, got list"),
                                 ("tracking", {"mlflow": {"experiment_name": "x"}},
                                  "experiment.tracking.mlflow.tracking_uri is required"),
                                 ("data_config.separator", 5, "experiment.data_config.separator: 5 is not a string")]:
        exp = _on_disk(BASE)
        _typo(path, value)(exp)
        config = tmp_path / "cfg.yml"
        config.write_text(yaml.safe_dump({"experiment": exp}))
        with pytest.raises(ConfigError) as info:
            load_config(config)
        assert message in str(info.value) and "\n" not in str(info.value)


def test_tracking_block_is_resolved_with_its_defaults(tmp_path):
    exp = _on_disk(BASE)
    exp["tracking"] = {"mlflow": {"tracking_uri": "file:./mlruns"}}
    config = tmp_path / "cfg.yml"
    config.write_text(yaml.safe_dump({"experiment": exp}))
    cfg = load_config(config)
    assert cfg.tracking == {"mlflow": {"tracking_uri": "file:./mlruns", "experiment_name": None}}
    del exp["tracking"]
    config.write_text(yaml.safe_dump({"experiment": exp}))
    assert load_config(config).tracking is None


def test_meta_is_a_strict_pydantic_model_with_a_plain_early_stopping():
    meta = Meta(validation_metric="Recall@20", early_stopping={"patience": 2})
    assert meta.early_stopping == {"patience": 2}
    dumped = meta.model_dump()
    assert dumped["early_stopping"] == {"patience": 2} and dumped["validation_rate"] == 1
    with pytest.raises(ValueError):
        Meta(validaton_rate=2)
