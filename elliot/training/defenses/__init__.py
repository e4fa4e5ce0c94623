"""Robust-training add-ons selected by a model's ``defense`` and ``training`` blocks.

::

    models:
      external.VBPR:
        fusion: per_modality
        defense:                      # one mapping (or a list of them)
          method: modality_balancing  # or crmt
          sensitive_modality: visual
          robust_modality: textual
          lambda: 0.01
        training:
          mirror_gradient: {enable: true, alpha1: 1.0, alpha2: 0.1, beta: 3}

* ``defense`` (multimodal models): ``modality_balancing`` (:mod:`.modality_balancing`; keys enable,
  method, sensitive_modality, robust_modality, lambda, N, distill_eps, pgd_steps, pgd_step_size, roles) or
  ``crmt`` (:mod:`.crmt`; keys enable, method, rho, N, integration, integration_sample,
  integration_steps, integration_lr).  ``enable`` defaults to true when the block is present;
  ``enable: false`` builds nothing, so training is bit-for-bit the undefended model's.
* ``training`` (any trainable model): ``mirror_gradient`` (:mod:`.mirror_gradient`; keys enable,
  alpha1, alpha2, beta (alias interval)).

:func:`validate_defense` checks the blocks at config time (one-line :class:`ConfigError`s with
did-you-mean); :func:`build_addons` turns them into :class:`TrainingAddon` objects for the trainer;
:func:`finalize` runs what happens after training (CRMT step 2: integration weights).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from elliot.errors import ConfigError, unknown_name
from elliot.training.addons import TrainingAddon
from elliot.training.defenses.crmt import CRMT_DEFAULTS, CRMTRegulariser
from elliot.training.defenses.mirror_gradient import MG_DEFAULTS, MirrorGradient
from elliot.training.defenses.modality_balancing import MB_DEFAULTS, MB_ROLES, ModalityBalancing, resolve_modalities

DEFENSE_METHODS = {"modality_balancing": MB_DEFAULTS, "crmt": CRMT_DEFAULTS}
TRAINING_OPTIONS = {"mirror_gradient": MG_DEFAULTS}
_INT_KEYS = {"N", "pgd_steps", "beta", "integration_sample", "integration_steps"}
_BOOL_KEYS = {"enable", "integration"}
_STR_KEYS = {"sensitive_modality", "robust_modality", "method", "roles"}
_CHOICES = {"roles": MB_ROLES}
_NONNEG = {"lambda", "rho", "N", "alpha1", "alpha2", "distill_eps"}
_POSITIVE = {"pgd_steps", "pgd_step_size", "beta", "integration_sample", "integration_lr"}


def _typed(key: str, value, where: str):
    loc = f"{where}.{key}"
    if key in _BOOL_KEYS:
        if not isinstance(value, bool):
            raise ConfigError(f"{loc}: {value!r} is not true/false")
        return value
    if key in _STR_KEYS:
        if not isinstance(value, str):
            raise ConfigError(f"{loc}: {value!r} is not a string")
        if key in _CHOICES and value not in _CHOICES[key]:
            raise ConfigError(unknown_name(key, value, _CHOICES[key], where=loc))
        return value
    if key in _INT_KEYS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{loc}: {value!r} is not an integer")
    else:
        if isinstance(value, bool):
            raise ConfigError(f"{loc}: {value!r} is not a number")
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{loc}: {value!r} is not a number") from None
    if key in _NONNEG and value < 0:
        raise ConfigError(f"{loc}: {value!r} must be >= 0")
    if key in _POSITIVE and not value > 0:
        raise ConfigError(f"{loc}: {value!r} must be > 0")
    return value


def _one_defense(block, where: str) -> Optional[Dict[str, Any]]:
    if not isinstance(block, dict):
        raise ConfigError(f"{where} must be a mapping (method: modality_balancing | crmt, ...), got {block!r}")
    method = block.get("method", "modality_balancing")
    if method not in DEFENSE_METHODS:
        raise ConfigError(unknown_name("defense method", method, DEFENSE_METHODS, where=f"{where}.method"))
    defaults = DEFENSE_METHODS[method]
    valid = {"enable", "method"} | set(defaults)
    out: Dict[str, Any] = {"method": method, "enable": True, **defaults}
    for key, value in block.items():
        if key not in valid:
            raise ConfigError(unknown_name(f"key for defense '{method}'", key, valid, where=where))
        out[key] = _typed(key, value, where)
    return out


def _normalise(defense, training, where: str) -> Tuple[List[Dict[str, Any]], Dict[str, Dict[str, Any]]]:
    defenses: List[Dict[str, Any]] = []
    if defense is not None:
        blocks = defense if isinstance(defense, list) else [defense]
        for n, block in enumerate(blocks):
            loc = f"{where}.defense" + (f"[{n}]" if isinstance(defense, list) else "")
            defenses.append(_one_defense(block, loc))
        methods = [d["method"] for d in defenses if d["enable"]]
        if len(methods) != len(set(methods)):
            raise ConfigError(f"{where}.defense: method given twice ({methods})")
    options: Dict[str, Dict[str, Any]] = {}
    if training is not None:
        if not isinstance(training, dict):
            raise ConfigError(f"{where}.training must be a mapping, e.g. {{mirror_gradient: {{enable: true}}}}")
        for name, block in training.items():
            if name not in TRAINING_OPTIONS:
                raise ConfigError(unknown_name("training option", name, TRAINING_OPTIONS, where=f"{where}.training"))
            loc = f"{where}.training.{name}"
            if isinstance(block, bool):
                block = {"enable": block}
            if not isinstance(block, dict):
                raise ConfigError(f"{loc} must be a mapping (enable: true, ...), got {block!r}")
            defaults = TRAINING_OPTIONS[name]
            valid = {"enable"} | set(defaults) | ({"interval"} if name == "mirror_gradient" else set())
            out: Dict[str, Any] = {"enable": True, **defaults}
            for key, value in block.items():
                if key not in valid:
                    raise ConfigError(unknown_name(f"key for training.{name}", key, valid, where=loc))
                if key == "interval":
                    if "beta" in block:
                        raise ConfigError(f"{loc}: give beta or interval (the same setting), not both")
                    key = "beta"
                out[key] = _typed(key, value, loc)
            options[name] = out
    return defenses, options


def validate_defense(defense, training, model_cls, where: str) -> Tuple[List[Dict[str, Any]], Dict[str, Dict[str, Any]]]:
    """Validate a model's ``defense`` and ``training`` blocks (config time); return them normalised.

    Defenses need a multimodal model (they use its per-modality hooks); training options need a
    trainable model.  Modality names are checked later against the built model (``build_addons``).
    """
    from elliot.recommender.multimodal import MultimodalRecommender

    defenses, options = _normalise(defense, training, where)
    name = getattr(model_cls, "name", None) or getattr(model_cls, "__name__", str(model_cls))
    if any(d["enable"] for d in defenses) and not (isinstance(model_cls, type)
                                                   and issubclass(model_cls, MultimodalRecommender)):
        raise ConfigError(f"{where}.defense: {name} reads no item features (not a multimodal model); "
                          "Modality Balancing and CRMT need per-modality branches")
    if getattr(model_cls, "modality_balanced", False) and any(
            d["enable"] and d["method"] == "modality_balancing" for d in defenses):
        raise ConfigError(f"{where}.defense: {name} already trains with Modality Balancing (its settings are "
                          "hyperparameters: lambda, N, ...); use the base model with the defense block, or drop it")
    if any(o["enable"] for o in options.values()) and not getattr(model_cls, "trainable", True):
        raise ConfigError(f"{where}.training: {name} is not trained by gradient steps; drop the training block")
    return defenses, options


def build_addons(model, dataset, defense=None, training=None, seed: int = 42,
                 where: Optional[str] = None) -> List[TrainingAddon]:
    """The trainer add-ons for ``model`` (defenses first, then training options); [] when disabled."""
    where = where or f"experiment.models.{getattr(model, 'name', type(model).__name__)}"
    defenses, options = validate_defense(defense, training, type(model), where)
    addons: List[TrainingAddon] = []
    for d in defenses:
        if not d["enable"]:
            continue
        if d["method"] == "modality_balancing":
            sensitive, robust = resolve_modalities(model, d["sensitive_modality"], d["robust_modality"],
                                                   f"{where}.defense")
            addons.append(ModalityBalancing(sensitive, robust, lam=d["lambda"], N=d["N"],
                                            distill_eps=d["distill_eps"], pgd_steps=d["pgd_steps"],
                                            pgd_step_size=d["pgd_step_size"], seed=seed, roles=d["roles"]))
        elif d["method"] == "crmt":
            from elliot.evaluation.certified import modality_branches

            if not modality_branches(model):
                raise ConfigError(f"{where}.defense: {model.name} exposes no per-modality branches; CRMT needs them")
            addons.append(CRMTRegulariser(rho=d["rho"], N=d["N"], integration=d["integration"],
                                          integration_sample=d["integration_sample"],
                                          integration_steps=d["integration_steps"],
                                          integration_lr=d["integration_lr"], seed=seed))
    mg = options.get("mirror_gradient")
    if mg and mg["enable"]:
        addons.append(MirrorGradient(alpha1=mg["alpha1"], alpha2=mg["alpha2"], beta=mg["beta"]))
    return addons


def finalize(model, dataset, addons, log=None):
    """After training (best epoch restored): add-ons with a post-training step (CRMT step 2) may
    return a wrapped model that replaces ``model`` for test evaluation and attacks."""
    for addon in addons or []:
        step = getattr(addon, "finalize", None)
        if step is not None:
            model = step(model, dataset)
            if log and hasattr(model, "weight_dict"):
                log(f"{addon.name}: integration weights "
                    f"{ {b: round(float(a), 4) for b, a in model.weight_dict().items()} }")
    return model


__all__ = ["CRMTRegulariser", "MirrorGradient", "ModalityBalancing", "build_addons", "finalize", "validate_defense"]
