"""The value checks of options: argparse ``type=`` functions, and the same rules for the library.

Each ``type=`` function turns the text of an option into its value or raises
:class:`argparse.ArgumentTypeError` with the reason (argparse prints it as one line and exits
with status 2). The rules themselves (:data:`RULES`) check a parsed value, so the library's
boundary (``compiler.mapper.CompileOptions.validate``, ``compiler.faults.random_faults``) gives
a script the same words through :func:`require`. Standard library only, so that building the
parser (``small --help``) stays fast.
"""

from __future__ import annotations

import argparse
import math
import numbers
from typing import Any, Callable

from .errors import SmallError
from .limits import CELL_BYTES, check_memory

MIN_LEVELS, MAX_LEVELS = 2, 256  # levels are stored as uint8
SEED_MAX = 2**63 - 1  # pymetis takes a signed 64-bit seed (a 20-digit one was a traceback); l2l derives 63-bit seeds


def _whole(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _finite(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


#: What a value of each kind must be: a test of the parsed value, and the words that say it.
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "count": (lambda v: _whole(v) and v >= 1, "a positive whole number"),
    "levels": (lambda v: _whole(v) and MIN_LEVELS <= v <= MAX_LEVELS,
               f"a number of conductance levels from {MIN_LEVELS} to {MAX_LEVELS}"),
    "seed": (lambda v: _whole(v) and 0 <= v <= SEED_MAX, "a seed from 0 to 2^63 - 1"),
    "fraction": (lambda v: _finite(v) and 0 <= v <= 1, "a valid fraction: it must lie in [0, 1] (0.05 is 5 %)"),
    "seconds": (lambda v: _finite(v) and v > 0, "a positive number of seconds"),
}


def problem(kind: str, name: str, value: Any) -> str | None:
    """Why ``value`` of ``name`` breaks the rule ``kind`` of :data:`RULES` (None if it keeps it).

    >>> problem("levels", "levels", 0)
    'levels 0 is not a number of conductance levels from 2 to 256'
    """
    ok, what = RULES[kind]
    return None if ok(value) else f"{name} {value!r} is not {what}"


def require(*checks: tuple[str, str, Any], error: type[Exception] = ValueError) -> None:
    """Raise ``error`` with :func:`problem`'s words for the first ``(kind, name, value)`` breaking its rule."""
    for check in checks:
        why = problem(*check)
        if why:
            raise error(why)


def _check(text: str, parse: Callable[[str], Any], ok: Callable[[Any], bool], why: str) -> Any:
    """``parse(text)`` if it parses and ``ok`` holds for it; else the error ``why``."""
    try:
        value = parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(why) from None
    if not ok(value):
        raise argparse.ArgumentTypeError(why)
    return value


def _rule(kind: str, parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse ``type=`` function: ``parse(text)`` if it parses and keeps the rule ``kind``."""
    ok, what = RULES[kind]

    def check(text: str) -> Any:
        return _check(text, parse, ok, f"{text!r} is not {what}")

    check.__name__ = kind
    return check


positive_int = _rule("count", int)
"""A whole number >= 1 (``--samples``, ``--max-split``, ``faults random --tiles``)."""
positive_float = _rule("seconds", float)
"""A positive, finite number of seconds (``--dt``)."""
levels = _rule("levels", int)
"""Conductance levels per device."""
seed = _rule("seed", int)
"""A random seed that numpy and METIS accept."""
fraction = _rule("fraction", float)
"""A fraction in [0, 1] (``faults random --rate``, ``--high-fraction``)."""


def tile(text: str) -> tuple[int, int]:
    """``ROWSxCOLS``, each at least 1."""
    rows, sep, cols = text.lower().partition("x")
    try:
        r, c = int(rows), int(cols)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not ROWSxCOLS (e.g. 64x64)") from None
    if not sep or r < 1 or c < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a tile needs at least 1 row and 1 column (e.g. 64x64)")
    try:  # one tile must fit in memory; the whole image is checked once its tile count is known
        check_memory(r * c * CELL_BYTES, f"one {r}x{c} tile ({r * c} cells)", error=argparse.ArgumentTypeError)
    except SmallError as exc:  # a bad SMALL_MAX_MEMORY_GIB
        raise argparse.ArgumentTypeError(str(exc)) from None
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
