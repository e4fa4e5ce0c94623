"""Modality Balancing's shared passes (one clean pass that is also PGD's first step, frozen parameters in
PGD, the exact fast embedders of LightGCNM and GRCN) give the same loss values and gradients as one full
pass per use (``share_passes=False``), to 1e-6."""
import pytest
import torch

from elliot.config.params import coerce_params, expand_grid
from elliot.recommender.base import TripletBatch
from elliot.recommender.registry import available_models
from elliot.training.defenses.modality_balancing import (ModalityBalancing, embedder_for, generic_embedder)
from tests.helpers import random_dataset
from tests.robustness_helpers import make_model

DS = random_dataset(n_users=40, n_items=50, density=0.2, seed=4, dims=(8, 6))
GRAPH = {"LightGCNM": {"factors": 8, "n_layers": 2}, "GRCN": {"factors": 8, "dim_latent": 8}}


def _graph_model(name, seed=0, **hp):
    cls = available_models()[f"external.{name}"]
    raw = {**GRAPH[name], **hp, "epochs": 1, "batch_size": 64, "seed": seed}
    torch.manual_seed(seed)
    return cls(DS, expand_grid(coerce_params(cls.declared_params(), raw, name))[0], torch.device("cpu"))


def _batch(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TripletBatch(users=torch.randint(0, DS.n_users, (n,), generator=g),
                        pos_items=torch.randint(0, DS.n_items, (n,), generator=g),
                        neg_items=torch.randint(0, DS.n_items, (n,), generator=g))


def _loss_and_grads(model, share, roles="fixed", steps=3, batches=2):
    mb = ModalityBalancing("visual", "textual", lam=1.0, N=12, pgd_steps=steps, distill_eps=0.3,
                           pgd_step_size=0.1, seed=0, roles=roles, share_passes=share)
    out = []
    for k in range(batches):
        model.zero_grad(set_to_none=True)
        loss = mb.extra_loss(model, _batch(seed=k), 0)
        loss.backward()
        out.append((float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters()
                                           if p.grad is not None}))
    assert all(p.requires_grad for p in model.parameters())  # frozen only inside PGD
    return out


def _assert_same(a, b):
    for (la, ga), (lb, gb) in zip(a, b):
        assert la == pytest.approx(lb, abs=1e-6)
        assert set(ga) == set(gb)
        for name in ga:
            err = float((ga[name] - gb[name]).abs().max())
            assert err <= 1e-6 * max(1.0, float(gb[name].abs().max())), (name, err)


@pytest.mark.parametrize("roles", ["fixed", "alternate", "both"])
def test_shared_passes_same_loss_and_gradients_vbpr_like(roles):
    model = make_model(DS, seed=0)
    _assert_same(_loss_and_grads(model, False, roles), _loss_and_grads(model, True, roles))


@pytest.mark.parametrize("name, hp", [("LightGCNM", {}), ("LightGCNM", {"aggregation": "concat"}),
                                      ("LightGCNM", {"aggregation": "sum", "normalize": False}),
                                      ("GRCN", {}), ("GRCN", {"has_act": True, "num_routing": 1})])
def test_fast_embedders_same_loss_and_gradients(name, hp):
    model = _graph_model(name, **hp)
    assert embedder_for(model) is type(model).distillation_embedder  # the model's exact fast path is used
    _assert_same(_loss_and_grads(model, False), _loss_and_grads(model, True))
    _assert_same(_loss_and_grads(model, False, roles="both", steps=1),
                 _loss_and_grads(model, True, roles="both", steps=1))


@pytest.mark.parametrize("name", ["LightGCNM", "GRCN"])
def test_fast_embedder_matches_the_generic_pass(name):
    model = _graph_model(name)
    b = _batch()
    users, pos = b.users[:10], b.pos_items[:10]
    clean = model.modality_embeddings(users, pos)["visual"][1]
    uniq = torch.unique(pos)
    delta = 0.2 * torch.randn(len(uniq), model.feature_dim("visual"), generator=torch.Generator().manual_seed(1))
    leaves = [delta.clone().requires_grad_(True) for _ in range(2)]
    fast = embedder_for(model)(model, "visual", users, pos, clean)(leaves[0])
    slow = generic_embedder(model, "visual", users, pos, clean)(leaves[1])
    assert torch.allclose(fast, slow, atol=1e-6)
    w = torch.randn(fast.shape, generator=torch.Generator().manual_seed(2))
    params = [p for p in model.parameters()]
    g_fast = torch.autograd.grad((fast * w).sum(), [leaves[0], *params], allow_unused=True)
    g_slow = torch.autograd.grad((slow * w).sum(), [leaves[1], *params], allow_unused=True)
    for a, c, like in zip(g_fast, g_slow, [delta, *params]):  # None = no path = a zero gradient
        a, c = (torch.zeros_like(like) if t is None else t for t in (a, c))
        assert torch.allclose(a, c, atol=1e-6)


def test_roles_alternate_swaps_every_other_batch():
    mb = ModalityBalancing("visual", "textual", roles="alternate")
    seen = []
    for _ in range(3):
        seen.append(mb.pairs())
        mb._batches += 1
    assert seen == [[("visual", "textual")], [("textual", "visual")], [("visual", "textual")]]
    assert ModalityBalancing("visual", "textual", roles="both").pairs() == [("visual", "textual"),
                                                                            ("textual", "visual")]


def test_fast_embedder_only_for_subclasses_that_keep_the_branches():
    model = _graph_model("LightGCNM")
    keeps = type("Keeps", (type(model),), {})
    changes = type("Changes", (type(model),), {"modality_embeddings": lambda self, u, i: {}})
    assert embedder_for(object.__new__(keeps)) is type(model).distillation_embedder
    assert embedder_for(object.__new__(changes)) is generic_embedder
    assert embedder_for(make_model(DS, seed=0)) is generic_embedder  # no fast path: one full pass per use
