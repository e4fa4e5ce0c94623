"""Modality Balancing (Shang et al., ACM MM 2023) as a training add-on for any multimodal model.

Per batch, ``N`` of the batch's BPR triples (u, i, j) are drawn (seeded, without replacement) and

1. an adversarial item embedding of the *sensitive* modality v is distilled: PGD in the raw
   feature space of v, ``pgd_steps`` sign steps of size ``pgd_step_size`` projected onto the L∞
   ball of radius ``distill_eps`` around x_i^v, minimising ||e_i^v(x_i^v + δ) − e_j^v||² (the
   positive's v-embedding is pushed toward the negative's; e_j^v is fixed), gradients w.r.t. δ only;
   e_{i,adv}^v = e_i^v(x_i^v + δ*) is then recomputed with gradients to the model's parameters;
2. s_margin^t = <e_u^t, e_i^t> − <e_u^t, e_j^t>       (the robust modality t)
   s_margin^v = <e_u^v, e_i^v> − <e_u^v, e_{i,adv}^v> (the sensitive modality v)
   L_balance  = mean over the N triples of max(s_margin^v − s_margin^t, 0)
3. ``lambda`` · L_balance is added to the model's loss (L_BPR + its regularisers).

e^m are the model's per-modality branch embeddings ``modality_embeddings(users, items)[m]``
(the hooks), so the defense works unchanged for VBPR (``fusion: per_modality``), LightGCNM, MMGCN,
GRCN, SLMRec, LATTICE and any model exposing per-modality branches.  For graph models the
adversarial features of the sampled positives are put into the full feature matrix
(``features_replaced``) and propagate like any feature; e_u^v is taken from the clean pass.

``roles`` (an extension, default ``fixed`` = the paper): ``alternate`` swaps the two modalities'
roles on every other batch (batch 0: v sensitive, t robust; batch 1: t sensitive, v robust; ...),
``both`` adds both directions' L_balance on every batch (twice the distillation cost), so that each
modality is distilled against the other in turn.

Cost.  Through the hooks alone, a batch costs pgd_steps + 2 full ``modality_embeddings`` passes (for a
graph backbone each propagates every branch over the whole graph).  ``share_passes`` (default; same
losses and gradients to 1e-6, ``tests/test_mb_cost.py``) shares what is identical within a step: one
clean pass for every (sensitive, robust) pair; the PGD passes run with the parameters frozen (they
need gradients w.r.t. δ only); and the distillation / adversarial passes go through an exact fast
*embedder* δ -> e_i^v when the model has one (:func:`embedder_for`: its ``distillation_embedder``
method - LightGCNM's uses the linearity of its propagation, GRCN's runs modality v's refining layer
alone); without one the clean pass is also PGD's first step.  Measured in docs/robustness.md.

Defaults (the defense block of the authors' MMRec integration): lambda 0.01, N 20, distill_eps 1.0
(absolute, raw-feature units), pgd_steps 10, pgd_step_size 0.1.  PGD has no random start, and the
triple sampling uses a private generator: switching the defense on never changes the global RNG
stream the rest of training uses, and ``enable: false`` builds no add-on at all (bit-identical).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, List, Optional, Tuple

import torch
from torch import Tensor

from elliot.errors import ConfigError
from elliot.recommender.base import unique_index
from elliot.recommender.multimodal import model_branches
from elliot.training.addons import TrainingAddon

MB_DEFAULTS = {"sensitive_modality": "visual", "robust_modality": "", "lambda": 0.01, "N": 20,
               "distill_eps": 1.0, "pgd_steps": 10, "pgd_step_size": 0.1, "roles": "fixed"}
#: ``roles``: which (sensitive, robust) pairs are balanced
MB_ROLES = ("fixed", "alternate", "both")


def resolve_modalities(model, sensitive: str, robust: str, where: str) -> tuple:
    """Check (and default) the sensitive / robust modalities against the model's branches."""
    branches = [b for b in model_branches(model) if b != "id"]
    if not branches:
        raise ConfigError(f"{where}: model {model.name} exposes no per-modality branches "
                          "(modality_embeddings is empty); Modality Balancing needs them")
    if sensitive not in branches:
        hint = ("; with VBPR set `fusion: per_modality`" if "multimodal" in branches else "")
        raise ConfigError(f"{where}.sensitive_modality: '{sensitive}' is not a branch of {model.name} "
                          f"(branches: {', '.join(branches)}){hint}")
    if not robust:
        others = [b for b in branches if b != sensitive]
        if not others:
            raise ConfigError(f"{where}.robust_modality: {model.name} has no modality branch other than "
                              f"'{sensitive}'")
        robust = others[0]
    if robust not in branches or robust == sensitive:
        raise ConfigError(f"{where}.robust_modality: '{robust}' must be a branch of {model.name} other than "
                          f"the sensitive one (branches: {', '.join(branches)})")
    return sensitive, robust


