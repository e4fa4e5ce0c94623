import numpy as np
import pytest
import torch

from elliot.dataset.dataset import Dataset
from elliot.evaluation.evaluator import Evaluator
from elliot.recommender.baselines import BPRMF, LightGCN, MostPop
from elliot.training.addons import TrainingAddon
from elliot.training.trainer import Trainer
from tests.helpers import random_dataset, structured_dataset


def _train(cls, ds, epochs=4, seed=3, rate=1, early=None, addons=(), **hp):
    params = {"factors": 8, "lr": 0.01, "l_w": 1e-4, "l_b": 1e-4, "n_layers": 2, **hp}
    params = {k: v for k, v in params.items() if k in {p.name for p in cls.declared_params()}}
    torch.manual_seed(seed)
    model = cls(ds, params, torch.device("cpu"))
    ev = Evaluator(ds, [5, 10], ["Recall", "nDCG"])
    trainer = Trainer(model, ds, ev, epochs=epochs, batch_size=32, seed=seed, validation_rate=rate,
                      validation_metric="Recall@10", early_stopping=early, addons=addons, progress=False)
    fit = trainer.fit()
    return model, fit, ev.evaluate(model, "test")


@pytest.mark.parametrize("cls", [BPRMF, LightGCN])
def test_same_seed_same_metrics(cls):
    ds = random_dataset()
    _, fit_a, a = _train(cls, ds)
    _, fit_b, b = _train(cls, ds)
    assert a.values == b.values
    assert [h["loss"] for h in fit_a.history] == [h["loss"] for h in fit_b.history]


def test_best_epoch_weights_are_restored():
    ds = random_dataset(n_users=60, n_items=50)
    model, fit, _ = _train(BPRMF, ds, epochs=6, lr=0.05)
    assert fit.selected_on == "validation"
    best_val = fit.best_validation[10]["Recall"]
    recorded = [h["val_Recall@10"] for h in fit.history]
    assert best_val == max(recorded)
    assert fit.history[fit.best_epoch - 1]["val_Recall@10"] == best_val
    # the model now holds the best epoch's weights
    again = Evaluator(ds, [5, 10], ["Recall", "nDCG"]).evaluate(model, "validation")
    assert again.get("Recall", 10) == pytest.approx(best_val)


def test_validation_rate_and_last_epoch_always_validated():
    ds = random_dataset()
    _, fit, _ = _train(BPRMF, ds, epochs=5, rate=2)
    validated = [h["epoch"] for h in fit.history if "val_Recall@10" in h]
    assert validated == [2, 4, 5]


def test_no_validation_uses_last_epoch():
    ds = random_dataset()
    ds = Dataset(ds.name, ds.user_ids, ds.item_ids, ds.train, ds.test, validation=None, features=ds.features)
    _, fit, _ = _train(BPRMF, ds, epochs=3)
    assert fit.selected_on == "last_epoch" and fit.best_epoch == 3


def test_early_stopping_stops():
    ds = random_dataset()
    _, fit, _ = _train(BPRMF, ds, epochs=50, lr=0.0, early={"patience": 2, "rule": "best"})  # lr 0: flat
    assert fit.stopped_early and fit.epochs_run == 3
    # Elliot's rule: a flat metric is "not improving" only with min_delta (equal is not worse)
    _, fit, _ = _train(BPRMF, ds, epochs=50, lr=0.0, early={"patience": 2, "min_delta": 0.0})
    assert fit.stopped_early and fit.epochs_run == 3
    _, fit, _ = _train(BPRMF, ds, epochs=8, lr=0.0, early={"patience": 2})
    assert not fit.stopped_early and fit.epochs_run == 8


def test_mostpop_needs_no_training():
    ds = random_dataset()
    model, fit, res = _train(MostPop, ds)
    assert fit.best_epoch == 0 and fit.epochs_run == 0
    pop = ds.item_popularity()
    top = model.score(torch.tensor([0]))[0].argmax().item()
    assert pop[top] == pop.max()


