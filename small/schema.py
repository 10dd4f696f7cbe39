"""Checking a JSON document against a declarative schema (JSON Schema, draft 2020-12, through
``jsonschema``) and saying the first violation in one line: the field's path, what it must be,
what it is. The schemas themselves live with their files' readers (``compiler/schemas.py``,
``analog_models/calibration.py``).

Two types are stricter than JSON Schema's: an ``integer`` is a JSON integer (``1.0`` is not a
tile index), and a ``number`` is finite (Python's ``json`` reads ``NaN`` and ``Infinity``, which
pass every ``minimum``).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

from .errors import FileFormatError


# numbers.Integral and Real: a compiler's image in memory may hold numpy scalars (an l2l seed);
# read from JSON, an integer is an int and 8.0 a float
def _strict_integer(checker: Any, value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _finite_number(checker: Any, value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many(
        {"integer": _strict_integer, "number": _finite_number}),
)
_VALIDATORS: dict[int, Any] = {}

_TYPE_WORDS = {"integer": "an integer", "number": "a finite number", "string": "a string", "array": "a list",
               "object": "an object", "boolean": "true or false", "null": "null"}

#: What a value must be, in words, for each keyword that bounds one value.
_EXPECTED = {
    "type": lambda want: " or ".join(_TYPE_WORDS.get(t, t) for t in (want if isinstance(want, list) else [want])),
    "minimum": lambda want: f">= {want}", "maximum": lambda want: f"<= {want}",
    "exclusiveMinimum": lambda want: f"> {want}", "exclusiveMaximum": lambda want: f"< {want}",
    "const": repr, "enum": lambda want: f"one of {', '.join(map(repr, want))}",
    "minLength": lambda want: f"at least {want} characters long", "pattern": lambda want: f"text matching {want!r}",
}


def _path(error: ValidationError) -> str:
    out = ""
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe(error: ValidationError) -> str:
    """One line for a schema violation: the field's path, what it must be, what it is. A bounded
    field whose schema has a ``description`` is said in those words: ``'levels' must be an integer
    in [2, 256], not 1``."""
    kind, want, value = error.validator, error.validator_value, error.instance
    field = _path(error) or "the file"
    if kind in _EXPECTED and "description" in error.schema:
        return f"{field!r} must be {error.schema['description']}, not {value!r}"
    if kind in _EXPECTED:
        return f"{field} must be {_EXPECTED[kind](want)}, not {_short(value)}"
    if kind == "required":
        return f"{field} lacks the field {next(k for k in want if k not in value)!r}"
    if kind == "additionalProperties":
        known = error.schema.get("properties", {})
        extra = sorted(k for k in value if k not in known)
        return f"{field} has the unknown field {extra[0]!r}" + (f" (known: {', '.join(known)})" if known else "")
    if kind == "minItems":
        return f"{field} must have at least {want} entries, not {len(value)}"
    if kind in ("maxItems", "items"):
        return f"{field} has too many entries ({len(value)})"
    if kind == "not":
        return f"{field} has a field its target does not use"
    return f"{field}: {error.message}"


def problem(schema: dict[str, Any], doc: Any) -> str | None:
    """The first violation of ``schema`` by ``doc`` in one line (:func:`describe`), None if none."""
    validator = _VALIDATORS.get(id(schema))
    if validator is None:
        validator = _VALIDATORS[id(schema)] = _Validator(schema)
    error = best_match(validator.iter_errors(doc))
    return None if error is None else describe(error)


def check(schema: dict[str, Any], doc: Any, what: str) -> None:
    """Validate ``doc`` against ``schema``; :class:`FileFormatError` ``"invalid <what>: <field> must be ..."``."""
    why = problem(schema, doc)
    if why is not None:
        raise FileFormatError(f"invalid {what}: {why}")
