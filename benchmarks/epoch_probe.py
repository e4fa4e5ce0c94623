"""Seconds per training epoch of one model on one benchmark config's data (quick probe, no validation).

    python benchmarks/epoch_probe.py config_files/bench/baselines_tiktok.yml LightGCN [--epochs 4] [k=v ...]

Builds the dataset and the model exactly as the experiment does (first value of every grid axis), runs
``--epochs`` epochs of the shared training step and prints the median seconds per epoch after the first.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import yaml  # noqa: E402

from elliot.config import load_config  # noqa: E402
from elliot.dataset.builder import build_dataset  # noqa: E402
from elliot.recommender.registry import resolve_model  # noqa: E402
from elliot.search.plan import plan_trials  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config", type=Path)
    parser.add_argument("model")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("overrides", nargs="*", help="hyperparameter overrides k=v (YAML values)")
    args = parser.parse_intermixed_args()  # k=v overrides before or after --epochs
    cfg = load_config(args.config)
    exp = cfg.experiment_dict()
    name = next(n for n in cfg.models if n.split(".")[-1] == args.model)
    cls = resolve_model(name, exp.get("external_models_path"))
    params = next(iter(plan_trials(cls, cfg.models[name], where=name).configurations()))
    params.update({k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.overrides)})
    t0 = time.perf_counter()
    dataset = build_dataset(exp, log=lambda *_: None)
    t1 = time.perf_counter()
    torch.manual_seed(0)
    model = cls(dataset, params, torch.device("cpu"))
    t2 = time.perf_counter()
    model.train()
    optimizer = model.make_optimizer()
    sampler = model.make_sampler(dataset, 0)
    from elliot.recommender.base import TripletBatch
    times = []
    for epoch in range(args.epochs):
        start = time.perf_counter()
        model.on_epoch_start(epoch)
        for u, i, j in sampler.epoch(int(params.get("batch_size", 2048))):
            batch = TripletBatch(users=torch.from_numpy(u), pos_items=torch.from_numpy(i), neg_items=torch.from_numpy(j))
            optimizer.zero_grad(set_to_none=True)
            loss = model.loss(batch)
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - start)
    print(f"{args.model} on {exp['dataset']}: data {t1 - t0:.2f} s, model build {t2 - t1:.2f} s, "
          f"s/epoch median {statistics.median(times[1:] or times):.3f} (all: {', '.join(f'{t:.2f}' for t in times)}), "
          f"threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
