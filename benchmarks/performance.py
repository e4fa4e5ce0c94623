"""Performance benchmarks (issue 6): per-model speed and memory on real data, scaling on generated data,
LATTICE/FREEDOM item-graph construction, sampler throughput, loading of a 10^7-interaction TSV.

    python benchmarks/performance.py                                  # every part (20-40 min on 2 cores)
    python benchmarks/performance.py --part models --models BPRMF VBPR --datasets tiktok
    python benchmarks/performance.py --part scaling lattice-graph sampler loading profile
    python benchmarks/performance.py --quick                          # tiny sizes: development / smoke test
    python benchmarks/performance.py --only-doc                       # rewrite docs/performance.md

Every measurement runs in its own subprocess (``--child``), which prints one JSON line: its peak
resident memory (``ru_maxrss``) is that measurement's alone.  Results are stored in
``benchmarks/performance_runs.json`` keyed by part and case (``models::tiktok::BPRMF``,
``scaling::LightGCN::1000000``, ...): re-running one part or model replaces only its entries.  Each
entry records the commit, date, torch version, torch threads, CPU count and the 1-minute load average
at the start and end of the measurement (other jobs on the machine show up there; the benchmark itself
adds up to ~its thread count).  ``docs/performance.md`` is regenerated from the stored runs.
``--quick`` writes to a temporary folder (never to the stored runs or the doc) unless ``--runs`` /
``--doc`` are given.

Measurements use the library's own code paths: the :class:`~elliot.training.trainer.Trainer` loop
(validation switched off by handing it the dataset without its validation split) for epoch times, the
:class:`~elliot.evaluation.evaluator.Evaluator` for full-ranking passes and
:func:`~elliot.evaluation.attacks.evaluate_attacks` for FGSM-L2; nothing here changes a result.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RUNS = ROOT / "benchmarks" / "performance_runs.json"
DOC = ROOT / "docs" / "performance.md"
BENCH = ROOT / "config_files" / "bench"
PARTS = ("models", "scaling", "lattice-graph", "sampler", "loading", "profile")
MODELS = ("BPRMF", "LightGCN", "VBPR", "LightGCNM", "MMGCN", "GRCN", "SLMRec", "FREEDOM", "LATTICE",
          # issue 14's additions (ItemKNNCBF has no training epoch: its cost is the kNN build, see lattice-graph)
          "NGCF", "SGL", "LayerGCN", "SelfCF", "MBPR", "NGCFM", "BM3", "DRAGON", "MGCN", "LGMRec", "SMORE",
          "DualGNN", "DAMRS", "PGL", "MVGAE", "MMGCF", "DiffMM")
DATASETS = ("tiktok", "lfm2k")
PROFILED = ("LightGCN", "MMGCN", "GRCN", "SLMRec", "LATTICE")
CUTOFFS = (10, 20, 50)
METRICS = ("Recall", "nDCG", "Precision")
ATTACK = {"method": "fgsm_l2", "modality": "all", "eps_ratio": 0.05, "split": "test"}

# issue 6: targets on TikTok, 2 CPU cores (s/epoch), and MMRec's numbers (TikTok, 64 factors, batch 2048)
TARGET_EPOCH = {"BPRMF": 0.2, "VBPR": 0.3, "LightGCN": 0.4, "FREEDOM": 0.8, "SLMRec": 2.0, "GRCN": 2.5,
                "MMGCN": 3.0, "LATTICE": 4.0}
MMREC_EPOCH = {"BPRMF": "0.40", "VBPR": "0.61", "LightGCN": "0.87", "FREEDOM": "1.73", "SLMRec": "8.9",
               "GRCN": "11.3", "MMGCN": "14-16", "LATTICE": "42", "BM3": "2.31"}
TARGET_EVAL, MMREC_EVAL = 0.2, 0.45  # one full validation pass of all TikTok users at three cutoffs
TARGET_SAMPLER = 5e6  # triples / s
TARGET_LOADING = 10.0  # s for 10^7 interactions
TARGET_MEMORY_GIB = 24.0  # 10^7 interactions, 10^6 users, 10^5 items: BPRMF and LightGCN
# scaling sizes: (interactions, users, items); users = n/10, items = n/100 (at least 200)
SCALING = ((10_000, 1_000, 200), (100_000, 10_000, 1_000), (1_000_000, 100_000, 10_000),
           (10_000_000, 1_000_000, 100_000))
SCALING_QUICK = ((10_000, 1_000, 200), (30_000, 3_000, 300))
# the first value of every grid axis of config_files/bench/baselines_tiktok.yml (written out so that the
# scaling part does not need the real data)
SCALING_PARAMS = {"BPRMF": {"factors": 64, "batch_size": 2048, "lr": 0.001, "l_w": 1e-4, "l_b": 1e-4, "seed": 42},
                  "LightGCN": {"factors": 64, "batch_size": 2048, "n_layers": 3, "lr": 0.001, "l_w": 1e-4,
                               "seed": 42}}
# variants measured next to them: BPRMF with row-sparse gradients + lazy Adam (per-step cost independent
# of the table sizes); LightGCN with a fixed number of batches per epoch (batch size grows with the data:
# each step propagates the whole graph, so fixed-size batches make an epoch O(edges^2 / batch))
SCALING_VARIANTS = {"BPRMF-sparse": ("BPRMF", {"sparse_grad": True}),
                    "LightGCN-64-batches": ("LightGCN", {"batches_per_epoch": 64})}
SCALING_PARAMS.update({name: {**SCALING_PARAMS[base], **extra} for name, (base, extra) in SCALING_VARIANTS.items()})
KNN_SIZES, KNN_SIZES_QUICK = (10_000, 50_000, 200_000), (2_000, 5_000)


# ---------------------------------------------------------------------------------------------- helpers
def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return out.stdout.strip() + ("+dirty" if dirty else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return int(line.split()[1]) / 1024 ** 2
    except OSError:
        pass
    return float("nan")


def _config_path(model: str, dataset: str) -> Path:
    stem = "baselines" if model in ("BPRMF", "LightGCN") else model.lower()
    return BENCH / f"{stem}_{dataset}.yml"


def _first_params(cls, raw: dict, where: str) -> dict:
    """The first configuration of the grid (first value of every axis), typed as the experiment does."""
    from elliot.config import coerce_params, expand_grid

    return expand_grid(coerce_params(cls.declared_params(), raw, where=where))[0]


def _load_model_setup(config: Path, model: str):
    """(experiment dict, registry name, class, first-grid params) of ``model`` in a bench config."""
    from elliot.config import load_config
    from elliot.recommender.registry import resolve_model

    cfg = load_config(config)
    exp = cfg.experiment_dict()
    name = next(n for n in cfg.models if n.split(".")[-1] == model)
    cls = resolve_model(name, exp.get("external_models_path"))
    return exp, name, cls, _first_params(cls, cfg.models[name].params, name)


def _evaluator(dataset, exp: dict, batch_size=None):
    from elliot.evaluation.evaluator import Evaluator

    ev = exp.get("evaluation") or {}
    return Evaluator(dataset, cutoffs=CUTOFFS, metrics=METRICS,
                     relevance_threshold=ev.get("relevance_threshold", 0.0),
                     mask_validation_in_test=ev.get("mask_validation_in_test", True),
                     batch_size=batch_size or ev.get("batch_size", 1024), top_k=exp.get("top_k"))


class _CappedSampler:
    """Wraps a sampler: an epoch stops yielding after ``budget_s`` seconds (always >= 1 batch) and
    records the fraction of the epoch's batches it ran, so the epoch time can be extrapolated."""

    def __init__(self, sampler, budget_s: float):
        self.sampler, self.budget_s = sampler, budget_s
        self.fractions = []

    def __len__(self):
        return len(self.sampler)

    def epoch(self, batch_size: int):
        total = max(self.sampler.n_batches(batch_size), 1)
        start, done = time.perf_counter(), 0
        for batch in self.sampler.epoch(batch_size):
            yield batch
            done += 1
            if time.perf_counter() - start > self.budget_s:
                break
        self.fractions.append(done / total)


