"""The generated chip (hdl/chip.py) against sim/digital.py, spike for spike, in Amaranth's simulator.

Every spike of every neuron column (watched where spikes enter the router), every host output
spike and every LI value the host receives must equal the digital twin's, at every chip step.
"""

import copy
import dataclasses
import re

import numpy as np
import pytest

from compiler.capacity import Capacity
from compiler.image import load_image
from compiler.mapper import CompileOptions, compile_network
from hdl.chip import Chip
from verify.simulate import compare_with_twin as compare, run_chip
from sim.digital import DigitalSimulator
from small.cli import main
from test_compile import random_input, random_network

pytestmark = pytest.mark.rtl


def signed_input(seed, steps, batch, n_in=12):
    """Sparse multi-bit signed payloads (host events are not only spikes)."""
    rng = np.random.default_rng(seed + 200)
    x = rng.integers(-4, 6, size=(steps, batch, n_in))
    return np.where(rng.random(x.shape) < 0.4, x, 0).astype(np.int64)


def compiled(seed, rows, cols, levels=8):
    net = random_network(seed)
    for proj in net.projections:
        proj.weight = proj.weight * 1.37  # off the level grid: real quantisation
    return compile_network(net, CompileOptions(target="digital", rows=rows, cols=cols, levels=levels, seed=seed)).image


@pytest.mark.parametrize("seed,rows,cols,lanes", [(0, 8, 8, 1), (1, 16, 12, 4), (2, 64, 64, 8), (3, 12, 16, 16)])
def test_random_networks_match_the_digital_twin(seed, rows, cols, lanes):
    """All neuron models, both resets, refractory, delays, recurrence, fan-in splits, multicast."""
    image = compiled(seed, rows, cols)
    x = signed_input(seed, steps=10, batch=2) if seed % 2 else random_input(seed, steps=10, batch=2)
    runs = run_chip(image, x, chip=Chip(image, lanes=lanes))
    assert compare(image, x, runs) > 20
    if rows == 8:
        assert (image.arrays["col_kind"] == 2).any(), "the 8x8 case should split fan-in over tiles"


@pytest.mark.parametrize("neuron", ["pipelined", "serial"])
def test_columns_firing_at_threshold_and_cuba_li_readouts_match_the_twin(neuron):
    """Weights on the level grid put membranes exactly on the threshold, where ``>=`` (a Sinabs or
    Rockpool population) and ``>`` differ; the CubaLI readout's values reach the host."""
    net = random_network(0)  # even seeds: the IF population fires at v >= threshold
    image = compile_network(net, CompileOptions(target="digital", rows=16, cols=12, levels=16, seed=0)).image
    x = random_input(0, steps=12, batch=2)
    flipped = copy.deepcopy(image)
    flipped.arrays["col_fire"][:] = 1 - flipped.arrays["col_fire"]
    want = DigitalSimulator(image).run(x, record_spikes=True).spikes["chip"]
    assert (want != DigitalSimulator(flipped).run(x, record_spikes=True).spikes["chip"]).any(), \
        "the case should have membranes exactly at the threshold"
    chip = Chip(dataclasses.replace(Capacity.of(image, lanes=4), neuron=neuron))
    assert compare(image, x, run_chip(image, x, chip=chip)) > 20


def test_a_reset_in_the_middle_of_a_run_starts_the_network_afresh():
    image = compiled(4, 16, 16)
    x = random_input(4, steps=10, batch=1)
    compare(image, x, run_chip(image, x, reset_at=6))


def test_a_corrupted_chip_is_caught():
    """The check compares with the image, not with the RTL: one wrong routing entry fails it."""
    image = compiled(1, 16, 12)
    x = random_input(1, steps=10, batch=1)
    bad = copy.deepcopy(image)
    a = bad.arrays
    ref = DigitalSimulator(image)
    fired = ref.addr[ref.run(x, record_spikes=True).spikes["chip"].any(axis=(0, 1))]
    w = image.weights()
    # the first entry of a neuron that fires, moved to a row of its tile whose weights differ
    e = next(int(a["route_ptr"][s]) for s in fired if a["route_ptr"][s + 1] > a["route_ptr"][s])
    t, r = int(a["route_tile"][e]), int(a["route_row"][e])
    a["route_row"][e] = next(q for q in range(bad.rows) if (w[t, q] != w[t, r]).any())
    with pytest.raises(AssertionError, match="spikes"):
        compare(image, x, run_chip(image, x, chip=Chip(bad), load=False))  # the ROM chip as it is, not reloaded


