"""Argument types for the command line: numbers are checked when the command line is parsed.

argparse reports a rejected value as ``invdiff CMD: error: argument --x: ...`` with exit 2,
before anything is loaded.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _number(kind: type, low: float, inclusive: bool, what: str) -> Callable[[str], int | float]:
    noun = "an integer" if kind is int else "a number"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun} {what}, got {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number {what}, got {text!r}")
        if value < low or (value == low and not inclusive):
            raise argparse.ArgumentTypeError(f"expected {noun} {what}, got {text!r}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


positive_int = _number(int, 0, False, ">= 1")
non_negative_int = _number(int, 0, True, ">= 0")
positive_float = _number(float, 0.0, False, "> 0")
non_negative_float = _number(float, 0.0, True, ">= 0")
