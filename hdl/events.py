"""Address events of a SMALL chip as Amaranth data layouts.

The events themselves (field names, widths, order) are pure data in :mod:`compiler.events`;
this module turns each into an ``amaranth.lib.data.StructLayout``. Everything that moves
events in hardware (the router, the tiles, the host bridge) builds its layouts here; nobody
computes a bit position by hand. Importing it starts no simulator or toolchain.
"""

from __future__ import annotations

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from compiler import events
from compiler.events import OP_INPUT, OP_RESET, OP_STEP, OUT_SPIKE, OUT_STEP, OUT_VALUE, Field, Geometry, bits_for

__all__ = ["OP_INPUT", "OP_RESET", "OP_STEP", "OUT_SPIKE", "OUT_STEP", "OUT_VALUE", "Geometry", "bits_for",
           "command_layout", "input_layout", "input_row_layout", "output_layout", "row_layout", "spike_layout",
           "struct", "value_layout"]


def struct(fields: list[Field]) -> data.StructLayout:
    """The Amaranth layout of an event's fields (packed in order, the first at bit 0)."""
    return data.StructLayout({name: signed(width) if is_signed else unsigned(width) for name, width, is_signed in fields})


def spike_layout(g: Geometry) -> data.StructLayout:
    """A neuron's spike: its column address (router input, host output)."""
    return struct(events.spike_fields(g))


def row_layout(g: Geometry) -> data.StructLayout:
    """A routing-table destination (router output): the row and the routed delay."""
    return struct(events.row_fields(g))


def input_row_layout(g: Geometry) -> data.StructLayout:
    """A host input's destination (input map output): the row event and the input's payload."""
    return struct(events.input_row_fields(g))


def input_layout(g: Geometry) -> data.StructLayout:
    """A host input event: element index over all inputs and its signed payload."""
    return struct(events.input_fields(g))


def value_layout(g: Geometry) -> data.StructLayout:
    """A host output value of an LI column (its membrane, in state units)."""
    return struct(events.value_fields(g))


def command_layout(g: Geometry) -> data.StructLayout:
    """A host command (chip input): ``op``, and for ``OP_INPUT`` the input event's fields."""
    return struct(events.command_fields(g))


def output_layout(g: Geometry) -> data.StructLayout:
    """A host output event (chip output): ``kind``; ``tile``, ``col`` of the neuron; ``value`` for LI values."""
    return struct(events.output_fields(g))
