"""Named problem presets: operator + parameters + noise + data set + image size (``problems/*.toml``)."""

from __future__ import annotations

from invdiff.registry import PROBLEMS


def names() -> list[str]:
    return PROBLEMS.names()


def get(name: str):  # noqa: ANN201 - replaced by the full preset loader
    return PROBLEMS.get(name)
