"""Prior kinds: the one place a kind name is resolved to a class and back.

Every prior class declares its ``kind`` once (a class attribute) and is registered under it in
``invdiff.registry.PRIORS`` by ``register``. The capability types declare the kind a solver that
requires them runs on by default (``Prior``: ``pixel``, ``ConditionalPrior``: ``sr3``,
``LatentPrior``: ``latent``), so ``kind_of(solver.requires_prior)`` names the kind of prior to
load for a solver; ``kind_of(folder)`` reads it from the folder's ``prior.json``
(``kind_of`` lives in ``invdiff.priors.zoo``, which reads folders; this module imports nothing
of the priors, so every prior class can register here).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from invdiff.registry import PRIORS

if TYPE_CHECKING:
    from invdiff.priors.base import Prior

P = TypeVar("P", bound=type)


def register(cls: P) -> P:
    """Class decorator: register a prior class in ``PRIORS`` under its declared ``kind``."""
    kind = cls.__dict__.get("kind")
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"{cls.__name__} must declare its kind (a class attribute) to register")
    return PRIORS.register(kind)(cls)


def prior_class(kind: str) -> type[Prior]:
    """The prior class registered for ``kind`` (an unknown kind lists the valid ones)."""
    return PRIORS.entry(kind)


def folder_kinds() -> tuple[str, ...]:
    """The kinds whose priors load from a folder (``from_folder``): those a preset, a suite or
    ``prior.json`` can name."""
    return tuple(k for k, cls in PRIORS.items() if cls.loads_from_folder)


__all__ = ["folder_kinds", "prior_class", "register"]
