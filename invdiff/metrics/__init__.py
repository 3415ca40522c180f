"""Image-quality and distribution metrics."""

from invdiff.metrics.sliced_wasserstein import sliced_wasserstein

__all__ = ["sliced_wasserstein"]
