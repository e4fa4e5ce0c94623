"""A tiny VBPR-like multimodal model and a short training helper for the robustness tests."""
from __future__ import annotations

from typing import Dict, Tuple

import torch
from torch import Tensor, nn

from elliot.config.params import Param
from elliot.recommender.base import TripletBatch, bpr_loss, l2_reg
from elliot.recommender.multimodal import MultimodalRecommender
from elliot.training.trainer import Trainer


class TinyVBPR(MultimodalRecommender):
    """s(u,i) = β_i + γ_u·γ_i + Σ_m θ_u^m · (E_m x_i^m): per-modality linear branches (exact hooks)."""

    name = "TinyVBPR"
    params = (Param("factors", int, 8), Param("lr", float, 0.05), Param("l_w", float, 1e-4))

    def __init__(self, dataset, hp, device):
        super().__init__(dataset, hp, device)
        k = int(self.factors)
        self.gu = nn.Parameter(torch.randn(self.n_users, k) * 0.1)
        self.gi = nn.Parameter(torch.randn(self.n_items, k) * 0.1)
        self.bi = nn.Parameter(torch.zeros(self.n_items))
        self.theta = nn.ParameterDict({m: nn.Parameter(torch.randn(self.n_users, k) * 0.1) for m in self.modalities})
        self.E = nn.ParameterDict({m: nn.Parameter(torch.randn(self.feature_dim(m), k) * 0.1)
                                   for m in self.modalities})
        self.to(self.device)

    def modality_embeddings(self, users: Tensor, items: Tensor) -> Dict[str, Tuple[Tensor, Tensor]]:
        ones = torch.ones(len(users), 1)
        out = {"id": (torch.cat([self.gu[users], ones], 1), torch.cat([self.gi[items], self.bi[items, None]], 1))}
        for m in self.modalities:
            out[m] = (self.theta[m][users], self.feature(m)[items] @ self.E[m])
        return out

    def score_pairs(self, users: Tensor, items: Tensor) -> Tensor:
        return sum(self.modality_scores(users, items).values())

    def score(self, users: Tensor) -> Tensor:
        s = self.gu[users] @ self.gi.T + self.bi[None, :]
        for m in self.modalities:
            s = s + self.theta[m][users] @ (self.feature(m) @ self.E[m]).T
        return s

    def loss(self, batch: TripletBatch) -> Tensor:
        n = len(batch.users)
        s = self.score_pairs(torch.cat([batch.users, batch.users]), torch.cat([batch.pos_items, batch.neg_items]))
        return bpr_loss(s[:n], s[n:]) + self.l_w * l2_reg(self.gu[batch.users], batch_size=n)


def make_model(dataset, seed: int = 0, **hp) -> TinyVBPR:
    torch.manual_seed(seed)
    params = {"factors": 8, "lr": 0.05, "l_w": 1e-4, "epochs": 5, "batch_size": 64, "seed": seed,
              "modalities": [], "loaders": []}
    params.update(hp)
    return TinyVBPR(dataset, params, torch.device("cpu"))


def train(model, dataset, epochs: int = 5, addons=(), seed: int = 0, batch_size: int = 64):
    from elliot.evaluation.evaluator import Evaluator

    evaluator = Evaluator(dataset, cutoffs=[5, 10], metrics=["Recall", "nDCG"])
    trainer = Trainer(model, dataset, evaluator, epochs=epochs, batch_size=batch_size, seed=seed,
                      validation_metric="Recall@5", addons=addons, progress=False)
    trainer.fit()
    return evaluator
