"""Diffusion priors in sigma-space and the zoo of shipped checkpoints.

prior = invdiff.priors.load("fmnist32-pixel")      # a shipped checkpoint
prior = invdiff.priors.load("/path/to/folder")     # a folder written by `invdiff train`
invdiff.priors.names()
"""

from __future__ import annotations

from invdiff.priors.base import ConditionalPrior, LatentPrior, Prior, sigma_column, vp_sigmas
from invdiff.priors.gmm import GaussianMixture, GaussianMixturePrior
from invdiff.priors.pixel import PixelPrior
from invdiff.priors.zoo import PriorInfo, describe, load, names

__all__ = [
    "ConditionalPrior",
    "GaussianMixture",
    "GaussianMixturePrior",
    "LatentPrior",
    "PixelPrior",
    "Prior",
    "PriorInfo",
    "describe",
    "load",
    "names",
    "sigma_column",
    "vp_sigmas",
]
