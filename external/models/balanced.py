"""Modality-Balanced variants (Shang et al., ACM MM 2023) under their own model names.

``external.VBPR_MB``, ``external.LightGCNM_MB``, ``external.LATTICE_MB``, ``external.MMGCN_MB``,
``external.GRCN_MB``, ``external.SLMRec_MB``: the base model with Modality Balancing always on, so a
grid can compare ``external.VBPR`` and ``external.VBPR_MB`` side by side.  The defense's settings are
ordinary (grid-searchable) hyperparameters with the defaults of the ``defense`` block
(:mod:`elliot.training.defenses.modality_balancing`): ``sensitive_modality`` (visual),
``robust_modality`` ("" = the first other modality branch), ``lambda`` (0.01), ``N`` (20),
``distill_eps`` (1.0), ``pgd_steps`` (10), ``pgd_step_size`` (0.1), ``roles`` (fixed).  The loss is the base model's
loss + lambda · L_balance (the same code as the ``defense`` block, sampling from a private generator
seeded by ``seed``).  VBPR_MB defaults to ``fusion: per_modality`` (MB needs a branch per modality;
VBPR's concat fusion has one fused content branch).

Base models are imported lazily and guarded: a base that is missing (or fails to import) simply has
no balanced variant; it never breaks ``import external.models``.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Dict, List, Tuple

from elliot.config.params import Param

MB_PARAMS: Tuple[Param, ...] = (
    Param("sensitive_modality", str, "visual", "modality whose adversarial embedding is distilled"),
    Param("robust_modality", str, "", "reference modality of the margin ('' = first other modality branch)"),
    Param("lambda", float, 0.01, "weight of L_balance"),
    Param("N", int, 20, "triples per batch used by L_balance"),
    Param("distill_eps", float, 1.0, "L∞ radius of the PGD distillation (raw feature units)"),
    Param("pgd_steps", int, 10, "PGD steps of the distillation"),
    Param("pgd_step_size", float, 0.1, "PGD step size"),
    Param("roles", str, "fixed", "fixed: the paper; alternate: swap sensitive / robust every other batch; both: "
          "both directions every batch", choices=("fixed", "alternate", "both")),
)

#: (package, class, default overrides of the base's params)
BASES: List[Tuple[str, str, Dict[str, object]]] = [
    ("external.models.vbpr", "VBPR", {"fusion": "per_modality"}),
    ("external.models.lightgcnm", "LightGCNM", {}),
    ("external.models.lattice", "LATTICE", {}),
    ("external.models.mmgcn", "MMGCN", {"fusion": "per_modality"}),
    ("external.models.grcn", "GRCN", {}),
    ("external.models.slmrec", "SLMRec", {}),
]


def balanced_variant(base, name: str, overrides: Dict[str, object] = None):
    """A subclass of ``base`` named ``name`` whose loss adds Modality Balancing."""
    from elliot.training.defenses.modality_balancing import ModalityBalancing, resolve_modalities

    overrides = dict(overrides or {})
    own = {p.name: p for p in base.params}
    overrides = {k: v for k, v in overrides.items()
                 if k in own and (own[k].choices is None or v in own[k].choices)}
    params = tuple(dataclasses.replace(p, default=overrides[p.name]) if p.name in overrides else p
                   for p in base.params)
    params += tuple(p for p in MB_PARAMS if p.name not in own)

    def __init__(self, dataset, hp, device):
        base.__init__(self, dataset, hp, device)
        sensitive, robust = resolve_modalities(self, str(self.hp["sensitive_modality"]),
                                               str(self.hp["robust_modality"]), f"experiment.models.external.{name}")
        self._balancing = ModalityBalancing(sensitive, robust, lam=self.hp["lambda"], N=self.hp["N"],
                                            distill_eps=self.hp["distill_eps"], pgd_steps=self.hp["pgd_steps"],
                                            pgd_step_size=self.hp["pgd_step_size"], seed=int(self.hp.get("seed", 42)),
                                            roles=str(self.hp["roles"]))

    def loss(self, batch):
        total = base.loss(self, batch)
        extra = self._balancing.extra_loss(self, batch, epoch=-1)
        return total if extra is None else total + extra

    doc = (f"{base.__name__} with Modality Balancing (Shang et al., ACM MM 2023) always on; see "
           f"external/models/balanced.py.\n\n{base.__doc__ or ''}")
    cls = type(name, (base,), {"name": name, "params": params, "__init__": __init__, "loss": loss,
                               "__doc__": doc, "__module__": __name__, "__qualname__": name,
                               "modality_balanced": True})
    return cls


__all__: List[str] = []
for _module, _cls, _overrides in BASES:
    try:
        _base = getattr(importlib.import_module(_module), _cls)
    except Exception:  # a missing or broken base model has no balanced variant
        continue
    globals()[f"{_cls}_MB"] = balanced_variant(_base, f"{_cls}_MB", _overrides)
    __all__.append(f"{_cls}_MB")


# ---- exact fast distillation embedders (:func:`elliot.training.defenses.modality_balancing.embedder_for`) ---
# Modality Balancing differentiates e_i^v (branch v's item side for the sampled triples) w.r.t. the features
# of the sampled positives, pgd_steps + 1 times per batch.  Through ``modality_embeddings`` every such pass
# propagates every branch over the whole graph; these compute the same values and gradients from the part
# that depends on modality v's features.  Registered for the base classes (so both the ``defense`` block and
# the *_MB variants use them); checked against the generic pass in tests/test_mb_cost.py.

def lightgcnm_embedder(model, modality, users, items, clean_item_emb):
    """LightGCNM: propagation is linear and δ changes only the layer-0 rows c_v of the distinct items U, so
    e_i^v(δ) = e_i^v(0) + [d, d]/√2 with d = P_UU (c_v(x_U + δ) − c_v(x_U)) (rows of the aligned items),
    P_UU = the U x U block of 1/(K+1) Σ_k A^k (one propagation of |U| indicator columns per batch)."""
    import math

    import torch
    from torch.nn import functional as F

    from elliot.recommender.base import unique_index
    from elliot.recommender.graph import propagate_mean
    from elliot.training.defenses.modality_balancing import generic_embedder

    if clean_item_emb is None:
        return generic_embedder(model, modality, users, items, None)
    b, k, nu = model.modalities.index(modality), int(model.factors), model.n_users
    x = model.feature(modality).detach()
    uniq, inv = unique_index(items, x.shape[0])
    with torch.no_grad():
        ind = x.new_zeros(nu + model.n_items, len(uniq))
        ind[nu + uniq, torch.arange(len(uniq), device=x.device)] = 1.0
        block = propagate_mean(model.adj, ind, model.n_layers).index_select(0, nu + uniq)  # P_UU

    def rows(f):  # c_v of feature rows f, as LightGCNM._modality_inputs
        p = model.proj[b](f)
        if model.normalize:
            p = F.normalize(p, p=2, dim=1)
        if model.aggregation == "mean":
            return p / len(model.modalities)
        if model.aggregation == "sum":
            return p
        return p @ model.fuse.weight[:, b * k:(b + 1) * k].T

    x_u = x.index_select(0, uniq)
    c_clean = rows(x_u)
    scale = 1.0 / math.sqrt(2.0)

    def embed(delta):
        d = (block @ (rows(x_u + delta) - c_clean)).index_select(0, inv)
        return clean_item_emb + torch.cat([d, d], 1) * scale

    return embed


def grcn_embedder(model, modality, users, items, clean_item_emb):
    """GRCN: branch v's item representations depend on modality v's features, MLP and preferences only
    (the ID graph convolution and the other modalities' refining are not needed): modality v's refining
    layer alone, on one copy of the graph (the stacked run is block-diagonal, so the same values)."""
    from torch.nn import functional as F

    from elliot.recommender.base import gather_rows, unique_index
    from external.models.grcn.grcn import _Attention, _normalize

    b = model.modalities.index(modality)
    x = model.feature(modality).detach()
    uniq, _ = unique_index(items, x.shape[0])

    def embed(delta):
        f = _normalize(F.leaky_relu(model.mlp[b](x.index_add(0, uniq, delta))))
        p = _normalize(model.preference[b])
        for _ in range(int(model.num_routing)):
            _, hu = _Attention.apply(model.graph, p, f, False)
            p = _normalize(hu.add_(p))
        _, hu, _, hi = _Attention.apply(model.graph, p, f, True)
        if model.has_act:
            hi = F.leaky_relu(hi)
        return gather_rows(hi.add_(f), items)

    return embed


def _register_embedders() -> None:
    from elliot.training.defenses.modality_balancing import register_embedder

    for module, cls, embedder in (("external.models.lightgcnm", "LightGCNM", lightgcnm_embedder),
                                  ("external.models.grcn", "GRCN", grcn_embedder)):
        try:
            register_embedder(getattr(importlib.import_module(module), cls), embedder)
        except Exception:  # a missing base has nothing to register
            continue


_register_embedders()
