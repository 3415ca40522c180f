"""Diffusion priors in sigma-space and the zoo of shipped checkpoints.

prior = invdiff.priors.load("fmnist32-pixel")      # a shipped checkpoint
prior = invdiff.priors.load("/path/to/folder")     # a folder written by `invdiff train`
invdiff.priors.names()
invdiff.priors.kind_of(prior_or_class_or_folder)   # "pixel", "sr3", "latent", ...
invdiff.priors.prior_class("sr3")                   # the class registered for a kind
"""

from __future__ import annotations

from invdiff.priors.base import ConditionalPrior, LatentPrior, Prior, sigma_column, vp_sigmas
from invdiff.priors.controlnet import ControlNetPrior
from invdiff.priors.gmm import GaussianMixture, GaussianMixturePrior
from invdiff.priors.kinds import folder_kinds, prior_class
from invdiff.priors.latent import LatentDiffusionPrior
from invdiff.priors.pixel import PixelPrior
from invdiff.priors.sr3 import SR3Prior
from invdiff.priors.zoo import PriorInfo, describe, kind_of, load, names

__all__ = [
    "ConditionalPrior",
    "ControlNetPrior",
    "GaussianMixture",
    "GaussianMixturePrior",
    "LatentDiffusionPrior",
    "LatentPrior",
    "PixelPrior",
    "Prior",
    "PriorInfo",
    "SR3Prior",
    "describe",
    "folder_kinds",
    "kind_of",
    "load",
    "names",
    "prior_class",
    "sigma_column",
    "vp_sigmas",
]
