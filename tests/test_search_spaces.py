"""Search spaces as written in Elliot's YAML, grid expansion, hyperopt plans, selection on validation.

No training here: plans are driven with fake results."""
import math
from types import SimpleNamespace

import numpy as np
import pytest

from elliot.config import Param
from elliot.config.schema import Meta, ModelSpec
from elliot.errors import ConfigError
from elliot.search import GridPlan, HyperoptPlan, plan_trials, select_best
from elliot.search.plan import tpe_startup


class Fake:
    """Declares one parameter of every kind the registry's models use."""

    @classmethod
    def declared_params(cls):
        return (Param("lr", float, 0.001), Param("factors", int, 8), Param("modalities", "list[str]", ["visual"]),
                Param("ws", "list[int]", [64]), Param("flag", bool, False), Param("agg", str, "mean"),
                Param("seed", int, 42), Param("shift", float, 0.0))


def spec(params, alg="grid", evals=None, metric="Recall@20"):
    return ModelSpec("Fake", Meta(validation_metric=metric, hyper_opt_alg=alg, hyper_max_evals=evals), params=params)


def plan(params, alg="grid", evals=None, seed=1):
    return plan_trials(Fake, spec(params, alg, evals), where="experiment.models.Fake", seed=seed)


def sample(params, n=40, alg="rand"):
    p = plan(params, alg, evals=n)
    return [params for _, params in p.ask(n)]


def fake_result(score, test=0.0):
    return SimpleNamespace(validation={20: {"Recall": score}}, test={20: {"Recall": test}}, name=f"r{score}")


# ---- every space kind --------------------------------------------------------------------------
def test_uniform_and_loguniform_are_floats_in_bounds():
    points = sample({"lr": ["uniform", 0.1, 0.2]})
    assert all(isinstance(p["lr"], float) and 0.1 <= p["lr"] <= 0.2 for p in points)
    assert len({p["lr"] for p in points}) > 30
    points = sample({"lr": ["loguniform", -10, -1]})  # hyperopt: exp(uniform(-10, -1))
    assert all(math.exp(-10) <= p["lr"] <= math.exp(-1) for p in points)
    points = sample({"shift": ["normal", 0, 1]})  # an unbounded parameter; lr > 0 refuses normal
    assert all(isinstance(p["shift"], float) for p in points) and len({p["shift"] for p in points}) > 30
    points = sample({"lr": ["lognormal", 0, 1]})
    assert all(p["lr"] > 0 for p in points)


def test_quantised_kinds_type_int_parameters():
    points = sample({"factors": ["quniform", 1, 5, 1]})
    assert all(type(p["factors"]) is int and 1 <= p["factors"] <= 5 for p in points)
    assert {p["factors"] for p in points} == {1, 2, 3, 4, 5}
    points = sample({"factors": ["qloguniform", 3, 5, 8]})  # multiples of 8 in [e^3, e^5]
    assert all(type(p["factors"]) is int and p["factors"] % 8 == 0 for p in points)
    points = sample({"seed": ["qnormal", 32, 4, 2]})  # unbounded kinds only for unbounded parameters
    assert all(type(p["seed"]) is int and p["seed"] % 2 == 0 for p in points)
    points = sample({"seed": ["qlognormal", 3, 0.5, 1]})
    assert all(type(p["seed"]) is int and p["seed"] >= 0 for p in points)
    points = sample({"shift": ["quniform", 0, 1, 0.25]})
    assert {round(p["shift"], 6) for p in points} <= {0.0, 0.25, 0.5, 0.75, 1.0}


def test_spaces_that_leave_the_parameter_domain_are_refused():
    for space in (["qloguniform", 1, 4, 8], ["qnormal", 32, 4, 2], ["randint", 3], ["quniform", 0, 4, 1],
                  ["uniform", 0, 8]):
        with pytest.raises(ConfigError, match="factors"):
            plan({"factors": space}, "rand", evals=2)
    with pytest.raises(ConfigError, match="lr must be > 0|domain of lr"):
        plan({"lr": ["quniform", 0, 1, 0.25]}, "rand", evals=2)
    with pytest.raises(ConfigError, match="domain of lr"):
        plan({"lr": ["normal", 0, 1]}, "rand", evals=2)
    assert len(sample({"lr": ["uniform", 0, 0.01]}, n=5)) == 5  # exclusive bound never drawn


def test_randint_one_and_two_bounds():
    assert {p["seed"] for p in sample({"seed": ["randint", 3]})} == {0, 1, 2}
    points = sample({"factors": ["randint", 5, 8]})
    assert {p["factors"] for p in points} == {5, 6, 7} and all(type(p["factors"]) is int for p in points)


