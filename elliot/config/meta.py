"""Resolving what the schema cannot check alone: metric names against Elliot's catalogue and the evaluated
cutoffs, a model's ``meta`` (its ``validation_metric``, ``early_stopping``) and the trial-execution keys.

The keys of these blocks were checked by :mod:`elliot.config.schema` before; the messages here name the
key and the valid values (one line, did-you-mean)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from elliot.config.schema import EXECUTORS, HYPER_ALGS, METRIC_ALIASES, Meta
from elliot.errors import ConfigError, did_you_mean, unknown_name


def metric_name(name: str, where: str, file: str) -> str:
    from elliot.evaluation.metrics import METRICS

    lowered = {m.lower(): m for m in METRICS}
    # the forks' single_nDCG / single_ARP are nDCG / ARP whose per-user values they write out: every metric's
    # per-user values are kept here anyway (trials/per_user/*.npz)
    lowered.update({alias.lower(): canonical for alias, canonical in METRIC_ALIASES.items()})
    if str(name).lower() in lowered:
        return lowered[str(name).lower()]
    from elliot.evaluation.metrics import COMPLEX_METRICS

    if str(name).lower() in {m.lower() for m in COMPLEX_METRICS}:
        raise ConfigError(f"{file}: {where}: '{name}' needs parameters (a clustering or feature file): list it "
                          f"under evaluation.complex_metrics, e.g. {{metric: {name}, clustering_name: ..., "
                          "clustering_file: ...}")
    raise ConfigError(f"{file}: {unknown_name('metric', name, METRICS, where=where)}")


META_TYPES = {"validation_rate": int, "save_weights": bool, "save_recs": bool, "verbose": bool,
              "eval_perturbations": bool, "restore": bool, "optimize_internal_loss": bool}


def _typed_flag(raw: dict, key: str, typ, where: str, file: str):
    value = raw[key]
    if typ is bool and isinstance(value, str) and value.lower() in ("true", "false"):
        value = value.lower() == "true"  # Elliot reads meta through SimpleNamespace: strings slip through
    if typ is bool and not isinstance(value, bool) or typ is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{file}: {where}.{key}: {value!r} is not a valid {typ.__name__}")
    return value


def metric_at(value, cutoffs: List[int], metrics: List[str], where: str, file: str) -> str:
    """``Name@k`` (``@k`` optional: the first cutoff) -> canonical ``Name@k``; the name must be evaluated."""
    name, sep, k = str(value).partition("@")
    if not sep:
        k = str(cutoffs[0])
    name = metric_name(name, where, file)
    if not k.isdigit() or int(k) not in cutoffs:
        raise ConfigError(f"{file}: {where}: cutoff '{k}' of '{value}' is not one of evaluation.cutoffs {cutoffs}")
    return f"{name}@{int(k)}"


def parse_early_stopping(es, cutoffs: List[int], metrics: List[str], validation_metric: str, where: str,
                         file: str) -> Dict[str, Any]:
    """Elliot's ``early_stopping`` block, checked; see :mod:`elliot.training.early_stopping`."""
    if not isinstance(es, dict):
        raise ConfigError(f"{file}: {where} must be a mapping, got {type(es).__name__}")
    out: Dict[str, Any] = {"patience": es.get("patience", 0), "monitor": validation_metric, "mode": "auto",
                           "min_delta": None, "rel_delta": None, "baseline": None, "verbose": False, "rule": "elliot"}
    if isinstance(out["patience"], bool) or not isinstance(out["patience"], int) or out["patience"] < 0:
        raise ConfigError(f"{file}: {where}.patience: {out['patience']!r} must be an integer >= 0 "
                          "(validation checks without improvement)")
    if es.get("monitor") is not None:
        monitor = str(es["monitor"])
        out["monitor"] = "loss" if monitor.lower() == "loss" else metric_at(monitor, cutoffs, metrics,
                                                                            f"{where}.monitor", file)
    mode = es.get("mode", "auto")
    if mode not in ("auto", "min", "max"):
        raise ConfigError(f"{file}: {where}.mode: {mode!r}{did_you_mean(str(mode), ('auto', 'min', 'max'))}; "
                          "valid: auto, min, max")
    out["mode"] = mode
    for key in ("min_delta", "rel_delta", "baseline"):
        if es.get(key) is not None:
            value = es[key]
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"{file}: {where}.{key}: {value!r} is not a number") from None
            if key != "baseline" and not value >= 0:
                raise ConfigError(f"{file}: {where}.{key}: {value!r} must be >= 0")
            out[key] = value
    if "verbose" in es:
        out["verbose"] = _typed_flag(es, "verbose", bool, where, file)
    rule = es.get("rule", "elliot")
    if rule not in ("elliot", "fork", "best"):
        raise ConfigError(f"{file}: {where}.rule: {rule!r}{did_you_mean(str(rule), ('elliot', 'fork', 'best'))}; "
                          "valid: elliot (Elliot 0.3.1: consecutive declines), fork (the multimodal forks: nothing "
                          "beats the value patience checks ago), best (no improvement on the best value)")
    out["rule"] = rule
    return out


def parse_meta(raw: Optional[dict], cutoffs: List[int], metrics: List[str], where: str, file: str) -> Meta:
    """A model's ``meta`` (keys already checked by the schema) -> :class:`Meta` with the canonical
    ``validation_metric`` and the full ``early_stopping`` block."""
    raw = dict(raw or {})
    meta = Meta()
    for key, typ in META_TYPES.items():
        if key in raw:
            setattr(meta, key, _typed_flag(raw, key, typ, where, file))
    if meta.validation_rate < 1:
        raise ConfigError(f"{file}: {where}.validation_rate must be >= 1, got {meta.validation_rate}")
    meta.validation_metric = metric_at(raw.get("validation_metric", f"{metrics[0]}@{cutoffs[0]}"), cutoffs,
                                       metrics, f"{where}.validation_metric", file)
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
    if raw.get("early_stopping") is not None:
        meta.early_stopping = parse_early_stopping(raw["early_stopping"], cutoffs, metrics, meta.validation_metric,
                                                   f"{where}.early_stopping", file)
    return meta


def parse_execution(raw: dict, target, where: str, file: str) -> None:
    """``n_jobs`` / ``executor`` / ``ray_address`` / ``reuse_trials`` of a model's meta or of the experiment."""
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
    if raw.get("reuse_trials") is not None:
        if not isinstance(raw["reuse_trials"], bool):
            raise ConfigError(f"{file}: {where}.reuse_trials: {raw['reuse_trials']!r} is not true/false")
        _set(target, "reuse_trials", raw["reuse_trials"])


def _set(target, key, value) -> None:
    if isinstance(target, dict):
        target[key] = value
    else:
        setattr(target, key, value)
