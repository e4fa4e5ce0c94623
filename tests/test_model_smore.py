import pytest
import torch

from elliot.recommender.spectral import SpectralFilter
from external.models.smore import SMORE
from external.models.smore.smore import max_union
from tests.helpers import (assert_branches_sum_to_score, assert_deterministic_training, assert_fine_tuned_features,
                           assert_one_trainer_epoch,
                           assert_same_loss_and_grads, assert_training_lowers_loss, assert_views_agree,
                           dense_knn_laplacian, model_factory, random_dataset, reference_content_side_loss,
                           reference_content_view, replaced_feature_grad, scores_with_replaced_feature,
                           single_thread_fixture, structured_dataset, train_steps, triplet_batch)


_one_thread = single_thread_fixture()
_model = model_factory(SMORE, factors=8, top_k=4, lr=0.01, batch_size=64)


def _dense_max_pool(a, b):
    """MMRec ``max_pool_fusion`` on dense matrices: max over the union of the stored entries."""
    ninf = torch.tensor(float("-inf"))
    out = torch.maximum(torch.where(a != 0, a, ninf), torch.where(b != 0, b, ninf))
    return torch.where(torch.isinf(out), torch.zeros_like(out), out)


def _reference_loss(model, batch, ds, k_img, k_txt):
    """MMRec ``SMORE.forward(train=True)`` + ``calculate_loss`` with dense matrices (image = visual, text =
    textual), the spectral convolutions written with torch.fft directly; the loss head is MGCN's."""
    nu, d = model.n_users, model.factors
    ui_block, content = reference_content_view(model, ds.train)
    img_adj = dense_knn_laplacian(model.feature("visual"), k_img)
    txt_adj = dense_knn_laplacian(model.feature("textual"), k_txt)
    fus_adj = _dense_max_pool(img_adj, txt_adj)
    item = model.embeddings[nu:]
    image_feats = model.proj[0](model.feature("visual"))
    text_feats = model.proj[1](model.feature("textual"))
    img_fft, txt_fft = torch.fft.rfft(image_feats, dim=1, norm="ortho"), torch.fft.rfft(text_feats, dim=1, norm="ortho")
    wi, wt, wf = (torch.view_as_complex(f.weight) for f in (*model.filters, model.fusion_filter))
    image_conv = torch.fft.irfft(img_fft * wi, n=d, dim=1, norm="ortho")
    text_conv = torch.fft.irfft(txt_fft * wt, n=d, dim=1, norm="ortho")
    fusion_conv = torch.fft.irfft(txt_fft * img_fft * wf, n=d, dim=1, norm="ortho")
    image_item = item * model.gate[0](image_conv).sigmoid()
    text_item = item * model.gate[1](text_conv).sigmoid()
    fusion_item = item * model.gate[2](fusion_conv).sigmoid()
    for _ in range(model.n_layers):
        image_item, text_item, fusion_item = img_adj @ image_item, txt_adj @ text_item, fus_adj @ fusion_item
    image_emb = torch.cat([ui_block @ image_item, image_item])
    text_emb = torch.cat([ui_block @ text_item, text_item])
    fusion_emb = torch.cat([ui_block @ fusion_item, fusion_item])
    agg_image = torch.softmax(model.query[0](fusion_emb), -1) * image_emb
    agg_text = torch.softmax(model.query[1](fusion_emb), -1) * text_emb
    agg_image = model.prefer[0](content).sigmoid() * agg_image
    agg_text = model.prefer[1](content).sigmoid() * agg_text
    fusion_emb = model.prefer[2](content).sigmoid() * fusion_emb
    side = torch.stack([agg_image, agg_text, fusion_emb]).mean(0)
    return reference_content_side_loss(model, batch, content, side)


def test_spectral_filter_is_a_circular_convolution():
    torch.manual_seed(0)
    filt, x, y = SpectralFilter(8), torch.randn(5, 8), torch.randn(5, 8)
    with torch.no_grad():
        filt.weight.zero_()
        filt.weight[..., 0] = 1.0  # w = 1: identity
    assert torch.allclose(filt.filter(x), x, atol=1e-6)
    # the product of two (orthonormal) spectra is the circular convolution of the rows, / sqrt(d)
    conv = torch.stack([sum(x[:, j] * y[:, (t - j) % 8] for j in range(8)) for t in range(8)], 1) / 8 ** 0.5
    assert torch.allclose(filt.fuse([filt.spectrum(x), filt.spectrum(y)]), conv, atol=1e-5)
    torch.nn.init.normal_(filt.weight)
    filt.filter(x).sum().backward()
    assert filt.weight.grad.abs().sum() > 0


