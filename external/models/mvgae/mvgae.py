r"""MVGAE: Multi-modal Variational Graph Auto-encoder for Recommendation Systems (Yi & Chen; IEEE TMM 2021;
code: jing-1/MVGAE ``Model.py`` / ``BaseModel.py``; MMRec port: enoche/MMRec ``src/models/mvgae.py`` + ``MVGAE.yaml``).

What is implemented (the authors' code; M modalities plus one "collaborative" expert c; U users):

* One variational GCN encoder per expert e ∈ {modalities} ∪ {c} on the user-item graph with self-loops and MEAN
  aggregation, Ā = D^{-1}(A + I) (PyG ``aggr='mean'`` after ``add_self_loops``).  Inputs: x^e = normalize([P_e;
  W_e f^e + b_e]), P_e ∈ R^{U x 128} a fixed random user matrix (Xavier-normal; the code's ``preference`` is a
  plain tensor, never optimised), f^c a fixed random item matrix (the code's ``collaborative``, 64-d).  A graph
  convolution is conv(x) = dropout_0.1(normalize(Ā x W + b)), σ = LeakyReLU(0.01):
      h = σ(G_1 σ(conv_1(x)))                                 (``n_layers`` >= 1 such layers, G a linear map)
      μ_e = G_4 σ(conv_4(h)) + σ(L_4 h),    log σ²_e = G_5 σ(conv_5(h)) + σ(L_5 h).
* Product of experts (Wu & Goodman 2018): PoE(μ_k, σ²_k) = (Σ_k μ_k/σ²_k / Σ_k 1/σ²_k, 1/Σ_k 1/σ²_k), σ²_k =
  exp(log σ²_k) + 1e-8; first over the modalities, then with c:  (μ, log σ²) = PoE(PoE(modalities), c).
* Reparameterisation (training): z = μ + 0.1 ε exp(½ min(log σ², 10)); evaluation: z = μ.
* Loss (the code's ``loss``): for z and every expert's own z_e (with its μ_e, log σ²_e):
      R(z) = -Σ_b log2 σ(s(z)_u·s(z)_i - max_j s(z)_u·s(z)_j),   s = sigmoid (the code's "amazon" setting),
  j over the batch's negative items (the MMRec port's one negative per triple, each user against all of them);
      KL(μ, log σ²) = -½ mean_nodes Σ_d (1 + log σ² - μ² - σ²)   (log σ² clamped at 10);
      L = R(z) + β KL(μ, log σ²) + Σ_e [R(z_e) + β KL(μ_e, log σ²_e)].
* Score: ŷ_ui = sigmoid(μ)_u · sigmoid(μ)_i (the code's ``result_embed``).

Defaults: factors 64 (dim_x / embedding_size), dim_latent 128, n_layers 1, beta 1 (the authors' code has no
weight: MMRec's grid {0.01, 0.1, 1}), lr 1e-3 (MMRec overall.yaml; its grid {1e-4, 1e-3, 1e-2, 1e-1}).

Deviations: (1) from MMRec's port: items are graph nodes U + i in the loss (MMRec indexes z with raw item ids in
training, i.e. user rows, while scoring reads the item rows; the authors' data numbers items after users) and
the decoder scores are not squashed twice (MMRec passes ``sigmoid=True`` before the BPR-style log2 σ; the
authors pass False); (2) the fixed random matrices and every dropout / noise draw come from the model's own
generator seeded by ``seed``; (3) the code's unused branch L_1 (computed, discarded when ``concate`` is off) is
not built; ``concate`` and ``aggr_mode`` are fixed at the code's False / mean; (4) modalities are generic.

Hooks: the PoE fuses the experts by precision weights, so no branch sums to the score.  ``modality_embeddings``
returns each expert's own decoder view: m -> (sigmoid(μ_m)_u, sigmoid(μ_m)_i) per modality, ``"id"`` -> the
collaborative expert's; features reach the score differentiably through W_m, the encoders and the PoE.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from elliot.config.params import Param
from elliot.dataset.dataset import Dataset
from elliot.recommender.base import EmbeddingScoring, TripletBatch, gather_rows
from elliot.recommender.graph import scipy_to_torch, user_item_adjacency
from elliot.recommender.multimodal import MultimodalRecommender
from elliot.recommender.sparse import SparseOp

MAX_LOGVAR = 10.0


def product_of_experts(mu: Tensor, logvar: Tensor, eps: float = 1e-8) -> Tuple[Tensor, Tensor]:
    """(μ, log σ²) of the product of the Gaussian experts stacked on dim 0."""
    precision = 1.0 / (torch.exp(logvar) + eps)
    total = precision.sum(0)
    return (mu * precision).sum(0) / total, torch.log(1.0 / total)


class _Conv(nn.Module):
    """conv(x) = dropout(normalize(Ā x W + b)) (the code's BaseModel with aggr='mean')."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.weight = nn.Parameter(nn.init.xavier_normal_(torch.empty(d_in, d_out)))
        self.bias = nn.Parameter(torch.empty(d_out).uniform_(-d_in ** -0.5, d_in ** -0.5))

    def forward(self, adj: SparseOp, x: Tensor, drop: Optional[Tensor]) -> Tensor:
        out = F.normalize(adj @ (x @ self.weight) + self.bias, dim=-1)
        return out if drop is None else out * drop


class _Encoder(nn.Module):
    """The code's GCN: (μ_e, log σ²_e) of all nodes from the fixed user matrix and the item input."""

    def __init__(self, d_feat: int, d_latent: int, d: int, n_layers: int):
        super().__init__()
        self.mlp = nn.Linear(d_feat, d_latent)
        dims = [d_latent] + [d] * n_layers
        self.convs = nn.ModuleList(_Conv(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.gates = nn.ModuleList(nn.Linear(d, d) for _ in range(n_layers))
        self.conv_mu, self.conv_lv = _Conv(d, d), _Conv(d, d)
        self.g_mu, self.g_lv, self.lin_mu, self.lin_lv = (nn.Linear(d, d) for _ in range(4))
        for lin in (self.mlp, *self.gates[:1], self.g_mu, self.g_lv, self.lin_mu, self.lin_lv):
            nn.init.xavier_normal_(lin.weight)  # the code's inits (its second gate keeps the default)

    def forward(self, adj: SparseOp, pref: Tensor, feats: Tensor, drops: List[Optional[Tensor]]):
        x = F.normalize(torch.cat([pref, self.mlp(feats)]), dim=1)
        for n, (conv, gate) in enumerate(zip(self.convs, self.gates)):
            x = F.leaky_relu(gate(F.leaky_relu(conv(adj, x, drops[n]))))
        mu = self.g_mu(F.leaky_relu(self.conv_mu(adj, x, drops[-2]))) + F.leaky_relu(self.lin_mu(x))
        lv = self.g_lv(F.leaky_relu(self.conv_lv(adj, x, drops[-1]))) + F.leaky_relu(self.lin_lv(x))
        return mu, lv


class MVGAE(EmbeddingScoring, MultimodalRecommender):
    """MVGAE (Yi & Chen, TMM 2021); see the module docstring."""

    name = "MVGAE"
    params = (
        Param("factors", int, 64, "size of μ, σ² (dim_x / MMRec embedding_size)", aliases=("embedding_size",)),
        Param("dim_latent", int, 128, "width of the projected inputs and the fixed user matrices"),
        Param("n_layers", int, 1, "graph convolutions before the μ / σ² heads"),
        Param("beta", float, 1.0, "weight of the KL terms (MMRec grid {0.01, 0.1, 1})", low=0.0),
        Param("lr", float, 1e-3, "Adam learning rate", aliases=("learning_rate",)),
        Param("collab_dim", int, 64, "width of the fixed random item input of the collaborative expert", low=1),
        Param("sigmoid_embed", bool, True, "decode through sigmoid(z) (the code's 'amazon' setting, forced in MMRec)"),
    )

    def __init__(self, dataset: Dataset, hp: dict, device: torch.device):
        super().__init__(dataset, hp, device)
        d, dl, n_layers = int(self.factors), int(self.dim_latent), int(self.n_layers)
        gen = torch.Generator().manual_seed(int(self.hp.get("seed", 42)))
        n_exp = len(self.modalities) + 1  # the modalities, then the collaborative expert
        prefs = torch.empty(n_exp, self.n_users, dl)
        for p in prefs:
            std = (2.0 / (self.n_users + dl)) ** 0.5  # Xavier-normal of a (users x dim_latent) matrix
            p.copy_(torch.randn(self.n_users, dl, generator=gen) * std)
        collab = torch.randn(self.n_items, int(self.collab_dim), generator=gen) * (2.0 / (self.n_items + int(
            self.collab_dim))) ** 0.5
        self.register_buffer("preference", prefs)
        self.register_buffer("collaborative", collab)
        dims = [self.feature_dim(m) for m in self.modalities] + [int(self.collab_dim)]
        self.encoders = nn.ModuleList(_Encoder(df, dl, d, n_layers) for df in dims)
        adj = user_item_adjacency(dataset.train) + sp.eye(self.n_users + self.n_items, dtype=np.float32)
        deg = np.asarray(adj.sum(1)).ravel()
        self.adj = SparseOp(scipy_to_torch(sp.diags(1.0 / deg) @ adj, self.device))  # D^{-1}(A + I)
        self.to(self.device)
        self._gen = torch.Generator(device=self.device).manual_seed(int(self.hp.get("seed", 42)) + 1)

    def make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=float(self.lr), fused=True)

    # ---- encoders -------------------------------------------------------------------------------
    def _drops(self, d: int) -> List[Optional[Tensor]]:
        """Dropout masks (p = 0.1, scaled) of every convolution in training; None in evaluation."""
        n = int(self.n_layers) + 2
        if not self.training:
            return [None] * n
        shape = (self.n_users + self.n_items, d)
        return [(torch.rand(shape, generator=self._gen, device=self.device) >= 0.1).float() / 0.9 for _ in range(n)]

    def _experts(self) -> Tuple[List[Tensor], List[Tensor]]:
        inputs = [self.feature(m) for m in self.modalities] + [self.collaborative]
        mus, lvs = [], []
        for enc, pref, feats in zip(self.encoders, self.preference, inputs):
            mu, lv = enc(self.adj, pref, feats, self._drops(int(self.factors)))
            mus.append(mu)
            lvs.append(lv)
        return mus, lvs

    def _fused(self, mus: List[Tensor], lvs: List[Tensor]) -> Tuple[Tensor, Tensor]:
        mu, lv = product_of_experts(torch.stack(mus[:-1]), torch.stack(lvs[:-1]))
        return product_of_experts(torch.stack([mu, mus[-1]]), torch.stack([lv, lvs[-1]]))

    def _embed(self, x: Tensor) -> Tensor:
        return torch.sigmoid(x) if self.sigmoid_embed else x

    # ---- training -----------------------------------------------------------------------------------
    def _reparam(self, mu: Tensor, lv: Tensor) -> Tensor:
        noise = torch.randn(mu.shape, generator=self._gen, device=mu.device)
        return mu + noise * 0.1 * torch.exp(0.5 * lv.clamp(max=MAX_LOGVAR))

    def _recon(self, z: Tensor, batch: TripletBatch) -> Tensor:
        s = self._embed(z)
        u = gather_rows(s, batch.users)
        pos = (u * gather_rows(s, batch.pos_items + self.n_users)).sum(-1)
        neg = (u @ gather_rows(s, batch.neg_items + self.n_users).T).amax(1)
        return -torch.log2(torch.sigmoid(pos - neg)).sum()

    @staticmethod
    def _kl(mu: Tensor, lv: Tensor) -> Tensor:
        lv = lv.clamp(max=MAX_LOGVAR)
        return -0.5 * torch.mean(torch.sum(1 + lv - mu.pow(2) - lv.exp(), dim=1))

    def loss(self, batch: TripletBatch) -> Tensor:
        mus, lvs = self._experts()
        mu, lv = self._fused(mus, lvs)
        beta = float(self.beta)
        loss = self._recon(self._reparam(mu, lv), batch) + beta * self._kl(mu, lv)
        for m, v in zip(mus, lvs):
            loss = loss + self._recon(self._reparam(m, v), batch) + beta * self._kl(m, v)
        return loss

    # ---- scoring and hooks --------------------------------------------------------------------------
    def final_embeddings(self) -> Tuple[Tensor, Tensor]:
        s = self._embed(self._fused(*self._experts())[0])
        return s[: self.n_users], s[self.n_users:]

    def score_pairs(self, users: Tensor, items: Tensor) -> Tensor:
        s = self._embed(self._fused(*self._experts())[0])
        return (gather_rows(s, users) * gather_rows(s, items + self.n_users)).sum(-1)

    def modality_embeddings(self, users: Tensor, items: Tensor) -> Dict[str, Tuple[Tensor, Tensor]]:
        mus, _ = self._experts()
        out = {}
        for name, mu in zip(list(self.modalities) + ["id"], mus):
            s = self._embed(mu)
            out[name] = (gather_rows(s, users), gather_rows(s, items + self.n_users))
        return out