def _train_epochs(model, dataset, params: dict, epochs: int, budget_s: float = 0.0):
    """Per-epoch seconds of ``epochs`` epochs of the Trainer's loop (no validation).  With ``budget_s``,
    each epoch is cut after that many seconds and its time extrapolated to the whole epoch."""
    from dataclasses import replace

    from elliot.training.trainer import Trainer

    capped = None
    if budget_s:
        make = model.make_sampler

        def make_capped(ds, seed):
            nonlocal capped
            capped = _CappedSampler(make(ds, seed), budget_s)
            return capped

        model.make_sampler = make_capped  # instance attribute: the class is untouched
    trainer = Trainer(model, replace(dataset, validation=None), None, epochs=epochs,
                      batch_size=int(params.get("batch_size", 1024)), seed=int(params.get("seed", 42)),
                      progress=False)
    fit = trainer.fit()
    measured = [h["seconds"] for h in fit.history]
    if capped is None:
        return measured, measured, [1.0] * len(measured)
    fractions = capped.fractions
    return [t / f for t, f in zip(measured, fractions)], measured, fractions


def _restrict_validation(dataset, users):
    """The dataset whose validation split keeps only the rows of ``users`` (for a partial evaluation)."""
    from dataclasses import replace

    import numpy as np
    import scipy.sparse as sp

    keep = np.zeros(dataset.n_users, dtype=np.float32)
    keep[users] = 1.0
    val = (sp.diags(keep) @ dataset.validation).tocsr()
    val.eliminate_zeros()
    return replace(dataset, validation=val)


def _reference_gflops() -> float:
    """Speed of this machine right now: float32 GEMM (1024^3, median of 7) in GFLOP/s.  This VM's speed
    drifts between sessions (shared host); the column lets rows measured at different times be compared."""
    import torch

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * 1024 ** 3 / statistics.median(times) / 1e9


# ---------------------------------------------------------------------------------------------- children
def child_model(spec: dict) -> dict:
    """One model on one bench config: s/epoch, one validation pass, one FGSM-L2 evaluation, peak RSS."""
    import torch

    from elliot.dataset.builder import build_dataset

    out = {"threads": _threads(), "reference_gflops": _reference_gflops()}
    exp, name, cls, params = _load_model_setup(Path(spec["config"]), spec["model"])
    t0 = time.perf_counter()
    dataset = build_dataset(exp, log=lambda *_: None)
    out.update(data_s=time.perf_counter() - t0, rss_after_data_mib=_rss_mib(), n_users=dataset.n_users,
               n_items=dataset.n_items, n_train=int(dataset.train.nnz), registry_name=name,
               params={k: v for k, v in params.items() if not isinstance(v, (dict,))})
    seed = int(params.get("seed", 42))
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    model = cls(dataset, params, torch.device("cpu"))
    out.update(build_s=time.perf_counter() - t0, rss_after_build_mib=_rss_mib())
    batch = int(params.get("batch_size", 1024))
    out["batches_per_epoch"] = math.ceil(dataset.train.nnz / batch)
    warmup, epochs = int(spec["warmup"]), int(spec["epochs"])
    times, _, _ = _train_epochs(model, dataset, params, warmup + epochs)
    out.update(epoch_s_all=times, epoch_s=statistics.median(times[warmup:]), epochs_measured=epochs,
               warmup_epochs=warmup, rss_after_train_mib=_rss_mib())
    evaluator = _evaluator(dataset, exp)
    evaluator.evaluate(model, "validation")  # warm-up (allocations, caches)
    evals = []
    for _ in range(int(spec.get("eval_repeats", 3))):
        t0 = time.perf_counter()
        evaluator.evaluate(model, "validation")
        evals.append(time.perf_counter() - t0)
    out.update(eval_s=statistics.median(evals), eval_s_all=evals,
               eval_users=int(len(evaluator.evaluated_users("validation"))), eval_batch=evaluator.batch_size,
               rss_after_eval_mib=_rss_mib())
    t0 = time.perf_counter()  # top-50 of every user with training data (masking train and validation)
    rec_users, _, _ = evaluator.recommendations(model, max(CUTOFFS))
    out.update(rank_all_s=time.perf_counter() - t0, rank_all_users=int(len(set(rec_users.tolist()))))
    from elliot.evaluation.attacks import evaluate_attacks, is_attackable

    if is_attackable(model):
        clean = evaluator.evaluate(model, "test")
        attack = dict(ATTACK)
        if spec.get("attack_sample"):
            attack["sample_size"] = int(spec["attack_sample"])
        t0 = time.perf_counter()
        records = evaluate_attacks(model, dataset, evaluator, [attack], clean=clean, seed=seed)
        out.update(attack_s=time.perf_counter() - t0, attack_sample=records[0].get("sample_size") if records else None,
                   attack_recall20_drop=next((r["drop"].get("Recall") for r in records if r.get("cutoff") == 20),
                                             None), rss_after_attack_mib=_rss_mib())
    out["peak_rss_mib"] = _rss_mib()
    return out