def test_choice_for_every_type():
    assert {p["agg"] for p in sample({"agg": ["choice", ["mean", "max"]]})} == {"mean", "max"}
    assert {p["agg"] for p in sample({"agg": ["choice", "mean", "max"]})} == {"mean", "max"}  # flat form
    assert {p["flag"] for p in sample({"flag": ["choice", [True, False]]})} == {True, False}
    mods = {tuple(p["modalities"]) for p in sample({"modalities": ["choice", [["visual"], ["visual", "textual"]]]})}
    assert mods == {("visual",), ("visual", "textual")}
    ws = [p["ws"] for p in sample({"ws": ["choice", [[64], [64, 32]]]})]
    assert all(isinstance(w, list) and all(type(v) is int for v in w) for w in ws)
    assert {tuple(w) for w in ws} == {(64,), (64, 32)}
    lrs = {p["lr"] for p in sample({"lr": ["choice", ["1e-3", 0.01]]})}  # YAML reads 1e-3 as a string
    assert lrs == {0.001, 0.01}


def test_space_errors_name_the_key():
    cases = [
        ({"lr": ["loguniformm", -10, -1]}, r"Fake\.lr: unknown hyperopt space kind 'loguniformm'.*did you mean "
                                           r"'loguniform'"),
        ({"lr": ["uniform", 0]}, r"Fake\.lr: uniform takes \[uniform, low, high\], got 1 argument"),
        ({"lr": ["uniform", 1, 0]}, r"Fake\.lr: uniform needs low < high"),
        ({"lr": ["normal", 0, -1]}, r"sigma > 0"),
        ({"lr": ["quniform", 0, 1, 0]}, r"q > 0"),
        ({"lr": ["uniform", "a", 1]}, r"uniform low 'a' is not a number"),
        ({"factors": ["uniform", 1, 5]}, r"Fake\.factors: the int parameter 'factors' needs randint, choice or a "
                                         r"q-kind"),
        ({"factors": ["quniform", 1, 5, 0.5]}, r"integer q"),
        ({"flag": ["uniform", 0, 1]}, r"Fake\.flag: a bool parameter can only be searched with \[choice"),
        ({"agg": ["choice", []]}, r"Fake\.agg: \[choice, \[values...\]\] needs at least one value"),
        ({"factors": ["choice", [8, "x"]]}, r"Fake\.factors: 'x' is not a valid int"),
        ({"factors": ["randint", 5, 2]}, r"randint needs low < upper"),
    ]
    for params, message in cases:
        with pytest.raises(ConfigError, match=message):
            plan(params, "tpe", evals=5)


def test_spaces_need_a_hyperopt_algorithm():
    with pytest.raises(ConfigError, match=r"hyper_opt_alg tpe, rand, anneal or atpe"):
        plan({"lr": ["loguniform", -10, -1]}, "grid")


def test_a_string_grid_that_looks_like_a_kind_stays_a_grid():
    p = plan({"agg": ["uniform", "normal"]})  # two initialisation names, not a space
    assert isinstance(p, GridPlan) and [c["agg"] for _, c in p.ask(10)] == ["uniform", "normal"]


# ---- grids ---------------------------------------------------------------------------------------
def test_grid_axes_and_list_typed_parameters():
    p = plan({"lr": [0.1, 0.01], "factors": {"grid": [4, 8, 16]}, "modalities": [["visual"], ["visual", "textual"]],
              "ws": [64, 32]})
    assert isinstance(p, GridPlan) and p.size == 2 * 3 * 2
    configs = [c for _, c in p.ask(100)]
    assert len(configs) == 12 and len({repr(sorted(c.items())) for c in configs}) == 12
    assert all(c["ws"] == [64, 32] for c in configs)  # a list for a list-typed parameter is its value
    assert configs[0] == {"lr": 0.1, "factors": 4, "modalities": ["visual"], "ws": [64, 32], "flag": False,
                          "agg": "mean", "seed": 42, "shift": 0.0}
    ws = plan({"ws": {"grid": [[64], [64, 32]]}})
    assert [c["ws"] for _, c in ws.ask(5)] == [[64], [64, 32]]
    assert ws.ask(5) == []  # exhausted


def test_grid_axes_become_choices_next_to_a_space():
    p = plan({"factors": [4, 8], "lr": ["loguniform", -8, -2]}, "tpe", evals=20)
    assert isinstance(p, HyperoptPlan) and p.size == 20
    assert p.describe()["searched"] == {"factors": ["choice", [4, 8]], "lr": ["loguniform", -8.0, -2.0]}
    seen = set()
    for token, params in p.ask(20):
        assert params["factors"] in (4, 8) and math.exp(-8) <= params["lr"] <= math.exp(-2)
        seen.add(params["factors"])
        p.tell(token, fake_result(params["lr"]))
    assert seen == {4, 8}


def test_lists_alone_with_tpe_search_the_grid_as_choices():
    p = plan({"factors": [4, 8, 16]}, "rand", evals=6)
    assert isinstance(p, HyperoptPlan)
    assert {c["factors"] for _, c in p.ask(6)} <= {4, 8, 16}


