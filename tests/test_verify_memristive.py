"""A memristive chip's Verilog under Icarus and Verilator (cocotb) against sim/memristive.py.

``hdl.chip.Chip`` of a memristive image leaves the analog arrays and neurons outside the RTL;
``verify/analog.py`` plays them (ideal devices, the simulator's own arithmetic) on every
tile's ``tile<t>__*`` ports, and the testbench compares every neuron column's spikes, every host
spike and every LI value with ``IdealMemristiveSimulator`` at every chip step.

One design (8x8 tiles: 20 tiles, fan-in split over partial-sum columns, an LI readout) is
generated once and built once per simulator for the module; Verilator's build dominates
(about 40 s here). The mutants (a design generated from a corrupted image, checked against the
original image) are built with Icarus only (Verilator too with ``-m long``).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from compiler.image import COL_NEURON, COL_PARTIAL, MODEL_CODES
from hdl.chip import Chip
from hdl.export import write_hdl
from verify.analog import MODELS, attach, column_scales, preload_column_scales
from verify.runner import SimulatorMissingError, verify
from sim.memristive import IdealMemristiveSimulator
from test_compile import random_input
from test_hdl_memristive import memristive_image

pytestmark = [pytest.mark.rtl]

SIMULATORS = ["icarus", "verilator"]


def generate(image, folder, *, save=True):
    """Save ``image`` into ``folder/image`` (unless not ``save``) and write its chip's Verilog into ``folder/hdl``."""
    if save:
        (folder / "image").mkdir(parents=True)
        image.save(folder / "image")
    write_hdl(Chip(image), None, folder / "hdl")
    return folder / "image", folder / "hdl" / "small_chip.v"


def run(image_dir, verilog, xs, simulator, work_dir, **kwargs):
    try:
        return verify(image_dir, verilog, xs, simulator=simulator, work_dir=work_dir, **kwargs)
    except SimulatorMissingError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def design(tmp_path_factory):
    """The 8x8-tile image, its folder and Verilog, and a work folder shared by the tests (one build each)."""
    image = memristive_image(0, 8, 8)
    a = image.arrays
    assert image.n_tiles > 1 and (a["col_kind"] == COL_PARTIAL).any(), "expected a fan-in split"
    assert (a["host_out"] & (a["col_model"] == MODEL_CODES["li"]) & (a["col_kind"] == COL_NEURON)).any()
    root = tmp_path_factory.mktemp("verify-memristive")
    image_dir, verilog = generate(image, root)
    return image, image_dir, verilog, root / "verify"


@pytest.mark.slow
@pytest.mark.parametrize("simulator", SIMULATORS)
def test_the_chip_matches_the_ideal_memristive_simulator(design, simulator):
    image, image_dir, verilog, work = design
    xs = random_input(0, steps=10, batch=2).astype(np.int64)  # two samples: a reset between them
    result = run(image_dir, verilog, xs, simulator, work, name="plain")
    s = result.summary
    assert result.passed, s["mismatch"]
    assert s["compared"]["spikes"] > 100 and s["compared"]["values"] > 0 and s["internal_spikes_probed"]
    assert s["chip_steps"] == 2 * (10 + max(o["latency"] for o in image.meta["outputs"]))


@pytest.mark.spice
@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("device", ["pcm", "tiox"])
def test_device_level_analog_tiles(design, simulator, device):
    """The same RTL with device-level arrays attached (programming noise, drift, read noise as
    sim/analog.py draws them): equal to sim/analog.py, and different from the ideal devices."""
    from sim.analog import AnalogSimulator

    image, image_dir, verilog, work = design
    xs = random_input(0, steps=10, batch=2).astype(np.int64)
    result = run(image_dir, verilog, xs, simulator, work, name=f"device-{device}", analog=device)
    assert result.passed, result.summary["mismatch"]
    assert result.summary["reference"] == "sim/analog.py"
    noisy = AnalogSimulator(image, device=device).run(xs, record_spikes=True).spikes["chip"]
    ideal = IdealMemristiveSimulator(image).run(xs, record_spikes=True).spikes["chip"]
    assert not np.array_equal(noisy, ideal), "the device model should change some spike"


@pytest.mark.slow
@pytest.mark.parametrize("simulator", SIMULATORS)
def test_random_latencies_signed_payloads_and_a_reset_mid_sample(design, simulator):
    """Back-pressure and gaps on the host ports, 0-2 cycle ``settled``/``adc_ack`` latencies, garbage
    ``fired`` bits on ignored columns, multi-level signed row payloads, an ``OP_RESET`` after step 4."""
    image, image_dir, verilog, work = design
    x = random_input(1, steps=8, batch=2).astype(np.int64)
    xs = x * np.random.default_rng(1).integers(-3, 5, size=x.shape)
    assert (xs < 0).any() and (xs > 1).any()
    result = run(image_dir, verilog, xs, simulator, work, name="latencies", backpressure=3, reset_at=4)
    s = result.summary
    assert result.passed, s["mismatch"]
    assert s["compared"]["spikes"] > 0 and s["compared"]["values"] > 0