def test_max_union_matches_dense_max_pool():
    a, b = torch.zeros(6, 6), torch.zeros(6, 6)
    a[0, 1], a[2, 3], a[4, 4] = 0.5, 0.2, 0.7
    b[0, 1], b[3, 3], b[4, 4] = 0.3, 0.9, 0.8
    index, values = max_union([(a.nonzero().T, a[a != 0]), (b.nonzero().T, b[b != 0])], 6)
    assert torch.equal(torch.zeros(6, 6).index_put((index[0], index[1]), values), _dense_max_pool(a, b))


@pytest.mark.parametrize("hp", [{}, {"n_layers": 2, "n_ui_layers": 1, "cl_loss": 0.5, "l_w": 0.1,
                                     "image_knn_k": 3, "text_knn_k": 5}])
def test_loss_and_gradients_match_dense_reference(hp):
    ds = random_dataset()
    model = _model(ds, **hp)
    batch = triplet_batch(ds)
    k_img, k_txt = hp.get("image_knn_k", 4), hp.get("text_knn_k", 4)
    assert_same_loss_and_grads(model, batch, model.loss, lambda b: _reference_loss(model, b, ds, k_img, k_txt),
                               atol=1e-6)


def test_training_lowers_loss_and_trains_every_part():
    ds = random_dataset()
    model = _model(ds, dropout=0.1)
    assert_training_lowers_loss(model, triplet_batch(ds), 25)
    for mod in (model.proj[0], model.gate[2], model.prefer[2], model.query[1][0]):
        assert mod.weight.grad.abs().sum() > 0
    assert model.filters[0].weight.grad.abs().sum() > 0 and model.fusion_filter.weight.grad.abs().sum() > 0
    assert model.lr_multiplier(50) == pytest.approx(0.96)


def test_score_pairs_and_branches_agree():
    ds = random_dataset()
    model = _model(ds, dropout=0.5)
    train_steps(model, triplet_batch(ds), steps=3)
    users, items, _, pairs = assert_views_agree(model, ds)  # no dropout in scoring
    assert_branches_sum_to_score(model, users, items, pairs, {"id", "visual", "textual"})


def test_replaced_features_reach_the_score_not_the_graphs():
    ds = random_dataset()
    model = _model(ds)
    graphs = [g.to_dense().clone() for g in model.item_graphs]
    score = lambda: model.score_pairs(torch.arange(5), torch.arange(5))  # noqa: E731
    assert replaced_feature_grad(model, score, "textual").abs().sum() > 0
    attacked, clean = scores_with_replaced_feature(model, score, "textual")
    assert not torch.allclose(attacked, clean)
    assert all(torch.equal(g.to_dense(), old) for g, old in zip(model.item_graphs, graphs))


def test_deterministic_and_any_number_of_modalities():
    ds = random_dataset()
    batch = triplet_batch(ds)
    assert_deterministic_training(lambda d, seed: _model(d, seed=seed, dropout=0.2), ds, batch, steps=4)
    one = _model(ds, modalities=["textual"])
    assert len(one.item_graphs) == 2 and torch.isfinite(one.loss(batch))
    three = _model(random_dataset(modalities=("visual", "textual", "audio"), dims=(8, 6, 5)))
    users, items = torch.arange(6), torch.arange(6)
    with torch.no_grad():
        assert torch.allclose(sum(three.modality_scores(users, items).values()), three.score_pairs(users, items),
                              atol=1e-5)


def test_one_epoch_through_the_trainer():
    ds = structured_dataset()
    assert_one_trainer_epoch(_model(ds, batch_size=128), ds, batch_size=128)


def test_fine_tune_features_trains_the_tables_but_keeps_the_raw_knn_graphs():
    """MMRec's SMORE trains its feature tables (from_pretrained(freeze=False)) and builds the kNN graphs once
    from the raw features."""
    ds = random_dataset()
    frozen, tuned = _model(ds), _model(ds, fine_tune_features=True)
    graphs = [g.to_dense().clone() for g in tuned.item_graphs]
    assert_fine_tuned_features(frozen, tuned, triplet_batch(ds))
    assert all(torch.equal(g.to_dense(), before) for g, before in zip(tuned.item_graphs, graphs))
    assert all(torch.equal(a.to_dense(), b.to_dense()) for a, b in zip(tuned.item_graphs, frozen.item_graphs))
