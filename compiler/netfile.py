"""SMALL's own network file (``.small``): the IR as JSON plus arrays, in one ``.npz`` archive.

Layout (version 1): the archive holds ``network.json`` (a 0-d unicode array with the JSON text)
and one ``.npy`` entry per array. In the JSON, an array is written as ``{"$array": "<key>"}``.
No pickle is involved on either side; see ``docs/semantics.md`` for the fields. Files are
written atomically and byte-reproducibly.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from small.errors import FileFormatError, NetworkError
from small.fileio import read_npz, write_npz
from small.schema import check
from small.limits import NEURON_BYTES, check_memory
from .ir import Network

FORMAT = "small-network"
VERSION = 1
SUFFIX = ".small"

# The JSON of a network file (arrays as {"$array": key}); the IR's own checks (Network.validate) then
# bound the values. Structure only: a name that is a list, a size that is text, never reach the IR.
_ARRAY = {"type": "object", "properties": {"$array": {"type": "string"}}, "required": ["$array"],
          "additionalProperties": False}
_VALUES = {"anyOf": [{"type": "number"}, _ARRAY]}
_NAME = {"type": "string"}
_COUNT = {"type": "integer", "minimum": 0}
SCHEMA = {
    "type": "object",
    "required": ["format", "version", "network"],
    "properties": {"format": {"const": FORMAT}, "version": {"const": VERSION}, "network": {
        "type": "object",
        "required": ["dt"],
        "properties": {
            "name": _NAME,
            "dt": {"type": "number", "exclusiveMinimum": 0},
            "inputs": {"type": "array", "items": {"type": "object", "required": ["name", "shape"], "properties": {
                "name": _NAME, "shape": {"type": "array", "items": _COUNT}}}},
            "populations": {"type": "array", "items": {"type": "object", "required": ["name", "size", "neuron"],
                                                       "properties": {
                "name": _NAME, "size": _COUNT, "bias": _VALUES,
                "neuron": {"type": "object", "required": ["model"], "properties": {
                    "model": _NAME, "reset": _NAME, "fire_at_threshold": {"type": "boolean"}},
                    "additionalProperties": _VALUES}}}},
            "projections": {"type": "array", "items": {"type": "object", "required": ["source", "target", "weight"],
                                                       "properties": {
                "name": _NAME, "source": _NAME, "target": _NAME, "delay": _COUNT,
                "weight": {"anyOf": [_ARRAY, {"type": "object", "required": ["format", "shape", "data", "indices",
                                                                             "indptr"], "properties": {
                    "format": {"const": "csr"}, "shape": {"type": "array", "items": _COUNT, "minItems": 2,
                                                          "maxItems": 2},
                    "data": _ARRAY, "indices": _ARRAY, "indptr": _ARRAY}}]}}}},
            "outputs": {"anyOf": [  # [[name, population], ...] in order; older files: {name: population}
                {"type": "array", "items": {"type": "array", "items": _NAME, "minItems": 2, "maxItems": 2}},
                {"type": "object", "additionalProperties": _NAME}]},
            "metadata": {"type": "object"},
        }}},
}



def save_network(net: Network, path: str | os.PathLike) -> None:
    """Validate ``net`` and write it to ``path`` (conventionally ``*.small``)."""
    net.validate()
    arrays: dict[str, np.ndarray] = {}

    def encode(value: Any, key: str) -> Any:
        if isinstance(value, np.ndarray):
            arrays[key] = value
            return {"$array": key}
        if isinstance(value, dict):
            return {k: encode(v, f"{key}/{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [encode(v, f"{key}/{i}") for i, v in enumerate(value)]
        if isinstance(value, np.generic):
            return value.item()
        return value

    doc = {"format": FORMAT, "version": VERSION, "network": encode(net.to_dict(), "network")}
    arrays["network.json"] = np.array(json.dumps(doc, sort_keys=True, allow_nan=False))
    write_npz(path, arrays)


def load_network(path: str | os.PathLike) -> Network:
    """Read and validate a ``.small`` file; :class:`FileFormatError` if it is not one."""
    path = Path(path)
    arrays = read_npz(path, what="network file")
    if "network.json" not in arrays:
        raise FileFormatError(f"{str(path)!r} is an .npz archive but not a SMALL network file (no network.json)")
    try:
        doc = json.loads(str(arrays["network.json"]))
    except ValueError as exc:
        raise FileFormatError(f"{str(path)!r}: network.json is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise FileFormatError(f"{str(path)!r} is not a SMALL network file (format {doc.get('format') if isinstance(doc, dict) else None!r})")
    if doc.get("version") != VERSION:
        raise FileFormatError(
            f"{str(path)!r} has network file version {doc.get('version')!r}; this SMALL reads version {VERSION}: "
            "re-create the file with this version of `small import`"
        )

    def decode(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {"$array"}:
                key = value["$array"]
                if key not in arrays:
                    raise FileFormatError(f"{str(path)!r} refers to array {key!r}, which the archive lacks")
                return arrays[key]
            return {k: decode(v) for k, v in value.items()}
        if isinstance(value, list):
            return [decode(v) for v in value]
        return value

    check(SCHEMA, doc, f"network file {str(path)!r}")
    _check_declared_sizes(doc.get("network"), path)
    try:
        net = Network.from_dict(decode(doc.get("network", {})))
        return net.validate()
    except NetworkError as exc:
        raise FileFormatError(f"{str(path)!r}: {exc}") from None


def _check_declared_sizes(network: Any, path: Path) -> None:
    """Refuse a network whose declared population and input sizes (not backed by arrays in the file:
    a scalar parameter serves any size) would exceed the memory budget once simulated or compiled."""
    if not isinstance(network, dict):
        return
    sizes = [p.get("size") for p in network.get("populations", []) if isinstance(p, dict)]
    sizes += [math.prod(i["shape"]) for i in network.get("inputs", []) if isinstance(i, dict)
              and isinstance(i.get("shape"), list) and all(isinstance(n, int) for n in i["shape"])]
    neurons = sum(n for n in sizes if isinstance(n, int) and n > 0)
    check_memory(neurons * NEURON_BYTES, f"{str(path)!r} declares {neurons} neurons and inputs, which", error=FileFormatError)
