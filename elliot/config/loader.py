"""Read, validate and resolve an Elliot-style YAML experiment (``yaml.safe_load``; nothing is eval'd).

Order: overrides, Elliot's spellings rewritten (:mod:`elliot.config.elliot_compat`), the document checked
against the schema models (an unknown key is raised at once), then resolution here (paths, metric names,
values that depend on others, each with its own one-line message); a schema problem the resolution did not
already name is raised last."""
from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any, Dict, Optional

import yaml

from elliot.config import elliot_compat
from elliot.config.data_sources import DataSourcesMixin
from elliot.config.meta import metric_name, parse_execution, parse_meta
from elliot.config.schema import (IGNORED_ELLIOT_KEYS, ITEM_CATALOGUES, PREFILTERS, SPLIT_STRATEGIES,
                                  ModelSpec, Tracking)
from elliot.config.validation import document_problems
from elliot.evaluation.metrics import parse_complex_metrics
from elliot.evaluation.negative_sampling import parse_negative_sampling
from elliot.errors import ConfigError, ElliotError, unknown_name


class ExperimentConfig:
    """The validated experiment: ``experiment_dict()`` (plain, resolved) and ``models`` (name -> ModelSpec)."""

    def __init__(self, path: Path, experiment: dict, models: Dict[str, ModelSpec]):
        self.path = path
        self._experiment = experiment
        self.models = models
        self.file = str(path)
        self.results_folder = str(Path(experiment["path_output_rec_performance"]).parent)

    def experiment_dict(self) -> dict:
        return copy.deepcopy(self._experiment)

    def __getattr__(self, item):
        try:
            return self.__dict__["_experiment"][item]
        except KeyError:
            raise AttributeError(item) from None


def _apply_overrides(doc: dict, overrides: Optional[dict]) -> None:
    for dotted, value in (overrides or {}).items():
        node = doc
        keys = dotted.split(".")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value


def _extract_device(gpu) -> str:
    """The device of side_information extraction jobs: experiment.gpu's CUDA device when it exists, else cpu
    (as the models' select_device falls back)."""
    if isinstance(gpu, bool) or not isinstance(gpu, int) or gpu < 0:
        return "cpu"
    import torch

    return f"cuda:{gpu}" if torch.cuda.is_available() and gpu < torch.cuda.device_count() else "cpu"


def _refuse_other_dataloaders(doc: dict, path: Path) -> None:
    dc = (doc.get("experiment") or {}).get("data_config") if isinstance(doc.get("experiment"), dict) else None
    loader = dc.get("dataloader") if isinstance(dc, dict) else None
    if loader not in (None, "DataSetLoader"):
        raise ConfigError(f"{path}: experiment.data_config.dataloader: {loader!r}: only Elliot's DataSetLoader "
                          "(interactions + side_information) exists here; knowledge-graph loaders feed models "
                          "this project lacks")


def load_config(path, overrides: Optional[dict] = None) -> ExperimentConfig:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(doc, dict) or "experiment" not in doc:
        raise ConfigError(f"{path}: the file must have a top-level 'experiment' mapping")
    _apply_overrides(doc, overrides)
    doc, notes = elliot_compat.rewrite(doc, str(path))
    for note in notes:
        warnings.warn(f"{path}: {note}")
    _refuse_other_dataloaders(doc, path)  # before the schema: its side_information keys are the loader's own
    problems = document_problems(doc)
    if problems and problems[0].structural:
        raise ConfigError(f"{path}: {problems[0].message}")
    try:
        config = _Resolver(path).experiment(doc["experiment"])
    except ElliotError:
        raise
    except Exception:  # a value of the wrong shape the resolution trips on: the schema names it
        if not problems:
            raise
    if problems:
        raise ConfigError(f"{path}: {problems[0].message}") from None
    return config


