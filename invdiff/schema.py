"""One small schema for the project's TOML files: problem presets and benchmark suites.

A file's layout is a ``Table`` of ``Key``s (type, default, range, choices, nested tables);
``check`` walks a parsed TOML table against it and collects every problem at once. Each
message names the key as a dotted path (``solvers[2].hyper.eta``), the value and what would be
valid (the range, the choices with a did-you-mean), and ``FileError`` puts the file in front::

    problems/fmnist-sr4.toml:
      operator.name: unknown operator 'super_resolutoin' (not a registered operator); did you
      mean 'super_resolution'? valid: ...

It is deliberately tiny (no new dependency): TOML already gives typed values, so a schema only
has to say which types, which ranges and which names are allowed.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true/false",
    list: "a list",
    dict: "a table",
}


class FileError(ValueError):
    """A TOML file (or table) that does not fit its schema; ``issues`` lists every problem."""

    def __init__(self, message: str, issues: Sequence[str] = ()):
        super().__init__(message)
        self.issues = list(issues)


@dataclass(frozen=True)
class Key:
    """One entry of a table: its type(s) and what values are valid.

    ``kind`` is a TOML type (``str``, ``int``, ``float``, ``bool``, ``list``, ``dict``) or a
    tuple of them; an ``int`` is accepted where a ``float`` is, a ``bool`` never counts as a
    number. ``low``/``high`` bound a number (inclusive); ``choices`` (or a function giving them,
    for registries filled at import time) restricts a string to names, ``noun`` words the
    message (``unknown solver 'x'``). ``item`` checks each element of a list, ``table`` a
    nested table with its own keys, ``values`` each value of a table of free keys.
    """

    kind: type | tuple[type, ...]
    default: Any = None
    required: bool = False
    low: float | None = None
    high: float | None = None
    choices: Sequence[Any] | Callable[[], Sequence[Any]] | None = None
    noun: str = "value"
    item: Key | None = None
    table: Table | None = None
    values: Key | None = None
    unique: bool = False
    nonempty: bool = False
    desc: str = ""  # how the message words the type, e.g. "a positive integer"

    def valid_choices(self) -> list[Any]:
        c = self.choices() if callable(self.choices) else self.choices
        return list(c or [])

    def describe(self) -> str:
        if self.desc:
            return self.desc
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        text = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
        if self.low is not None and self.high is not None:
            text += f" in [{self.low}, {self.high}]"
        elif self.low is not None:
            text += f" >= {self.low}"
        elif self.high is not None:
            text += f" <= {self.high}"
        return text


@dataclass(frozen=True)
class Table:
    """A table's keys; ``extra = True`` lets other keys through (the caller checks them, e.g.
    against a factory's signature). ``noun`` words unknown-key messages (``unknown kind``)."""

    keys: Mapping[str, Key] = field(default_factory=dict)
    extra: bool = False
    noun: str = "key"


def _is(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is dict:
        return isinstance(value, Mapping)
    return isinstance(value, kind)


def did_you_mean(value: Any, valid: Sequence[Any]) -> str:
    """``"did you mean 'x'? "`` for a near miss among ``valid`` names, else ``""``."""
    close = difflib.get_close_matches(str(value), [str(v) for v in valid], n=2)
    return f"did you mean {' or '.join(map(repr, close))}? " if close else ""


def check_value(value: Any, key: Key, path: str, errors: list[str]) -> Any:
    """Check one value against ``key``; append messages to ``errors``; return the value."""
    kinds = key.kind if isinstance(key.kind, tuple) else (key.kind,)
    if not any(_is(value, k) for k in kinds):
        errors.append(f"{path} must be {key.describe()}, got {value!r}")
        return value
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and (
        (key.low is not None and value < key.low) or (key.high is not None and value > key.high)
    ):
        errors.append(f"{path} must be {key.describe()}, got {value!r}")
    if key.choices is not None and isinstance(value, str | int) and not isinstance(value, bool):
        valid = key.valid_choices()
        if value not in valid and key.noun == "value":
            errors.append(f"{path} must be one of {valid}, got {value!r}")
        elif value not in valid:
            errors.append(
                f"{path}: unknown {key.noun} {value!r} (not a registered {key.noun}); "
                f"{did_you_mean(value, valid)}valid: {', '.join(map(str, valid))}"
            )
    if key.nonempty and isinstance(value, str | list) and not value:
        errors.append(f"{path} must not be empty")
    if isinstance(value, list):
        if key.unique and len({repr(v) for v in value}) != len(value):
            errors.append(f"{path} must not repeat an entry, got {value!r}")
        if key.item is not None:
            value = [check_value(v, key.item, f"{path}[{i}]", errors) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        if key.table is not None:
            value = check(value, key.table, errors, path)
        elif key.values is not None:
            value = {k: check_value(v, key.values, f"{path}.{k}", errors) for k, v in value.items()}
        else:
            value = dict(value)
    return value


def check(data: Any, table: Table, errors: list[str], path: str = "") -> dict[str, Any]:
    """Check ``data`` against ``table``: unknown keys, missing keys, each value. Returns the
    values with defaults filled in for absent optional keys (``None`` defaults are left out)."""
    where = path or "the file"
    if not isinstance(data, Mapping):
        errors.append(f"{where} must be a table, got {data!r}")
        return {}
    prefix = f"{path}." if path else ""
    if not table.extra:
        for name in data:
            if name not in table.keys:
                valid = ", ".join(table.keys) or "none"
                errors.append(
                    f"{prefix}{name}: unknown {table.noun}; {did_you_mean(name, list(table.keys))}"
                    f"valid {table.noun}s: {valid}"
                )
    out: dict[str, Any] = {}  # in the file's order: tables are written back (run.json)
    for name, value in data.items():
        key = table.keys.get(name)
        out[name] = value if key is None else check_value(value, key, prefix + name, errors)
    for name, key in table.keys.items():
        if name in data:
            continue
        if key.required:
            errors.append(f"{prefix}{name}: missing key ({key.describe()})")
        elif key.default is not None:
            out[name] = key.default() if callable(key.default) else key.default
    return out


def fail(error: type[FileError], where: str, errors: list[str]) -> FileError:
    """One ``error`` naming the file ``where`` and listing ``errors``."""
    if len(errors) == 1:
        return error(f"{where}: {errors[0]}", errors)
    return error(f"{where} has {len(errors)} problems:\n  " + "\n  ".join(errors), errors)


__all__ = ["FileError", "Key", "Table", "check", "check_value", "did_you_mean", "fail"]