def test_default_max_evals_is_said():
    p = plan({"lr": ["uniform", 0, 1]}, "tpe")
    assert p.size == 20 and any("hyper_max_evals not set" in n for n in p.notes)


# ---- hyperopt determinism and history --------------------------------------------------------------
def drive(p, score, batch=1, stop=None):
    """Ask/tell like the sweep: batches, results told in batch order."""
    seen = []
    while stop is None or len(seen) < stop:
        asked = p.ask(batch)
        if not asked:
            break
        for token, params in asked:
            seen.append(params)
            p.tell(token, fake_result(score(params)))
    return seen


@pytest.mark.parametrize("alg", ["tpe", "rand", "anneal"])
def test_same_seed_same_sequence_and_replay_continues(alg):
    space = {"lr": ["uniform", 0, 1], "factors": ["quniform", 1, 9, 1]}
    score = lambda c: -(c["lr"] - 0.3) ** 2 - 0.01 * c["factors"]  # noqa: E731
    full = drive(plan(space, alg, evals=16, seed=7), score)
    assert drive(plan(space, alg, evals=16, seed=7), score) == full
    assert drive(plan(space, alg, evals=16, seed=8), score) != full
    # a sweep killed after 9 evaluations and resumed: the new plan replays 9 stored results and goes on
    first = drive(plan(space, alg, evals=16, seed=7), score, stop=9)
    assert first == full[:9]
    resumed = drive(plan(space, alg, evals=16, seed=7), score)
    assert resumed == full
    # a larger budget continues the same search
    assert drive(plan(space, alg, evals=20, seed=7), score)[:16] == full


def test_tpe_uses_the_history():
    space = {"lr": ["uniform", 0, 1]}
    p = plan(space, "tpe", evals=40, seed=3)
    points = drive(p, lambda c: -abs(c["lr"] - 0.8))
    start = tpe_startup(40)
    assert start == 10
    modelled = [c["lr"] for c in points[start:]]
    assert np.mean([abs(x - 0.8) for x in modelled]) < np.mean([abs(c["lr"] - 0.8) for c in points[:start]])
    assert p.best().validation[20]["Recall"] > -0.05  # found lr within 0.05 of the optimum


def test_failed_trials_are_told_as_failures():
    p = plan({"lr": ["uniform", 0, 1]}, "tpe", evals=6, seed=3)
    for i in range(6):
        [(token, params)] = p.ask(1)
        p.tell(token, None if i % 2 else fake_result(params["lr"]))
    assert len(p.results) == 3 and p.best() in p.results


def test_batches_of_n_jobs():
    p = plan({"lr": ["uniform", 0, 1]}, "tpe", evals=5)
    assert p.batch_size(2) == 2 and [len(p.ask(2)) for _ in range(3)] == [2, 2, 1]
    g = plan({"lr": [0.1, 0.2, 0.3]})
    assert g.batch_size(2) == 3  # a grid is streamed whole to the executor


@pytest.mark.parametrize("alg", ["atpe"])
def test_atpe_when_installed(alg):
    pytest.importorskip("lightgbm")
    pytest.importorskip("sklearn")
    space = {"lr": ["uniform", 0, 1], "factors": [4, 8]}
    score = lambda c: -abs(c["lr"] - 0.5)  # noqa: E731
    first = drive(plan(space, alg, evals=6, seed=2), score)
    assert len(first) == 6 and drive(plan(space, alg, evals=6, seed=2), score) == first


# ---- selection ---------------------------------------------------------------------------------------
def test_best_is_chosen_on_validation_never_test():
    results = [fake_result(0.10, test=0.9), fake_result(0.30, test=0.1), fake_result(0.20, test=0.5)]
    assert select_best(results, "Recall", 20) is results[1]
    tie = [fake_result(0.3, test=0.1), fake_result(0.3, test=0.9)]
    assert select_best(tie, "Recall", 20) is tie[0]  # ties: the earliest
    nan = [SimpleNamespace(validation={}, test={}), SimpleNamespace(validation={}, test={})]
    assert select_best(nan, "Recall", 20) is nan[0]
    assert select_best([], "Recall", 20) is None
    p = plan({"lr": [0.1, 0.2, 0.3]})
    for (token, _), r in zip(p.ask(3), results):
        p.tell(token, r)
    assert p.best() is results[1]


def test_a_model_can_expand_its_own_configurations():
    class Folder(Fake):
        @classmethod
        def expand_configurations(cls, params, where):
            return [{**params, "agg": a} for a in ("x", "y")]

    p = plan_trials(Folder, spec({"lr": [0.1, 0.2]}), where="m")
    assert p.size == 4 and [(c["lr"], c["agg"]) for _, c in p.ask(9)] == [(0.1, "x"), (0.1, "y"), (0.2, "x"),
                                                                          (0.2, "y")]
