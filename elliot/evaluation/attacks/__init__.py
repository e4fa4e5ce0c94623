"""Test-time attacks on raw item features (FGSM-L2, FGSM-L∞, MSAP/PGD), targeted item promotion, missing
modalities, and certified radii.

Configured in ``experiment.evaluation.attacks`` (see :mod:`elliot.evaluation.attacks.spec` for the
keys) or with ``start_experiments.py --eval_attack`` (:data:`DEFAULT_ATTACK`).  Every multimodal
model is attacked through its hooks (``features_replaced`` + ``score_pairs``), so no model needs
attack-specific code.  Results: :func:`evaluate_attacks` records, written by
:func:`elliot.results.robustness.write_attack_tables`.
"""
from elliot.evaluation.attacks.evaluate import TARGET, evaluate_attacks, is_attackable, relative_drop
from elliot.evaluation.attacks.missing import affected_items, replaced_features, swap_sources
from elliot.evaluation.attacks.perturb import (FeatureAttack, fgsm, msap, project_l2, project_linf,
                                               sample_triples)
from elliot.evaluation.attacks.promotion import (PromotionAttack, long_tail_items, promotion_pairs, resolve_targets,
                                                 target_exposure)
from elliot.evaluation.attacks.spec import (DEFAULT_ATTACK, METHODS, check_attackable, normalise_attack,
                                            validate_attacks)

__all__ = ["DEFAULT_ATTACK", "METHODS", "TARGET", "FeatureAttack", "PromotionAttack", "affected_items",
           "check_attackable", "evaluate_attacks", "fgsm", "is_attackable", "long_tail_items", "msap",
           "normalise_attack", "project_l2", "project_linf", "promotion_pairs", "relative_drop", "replaced_features",
           "resolve_targets", "sample_triples", "swap_sources", "target_exposure", "validate_attacks"]
