"""The experiment file, described by pydantic models: its blocks, their keys, types and defaults.

The models describe the file as written, Elliot's spellings included (``strategy: hierarchy``, the
``VisualAttributes`` loader, ``early_stopping`` in the model block, ...): ``python -m elliot.config schema``
exports them as the JSON Schema editors validate against, and :mod:`elliot.config.validation` checks a
loaded document with them once :mod:`elliot.config.elliot_compat` has rewritten Elliot's spellings (an
unknown key is one line with "did you mean").  What depends on other values or on the disk (paths, metric
names against the cutoffs, a model's hyperparameters, declared by the model's own ``Param`` list) is
resolved by :mod:`elliot.config.loader`; the blocks validated by their own package (attacks, defenses,
feature extraction) are open mappings here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Dict, List, Literal, Optional, Tuple, Union

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, StrictBool
from pydantic import StrictInt, StrictStr, WithJsonSchema
from pydantic_core import PydanticCustomError

from elliot.config.attack_keys import ALIASES, METHOD_KEYS, METHODS, canonical_method
from elliot.config.elliot_compat import IGNORED_META, LOADER_SPELLINGS
from elliot.config.schema_types import (Alternatives, Block, Flag, PositiveInt, ci_pattern, integer, name_of, number,
                                        one_or_list, open_mapping)
from elliot.evaluation.metrics import COMPLEX_METRICS, METRICS
from elliot.evaluation.negative_sampling import STRATEGIES as NEGATIVE_SAMPLING_STRATEGIES

#: Elliot keys accepted and not used, each with the reason said in the log
IGNORED_ELLIOT_KEYS = {
    "path_logger_config": "Elliot's logging layout file is not read; the log goes to path_log_folder",
    "path_log_level": "the log level is INFO; warnings also go to the console",
}
LOADERS = {"VisualAttribute": ("visual_features", "visual"), "TextualAttribute": ("textual_features", "textual"),
           "AudioAttribute": ("audio_features", "audio"), "FeatureAttribute": ("features", None),
           "ItemAttributes": ("attribute_file", None), "UserAttributes": ("attribute_file", None)}
#: the keys of the tabular attribute loaders (elliot.dataset.side_information.attributes reads them)
ATTRIBUTE_KEYS = ["dataloader", "attribute_file", "format", "name", "missing"]
PREFILTERS = {"global_threshold": ["threshold"], "user_average": [], "user_k_core": ["core"],
              "item_k_core": ["core"], "iterative_k_core": ["core"], "n_rounds_k_core": ["core", "rounds"],
              "cold_users": ["threshold"]}
SPLIT_STRATEGIES = {"random_subsampling", "temporal_hold_out", "fixed_timestamp"}
DATA_STRATEGIES = ("fixed", "dataset", "mmrec", "hierarchy")
MISSING_FEATURES = ("drop", "mean", "zeros")
ITEM_CATALOGUES = ("train", "all")  # data_config.item_catalogue (elliot.dataset.builder reads it)
HYPER_ALGS = ("grid", "tpe", "rand", "anneal", "atpe")
EXECUTORS = ("sequential", "process", "ray")
#: the forks' metric names for metrics of Elliot's catalogue (their per-user values are kept anyway)
METRIC_ALIASES = {"single_nDCG": "nDCG", "single_ARP": "ARP"}

PathStr = Optional[StrictStr]
MetricName = name_of(sorted(METRICS), "metric", also=sorted(METRIC_ALIASES))
_METRIC_AT = ci_pattern(sorted([*METRICS, *METRIC_ALIASES]), suffix="(@[0-9]+)?")
MetricAt = Annotated[StrictStr, WithJsonSchema({"type": "string", "pattern": _METRIC_AT})]
MetricOrLoss = Annotated[StrictStr, WithJsonSchema({"anyOf": [{"type": "string", "pattern": _METRIC_AT},
                                                              {"type": "string", "pattern": ci_pattern(["loss"])}]})]


def _n_jobs(n: int) -> int:
    if n < 1 and n != -1:
        raise ValueError("must be a positive integer (or -1: every CPU)")
    return n


NJobs = Annotated[StrictInt, AfterValidator(_n_jobs),
                  WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 1}, {"const": -1}]})]
Executor = Optional[Literal[EXECUTORS]]


# ---- a model block --------------------------------------------------------------------------------------
class EarlyStopping(Block):
    """Elliot's early_stopping: stop when the monitored value stops improving (elliot.training.early_stopping)."""

    patience: integer(ge=0) = Field(0, description="validation checks without improvement before stopping")
    monitor: Optional[MetricOrLoss] = Field(None, description="Name@k of an evaluated metric, or loss; "
                                                             "default: meta.validation_metric")
    mode: Literal["auto", "min", "max"] = "auto"
    min_delta: Optional[number(ge=0, strings=True)] = None
    rel_delta: Optional[number(ge=0, strings=True)] = None
    baseline: Optional[number(strings=True)] = None
    verbose: Flag = False
    rule: Literal["elliot", "fork", "best"] = Field(
        "elliot", description="elliot: consecutive declines (Elliot 0.3.1); fork: nothing beats the value patience "
                              "checks ago; best: no improvement on the best value")


