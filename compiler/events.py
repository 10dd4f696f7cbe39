"""Address events of a SMALL chip as pure data: field names, widths and order.

Field widths follow from a compiled image's geometry (``docs/architecture.md``, "Events").
This module defines every event once; ``hdl/events.py`` builds Amaranth ``data.StructLayout``s
from these field lists, and the compiler's report reads them through :func:`describe`. Fields
are packed in the order given, the first at bit 0, as Amaranth's ``StructLayout`` packs them.
Nothing here imports Amaranth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .image import Arithmetic, HardwareImage

Field = tuple[str, int, bool]
"""One field of an event: ``(name, width in bits, signed)``."""


def _sum_bound(image: HardwareImage, ar: Arithmetic) -> int:
    """The largest column sum a neuron can see: sum over its rows (all tiles of its group) of
    ``|l+ - l-|`` times the row's largest payload (``2^(input_bits-1)`` from a host input, 1 from a
    neuron).

    Computed a few thousand tiles at a time in the devices' own small integers: a 100k-neuron
    image has about 84M cells, and int64 copies of them all cost 1.3 GiB.
    """
    a, T, R, C = image.arrays, image.n_tiles, image.rows, image.cols
    from_host = np.zeros((T, R), dtype=np.int16)
    from_host[a["input_tile"], a["input_row"]] = 1
    extra = (1 << (ar.input_bits - 1)) - 1  # a host row's payload beyond a neuron row's 1
    column = np.zeros((T, C), dtype=np.int64)
    chunk = max(1, (1 << 22) // (R * C))
    for t in range(0, T, chunk):
        w = np.abs(a["g_pos"][t:t + chunk].astype(np.int16) - a["g_neg"][t:t + chunk])  # |l+ - l-| <= 255
        column[t:t + chunk] = w.sum(axis=1, dtype=np.int64)
        column[t:t + chunk] += extra * np.matmul(from_host[t:t + chunk, None, :], w, dtype=np.int64)[:, 0, :]
    total = np.zeros(T * C, dtype=np.int64)
    np.add.at(total, image.home_columns(), column.reshape(-1))
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


def spike_fields(g: Geometry) -> list[Field]:
    """A neuron's spike: its column address (router input, host output)."""
    return [("tile", g.tile_bits, False), ("col", g.col_bits, False)]


def row_fields(g: Geometry) -> list[Field]:
    """A routing-table destination (router output): the row and the routed delay."""
    return [("tile", g.tile_bits, False), ("row", g.row_bits, False), ("delay", g.delay_bits, False)]


def input_row_fields(g: Geometry) -> list[Field]:
    """A host input's destination (input map output): the row event and the input's payload."""
    return [*row_fields(g), ("payload", g.arithmetic.input_bits, True)]


def input_fields(g: Geometry) -> list[Field]:
    """A host input event: element index over all inputs and its signed payload."""
    return [("input", g.input_bits, False), ("payload", g.arithmetic.input_bits, True)]


def value_fields(g: Geometry) -> list[Field]:
    """A host output value of an LI column (its membrane, in state units)."""
    return [*spike_fields(g), ("value", g.arithmetic.v_bits, True)]


# -- host ports of the chip (``hdl/chip.py``) and of the UART bridge ---------------------------

OP_INPUT, OP_STEP, OP_RESET = 0, 1, 2
"""Host command opcodes: an input event of the current step; run the step; restart from reset."""

OUT_SPIKE, OUT_VALUE, OUT_STEP = 0, 1, 2
"""Host output kinds: a host-flagged neuron's spike; an LI column's value; end of a step."""
OPS, KINDS_OUT = (OP_INPUT, OP_STEP, OP_RESET), (OUT_SPIKE, OUT_VALUE, OUT_STEP)


def command_fields(g: Geometry) -> list[Field]:
    """A host command (chip input): ``op``, and for ``OP_INPUT`` the input event's fields."""
    return [("op", 2, False), *input_fields(g)]


def output_fields(g: Geometry) -> list[Field]:
    """A host output event (chip output): ``kind``; ``tile``, ``col`` of the neuron; ``value`` for LI values."""
    return [("kind", 2, False), *value_fields(g)]


EVENTS = {"spike": spike_fields, "row": row_fields, "input": input_fields, "input_row": input_row_fields,
          "command": command_fields, "output": output_fields}
"""Every event with a layout of its own (``value`` travels inside ``output``), by name."""


def pack(fields: list[Field], values: dict, what: str = "word") -> int:
    """The bit pattern of ``values`` (missing fields 0; signed fields in two's complement).

    ``ValueError`` names an unknown field or a value its field cannot hold."""
    names = [name for name, _, _ in fields]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"{what}: unknown field(s) {', '.join(unknown)}; the fields are {', '.join(names)}")
    word, offset = 0, 0
    for name, w, is_signed in fields:
        v = int(values.get(name, 0))
        lo, hi = (-(1 << (w - 1)), (1 << (w - 1)) - 1) if is_signed else (0, (1 << w) - 1)
        if not lo <= v <= hi:
            raise ValueError(f"{what}: {name} = {v} is outside [{lo}, {hi}]")
        word |= (v & ((1 << w) - 1)) << offset
        offset += w
    return word


def unpack(fields: list[Field], word: int) -> dict[str, int]:
    """The fields of a bit pattern (the inverse of :func:`pack`)."""
    out, offset = {}, 0
    for name, w, is_signed in fields:
        v = (word >> offset) & ((1 << w) - 1)
        out[name] = v - (1 << w) if is_signed and v >> (w - 1) else v
        offset += w
    return out


def width(fields: list[Field]) -> int:
    return sum(w for _, w, _ in fields)


def describe(g: Geometry) -> dict[str, dict]:
    """Every event's fields as ``{event: {"bits": n, "fields": {name: [offset, width, signed]}}}``.

    The compiler's report and the documentation read the bit layouts from here.
    """
    out = {}
    for name, fields_of in EVENTS.items():
        fields, offset = {}, 0
        for key, width, is_signed in fields_of(g):
            fields[key] = [offset, width, is_signed]
            offset += width
        out[name] = {"bits": offset, "fields": fields}
    return out