def child_scaling(spec: dict) -> dict:
    """BPRMF / LightGCN on generate_scaled data: epoch time, full evaluation time, peak RSS."""
    import numpy as np
    import scipy.sparse as sp
    import torch

    from elliot.dataset.dataset import Dataset
    from elliot.dataset.generator import generate_scaled, split_per_user
    from elliot.recommender.registry import resolve_model

    n, n_users, n_items = int(spec["n"]), int(spec["users"]), int(spec["items"])
    out = {"threads": _threads()}
    t0 = time.perf_counter()
    users, items, ts, _, _, _ = generate_scaled(n, n_users, n_items, seed=2024, visual_dim=8, textual_dim=8)
    part = split_per_user(users, ts)
    splits = []
    for code in (0, 1, 2):
        sel = part == code
        splits.append(sp.csr_matrix((np.ones(int(sel.sum()), np.float32), (users[sel], items[sel])),
                                    shape=(n_users, n_items)))
    del users, items, ts, part, sel
    dataset = Dataset(name=f"scaled{n}", user_ids=np.arange(n_users).astype(str),
                      item_ids=np.arange(n_items).astype(str), train=splits[0], validation=splits[1], test=splits[2])
    out.update(data_s=time.perf_counter() - t0, n_train=int(dataset.train.nnz), rss_after_data_mib=_rss_mib())
    base = SCALING_VARIANTS.get(spec["model"], (spec["model"],))[0]
    cls = resolve_model(base)
    raw = dict(SCALING_PARAMS[spec["model"]])
    batches = raw.pop("batches_per_epoch", None)
    if batches:
        raw["batch_size"] = max(int(raw["batch_size"]), math.ceil(dataset.train.nnz / int(batches)))
    params = _first_params(cls, raw, base)
    out["batch_size"] = int(params["batch_size"])
    torch.manual_seed(42)
    model = cls(dataset, params, torch.device("cpu"))
    out["rss_after_build_mib"] = _rss_mib()
    warmup, epochs = int(spec["warmup"]), int(spec["epochs"])
    budget = float(spec.get("epoch_budget_s") or 0)
    times, measured, fractions = _train_epochs(model, dataset, params, warmup + epochs, budget)
    out.update(epoch_s=statistics.median(times[warmup:]), epoch_s_all=times, epoch_measured_s=measured,
               epoch_fraction_run=fractions, epoch_extrapolated=any(f < 1.0 for f in fractions),
               batches_per_epoch=math.ceil(dataset.train.nnz / int(params["batch_size"])),
               rss_after_train_mib=_rss_mib())
    # evaluation: all validation users, unless the pass is projected beyond the budget (then a random
    # subset, and the full pass extrapolated linearly in users: scoring and ranking cost is per user)
    full = _evaluator(dataset, {})
    all_users = full.evaluated_users("validation")
    budget = float(spec.get("eval_budget_s") or 0)
    probe_n = min(len(all_users), int(spec.get("eval_probe_users", 8192)))
    rng = np.random.default_rng(0)
    if budget and probe_n < len(all_users):
        probe = np.sort(rng.choice(all_users, probe_n, replace=False))
        ev = _evaluator(_restrict_validation(dataset, probe), {})
        t0 = time.perf_counter()
        ev.evaluate(model, "validation")
        per_user = (time.perf_counter() - t0) / probe_n
        out["eval_probe"] = {"users": probe_n, "seconds": per_user * probe_n}
        if per_user * len(all_users) > budget:
            m = min(len(all_users), max(probe_n, int(float(spec.get("eval_subset_s", budget / 2)) / per_user)))
            subset = np.sort(rng.choice(all_users, m, replace=False))
            ev = _evaluator(_restrict_validation(dataset, subset), {})
            t0 = time.perf_counter()
            ev.evaluate(model, "validation")
            dt = time.perf_counter() - t0
            out.update(eval_users=m, eval_measured_s=dt, eval_s=dt * len(all_users) / m, eval_extrapolated=True,
                       eval_users_total=int(len(all_users)), rss_after_eval_mib=_rss_mib(), peak_rss_mib=_rss_mib())
            return out
    t0 = time.perf_counter()
    full.evaluate(model, "validation")
    dt = time.perf_counter() - t0
    out.update(eval_users=int(len(all_users)), eval_measured_s=dt, eval_s=dt, eval_extrapolated=False,
               eval_users_total=int(len(all_users)), rss_after_eval_mib=_rss_mib(), peak_rss_mib=_rss_mib())
    return out


def child_knn(spec: dict) -> dict:
    """elliot.recommender.knn.knn_graph(features, k=10) on random 128-d features."""
    import torch

    from elliot.recommender.knn import knn_graph

    torch.manual_seed(0)
    x = torch.randn(int(spec["n_items"]), int(spec.get("dim", 128)))
    base = _rss_mib()
    knn_graph(x[:64], k=int(spec.get("k", 10)))  # warm-up (thread pool, allocator)
    t0 = time.perf_counter()
    index = knn_graph(x, k=int(spec.get("k", 10)))
    dt = time.perf_counter() - t0
    n = int(spec["n_items"])
    return {"threads": _threads(), "seconds": dt, "edges": int(index.shape[1]), "rss_before_mib": base,
            "peak_rss_mib": _rss_mib(), "chunk_rows": max(1, (1 << 24) // n),
            "features_mib": x.numel() * 4 / 2 ** 20}


def child_script(spec: dict) -> dict:
    """Run a benchmarks/ script's main() in this process (same code as on the command line) and return its
    printed output with the process's peak RSS."""
    import runpy

    buf = io.StringIO()
    argv = sys.argv
    sys.argv = [spec["script"]] + list(spec["argv"])
    try:
        with contextlib.redirect_stdout(buf):
            runpy.run_path(str(ROOT / spec["script"]), run_name="__main__")
    finally:
        sys.argv = argv
    return {"threads": _threads(), "stdout": buf.getvalue(), "peak_rss_mib": _rss_mib()}


def child_prepare_loading(spec: dict) -> dict:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_loading import make_files

    train, test = make_files(int(spec["rows"]), bool(spec.get("string_ids")))
    return {"train": str(train), "bytes": os.path.getsize(train)}


def child_profile(spec: dict) -> dict:
    """Where a training step's time goes: phases (sampler / forward / backward / optimizer) timed over
    batches, and the top operators by self CPU time under torch.profiler."""
    import itertools

    import torch
    from torch.profiler import ProfilerActivity, profile

    from elliot.dataset.builder import build_dataset
    from elliot.recommender.base import TripletBatch

    exp, name, cls, params = _load_model_setup(Path(spec["config"]), spec["model"])
    dataset = build_dataset(exp, log=lambda *_: None)
    torch.manual_seed(int(params.get("seed", 42)))
    model = cls(dataset, params, torch.device("cpu"))
    model.train()
    optimizer = model.make_optimizer()
    sampler = model.make_sampler(dataset, int(params.get("seed", 42)))
    bs = int(params.get("batch_size", 1024))
    t0 = time.perf_counter()
    n_batches = sum(1 for _ in sampler.epoch(bs))
    sampler_epoch_s = time.perf_counter() - t0
    model.on_epoch_start(0)
    n_warm, n_timed, n_prof = int(spec.get("warm", 3)), int(spec.get("timed", 10)), int(spec.get("profiled", 5))
    batches = list(itertools.islice(sampler.epoch(bs), n_warm + n_timed + n_prof))
    phases = {"forward": 0.0, "backward": 0.0, "optimizer": 0.0}

    def step(u, i, j, timed):
        batch = TripletBatch(users=torch.as_tensor(u), pos_items=torch.as_tensor(i), neg_items=torch.as_tensor(j))
        a = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = model.loss(batch)
        b = time.perf_counter()
        loss.backward()
        c = time.perf_counter()
        optimizer.step()
        d = time.perf_counter()
        if timed:
            phases["forward"] += b - a
            phases["backward"] += c - b
            phases["optimizer"] += d - c

    for k, (u, i, j) in enumerate(batches[:n_warm + n_timed]):
        step(u, i, j, k >= n_warm)
    per_batch = {k: v / n_timed for k, v in phases.items()}
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for u, i, j in batches[n_warm + n_timed:]:
            step(u, i, j, False)
        profiled_step_s = (time.perf_counter() - t0) / max(n_prof, 1)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:int(spec.get("top", 12))]
    return {"threads": _threads(), "batches_per_epoch": n_batches, "sampler_epoch_s": sampler_epoch_s,
            "per_batch_s": per_batch, "step_s": sum(per_batch.values()),
            "epoch_estimate_s": sampler_epoch_s + n_batches * sum(per_batch.values()),
            "profiled_batches": n_prof, "profiled_step_s": profiled_step_s,
            "top_ops": [{"op": e.key, "self_ms_per_batch": e.self_cpu_time_total / 1000.0 / n_prof,
                         "share": e.self_cpu_time_total / total, "calls_per_batch": e.count / n_prof}
                        for e in top],
            "peak_rss_mib": _rss_mib()}