#: the raw block as a dict of the keys given (meta.early_stopping stays a plain mapping at run time)
EarlyStoppingSpec = Annotated[EarlyStopping, AfterValidator(lambda m: m.model_dump(exclude_unset=True)),
                              PlainSerializer(lambda v: v)]


def _no_default(schema: dict) -> None:
    schema.pop("default", None)  # resolved from the evaluation section


def _meta_schema(schema: dict) -> None:
    for key, why in IGNORED_META.items():  # dropped by elliot_compat before validation
        schema["properties"][key] = {"description": f"accepted, not used: {why}"}


class Meta(Block):
    """A model's meta: how its trials are validated, selected, searched and run."""

    model_config = ConfigDict(json_schema_extra=_meta_schema)

    validation_rate: PositiveInt = Field(1, description="validate every this many epochs")
    validation_metric: MetricAt = Field("", json_schema_extra=_no_default,
                                        description="Name@k the configuration is selected on; default: the first "
                                                    "simple metric at the first cutoff")
    save_weights: Flag = Field(False, description="write the kept epoch's weights to path_output_rec_weight")
    save_recs: Flag = False
    verbose: Flag = False
    restore: Flag = Field(False, description="Elliot's meaning: load the saved weights instead of training")
    reuse_trials: Optional[StrictBool] = Field(
        None, description="finished trials in the trials file are reused unless false (default: "
                          "experiment.reuse_trials)")
    optimize_internal_loss: Flag = Field(False, description="keep the epoch with the lowest training loss")
    hyper_opt_alg: Literal[HYPER_ALGS] = "grid"
    hyper_max_evals: Optional[PositiveInt] = None
    early_stopping: Optional[EarlyStoppingSpec] = None
    n_jobs: Optional[NJobs] = Field(None, description="parallel trials (-1: every CPU); default: experiment.n_jobs")
    executor: Executor = Field(None, description="default: process when n_jobs > 1")
    ray_address: Optional[StrictStr] = None
    eval_perturbations: Flag = Field(False, description="attacked validation metrics in the per-epoch history")


Defense = open_mapping("a defense (modality_balancing | crmt), validated by elliot.training.defenses")
TrainingAddons = open_mapping("training add-ons (e.g. mirror_gradient), validated by elliot.training")


