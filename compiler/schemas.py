"""The JSON schemas of the compiler's files: ``image.json`` and fault maps.

Each file has one declarative schema (JSON Schema, draft 2020-12), checked by ``jsonschema``
before any value is used or any array allocated: types, required and unknown fields, ranges.
What a schema cannot say (array shapes against the declared geometry, routing tables, two
entries naming one device) stays as code in ``compiler/image.py`` and ``compiler/faults.py``
and runs after it. :func:`check` turns the first violation into one line naming the file, the
field and what was expected.

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

from small.errors import FileFormatError

# Bounds of the formats (docs/hardware-image.md). Generous for any real chip, small enough that
# no declared size can make a reader allocate more than the machine holds.
MAX_TILE_SIDE = 65536  # rows or columns of one crossbar
MAX_TILES = 65536  # tiles of one chip
MAX_LEVELS = 256  # levels are stored as uint8
MAX_DELAY_SLOTS = 32768  # route_delay and input_delay are int16, delays in [0, delay_slots)
MAX_LATENCY = 65535  # chip steps before a population's network step 0 (one per layer, about)


def _integer(n_min: int | None = None, n_max: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "integer"}
    if n_min is not None:
        out["minimum"] = n_min
    if n_max is not None:
        out["maximum"] = n_max
    return out


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    """An object with exactly these fields (all required unless ``required`` names some)."""
    return {"type": "object", "properties": properties, "additionalProperties": False,
            "required": list(properties) if required is None else required}


_NAME = {"type": "string", "minLength": 1}
_SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_LATENCY = _integer(0, MAX_LATENCY)
_SIZE = _integer(1, MAX_TILES * MAX_TILE_SIDE)  # a population fits the columns of the largest chip

#: ``image.json`` (docs/hardware-image.md, "image.json").
IMAGE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "SMALL hardware image (image.json)",
    "type": "object",
    "properties": {
        "format": {"const": "small-hardware-image"},
        "version": {"const": 1},
        "toolchain": {"type": "string"},
        "target": {"enum": ["digital", "memristive"]},
        "network": _object({"name": {"type": "string"}, "source": {"type": "string"}, "sha256": {"type": "string"},
                            "dt": {"type": "number", "exclusiveMinimum": 0}}, required=["dt"]),
        "seed": _integer(0, 2**63 - 1),
        "tile": _object({"rows": _integer(1, MAX_TILE_SIDE), "cols": _integer(1, MAX_TILE_SIDE)}),
        "levels": _integer(2, MAX_LEVELS),
        "n_tiles": _integer(1, MAX_TILES),
        "chip_tiles": _integer(1, MAX_TILES),
        "delay_slots": _integer(1, MAX_DELAY_SLOTS),
        # the digital twin computes in int64: a state times a decay (v_bits + decay_bits + 1 bits) fits
        "arithmetic": _object({"v_bits": _integer(2, 32), "frac_bits": _integer(0, 30), "decay_bits": _integer(1, 30),
                               "input_bits": _integer(2, 32), "refractory_bits": _integer(1, 32)}),
        "device": _object({"g_min_uS": {"type": "number", "minimum": 0}, "g_max_uS": {"type": "number", "minimum": 0},
                           "model": _NAME, "r_wire_ohm": {"type": "number", "minimum": 0}},
                          required=["g_min_uS", "g_max_uS"]),
        "inputs": {"type": "array", "items": _object({
            "name": _NAME, "size": _SIZE, "shape": {"type": "array", "items": _SIZE},
            "scale": {"type": "number", "exclusiveMinimum": 0}})},
        "populations": {"type": "array", "items": _object({
            "name": _NAME, "model": {"enum": ["lif", "cuba_lif", "if", "li", "alif"]}, "size": _SIZE,
            "reset": {"enum": ["zero", "subtract", None]}, "latency": _LATENCY}, required=["name", "model", "size"])},
        "outputs": {"type": "array", "items": _object({
            "name": _NAME, "population": _NAME, "size": _SIZE, "latency": _LATENCY,
            "kind": {"enum": ["spikes", "value"]}}, required=["name", "population", "kind"])},
        "options": _object({"partitioner": {"type": "string"}, "max_split": _SIZE,
                            "max_tiles": {"type": ["integer", "null"], "minimum": 1},
                            "scale": {"enum": ["tile", "column"]}}, required=[]),
        "arrays_sha256": _SHA256,
        "json_sha256": _SHA256,
    },
    "required": ["format", "version", "toolchain", "target", "network", "seed", "tile", "levels", "n_tiles",
                 "delay_slots", "inputs", "populations", "outputs"],
    "additionalProperties": False,
    "allOf": [{"if": {"properties": {"target": {"const": "digital"}}},
               "then": {"required": ["arithmetic"], "not": {"required": ["device"]}}},
              {"if": {"properties": {"target": {"const": "memristive"}}},
               "then": {"not": {"required": ["arithmetic"]}}}],
}

#: Fault maps (docs/hardware-image.md, "Fault maps").
FAULTS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "SMALL fault map",
    **_object({
        "format": {"const": "small-faults"},
        "version": {"const": 1},
        "geometry": _object({"tiles": _integer(1, MAX_TILES), "rows": _integer(1, MAX_TILE_SIDE),
                             "cols": _integer(1, MAX_TILE_SIDE)}),
        # [tile, row, col, device, state]. Indices below the geometry's and each device listed once
        # are checked after the schema, in numpy: jsonschema's uniqueItems compares entries of mixed
        # types pairwise, a hang on a hostile file of a million entries.
        "stuck": {"type": "array", "items": {
            "type": "array", "minItems": 5, "items": False,
            "prefixItems": [_integer(0, MAX_TILES - 1), _integer(0, MAX_TILE_SIDE - 1), _integer(0, MAX_TILE_SIDE - 1),
                            {"enum": ["pos", "neg"]}, {"enum": ["high", "low"]}]}},
    }),
}


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
    """One line for a schema violation: the field's path, what it must be, what it is."""
    kind, want, value = error.validator, error.validator_value, error.instance
    field = _path(error) or "the file"
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


def check(schema: dict[str, Any], doc: Any, what: str) -> None:
    """Validate ``doc`` against ``schema``; :class:`FileFormatError` ``"invalid <what>: <field> must be ..."``."""
    validator = _VALIDATORS.get(id(schema))
    if validator is None:
        validator = _VALIDATORS[id(schema)] = _Validator(schema)
    error = best_match(validator.iter_errors(doc))
    if error is not None:
        raise FileFormatError(f"invalid {what}: {describe(error)}")