def test_a_memristive_chip_exposes_every_tiles_analog_ports():
    """Controllers instead of DigitalTiles; each tile's analog ports at the top as ``tile<t>__*``."""
    from amaranth.back import rtlil

    from hdl.events import Geometry
    from hdl.memristive_tile import MemristiveTileController

    net = random_network(0)
    image = compile_network(net, CompileOptions(target="memristive", rows=32, cols=32, levels=8)).image
    assert image.n_tiles > 1
    chip = Chip(image, pulse_cycles=3)
    assert all(isinstance(tile, MemristiveTileController) and tile.pulse_cycles == 3 for tile in chip.tiles)
    text = rtlil.convert(chip, name="small_chip", emit_src=False)
    assert "psum_fifo" not in text  # partial sums merge as currents: no export phase
    top = text[text.index("module \\small_chip\n"):]
    top = top[:top.index("\nend\n")]
    port = r"wire width (\d+) (input|output) \d+ +(?:signed )?\\(\S+)"
    ports = {name: (d, int(w)) for w, d, name in re.findall(port, top)}
    g = Geometry.of(image)
    bits, v_bits = g.arithmetic.input_bits, g.arithmetic.v_bits
    for t in range(image.n_tiles):
        for name, direction, width in [("row_drive", "output", bits * image.rows), ("pulse", "output", 1),
                                       ("evaluate", "output", 1), ("hold", "output", image.cols),
                                       ("settled", "input", 1), ("fired", "input", image.cols),
                                       ("adc_req", "output", 1), ("adc_col", "output", g.col_bits),
                                       ("adc_ack", "input", 1), ("adc_value", "input", v_bits),
                                       ("neuron_clear", "output", 1)]:
            d, w = ports[f"tile{t}__{name}"]
            assert (d, w) == (direction, width), f"tile{t}__{name}"
    assert {"commands__valid", "outputs__valid"} <= set(ports)
    assert not any(name.startswith(f"tile{image.n_tiles}__") for name in ports)
    # any other target is refused
    other = copy.deepcopy(image)
    other.meta["target"] = "photonic"
    with pytest.raises(ValueError, match="digital or memristive image"):
        Chip(other)


def example_image(tmp_path, source, *extra):
    assert main(["compile", source, "--target", "digital", "-o", str(tmp_path / "net"), *extra]) == 0
    return load_image(tmp_path / "net")


@pytest.mark.long
@pytest.mark.parametrize("levels,lanes", [pytest.param(16, 8, id="16-levels-8-lanes"),
                                          pytest.param(8, 1, id="8-levels-1-lane")])
def test_digits_classifier_on_20_test_inputs(tmp_path, levels, lanes):
    """Minutes in Amaranth's simulator: CI verifies the digits chip's Verilog under Icarus and
    Verilator instead (tests/test_verify.py, 50 inputs)."""
    image = example_image(tmp_path, "examples/digits/digits.nir", "--levels", str(levels))
    x = np.load("examples/digits/test_set.npz")["x"][:, :20]
    xs, _, _ = DigitalSimulator(image).prepare_inputs(x)
    assert compare(image, x, run_chip(image, xs, chip=Chip(image, lanes=lanes))) > 1000


@pytest.mark.long
@pytest.mark.parametrize("n", [pytest.param(2, id="2-inputs"), pytest.param(20, id="20-inputs")])
def test_recurrent_alif_example(tmp_path, n):
    """210 steps a sample: 20 inputs take about half an hour in Amaranth's simulator, so CI
    verifies the example's Verilog under Icarus and Verilator instead (tests/test_verify.py)."""
    image = example_image(tmp_path, "examples/alif_memory/network.small", "--scale", "column")
    x = np.load("examples/alif_memory/test_set.npz")["x"][:, :n]
    xs, _, _ = DigitalSimulator(image).prepare_inputs(x)
    assert compare(image, x, run_chip(image, xs)) > 100 * n


@pytest.mark.parametrize("neuron", ["pipelined", "serial"])
def test_step_cycles_formula_is_exact_for_an_idle_step(neuron):
    from hdl.chip import step_cycles

    image = compiled(2, 64, 64)
    assert not (image.arrays["col_kind"] == 2).any()
    capacity = dataclasses.replace(Capacity.of(image), neuron=neuron)
    x = np.zeros((4, 1, 12), dtype=np.int64)
    run = run_chip(image, x, chip=Chip(capacity))[0]
    assert run.step_cycles == [step_cycles(image, 0, capacity=capacity, step=t) for t in range(len(run.step_cycles))]
