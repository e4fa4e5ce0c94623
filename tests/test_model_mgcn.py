import pytest
import torch

from elliot.recommender.knn import knn_laplacian
from external.models.mgcn import MGCN
from tests.helpers import (assert_branches_sum_to_score, assert_deterministic_training, assert_one_trainer_epoch,
                           assert_same_loss_and_grads, assert_training_lowers_loss, assert_views_agree,
                           dense_knn_laplacian, model_factory, random_dataset, reference_content_side_loss,
                           reference_content_view, replaced_feature_grad, scores_with_replaced_feature,
                           single_thread_fixture, structured_dataset, train_steps, triplet_batch)

_one_thread = single_thread_fixture()
_model = model_factory(MGCN, factors=8, top_k=4, lr=0.01, batch_size=64)


def _reference_loss(model, batch, ds):
    """MMRec ``MGCN.forward`` + ``calculate_loss`` written out with dense matrices (two modalities)."""
    nu = model.n_users
    ui_block, content = reference_content_view(model, ds.train)
    item = model.embeddings[nu:]
    image = model.proj[0](model.feature("visual"))
    text = model.proj[1](model.feature("textual"))
    image_item = item * model.gate[0](image).sigmoid()
    text_item = item * model.gate[1](text).sigmoid()
    for _ in range(model.n_layers):
        image_item = dense_knn_laplacian(model.feature("visual"), model.top_k) @ image_item
        text_item = dense_knn_laplacian(model.feature("textual"), model.top_k) @ text_item
    image_emb = torch.cat([ui_block @ image_item, image_item])
    text_emb = torch.cat([ui_block @ text_item, text_item])
    w = torch.softmax(torch.cat([model.query(image_emb), model.query(text_emb)], -1), -1)
    common = w[:, 0:1] * image_emb + w[:, 1:2] * text_emb
    sep_image = model.prefer[0](content).sigmoid() * (image_emb - common)
    sep_text = model.prefer[1](content).sigmoid() * (text_emb - common)
    side = (sep_image + sep_text + common) / 3
    return reference_content_side_loss(model, batch, content, side)


def test_knn_laplacian_matches_dense_mmrec_graph():
    x = torch.randn(50, 7)
    index, values = knn_laplacian(x, 5, chunk_size=7)
    dense = torch.zeros(50, 50).index_put((index[0], index[1]), values)
    assert torch.allclose(dense, dense_knn_laplacian(x, 5), atol=1e-6)
    x[3] = 0  # a zero row: no NaNs, zero weight
    _, values = knn_laplacian(x, 5)
    assert torch.isfinite(values).all()


@pytest.mark.parametrize("hp", [{}, {"n_layers": 2, "n_ui_layers": 1, "cl_loss": 0.5, "l_w": 0.1}])
def test_loss_and_gradients_match_dense_reference(hp):
    ds = random_dataset()
    model = _model(ds, **hp)
    batch = triplet_batch(ds)
    assert_same_loss_and_grads(model, batch, model.loss, lambda b: _reference_loss(model, b, ds), atol=1e-6)


def test_training_lowers_loss_and_trains_every_part():
    ds = random_dataset()
    model = _model(ds)
    assert_training_lowers_loss(model, triplet_batch(ds), 25)
    for mod in (model.proj[0], model.gate[1], model.prefer[0], model.query[0]):
        assert mod.weight.grad.abs().sum() > 0
    assert model.lr_multiplier(50) == pytest.approx(0.96)  # MMRec's scheduler is the default


def test_score_pairs_and_branches_agree():
    ds = random_dataset()
    model = _model(ds)
    train_steps(model, triplet_batch(ds), steps=3)
    users, items, _, pairs = assert_views_agree(model, ds)
    # the side embedding splits exactly by modality: the branch scores sum to the fused score
    assert_branches_sum_to_score(model, users, items, pairs, {"id", "visual", "textual"})


def test_replaced_features_reach_the_score_not_the_graphs():
    ds = random_dataset()
    model = _model(ds)
    graphs = [g.to_dense().clone() for g in model.item_graphs]
    score = lambda: model.score_pairs(torch.arange(5), torch.arange(5))  # noqa: E731
    assert replaced_feature_grad(model, score).abs().sum() > 0
    attacked, clean = scores_with_replaced_feature(model, score)
    assert not torch.allclose(attacked, clean)
    assert all(torch.equal(g.to_dense(), old) for g, old in zip(model.item_graphs, graphs))  # frozen graphs


def test_deterministic_with_fixed_seed_and_one_modality():
    ds = random_dataset()
    batch = triplet_batch(ds)
    assert_deterministic_training(_model, ds, batch, steps=4)
    one = _model(ds, modalities=["textual"])
    assert len(one.item_graphs) == 1 and torch.isfinite(one.loss(batch))
    assert set(one.modality_embeddings(torch.arange(3), torch.arange(3))) == {"id", "textual"}


def test_one_epoch_through_the_trainer():
    ds = structured_dataset()
    assert_one_trainer_epoch(_model(ds, batch_size=128), ds, batch_size=128)