def test_addon_extra_loss_is_added():
    class Counter(TrainingAddon):
        calls = 0

        def extra_loss(self, model, batch, epoch):
            Counter.calls += 1
            return torch.zeros(())

    ds = random_dataset()
    _train(BPRMF, ds, epochs=1, addons=[Counter()])
    assert Counter.calls == int(np.ceil(ds.train.nnz / 32))


def test_learning_beats_random():
    ds = structured_dataset()
    _, _, trained = _train(LightGCN, ds, epochs=15)
    _, _, untrained = _train(LightGCN, ds, epochs=1, lr=0.0)
    assert trained.get("Recall", 10) > untrained.get("Recall", 10)


def test_bprmf_sparse_grad_updates_only_batch_rows_and_learns():
    ds = structured_dataset()
    from tests.helpers import triplet_batch

    torch.manual_seed(0)
    model = BPRMF(ds, {"factors": 8, "lr": 0.05, "l_w": 1e-4, "l_b": 1e-4, "sparse_grad": True},
                  torch.device("cpu"))
    batch = triplet_batch(ds, n=16)
    before = model.user_emb.weight.detach().clone()
    opt = model.make_optimizer()
    assert isinstance(opt, torch.optim.SparseAdam)
    opt.zero_grad()
    model.loss(batch).backward()
    assert model.user_emb.weight.grad.is_sparse
    opt.step()
    untouched = torch.ones(ds.n_users, dtype=torch.bool)
    untouched[batch.users] = False
    assert torch.equal(model.user_emb.weight[untouched], before[untouched])
    assert not torch.equal(model.user_emb.weight[batch.users], before[batch.users])
    # through the trainer it learns as well as dense Adam does on the structured data
    _, _, sparse = _train(BPRMF, ds, epochs=15, lr=0.05, sparse_grad=True)
    _, _, untrained = _train(BPRMF, ds, epochs=1, lr=0.0)  # same initial weights (SparseAdam refuses lr 0)
    assert sparse.get("Recall", 10) > untrained.get("Recall", 10)
    _, _, again = _train(BPRMF, ds, epochs=15, lr=0.05, sparse_grad=True)
    assert again.values == sparse.values


def test_early_stopping_rules_on_sequences():
    from elliot.training.early_stopping import EarlyStopping

    def stops_at(values, **kw):
        es = EarlyStopping(**kw)
        return next((n + 1 for n, v in enumerate(values) if es.update(v)), None)

    # Elliot: each of the last `patience` checks worse than the one before it
    assert stops_at([0.1, 0.2, 0.19, 0.18, 0.3], patience=2, monitor="Recall@10") == 4
    wobbly = [0.1, 0.2, 0.19, 0.195, 0.18, 0.199]
    assert stops_at(wobbly, patience=2, monitor="Recall@10") is None  # oscillates below the best: never stops
    assert stops_at(wobbly, patience=2, monitor="Recall@10", rule="best") == 4
    assert stops_at(wobbly, patience=2, monitor="Recall@10", rule="fork") == 4  # 0.19, 0.195 < 0.2
    assert stops_at([0.1, 0.2, 0.19, 0.21, 0.2, 0.2], patience=2, monitor="Recall@10", rule="fork") == 6
    assert stops_at([5.0, 4.0, 4.5, 4.1], patience=2, monitor="loss", rule="fork") == 4
    assert stops_at([0.1, 0.2, 0.2005, 0.201], patience=2, monitor="Recall@10", min_delta=0.001) == 4
    assert stops_at([0.1, 0.2, 0.2005, 0.201], patience=2, monitor="Recall@10", rel_delta=0.01) == 4
    assert stops_at([0.01, 0.02, 0.03], patience=1, monitor="Recall@10", baseline=0.05) == 2  # below baseline
    assert stops_at([5.0, 4.0, 4.5, 4.6], patience=2, monitor="loss") == 4  # loss: mode auto = min
    assert stops_at([0.1, 0.05, 0.01], patience=0, monitor="Recall@10") is None  # Elliot's patience 0: never
