"""Every number a benchmark table shows, as one entry: its function, direction and format.

A per-image metric is one :class:`Metric` in :data:`METRICS`: the suite parser accepts its
name, the harness scores each reconstruction with ``fn(xhat, x)`` (``N x C x H x W`` in
[-1, 1], one value per image), and the tables print it with ``fmt`` under ``title`` with an
arrow and the best mean per problem in bold, the best being the largest value when
``higher_is_better`` and the smallest otherwise. Distribution metrics (FID/KID) and the cost
columns (time, NFE) are entries too, so every table reads direction and format from here; costs
are never bolded (a faster solver is not a better reconstruction).

Adding a metric::

    from invdiff.metrics import METRICS, Metric
    METRICS.register(Metric("mae", mae_fn, higher_is_better=False, title="MAE", fmt="{:.4f}"))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from invdiff.metrics.aligned import lpips_aligned, psnr_aligned
from invdiff.metrics.fidelity import psnr, ssim
from invdiff.metrics.perceptual import lpips
from invdiff.metrics.posterior import POSTERIOR_SCORES

Kind = Literal["image", "posterior", "distribution", "cost"]


@dataclass(frozen=True)
class Metric:
    """One table column: ``fn`` scores ``(xhat, x)`` per image, or a batch of K posterior
    samples per image (kind ``"posterior"``: ``fn(PosteriorDraws)``; ``None`` for the others).

    A metric with a ``target`` (a coverage's nominal level, a consistency of 1) is best near
    it, not at an extreme, so its columns are never bolded (``ranked``)."""

    name: str
    fn: Callable[[Tensor, Tensor], Tensor] | None
    higher_is_better: bool
    title: str
    fmt: str = "{:.3g}"
    kind: Kind = "image"
    #: scored by a suite that names no ``metrics``
    default: bool = False
    #: the ideal value where it is neither the largest nor the smallest (else None)
    target: float | None = None
    #: ``fn(xhat, x, ambiguities)``: also given the operator's ``ambiguities`` (transforms of
    #: the image the measurement cannot tell apart, e.g. phase retrieval's shifts and flip)
    ambiguity_aware: bool = False

    @property
    def arrow(self) -> str:
        """``↑`` / ``↓``, or ``→ target`` for a metric that is best at a value."""
        if self.target is not None:
            return f"→ {self.target:g}"
        return "↑" if self.higher_is_better else "↓"

    @property
    def ranked(self) -> bool:
        """Whether the tables mark a best value (quality metrics yes; costs and coverages,
        whose best is a target rather than an extreme, no)."""
        return self.kind != "cost" and self.target is None

    def better(self, a: float, b: float) -> bool:
        """``a`` strictly better than ``b`` in this metric's direction."""
        return a > b if self.higher_is_better else a < b


class MetricRegistry:
    """Metrics by name, in registration order (the order of the default columns)."""

    def __init__(self) -> None:
        self._entries: dict[str, Metric] = {}

    def register(self, metric: Metric) -> Metric:
        if metric.name in self._entries and self._entries[metric.name] != metric:
            raise ValueError(f"metric {metric.name!r} is already registered; choose another name")
        if metric.kind in ("image", "posterior") and metric.fn is None:
            raise ValueError(f"per-image metric {metric.name!r} needs a function fn(xhat, x)")
        self._entries[metric.name] = metric
        return metric

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def get(self, name: str) -> Metric | None:
        """The entry, or ``None`` for a column the registry does not know."""
        return self._entries.get(name)

    def names(self, kind: Kind | None = None) -> list[str]:
        return [m.name for m in self._entries.values() if kind is None or m.kind == kind]

    def defaults(self) -> list[str]:
        return [m.name for m in self._entries.values() if m.default]

    def __getitem__(self, name: str) -> Metric:
        if name not in self._entries:
            raise KeyError(f"unknown metric {name!r}; known: {', '.join(self._entries)}")
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)


METRICS = MetricRegistry()
for _m in (
    Metric("psnr", psnr, True, "PSNR [dB]", "{:.2f}", default=True),
    Metric(
        "psnr_aligned",
        psnr_aligned,
        True,
        "PSNR up to the operator's ambiguities [dB]",
        "{:.2f}",
        ambiguity_aware=True,
    ),
    Metric("ssim", ssim, True, "SSIM", "{:.3f}", default=True),
    Metric("lpips", lpips, False, "LPIPS", "{:.3f}", default=True),
    Metric(
        "lpips_aligned",
        lpips_aligned,
        False,
        "LPIPS up to the operator's ambiguities",
        "{:.3f}",
        ambiguity_aware=True,
    ),
    Metric("fid", None, False, "FID", "{:.1f}", kind="distribution"),
    Metric("kid", None, False, "KID", "{:.4f}", kind="distribution"),
    Metric("wall_s", None, False, "time/image [s]", "{:.3g}", kind="cost"),
    Metric("nfe", None, False, "NFE", "{:.0f}", kind="cost"),
):
    METRICS.register(_m)
for _name, (_fn, _higher, _title, _fmt, _target) in POSTERIOR_SCORES.items():
    METRICS.register(Metric(_name, _fn, _higher, _title, _fmt, kind="posterior", target=_target))
del _m, _name, _fn, _higher, _title, _fmt, _target

__all__ = ["METRICS", "Metric", "MetricRegistry"]
