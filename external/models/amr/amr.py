"""AMR: Adversarial Multimedia Recommendation (Tang, Du, He, Yuan, Tian, Chua, "Adversarial Training
Towards Robust Multimedia Recommender System", IEEE TKDE 2019; Elliot's ``AMR``).

Predictor (VBPR-style, paper Eq. 2 with one content vector per modality):

    s(u, i) = β_i + γ_u·γ_i + Σ_m [ θ_u^m · n(E_m (x_i^m + Δ_i^m)) + β'_m · (x_i^m + Δ_i^m) ]

(n = L2 normalisation when ``normalize``, identity otherwise - the paper's predictor; Δ = 0 except in
the adversarial term).  Objective (paper Eq. 8-9, APR on the features):

    L = L_BPR(Θ) + l_adv · L_BPR(Θ, Δ_adv) + regularisation,
    Δ_adv = argmax_{||Δ|| ≤ eps} L_BPR(Θ, Δ)   approximated by
      * ``attack: fgsm`` - the paper's fast gradient step (Eq. 10): Δ_i = eps · Γ_i / ||Γ_i||_2 with
        Γ = ∂L_BPR/∂Δ at Δ = 0, per item (as Elliot's ``build_perturbation``);
      * ``attack: msap`` - Elliot's multi-step MSAP (Anelli et al., FLAIRS 2021): ``nb_iter`` steps
        Δ ← clip(Δ + eps_iter · Γ/||Γ||_2, −eps, eps) (L2-normalised step, element-wise clip), eps_iter
        defaulting to 2.5 · eps / nb_iter.
    Δ_adv is treated as a constant (no gradient to it); the adversarial term trains every parameter.
    The adversarial term is on for the last ``adversarial_epochs`` epochs (Elliot's schedule:
    epoch index t >= epochs − adversarial_epochs; default epochs // 2, Elliot's default), switched on
    in ``on_epoch_start`` - before that the model is plain VBPR-BPR (the paper pre-trains VBPR).

``perturbation: catalogue`` (an extension) replaces the batch's Δ_adv by the evaluation attack's own
perturbation (:meth:`AMR.catalogue_deltas`): at the start of every adversarial epoch, the gradient of the
mean BPR loss of one triple per training interaction w.r.t. every item's features (all modalities
jointly, as ``elliot.evaluation.attacks``' FGSM-L2 / MSAP), scaled to the budget; the adversarial term
of each batch then reads the rows of its items (fixed for the epoch; one extra pass over the training
triples per adversarial epoch).  ``perturb`` still decides whether negatives get their Δ.

Which items are perturbed in training (``perturb``): ``positives`` (Elliot: only the positive item's
features of each triple get Δ) or ``both`` (the original AMR code: positives and negatives).  One Δ
per distinct item of the batch (an item occurring in several triples gets the gradient of all of
them), for every modality the model uses.  ``eps_relative: true`` scales the budget per item with the
conventions of ``elliot.evaluation.attacks`` (FGSM: ||Δ_i||_2 = eps·||x_i||; MSAP: element-wise clip
eps·||x_i||/sqrt(d), step eps_iter/eps times that) - raw-feature scales differ by an order of
magnitude between modalities (TikTok visual ≈ 33, audio ≈ 4.5); false (default) = Elliot's absolute
eps and eps_iter.

Regularisation as Elliot's AMR: [l_w (||γ_u||² + ||θ_u||² + ||γ_i||² + ||γ_j||²) + l_b (β_i² + β_j²) +
l_e (||E||² + ||β'||²)] / 2B with the mean BPR loss (Elliot sums the BPR loss over the batch: the same
objective up to the 1/B scale; it also divides the β_j penalty by 10 - here β_i and β_j alike).
Defaults: Elliot's (factors 200, factors_d 20, lr 1e-3, l_w 0.1, l_b 1e-3, l_e 0.1, eps 0.1,
l_adv 1e-3, nb_iter 1); init Glorot-uniform, β_i = 0 (Elliot).

Defects of Elliot's AMR not repeated: (1) its ``evaluate_perturbations`` computes a single-step
perturbation and discards it (the FGSM evaluation reuses the MSAP Δ of the last batch); (2) it
evaluates with ``np.empty`` perturbations for items the loop never sampled (uninitialised memory).
Here test-time perturbations come from ``elliot.evaluation.attacks`` over the whole catalogue
(items with zero gradient get Δ = 0): :meth:`AMR.perturbation_attacks` gives the attack list that
reproduces ``meta.eval_perturbations`` (FGSM and MSAP with the model's eps / eps_iter / nb_iter).

Hooks: features are read only through ``self.feature(m)``; ``modality_embeddings`` gives
``"id"``: ([γ_u, 1], [γ_i, β_i]) and per modality m: ([θ_u^m, 1], [n(E_m x_i^m), β'_m·x_i^m]); the
branch scores sum exactly to s(u, i).
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from elliot.config.params import Param
from elliot.dataset.dataset import Dataset
from elliot.recommender.base import TripletBatch, bpr_loss, l2_reg, unique_index, gather_rows
from elliot.recommender.multimodal import MultimodalRecommender


def _unit_rows(g: Tensor) -> Tensor:
    norm = g.norm(p=2, dim=1, keepdim=True)
    return torch.where(norm > 0, g / norm.clamp_min(1e-30), torch.zeros_like(g))


class AMR(MultimodalRecommender):
    """Adversarial Multimedia Recommendation (Tang et al., TKDE 2019); see the module docstring."""

    name = "AMR"
    params = (
        Param("factors", int, 200, "size of the collaborative factors γ (Elliot: 200)"),
        Param("factors_d", int, 20, "size of the content factors θ per modality (Elliot: 20)"),
        Param("lr", float, 1e-3, "Adam learning rate"),
        Param("l_w", float, 0.1, "L2 weight of γ_u, θ_u, γ_i, γ_j"),
        Param("l_b", float, 1e-3, "L2 weight of the item biases"),
        Param("l_e", float, 0.1, "L2 weight of the projections E and content biases β'"),
        Param("eps", float, 0.1, "adversarial budget (absolute, or a fraction of ||x_i|| with eps_relative)"),
        Param("l_adv", float, 1e-3, "weight of the adversarial BPR term"),
        Param("adversarial_epochs", int, -1, "adversarial training in the last N epochs (-1: epochs // 2)"),
        Param("eps_iter", float, 0.0, "MSAP step size (0: 2.5 * eps / nb_iter)"),
        Param("nb_iter", int, 1, "MSAP steps"),
        Param("attack", str, "fgsm", "training perturbation", choices=("fgsm", "msap")),
        Param("perturb", str, "positives", "items perturbed in training", choices=("positives", "both")),
        Param("eps_relative", bool, False, "eps / eps_iter relative to each item's feature norm"),
        Param("normalize", bool, False, "L2-normalise E_m x_i^m (true: as this repo's VBPR default)"),
        Param("perturbation", str, "batch", "Δ_adv from the batch's triples (the paper) or, 'catalogue', the "
              "evaluation attack's Δ over every training triple, once per adversarial epoch",
              choices=("batch", "catalogue")),
    )

    def __init__(self, dataset: Dataset, hp: dict, device: torch.device):
        super().__init__(dataset, hp, device)
        k, kd = int(self.factors), int(self.factors_d)
        glorot = lambda *shape: nn.init.xavier_uniform_(torch.empty(*shape))  # noqa: E731
        self.gamma_u = nn.Parameter(glorot(self.n_users, k))
        self.gamma_i = nn.Parameter(glorot(self.n_items, k))
        self.beta_i = nn.Parameter(torch.zeros(self.n_items))
        self.theta_u = nn.ParameterList([nn.Parameter(glorot(self.n_users, kd)) for _ in self.modalities])
        self.E = nn.ParameterList([nn.Parameter(glorot(self.feature_dim(m), kd)) for m in self.modalities])
        self.beta_f = nn.ParameterList([nn.Parameter(glorot(self.feature_dim(m), 1)) for m in self.modalities])
        epochs = int(self.hp.get("epochs", 0) or 0)
        adv = int(self.adversarial_epochs)
        self.n_adversarial = epochs // 2 if adv < 0 else adv
        self.adv_start = max(epochs - self.n_adversarial, 0) if self.n_adversarial > 0 else None
        self.eps_step = float(self.eps_iter) if self.eps_iter and self.eps_iter > 0 else 2.5 * self.eps / max(self.nb_iter, 1)
        self.adversarial = False
        self.last_adv_loss: Optional[Tensor] = None  # detached; no host sync in the training loop
        self._cache = None
        self._train_data = dataset  # the training triples of ``perturbation: catalogue``
        self._catalogue: Optional[List[Tensor]] = None  # Δ_adv of every item (n_items, d_m) per modality
        self.to(self.device)

    # ---- scores -------------------------------------------------------------------------------------
    def _content(self, b: int, x: Tensor) -> Tensor:
        """[n(E_b x), β'_b · x] for feature rows x: (n, factors_d + 1)."""
        proj = x @ self.E[b]
        if self.normalize:
            proj = F.normalize(proj, p=2, dim=1)
        return torch.cat([proj, x @ self.beta_f[b]], 1)

    def _rows(self, items: Tensor, deltas: Optional[List[Tensor]] = None) -> List[Tensor]:
        out = []
        for b, m in enumerate(self.modalities):
            x = self.feature(m).index_select(0, items)
            out.append(self._content(b, x if deltas is None else x + deltas[b]))
        return out

    def _pair_scores(self, users: Tensor, items: Tensor, content: List[Tensor]) -> Tensor:
        s = self.beta_i.index_select(0, items) + (self.gamma_u.index_select(0, users)
                                                  * self.gamma_i.index_select(0, items)).sum(-1)
        for b, c in enumerate(content):
            s = s + (self.theta_u[b].index_select(0, users) * c[:, :-1]).sum(-1) + c[:, -1]
        return s

    def score_pairs(self, users: Tensor, items: Tensor) -> Tensor:
        uniq, inv = unique_index(items, self.n_items)
        return self._pair_scores(users, items, [gather_rows(c, inv) for c in self._rows(uniq)])

    def modality_embeddings(self, users: Tensor, items: Tensor) -> Dict[str, Tuple[Tensor, Tensor]]:
        ones = torch.ones(len(users), 1, device=self.device)
        out = {"id": (torch.cat([gather_rows(self.gamma_u, users), ones], 1),
                      torch.cat([gather_rows(self.gamma_i, items), gather_rows(self.beta_i, items).unsqueeze(1)], 1))}
        for b, (m, c) in enumerate(zip(self.modalities, self._rows(items))):
            out[m] = (torch.cat([gather_rows(self.theta_u[b], users), ones], 1), c)
        return out

    def prepare_scoring(self) -> None:
        self._cache = [self._content(b, self.feature(m)) for b, m in enumerate(self.modalities)]

    def end_scoring(self) -> None:
        self._cache = None

    def score(self, users: Tensor) -> Tensor:
        content = self._cache if self._cache is not None else [self._content(b, self.feature(m))
                                                               for b, m in enumerate(self.modalities)]
        s = self.gamma_u[users] @ self.gamma_i.T + self.beta_i.unsqueeze(0)
        for b, c in enumerate(content):
            s = s + self.theta_u[b][users] @ c[:, :-1].T + c[:, -1].unsqueeze(0)
        return s

    # ---- training -----------------------------------------------------------------------------------
    def on_epoch_start(self, epoch: int) -> None:
        self.adversarial = self.adv_start is not None and epoch >= self.adv_start and self.l_adv > 0
        self._catalogue = None
        if self.adversarial and self.perturbation == "catalogue":
            self._catalogue = self.catalogue_deltas(seed=int(self.hp.get("seed", 42)) + epoch)

    def catalogue_deltas(self, seed: int) -> List[Tensor]:
        """``perturbation: catalogue``: Δ_adv for every item and modality as the evaluation attack builds it
        (:mod:`elliot.evaluation.attacks.perturb`): the gradient of the mean BPR loss of one triple per
        training interaction (uniform negatives drawn with ``seed``) w.r.t. all items' features jointly,
        then FGSM-L2 (``attack: fgsm``) or MSAP (L∞ clip, L2 steps, ``nb_iter`` steps), with the model's
        budget (``eps``, ``eps_relative``)."""
        from elliot.evaluation.attacks.perturb import FeatureAttack, fgsm, msap, sample_triples

        attack = FeatureAttack(self, self.modalities, sample_triples(self._train_data, None, seed))
        kind = "ratio" if self.eps_relative else "abs"
        if self.attack == "fgsm":
            deltas = fgsm(attack, kind, [float(self.eps)], "l2")[0]
        else:
            deltas = msap(attack, kind, float(self.eps), "linf", "l2", max(int(self.nb_iter), 1), self.eps_step)
        return [deltas[m].detach() for m in self.modalities]

    def _triple_scores(self, batch: TripletBatch, deltas: Optional[List[Tensor]], perturbed: Tensor,
                       inv_pos: Tensor, inv_neg: Tensor, uniq: Tensor) -> Tuple[Tensor, Tensor]:
        """Scores of positives and negatives with Δ on the rows of ``uniq`` where ``perturbed``."""
        clean_rows = self._rows(uniq)
        if deltas is None:
            rows_pos = rows_neg = clean_rows
        else:
            adv_rows = self._rows(uniq, deltas)
            rows_pos = adv_rows
            rows_neg = adv_rows if self.perturb == "both" else clean_rows
        pos = self._pair_scores(batch.users, batch.pos_items, [c.index_select(0, inv_pos) for c in rows_pos])
        neg = self._pair_scores(batch.users, batch.neg_items, [c.index_select(0, inv_neg) for c in rows_neg])
        return pos, neg

    def budget(self, items: Tensor) -> List[Tuple[Tensor, Tensor, Tensor]]:
        """Per modality, for ``items`` ((n, 1) tensors): the FGSM L2 radius, the MSAP element-wise clip
        and the MSAP step.  Absolute: eps, eps, eps_iter.  ``eps_relative`` (the conventions of
        ``elliot.evaluation.attacks``): eps·||x_i||, eps·||x_i||/sqrt(d), clip · eps_iter/eps."""
        out = []
        for m in self.modalities:
            if self.eps_relative:
                norm = self.feature(m)[items].norm(p=2, dim=1, keepdim=True)
                l2, linf = self.eps * norm, self.eps * norm / math.sqrt(self.feature_dim(m))
            else:
                l2 = linf = torch.full((len(items), 1), float(self.eps), device=self.device)
            out.append((l2, linf, linf * (self.eps_step / self.eps) if self.eps > 0 else linf * 0))
        return out

    def adversarial_deltas(self, batch: TripletBatch) -> Tuple[List[Tensor], Tensor, Tensor, Tensor]:
        """Δ_adv for the batch's distinct items (FGSM or MSAP); no gradient reaches the parameters."""
        n = len(batch.users)
        uniq, inv = unique_index(torch.cat([batch.pos_items, batch.neg_items]), self.n_items)
        inv_pos, inv_neg = inv[:n], inv[n:]
        budgets = self.budget(uniq)
        deltas = [torch.zeros(len(uniq), self.feature_dim(m), device=self.device) for m in self.modalities]
        steps = 1 if self.attack == "fgsm" else int(self.nb_iter)
        for _ in range(steps):
            leaves = [d.clone().requires_grad_(True) for d in deltas]
            pos, neg = self._triple_scores(batch, leaves, None, inv_pos, inv_neg, uniq)
            grads = torch.autograd.grad(bpr_loss(pos, neg), leaves, allow_unused=True)
            for b, g in enumerate(grads):
                g = torch.zeros_like(deltas[b]) if g is None else g
                l2, clip, step = budgets[b]
                if self.attack == "fgsm":
                    deltas[b] = l2 * _unit_rows(g)
                else:
                    deltas[b] = torch.maximum(torch.minimum(deltas[b] + step * _unit_rows(g), clip), -clip)
        return [d.detach() for d in deltas], uniq, inv_pos, inv_neg

    def loss(self, batch: TripletBatch) -> Tensor:
        n = len(batch.users)
        uniq, inv = unique_index(torch.cat([batch.pos_items, batch.neg_items]), self.n_items)
        pos, neg = self._triple_scores(batch, None, None, inv[:n], inv[n:], uniq)
        users, items = batch.users, torch.cat([batch.pos_items, batch.neg_items])
        reg_w = l2_reg(self.gamma_u.index_select(0, users), self.gamma_i.index_select(0, items),
                       *(t.index_select(0, users) for t in self.theta_u), batch_size=n)
        reg_b = l2_reg(self.beta_i.index_select(0, items), batch_size=n)
        reg_e = l2_reg(*self.E, *self.beta_f, batch_size=n)
        loss = bpr_loss(pos, neg) + self.l_w * reg_w + self.l_b * reg_b + self.l_e * reg_e
        if self.adversarial:
            if self._catalogue is not None:
                uniq, inv = unique_index(torch.cat([batch.pos_items, batch.neg_items]), self.n_items)
                deltas, inv_pos, inv_neg = [d.index_select(0, uniq) for d in self._catalogue], inv[:n], inv[n:]
            else:
                deltas, uniq, inv_pos, inv_neg = self.adversarial_deltas(batch)
            adv_pos, adv_neg = self._triple_scores(batch, deltas, None, inv_pos, inv_neg, uniq)
            adv = bpr_loss(adv_pos, adv_neg)
            self.last_adv_loss = adv.detach()
            loss = loss + self.l_adv * adv
        return loss

    # ---- evaluation under perturbations -------------------------------------------------------------
    def perturbation_attacks(self) -> List[dict]:
        """The attacks of Elliot's ``meta.eval_perturbations`` (FGSM and MSAP at the training budget),
        for ``elliot.evaluation.attacks.evaluate_attacks``, over every item and modality."""
        budget = {"eps_ratio": self.eps} if self.eps_relative else {"eps": self.eps}
        step = self.eps_step
        return [{"method": "fgsm_l2", "modality": "all", **budget, "name": "amr_fgsm"},
                {"method": "msap", "projection": "linf", "step": "l2", "modality": "all", **budget,
                 "nb_iter": max(int(self.nb_iter), 1), "eps_iter": step, "name": "amr_msap"}]
