"""PSNR up to the ambiguities of a forward operator (phase retrieval's shifts and flip).

Some measurements cannot tell an image from its transforms: the Fourier magnitude
``|F(pad(u))|`` of phase retrieval is the same for ``u``, for ``u`` translated inside the
padded frame and for ``u`` rotated by 180 degrees (the conjugate twin ``u(-n)``; Fienup 1982,
Sec. II; Bendory et al. 2017, "Fourier phase retrieval: uniqueness and algorithms", Sec. 2).
A reconstruction that is one of those transforms is a correct answer, and a plain PSNR scores
a correct but 2-pixel-shifted reconstruction like a bad one. ``psnr_aligned`` scores each
reconstruction against the best-matching member of its ambiguity group:

    PSNR_aligned(x_hat, x) = max over g in G of PSNR(g x_hat, x),

with ``G`` the circular shifts of the ``H x W`` grid (``"shift"``) and, with ``"rot180"``, the
same composed with the 180-degree rotation. All ``H W`` shifts are scored at once through the
cross-correlation theorem: ``||roll(a, s) - b||^2 = ||a||^2 + ||b||^2 - 2 (a * b)(s)`` with the
correlation ``(a * b)(s) = IFFT(conj(FFT(a)) FFT(b))(s)`` summed over channels. Images are
mapped to [0, 1] as for ``psnr`` (data_range 1). Taking a maximum over ``2 H W`` candidates
favours any reconstruction a little (a few tenths of a dB for noise-like errors), so tables
state that the column is aligned; with no ambiguities the value is the plain PSNR.
"""

from __future__ import annotations

from collections.abc import Collection

import torch
from torch import Tensor

from invdiff.metrics.fidelity import _unit_with_nan, check_pair, psnr, to_unit

#: the ambiguity groups an operator can declare (``Operator.ambiguities``)
AMBIGUITIES = frozenset({"shift", "rot180"})


def _best_shift_mse(a: Tensor, b: Tensor) -> Tensor:
    """``min_s mean ||roll(a, s) - b||^2`` per sample over all circular shifts ``s``."""
    a64, b64 = a.double(), b.double()
    corr = torch.fft.ifft2(torch.fft.fft2(a64).conj() * torch.fft.fft2(b64)).real.sum(1)
    energy = a64.square().flatten(1).sum(1) + b64.square().flatten(1).sum(1)
    sq = energy[:, None] - 2 * corr.flatten(1).max(1).values[:, None]
    return (sq[:, 0] / a[0].numel()).clamp_min(0)


def psnr_aligned(x: Tensor, ref: Tensor, ambiguities: Collection[str] = AMBIGUITIES) -> Tensor:
    """PSNR per sample of ``x`` against ``ref`` after the best transform in ``ambiguities``
    (a subset of ``{"shift", "rot180"}``; see the module docstring). Returns ``N`` values."""
    unknown = set(ambiguities) - AMBIGUITIES
    if unknown:
        raise ValueError(f"unknown ambiguities {sorted(unknown)}; known: {sorted(AMBIGUITIES)}")
    if not ambiguities:
        return psnr(x, ref)
    x, ref = check_pair(x, ref)
    (u, bad), b = _unit_with_nan(x), to_unit(ref.float())
    candidates = [u, u.flip(-2, -1)] if "rot180" in ambiguities else [u]
    if "shift" in ambiguities:
        mse = torch.stack([_best_shift_mse(c, b) for c in candidates]).min(0).values
    else:
        mse = torch.stack([(c - b).double().square().flatten(1).mean(1) for c in candidates])
        mse = mse.min(0).values
    out = (-10 * torch.log10(mse)).float()
    return out.masked_fill(bad, float("nan"))
