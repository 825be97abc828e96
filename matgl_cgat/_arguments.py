"""Argument types of the command line that refuse impossible numbers before any work.

argparse turns the ``ArgumentTypeError`` these raise into one line naming the option
(``mgl-cgat predict: error: argument --threads: -1 is outside 1..1024``) and exit status 2, instead of
a traceback an hour into a run, or a batch size that exhausts memory in the sampler.
"""

from __future__ import annotations

import argparse
import math


def whole(lowest: int, most: int):
    """A whole number from ``lowest`` to ``most``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not lowest <= value <= most:
            raise argparse.ArgumentTypeError(f"{value} is outside {lowest}..{most}")
        return value

    parse.__name__ = "whole number"
    return parse


def positive_int(most: int):
    """A whole number from 1 to ``most``."""
    return whole(1, most)


def count(most: int):
    """A whole number from 0 to ``most``."""
    return whole(0, most)


def finite_float(lowest: float):
    """A finite number at or above ``lowest`` (nan and inf are refused)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < lowest:
            raise argparse.ArgumentTypeError(f"{text} must be a finite number of at least {lowest:g}")
        return value

    parse.__name__ = "number"
    return parse


def positive_float(text: str) -> float:
    """A finite number above zero."""
    value = finite_float(0.0)(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text} must be above zero")
    return value
