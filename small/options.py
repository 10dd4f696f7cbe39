"""The command line's value checks: argparse ``type=`` functions, one per kind of value.

Each turns the text of an option into its value or raises :class:`argparse.ArgumentTypeError`
with the reason (argparse prints it as one line and exits with status 2). Standard library only,
so that building the parser (``small --help``) stays fast.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

MIN_LEVELS, MAX_LEVELS = 2, 256  # compiler.mapper's range (not imported: `small --help` stays light)


def _check(text: str, parse: Callable[[str], Any], ok: Callable[[Any], bool], why: str) -> Any:
    """``parse(text)`` if it parses and ``ok`` holds for it; else the error ``why``."""
    try:
        value = parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(why) from None
    if not ok(value):
        raise argparse.ArgumentTypeError(why)
    return value


def positive_int(text: str) -> int:
    return _check(text, int, lambda v: v >= 1, f"{text!r} is not a positive whole number")


def positive_float(text: str) -> float:
    """A positive, finite number of seconds."""
    value = _check(text, float, lambda v: True, f"{text!r} is not a number")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return value


def tile(text: str) -> tuple[int, int]:
    """``ROWSxCOLS``, each at least 1."""
    rows, sep, cols = text.lower().partition("x")
    try:
        r, c = int(rows), int(cols)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not ROWSxCOLS (e.g. 64x64)") from None
    if not sep or r < 1 or c < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a tile needs at least 1 row and 1 column (e.g. 64x64)")
    return r, c


def lanes(text: str) -> int:
    """``--lanes``: a power of two."""
    return _check(text, int, lambda n: n >= 1 and not n & (n - 1), f"{text!r} is not a power of two (1, 2, 4, 8, ...)")


def workers(text: str) -> int:
    """``--workers``: a whole number >= 0."""
    return _check(text, int, lambda v: v >= 0,
                  f"{text!r} is not a whole number >= 0 (0: evaluate in this process, no Dask)")


def pixels(text: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` of a screenshot."""
    w, sep, h = text.lower().partition("x")
    if not (sep and w.isdigit() and h.isdigit() and 100 <= int(w) <= 8000 and 100 <= int(h) <= 16000):
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT in pixels (e.g. 1400x2000)")
    return int(w), int(h)


def levels(text: str) -> int:
    """Conductance levels per device."""
    return _check(text, int, lambda v: MIN_LEVELS <= v <= MAX_LEVELS,
                  f"{text!r} is not a number of conductance levels from {MIN_LEVELS} to {MAX_LEVELS}")


def stuck(text: str) -> float:
    """A stuck-device rate in [0, 1)."""
    return _check(text, float, lambda v: 0 <= v < 1,
                  f"{text!r} is not a stuck-device rate in [0, 1) (a fraction: 0.05 is 5 %)")


def comma_list(parse: Callable[[str], Any]) -> Callable[[str], tuple]:
    """Comma-separated values, each checked by ``parse``."""

    def parse_list(text: str) -> tuple:
        items = text.split(",")
        if any(not item.strip() for item in items):
            raise argparse.ArgumentTypeError(f"{text!r} has an empty item: give comma-separated values, e.g. 4,8,16")
        return tuple(parse(item.strip()) for item in items)

    return parse_list