CHILDREN = {"model": child_model, "scaling": child_scaling, "knn": child_knn, "script": child_script,
            "prepare-loading": child_prepare_loading, "profile": child_profile}


# ---------------------------------------------------------------------------------------------- driver
class Runner:
    def __init__(self, runs_path: Path, doc_path: Path, quick: bool):
        self.runs_path, self.doc_path, self.quick = runs_path, doc_path, quick
        self.runs = json.loads(runs_path.read_text()) if runs_path.exists() else {}
        import torch

        self.env = {"commit": _commit(), "torch": torch.__version__, "cpus": os.cpu_count(),
                    "cpu_model": _cpu_model(), "mem_total_gib": round(_mem_total_gib(), 1),
                    "python": platform.python_version(), "quick": quick}

    def measure(self, key: str, part: str, spec: dict, timeout: float = 1800.0, store: bool = True) -> dict:
        load_start = os.getloadavg()[0]
        t0 = time.perf_counter()
        print(f"[{time.strftime('%H:%M:%S')}] {key} ...", flush=True)
        try:
            proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
                                  cwd=ROOT, capture_output=True, text=True, timeout=timeout)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("PERF_JSON ")]
            if proc.returncode == 0 and lines:
                result = json.loads(lines[-1][len("PERF_JSON "):])
            else:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
                result = {"error": f"exit {proc.returncode}: " + " | ".join(tail)}
        except subprocess.TimeoutExpired:
            result = {"error": f"timed out after {timeout:.0f} s"}
        record = {**result, "part": part, "spec": spec, "wall_s": time.perf_counter() - t0,
                  "load_start": load_start, "load_end": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d %H:%M"),
                  **self.env}
        if "error" in record:
            print(f"    error: {record['error']}", flush=True)
        if store:
            self.runs[key] = record
            self.save()
        return record

    def save(self) -> None:
        self.runs_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.runs_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.runs, indent=1, sort_keys=True))
        tmp.replace(self.runs_path)  # never a half-written file

    # -- parts -------------------------------------------------------------------------------------
    def part_models(self, models, datasets) -> None:
        for dataset in datasets:
            for model in models:
                config = _config_path(model, dataset)
                key = f"models::{dataset}::{model}"
                if not config.exists():
                    print(f"skip {key}: no {config.relative_to(ROOT)}")
                    continue
                spec = {"kind": "model", "config": str(config), "model": model,
                        "warmup": 1, "epochs": 1 if self.quick else 5}
                if self.quick:
                    spec.update(attack_sample=4096, eval_repeats=1)
                rec = self.measure(key, "models", spec, timeout=1200)
                rec.update(dataset=dataset, model=model, config=str(config.relative_to(ROOT)))
                self.save()
                if "epoch_s" in rec:
                    print(f"    {model} on {dataset}: {rec['epoch_s']:.3f} s/epoch, eval {rec['eval_s']:.3f} s, "
                          f"attack {rec.get('attack_s', float('nan')):.2f} s, peak RSS {rec['peak_rss_mib']:.0f} MiB",
                          flush=True)

    def part_scaling(self, models) -> None:
        sizes = SCALING_QUICK if self.quick else SCALING
        for model in (models or list(SCALING_PARAMS)):
            if model not in SCALING_PARAMS:
                print(f"skip scaling::{model}: scaling covers {', '.join(SCALING_PARAMS)}")
                continue
            for n, users, items in sizes:
                spec = {"kind": "scaling", "model": model, "n": n, "users": users, "items": items}
                if n >= 10_000_000:  # 1 (capped) epoch + 1 (possibly partial) evaluation
                    spec.update(warmup=0, epochs=1, epoch_budget_s=240, eval_budget_s=180, eval_subset_s=90)
                elif n >= 1_000_000:
                    spec.update(warmup=1, epochs=2, epoch_budget_s=40, eval_budget_s=180)
                else:
                    spec.update(warmup=1, epochs=3)
                rec = self.measure(f"scaling::{model}::{n}", "scaling", spec, timeout=2400)
                rec.update(model=model, n=n, users=users, items=items)
                self.save()
                if "epoch_s" in rec:
                    print(f"    {model} n={n:,}: {rec['epoch_s']:.2f} s/epoch"
                          f"{' (extrapolated)' if rec['epoch_extrapolated'] else ''}, eval {rec['eval_s']:.2f} s"
                          f"{' (extrapolated)' if rec['eval_extrapolated'] else ''}, "
                          f"peak RSS {rec['peak_rss_mib']:.0f} MiB", flush=True)

    def part_knn(self) -> None:
        for n in (KNN_SIZES_QUICK if self.quick else KNN_SIZES):
            rec = self.measure(f"lattice-graph::{n}", "lattice-graph", {"kind": "knn", "n_items": n, "dim": 128,
                                                                        "k": 10}, timeout=1800)
            rec.update(n_items=n)
            self.save()
            if "seconds" in rec:
                print(f"    knn_graph n={n:,}: {rec['seconds']:.2f} s, peak RSS {rec['peak_rss_mib']:.0f} MiB")

    def part_sampler(self) -> None:
        cases = ((20_000, 10_000, 100_000),) if self.quick else ((200_000, 100_000, 10_000_000),
                                                                (1_000_000, 100_000, 10_000_000))
        for users, items, nnz in cases:
            spec = {"kind": "script", "script": "benchmarks/bench_sampler.py",
                    "argv": ["--users", str(users), "--items", str(items), "--nnz", str(nnz),
                             "--batch", "1024", "2048", "8192"]}
            rec = self.measure(f"sampler::{users}x{items}x{nnz}", "sampler", spec, timeout=1200)
            rec.update(users=users, items=items, nnz=nnz, rates=_parse_sampler(rec.get("stdout", "")))
            self.save()
            for bs, r in rec["rates"].items():
                if bs != "init_s":
                    print(f"    batch {bs}: {r['mtriples_per_s']:.2f} M triples/s")

    def part_loading(self) -> None:
        for rows in ((100_000,) if self.quick else (10_000_000,)):
            for string_ids in (False, True):
                prep = {"kind": "prepare-loading", "rows": rows, "string_ids": string_ids}
                self.measure(f"loading-prepare::{rows}", "loading", prep, timeout=1800, store=False)
                argv = ["--rows", str(rows)] + (["--string-ids"] if string_ids else [])
                key = f"loading::{rows}::{'str' if string_ids else 'int'}"
                rec = self.measure(key, "loading", {"kind": "script", "script": "benchmarks/bench_loading.py",
                                                     "argv": argv}, timeout=1800)
                rec.update(rows=rows, string_ids=string_ids, **_parse_loading(rec.get("stdout", "")))
                self.save()
                print(f"    read_table {rec.get('read_s', float('nan')):.2f} s, build_dataset "
                      f"{rec.get('build_s', float('nan')):.2f} s, peak RSS {rec.get('peak_rss_mib', float('nan')):.0f} MiB")

    def part_profile(self, models, datasets) -> None:
        dataset = datasets[0]
        for model in (models or list(PROFILED)):
            config = _config_path(model, dataset)
            if not config.exists():
                print(f"skip profile::{dataset}::{model}: no {config.relative_to(ROOT)}")
                continue
            spec = {"kind": "profile", "config": str(config), "model": model}
            if self.quick:
                spec.update(warm=1, timed=2, profiled=1)
            rec = self.measure(f"profile::{dataset}::{model}", "profile", spec, timeout=1200)
            rec.update(model=model, dataset=dataset)
            self.save()
            if "per_batch_s" in rec:
                pb = rec["per_batch_s"]
                print(f"    {model}: step {rec['step_s'] * 1e3:.1f} ms (fwd {pb['forward'] * 1e3:.1f}, bwd "
                      f"{pb['backward'] * 1e3:.1f}, opt {pb['optimizer'] * 1e3:.1f}); top: "
                      + ", ".join(f"{o['op']} {o['share']:.0%}" for o in rec["top_ops"][:4]))


