"""The JSON schemas of the compiler's files: ``image.json`` and fault maps.

Each file has one declarative schema (JSON Schema, draft 2020-12), checked by ``jsonschema``
before any value is used or any array allocated: types, required and unknown fields, ranges.
What a schema cannot say (array shapes against the declared geometry, routing tables, two
entries naming one device) stays as code in ``compiler/image.py`` and ``compiler/faults.py``
and runs after it. :func:`small.schema.check` turns the first violation into one line naming the
file, the field and what was expected.
"""

from __future__ import annotations

from typing import Any

from small.options import MAX_LEVELS, MIN_LEVELS

# Bounds of the formats (docs/hardware-image.md). Generous for any real chip, small enough that
# no declared size can make a reader allocate more than the machine holds.
MAX_TILE_SIDE = 65536  # rows or columns of one crossbar
MAX_TILES = 65536  # tiles of one chip
MAX_DELAY_SLOTS = 32768  # route_delay and input_delay are int16, delays in [0, delay_slots)
MAX_LATENCY = 65535  # chip steps before a population's network step 0 (one per layer, about)
MAX_REVERSED_FACTOR = 100.0  # |update factor| of a reversed device (TiOx: about 1, clipped to 2)


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
        "levels": _integer(MIN_LEVELS, MAX_LEVELS),
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
            "name": _NAME, "model": {"enum": ["lif", "cuba_lif", "if", "li", "alif", "cuba_li"]}, "size": _SIZE,
            "reset": {"enum": ["zero", "subtract", None]}, "latency": _LATENCY},
            required=["name", "model", "size", "latency"])},  # the simulators and the report read every latency
        "outputs": {"type": "array", "items": _object({
            "name": _NAME, "population": _NAME, "size": _SIZE, "latency": _LATENCY,
            "kind": {"enum": ["spikes", "value"]}}, required=["name", "population", "size", "latency", "kind"])},
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
        "version": {"enum": [1, 2]},  # 2: reversed devices
        "geometry": _object({"tiles": _integer(1, MAX_TILES), "rows": _integer(1, MAX_TILE_SIDE),
                             "cols": _integer(1, MAX_TILE_SIDE)}),
        # [tile, row, col, device, state]. Indices below the geometry's and each device listed once
        # are checked after the schema, in numpy: jsonschema's uniqueItems compares entries of mixed
        # types pairwise, a hang on a hostile file of a million entries.
        "stuck": {"type": "array", "items": {
            "type": "array", "minItems": 5, "items": False,
            "prefixItems": [_integer(0, MAX_TILES - 1), _integer(0, MAX_TILE_SIDE - 1), _integer(0, MAX_TILE_SIDE - 1),
                            {"enum": ["pos", "neg"]}, {"enum": ["high", "low"]}]}},
        # [tile, row, col, device, update factor]: a reversed device moves the wrong way, by a
        # factor in [-MAX_REVERSED_FACTOR, 0)
        "reversed": {"type": "array", "items": {
            "type": "array", "minItems": 5, "items": False,
            "prefixItems": [_integer(0, MAX_TILES - 1), _integer(0, MAX_TILE_SIDE - 1), _integer(0, MAX_TILE_SIDE - 1),
                            {"enum": ["pos", "neg"]},
                            {"type": "number", "minimum": -MAX_REVERSED_FACTOR, "exclusiveMaximum": 0}]}},
    }, required=["format", "version", "geometry", "stuck"]),
}
