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

