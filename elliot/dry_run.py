"""Elliot's ``config_test: true``: before the real data is read, every model's first configuration trains
for one epoch on a small generated dataset with the experiment's modalities, through the same trainer,
evaluator (metrics, complex metrics, attacks) and add-ons.  A model that cannot run is then a one-line
error in seconds instead of after hours of the models before it.  Nothing is written next to the results:
the dry run's files go to a temporary folder.

Deviations from Elliot (whose mock data is 100 random interactions): the mock data has learnable
structure and feature matrices for each configured modality; models that read stored recommendation
files, and sampled evaluation from fixed files (both name ids of the real data), are skipped.
"""
from __future__ import annotations

import copy
import tempfile
from typing import Callable

import numpy as np
import scipy.sparse as sp

from elliot.dataset.dataset import Dataset
from elliot.errors import ConfigError, ElliotError

MOCK_USERS, MOCK_ITEMS, MOCK_DIM = 64, 48, 16


def mock_dataset(modalities, seed: int) -> Dataset:
    from elliot.dataset.generator import generate, split_per_user

    users, items, ts, visual, textual, _ = generate(n_users=MOCK_USERS, n_items=MOCK_ITEMS, dim=4, mean_extra=6,
                                                    visual_dim=MOCK_DIM, textual_dim=MOCK_DIM, seed=seed)
    part = split_per_user(users, ts, val_ratio=0.15, test_ratio=0.2)
    shape = (MOCK_USERS, MOCK_ITEMS)
    splits = [sp.csr_matrix((np.ones(int((part == p).sum()), np.float32), (users[part == p], items[part == p])),
                            shape=shape) for p in (0, 1, 2)]
    base = [visual, textual]
    features = {m: base[k % 2] for k, m in enumerate(modalities)}
    return Dataset(name="config_test", user_ids=np.array([str(u) for u in range(MOCK_USERS)]),
                   item_ids=np.array([str(i) for i in range(MOCK_ITEMS)]), train=splits[0], validation=splits[1],
                   test=splits[2], features=features)


def dry_run(exp: dict, plans: dict, device: str, say: Callable[[str], None]) -> None:
    """Run every model once on mock data; raise a one-line :class:`ConfigError` naming the model that fails."""
    from elliot.search import plan_trials
    from elliot.trial import TrialContext, run_trial

    modalities = [e["modality"] for e in exp["data_config"].get("side_information") or []]
    dataset = mock_dataset(modalities, int(exp.get("random_seed") or 42))
    with tempfile.TemporaryDirectory(prefix="elliot-config-test-") as tmp:
        mock_exp = copy.deepcopy(exp)
        for key in ("path_output_rec_result", "path_output_rec_weight", "path_output_rec_performance"):
            mock_exp[key] = f"{tmp}/{key}"
        ns = mock_exp.get("negative_sampling")
        if ns and ns.get("strategy") == "fixed":
            mock_exp["negative_sampling"] = None
        ctx = TrialContext(dataset=dataset, experiment=mock_exp, device=device, progress=False)
        for name, (cls, spec, _) in plans.items():
            if not cls.trainable and "path" in {p.name for p in cls.declared_params()}:
                say(f"config_test: {name} reads stored recommendations of the real data; skipped")
                continue
            where = f"experiment.models.{name}"
            plan = plan_trials(cls, spec, where=where, seed=int(exp.get("random_seed") or 42))
            params = dict(plan.ask(1)[0][1])
            if cls.trainable:
                params["epochs"] = 1
            meta = copy.copy(spec.meta)
            meta.save_weights = meta.save_recs = meta.restore = False
            try:
                run_trial(ctx, name, cls, params, meta, defense=spec.defense, training=spec.training)
            except ElliotError as exc:
                raise ConfigError(f"config_test: {where} fails on mock data: {exc}") from None
            except Exception as exc:  # the purpose of the dry run: any failure is reported in one line
                raise ConfigError(f"config_test: {where} fails on mock data: {type(exc).__name__}: {exc}") from None
            say(f"config_test: {name} ran one epoch on mock data")
