import pytest
import torch
from torch.nn import functional as F

from elliot.recommender.spectral import SpectralFilter
from external.models.smore import SMORE
from external.models.smore.smore import max_union
from tests.helpers import (assert_same_loss_and_grads, fit_through_trainer, random_dataset, scoring_views,
                           structured_dataset, train_steps, triplet_batch)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: thread hand-offs cost more than the work on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(ds, seed=0, **hp):
    params = {p.name: p.default for p in SMORE.declared_params()}
    params.update({"factors": 8, "top_k": 4, "lr": 0.01, "batch_size": 64}, **hp)
    torch.manual_seed(seed)
    return SMORE(ds, params, torch.device("cpu"))


def _dense_knn(x, k):
    """MMRec: build_sim -> topk with values -> D^-1/2 S D^-1/2 (dense)."""
    xn = x / x.norm(dim=1, keepdim=True)
    sim = xn @ xn.T
    val, ind = torch.topk(sim, k, dim=-1)
    adj = torch.zeros_like(sim).scatter_(-1, ind, val)
    d = adj.sum(-1).pow(-0.5)
    d[torch.isinf(d)] = 0
    return d.view(-1, 1) * adj * d.view(1, -1)


def _dense_max_pool(a, b):
    """MMRec ``max_pool_fusion`` on dense matrices: max over the union of the stored entries."""
    ninf = torch.tensor(float("-inf"))
    out = torch.maximum(torch.where(a != 0, a, ninf), torch.where(b != 0, b, ninf))
    return torch.where(torch.isinf(out), torch.zeros_like(out), out)


def _reference_loss(model, batch, ds, k_img, k_txt):
    """MMRec ``SMORE.forward(train=True)`` + ``calculate_loss`` with dense matrices (image = visual, text =
    textual), the spectral convolutions written with torch.fft directly."""
    nu, d = model.n_users, model.factors
    r = torch.as_tensor(ds.train.toarray())
    a = torch.zeros(nu + model.n_items, nu + model.n_items)
    a[:nu, nu:], a[nu:, :nu] = r, r.T
    deg = a.sum(1).pow(-0.5)
    deg[torch.isinf(deg)] = 0
    norm = deg.view(-1, 1) * a * deg.view(1, -1)
    img_adj = _dense_knn(model.feature("visual"), k_img)
    txt_adj = _dense_knn(model.feature("textual"), k_txt)
    fus_adj = _dense_max_pool(img_adj, txt_adj)
    user, item = model.embeddings[:nu], model.embeddings[nu:]
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
    layers = [torch.cat([user, item])]
    for _ in range(model.n_ui_layers):
        layers.append(norm @ layers[-1])
    content = torch.stack(layers, 1).mean(1)
    for _ in range(model.n_layers):
        image_item, text_item, fusion_item = img_adj @ image_item, txt_adj @ text_item, fus_adj @ fusion_item
    rb = norm[:nu, nu:]
    image_emb = torch.cat([rb @ image_item, image_item])
    text_emb = torch.cat([rb @ text_item, text_item])
    fusion_emb = torch.cat([rb @ fusion_item, fusion_item])
    agg_image = torch.softmax(model.query[0](fusion_emb), -1) * image_emb
    agg_text = torch.softmax(model.query[1](fusion_emb), -1) * text_emb
    agg_image = model.prefer[0](content).sigmoid() * agg_image
    agg_text = model.prefer[1](content).sigmoid() * agg_text
    fusion_emb = model.prefer[2](content).sigmoid() * fusion_emb
    side = torch.stack([agg_image, agg_text, fusion_emb]).mean(0)
    final = content + side
    u, i, j = final[batch.users], final[nu + batch.pos_items], final[nu + batch.neg_items]
    mf = -F.logsigmoid((u * i).sum(1) - (u * j).sum(1)).mean()
    reg = ((u ** 2).sum() / 2 + (i ** 2).sum() / 2 + (j ** 2).sum() / 2) / model.hp["batch_size"]

    def nce(v1, v2):
        v1, v2 = F.normalize(v1, dim=1), F.normalize(v2, dim=1)
        pos = torch.exp((v1 * v2).sum(-1) / 0.2)
        ttl = torch.exp(v1 @ v2.T / 0.2).sum(1)
        return -torch.log(pos / ttl).mean()

    cl = nce(side[nu + batch.pos_items], content[nu + batch.pos_items]) + nce(side[batch.users], content[batch.users])
    return mf + model.l_w * reg + model.cl_loss * cl


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
    batch = triplet_batch(ds)
    first = model.loss(batch).item()
    train_steps(model, batch, 25)
    assert model.loss(batch).item() < first
    for mod in (model.proj[0], model.gate[2], model.prefer[2], model.query[1][0]):
        assert mod.weight.grad.abs().sum() > 0
    assert model.filters[0].weight.grad.abs().sum() > 0 and model.fusion_filter.weight.grad.abs().sum() > 0
    assert model.lr_multiplier(50) == pytest.approx(0.96)


def test_score_pairs_and_branches_agree():
    ds = random_dataset()
    model = _model(ds, dropout=0.5)
    train_steps(model, triplet_batch(ds), steps=3)
    users, items, full, cached, pairs = scoring_views(model, ds)
    assert torch.allclose(full, cached)
    assert torch.allclose(pairs, full.gather(1, items.view(-1, 1)).squeeze(1), atol=1e-5)  # no dropout
    emb = model.modality_embeddings(users, items)
    assert set(emb) == {"id", "visual", "textual"}
    assert torch.allclose(sum(model.modality_scores(users, items).values()), pairs, atol=1e-5)


def test_replaced_features_reach_the_score_not_the_graphs():
    ds = random_dataset()
    model = _model(ds)
    graphs = [g.to_dense().clone() for g in model.item_graphs]
    stored = model.feature("textual").clone()
    users, items = torch.arange(5), torch.arange(5)
    delta = torch.zeros_like(stored, requires_grad=True)
    with model.features_replaced({"textual": stored + delta}):
        model.score_pairs(users, items).sum().backward()
    assert delta.grad.abs().sum() > 0
    with torch.no_grad(), model.features_replaced({"textual": stored * 3 + 1}):
        attacked = model.score_pairs(users, items)
    assert not torch.allclose(attacked, model.score_pairs(users, items))
    assert all(torch.equal(g.to_dense(), old) for g, old in zip(model.item_graphs, graphs))


def test_deterministic_and_any_number_of_modalities():
    ds = random_dataset()
    batch = triplet_batch(ds)
    a, b = _model(ds, seed=3, dropout=0.2), _model(ds, seed=3, dropout=0.2)
    assert torch.equal(train_steps(a, batch, 4), train_steps(b, batch, 4))
    with torch.no_grad():
        assert torch.equal(a.score(torch.arange(5)), b.score(torch.arange(5)))
    one = _model(ds, modalities=["textual"])
    assert len(one.item_graphs) == 2 and torch.isfinite(one.loss(batch))
    three = _model(random_dataset(modalities=("visual", "textual", "audio"), dims=(8, 6, 5)))
    users, items = torch.arange(6), torch.arange(6)
    with torch.no_grad():
        assert torch.allclose(sum(three.modality_scores(users, items).values()), three.score_pairs(users, items),
                              atol=1e-5)


def test_one_epoch_through_the_trainer():
    fit, test = fit_through_trainer(_model(structured_dataset(), batch_size=128), structured_dataset(),
                                    batch_size=128)
    assert fit.epochs_run == 1 and 0.0 <= test.values[10]["Recall"] <= 1.0
