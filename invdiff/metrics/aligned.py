"""PSNR and LPIPS up to the ambiguities of a forward operator (phase retrieval's shifts and flip).

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

``align`` returns that best-matching transform ``g* x_hat`` itself (the ``g`` of least squared
error), and ``lpips_aligned(x_hat, x) = LPIPS(g* x_hat, x)`` scores it perceptually: the
transform is chosen by squared error, once, not by searching LPIPS over ``G`` (which would cost
``2 H W`` network evaluations and reward the search more than the image).
"""

from __future__ import annotations

from collections.abc import Collection

import torch
from torch import Tensor

from invdiff.metrics.fidelity import _unit_with_nan, check_pair, psnr, to_unit
from invdiff.metrics.perceptual import lpips

#: the ambiguity groups an operator can declare (``Operator.ambiguities``)
AMBIGUITIES = frozenset({"shift", "rot180"})


def _best_shift_mse(a: Tensor, b: Tensor) -> Tensor:
    """``min_s mean ||roll(a, s) - b||^2`` per sample over all circular shifts ``s``."""
    a64, b64 = a.double(), b.double()
    corr = _correlation(a64, b64)
    energy = a64.square().flatten(1).sum(1) + b64.square().flatten(1).sum(1)
    sq = energy[:, None] - 2 * corr.flatten(1).max(1).values[:, None]
    return (sq[:, 0] / a[0].numel()).clamp_min(0)


def _check_ambiguities(ambiguities: Collection[str]) -> None:
    unknown = set(ambiguities) - AMBIGUITIES
    if unknown:
        raise ValueError(f"unknown ambiguities {sorted(unknown)}; known: {sorted(AMBIGUITIES)}")


def _correlation(a: Tensor, b: Tensor) -> Tensor:
    """``(a * b)(s) = sum_n a(n) b(n + s)`` for every circular shift ``s`` (``N x H x W``)."""
    return torch.fft.ifft2(torch.fft.fft2(a.double()).conj() * torch.fft.fft2(b.double())).real.sum(
        1
    )


def align(x: Tensor, ref: Tensor, ambiguities: Collection[str] = AMBIGUITIES) -> Tensor:
    """The member of ``x``'s ambiguity group (circular shifts, and with ``"rot180"`` the
    180-degree rotation) nearest ``ref`` in squared error, per sample; ``x`` itself with no
    ambiguities. Same shape and range as ``x``; a sample holding NaN is returned unchanged."""
    _check_ambiguities(ambiguities)
    x, ref = check_pair(x, ref)
    if not ambiguities:
        return x
    candidates = [x, x.flip(-2, -1)] if "rot180" in ambiguities else [x]
    height, width = x.shape[-2:]
    if "shift" in ambiguities:
        # ||roll(a, s) - b||^2 is smallest where the correlation is largest (norms do not move)
        corr = torch.stack([_correlation(c, ref) for c in candidates]).flatten(2)  # K x N x HW
        scores = corr.nan_to_num(float("-inf"))
        flat = scores.permute(1, 0, 2).flatten(1).argmax(1)  # per sample, over (K, HW)
        which, shift = flat // (height * width), flat % (height * width)
        out = torch.stack(
            [
                candidates[int(k)][i].roll((int(s) // width, int(s) % width), dims=(-2, -1))
                for i, (k, s) in enumerate(zip(which, shift))
            ]
        )
    else:
        err = torch.stack([(c - ref).double().square().flatten(1).sum(1) for c in candidates])
        which = err.nan_to_num(float("inf")).argmin(0)
        out = torch.stack([candidates[int(k)][i] for i, k in enumerate(which)])
    bad = ~torch.isfinite(x).flatten(1).all(1)
    return torch.where(bad[:, None, None, None], x, out)


def lpips_aligned(
    x: Tensor, ref: Tensor, ambiguities: Collection[str] = AMBIGUITIES, net: str = "alex"
) -> Tensor:
    """LPIPS per sample of ``align(x, ref, ambiguities)`` against ``ref`` (module docstring)."""
    return lpips(align(x, ref, ambiguities), ref, net=net)


def psnr_aligned(x: Tensor, ref: Tensor, ambiguities: Collection[str] = AMBIGUITIES) -> Tensor:
    """PSNR per sample of ``x`` against ``ref`` after the best transform in ``ambiguities``
    (a subset of ``{"shift", "rot180"}``; see the module docstring). Returns ``N`` values."""
    _check_ambiguities(ambiguities)
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