class _Resolver(DataSourcesMixin):
    def __init__(self, path: Path):
        self.file = str(path)
        self.base = path.resolve().parent
        self.dataset = ""
        self.fetching = False
        self.extract_device = "cpu"

    def err(self, msg: str) -> ConfigError:
        return ConfigError(f"{self.file}: {msg}")

    def path(self, value, where: str, must_exist: bool = True) -> str:
        if not isinstance(value, str):
            raise self.err(f"{where}: expected a path string, got {value!r}")
        p = Path(value.replace("{0}", self.dataset)).expanduser()
        p = (p if p.is_absolute() else self.base / p).resolve()
        if must_exist and not p.exists():
            raise self.err(f"{where}: file not found: {p}")
        return str(p)

    def experiment(self, exp: dict) -> ExperimentConfig:
        for key in set(IGNORED_ELLIOT_KEYS) & set(exp):
            warnings.warn(f"{self.file}: experiment.{key} is accepted and not used: {IGNORED_ELLIOT_KEYS[key]}")
        if not isinstance(exp.get("dataset"), (str, int)):
            raise self.err("experiment.dataset is required (the dataset name, used for {0} and results/<dataset>)")
        self.dataset = str(exp["dataset"])
        self.extract_device = _extract_device(exp.get("gpu", -1))
        out: Dict[str, Any] = {"dataset": self.dataset, "random_seed": self._int(exp, "random_seed", 42, "experiment"),
                               "binarize": self._bool(exp, "binarize", False, "experiment")}
        out["backend"] = elliot_compat.check_backend(exp.get("backend", "pytorch"), self.file)
        out["version"] = None if exp.get("version") is None else str(exp["version"])
        for key in ("config_test", "print_results_as_triplets"):
            out[key] = self._bool(exp, key, False, "experiment")
        align = self._bool(exp, "align_side_with_train", True, "experiment")
        out["data_config"] = self.data_config(exp.get("data_config"), align)
        out["prefiltering"] = self.prefiltering(exp.get("prefiltering"))
        out["splitting"] = self.splitting(exp.get("splitting"), out["data_config"])
        top_k = exp.get("top_k")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise self.err(f"experiment.top_k: {top_k!r} must be a positive integer (the length of every list)")
        out["evaluation"] = self.evaluation(exp.get("evaluation") or {}, top_k)
        cutoffs = out["evaluation"]["cutoffs"]
        out["top_k"] = max(cutoffs) if top_k is None else top_k
        if out["top_k"] < max(cutoffs):
            raise self.err(f"experiment.top_k ({out['top_k']}) must be >= the largest cutoff ({max(cutoffs)})")
        out["negative_sampling"] = self.negative_sampling(exp.get("negative_sampling"), out["random_seed"])
        out["gpu"] = self._int(exp, "gpu", -1, "experiment")
        # experiment.tracking: checked by the schema, filled with its defaults (what a tracker reads)
        out["tracking"] = None if exp.get("tracking") is None else Tracking.model_validate(exp["tracking"]).model_dump()
        execution: Dict[str, Any] = {}  # defaults for every model's meta (trial execution and resume)
        parse_execution(exp, execution, "experiment", self.file)
        out.update({key: execution.get(key) for key in ("n_jobs", "executor", "ray_address", "reuse_trials")})
        out["external_models_path"] = (self.path(exp["external_models_path"], "experiment.external_models_path")
                                       if exp.get("external_models_path") else None)
        results = self.base.parent / "results" / self.dataset
        defaults = {"path_output_rec_result": results / "recs", "path_output_rec_weight": results / "weights",
                    "path_output_rec_performance": results / "performance",
                    "path_log_folder": self.base.parent / "log"}
        for key, default in defaults.items():
            out[key] = self.path(exp[key], f"experiment.{key}", False) if exp.get(key) else str(default.resolve())
        models = exp.get("models")
        if not isinstance(models, dict) or not models:
            raise self.err("experiment.models must be a non-empty mapping of model name -> hyperparameters")
        specs = {}
        metrics = out["evaluation"]["simple_metrics"]
        for name, block in models.items():
            where = f"experiment.models.{name}"
            if block is not None and not isinstance(block, dict):
                raise self.err(f"{where} must be a mapping of hyperparameters, got {block!r}")
            block = dict(block or {})
            if isinstance(block.get("meta"), dict) is False and block.get("meta") is not None:
                raise self.err(f"{where}.meta must be a mapping, got {block['meta']!r}")
            meta = parse_meta(block.pop("meta", None), cutoffs, metrics, f"{where}.meta", self.file)
            specs[str(name)] = ModelSpec(str(name), meta, params=block, defense=block.pop("defense", None),
                                         training=block.pop("training", None))
        out["models"] = {n: {"meta": s.meta.model_dump(), **s.params} for n, s in specs.items()}
        return ExperimentConfig(Path(self.file), out, specs)

    def _int(self, block, key, default, where):
        value = block.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.err(f"{where}.{key}: {value!r} is not an integer")
        return value

    def _positive(self, block, key, default, where):
        value = self._int(block, key, default, where)
        if value < 1:
            raise self.err(f"{where}.{key}: {value!r} must be a positive integer")
        return value

    def negative_sampling(self, ns, seed: int):
        return parse_negative_sampling(ns, self.path, "experiment.negative_sampling", self.file, seed=seed)

    def _bool(self, block, key, default, where):
        value = block.get(key, default)
        if not isinstance(value, bool):
            raise self.err(f"{where}.{key}: {value!r} is not true/false")
        return value

    def data_config(self, dc, align_side_with_train: bool = True) -> dict:
        where = "experiment.data_config"
        if dc is None:
            raise self.err(f"{where} is required")
        dc = dict(dc)
        fetch = self.fetch_spec(dc.pop("fetch", None), where)
        loader = dc.pop("dataloader", None)
        if loader not in (None, "DataSetLoader"):
            raise self.err(f"{where}.dataloader: {loader!r}: only Elliot's DataSetLoader (interactions + "
                           "side_information) exists here; knowledge-graph loaders feed models this project lacks")
        strategies = ("fixed", "dataset", "mmrec", "hierarchy")
        strategy = dc.get("strategy")
        if strategy not in strategies:
            raise self.err(f"{where}.strategy: {unknown_name('strategy', strategy, strategies)}")
        if strategy == "hierarchy":
            if not dc.get("root_folder"):
                raise self.err(f"{where}.root_folder is required with strategy 'hierarchy'")
            paths, notes = elliot_compat.hierarchy_paths(self.path(dc["root_folder"], f"{where}.root_folder"),
                                                         self.file)
            for note in notes:
                warnings.warn(f"{self.file}: {note}")
            dc.update({k: v for k, v in paths.items() if v})
            strategy = dc["strategy"] = "fixed"
        if "missing_features" not in dc and not align_side_with_train:
            dc["missing_features"] = "zeros"  # Elliot's align_side_with_train: false keeps featureless items
        out = {"strategy": strategy, "header": dc.get("header"), "separator": dc.get("separator", "\t"),
               "train_path": None, "validation_path": None, "test_path": None, "dataset_path": None}
        required = {"fixed": ["train_path", "test_path"], "dataset": ["dataset_path"], "mmrec": ["dataset_path"]}
        for key in required[strategy]:
            if not dc.get(key):
                raise self.err(f"{where}.{key} is required with strategy '{strategy}'")
        for key in ("train_path", "validation_path", "test_path", "dataset_path"):
            if dc.get(key):
                out[key] = self.path(dc[key], f"{where}.{key}", must_exist=fetch is None)
        out["fetch"] = fetch
        missing = dc.get("missing_features", "drop")
        if missing not in ("drop", "mean", "zeros"):
            raise self.err(f"{where}.missing_features: '{missing}' is not drop, mean or zeros")
        out["missing_features"] = missing
        catalogue = dc.get("item_catalogue", "train")
        if catalogue not in ITEM_CATALOGUES:
            raise self.err(unknown_name(f"{where}.item_catalogue", catalogue, ITEM_CATALOGUES) +
                           " (train: the items with a training interaction, Elliot; all: every item of any split "
                           "and every item with side information, MMRec)")
        out["item_catalogue"] = catalogue
        out["side_information"] = self.side_information(dc.get("side_information") or [])
        return out

    def prefiltering(self, pf) -> list:
        if pf is None:
            return []
        pf = [pf] if isinstance(pf, dict) else pf
        out = []
        for n, step in enumerate(pf):
            loc = f"experiment.prefiltering[{n}]"
            if not isinstance(step, dict) or step.get("strategy") not in PREFILTERS:
                raise self.err(f"{loc}: {unknown_name('strategy', (step or {}).get('strategy'), PREFILTERS)}")
            needed = PREFILTERS[step["strategy"]]
            for key in needed:
                if key not in step:
                    raise self.err(f"{loc}: strategy '{step['strategy']}' needs '{key}'")
                value = step[key]
                if key in ("core", "rounds") or step["strategy"] == "cold_users":
                    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                        raise self.err(f"{loc}.{key}: {value!r} must be a positive integer")
                elif value != "average" and (isinstance(value, bool) or not isinstance(value, (int, float))
                                             or value != value):
                    raise self.err(f"{loc}.{key}: {value!r} must be a number (or 'average' for global_threshold)")
            out.append(dict(step))
        return out

    def splitting(self, sp, data_config) -> Optional[dict]:
        if sp is None:
            if data_config["strategy"] == "dataset" and not str(data_config["dataset_path"]).endswith(".inter"):
                raise self.err("experiment.splitting is required with data_config.strategy 'dataset'")
            return None
        where = "experiment.splitting"
        out = {"save_on_disk": bool(sp.get("save_on_disk", False)),
               "save_folder": self.path(sp["save_folder"], f"{where}.save_folder", False) if sp.get("save_folder") else None}
        for part in ("test_splitting", "validation_splitting"):
            block = sp.get(part)
            if block is None:
                out[part] = None
                continue
            loc = f"{where}.{part}"
            if block.get("strategy") not in SPLIT_STRATEGIES:
                raise self.err(f"{loc}: {unknown_name('strategy', block.get('strategy'), SPLIT_STRATEGIES)}")
            if int(block.get("folds", 1) or 1) > 1:
                raise self.err(f"{loc}.folds: cross-validation is not supported; use a hold-out (folds: 1)")
            if block["strategy"] != "fixed_timestamp" and (("test_ratio" in block) == ("leave_n_out" in block)):
                raise self.err(f"{loc}: give exactly one of test_ratio or leave_n_out")
            n_out = block.get("leave_n_out")
            if n_out is not None and (isinstance(n_out, bool) or not isinstance(n_out, int) or n_out < 1):
                raise self.err(f"{loc}.leave_n_out: {n_out!r} must be a positive integer")
            ratio = block.get("test_ratio")
            if ratio is not None and not (isinstance(ratio, (int, float)) and 0 < float(ratio) < 1):
                raise self.err(f"{loc}.test_ratio: {ratio!r} must be a number in (0, 1)")
            out[part] = {"strategy": block["strategy"], "test_ratio": None if ratio is None else float(ratio),
                         "leave_n_out": block.get("leave_n_out"), "timestamp": block.get("timestamp")}
        return out

    def evaluation(self, ev, top_k=None) -> dict:
        where = "experiment.evaluation"
        cutoffs = ev.get("cutoffs", [top_k or 10])  # Elliot: cutoffs default to [top_k]
        cutoffs = [cutoffs] if not isinstance(cutoffs, list) else cutoffs
        if not cutoffs or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in cutoffs):
            raise self.err(f"{where}.cutoffs: {ev.get('cutoffs')!r} must be a positive integer or a list of them")
        metrics = ev.get("simple_metrics", ["Recall", "nDCG", "Precision"])
        metrics = [metrics] if isinstance(metrics, str) else metrics
        if not isinstance(metrics, list) or not metrics:
            raise self.err(f"{where}.simple_metrics must be a non-empty list of metric names")
        threshold = ev.get("relevance_threshold", 0)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise self.err(f"{where}.relevance_threshold: {threshold!r} is not a number")
        out = {"cutoffs": sorted(set(cutoffs)),
               "simple_metrics": list(dict.fromkeys(metric_name(m, f"{where}.simple_metrics", self.file)
                                                    for m in metrics)),
               "relevance_threshold": float(threshold),
               "batch_size": self._positive(ev, "batch_size", 1024, where),
               "attacks": list(ev.get("attacks") or []),
               "complex_metrics": parse_complex_metrics(ev.get("complex_metrics"), self.path,
                                                        f"{where}.complex_metrics", self.file)}
        for key, default in (("paired_ttest", False), ("wilcoxon_test", False), ("mask_validation_in_test", True)):
            out[key] = self._bool(ev, key, default, where)
        return out