class ModalityBalancing(TrainingAddon):
    """L_BPR + λ · L_balance; see the module docstring."""

    name = "modality_balancing"

    def __init__(self, sensitive_modality: str, robust_modality: str, lam: float = 0.01, N: int = 20,
                 distill_eps: float = 1.0, pgd_steps: int = 10, pgd_step_size: float = 0.1, seed: int = 42,
                 roles: str = "fixed", share_passes: bool = True):
        if roles not in MB_ROLES:
            raise ConfigError(f"modality_balancing.roles: {roles!r} is not one of {', '.join(MB_ROLES)}")
        self.sensitive, self.robust = sensitive_modality, robust_modality
        self.roles = roles
        self.share_passes = bool(share_passes)
        self._batches = 0
        self.lam, self.N = float(lam), int(N)
        self.eps, self.steps, self.step_size = float(distill_eps), int(pgd_steps), float(pgd_step_size)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.last_loss: Optional[Tensor] = None  # detached; no host sync in the training loop

    def sample(self, batch_size: int, device) -> Tensor:
        n = min(self.N, batch_size)
        return torch.randperm(batch_size, generator=self.generator)[:n].to(device)

    def distill(self, model, users: Tensor, pos: Tensor, neg_item_emb: Tensor, modality: Optional[str] = None,
                first_grad: Optional[Tensor] = None, embed: Optional[Embedder] = None) -> Tensor:
        """δ* by PGD-L∞ on the sensitive modality's raw features; returns the replacement feature matrix
        x^v + δ* (no gradient to anything).  ``modality`` defaults to the sensitive one; ``first_grad`` /
        ``embed``: see :meth:`pgd`."""
        v = modality or self.sensitive
        x = model.feature(v).detach()
        uniq, _ = unique_index(pos, x.shape[0])
        return x.index_add(0, uniq, self.pgd(model, users, pos, neg_item_emb, v, first_grad, embed))

    def pgd(self, model, users: Tensor, pos: Tensor, neg_item_emb: Tensor, modality: str,
            first_grad: Optional[Tensor] = None, embed: Optional[Embedder] = None) -> Tensor:
        """δ* (n_unique_pos, d_v), rows in ``unique_index(pos)`` order.  ``first_grad``: the objective's
        gradient at δ = 0 when the caller has it (PGD then starts at its second step).  ``embed``: δ ->
        e_i^v(x^v + δ) (default :func:`generic_embedder`).  With ``share_passes`` the PGD passes run with
        the model's parameters frozen (they need no parameter gradient)."""
        x = model.feature(modality).detach()
        uniq, _ = unique_index(pos, x.shape[0])
        embed = embed or generic_embedder(model, modality, users, pos, None)
        delta = torch.zeros(len(uniq), x.shape[1], device=x.device, dtype=x.dtype)
        done = 0
        if first_grad is not None and self.steps > 0:
            delta, done = self._step(delta, first_grad), 1
        with frozen_parameters(model, self.share_passes):
            for _ in range(done, self.steps):
                leaf = delta.clone().requires_grad_(True)
                with torch.enable_grad():
                    objective = (embed(leaf) - neg_item_emb).pow(2).sum()
                    (grad,) = torch.autograd.grad(objective, leaf)
                delta = self._step(delta, grad)
        return delta

    def _step(self, delta: Tensor, grad: Tensor) -> Tensor:
        return (delta - self.step_size * grad.sign()).clamp(-self.eps, self.eps)

    def pairs(self) -> List[Tuple[str, str]]:
        """The (sensitive, robust) pairs balanced on the current batch (``roles``)."""
        forward, backward = (self.sensitive, self.robust), (self.robust, self.sensitive)
        if self.roles == "both":
            return [forward, backward]
        if self.roles == "alternate" and self._batches % 2 == 1:
            return [backward]
        return [forward]

    def balance_loss(self, model, users: Tensor, pos: Tensor, neg: Tensor,
                     pairs: Optional[List[Tuple[str, str]]] = None) -> Tensor:
        """Σ over ``pairs`` (default: the configured (sensitive, robust) pair) of L_balance.

        ``share_passes`` (default; the same values and gradients, fewer passes - the *cost* note of the
        module docstring): one clean pass serves every pair, the PGD passes freeze the parameters, and the
        distillation and adversarial passes use the model's exact fast embedder when it has one
        (:func:`embedder_for`); without one, the clean pass is also PGD's first step (it reads the
        sensitive features as x^v + δ_0 with a zero leaf δ_0, the same values).  ``share_passes=False``: one full pass per use, as first written (the
        reference of the tests and of ``benchmarks/robustness_mb_cost.py``)."""
        pairs = pairs or [(self.sensitive, self.robust)]
        if not self.share_passes:
            return sum((self._reference_loss(model, users, pos, neg, v, t) for v, t in pairs[1:]),
                       self._reference_loss(model, users, pos, neg, *pairs[0]))
        n = len(users)
        make_embedder = embedder_for(model)
        # without a fast embedder, the clean pass doubles as PGD's first step (a fast one makes it cheaper
        # to take that step through the embedder than to back-propagate through the whole clean pass)
        first_from_clean = make_embedder is generic_embedder and self.steps > 0
        sensitive = list(dict.fromkeys(v for v, _ in pairs)) if first_from_clean else []
        uniq, _ = unique_index(pos, model.n_items)
        leaves = {v: torch.zeros(len(uniq), model.feature_dim(v), device=pos.device, dtype=model.feature(v).dtype,
                                 requires_grad=True) for v in sensitive}
        replaced = {v: model.feature(v).detach().index_add(0, uniq, leaves[v]) for v in sensitive}
        with model.features_replaced(replaced):
            clean = model.modality_embeddings(torch.cat([users, users]), torch.cat([pos, neg]))
        total = None
        for v, t in pairs:
            eu_t, ei_t = clean[t]
            eu_v, ei_v = clean[v]
            margin_t = (eu_t[:n] * ei_t[:n]).sum(-1) - (eu_t[n:] * ei_t[n:]).sum(-1)
            target = ei_v[n:].detach()
            first = None
            if first_from_clean:
                (first,) = torch.autograd.grad((ei_v[:n] - target).pow(2).sum(), leaves[v], retain_graph=True)
            embed = make_embedder(model, v, users, pos, ei_v[:n])
            ei_adv = embed(self.pgd(model, users, pos, target, v, first, embed))
            margin_v = (eu_v[:n] * ei_v[:n]).sum(-1) - (eu_v[:n] * ei_adv).sum(-1)
            loss = torch.relu(margin_v - margin_t).mean()
            total = loss if total is None else total + loss
        return total

    def _reference_loss(self, model, users: Tensor, pos: Tensor, neg: Tensor, v: str, t: str) -> Tensor:
        """L_balance of one pair with one full pass per use (``share_passes=False``)."""
        n = len(users)
        clean = model.modality_embeddings(torch.cat([users, users]), torch.cat([pos, neg]))
        eu_t, ei_t = clean[t]
        eu_v, ei_v = clean[v]
        margin_t = (eu_t[:n] * ei_t[:n]).sum(-1) - (eu_t[n:] * ei_t[n:]).sum(-1)
        adv_features = self.distill(model, users, pos, ei_v[n:].detach(), modality=v)
        with model.features_replaced({v: adv_features}):
            _, ei_adv = model.modality_embeddings(users, pos)[v]
        margin_v = (eu_v[:n] * ei_v[:n]).sum(-1) - (eu_v[:n] * ei_adv).sum(-1)
        return torch.relu(margin_v - margin_t).mean()

    def extra_loss(self, model, batch, epoch: int) -> Optional[Tensor]:
        if self.lam == 0 or self.N <= 0 or len(batch.users) == 0:
            return None
        idx = self.sample(len(batch.users), batch.users.device)
        pairs = self.pairs()
        self._batches += 1
        loss = self.balance_loss(model, batch.users[idx], batch.pos_items[idx], batch.neg_items[idx], pairs)
        self.last_loss = loss.detach()
        return self.lam * loss


