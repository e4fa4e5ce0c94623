import numpy as np
import pytest
import torch
from torch.nn import functional as F

from elliot.dataset.samplers import BPRSampler, UserChunkSampler
from elliot.recommender.diffusion import GaussianDiffusion, RowDenoiser, dense_rows
from external.models.diffmm import DiffMM
from tests.helpers import (assert_branches_sum_to_score, assert_deterministic_training, assert_one_trainer_epoch,
                           assert_same_loss_and_grads, assert_views_agree, dense_graph, dense_sym_norm, model_factory,
                           random_dataset, replaced_feature_grad, scores_with_replaced_feature, single_thread_fixture,
                           structured_dataset, train_steps, triplet_batch)


_one_thread = single_thread_fixture()
_model = model_factory(DiffMM, seed_param=True, factors=8, dims=[12], batch_size=64, diff_batch_size=10)


def _authors_schedule(s=0.1, lo=1e-4, hi=0.02, steps=5):
    """HKUDS/DiffMM GaussianDiffusion.get_betas + calculate_for_diffusion, written out."""
    var = np.linspace(s * lo, s * hi, steps)
    bar = 1 - var
    betas = [1 - bar[0]] + [min(1 - bar[i] / bar[i - 1], 0.999) for i in range(1, steps)]
    betas = torch.tensor(betas, dtype=torch.float64)
    betas[0] = 1e-4
    acp = torch.cumprod(1 - betas, 0)
    prev = torch.cat([torch.ones(1, dtype=torch.float64), acp[:-1]])
    return betas, acp, prev


