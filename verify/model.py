"""The reference side of verification: what the chip must do, from ``sim/``, as host events.

:class:`ReferenceModel` runs the image's simulator (``sim/digital.py`` for a digital image,
``sim/memristive.py`` with ideal devices for a memristive one) and turns its result into the
transactions a host sees on the chip's ports (``hdl/chip.py``): per sample, the commands of
every chip step and the events every step must produce. :class:`Codec` packs and unpacks those
events with the layouts of ``hdl/events.py``. Nothing here imports a simulator of HDL, so the
cocotb testbench and the Amaranth-simulator driver (``verify/simulate.py``) share it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from amaranth.hdl import Shape
from amaranth.lib import data

from compiler.image import NON_SPIKING_MODELS, HardwareImage
from sim import chip_simulator

from hdl import events
from hdl.events import OP_INPUT, Geometry
from .analog import adc_code


class Codec:
    """Integers <-> field dicts for one ``StructLayout`` (first field at bit 0, as Amaranth lays it)."""

    def __init__(self, layout: data.StructLayout):
        self.size = layout.size
        self.fields = [(name, f.offset, f.width, Shape.cast(f.shape).signed) for name, f in layout]

    def pack(self, values: dict[str, int]) -> int:
        word = 0
        for name, offset, width, _ in self.fields:
            word |= (int(values.get(name, 0)) & ((1 << width) - 1)) << offset
        return word

    def unpack(self, word: int) -> dict[str, int]:
        out = {}
        for name, offset, width, signed in self.fields:
            v = (word >> offset) & ((1 << width) - 1)
            out[name] = v - (1 << width) if signed and v >> (width - 1) else v
        return out


@dataclass
class StepEvents:
    """What one chip step produces: host spikes and values (addresses ``tile * C + col``), and
    every neuron column's spikes as they enter the router (``internal``)."""

    spikes: set[int] = field(default_factory=set)
    values: dict[int, int] = field(default_factory=dict)
    internal: set[int] = field(default_factory=set)


class ReferenceModel:
    """Commands to send and events to expect, per sample and chip step, for inputs ``xs``.

    ``xs`` is ``[T, batch, n_in]`` in host units (as ``ChipSimulator.prepare_inputs`` returns:
    already divided by each input's scale). Each sample runs ``T + max L`` chip steps (``L`` the
    outputs' latencies), so every output of the last network step is produced. ``capacity``: the
    chip the image is loaded into, whose port layouts (e.g. the input field of a command, as wide
    as the chip's ``n_inputs``) the codecs follow; ``None`` for a chip built for the image alone.
    """

    def __init__(self, image: HardwareImage, analog: str = "ideal", capacity=None):
        self.image = image
        self.sim = chip_simulator(image, analog)
        self.geometry = capacity.geometry if capacity is not None else Geometry.of(image)
        a = image.arrays
        addr = self.sim.addr
        flat = lambda key: a[key].reshape(-1)[addr]  # noqa: E731 - one column property per neuron index
        self.host = flat("host_out").astype(bool)
        self.li = np.isin(flat("col_model"), NON_SPIKING_MODELS)
        self.start = flat("param/start").astype(np.int64)
        self.frac = self.geometry.arithmetic.frac_bits
        self.v_bits = self.geometry.arithmetic.v_bits

    def commands(self, x: np.ndarray) -> list[list[dict]]:
        """Per chip step, the ``OP_INPUT`` commands of one sample ``x`` ``[T, n_in]``."""
        payload = self.sim.encode_inputs(np.asarray(x)[:, None, :])[:, 0]
        if payload.dtype.kind == "f":  # a memristive image: the chip's rows take integer payloads
            if not np.all(payload == np.rint(payload)):
                raise ValueError("the chip's host inputs are integers: the inputs (divided by the input scale) "
                                 "must be whole numbers for a memristive image")
            payload = payload.astype(np.int64)
        steps = [[{"op": OP_INPUT, "input": int(e), "payload": int(p[e])} for e in np.flatnonzero(p)] for p in payload]
        return steps + [[] for _ in range(self.latency)]

    @property
    def latency(self) -> int:
        return max([int(o["latency"]) for o in self.image.meta["outputs"]] + [0])

    def expect(self, xs: np.ndarray) -> list[list[StepEvents]]:
        """Per sample, per chip step, the events the chip must produce."""
        result = self.sim.run(np.asarray(xs), record_spikes=True)
        spikes, v = result.spikes["chip"], result.membrane["chip"]
        addr = self.sim.addr
        values_of = self.host & self.li
        out = []
        for b in range(spikes.shape[1]):
            steps = []
            for t in range(spikes.shape[0]):
                fired = spikes[t, b]
                shown = values_of & (t >= self.start)
                steps.append(StepEvents(spikes=set(addr[fired & self.host].tolist()),
                                        values=dict(zip(addr[shown].tolist(), self.values(v[t, b, shown], shown))),
                                        internal=set(addr[fired].tolist())))
            out.append(steps)
        return out

    def value(self, v) -> int:
        """A membrane as the chip reports it: state units (a memristive tile's ADC rounds and saturates)."""
        if isinstance(v, (int, np.integer)):
            return int(v)
        return adc_code(v, self.frac, self.v_bits)

    def values(self, v: np.ndarray, shown: np.ndarray) -> list[int]:
        """The membranes ``v`` of the neurons ``shown`` (bool ``[K]``) as the chip reports them: a
        memristive tile's controller multiplies each ADC code by its column's digital scale."""
        codes = [self.value(x) for x in v]
        if hasattr(self.sim, "value_codes") and codes:
            codes = self.sim.value_codes(codes, np.flatnonzero(shown), self.v_bits).tolist()
        return codes


def codecs(g: Geometry) -> tuple[Codec, Codec, Codec]:
    """Codecs of the host command, host output and spike layouts."""
    return Codec(events.command_layout(g)), Codec(events.output_layout(g)), Codec(events.spike_layout(g))