def start_mutant(image):
    """One host LI column starts two steps late: its value is missing at its first step."""
    a = image.arrays
    t, c = np.argwhere(a["host_out"] & (a["col_model"] == MODEL_CODES["li"]) & (a["col_kind"] == COL_NEURON))[0]
    bad = copy.deepcopy(image)
    start = int(a["param/start"][t, c])
    bad.arrays["param/start"][t, c] = start + 2
    return bad, {"sample": 0, "step": start, "what": "value", "tile": int(t), "col": int(c)}


def route_mutant(image, x):
    """The busiest neuron's first routing entry and another source's entry into the same tile swap
    rows (the image stays valid: every row one axon); the reference must change."""
    a = image.arrays
    sim = IdealMemristiveSimulator(image)
    ref = sim.run(x, record_spikes=True).spikes["chip"]
    sources = np.repeat(np.arange(image.n_tiles * image.cols), np.diff(a["route_ptr"]))
    for k in np.argsort(-ref.sum(axis=(0, 1)), kind="stable"):
        lo = int(a["route_ptr"][sim.addr[k]])
        if lo == int(a["route_ptr"][sim.addr[k] + 1]):
            continue
        for j in np.flatnonzero((a["route_tile"] == a["route_tile"][lo]) & (sources != sources[lo])):
            bad = copy.deepcopy(image)
            rows = bad.arrays["route_row"]
            rows[lo], rows[j] = rows[j], rows[lo]
            got = IdealMemristiveSimulator(bad).run(x, record_spikes=True).spikes["chip"]
            if not np.array_equal(got, ref):
                return bad, None
    raise AssertionError("no route mutation changes the spikes")


@pytest.mark.slow
@pytest.mark.parametrize("simulator", ["icarus", pytest.param("verilator", marks=pytest.mark.long)])
@pytest.mark.parametrize("mutation", ["start", "route"])
def test_a_chip_generated_from_a_corrupted_image_fails(design, tmp_path, simulator, mutation):
    image, image_dir, _, _ = design
    xs = random_input(0, steps=6, batch=1).astype(np.int64)
    bad, where = start_mutant(image) if mutation == "start" else route_mutant(image, xs)
    _, verilog = generate(bad, tmp_path, save=False)
    result = run(image_dir, verilog, xs, simulator, tmp_path / "verify", name=mutation)
    assert not result.passed
    m = result.summary["first_mismatch"]
    assert {"sample", "step", "tile", "col", "expected", "got"} <= set(m), m
    if where is not None:
        assert {k: m[k] for k in where} == where, m
        assert m["got"] is None and isinstance(m["expected"], int)


@pytest.mark.slow
def test_a_drift_compensated_chip_matches_its_twin(design, tmp_path):
    """PCM read a day after programming, compensated per column: the chip's controllers hold the
    twin's scale words (computed from the reference reads, preloaded as the host would write them)
    and every value equals the twin's; the same chip with its scales left at 1.0 fails at a value."""
    from compiler.column_scale import SCALE_ONE

    image, image_dir, plain_verilog, _ = design
    kind = "pcm@86400+column"
    scale = column_scales(image, kind)
    assert (scale != SCALE_ONE).any()
    chip = Chip(image)
    preload_column_scales(chip, scale)
    write_hdl(chip, None, tmp_path / "hdl")
    xs = random_input(0, steps=8, batch=1).astype(np.int64)
    result = run(image_dir, tmp_path / "hdl" / "small_chip.v", xs, "icarus", tmp_path / "verify", name="compensated",
                 analog=kind)
    assert result.passed, result.summary["mismatch"]
    assert result.summary["compared"]["values"] > 0 and result.summary["reference"] == "sim/analog.py"
    stale = run(image_dir, plain_verilog, xs, "icarus", tmp_path / "verify-stale", name="stale", analog=kind)
    assert not stale.passed and stale.summary["first_mismatch"]["what"] == "value", stale.summary["first_mismatch"]


def test_an_unknown_analog_model_is_refused():
    image = memristive_image(0, 8, 8)
    with pytest.raises(ValueError, match="ideal"):
        attach(None, image, "spice", None)
    for kind in ("pcm+global", "ideal@86400+column", "spice@1+tile"):
        with pytest.raises(ValueError, match="DEVICE@T_READ"):
            attach(None, image, kind, None)
    assert "ideal" in MODELS
