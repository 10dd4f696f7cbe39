"""Calibration files: what characterising a device, a crossbar and a neuron tells the flow.

``small analog characterize --device pcm -o calib.json`` writes one JSON file (:class:`Calibration`):

``device``            the device model (``analog_models.devices``) whose non-idealities
                      ``sim/analog.py`` applies;
``levels``            the conductance levels the device holds apart reliably (its
                      characterisation's distinguishable levels), the default ``--levels`` of
                      ``small compile --calibration``;
``g_min_uS, g_max_uS``  the programmable range the compiler maps levels onto;
``parameters``        the device model's parameters (programming noise, drift, read noise);
``ir_drop``           the crossbar's wire resistance per segment and the column-current error it
                      causes on a ``rows x cols`` tile (nodal model, ``analog_models.crossbar``):
                      ``worst_rel_error`` (every device at G_max, every row driven) and
                      ``typical_rel_error`` (uniform random conductances);
``neuron``            the analog LIF circuit's fit to the digital neuron (``analog_models.neuron``):
                      alpha, threshold, refractory steps at the network's step, and the fit errors;
``energy``            joules per read pulse per siemens and per neuron spike, from ngspice
                      (``analog_models.energy``), with the assumptions.

``small compile --calibration`` (memristive target) takes the levels and the range, estimates
the energy per inference on the example input, and records the calibration in the image (``image.json`` ``calibration``); ``sim/analog.py``'s
:meth:`~sim.analog.AnalogSimulator.calibrated` reads the device and the wire resistance from there.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from small.errors import FileFormatError
from small.options import MAX_LEVELS, MIN_LEVELS
from small.schema import problem as schema_problem

SCHEMA = 1
DEVICES = ("pcm", "tiox")  # the devices sim/analog.py models (the SPICE compact models have no statistics)


def _number(minimum: float, description: str, *, exclusive: bool = False) -> dict[str, Any]:
    return {"type": "number", "exclusiveMinimum" if exclusive else "minimum": minimum, "description": description}


_ENERGY_FIGURES = {"read_J_per_S": _number(0, "a number of joules per siemens >= 0"),
                   "spike_J": _number(0, "a number of joules >= 0"),
                   "v_read_V": _number(0, "a positive number of volts", exclusive=True),
                   "t_pulse_s": _number(0, "a positive number of seconds", exclusive=True),
                   "assumptions": {"type": "array", "items": {"type": "string"}, "description": "a list of strings"}}

#: The calibration file (JSON Schema, draft 2020-12, checked by ``jsonschema``). Each field's
#: ``description`` is what a refusal says it must be; the file is read as strict JSON (no NaN
#: or infinity, which pass every ``minimum``), and ``g_max_uS > g_min_uS`` is checked after it.
CALIBRATION_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "SMALL calibration file",
    "type": "object",
    "properties": {
        "schema": {"const": SCHEMA},
        "device": {"enum": list(DEVICES), "description": f"one of {', '.join(DEVICES)}"},
        "levels": {"type": "integer", "minimum": MIN_LEVELS, "maximum": MAX_LEVELS,
                   "description": f"an integer in [{MIN_LEVELS}, {MAX_LEVELS}]"},
        "g_min_uS": _number(0, "a number >= 0"),
        "g_max_uS": _number(0, "a number above g_min_uS", exclusive=True),
        "parameters": {"type": "object", "description": "an object (the device model's parameters)"},
        "ir_drop": {"type": "object", "description": "an object (the wire resistance and its error)", "properties": {
            "r_wire_ohm": _number(0, "a number of ohms >= 0"),
            "rows": {"type": "integer", "minimum": 1, "description": "a positive integer"},
            "cols": {"type": "integer", "minimum": 1, "description": "a positive integer"}}},
        "neuron": {"type": "object", "description": "an object (the analog neuron's fit)"},
        # empty, or every figure analog_models.energy.per_inference reads
        "energy": {"type": "object", "description": "an object (energy figures)", "properties": _ENERGY_FIGURES,
                   "if": {"minProperties": 1}, "then": {"required": list(_ENERGY_FIGURES)}},
    },
    "required": ["schema", "device", "levels", "g_min_uS", "g_max_uS"],
    "additionalProperties": False,
}


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number in JSON")


@dataclass
class Calibration:
    device: str
    levels: int
    g_min_uS: float
    g_max_uS: float
    parameters: dict = field(default_factory=dict)
    ir_drop: dict = field(default_factory=dict)
    neuron: dict = field(default_factory=dict)
    energy: dict = field(default_factory=dict)
    schema: int = SCHEMA

    def save(self, path: str | Path) -> None:
        from small.fileio import atomic_output, json_text

        with atomic_output(path) as tmp:
            tmp.write_text(json_text(asdict(self)))

    @classmethod
    def load(cls, path: str | Path) -> "Calibration":
        path = Path(path)
        if not path.is_file():
            raise FileFormatError(f"calibration file {str(path)!r} does not exist: make one with "
                                  "`small analog characterize --device pcm -o calib.json`")
        try:
            d = json.loads(path.read_text(), parse_constant=_refuse_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise FileFormatError(f"{str(path)!r} is not a JSON calibration file ({exc})") from None
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            raise FileFormatError(f"{str(path)!r} is not a SMALL calibration file of schema {SCHEMA}: write it again "
                                  "with `small analog characterize`")
        problem = schema_problem(CALIBRATION_SCHEMA, d)
        if problem is None and not d["g_max_uS"] > d["g_min_uS"]:
            problem = f"'g_max_uS' must be a number above g_min_uS, not {d['g_max_uS']!r}"
        if problem:
            raise FileFormatError(f"{str(path)!r}: {problem}")
        return cls(**{k: d[k] for k in ("device", "levels", "g_min_uS", "g_max_uS", "parameters", "ir_drop", "neuron",
                                         "energy") if k in d})

    @property
    def r_wire(self) -> float:
        return float(self.ir_drop.get("r_wire_ohm", 0.0))


def ir_drop(g_max: float, *, r_wire: float, rows: int, cols: int, v_read: float = 0.2, seed: int = 0) -> dict:
    """Column-current error of IR drop on a ``rows x cols`` tile (nodal model), worst and typical."""
    from .crossbar import NodalCrossbar, ideal_column_currents

    v = np.full(rows, v_read)
    out = {"r_wire_ohm": r_wire, "rows": rows, "cols": cols, "v_read_V": v_read}
    rng = np.random.default_rng(seed)
    for name, G in (("worst_rel_error", np.full((rows, cols), g_max)),
                    ("typical_rel_error", rng.uniform(0, g_max, size=(rows, cols)))):
        ideal = ideal_column_currents(G, v)
        model = NodalCrossbar(G, r_wire).column_currents(v)
        out[name] = float(np.max(np.abs(model - ideal)) / np.max(np.abs(ideal)))
    return out


def characterize(device: str, *, r_wire: float = 1.0, tile: tuple[int, int] = (64, 64), dt: float = 1e-3,
                 seed: int = 0) -> Calibration:
    """Characterise ``device``, a tile's IR drop and the analog neuron (at step ``dt``)."""
    from . import devices, energy, neuron

    if device not in DEVICES:
        raise ValueError(f"device {device!r} cannot be calibrated: use one of {', '.join(DEVICES)} "
                         "(the compact SPICE models have no statistics for sim/analog.py)")
    report = devices.characterize(device, seed=seed)
    figures = report.figures()
    noise = devices.noise_model(device)
    fit = neuron.fit_lif(neuron.NeuronParams(), dt=dt, seed=seed)
    return Calibration(device=device, levels=int(figures["n_levels"]), g_min_uS=noise.g_min * 1e6,
                       g_max_uS=noise.g_max * 1e6, parameters=figures["parameters"],
                       ir_drop=ir_drop(noise.g_max, r_wire=r_wire, rows=tile[0], cols=tile[1], seed=seed),
                       neuron=fit.to_dict(), energy=energy.measure())
