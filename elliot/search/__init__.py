"""Hyperparameter search: plans (grid, hyperopt), the trials file, executors, and the sweep driver.

* :mod:`elliot.search.plan`: a model block -> :class:`GridPlan` or :class:`HyperoptPlan` (ask/tell);
* :mod:`elliot.search.spaces`: Elliot's hyperopt spaces (``[loguniform, -10, -1]`` ...) checked and built;
* :mod:`elliot.search.store`: ``results/<dataset>/trials/<Model>.jsonl``, resume and corruption checks;
* :mod:`elliot.search.executors`: sequential, local processes (``n_jobs``), Ray;
* :mod:`elliot.search.sweep`: one model's sweep over those pieces.
"""
from elliot.search.plan import GridPlan, HyperoptPlan, TrialPlan, plan_trials, select_best

__all__ = ["TrialPlan", "GridPlan", "HyperoptPlan", "plan_trials", "select_best"]
