"""Name -> class registries for operators, solvers, priors, problems and data sets.

Registration is by decorator and refuses duplicate names; an unknown name is an error that
lists the valid ones. Presets and the command line refer to these names, never to module
paths, so moving code never breaks a benchmark file.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that is not in a registry; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return str(self.args[0])


class Registry(Generic[T]):
    """A named collection of factories (classes or functions) of one kind."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@OPERATORS.register("gaussian_blur")``."""
        if not isinstance(name, str) or not name:
            raise ValueError(
                f"{self.kind} registry: a name must be a non-empty string, got {name!r}"
            )

        def decorate(entry: T) -> T:
            if name in self._entries and self._entries[name] is not entry:
                raise ValueError(
                    f"{self.kind} registry: the name {name!r} is already taken by "
                    f"{self._entries[name]!r}; choose another name"
                )
            self._entries[name] = entry
            try:
                entry.registry_name = name  # type: ignore[attr-defined]
            except (AttributeError, TypeError):
                pass
            return entry

        return decorate

    def unregister(self, name: str) -> T:
        """Remove and return the entry ``name`` (for tests that register a temporary one)."""
        entry = self.entry(name)
        del self._entries[name]
        return entry

    @contextlib.contextmanager
    def registered(self, name: str, entry: T) -> Iterator[T]:
        """Register ``entry`` as ``name`` for the ``with`` block only, so that a test's
        temporary entry never leaks into other tests."""
        self.register(name)(entry)
        try:
            yield entry
        finally:
            self.unregister(name)

    def entry(self, name: str) -> T:
        """The registered class or function itself."""
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(str(name), self._entries, n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{hint} Valid names: {', '.join(self.names())}"
            ) from None

    def get(self, name: str, **kwargs: Any) -> Any:
        """Build the entry named ``name`` with keyword arguments."""
        return self.entry(name)(**kwargs)  # type: ignore[operator]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} entries)"


OPERATORS: Registry = Registry("operator")
SOLVERS: Registry = Registry("solver")
PRIORS: Registry = Registry("prior")
PROBLEMS: Registry = Registry("problem")
DATASETS: Registry = Registry("data set")
