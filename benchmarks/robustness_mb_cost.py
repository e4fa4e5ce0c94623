"""Cost of Modality Balancing on graph backbones: s/epoch of the undefended model, of MB with one full pass
per use (``share_passes=False``, the implementation before the shared passes) and of MB with shared passes
(the default), on TikTok, single-threaded, interleaved batch by batch in one process (every variant sees the
same host load).

    OMP_NUM_THREADS=1 python benchmarks/robustness_mb_cost.py [--models LightGCNM GRCN] [--epochs 1]

Each variant trains its own copy of the model (same initialisation, same batches, its own Adam) through one
epoch of the training sampler (batch 2048); a variant's s/epoch is the sum of its step times (zero_grad,
loss + MB term, backward, optimiser step).  Runs go to ``benchmarks/robustness_mb_cost_runs.json``;
``docs/robustness.md`` shows them (``python benchmarks/robustness.py --only-doc``).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from benchmarks.run_store import merge_runs  # noqa: E402

RUNS = ROOT / "benchmarks" / "robustness_mb_cost_runs.json"
#: backbone -> (hyperparameters, MB pgd_steps): LightGCNM as benchmarks/robustness.py (3 PGD steps there),
#: GRCN with its defaults and the defense's default 10 PGD steps
SETUPS = {"LightGCNM": ({"factors": 64, "n_layers": 2, "lr": 0.005, "l_w": 1e-4}, 3),
          "GRCN": ({}, 10)}


def measure(dataset, backbone: str, epochs: int = 1, seed: int = 42) -> dict:
    from elliot.config.params import coerce_params, expand_grid
    from elliot.recommender.registry import available_models
    from elliot.training.defenses.modality_balancing import ModalityBalancing, embedder_for

    raw, steps = SETUPS[backbone]
    cls = available_models()[f"external.{backbone}"]
    hp = expand_grid(coerce_params(cls.declared_params(), {**raw, "epochs": epochs, "batch_size": 2048,
                                                            "seed": seed}, backbone))[0]
    mods = list(dataset.features)
    variants = {}
    for name, share in (("none", None), ("MB one pass per use", False), ("MB shared passes", True)):
        torch.manual_seed(seed)
        model = base = cls(dataset, hp, torch.device("cpu"))
        mb = None if share is None else ModalityBalancing(mods[0], mods[1], pgd_steps=steps, seed=seed,
                                                          share_passes=share)
        variants[name] = (model, model.make_optimizer(), mb, [])
    sampler = base.make_sampler(dataset, seed)
    from elliot.recommender.base import batch_type

    batch_cls, fields = batch_type(sampler)
    for epoch in range(epochs):
        for arrays in sampler.epoch(2048):
            batch = batch_cls(zip(fields, (torch.as_tensor(a) for a in arrays)))
            for model, opt, mb, times in variants.values():
                start = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                loss = model.loss(batch)
                if mb is not None:
                    loss = loss + mb.extra_loss(model, batch, epoch)
                loss.backward()
                opt.step()
                times.append(time.perf_counter() - start)
    n_batches = len(next(iter(variants.values()))[3]) // epochs
    out = {name: sum(t) / epochs for name, (_, _, _, t) in variants.items()}
    return {"dataset": dataset.name, "backbone": backbone, "pgd_steps": steps, "epochs": epochs,
            "batches_per_epoch": n_batches, "threads": torch.get_num_threads(), "s_per_epoch": out,
            "fast_embedder": embedder_for(base).__qualname__}


def main() -> None:
    from benchmarks.robustness import datasets

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=list(SETUPS))
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    dataset = datasets(["tiktok"])["tiktok"]
    for backbone in args.models:
        record = measure(dataset, backbone, args.epochs)
        merge_runs(RUNS, lambda runs: [r for r in runs if r["backbone"] != backbone] + [record], [])
        print(backbone, {k: round(v, 2) for k, v in record["s_per_epoch"].items()}, flush=True)


if __name__ == "__main__":
    main()
