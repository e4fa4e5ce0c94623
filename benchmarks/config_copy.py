"""Scratch copies of a bench config for diagnostics (``best_test_epoch.py``, ``seed_spread.py``): paths made
absolute so the copy runs from any folder, and the grid pinned to the point our validation selected in the
stored run (``benchmarks/results_runs.json``).  Nothing here selects anything; it only rewrites YAML."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results_runs.json"  # the stored table runs (benchmarks/results.py)


def selected_trials(config: Path) -> dict:
    """{model block name: (stored run, the trial our validation selected)} from the stored runs of ``config``."""
    from benchmarks.results import run_key
    runs = json.loads(RESULTS.read_text())
    return {key.split("::")[1]: (rec, next(t for t in rec["trials"] if t["name"] == rec["best"]))
            for key, rec in runs.items() if key.split("::")[0] == run_key(config)}


def selected_params(config: Path) -> dict:
    """{model block name: params of the trial our validation selected} from the stored run of ``config``."""
    return {name: trial["params"] for name, (_, trial) in selected_trials(config).items()}


def absolute_paths(value, base: Path):
    """Every relative path-like string (one with a '/') in ``value`` resolved against ``base``."""
    if isinstance(value, str) and ("/" in value) and not Path(value).is_absolute():
        return str(base / value)
    if isinstance(value, dict):
        return {k: absolute_paths(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [absolute_paths(v, base) for v in value]
    return value


def pinned_copy(config: Path, keep_grid: bool = False) -> dict:
    """The raw YAML of ``config`` with absolute data paths and, unless ``keep_grid``, every list-valued
    hyperparameter replaced by the value of the stored selected trial (SystemExit when none is stored)."""
    config = Path(config).resolve()
    raw = yaml.safe_load(config.read_text())
    exp = raw["experiment"]
    exp["data_config"] = absolute_paths(exp["data_config"], config.parent)
    if keep_grid:
        return raw
    chosen = selected_params(config)
    if not chosen:
        raise SystemExit(f"{config}: no stored run in benchmarks/results_runs.json (run benchmarks/results.py first)")
    from elliot.recommender.registry import resolve_model
    for name, block in exp["models"].items():
        picked = chosen.get(name, {})
        # the stored params use the canonical names; the YAML may use an alias (MMRec's reg_weight = l_w)
        canonical = {a: p.name for p in resolve_model(name, exp.get("external_models_path")).declared_params()
                     for a in p.aliases}
        for key, value in list(block.items()):
            stored = picked.get(canonical.get(key, key))
            if isinstance(value, list) and stored is not None and not isinstance(stored, list):
                block[key] = stored
    return raw
