"""Phase retrieval: the magnitude of the oversampled Fourier transform (nonlinear).

``y = | F( pad( (x + 1) / 2 ) ) |`` with ``F`` the orthonormal 2-D DFT (``norm="ortho"``, so
``||y|| = ||(x+1)/2||``) and ``pad`` a centred zero padding of the ``H x W`` image to
``round(oversampling H) x round(oversampling W)`` (``oversampling`` >= 1, default 2: the
standard twice-oversampled setting that makes the problem well posed for non-negative images,
Fienup 1982; DPS, Chung et al. 2023, uses a padded FFT magnitude too). The input in [-1, 1]
is first mapped to the non-negative image ``(x + 1) / 2`` in [0, 1], as phase-retrieval
papers assume non-negative intensities; the zero frequency is at index (0, 0) (no fftshift).
Each channel is transformed separately.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from invdiff.operators.base import Operator
from invdiff.operators.validation import positive, shape3
from invdiff.registry import OPERATORS


@OPERATORS.register("phase_retrieval")
class PhaseRetrieval(Operator):
    """``y = |F(pad((x+1)/2))|``, output ``C x round(oversampling H) x round(oversampling W)``."""

    #: ``|F(pad(u))|`` is blind to translations in the padded frame and to the 180-degree
    #: rotation (the conjugate twin); scored by ``invdiff.metrics.psnr_aligned``
    ambiguities: ClassVar[frozenset[str]] = frozenset({"shift", "rot180"})

    def __init__(self, in_shape: Sequence[int] | None = None, oversampling: float = 2.0):
        shape = shape3(in_shape)
        oversampling = positive("oversampling", oversampling)
        if oversampling < 1:
            raise ValueError(f"oversampling must be >= 1, got {oversampling}")
        super().__init__(shape)
        self.oversampling = oversampling
        _, h, w = shape
        self.padded = (int(round(oversampling * h)), int(round(oversampling * w)))

    def out_shape(self) -> tuple[int, ...]:
        return (self.in_shape[0], *self.padded)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        (_, h, w), (ph, pw) = self.in_shape, self.padded
        top, left = (ph - h) // 2, (pw - w) // 2
        image = F.pad((x + 1) / 2, (left, pw - w - left, top, ph - h - top))
        return torch.fft.fft2(image, norm="ortho").abs()

    def extra_repr(self) -> str:
        return f"in_shape={self.in_shape}, oversampling={self.oversampling}"

    @classmethod
    def example(cls) -> PhaseRetrieval:
        return cls(in_shape=(1, 4, 5), oversampling=2.0)
