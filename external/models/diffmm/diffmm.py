r"""DiffMM: Multi-Modal Diffusion Model for Recommendation (Jiang, Xia, Wei, Luo, Lin, Huang; ACM MM 2024;
arXiv 2406.11781; code: HKUDS/DiffMM ``Main.py``, ``Model.py``, ``Params.py``).

What is implemented (paper Sec. 3, with the code's choices; M modalities, U users, A = D^{-1/2}(A_UI + I)D^{-1/2}
the normalised user-item graph WITH self-loops, as the code's ``makeTorchAdj``):

* Modality-aware graph diffusion (Sec. 3.1-3.2), one denoiser f_m per modality over users' interaction rows
  x_0 = R_u ∈ {0,1}^|I| (:mod:`elliot.recommender.diffusion`: DiffRec's linear-variance schedule, T = ``steps``,
  x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε, f_m predicts x_0).  Objective per user row (Eq. 10-12 and the code's
  ``training_losses``):
      L_diff^m = w_t · mean_i (x_0 - x̂_0)²  +  ``e_loss`` · mean_d (x̂_0 F_m - x_0 E_I)²,
  x̂_0 = f_m(x_t, t), t ~ U{0..T-1}, w_t = SNR(t-1) - SNR(t) (w_0 = 1); the second term is the modality-aware
  signal injection (MSI): the denoised row aggregates the projected modality features F_m the way the true row
  aggregates the item ID embeddings E_I (both without gradient, as the code's ``.detach()``).
* Graph generation (Sec. 3.2 inference): x̂^m = the reverse chain from x_0 (``sampling_steps`` 0, no noise),
  keep the ``rebuild_k`` top items of every user: a user-item graph Â_m (binary, self-loops, the same
  normalisation), then entry dropout keeping each stored entry with probability ``keep_rate`` (scaled 1/keep).
* Modality-aware GCN (Sec. 3.3; ``forward_MM``): f̂_m = normalize(F_m), F_m = W_m x^m + b_m (``trans`` 1, the
  TikTok setting; 0: LeakyReLU_0.2(x^m W_m)), E = [E_U; E_I]:
      P_m = A [E_U; f̂_m],   H_m = P_m + A [P_m,U; E_I] + ``ris_adj_lambda`` · Â_m E,
      H = Σ_m softmax(ω)_m H_m,   Z = Σ_{l=0..L} A^l H + ``ris_lambda`` · normalize(H),   ŷ_ui = z_u · z_i,
  L = ``n_layers`` (gnn_layer).
* Cross-modal contrastive views (Sec. 3.4; ``forward_cl_MM``): Z_m = Σ_{l=0..L} A^l Â_m [E_U; f̂_m];
  CL(X, Y; n) = -ln exp(x̂_n·ŷ_n/τ) / Σ_v exp(x̂_n·ŷ_v/τ) over ALL users (items) v (x̂ = x/|x|), averaged over
  the batch's users (positive items), repeats kept.  ``cl_method`` 1 (TikTok): Σ_m CL(Z, Z_m) (modality vs
  main view); 0: Σ_{m<m'} CL(Z_m, Z_m').
* Recommender objective per batch (the code's ``trainEpoch``):
      L_rec = Σ_b -ln σ(ŷ_ui - ŷ_uj) / ``batch_size``  +  ``reg`` (|E_U|²_F + |E_I|²_F)  +  ``ssl_reg`` · L_cl.

How it fits the one trainer (the code runs, every epoch, a loop of diffusion steps over all users, then the graph
rebuild, then a loop of recommender steps over the interactions).  Here one trainer epoch is:
(1) :meth:`on_epoch_start` rebuilds Â_m from the current denoisers (no gradient; the dropout mask seeded by
(seed, epoch)), as LATTICE / FREEDOM rebuild their graphs; (2) the sampler is a
:class:`~elliot.dataset.samplers.UserChunkSampler`: each BPR batch also carries a chunk of a permutation of
all users, ⌈U / ``diff_batch_size``⌉ chunks of ``diff_batch_size`` users spread evenly over the epoch, so the
denoisers see every user once per epoch in batches of the code's size; (3) ``loss(batch)`` = L_rec +
Σ_m L_diff^m(chunk) (the diffusion term is 0 on batches without a chunk).  The two terms share no gradient
(graphs built without gradient, E_I and F_m detached in L_diff), so one Adam over all parameters is the
code's three Adams (same lr, no weight decay; a parameter without gradient in a step is not updated).  The
trainer's per-epoch loss therefore includes the diffusion terms (their ELBO weights reach ~8e3 at t = 1).

Defaults: the README's TikTok command line (reg 1e-4, ssl_reg 1e-2, epochs 50, trans 1, e_loss 0.1,
cl_method 1) over ``Params.py`` (lr 1e-3, batch 1024, latdim 64, gnn_layer 1, temp 0.5, keepRate 0.5,
dims [1000], d_emb_size 10, steps 5, noise_scale 0.1, noise_min 1e-4, noise_max 0.02, rebuild_k 1,
ris_lambda 0.5, ris_adj_lambda 0.2); Xavier-uniform E_U, E_I; the denoisers' N(0, √(2/(fan_in+fan_out))).

Deviations from the code: (1) the graphs of epoch e come from the denoisers after e diffusion epochs (the code:
e + 1, its diffusion loop precedes the rebuild), and a diffusion step sees the current E_I, F_m (the code: those
of the end of the previous epoch); (2) all randomness from the model's own generators seeded by ``seed``;
(3) modalities are generic (the code hard-codes image / text / audio; ``trans`` 2 = allrecipes' mix is not
offered); (4) BPR negatives come from the trainer's sampler (with ``item_catalogue: all`` among items with a
training interaction, MMRec's rule) unless ``negatives: all``, the code's rule (``DataHandler.negSampling``:
uniform over every item of the catalogue, cold items included, the user's training items rejected); (5) ``diffusion_bf16`` (default off) runs the
denoisers' linear layers under bfloat16 autocast, 3x faster on CPU: a precision choice, not the code's;
(6) the generated graphs' top items are kept as buffers (in the state dict), so restoring the best epoch's
weights also restores that epoch's graphs (the same dropout mask); evaluation uses them, as the code's test.

Hooks.  Z is linear in (E, f̂) given the row norms |H|, so it splits exactly:
Z = c(H^id) + Σ_m c(w_m H_m^feat), c(X) = Σ_l A^l X + ris_lambda · X / |H|, H^id = Σ_m w_m H_m|_{f̂=0},
H_m^feat = H_m|_{E=0}.  ``modality_embeddings`` returns ``"id"``: (z_u, c(H^id)_i) and, per modality m,
(z_u, c(w_m H_m^feat)_i); the branch scores sum to ``score_pairs``.  Features reach the score through f̂_m
(differentiably); the denoisers read interaction rows only, so the generated graphs do not depend on them.
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
from elliot.recommender.base import EmbeddingScoring, TripletBatch, gather_rows, unique_index
from elliot.recommender.contrastive import info_nce
from elliot.recommender.diffusion import GaussianDiffusion, RowDenoiser, dense_rows
from elliot.recommender.graph import entry_dropout, propagate_sum, scipy_to_torch, symmetric_normalize, \
    user_item_adjacency
from elliot.recommender.multimodal import MultimodalRecommender
from elliot.recommender.sparse import SparseOp


def _graphs_stale(module: "DiffMM", incompatible_keys) -> None:
    """After ``load_state_dict``: rebuild the generated graphs from the loaded buffers on next use."""
    module._graphs = None


class DiffMM(EmbeddingScoring, MultimodalRecommender):
    """DiffMM (Jiang et al., ACM MM 2024); see the module docstring."""

    name = "DiffMM"
    params = (
        Param("epochs", int, 50, "training epochs (the TikTok command line)"),
        Param("factors", int, 64, "embedding size (latdim)", aliases=("latdim", "embedding_size")),
        Param("lr", float, 1e-3, "Adam learning rate of the recommender and the denoisers"),
        Param("l_w", float, 1e-4, "weight of |E_U|² + |E_I|² per batch (reg)", aliases=("reg", "reg_weight")),
        Param("ssl_reg", float, 1e-2, "weight of the cross-modal contrastive loss", low=0.0,
              aliases=("cl_weight",)),
        Param("temp", float, 0.5, "contrastive temperature"),
        Param("cl_method", int, 1, "1: modality views vs the main view; 0: modality vs modality", choices=(0, 1)),
        Param("n_layers", int, 1, "GCN layers L on the user-item graph (gnn_layer)", aliases=("gnn_layer",)),
        Param("trans", int, 1, "feature projection: 1 linear W x + b; 0 LeakyReLU(x W)", choices=(0, 1)),
        Param("ris_lambda", float, 0.5, "weight of normalize(H) added to the propagated embeddings"),
        Param("ris_adj_lambda", float, 0.2, "weight of the generated-graph term Â_m E"),
        Param("keep_rate", float, 0.5, "entry keep probability of the generated graphs (keepRate)", low=0.0,
              high=1.0, low_inclusive=False, aliases=("keepRate",)),
        Param("rebuild_k", int, 1, "items kept per user in a generated graph", low=1),
        Param("e_loss", float, 0.1, "weight of the modality-aware signal injection term", low=0.0),
        Param("dims", "list[int]", [1000], "hidden sizes of the denoisers", lengths=(1, 8)),
        Param("d_emb_size", int, 10, "timestep embedding size of the denoisers", low=1),
        Param("norm", bool, False, "L2-normalise the denoisers' input rows"),
        Param("steps", int, 5, "diffusion steps T", low=1),
        Param("noise_scale", float, 0.1, "noise scale s of the schedule", low=0.0, low_inclusive=False),
        Param("noise_min", float, 1e-4, "lower bound of the variance schedule (times s)", low=0.0),
        Param("noise_max", float, 0.02, "upper bound of the variance schedule (times s)", low=0.0),
        Param("sampling_steps", int, 0, "start the reverse chain at q(x_{T'-1}|x_0); 0: at x_0", low=0),
        Param("sampling_noise", bool, False, "add posterior noise in the reverse chain"),
        Param("diff_batch_size", int, 1024, "users per diffusion step (the code's batch)", low=1),
        Param("diffusion_bf16", bool, False, "denoisers' linear layers under bfloat16 autocast (not the code)"),
        Param("negatives", str, "warm", "BPR negatives among the items with a training interaction ('warm', "
              "MMRec's sampler) or among every catalogue item ('all', the authors' code)", choices=["warm", "all"]),
    )

    @classmethod
    def check_params(cls, params: Dict[str, object]) -> Optional[str]:
        if float(params.get("temp", 0.5)) <= 0:
            return "temp must be > 0"
        if float(params.get("noise_max", 0.02)) < float(params.get("noise_min", 1e-4)):
            return "noise_max must be >= noise_min"
        if int(params.get("sampling_steps", 0)) > int(params.get("steps", 5)):
            return "sampling_steps must be <= steps"
        return None

    def __init__(self, dataset: Dataset, hp: dict, device: torch.device):
        super().__init__(dataset, hp, device)
        k, n_mod = int(self.factors), len(self.modalities)
        users, items = torch.empty(self.n_users, k), torch.empty(self.n_items, k)
        nn.init.xavier_uniform_(users)
        nn.init.xavier_uniform_(items)
        self.embeddings = nn.Parameter(torch.cat([users, items]))  # E = [E_U; E_I]
        self.trans_layers = nn.ModuleList(nn.Linear(self.feature_dim(m), k, bias=int(self.trans) == 1)
                                          for m in self.modalities)
        if int(self.trans) == 0:  # the code's xavier-initialised projection matrices
            for lin in self.trans_layers:
                nn.init.xavier_uniform_(lin.weight)
        self.modal_weight = nn.Parameter(torch.full((n_mod,), 1.0 / n_mod))
        self.denoisers = nn.ModuleList(RowDenoiser(self.n_items, self.dims, int(self.d_emb_size), bool(self.norm),
                                                   bf16=bool(self.diffusion_bf16)) for _ in self.modalities)
        self.diffusion = GaussianDiffusion(int(self.steps), float(self.noise_scale), float(self.noise_min),
                                           float(self.noise_max), device=self.device)
        train = sp.csr_matrix((dataset.train > 0).astype(np.float32))
        train.sort_indices()
        self.adj = SparseOp(scipy_to_torch(symmetric_normalize(user_item_adjacency(train) + sp.eye(
            self.n_users + self.n_items, dtype=np.float32)), self.device), symmetric=True)
        self._indptr = torch.as_tensor(train.indptr, dtype=torch.long, device=self.device)
        self._indices = torch.as_tensor(train.indices, dtype=torch.long, device=self.device)
        # the generated graphs' top items (-1: not generated yet) and the epoch whose dropout mask they use
        self.register_buffer("generated", torch.full((n_mod, self.n_users, int(self.rebuild_k)), -1, dtype=torch.long))
        self.register_buffer("graph_epoch", torch.zeros((), dtype=torch.long))
        self._graphs: Optional[List[SparseOp]] = None
        self.register_load_state_dict_post_hook(_graphs_stale)
        self.to(self.device)
        self._seed = int(self.hp.get("seed", 42))
        self._gen = torch.Generator(device=self.device).manual_seed(self._seed)

    # ---- the trainer's surface ------------------------------------------------------------------
    def make_sampler(self, dataset: Dataset, seed: int):
        from elliot.dataset.samplers import BPRSampler, UserChunkSampler

        base = (BPRSampler(dataset.train, seed) if self.negatives == "all"  # every catalogue item, as the code
                else super().make_sampler(dataset, seed))
        return UserChunkSampler(base, self.n_users, int(self.diff_batch_size), seed + 1)

    def make_optimizer(self) -> torch.optim.Optimizer:
        """One Adam (lr, no weight decay) = the code's three (their parameters never share a gradient)."""
        return torch.optim.Adam(self.parameters(), lr=float(self.lr), fused=True)

    def on_epoch_start(self, epoch: int) -> None:
        self.rebuild_graphs(epoch)

    # ---- generated graphs ---------------------------------------------------------------------------
    def _rows(self, users: Tensor) -> Tensor:
        return dense_rows(self._indptr, self._indices, users, self.n_items)

    @torch.no_grad()
    def rebuild_graphs(self, epoch: int) -> None:
        """Â_m from the reverse chain of each denoiser over every user's row (in chunks of diff_batch_size)."""
        k, size = int(self.rebuild_k), int(self.diff_batch_size)
        for m, denoiser in enumerate(self.denoisers):
            for start in range(0, self.n_users, size):
                users = torch.arange(start, min(start + size, self.n_users), device=self.device)
                out = self.diffusion.denoise(denoiser, self._rows(users), int(self.sampling_steps),
                                             bool(self.sampling_noise), self._gen)
                self.generated[m, start: start + len(users)] = torch.topk(out, k, dim=1).indices
        self.graph_epoch.fill_(int(epoch))
        self._graphs = None

    def _generated_graphs(self) -> List[SparseOp]:
        if self._graphs is None:
            if bool((self.generated < 0).any()):
                self.rebuild_graphs(int(self.graph_epoch))
            nu, n = self.n_users, self.n_users + self.n_items
            users = torch.arange(nu).repeat_interleave(int(self.rebuild_k))
            loops = torch.arange(n)
            graphs = []
            for m in range(len(self.modalities)):
                items = self.generated[m].reshape(-1).cpu() + nu
                rows, cols = torch.cat([users, items, loops]), torch.cat([items, users, loops])
                deg = torch.bincount(rows, minlength=n).float().pow(-0.5)
                adj = torch.sparse_coo_tensor(torch.stack([rows, cols]), deg[rows] * deg[cols], (n, n)).coalesce()
                if float(self.keep_rate) >= 1.0:
                    graphs.append(SparseOp(adj.to(self.device)))
                    continue
                gen = torch.Generator().manual_seed(self._seed * 100_003 + int(self.graph_epoch) * 97 + m)
                graphs.append(entry_dropout(adj.to(self.device), 1.0 - float(self.keep_rate), gen))
            self._graphs = graphs
        return self._graphs

    # ---- representations ----------------------------------------------------------------------------
    def _features(self) -> List[Tensor]:
        """F_m = W_m x^m + b_m (trans 1) or LeakyReLU(x^m W_m) (trans 0), from the current features."""
        out = [lin(self.feature(m)) for m, lin in zip(self.modalities, self.trans_layers)]
        return out if int(self.trans) == 1 else [F.leaky_relu(f, 0.2) for f in out]

    def _branch(self, e_users: Tensor, e_items: Tensor, f_hat: Tensor, graph: Optional[SparseOp]) -> Tensor:
        """H_m = P + A [P_U; E_I] + ris_adj_lambda Â_m E, P = A [E_U; f̂_m] (the Â term left out for graph None)."""
        p = self.adj @ torch.cat([e_users, f_hat])
        h = p + self.adj @ torch.cat([p[: self.n_users], e_items])
        if graph is not None:
            h = h + float(self.ris_adj_lambda) * (graph @ torch.cat([e_users, e_items]))
        return h

    def _forward(self, feats: List[Tensor]) -> Tuple[Tensor, Tensor, List[Tensor]]:
        """(Z of all nodes, the fused H, the normalised features f̂_m)."""
        e_users, e_items = self.embeddings[: self.n_users], self.embeddings[self.n_users:]
        f_hats = [F.normalize(f, dim=1) for f in feats]
        weight = torch.softmax(self.modal_weight, 0)
        fused = sum(weight[m] * self._branch(e_users, e_items, f_hat, graph)
                    for m, (f_hat, graph) in enumerate(zip(f_hats, self._generated_graphs())))
        final = propagate_sum(self.adj, fused, int(self.n_layers)) + float(self.ris_lambda) * F.normalize(fused, dim=1)
        return final, fused, f_hats

    def final_embeddings(self) -> Tuple[Tensor, Tensor]:
        final, _, _ = self._forward(self._features())
        return final[: self.n_users], final[self.n_users:]

    # ---- training -----------------------------------------------------------------------------------
    def _contrastive(self, final: Tensor, f_hats: List[Tensor], users: Tensor, items: Tensor) -> Tensor:
        e_users = self.embeddings[: self.n_users]
        views = [propagate_sum(self.adj, graph @ torch.cat([e_users, f_hat]), int(self.n_layers))
                 for f_hat, graph in zip(f_hats, self._generated_graphs())]
        pairs = [(final, v) for v in views] if int(self.cl_method) == 1 else \
            [(views[a], views[b]) for a in range(len(views)) for b in range(a + 1, len(views))]
        uu, _, cu = unique_index(users, self.n_users, return_counts=True)
        ui, _, ci = unique_index(items, self.n_items, return_counts=True)
        tau, total = float(self.temp), 0.0
        for x, y in pairs:
            for nodes, counts, x_tab, y_tab in ((uu, cu, x[: self.n_users], y[: self.n_users]),
                                                (ui, ci, x[self.n_users:], y[self.n_users:])):
                anchors = F.normalize(gather_rows(x_tab, nodes), dim=1)
                total = total + info_nce(anchors, F.normalize(y_tab, dim=1), tau, targets=nodes,
                                         weights=counts.to(anchors.dtype))
        return total

    def diffusion_loss(self, users: Tensor, feats: List[Tensor]) -> Tensor:
        """Σ_m mean over ``users`` of the ELBO term + e_loss · the signal-injection term (E_I, F_m detached)."""
        x0 = self._rows(users)
        target = x0 @ self.embeddings[self.n_users:].detach()
        total = 0.0
        for denoiser, f in zip(self.denoisers, feats):
            pred, elbo = self.diffusion.training_loss(denoiser, x0, self._gen)
            injected = (pred @ f.detach() - target).pow(2).mean(1)
            total = total + elbo.mean() + float(self.e_loss) * injected.mean()
        return total

    def loss(self, batch: TripletBatch) -> Tensor:
        feats = self._features()
        final, _, f_hats = self._forward(feats)
        nu = self.n_users
        u = gather_rows(final, batch.users)
        pos, neg = gather_rows(final, batch.pos_items + nu), gather_rows(final, batch.neg_items + nu)
        diff = (u * pos).sum(-1) - (u * neg).sum(-1)
        loss = F.softplus(-diff).sum() / int(self.hp.get("batch_size", 1024))
        if self.l_w:
            loss = loss + float(self.l_w) * self.embeddings.pow(2).sum()
        if self.ssl_reg:
            loss = loss + float(self.ssl_reg) * self._contrastive(final, f_hats, batch.users, batch.pos_items)
        rows = batch.epoch_users
        if rows is not None and len(rows):
            loss = loss + self.diffusion_loss(rows, feats)
        return loss

    # ---- hooks --------------------------------------------------------------------------------------
    def score_pairs(self, users: Tensor, items: Tensor) -> Tensor:
        final, _, _ = self._forward(self._features())
        return (gather_rows(final, users) * gather_rows(final, items + self.n_users)).sum(-1)

    def modality_embeddings(self, users: Tensor, items: Tensor) -> Dict[str, Tuple[Tensor, Tensor]]:
        final, fused, f_hats = self._forward(self._features())
        e_users, e_items = self.embeddings[: self.n_users], self.embeddings[self.n_users:]
        weight = torch.softmax(self.modal_weight, 0)
        scale = float(self.ris_lambda) / fused.norm(dim=1, keepdim=True).clamp_min(1e-12)
        nodes = items + self.n_users

        def part(x: Tensor) -> Tensor:  # c(X) at the items' rows
            return gather_rows(propagate_sum(self.adj, x, int(self.n_layers)) + scale * x, nodes)

        graphs = self._generated_graphs()
        h_id = sum(weight[m] * self._branch(e_users, e_items, torch.zeros_like(f), g)
                   for m, (f, g) in enumerate(zip(f_hats, graphs)))
        eu = gather_rows(final, users)
        out = {"id": (eu, part(h_id))}
        for m, (name, f) in enumerate(zip(self.modalities, f_hats)):
            out[name] = (eu, part(weight[m] * self._branch(torch.zeros_like(e_users), torch.zeros_like(e_items), f,
                                                            None)))
        return out
