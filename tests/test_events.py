"""The events' pure-data definition (``compiler/events.py``) and their Amaranth layouts
(``hdl/events.py``) agree field for field: same order, offsets, widths and signedness, so the
compiler's report (``describe``) can never drift from what the hardware moves."""

from __future__ import annotations

import pytest

from compiler import events as fields
from compiler.image import Arithmetic
from hdl import events as layouts
from verify.model import Codec

GEOMETRIES = [
    fields.Geometry(tiles=4, rows=64, cols=64, delay_slots=1, n_inputs=64),  # the digits classifier
    fields.Geometry(tiles=1, rows=8, cols=8, delay_slots=0, n_inputs=1),  # one-value indices: 1 bit each
    fields.Geometry(tiles=20, rows=8, cols=12, delay_slots=5, n_inputs=300, acc_bits=17,
                    arithmetic=Arithmetic(v_bits=16, frac_bits=4, decay_bits=12, input_bits=4)),
    fields.Geometry(tiles=129, rows=256, cols=33, delay_slots=16, n_inputs=1000,
                    arithmetic=Arithmetic(v_bits=32, input_bits=12)),
]


@pytest.mark.parametrize("g", GEOMETRIES, ids=lambda g: f"{g.tiles}x{g.rows}x{g.cols}")
def test_every_layout_equals_the_pure_data_description(g):
    described = fields.describe(g)
    assert set(described) == set(fields.EVENTS)
    for name, event in described.items():
        layout = getattr(layouts, f"{name}_layout")(g)
        assert layout.size == event["bits"], name
        # the layout's fields as the testbench reads them: (name, offset, width, signed), in order
        assert Codec(layout).fields == [(key, *spec) for key, spec in event["fields"].items()], name


@pytest.mark.parametrize("g", GEOMETRIES[:2], ids=lambda g: f"{g.tiles}x{g.rows}x{g.cols}")
def test_the_value_layout_is_the_output_after_its_kind(g):
    # ``value`` has no entry of its own in describe(): it travels inside ``output``, after ``kind``
    value = Codec(layouts.value_layout(g)).fields
    output = Codec(layouts.output_layout(g)).fields
    kind_width = output[0][2]
    assert [(k, o + kind_width, w, s) for k, o, w, s in value] == output[1:]
    assert fields.value_fields(g) == [(k, w, s) for k, _, w, s in value]
