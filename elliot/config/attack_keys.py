"""The keys of an ``evaluation.attacks`` entry, per method: the tables that
:mod:`elliot.evaluation.attacks.spec` validates against and that the exported JSON Schema
(:mod:`elliot.config.schema`) describes.  Kept free of torch, as the whole config package is."""
from __future__ import annotations

METHODS = ("fgsm_l2", "fgsm", "msap", "certified_radius", "promotion", "missing_modality")
ALIASES = {"pgd": "msap", "fgsm_linf": "fgsm", "certify": "certified_radius", "missing": "missing_modality"}
#: the gradient attacks a promotion entry can use (``attack:``)
PROMOTION_ATTACKS = ("fgsm_l2", "fgsm", "msap")
MISSING_MODES = ("zero", "mean", "swap")
COMMON_KEYS = {"method", "modality", "name", "seed", "sample_size", "batch_size", "split"}
BUDGET_KEYS = {"eps", "eps_ratio"}
MSAP_KEYS = {"projection", "step", "nb_iter", "eps_iter"}
METHOD_KEYS = {
    "fgsm_l2": COMMON_KEYS | BUDGET_KEYS,
    "fgsm": COMMON_KEYS | BUDGET_KEYS,
    "msap": COMMON_KEYS | BUDGET_KEYS | MSAP_KEYS,
    "certified_radius": {"method", "name", "seed", "sample_size", "split", "eps_ratio"},
    "promotion": {"method", "modality", "name", "seed", "batch_size", "split", "targets", "attack", "cutoff"}
                 | BUDGET_KEYS | MSAP_KEYS,
    "missing_modality": {"method", "modality", "name", "seed", "split", "mode", "fraction"},
}
PROJECTIONS = ("linf", "l2")
STEPS = ("sign", "l2")
SPLITS = ("test", "validation")


def canonical_method(name) -> str:
    """The method an entry's ``method`` value names (any case, aliases resolved); may not be in METHODS."""
    return ALIASES.get(str(name).lower(), str(name).lower())
