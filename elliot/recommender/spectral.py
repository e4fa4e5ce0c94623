"""Learnable filters in the frequency domain of the embedding dimension (FFT along the last axis), shared by
spectrum-based models (SMORE, Ong & Khong, WSDM 2025).

For x ∈ R^{n x d}, X = rfft(x) ∈ C^{n x (⌊d/2⌋+1)} (orthonormal, ``norm="ortho"``, so the transform and its
inverse are unitary), and a complex weight w ∈ C^{⌊d/2⌋+1} shared by all rows:

* :meth:`SpectralFilter.filter`  x ↦ irfft(X ⊙ w, n=d)                 (a global circular convolution of each
  row with one learned kernel: denoising by attenuating frequencies);
* :meth:`SpectralFilter.fuse`    (x_1, ..., x_M) ↦ irfft(w ⊙ Π_m X_m, n=d)   (the product of spectra = the
  circular convolution of the rows of the inputs: a cross-modal fusion).

The weight is stored as a real (1, ⌊d/2⌋+1, 2) tensor (real and imaginary parts, ``torch.view_as_complex``)
initialised N(0, 1), as SMORE's ``*_complex_weight``.  Autograd differentiates through ``torch.fft`` on CPU
and GPU alike.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn


class SpectralFilter(nn.Module):
    """One learned complex filter over the rfft frequencies of a ``dim``-wide embedding."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = int(dim)
        self.weight = nn.Parameter(torch.randn(1, self.dim // 2 + 1, 2))

    def complex_weight(self) -> Tensor:
        return torch.view_as_complex(self.weight)

    @staticmethod
    def spectrum(x: Tensor) -> Tensor:
        """rfft of the rows of ``x`` (orthonormal)."""
        return torch.fft.rfft(x, dim=-1, norm="ortho")

    def inverse(self, spectrum: Tensor) -> Tensor:
        """irfft of ``spectrum`` ⊙ w back to ``dim`` real values per row (orthonormal)."""
        return torch.fft.irfft(spectrum * self.complex_weight(), n=self.dim, dim=-1, norm="ortho")

    def filter(self, x: Tensor) -> Tensor:
        """irfft(rfft(x) ⊙ w): each row convolved (circularly) with the learned kernel."""
        return self.inverse(self.spectrum(x))

    def fuse(self, spectra: Sequence[Tensor]) -> Tensor:
        """irfft(w ⊙ Π_m X_m) of precomputed spectra X_m (:meth:`spectrum`), all of the same shape."""
        product = spectra[0]
        for s in spectra[1:]:
            product = product * s
        return self.inverse(product)