def _parse_sampler(stdout: str) -> dict:
    rates = {}
    for m in re.finditer(r"batch (\d+): ([\d,]+) triples in ([\d.]+)s = ([\d.]+) M triples/s", stdout):
        rates[m.group(1)] = {"triples": int(m.group(2).replace(",", "")), "seconds": float(m.group(3)),
                             "mtriples_per_s": float(m.group(4))}
    init = re.search(r"sampler init ([\d.]+)s", stdout)
    if init:
        rates["init_s"] = {"seconds": float(init.group(1))}
    return rates


def _parse_loading(stdout: str) -> dict:
    out = {}
    m = re.search(r"read_table: ([\d,]+) rows in ([\d.]+)s", stdout)
    if m:
        out.update(read_rows=int(m.group(1).replace(",", "")), read_s=float(m.group(2)))
    m = re.search(r"build_dataset \(fixed\): (.*) in ([\d.]+)s", stdout)
    if m:
        out.update(build_summary=m.group(1), build_s=float(m.group(2)))
    return out


# ---------------------------------------------------------------------------------------------- document
def _f(x, fmt=".3f", none="-") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return none
    return format(x, fmt)


def _load(r) -> str:
    return f"{r['load_start']:.1f} → {r['load_end']:.1f}"


def fit_exponent(xs, ys) -> float:
    """Slope of the least-squares line through (log x, log y)."""
    import numpy as np

    pts = [(x, y) for x, y in zip(xs, ys) if x and y and x > 0 and y > 0]
    if len(pts) < 2:
        return float("nan")
    lx, ly = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return float(np.polyfit(lx, ly, 1)[0])


NOTES_BOUNDS = """\
## What bounds each model

From the `profile` part (TikTok, first grid configuration, batch 2048; torch.profiler over whole
training steps, self CPU time per operator; `fwd / bwd / opt` = milliseconds per batch in `model.loss`,
`loss.backward()` and `optimizer.step()`).  The table above it is generated; the reading below is
written from it.

{profile_table}

{bounds_text}
"""

#: the reading of the profile table, written by hand from the measurements (kept out of the code)
BOUNDS_NOTES = ROOT / "docs" / "performance_notes.md"
#: benchmarks/mmrec_same_host.py's runs: MMRec and ours interleaved on this host (docs/mmrec_same_host.md)
SAME_HOST_RUNS = ROOT / "benchmarks" / "mmrec_same_host_runs.json"


