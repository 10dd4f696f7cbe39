"""Address events of a SMALL chip, defined once as Amaranth data layouts.

Field widths follow from a compiled image's geometry (``docs/architecture.md``, "Events").
Everything that moves events — the router, the tiles, the host bridge, the cocotb drivers
and the compiler's reports — builds its layouts here; nobody computes a bit position by hand.
``amaranth.lib.data`` is pure data: importing this module starts no simulator or toolchain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amaranth.hdl import Shape, signed
from amaranth.lib import data

from compiler.image import Arithmetic, HardwareImage


def _sum_bound(image: HardwareImage, ar: Arithmetic) -> int:
    """The largest column sum a neuron can see: sum over its rows (all tiles of its group) of
    ``|l+ - l-|`` times the row's largest payload (``2^(input_bits-1)`` from a host input, 1 from a
    neuron)."""
    a, T, R, C = image.arrays, image.n_tiles, image.rows, image.cols
    payload = np.ones((T, R), dtype=np.int64)
    payload[a["input_tile"], a["input_row"]] = 1 << (ar.input_bits - 1)
    column = np.einsum("trc,tr->tc", np.abs(image.weights().astype(np.int64)), payload).reshape(-1)
    kind = a["col_kind"].reshape(-1)
    home = np.where(kind == 2, a["merge_to"].reshape(-1), np.arange(T * C))
    total = np.zeros(T * C, dtype=np.int64)
    np.add.at(total, home, column)
    return int(total.max(initial=0))


def bits_for(n: int) -> int:
    """Width of an unsigned index over ``n`` values (at least 1 bit)."""
    return max(1, (max(1, n) - 1).bit_length())


@dataclass(frozen=True)
class Geometry:
    """The numbers that size a chip's events and memories."""

    tiles: int
    rows: int
    cols: int
    delay_slots: int
    n_inputs: int
    arithmetic: Arithmetic = Arithmetic()
    acc_bits: int = 32
    """Width of a column sum (signed): enough for every row of a neuron's tiles at full scale."""

    @classmethod
    def of(cls, image: HardwareImage) -> "Geometry":
        ar = image.arithmetic if image.target == "digital" else Arithmetic()
        return cls(tiles=image.n_tiles, rows=image.rows, cols=image.cols, delay_slots=image.delay_slots,
                   n_inputs=sum(int(i["size"]) for i in image.meta["inputs"]), arithmetic=ar,
                   acc_bits=_sum_bound(image, ar).bit_length() + 1)

    @property
    def tile_bits(self) -> int:
        return bits_for(self.tiles)

    @property
    def row_bits(self) -> int:
        return bits_for(self.rows)

    @property
    def col_bits(self) -> int:
        return bits_for(self.cols)

    @property
    def delay_bits(self) -> int:
        return bits_for(self.delay_slots)

    @property
    def slots(self) -> int:
        """Row bitmaps a tile keeps: one per step a pending event can be due in (``delay_slots + 1``)."""
        return self.delay_slots + 1

    @property
    def slot_bits(self) -> int:
        return bits_for(self.slots)

    @property
    def input_bits(self) -> int:
        return bits_for(self.n_inputs)


def spike_layout(g: Geometry) -> data.StructLayout:
    """A neuron's spike: its column address (router input, host output)."""
    return data.StructLayout({"tile": g.tile_bits, "col": g.col_bits})


def row_layout(g: Geometry) -> data.StructLayout:
    """A routing-table destination (router output): the row and the routed delay."""
    return data.StructLayout({"tile": g.tile_bits, "row": g.row_bits, "delay": g.delay_bits})


def input_row_layout(g: Geometry) -> data.StructLayout:
    """A host input's destination (input map output): the row event and the input's payload."""
    return data.StructLayout({"tile": g.tile_bits, "row": g.row_bits, "delay": g.delay_bits,
                              "payload": signed(g.arithmetic.input_bits)})


def input_layout(g: Geometry) -> data.StructLayout:
    """A host input event: element index over all inputs and its signed payload."""
    return data.StructLayout({"input": g.input_bits, "payload": signed(g.arithmetic.input_bits)})


def value_layout(g: Geometry) -> data.StructLayout:
    """A host output value of an LI column (its membrane, in state units)."""
    return data.StructLayout({"tile": g.tile_bits, "col": g.col_bits, "value": signed(g.arithmetic.v_bits)})


# -- host ports of the chip (``hdl/chip.py``) and of the UART bridge ---------------------------

OP_INPUT, OP_STEP, OP_RESET = 0, 1, 2
"""Host command opcodes: an input event of the current step; run the step; restart from reset."""

OUT_SPIKE, OUT_VALUE, OUT_STEP = 0, 1, 2
"""Host output kinds: a host-flagged neuron's spike; an LI column's value; end of a step."""


def command_layout(g: Geometry) -> data.StructLayout:
    """A host command (chip input): ``op``, and for ``OP_INPUT`` the input event's fields."""
    return data.StructLayout({"op": 2, "input": g.input_bits, "payload": signed(g.arithmetic.input_bits)})


def output_layout(g: Geometry) -> data.StructLayout:
    """A host output event (chip output): ``kind``; ``tile``, ``col`` of the neuron; ``value`` for LI values."""
    return data.StructLayout({"kind": 2, "tile": g.tile_bits, "col": g.col_bits, "value": signed(g.arithmetic.v_bits)})


def describe(g: Geometry) -> dict[str, dict]:
    """Every event's fields as ``{event: {"bits": n, "fields": {name: [offset, width, signed]}}}``.

    The compiler's report and the documentation read the bit layouts from here.
    """
    layouts = {"spike": spike_layout(g), "row": row_layout(g), "input": input_layout(g),
               "input_row": input_row_layout(g), "command": command_layout(g), "output": output_layout(g)}
    out = {}
    for name, layout in layouts.items():
        fields = {key: [f.offset, f.width, Shape.cast(f.shape).signed] for key, f in layout}
        out[name] = {"bits": layout.size, "fields": fields}
    return out