class ModelBlock(BaseModel):
    """One model: meta and the model's own hyperparameters, declared by its Params (a list is a grid axis,
    [loguniform, a, b] a hyperopt space)."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    meta: Optional[Meta] = None
    early_stopping: Optional[EarlyStoppingSpec] = Field(None, description="Elliot's place; moved into meta")
    defense: Defense
    training: TrainingAddons


@dataclass
class ModelSpec:
    name: str
    meta: Meta
    params: Dict[str, Any] = field(default_factory=dict)
    defense: Optional[dict] = None
    training: Optional[dict] = None


# ---- data_config ----------------------------------------------------------------------------------------
LoaderName = name_of(list(LOADERS), "dataloader", also=sorted(LOADER_SPELLINGS))
Extract = open_mapping("features written from raw images / texts (input_path, model, ...), validated by "
                       "elliot.features; see docs/features.md")


class SideInformation(Block):
    """One side_information entry: a folder of <item>.npy files or one .npy matrix (row i = item i)."""

    dataloader: LoaderName
    visual_features: PathStr = None
    textual_features: PathStr = None
    audio_features: PathStr = None
    features: PathStr = Field(None, description="FeatureAttribute's features (with modality: <name>)")
    modality: Optional[StrictStr] = None
    item_mapping: PathStr = Field(None, description="the item id of each row of a .npy matrix")
    extract: Extract
    attribute_file: PathStr = Field(None, description="ItemAttributes / UserAttributes: Elliot's TSV "
                                                      "id<TAB>attr<TAB>... or, with format: ml100k, u.item / u.user")
    format: Optional[Literal["elliot", "ml100k"]] = Field(None, description="ItemAttributes / UserAttributes: "
                                                                          "the attribute file's format (elliot)")
    name: Optional[StrictStr] = Field(None, description="ItemAttributes / UserAttributes (format elliot): the "
                                                        "attribute set's name")
    missing: Optional[Literal["unknown", "error"]] = Field(None, description="ItemAttributes / UserAttributes: an "
                                                                           "id without a row (unknown)")
    visual_pca_features: PathStr = Field(None, description="Elliot's; the visual features when visual_features is absent")
    visual_feat_map_features: PathStr = Field(None, description="Elliot's; not used")
    images_src_folder: PathStr = Field(None, description="Elliot's; not used")
    output_image_size: Any = Field(None, description="Elliot's; not used")

    @classmethod
    def known_keys(cls, data: dict) -> Tuple[str, List[str]]:
        loader = LOADER_SPELLINGS.get(str(data.get("dataloader", "")).lower())
        if loader in ("ItemAttributes", "UserAttributes"):
            return "key", ATTRIBUTE_KEYS
        if loader in LOADERS:
            return "key", ["dataloader", LOADERS[loader][0], "modality", "item_mapping", "features", "extract"]
        return super().known_keys(data)


class Fetch(Block):
    name: Optional[StrictStr] = Field(None, description="a catalogue dataset (python -m elliot.datasets list)")
    root: PathStr = Field(None, description="default: ../data from the config's folder")


def _fetch(value):
    return {} if value is True else None if value is False else {"name": value} if isinstance(value, str) else value


class DataConfig(Block):
    strategy: Literal[DATA_STRATEGIES] = Field(
        description="fixed (train/validation/test files) | dataset (+ splitting) | mmrec (.inter with x_label) | "
                    "hierarchy (Elliot's saved splits under root_folder)")
    train_path: PathStr = None
    validation_path: PathStr = None
    test_path: PathStr = None
    dataset_path: PathStr = None
    header: Any = Field(None, description="the files have a header line")
    separator: StrictStr = "\t"
    side_information: Optional[one_or_list(SideInformation)] = None
    missing_features: Literal[MISSING_FEATURES] = Field("drop", description="items without features")
    root_folder: PathStr = None
    dataloader: Optional[Literal["DataSetLoader"]] = None
    fetch: Annotated[Optional[Fetch], BeforeValidator(_fetch), Alternatives({"type": "boolean"}, {"type": "string"}),
                     Field(None, description="download the catalogue dataset before loading")]
    item_catalogue: Literal[ITEM_CATALOGUES] = Field(
        "train", description="train: the items with a training interaction (Elliot); all: every item of any split "
                             "and every item with side information (MMRec)")


class Prefilter(Block):
    strategy: Literal[tuple(PREFILTERS)]
    threshold: Optional[Union[number(), Literal["average"]]] = None
    core: Optional[PositiveInt] = None
    rounds: Optional[PositiveInt] = None

    @classmethod
    def known_keys(cls, data: dict) -> Tuple[str, List[str]]:
        strategy = data.get("strategy")
        if isinstance(strategy, str) and strategy in PREFILTERS:
            return "key", ["strategy", *PREFILTERS[strategy]]
        return super().known_keys(data)


class SplitBlock(Block):
    strategy: Literal[tuple(sorted(SPLIT_STRATEGIES))]
    test_ratio: Optional[number(gt=0, lt=1)] = None
    leave_n_out: Optional[PositiveInt] = None
    timestamp: Any = None
    folds: Optional[int] = Field(None, description="1: cross-validation is not supported")
    min_below: Any = None
    min_over: Any = None


class Splitting(Block):
    save_on_disk: bool = False
    save_folder: PathStr = None
    test_splitting: Optional[SplitBlock] = None
    validation_splitting: Optional[SplitBlock] = None


class NegativeSampling(Block):
    """Elliot's sampled evaluation (see elliot.evaluation.negative_sampling)."""

    strategy: Optional[Literal[NEGATIVE_SAMPLING_STRATEGIES]] = None
    num_items: Optional[integer(ge=1, strings=True)] = None
    files: Optional[one_or_list(StrictStr)] = Field(None, description="[test negatives, validation negatives]")
    file_path: PathStr = None
    save_on_disk: Optional[StrictBool] = None