def mmrec_side_by_side(path: Path) -> list:
    """A short section with every model's MMRec / ours ratio from the same-host runs (empty without them)."""
    if not path.exists():
        return []
    from benchmarks.mmrec_same_host import MODELS as PAIRS, SKIPPED, TARGET_RATIO, best_ratio, ratio
    runs = json.loads(path.read_text())
    order = [m for m in PAIRS if m in runs and "mmrec" in runs[m]]
    if not order:
        return []
    lines = ["## MMRec side by side", "",
             "`docs/mmrec_same_host.md` (`python benchmarks/mmrec_same_host.py --mmrec <checkout>`; settings, "
             "notes and earlier runs there): per model, our epoch probe, MMRec's `quick_start` (unmodified) at "
             "the same data and hyperparameters (the bench config's first grid point; 64 factors, batch 2048), "
             "then our probe again, one process at a time on this host, minutes apart.  *ours*: the mean of the "
             "two probes' s/epoch; *MMRec / ours*: MMRec's s/epoch over it; issue 14's target is "
             f"≥ {TARGET_RATIO:.0f}x; *best-epoch ratio*: MMRec's fastest epoch over our fastest, the reading least "
             "moved by load.  The host was shared with other jobs (*load*: 1-minute load average before → "
             "after); the interleaving is what makes the ratio fair.", "",
             f"| model (MMRec / ours) | MMRec s/epoch | ours s/epoch | MMRec / ours | ≥ {TARGET_RATIO:.0f}x | "
             "best-epoch ratio | threads (MMRec / ours) | load | when |", "|---|---|---|---|---|---|---|---|---|"]
    for name in order:
        r = runs[name]
        ours = statistics.mean([r["ours_before"]["epoch_s"], r["ours_after"]["epoch_s"]])
        q = ratio(r)
        threads = f"{r['mmrec'].get('threads') or '-'} / {r['ours_before'].get('threads') or '-'}"
        load = f"{r['load'][0]:.1f} → {r['load'][1]:.1f}" if r.get("load") else "-"
        lines.append(f"| {name} / {PAIRS[name].ours} | {r['mmrec']['epoch_s']:.2f} | {ours:.3f} | {q:.1f}x | "
                     f"{'yes' if q >= TARGET_RATIO else '**no**'} | {best_ratio(r):.1f}x | {threads} | {load} | "
                     f"{r['when']} |")
    failed = [m for m in PAIRS if m in runs and "mmrec" not in runs[m]]
    skipped = [f"{label} ({short})" for label, short, _ in SKIPPED.values()]
    lines += ["", "Not timed: " + "; ".join(skipped) + ("; failed in the last run: " + ", ".join(failed)
                                                        if failed else "") + ".", ""]
    return lines