@contextmanager
def frozen_parameters(model, enable: bool = True) -> Iterator[None]:
    """``requires_grad`` off for every parameter of ``model`` inside the block (restored afterwards):
    passes that differentiate w.r.t. inputs only then record and run no parameter-gradient work."""
    params = [p for p in model.parameters() if p.requires_grad] if enable else []
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


# ---- distillation embedders -------------------------------------------------------------------------
#: ``embedder(model, modality, users, items, clean_item_emb) -> embed``, where ``embed(δ)`` is the item side
#: e_i of branch ``modality`` for the aligned pairs (users, items) when the features of the distinct
#: ``items`` (``unique_index`` order) are x^m + δ: exactly ``modality_embeddings(users, items)[modality][1]``
#: inside ``features_replaced({modality: x^m.index_add(0, uniq, δ)})``, with gradients to δ and to the
#: parameters.  ``clean_item_emb``: that value at δ = 0 from the caller's clean pass (with its graph).
Embedder = Callable[[Tensor], Tensor]


def generic_embedder(model, modality: str, users: Tensor, items: Tensor, clean_item_emb) -> Embedder:
    """One full ``modality_embeddings`` pass per call (any model)."""
    x = model.feature(modality).detach()
    uniq, _ = unique_index(items, x.shape[0])

    def embed(delta: Tensor) -> Tensor:
        with model.features_replaced({modality: x.index_add(0, uniq, delta)}):
            return model.modality_embeddings(users, items)[modality][1]

    return embed


def embedder_for(model) -> Callable[..., Embedder]:
    """The model's exact fast embedder, its ``distillation_embedder(modality, users, items, clean_item_emb)``
    method (equal to :func:`generic_embedder` in values and gradients), when the model keeps the
    ``modality_embeddings`` of the class that defines it; else :func:`generic_embedder`."""
    cls = type(model)
    for klass in cls.__mro__:
        if "distillation_embedder" in vars(klass):
            if cls.modality_embeddings is klass.modality_embeddings:
                return klass.distillation_embedder
            break
    return generic_embedder