def test_schedule_q_sample_and_elbo_term_match_the_code():
    betas, acp, prev = _authors_schedule()
    d = GaussianDiffusion(5, 0.1, 1e-4, 0.02)
    assert torch.allclose(d.alphas_bar, acp)
    assert torch.allclose(d.coef_x0, betas * prev.sqrt() / (1 - acp))
    assert torch.allclose(d.coef_xt, (1 - prev) * (1 - betas).sqrt() / (1 - acp))
    x0 = (torch.rand(6, 9) < 0.3).float()
    t, noise = torch.tensor([0, 1, 2, 3, 4, 2]), torch.randn(6, 9)
    expect = acp[t].float().sqrt().view(-1, 1) * x0 + (1 - acp[t]).float().sqrt().view(-1, 1) * noise
    assert torch.allclose(d.q_sample(x0, t, noise), expect)
    # the ELBO term: t, ε and the dropout mask drawn from the generator in that order
    model = RowDenoiser(9, [7], 4)
    pred, term = d.training_loss(model, x0, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    t = torch.randint(0, 5, (6,), generator=g)
    x_t = d.q_sample(x0, t, torch.randn(6, 9, generator=g))
    ref = model(x_t, t, drop_gen=g)
    snr = acp / (1 - acp)
    w = torch.where(t == 0, torch.ones(6, dtype=torch.float64), snr[t - 1] - snr[t]).float()
    assert torch.allclose(pred, ref) and torch.allclose(term, w * ((x0 - ref) ** 2).mean(1))


def test_reverse_chain_and_denoiser():
    d = GaussianDiffusion(5, 0.1, 1e-4, 0.02)
    model = RowDenoiser(9, [7, 5], 4)  # in 9+4 -> 5 -> 7, out 7 -> 5 -> 9
    assert [l.in_features for l in model.in_layers] == [13, 5] and model.out_layers[-1].out_features == 9
    x0 = (torch.rand(3, 9) < 0.3).float()
    x = x0
    for step in range(4, -1, -1):
        t = torch.full((3,), step)
        x = d.coef_x0[step].float() * model(x, t) + d.coef_xt[step].float() * x
    assert torch.allclose(d.denoise(model, x0), x, atol=1e-6)
    assert d.coef_x0[0] == pytest.approx(1.0) and d.coef_xt[0] == pytest.approx(0.0)
    assert torch.equal(model(x0, torch.zeros(3, dtype=torch.long)), model(x0, torch.zeros(3, dtype=torch.long)))


def test_dense_rows_and_user_chunks():
    ds = random_dataset()
    train = ds.train.tocsr()
    rows = torch.tensor([3, 0, 29, 3])
    got = dense_rows(torch.as_tensor(train.indptr, dtype=torch.long), torch.as_tensor(train.indices, dtype=torch.long),
                     rows, ds.n_items)
    assert torch.equal(got, torch.as_tensor((train[rows.numpy()] > 0).toarray(), dtype=torch.float32))
    base = BPRSampler(ds.train, 0)
    for chunk, batch in ((7, 8), (2, 64)):  # fewer chunks than batches, and more
        sampler = UserChunkSampler(BPRSampler(ds.train, 0), ds.n_users, chunk, seed=1)
        batches = list(sampler.epoch(batch))
        assert len(batches) == base.n_batches(batch)
        users = np.concatenate([b[3] for b in batches])
        assert sorted(users.tolist()) == list(range(ds.n_users))
        n_chunks, n_batches = -(-ds.n_users // chunk), len(batches)
        expect = np.zeros(n_batches, dtype=int)  # chunk j (of sizes chunk, ..., the rest) on batch ⌊j·B/C⌋
        for j in range(n_chunks):
            expect[j * n_batches // n_chunks] += min(chunk, ds.n_users - j * chunk)
        assert [len(b[3]) for b in batches] == expect.tolist()


def _reference_loss(model, batch, ds):
    """The code's forward_MM / forward_cl_MM / contrastLoss (cl_method 1) and the BPR + reg terms, dense."""
    nu = model.n_users
    adj = dense_sym_norm(dense_graph(ds.train, self_loops=True))
    graphs = [g.to_dense() for g in model._generated_graphs()]
    user, item = model.embeddings[:nu], model.embeddings[nu:]
    feats = [F.normalize(lin(model.feature(m))) for m, lin in zip(model.modalities, model.trans_layers)]
    weight = torch.softmax(model.modal_weight, 0)
    embeds_modal = 0
    for w, f, g in zip(weight, feats, graphs):
        e = adj @ torch.cat([user, f])
        e = e + adj @ torch.cat([e[:nu], item])
        e = e + model.ris_adj_lambda * (g @ torch.cat([user, item]))
        embeds_modal = embeds_modal + w * e
    embeds = embeds_modal + adj @ embeds_modal + model.ris_lambda * F.normalize(embeds_modal)
    usr, itm = embeds[:nu], embeds[nu:]
    diff = (usr[batch.users] * itm[batch.pos_items]).sum(-1) - (usr[batch.users] * itm[batch.neg_items]).sum(-1)
    loss = -diff.sigmoid().log().sum() / model.hp["batch_size"] + model.l_w * (user.norm() ** 2 + item.norm() ** 2)

    def contrast(e1, e2, nodes):
        e1, e2 = F.normalize(e1, p=2), F.normalize(e2, p=2)
        nume = torch.exp((e1[nodes] * e2[nodes]).sum(-1) / model.temp)
        deno = torch.exp(e1[nodes] @ e2.T / model.temp).sum(-1)
        return -torch.log(nume / deno).mean()

    for f, g in zip(feats, graphs):
        view = g @ torch.cat([user, f])
        view = view + adj @ view
        loss = loss + model.ssl_reg * (contrast(usr, view[:nu], batch.users) + contrast(itm, view[nu:], batch.pos_items))
    return loss


@pytest.mark.parametrize("hp", [{}, {"keep_rate": 1.0, "ris_lambda": 0.0, "temp": 0.2, "l_w": 0.01}])
def test_recommender_loss_and_gradients_match_dense_reference(hp):
    ds = random_dataset()
    model = _model(ds, **hp)
    batch = triplet_batch(ds)  # no epoch_users: the recommender terms only
    assert_same_loss_and_grads(model, batch, model.loss, lambda b: _reference_loss(model, b, ds), atol=1e-6)


def test_generated_graph_is_topk_of_the_reverse_chain():
    ds = random_dataset()
    model = _model(ds, keep_rate=1.0, rebuild_k=2)
    model.rebuild_graphs(0)
    x0 = torch.as_tensor((ds.train > 0).toarray(), dtype=torch.float32)
    top = torch.topk(model.diffusion.denoise(model.denoisers[1], x0), 2, dim=1).indices
    assert torch.equal(model.generated[1], top)
    nu, n = ds.n_users, ds.n_users + ds.n_items
    a = torch.eye(n)
    a[torch.arange(nu).repeat_interleave(2), top.reshape(-1) + nu] = 1
    a[top.reshape(-1) + nu, torch.arange(nu).repeat_interleave(2)] = 1
    assert torch.allclose(model._generated_graphs()[1].to_dense(), dense_sym_norm(a), atol=1e-6)


def test_diffusion_term_trains_only_the_denoisers_and_matches_reference():
    ds = random_dataset()
    model = _model(ds)
    users = torch.tensor([0, 5, 7, 11])
    model._gen.manual_seed(3)
    model.zero_grad()
    loss = model.diffusion_loss(users, model._features())
    loss.backward()
    grads = {k for k, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert grads and all(k.startswith("denoisers.") for k in grads)
    model._gen.manual_seed(3)
    x0 = torch.as_tensor((ds.train[users.numpy()] > 0).toarray(), dtype=torch.float32)
    ref = 0
    for denoiser, f in zip(model.denoisers, model._features()):
        pred, term = model.diffusion.training_loss(denoiser, x0, model._gen)
        gc = ((pred @ f.detach() - x0 @ model.embeddings[ds.n_users:].detach()) ** 2).mean(1)
        ref = ref + term.mean() + model.e_loss * gc.mean()
    assert torch.allclose(loss, ref)
    batch = triplet_batch(ds)  # the recommender terms give the denoisers no gradient
    model.zero_grad()
    model.loss(batch).backward()
    assert all(p.grad is None for p in model.denoisers.parameters())


def test_score_pairs_branches_and_features():
    ds = random_dataset()
    model = _model(ds)
    train_steps(model, triplet_batch(ds), steps=2)
    users, items, _, pairs = assert_views_agree(model, ds)
    assert_branches_sum_to_score(model, users, items, pairs, {"id", "visual", "textual"})
    assert replaced_feature_grad(model, lambda: model.score_pairs(users[:5], items[:5])).abs().sum() > 0
    attacked, clean = scores_with_replaced_feature(model, lambda: model.score_pairs(users, items))
    assert not torch.allclose(attacked, pairs) and torch.allclose(clean, pairs)


def test_state_restore_brings_back_the_graphs_and_determinism():
    ds = random_dataset()
    batch = triplet_batch(ds)
    batch["epoch_users"] = torch.arange(12)
    a, _ = assert_deterministic_training(_model, ds, batch, steps=3)
    state = {k: v.clone() for k, v in a.state_dict().items()}
    with torch.no_grad():
        before = a.score(torch.arange(6))
        a.on_epoch_start(7)  # new graphs (new denoisers' output, new dropout mask)
        assert not torch.equal(a.score(torch.arange(6)), before)
        a.load_state_dict(state)
        assert torch.equal(a.score(torch.arange(6)), before)
    one = _model(ds, modalities=["textual"], cl_method=0)
    assert torch.isfinite(one.loss(batch)) and set(one.modality_embeddings(torch.arange(3), torch.arange(3))) == \
        {"id", "textual"}


def test_one_epoch_through_the_trainer():
    ds = structured_dataset()
    model = _model(ds, batch_size=128, diff_batch_size=50)
    assert_one_trainer_epoch(model, ds, batch_size=128)
    assert int(model.graph_epoch) == 0 and bool((model.generated >= 0).all())