def write_doc(runs: dict, doc: Path) -> str:
    by_part = {}
    for key, r in runs.items():
        by_part.setdefault(r.get("part"), []).append((key, r))
    envs = sorted({(r.get("commit"), r.get("torch"), r.get("cpus"), r.get("cpu_model"), r.get("mem_total_gib"))
                   for r in runs.values()}, key=str)
    lines = ["# Performance", "",
             "Written by `python benchmarks/performance.py` from the runs stored in "
             "`benchmarks/performance_runs.json` (one part again: `--part models|scaling|lattice-graph|sampler|"
             "loading|profile`; one model: `--part models --models VBPR --datasets tiktok`).  Every number is "
             "one measurement in its own process on the machine below; nothing here is a unit test.", "",
             "**Machine and code measured.**"]
    for commit, torch_v, cpus, cpu_model, mem in envs:
        lines.append(f"- commit `{commit}`, torch {torch_v}, {cpus} CPU cores ({cpu_model}), {mem} GiB RAM, no GPU")
    threads = sorted({r.get("threads") for r in runs.values() if r.get("threads")})
    lines += [f"- torch threads: {', '.join(map(str, threads))} (torch's default: one per core)",
              "- *load* = the 1-minute load average at the start → end of each measurement (`os.getloadavg`); "
              "the benchmark itself accounts for up to its thread count, more means other jobs shared the cores "
              "and the time is an upper bound.", ""]
    # ---- models
    models = [r for _, r in by_part.get("models", [])]
    if models:
        lines += ["## Models on real data", "",
                  "Per model: the first value of every grid axis of its bench config (`config_files/bench/`), the "
                  "Trainer's training step (sampler, loss, backward, Adam) without validation. *s/epoch* = median of "
                  "the epochs after one warm-up epoch (the target's measure); *best epoch s* = the fastest of those epochs (on this shared VM the time of one epoch varies with the neighbours' load, not with our code: the best epoch is the closest reading of the code's own cost); *eval s* = one full-ranking validation pass of all users with a "
                  "validation item (cutoffs 10/20/50, Recall/nDCG/Precision, user batches of 1024; median of 3 after a "
                  "warm-up); *top-50 all users s* = the top-50 lists of every user with training data (the "
                  "`save_recs` path: same scoring, masking and top-k, no metrics); *attack s* = one FGSM-L2 evaluation (ε = 5% of each item's feature norm, all modalities, "
                  "every training triple attacked, then one full-ranking pass of the test split; multimodal models "
                  "only); *peak RSS* = `ru_maxrss` of the measuring process (data, model, training, evaluation, "
                  "attack); *ref GFLOP/s* = a float32 1024^3 GEMM timed in the same process just before (this "
                  "VM's speed drifts between sessions: compare rows through it).  Targets and MMRec's numbers (TikTok, 64 factors, batch 2048) are the issue's.", ""]
        for dataset in [d for d in DATASETS if any(r.get("dataset") == d for r in models)]:
            rows = sorted((r for r in models if r.get("dataset") == dataset),
                          key=lambda r: MODELS.index(r["model"]) if r["model"] in MODELS else 99)
            lines += [f"### {dataset}", ""]
            if rows and "n_users" in rows[0]:
                lines += [f"{rows[0]['n_users']:,} users, {rows[0]['n_items']:,} items, {rows[0]['n_train']:,} "
                          f"training interactions.", ""]
            tik = dataset == "tiktok"
            head = "| model | s/epoch | best epoch s | epochs | " + ("target | met | MMRec | " if tik else "") + \
                   "eval s | eval users | " + ("eval met (≤ 0.2) | " if tik else "") + "top-50 all users s | " + \
                   "attack s | peak RSS MiB | threads | ref GFLOP/s | load | commit |"
            lines += [head, "|" + "---|" * (head.count("|") - 1)]
            for r in rows:
                if "error" in r:
                    lines.append(f"| {r['model']} | error: {r['error'][:150]} |" + " |" * (head.count("|") - 3))
                    continue
                t = TARGET_EPOCH.get(r["model"])
                timed = r.get("epoch_s_all", [])[int(r.get("warmup_epochs", 1)):]
                cells = [r["model"], _f(r["epoch_s"]), _f(min(timed)) if timed else "-", str(r["epochs_measured"])]
                if tik:
                    cells += [_f(t, ".1f") if t else "-", ("yes" if r["epoch_s"] <= t else "**no**") if t else "-",
                              MMREC_EPOCH.get(r["model"], "-")]
                cells += [_f(r["eval_s"]), f"{r['eval_users']:,}"]
                if tik:
                    cells.append("yes" if r["eval_s"] <= TARGET_EVAL else "**no**")
                cells.append(_f(r.get("rank_all_s")) + (f" ({r['rank_all_users']:,})" if "rank_all_users" in r else ""))
                cells += [_f(r.get("attack_s"), ".2f"), _f(r["peak_rss_mib"], ".0f"), str(r["threads"]),
                          _f(r.get("reference_gflops"), ".0f"), _load(r), r["commit"]]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
        if any(r.get("dataset") == "tiktok" for r in models):
            lines += [f"MMRec's full validation pass on TikTok: {MMREC_EVAL} s (target ≤ {TARGET_EVAL} s).  "
                      f"The *MMRec* column is the issue's number, from another host and day; BM3 (MMRec "
                      f"{MMREC_EPOCH['BM3']} s/epoch there) and the models added later are timed next to MMRec on "
                      f"this host in *MMRec side by side* below.", ""]
    lines += mmrec_side_by_side(SAME_HOST_RUNS)
    # ---- scaling
    scal = [r for _, r in by_part.get("scaling", [])]
    if scal:
        lines += ["## Scaling on generated data", "",
                  "`elliot.dataset.generator.generate_scaled` (O(interactions): item clusters with Zipf popularity, "
                  "each user a mixture of 3 clusters; the default dataset's temporal per-user 80/10/10 split) with "
                  "users = interactions / 10 and items = interactions / 100; BPRMF and LightGCN with the first grid "
                  "configuration of `baselines_tiktok.yml` (64 factors, batch 2048, LightGCN 3 layers); *BPRMF-sparse*: "
                  "the same with `sparse_grad: true` (row-sparse gradients, lazy Adam); *LightGCN-64-batches*: "
                  "the same with the batch size set so that an epoch has 64 batches (at least 2048).  *s/epoch*: "
                  "median of the epochs after a warm-up (10^4, 10^5: 1 + 3 epochs; 10^6: 1 + 2 epochs each cut after "
                  "40 s; 10^7: one epoch cut after 240 s); a cut epoch is extrapolated from the fraction of its "
                  "batches that ran (marked *ex*: every batch costs the same, so the extrapolation is linear).  "
                  "*eval s*: one full-ranking validation pass of all users with a validation item (batches of 1024 "
                  "users, memory bounded by 1024 x items scores); when a pass is projected above 180 s a random "
                  "subset of users is evaluated and the time extrapolated linearly in users (marked *ex*, with the "
                  "users evaluated).  *peak RSS*: whole process, generation and data included.", "",
                  "| model | interactions | users | items | train | batch | s/epoch | eval s | eval users | "
                  "peak RSS MiB | ≤ 24 GiB | load | commit |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        srt = sorted(scal, key=lambda r: (list(SCALING_PARAMS).index(r["model"]) if r.get("model") in SCALING_PARAMS
                                          else 9, r.get("n", 0)))
        for r in srt:
            if "error" in r:
                lines.append(f"| {r.get('model')} | {r.get('n', 0):,} | error: {r['error'][:150]} |" + " |" * 10)
                continue
            ep = _f(r["epoch_s"], ".2f") + (f" *ex* ({min(r['epoch_fraction_run']):.1%} run)"
                                           if r["epoch_extrapolated"] else "")
            ev = _f(r["eval_s"], ".2f") + (" *ex*" if r["eval_extrapolated"] else "")
            lines.append(f"| {r['model']} | {r['n']:,} | {r['users']:,} | {r['items']:,} | {r['n_train']:,} | "
                         f"{r.get('batch_size', SCALING_PARAMS.get(r['model'], {}).get('batch_size', '-'))} | {ep} | "
                         f"{ev} | {r['eval_users']:,} / {r['eval_users_total']:,} | {r['peak_rss_mib']:.0f} | "
                         f"{'yes' if r['peak_rss_mib'] <= TARGET_MEMORY_GIB * 1024 else '**no**'} | {_load(r)} | "
                         f"{r['commit']} |")
        lines += ["", "Fitted exponents (least squares of log value on log interactions; the last column uses only "
                  "the two largest sizes, i.e. the local growth where fixed costs no longer dominate):", "",
                  "| model | quantity | exponent (all sizes) | exponent (two largest) |", "|---|---|---|---|"]
        for model in SCALING_PARAMS:
            ok = [r for r in srt if r.get("model") == model and "epoch_s" in r]
            if len(ok) < 2:
                continue
            xs = [r["n"] for r in ok]
            for label, field in (("s/epoch", "epoch_s"), ("eval s", "eval_s"), ("peak RSS", "peak_rss_mib")):
                ys = [r[field] for r in ok]
                lines.append(f"| {model} | {label} | {_f(fit_exponent(xs, ys), '.2f')} | "
                             f"{_f(fit_exponent(xs[-2:], ys[-2:]), '.2f')} |")
        big = [r for r in srt if r.get("n", 0) >= 10_000_000 and "peak_rss_mib" in r]
        if big:
            lines += ["", "Memory by stage at 10^7 interactions (peak RSS MiB after each stage, `ru_maxrss`):", "",
                      "| model | data | model built | training | evaluation |", "|---|---|---|---|---|"]
            for r in big:
                lines.append(f"| {r['model']} | {r['rss_after_data_mib']:.0f} | {r['rss_after_build_mib']:.0f} | "
                             f"{r['rss_after_train_mib']:.0f} | {r['rss_after_eval_mib']:.0f} |")
        lines.append("")
    # ---- kNN graph
    knn = sorted((r for _, r in by_part.get("lattice-graph", [])), key=lambda r: r.get("n_items", 0))
    if knn:
        lines += ["## LATTICE / FREEDOM item-graph construction", "",
                  "`elliot.recommender.knn.knn_graph(features, k=10)` (cosine kNN in row chunks of 2^24 / items rows, "
                  "so the similarity block is ~64 MiB whatever the catalogue) on random 128-d float32 features; one "
                  "process per size; *peak RSS* includes the interpreter, torch and the features.", "",
                  "| items | seconds | peak RSS MiB | RSS before MiB | chunk rows | edges | exponent | load | commit |",
                  "|---|---|---|---|---|---|---|---|---|"]
        ok = [r for r in knn if "seconds" in r]
        exp = fit_exponent([r["n_items"] for r in ok], [r["seconds"] for r in ok])
        for r in knn:
            if "error" in r:
                lines.append(f"| {r['n_items']:,} | error: {r['error'][:150]} | | | | | | | |")
                continue
            lines.append(f"| {r['n_items']:,} | {r['seconds']:.2f} | {r['peak_rss_mib']:.0f} | {r['rss_before_mib']:.0f} | "
                         f"{r['chunk_rows']} | {r['edges']:,} | {_f(exp, '.2f')} | {_load(r)} | {r['commit']} |")
        lines += ["", "Time grows as items² (every pair's similarity is computed: n² · 128 multiply-adds plus a "
                  "top-k over n² values); memory is linear (features + n x k indices + one chunk).", ""]
    # ---- sampler
    samp = [r for _, r in by_part.get("sampler", [])]
    if samp:
        lines += ["## Sampler throughput", "",
                  "`benchmarks/bench_sampler.py` (BPRSampler, one epoch over a random sparse matrix with Zipf items, "
                  "uniform negatives by rejection) run in a measuring process.  Target ≥ 5 M triples/s.", "",
                  "| users x items | training pairs | batch | M triples/s | met | init s | peak RSS MiB | load | commit |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in sorted(samp, key=lambda r: (r.get("users", 0), r.get("nnz", 0))):
            if "error" in r:
                lines.append(f"| {r.get('users')} x {r.get('items')} | error: {r['error'][:150]} | | | | | | | |")
                continue
            init = r["rates"].get("init_s", {}).get("seconds")
            for bs, v in r["rates"].items():
                if bs == "init_s":
                    continue
                lines.append(f"| {r['users']:,} x {r['items']:,} | {v['triples']:,} | {bs} | {v['mtriples_per_s']:.2f} | "
                             f"{'yes' if v['mtriples_per_s'] * 1e6 >= TARGET_SAMPLER else '**no**'} | {_f(init, '.2f')} | "
                             f"{r['peak_rss_mib']:.0f} | {_load(r)} | {r['commit']} |")
        lines.append("")
    # ---- loading
    load = [r for _, r in by_part.get("loading", [])]
    if load:
        lines += ["## Loading a 10^7-interaction TSV", "",
                  "`benchmarks/bench_loading.py`: an Elliot TSV (`user item rating timestamp`, ~50 items per user, "
                  "generated once into /tmp) read by `read_table` and built by `build_dataset` (strategy fixed: the "
                  "big file as train, a 1% test file; build includes the read).  Target: ≤ 10 s.", "",
                  "| rows | ids | read_table s | build_dataset s | met | peak RSS MiB | load | commit |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in sorted(load, key=lambda r: (r.get("rows", 0), r.get("string_ids", False))):
            if "error" in r or "build_s" not in r:
                lines.append(f"| {r.get('rows', 0):,} | {'string' if r.get('string_ids') else 'integer'} | error: "
                             f"{r.get('error', 'no output')[:150]} | | | | | |")
                continue
            lines.append(f"| {r['rows']:,} | {'string' if r['string_ids'] else 'integer'} | {r['read_s']:.2f} | "
                         f"{r['build_s']:.2f} | {'yes' if r['build_s'] <= TARGET_LOADING else '**no**'} | "
                         f"{r['peak_rss_mib']:.0f} | {_load(r)} | {r['commit']} |")
        lines.append("")
    # ---- profile
    prof = sorted((r for _, r in by_part.get("profile", [])),
                  key=lambda r: MODELS.index(r["model"]) if r.get("model") in MODELS else 99)
    if prof:
        table = ["| model | batches/epoch | sampler s/epoch | ms/batch (fwd / bwd / opt) | ms/batch under profiler | "
                 "epoch estimate s | top operators (share of self CPU time, ms per batch, calls per batch) | load |",
                 "|---|---|---|---|---|---|---|---|"]
        for r in prof:
            if "error" in r:
                table.append(f"| {r.get('model')} | error: {r['error'][:150]} | | | | | | |")
                continue
            pb = r["per_batch_s"]
            ops = "; ".join(f"`{o['op']}` {o['share']:.0%} ({o['self_ms_per_batch']:.1f} ms, "
                            f"{o['calls_per_batch']:.0f}x)" for o in r["top_ops"][:6])
            table.append(f"| {r['model']} | {r['batches_per_epoch']} | {r['sampler_epoch_s']:.3f} | "
                         f"{r['step_s'] * 1e3:.1f} ({pb['forward'] * 1e3:.1f} / {pb['backward'] * 1e3:.1f} / "
                         f"{pb['optimizer'] * 1e3:.1f}) | {_f(r.get('profiled_step_s', float('nan')) * 1e3, '.1f')} | "
                         f"{r['epoch_estimate_s']:.2f} | {ops} | {_load(r)} |")
        notes = BOUNDS_NOTES.read_text().rstrip() if BOUNDS_NOTES.exists() else "*(no notes yet)*"
        lines.append(NOTES_BOUNDS.format(profile_table="\n".join(table), bounds_text=notes))
    text = "\n".join(lines).rstrip() + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)
    return text


# ---------------------------------------------------------------------------------------------- main
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", nargs="+", choices=PARTS + ("all",), default=["all"])
    parser.add_argument("--models", nargs="+", default=None, help=f"default: {' '.join(MODELS)}")
    parser.add_argument("--datasets", nargs="+", default=None, help=f"default: {' '.join(DATASETS)}")
    parser.add_argument("--quick", action="store_true", help="tiny sizes; writes to a temporary folder")
    parser.add_argument("--only-doc", action="store_true", help="rewrite the doc from the stored runs")
    parser.add_argument("--runs", type=Path, default=None)
    parser.add_argument("--doc", type=Path, default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        spec = json.loads(args.child)
        result = CHILDREN[spec["kind"]](spec)
        print("PERF_JSON " + json.dumps(result), flush=True)
        return
    if args.quick and (args.runs is None or args.doc is None):
        tmp = Path(tempfile.gettempdir()) / "elliot_performance_quick"
        args.runs = args.runs or tmp / "performance_runs.json"
        args.doc = args.doc or tmp / "performance.md"
    runs_path, doc_path = args.runs or RUNS, args.doc or DOC
    runner = Runner(runs_path, doc_path, args.quick)
    parts = PARTS if "all" in args.part else tuple(args.part)
    models = args.models or (["BPRMF", "LightGCN", "VBPR"] if args.quick else list(MODELS))
    datasets = args.datasets or (["tiktok"] if args.quick else list(DATASETS))
    if not args.only_doc:
        start = time.perf_counter()
        if "models" in parts:
            runner.part_models(models, datasets)
        if "profile" in parts:
            runner.part_profile(args.models or [], datasets)
        if "lattice-graph" in parts:
            runner.part_knn()
        if "sampler" in parts:
            runner.part_sampler()
        if "loading" in parts:
            runner.part_loading()
        if "scaling" in parts:
            runner.part_scaling(args.models or [])
        print(f"done in {time.perf_counter() - start:.0f} s", flush=True)
    print(write_doc(runner.runs, doc_path))
    print(f"wrote {doc_path} (runs: {runs_path})")


if __name__ == "__main__":
    main()
