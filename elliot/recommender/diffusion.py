r"""Gaussian diffusion over users' interaction rows x_0 ∈ {0,1}^|I| (DiffRec: Wang, Xu, Feng, Lin, He & Chua,
SIGIR 2023, "Diffusion Recommender Model"; used by DiffMM, Jiang et al., ACM MM 2024, one per modality).

Schedule (DiffRec's "linear-var", with T = ``steps``, s = ``noise_scale``):
    v_t = linspace(s·noise_min, s·noise_max, T)_t,   β_0 = 1 - (1 - v_0),   β_t = min(1 - (1 - v_t)/(1 - v_{t-1}), 0.999),
then β_0 := ``first_beta`` (the code's ``beta_fixed``: 1e-4), α_t = 1 - β_t, ᾱ_t = Π_{s<=t} α_s (ᾱ_{-1} = 1).
Forward process:  q(x_t | x_0) = N(√ᾱ_t x_0, (1 - ᾱ_t) I),  x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε.
Posterior:  q(x_{t-1} | x_t, x_0) = N(c1_t x_0 + c2_t x_t, σ̃²_t I),
    c1_t = β_t √ᾱ_{t-1} / (1 - ᾱ_t),   c2_t = (1 - ᾱ_{t-1}) √α_t / (1 - ᾱ_t),   σ̃²_t = β_t (1 - ᾱ_{t-1}) / (1 - ᾱ_t)
(c1_0 = 1, c2_0 = 0: the last reverse step returns the prediction itself).
The network f predicts x_0 ("x0" mean type).  ELBO term of a row, t ~ U{0..T-1}:
    L_t = w_t · mean_i (x_0 - f(x_t, t))²,   w_t = SNR(t-1) - SNR(t) (w_0 = 1),   SNR(t) = ᾱ_t / (1 - ᾱ_t)
(the KL of the Gaussian posteriors with x_0-parameterised means, up to the code's per-item mean).
Reverse (inference):  start at x_{T'} = x_0 (``sampling_steps`` T' = 0, the default) or at q(x_{T'-1} | x_0),
then x_{t-1} = c1_t f(x_t, t) + c2_t x_t for t = T-1..0 (plus σ̃_t ε for t > 0 with ``sampling_noise``).

:class:`RowDenoiser` is DiffRec's MLP f: sinusoidal embedding of t (``emb_size``: cos / sin of t·10000^{-k/(d/2)})
through a linear layer, concatenated to the (dropped-out) row, tanh MLP ``n_items + d -> dims[::-1] ... ->``
then ``dims -> n_items`` (no activation on the output).  All randomness comes from a ``torch.Generator``.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn


class GaussianDiffusion:
    """The schedule and the three operations (forward noising, ELBO term, reverse denoising); no parameters."""

    def __init__(self, steps: int, noise_scale: float, noise_min: float, noise_max: float,
                 first_beta: Optional[float] = 1e-4, device: torch.device = torch.device("cpu")):
        if steps < 1 or noise_scale <= 0:
            raise ValueError("GaussianDiffusion needs steps >= 1 and noise_scale > 0")
        self.steps = int(steps)
        var = np.linspace(noise_scale * noise_min, noise_scale * noise_max, self.steps, dtype=np.float64)
        keep = 1.0 - var
        betas = np.concatenate([[1.0 - keep[0]], np.minimum(1.0 - keep[1:] / keep[:-1], 0.999)])
        if first_beta is not None:
            betas[0] = first_beta
        bar = np.cumprod(1.0 - betas)
        prev = np.concatenate([[1.0], bar[:-1]])
        post_var = betas * (1.0 - prev) / (1.0 - bar)
        as_t = lambda a: torch.tensor(a, dtype=torch.float64, device=device)  # noqa: E731
        self.betas, self.alphas_bar, self.alphas_bar_prev = as_t(betas), as_t(bar), as_t(prev)
        self.coef_x0 = as_t(betas * np.sqrt(prev) / (1.0 - bar))
        self.coef_xt = as_t((1.0 - prev) * np.sqrt(1.0 - betas) / (1.0 - bar))
        self.posterior_log_var = as_t(np.log(np.concatenate([post_var[1:2], post_var[1:]])) if self.steps > 1
                                      else np.log(np.maximum(post_var, 1e-20)))
        snr = bar / (1.0 - bar)
        self.elbo_weights = as_t(np.concatenate([[1.0], snr[:-1] - snr[1:]]))

    @staticmethod
    def _at(table: Tensor, t: Tensor) -> Tensor:
        """table[t] as a float32 column (broadcasts over a row's items)."""
        return table.to(t.device).index_select(0, t).float().unsqueeze(1)

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t = √ᾱ_t x_0 + √(1 - ᾱ_t) ε, row by row."""
        return self._at(self.alphas_bar.sqrt(), t) * x0 + self._at((1.0 - self.alphas_bar).sqrt(), t) * noise

    def training_loss(self, model: nn.Module, x0: Tensor, gen: torch.Generator) -> Tuple[Tensor, Tensor]:
        """(f(x_t, t) per row, the weighted ELBO term w_t · mean_i (x_0 - f)² per row), t ~ U{0..T-1}."""
        t = torch.randint(0, self.steps, (x0.shape[0],), generator=gen, device=x0.device)
        noise = torch.randn(x0.shape, generator=gen, device=x0.device)
        pred = model(self.q_sample(x0, t, noise), t, drop_gen=gen)
        mse = (x0 - pred).pow(2).mean(1)
        return pred, self._at(self.elbo_weights, t).squeeze(1) * mse

    @torch.no_grad()
    def denoise(self, model: nn.Module, x0: Tensor, sampling_steps: int = 0, sampling_noise: bool = False,
                gen: Optional[torch.Generator] = None) -> Tensor:
        """The reverse chain from x_0 (or from x_{T'} ~ q(·|x_0) for ``sampling_steps`` T' > 0) down to t = 0."""
        x = x0
        if sampling_steps > 0:
            t = torch.full((x0.shape[0],), sampling_steps - 1, dtype=torch.long, device=x0.device)
            x = self.q_sample(x0, t, torch.randn(x0.shape, generator=gen, device=x0.device))
        for step in range(self.steps - 1, -1, -1):
            t = torch.full((x.shape[0],), step, dtype=torch.long, device=x.device)
            mean = self._at(self.coef_x0, t) * model(x, t) + self._at(self.coef_xt, t) * x
            if sampling_noise and step > 0:
                noise = torch.randn(x.shape, generator=gen, device=x.device)
                mean = mean + torch.exp(0.5 * self._at(self.posterior_log_var, t)) * noise
            x = mean
        return x


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """[cos(t·ω_k), sin(t·ω_k)]_k, ω_k = 10000^{-k/(dim//2)}, k < dim//2 (a zero column when dim is odd)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / max(half, 1))
    arg = t.float().unsqueeze(1) * freqs.unsqueeze(0)
    emb = torch.cat([torch.cos(arg), torch.sin(arg)], 1)
    return torch.cat([emb, emb.new_zeros(len(t), 1)], 1) if dim % 2 else emb


class RowDenoiser(nn.Module):
    """DiffRec's MLP f(x_t, t) -> x̂_0 over rows of ``n_items`` (see the module docstring).

    ``dropout`` applies to the input row when a ``drop_gen`` is given (the mask drawn from it: the ELBO term;
    the code's ``mess_dropout``), never in the reverse chain; ``bf16`` runs the linear layers under bfloat16
    autocast (output float32)."""

    def __init__(self, n_items: int, dims: Sequence[int], emb_size: int, norm: bool = False, dropout: float = 0.5,
                 bf16: bool = False):
        super().__init__()
        self.emb_size, self.norm, self.dropout, self.bf16 = int(emb_size), bool(norm), float(dropout), bool(bf16)
        dims = [int(d) for d in dims]
        ins = [n_items + self.emb_size] + dims[::-1]
        outs = dims + [n_items]
        self.emb_layer = nn.Linear(self.emb_size, self.emb_size)
        self.in_layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(ins[:-1], ins[1:]))
        self.out_layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(outs[:-1], outs[1:]))
        for layer in (self.emb_layer, *self.in_layers, *self.out_layers):  # the code's init_weights
            fan_out, fan_in = layer.weight.shape
            nn.init.normal_(layer.weight, 0.0, math.sqrt(2.0 / (fan_in + fan_out)))
            nn.init.normal_(layer.bias, 0.0, 0.001)

    def forward(self, x: Tensor, t: Tensor, drop_gen: Optional[torch.Generator] = None) -> Tensor:
        emb = self.emb_layer(timestep_embedding(t, self.emb_size))
        if self.norm:
            x = nn.functional.normalize(x, dim=1)
        if drop_gen is not None and self.dropout > 0:
            keep = torch.rand(x.shape, generator=drop_gen, device=x.device) >= self.dropout
            x = x * keep / (1.0 - self.dropout)
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            h = torch.cat([x, emb], 1)
            for layer in self.in_layers:
                h = torch.tanh(layer(h))
            for n, layer in enumerate(self.out_layers):
                h = layer(h)
                if n < len(self.out_layers) - 1:
                    h = torch.tanh(h)
        return h.float()


def dense_rows(indptr: Tensor, indices: Tensor, rows: Tensor, n_cols: int) -> Tensor:
    """Rows ``rows`` of the binary CSR matrix (``indptr``, ``indices``) as a dense float32 (len(rows), n_cols)
    tensor, vectorised (one gather and one scatter)."""
    start, stop = indptr.index_select(0, rows), indptr.index_select(0, rows + 1)
    counts = stop - start
    owner = torch.repeat_interleave(torch.arange(len(rows), device=rows.device), counts)
    first = torch.cumsum(counts, 0) - counts
    pos = start.index_select(0, owner) + torch.arange(int(counts.sum()), device=rows.device) - first.index_select(0, owner)
    out = torch.zeros(len(rows), n_cols, device=rows.device)
    out[owner, indices.index_select(0, pos)] = 1.0
    return out
