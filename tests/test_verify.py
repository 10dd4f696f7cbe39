"""The generated Verilog under Icarus and Verilator (cocotb) against sim/digital.py, event for event.

Every test runs on both simulators in CI, with two exceptions that keep the suite short: the
mutants (a Verilog of their own each, so a build of their own) are built with Icarus only, and
Icarus runs the bundled examples on fewer samples than Verilator; ``-m long`` runs the rest
(the mutants on Verilator, the examples' full sample sets on Icarus).

The testbench (``verify/testbench.py``) drives the chip's host ports (or its UART pins),
compares each chip step's host spikes, LI values and end-of-step marker with the digital twin,
and also every spike where it enters the router, so a mismatch is reported at the neuron
column that caused it.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from compiler.image import COL_NEURON, load_image
from hdl.chip import Chip
from hdl.export import write_hdl
from verify.runner import verify
from sim.digital import DigitalSimulator
from small.cli import main
from test_compile import random_input
from test_hdl_chip import compiled, signed_input

pytestmark = pytest.mark.rtl

SIMULATORS = ["icarus", "verilator"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """One folder per module: a design built once per simulator serves every test that uses it."""
    return tmp_path_factory.mktemp("verify")


def design(work: Path, name: str, image, *, lanes: int = 1, verilog_from=None) -> tuple[Path, Path]:
    """Save ``image`` as a build folder and the Verilog of ``verilog_from`` (default: the same image)."""
    folder = work / name
    if not (folder / "hdl" / "small_chip.v").is_file():
        folder.mkdir()
        image.save(folder)
        write_hdl(Chip(verilog_from or image, lanes=lanes), None, folder / "hdl")
    return folder, folder / "hdl" / "small_chip.v"


def check(folder, verilog, x, simulator, name, **kwargs):
    """Verify and return the summary; the run must pass and compare real activity."""
    image = load_image(folder)
    xs, _, _ = DigitalSimulator(image).prepare_inputs(x)
    result = verify(folder, verilog, xs, simulator=simulator, work_dir=folder / "verify", name=name, **kwargs)
    assert result.passed, result.summary["mismatch"]
    s = result.summary
    assert s["chip_steps"] == xs.shape[1] * (xs.shape[0] + max(int(o["latency"]) for o in image.meta["outputs"]))
    assert s["internal_spikes_probed"], f"{simulator} hid the router's spike port from the probe"
    return s


LONG = pytest.mark.long


@pytest.mark.parametrize("simulator,seed,rows,cols,lanes", [
    (sim, *case) for case in [(0, 8, 8, 1), (1, 16, 12, 4), (2, 64, 64, 8), (3, 12, 16, 16)] for sim in SIMULATORS
    if sim == "icarus" or case[0] in (1, 2)
] + [pytest.param("verilator", 0, 8, 8, 1, marks=LONG), pytest.param("verilator", 3, 12, 16, 16, marks=LONG)])
def test_random_networks(work, simulator, seed, rows, cols, lanes):
    """All neuron models, both resets, refractory, delays, recurrence, fan-in splits, multicast;
    the 8x8 case fills its tiles' rows and columns. Icarus runs every geometry; Verilator (a
    build of a minute each) two of them in CI and all with ``-m long``."""
    image = compiled(seed, rows, cols)
    if rows == 8:
        a = image.arrays
        assert (a["col_kind"] != 0).all(), "every column of every tile used"
        used_rows = {(int(t), int(r)) for t, r in zip(a["route_tile"], a["route_row"])} | \
                    {(int(t), int(r)) for t, r in zip(a["input_tile"], a["input_row"])}
        assert any(sum((t, r) in used_rows for r in range(rows)) == rows for t in range(image.n_tiles))
        assert (a["col_kind"] == 2).any() and (np.diff(a["route_ptr"]) > 1).any(), "fan-in splits and multicast"
    x = signed_input(seed, steps=10, batch=2) if seed % 2 else random_input(seed, steps=10, batch=2)
    s = check(*design(work, f"random{seed}", image, lanes=lanes), x, simulator, "plain")
    assert s["compared"]["spikes"] > 20 and s["compared"]["host_spikes"] > 0 and s["compared"]["values"] > 0


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_back_pressure_on_the_host_ports(work, simulator):
    """Random gaps between commands and random stalls of ``outputs.ready`` lose or duplicate nothing."""
    x = signed_input(1, steps=10, batch=2)
    s = check(*design(work, "random1", compiled(1, 16, 12), lanes=4), x, simulator, "backpressure", backpressure=5)
    assert s["compared"]["spikes"] > 20


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_a_reset_in_the_middle_of_a_run_starts_afresh(work, simulator):
    x = signed_input(1, steps=10, batch=2)
    check(*design(work, "random1", compiled(1, 16, 12), lanes=4), x, simulator, "reset", reset_at=6)


@pytest.mark.parametrize("simulator", [pytest.param("icarus", marks=LONG), "verilator"])
def test_uart_bridge_end_to_end(work, simulator):
    """The board's design: serial frames in on ``rx``, out on ``tx``. Under Verilator the chip is
    programmable and starts empty: the network goes in as configuration frames first. Icarus
    (80 s for one sample at the UART's bit rate: ``-m long``) runs the ROM chip of the same network."""
    from compiler.capacity import Capacity
    from hdl.board import BridgedChip

    image = compiled(2, 16, 16)
    capacity = Capacity.of(image, lanes=4)
    folder = work / f"uart-{simulator}"
    folder.mkdir(exist_ok=True)
    image.save(folder)
    load = simulator == "verilator"
    spec = capacity if load else image
    write_hdl(BridgedChip(spec, clk_freq=12_000_000, baud=3_000_000, lanes=4), None, folder, name="small_chip_uart")
    x = random_input(2, steps=8, batch=2 if load else 1)
    s = check(folder, folder / "small_chip_uart.v", x, simulator, "uart", top="small_chip_uart", kind="uart", divisor=4,
              capacity=capacity.to_dict() if load else None)
    assert (s["load_words"] > 0) == load
    assert s["compared"]["host_spikes"] > 0 and s["compared"]["values"] > 0


def _mutant(image, what):
    """A copy of ``image`` with one weight or one routing entry changed, and where it should show."""
    bad = copy.deepcopy(image)
    a = bad.arrays
    if what == "weight":
        # the cell of an input row in a neuron column: set it to the largest positive weight
        t, r = int(a["input_tile"][0]), int(a["input_row"][0])
        c = int(np.flatnonzero(a["col_kind"][t] == COL_NEURON)[0])
        a["g_pos"][t, r, c], a["g_neg"][t, r, c] = bad.levels - 1, 0
        assert (a["g_pos"][t, r, c], a["g_neg"][t, r, c]) != (image.arrays["g_pos"][t, r, c], image.arrays["g_neg"][t, r, c])
        return bad, (t, c)
    a["route_row"][0] = (a["route_row"][0] + 1) % bad.rows
    return bad, None


@pytest.mark.parametrize("simulator", ["icarus", pytest.param("verilator", marks=pytest.mark.long)])
@pytest.mark.parametrize("what", ["weight", "route"])
def test_a_broken_design_is_caught_with_its_location(work, simulator, what):
    """Verilog generated from an image with one changed weight (or routing entry), checked
    against the original image: verification fails and names the step and the neuron.

    Each mutant is a Verilog of its own, so a build of its own: Icarus in CI, Verilator too with
    ``-m long`` (as in test_verify_memristive.py). The scoreboard that finds and locates the
    mismatch is the same Python on both; that Verilator shows it every spike where it enters the
    router (what locates a wrong weight) is checked by every passing run here
    (``internal_spikes_probed``, ``compared["spikes"]``).
    """
    image = compiled(1, 16, 12)
    bad, where = _mutant(image, what)
    folder, verilog = design(work, f"mutant-{what}", image, lanes=4, verilog_from=bad)
    xs, _, _ = DigitalSimulator(image).prepare_inputs(signed_input(1, steps=10, batch=2))
    result = verify(folder, verilog, xs, simulator=simulator, work_dir=folder / "verify", name="mutant")
    m = result.summary["first_mismatch"]
    assert not result.passed and m is not None
    assert {"sample", "step", "tile", "col", "expected", "got"} <= set(m), m
    if where is not None:  # a changed weight shows first at its own neuron, as a spike
        assert (m["what"], m["tile"], m["col"]) == ("spike", *where), m


def test_samples_shared_by_two_processes_report_the_first_mismatch_of_the_whole_run(work):
    """The route mutant on a first sample without input events and a second with: run in one
    simulator process and shared by two (``jobs=2``), the first mismatch is the same, numbered in
    the whole run."""
    image = compiled(1, 16, 12)
    bad, _ = _mutant(image, "route")
    folder, verilog = design(work, "mutant-route", image, lanes=4, verilog_from=bad)
    x = signed_input(1, steps=10, batch=3)
    x[:, 0] = 0
    xs, _, _ = DigitalSimulator(image).prepare_inputs(x)
    found = [verify(folder, verilog, xs, simulator="icarus", work_dir=folder / "verify", name=f"jobs{jobs}",
                    jobs=jobs).summary for jobs in (1, 2)]
    assert not found[0]["passed"] and not found[1]["passed"]
    assert found[0]["first_mismatch"]["sample"] >= 1, "the mismatch must fall in the second process's samples"
    assert found[1]["first_mismatch"] == found[0]["first_mismatch"], found
    assert found[1]["mismatch"] == found[0]["mismatch"]


def example_build(work, source, *extra):
    folder = work / Path(source).parent.name
    if not (folder / "hdl" / "small_chip.v").is_file():
        assert main(["compile", source, "--target", "digital", "-o", str(folder), *extra]) == 0
        assert main(["hdl", str(folder)]) == 0
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("simulator,samples", [
    ("icarus", 3),
    pytest.param("icarus", 50, marks=pytest.mark.long),  # about 3.5 min: the full set by hand (-m long)
    ("verilator", 50),
])
def test_digits_classifier_on_its_test_inputs(work, simulator, samples, capsys):
    """The chip `make demo` builds (8 levels, 1 lane a tile), through `small verify`, on the
    example inputs `small compile` writes (the test set's first 50).

    Verilator runs all 50 in CI; Icarus, which simulates the same Verilog far more slowly,
    runs the first 3 in CI and all 50 with ``-m long``.
    """
    folder = example_build(work, "examples/digits/digits.nir", "--levels", "8")
    capsys.readouterr()
    assert main(["verify", str(folder), "--simulator", simulator, "--samples", str(samples)]) == 0
    out = capsys.readouterr().out
    assert f"{samples} inputs x 25 steps ({samples * 26} chip steps compared)" in out and "PASS" in out, out


@pytest.mark.slow
@pytest.mark.parametrize("simulator,samples", [
    pytest.param("icarus", 1, marks=pytest.mark.long),
    ("verilator", 3),
])
def test_recurrent_alif_example(work, simulator, samples, capsys):
    """6 tiles with split fan-in, ALIF recurrence and an LI readout (values every step).

    Verilator runs 3 samples in CI (the ALIF adaptation and the recurrent delay lines reset
    between samples); Icarus (about 50 s a 210-step sample) runs 1 with ``-m long``: its second
    opinion in CI is on the random networks (every neuron model, 2 samples each) and the digits.
    """
    folder = example_build(work, "examples/alif_memory/network.small", "--scale", "column")
    capsys.readouterr()
    assert main(["verify", str(folder), "--simulator", simulator, "--samples", str(samples)]) == 0
    out = capsys.readouterr().out
    assert f"{samples} input{'s' * (samples != 1)} x 210 steps" in out and "PASS" in out, out