# ---- evaluation -----------------------------------------------------------------------------------------
ComplexMetricName = name_of(list(COMPLEX_METRICS), "complex metric")
Relevance = name_of(["binary", "discounted"], "relevance")


class ComplexMetric(Block):
    """One of Elliot's complex metrics and its parameters (elliot.evaluation.metrics.complex)."""

    metric: ComplexMetricName
    clustering_name: Optional[Union[StrictStr, StrictInt]] = None
    clustering_file: PathStr = None
    user_clustering_name: Optional[Union[StrictStr, StrictInt]] = None
    user_clustering_file: PathStr = None
    item_clustering_name: Optional[Union[StrictStr, StrictInt]] = None
    item_clustering_file: PathStr = None
    feature_data: PathStr = None
    metric_0: Optional[StrictStr] = None
    metric_1: Optional[StrictStr] = None
    relevance: Optional[Relevance] = None
    beta: Optional[number(gt=0)] = None
    pop_ratio: Optional[number(gt=0, le=1)] = None

    @classmethod
    def known_keys(cls, data: dict) -> Tuple[str, List[str]]:
        name = {m.lower(): m for m in COMPLEX_METRICS}.get(str(data.get("metric", "")).lower())
        if name is None:
            return super().known_keys(data)
        return f"key of {name}", ["metric", *COMPLEX_METRICS[name]]


def _attack_schema() -> dict:
    """An attack entry: ``method`` one of the methods or aliases, and per method only its keys
    (:data:`elliot.config.attack_keys.METHOD_KEYS`, the table the attack validator uses)."""
    cases = []
    for method in METHODS:
        spellings = [method] + [alias for alias, target in ALIASES.items() if target == method]
        cases.append({"if": {"properties": {"method": {"pattern": ci_pattern(spellings)}}},
                      "then": {"propertyNames": {"enum": sorted(METHOD_KEYS[method])}}})
    return {"type": "object", "required": ["method"],
            "properties": {"method": {"type": "string", "pattern": ci_pattern([*METHODS, *ALIASES])}},
            "allOf": cases}


_ATTACK = _attack_schema()
_ATTACK_NAME = {"type": "string", "pattern": ci_pattern([*METHODS, *ALIASES])}  # the shorthand "- fgsm_l2"
def _attack_keys(value):
    """Methods and key names of the attack entries, checked with the other keys of the file (before any
    data file is looked for); values, budgets and modalities are checked by elliot.evaluation.attacks."""
    entries = value if isinstance(value, list) else [value]
    for entry in entries:
        if isinstance(entry, (str, dict)):
            method = entry if isinstance(entry, str) else entry.get("method")
            if method is None:
                continue  # the attack validator says "an attack needs 'method'"
            method = canonical_method(method)
            if method not in METHODS:
                raise PydanticCustomError("unknown_key", "unknown {kind} '{key}'",  # said with the key typos
                                          {"kind": "attack method", "key": str(entry if isinstance(entry, str)
                                                                               else entry["method"]),
                                           "valid": [*METHODS, *ALIASES]})
            for key in entry if isinstance(entry, dict) else ():
                if key not in METHOD_KEYS[method]:
                    raise PydanticCustomError("unknown_key", "unknown {kind} '{key}'",
                                              {"kind": f"key for attack '{method}'", "key": str(key),
                                               "valid": sorted(METHOD_KEYS[method])})
    return value


