"""Prior kinds: the one place a kind name is resolved to a class and back.

Every prior class declares its ``kind`` once (a class attribute) and is registered under it in
``invdiff.registry.PRIORS`` by ``register``. The capability types declare the kind a solver that
requires them runs on by default (``Prior``: ``pixel``, ``ConditionalPrior``: ``sr3``,
``LatentPrior``: ``latent``), so ``kind_of(solver.requires_prior)`` names the kind of prior to
load for a solver; ``kind_of(folder)`` reads it from the folder's ``prior.json``.
"""

from __future__ import annotations

from pathlib import Path
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
    return tuple(k for k, cls in PRIORS.items() if hasattr(cls, "from_folder"))


def kind_of(obj: object) -> str:
    """The kind of a prior, a prior class (or capability type) or a prior folder / shipped name.

    A folder's kind is the ``kind`` of its ``prior.json`` (``pixel`` for a plain diffusers
    checkpoint without one).
    """
    if isinstance(obj, str | Path):
        from invdiff.priors.checks import read_prior_json
        from invdiff.priors.zoo import resolve

        return str(read_prior_json(resolve(obj)).get("kind", "pixel"))
    cls = obj if isinstance(obj, type) else type(obj)
    kind = getattr(cls, "kind", None)
    if not isinstance(kind, str):
        raise TypeError(f"{cls.__name__} is not a prior type (it declares no kind)")
    return kind


__all__ = ["folder_kinds", "kind_of", "prior_class", "register"]
