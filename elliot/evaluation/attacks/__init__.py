"""Test-time adversarial attacks on raw item features (FGSM-L2, FGSM-L∞, MSAP/PGD) and certified radii.

Configured in ``experiment.evaluation.attacks`` (see :mod:`elliot.evaluation.attacks.spec` for the
keys) or with ``start_experiments.py --eval_attack`` (:data:`DEFAULT_ATTACK`).  Every multimodal
model is attacked through its hooks (``features_replaced`` + ``score_pairs``), so no model needs
attack-specific code.  Results: :func:`evaluate_attacks` records, written by
:func:`elliot.results.robustness.write_attack_tables`.
"""
from elliot.evaluation.attacks.evaluate import TARGET, evaluate_attacks, is_attackable, relative_drop
from elliot.evaluation.attacks.perturb import (FeatureAttack, fgsm, msap, project_l2, project_linf,
                                               sample_triples)
from elliot.evaluation.attacks.spec import (DEFAULT_ATTACK, METHODS, check_attackable, normalise_attack,
                                            validate_attacks)

__all__ = ["DEFAULT_ATTACK", "METHODS", "TARGET", "FeatureAttack", "check_attackable", "evaluate_attacks", "fgsm",
           "is_attackable", "msap", "normalise_attack", "project_l2", "project_linf", "relative_drop",
           "sample_triples", "validate_attacks"]
