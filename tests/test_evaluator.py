import numpy as np
import torch
import pytest

from elliot.dataset.dataset import Dataset
from elliot.evaluation.evaluator import Evaluator
from tests.helpers import FixedScores, csr


def _dataset():
    # 2 users, 5 items. user 0 trained on item 0; test {1, 3}; val {2}. user 1 trained on 4; test {0}.
    train = csr([0, 1], [0, 4], (2, 5))
    val = csr([0], [2], (2, 5))
    test = csr([0, 0, 1], [1, 3, 0], (2, 5))
    return Dataset("t", np.array(["a", "b"]), np.array(list("vwxyz")), train=train, test=test, validation=val)


SCORES = [[9, 1, 8, 7, 0],  # user 0 ranking (train item 0 masked): 2, 3, 1, 4
          [1, 2, 3, 4, 9]]  # user 1 ranking (item 4 masked): 3, 2, 1, 0


def test_masks_train_and_validation_items_at_test():
    ev = Evaluator(_dataset(), cutoffs=[1, 2], metrics=["Precision", "Recall", "nDCG", "HR"])
    res = ev.evaluate(FixedScores(SCORES), "test")
    # user 0 (val item 2 masked too): ranking 3, 1, 4 -> hits at ranks 1,2; user 1: 3, 2, 1, 0 -> no hit in top 2
    assert res.get("Precision", 1) == pytest.approx((1 + 0) / 2)
    assert res.get("Recall", 2) == pytest.approx((2 / 2 + 0) / 2)
    assert res.get("HR", 2) == pytest.approx(0.5)
    assert res.get("nDCG", 2) == pytest.approx(0.5)


def test_validation_items_not_masked_when_disabled():
    ev = Evaluator(_dataset(), cutoffs=[1], metrics=["Precision"], mask_validation_in_test=False)
    res = ev.evaluate(FixedScores(SCORES), "test")
    assert res.get("Precision", 1) == pytest.approx(0.0)  # user 0's top-1 is now validation item 2


def test_batches_give_same_result_as_one_batch():
    rng = np.random.default_rng(0)
    from tests.helpers import random_dataset

    ds = random_dataset(n_users=50, n_items=30)
    scores = rng.random((50, 30))
    a = Evaluator(ds, [5, 10], ["Recall", "nDCG", "MAP"], batch_size=7).evaluate(FixedScores(scores), "test")
    b = Evaluator(ds, [5, 10], ["Recall", "nDCG", "MAP"], batch_size=1000).evaluate(FixedScores(scores), "test")
    assert a.values == b.values


def test_recommendations_exclude_training_items_and_are_sorted():
    ev = Evaluator(_dataset(), cutoffs=[2], metrics=["Recall"], top_k=3)
    users, items, scores = ev.recommendations(FixedScores(SCORES))
    assert list(users) == [0, 0, 0, 1, 1, 1]
    assert list(items[:3]) == [3, 1, 4] and list(items[3:]) == [3, 2, 1]
    assert np.all(np.diff(scores[:3]) <= 0)


def test_relevance_threshold():
    ds = _dataset()
    test = csr([0, 0, 1], [1, 3, 0], (2, 5), values=[5, 2, 4])
    ds = Dataset("t", ds.user_ids, ds.item_ids, train=ds.train, test=test, validation=ds.validation)
    res = Evaluator(ds, [2], ["Recall"], relevance_threshold=4).evaluate(FixedScores(SCORES), "test")
    # relevant: user 0 {1}, user 1 {0}; user 0 top-2 = 3, 1 -> recall 1; user 1 -> 0
    assert res.get("Recall", 2) == pytest.approx(0.5)


class _AliasingScores(FixedScores):
    """Scores that alias model state: the buffer itself (``mode='buffer'``) or a view of it."""

    def __init__(self, scores, mode):
        super().__init__(scores)
        self.register_buffer("table", self.scores.clone())
        self.mode = mode

    def score(self, users):
        if self.mode == "buffer":
            return self.table  # every user at once: the buffer, not a copy
        return self.table[:1].expand(len(users), -1) if self.mode == "broadcast" else self.table[users]


@pytest.mark.parametrize("mode", ["buffer", "broadcast", "fresh"])
def test_masking_never_writes_into_model_state(mode):
    model = _AliasingScores(SCORES, mode)
    before = model.table.clone()
    ev = Evaluator(_dataset(), cutoffs=[1, 2], metrics=["Recall"])
    first = ev.evaluate(model, "test").values
    assert torch.equal(model.table, before)  # training/validation items were masked in a copy
    assert ev.evaluate(model, "test").values == first
