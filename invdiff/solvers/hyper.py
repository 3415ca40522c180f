"""Solver hyperparameters declared as data: default, type, valid range or choices, one line of doc.

Each solver lists its hyperparameters once::

    hypers = {
        "eta": Hyper(0.85, "DDIM-style stochasticity of Eq. 8", ge=0, le=1),
        "likelihood": Hyper("gaussian", "the data step", choices=("gaussian", "paper")),
    }

and ``Solver.hyperparameters`` checks names, types and ranges against it. The command line's
``--set``, the suite parser and ``invdiff.solve`` all go through that one check, so an
out-of-range value fails at parse time, before any data or prior is loaded, with a
``HyperparameterError`` naming the solver, the key, the value and what is valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class HyperparameterError(ValueError, TypeError):
    """An unknown hyperparameter, or a value of the wrong type or out of its declared range.

    Both a ``ValueError`` and a ``TypeError``: callers that caught either keep working.
    ``key`` names the offending hyperparameter (None for unknown names), so that a suite
    error can point at ``solvers[i].hyper.<key>``.
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Hyper:
    """One declared hyperparameter.

    ``kind`` is the accepted type (``float`` also accepts an int; ``bool`` is never a
    number); it defaults to the type of ``default``. ``ge``/``gt``/``le``/``lt`` bound a
    number, ``choices`` lists the valid values, ``optional`` accepts ``None`` (a value the
    solver derives from the problem, e.g. ``lam`` from the noise level).
    """

    default: Any
    doc: str
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[Any, ...] | None = None
    optional: bool = False
    kind: type | None = None
    #: where ``invdiff tune`` searches: ``(low, high)`` for a number (log-spaced when both are
    #: positive and ``high / low >= 10``), the values to try for a choice; None: not tuned
    search: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        if self.search is None:
            return
        if self.choices is not None or self.type in (bool, str):
            bad = [v for v in self.search if self.problem(v) is not None]
        else:
            bad = [] if len(self.search) == 2 and self.search[0] < self.search[1] else [self.search]
            bad += [v for v in self.search if self.problem(v) is not None]
        if bad:
            raise ValueError(f"search {self.search!r} of {self.doc!r}: invalid value(s) {bad}")

    @property
    def log_search(self) -> bool:
        """Whether the search is log-spaced (a positive range spanning a factor of 10 or more)."""
        if self.search is None or self.choices is not None or self.type not in (int, float):
            return False
        low, high = self.search
        return low > 0 and high / low >= 10

    def draw(self, u: float) -> Any:
        """The search-space value at quantile ``u`` in [0, 1) (a uniform draw maps to a
        uniform or log-uniform value, or to one of the choices)."""
        if self.search is None:
            raise ValueError(f"{self.doc!r} declares no search space")
        if self.choices is not None or self.type not in (int, float):
            return self.search[min(int(u * len(self.search)), len(self.search) - 1)]
        low, high = self.search
        value = low * (high / low) ** u if self.log_search else low + u * (high - low)
        return int(round(value)) if self.type is int else float(f"{value:.4g}")

    @property
    def type(self) -> type:
        if self.kind is not None:
            return self.kind
        return type(self.default)

    def valid(self) -> str:
        """What values are valid, in words: ``a number in [0, 1]``, ``one of 'a', 'b'``."""
        if self.choices is not None:
            text = "one of " + ", ".join(map(repr, self.choices))
        else:
            kind = self.type
            text = {
                bool: "true or false",
                int: "an integer",
                float: "a number",
                object: "any value",
            }.get(kind, f"a {kind.__name__}")
            bounds = self._bounds()
            if bounds:
                text += " " + bounds
        return text + (" or None" if self.optional else "")

    def _bounds(self) -> str:
        low = (self.ge, "[") if self.ge is not None else (self.gt, "(")
        high = (self.le, "]") if self.le is not None else (self.lt, ")")
        if low[0] is not None and high[0] is not None:
            return f"in {low[1]}{_num(low[0])}, {_num(high[0])}{high[1]}"
        if low[0] is not None:
            return f"{'>=' if low[1] == '[' else '>'} {_num(low[0])}"
        if high[0] is not None:
            return f"{'<=' if high[1] == ']' else '<'} {_num(high[0])}"
        return ""

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not valid, or None when it is."""
        if value is None:
            return None if self.optional else "must not be None"
        if self.choices is not None:
            return None if value in self.choices else "is not a valid choice"
        kind = self.type
        if kind is object:  # declared by name only
            return None
        if kind is bool:
            return None if isinstance(value, bool) else "must be true or false"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"must be {'an integer' if kind is int else 'a number'}"
        if kind is int and not isinstance(value, int):
            return "must be an integer"
        # ``not (value >= ge)`` so that NaN is out of every range
        if (
            (self.ge is not None and not value >= self.ge)
            or (self.gt is not None and not value > self.gt)
            or (self.le is not None and not value <= self.le)
            or (self.lt is not None and not value < self.lt)
        ):
            return "is out of range"
        return None


def _num(v: float) -> str:
    return f"{v:g}"


def check(solver: str, hypers: dict[str, Hyper], given: dict[str, Any]) -> dict[str, Any]:
    """The declared defaults overridden by ``given``, after checking every given value.

    Raises ``HyperparameterError`` naming ``solver``, the key, the value and the valid range.
    """
    unknown = sorted(set(given) - set(hypers))
    if unknown:
        raise HyperparameterError(
            f"solver {solver!r} has no hyperparameter(s) {unknown}; valid: {sorted(hypers)}"
        )
    for key, value in given.items():
        spec = hypers[key]
        why = spec.problem(value)
        if why is not None:
            raise HyperparameterError(
                f"solver {solver!r}: hyperparameter {key} = {value!r} {why}; {key} must be "
                f"{spec.valid()} ({spec.doc})",
                key=key,
            )
    return {**{k: h.default for k, h in hypers.items()}, **given}


def describe(hypers: dict[str, Hyper]) -> list[tuple[str, Any, str, str]]:
    """``(name, default, valid values, doc)`` per hyperparameter, for listings."""
    return [(k, h.default, h.valid(), h.doc + _search_note(h)) for k, h in hypers.items()]


def _search_note(h: Hyper) -> str:
    """`` [tune: 0.1..10 log]`` for a tunable hyperparameter (``invdiff tune``)."""
    if h.search is None:
        return ""
    if h.choices is not None or h.type not in (int, float):
        return " [tune: " + ", ".join(map(str, h.search)) + "]"
    low, high = h.search
    return f" [tune: {_num(low)}..{_num(high)}{' log' if h.log_search else ''}]"