#: checked again (values, budgets, modalities) by elliot.evaluation.attacks; see docs/robustness.md
Attacks = Annotated[Any, BeforeValidator(_attack_keys), WithJsonSchema({"anyOf": [{"type": "boolean"}, _ATTACK_NAME, _ATTACK, {
    "type": "array", "items": {"anyOf": [_ATTACK_NAME, _ATTACK]}}, {"type": "null"}],
    "description": "attacks on the item features, e.g. {method: fgsm_l2, modality: each, eps_ratio: 0.05}; methods: "
                   "fgsm_l2, fgsm, msap, certified_radius, promotion, missing_modality (docs/robustness.md); "
                   "validated by elliot.evaluation.attacks"})]


class Evaluation(Block):
    cutoffs: Optional[one_or_list(PositiveInt)] = Field(None, description="default: [top_k]")
    simple_metrics: Optional[one_or_list(MetricName)] = Field(None, description="default: Recall, nDCG, Precision")
    complex_metrics: Optional[one_or_list(ComplexMetric)] = None
    relevance_threshold: number() = 0
    paired_ttest: StrictBool = False
    wilcoxon_test: StrictBool = False
    mask_validation_in_test: StrictBool = Field(True, description="validation items are not ranked at test")
    batch_size: PositiveInt = Field(1024, description="users per evaluation batch")
    attacks: Attacks = None


# ---- the experiment -------------------------------------------------------------------------------------
class MLflow(Block):
    tracking_uri: StrictStr = Field(description="sqlite:///mlflow.db, http://host:5000, or a folder (a file store)")
    experiment_name: Optional[StrictStr] = Field(None, description="default: the dataset name")


class Tracking(Block):
    mlflow: Optional[MLflow] = None


class Experiment(Block):
    key_hints = {"restore": "reusing finished trials is experiment.reuse_trials (true by default); Elliot's "
                            "meta.restore (in a model's meta) loads saved weights instead of training"}

    version: Optional[Union[StrictStr, StrictInt, float]] = Field(None, description="Elliot's; recorded")
    dataset: Union[StrictStr, StrictInt] = Field(description="the dataset name: {0} in paths, results/<dataset>")
    random_seed: StrictInt = 42
    data_config: DataConfig
    prefiltering: Optional[one_or_list(Prefilter)] = None
    binarize: StrictBool = False
    splitting: Optional[Splitting] = None
    top_k: Optional[PositiveInt] = Field(None, description="the length of every list; default: the largest cutoff")
    evaluation: Optional[Evaluation] = None
    gpu: StrictInt = Field(-1, description="a CUDA index (used when present), -1: CPU")
    external_models_path: PathStr = None
    path_output_rec_result: PathStr = None
    path_output_rec_weight: PathStr = None
    path_output_rec_performance: PathStr = None
    path_log_folder: PathStr = None
    models: Dict[str, Optional[ModelBlock]] = Field(description="model name (BPRMF, external.VBPR, ...) -> block")
    n_jobs: Optional[NJobs] = None
    executor: Executor = None
    ray_address: Optional[StrictStr] = None
    reuse_trials: Optional[StrictBool] = None
    backend: Optional[one_or_list(StrictStr)] = Field(None, description="pytorch (Elliot's; others are refused)")
    config_test: StrictBool = False
    print_results_as_triplets: StrictBool = False
    align_side_with_train: StrictBool = Field(True, description="false keeps featureless items (zero vectors)")
    negative_sampling: Optional[NegativeSampling] = None
    path_logger_config: Any = Field(None, description=f"accepted, not used: {IGNORED_ELLIOT_KEYS['path_logger_config']}")
    path_log_level: Any = Field(None, description=f"accepted, not used: {IGNORED_ELLIOT_KEYS['path_log_level']}")
    tracking: Optional[Tracking] = None


class ExperimentFile(Block):
    """An experiment file (Elliot's schema)."""

    experiment: Experiment
