"""invdiff: imaging inverse problems solved with diffusion priors.

Images are float tensors ``N x C x H x W`` in [-1, 1]; priors work in sigma-space
(``x_sigma = x0 + sigma * eps``); every random choice takes a ``torch.Generator``.

    import invdiff
    op = invdiff.operators.get("gaussian_blur", size=61, sigma=3.0)
    prior = invdiff.priors.load("fmnist32-pixel")
    xhat = invdiff.solve("dps", prior=prior, operator=op, y=y, noise=invdiff.noise.Gaussian(0.05),
                         steps=100, generator=torch.Generator().manual_seed(0))
"""

from invdiff import data, images, metrics, noise, operators, priors, problems, samplers, solvers
from invdiff.solvers import solve

__version__ = "0.1.0"

__all__ = [
    "data",
    "images",
    "metrics",
    "noise",
    "operators",
    "priors",
    "problems",
    "samplers",
    "solve",
    "solvers",
    "__version__",
]
