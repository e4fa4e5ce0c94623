"""The experiment schema: known keys, their types and defaults, and the model ``meta`` block."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

from elliot.errors import ConfigError, did_you_mean, unknown_name

EXPERIMENT_KEYS = {"version", "dataset", "random_seed", "data_config", "prefiltering", "binarize", "splitting",
                   "top_k", "evaluation", "gpu", "external_models_path", "path_output_rec_result",
                   "path_output_rec_weight", "path_output_rec_performance", "path_log_folder", "models",
                   "n_jobs", "executor", "ray_address", "restore"}
IGNORED_ELLIOT_KEYS = {"print_results_as_triplets", "align_side_with_train", "path_log_level", "path_output_rec_hr"}
DATA_KEYS = {"strategy", "train_path", "validation_path", "test_path", "dataset_path", "header", "separator",
             "side_information", "missing_features", "root_folder"}
EVAL_KEYS = {"cutoffs", "simple_metrics", "complex_metrics", "relevance_threshold", "paired_ttest",
             "wilcoxon_test", "mask_validation_in_test", "batch_size", "attacks"}
LOADERS = {"VisualAttribute": ("visual_features", "visual"), "TextualAttribute": ("textual_features", "textual"),
           "AudioAttribute": ("audio_features", "audio"), "FeatureAttribute": ("features", None)}
PREFILTERS = {"global_threshold": ["threshold"], "user_average": [], "user_k_core": ["core"],
              "item_k_core": ["core"], "iterative_k_core": ["core"], "n_rounds_k_core": ["core", "rounds"],
              "cold_users": ["threshold"]}
SPLIT_STRATEGIES = {"random_subsampling", "temporal_hold_out", "fixed_timestamp"}
HYPER_ALGS = ("grid", "tpe", "rand", "anneal", "atpe")
EXECUTORS = ("sequential", "process", "ray")


def check_keys(block: dict, valid, where: str, file: str) -> None:
    if not isinstance(block, dict):
        raise ConfigError(f"{file}: {where} must be a mapping, got {type(block).__name__}")
    for key in block:
        if key not in valid:
            raise ConfigError(f"{file}: {unknown_name('key', key, valid, where=where)}")


def metric_name(name: str, where: str, file: str) -> str:
    from elliot.evaluation.metrics import METRICS

    lowered = {m.lower(): m for m in METRICS}
    if str(name).lower() in lowered:
        return lowered[str(name).lower()]
    raise ConfigError(f"{file}: {unknown_name('metric', name, METRICS, where=where)}")


@dataclass
class EarlyStopping:
    patience: int
    min_delta: float = 0.0
    mode: str = "auto"


@dataclass
class Meta:
    validation_rate: int = 1
    validation_metric: str = ""
    save_weights: bool = False
    save_recs: bool = False
    verbose: bool = False
    restore: Optional[bool] = None  # None: finished trials in the trials file are reused (false re-runs them)
    hyper_opt_alg: str = "grid"
    hyper_max_evals: Optional[int] = None
    early_stopping: Optional[Dict[str, Any]] = None
    n_jobs: Optional[int] = None  # None: the experiment-level n_jobs, else 1
    executor: Optional[str] = None  # sequential | process | ray; None: process when n_jobs > 1
    ray_address: Optional[str] = None
    eval_perturbations: bool = False

    def model_dump(self) -> dict:
        return asdict(self)


META_TYPES = {"validation_rate": int, "save_weights": bool, "save_recs": bool, "verbose": bool,
              "eval_perturbations": bool}


def parse_meta(raw: Optional[dict], cutoffs: List[int], metrics: List[str], where: str, file: str) -> Meta:
    raw = dict(raw or {})
    check_keys(raw, Meta.__dataclass_fields__, where, file)
    meta = Meta()
    for key, typ in META_TYPES.items():
        if key in raw:
            value = raw[key]
            if typ is bool and not isinstance(value, bool) or typ is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError(f"{file}: {where}.{key}: {value!r} is not a valid {typ.__name__}")
            setattr(meta, key, value)
    if meta.validation_rate < 1:
        raise ConfigError(f"{file}: {where}.validation_rate must be >= 1, got {meta.validation_rate}")
    vm = raw.get("validation_metric", f"{metrics[0]}@{cutoffs[0]}")
    name, sep, k = str(vm).partition("@")
    if not sep:
        k = str(cutoffs[0])
    name = metric_name(name, f"{where}.validation_metric", file)
    if not k.isdigit() or int(k) not in cutoffs:
        raise ConfigError(f"{file}: {where}.validation_metric: cutoff '{k}' of '{vm}' is not one of "
                          f"evaluation.cutoffs {cutoffs}")
    meta.validation_metric = f"{name}@{int(k)}"
    alg = raw.get("hyper_opt_alg", "grid")
    if alg not in HYPER_ALGS:
        raise ConfigError(f"{file}: {where}.hyper_opt_alg: '{alg}'{did_you_mean(alg, HYPER_ALGS)}; "
                          f"valid: {', '.join(HYPER_ALGS)}")
    meta.hyper_opt_alg = alg
    if raw.get("hyper_max_evals") is not None:
        evals = raw["hyper_max_evals"]
        if isinstance(evals, bool) or not isinstance(evals, int) or evals < 1:
            raise ConfigError(f"{file}: {where}.hyper_max_evals: {evals!r} is not a positive integer")
        meta.hyper_max_evals = evals
    parse_execution(raw, meta, where, file)
    es = raw.get("early_stopping")
    if es is not None:
        check_keys(es, {"patience", "min_delta", "mode", "monitor", "verbose", "rel_delta"},
                   f"{where}.early_stopping", file)
        if not isinstance(es.get("patience"), int) or es["patience"] < 1:
            raise ConfigError(f"{file}: {where}.early_stopping.patience must be a positive integer")
        meta.early_stopping = {"patience": es["patience"], "min_delta": float(es.get("min_delta", 0.0)),
                               "mode": es.get("mode", "auto")}
    return meta


def parse_execution(raw: dict, target, where: str, file: str) -> None:
    """``n_jobs`` / ``executor`` / ``ray_address`` / ``restore`` of a model's meta or of the experiment."""
    if raw.get("n_jobs") is not None:
        n = raw["n_jobs"]
        if isinstance(n, bool) or not isinstance(n, int) or (n < 1 and n != -1):
            raise ConfigError(f"{file}: {where}.n_jobs: {n!r} must be a positive integer (or -1: every CPU)")
        _set(target, "n_jobs", n)
    if raw.get("executor") is not None:
        if raw["executor"] not in EXECUTORS:
            raise ConfigError(f"{file}: {where}.executor: '{raw['executor']}'{did_you_mean(raw['executor'], EXECUTORS)}"
                              f"; valid: {', '.join(EXECUTORS)}")
        _set(target, "executor", raw["executor"])
    if raw.get("ray_address") is not None:
        if not isinstance(raw["ray_address"], str):
            raise ConfigError(f"{file}: {where}.ray_address: {raw['ray_address']!r} is not an address string "
                              "(e.g. ray://head:10001 or auto)")
        _set(target, "ray_address", raw["ray_address"])
    if raw.get("restore") is not None:
        if not isinstance(raw["restore"], bool):
            raise ConfigError(f"{file}: {where}.restore: {raw['restore']!r} is not true/false")
        _set(target, "restore", raw["restore"])


def _set(target, key, value) -> None:
    if isinstance(target, dict):
        target[key] = value
    else:
        setattr(target, key, value)


@dataclass
class ModelSpec:
    name: str
    meta: Meta
    params: Dict[str, Any] = field(default_factory=dict)
    defense: Optional[dict] = None
    training: Optional[dict] = None
