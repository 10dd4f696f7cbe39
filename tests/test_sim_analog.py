"""sim/analog.py: the memristive chip with device-level non-idealities."""

import copy

import numpy as np
import pytest

from small.errors import SimulationError
from compiler.faults import random_faults
from compiler.mapper import CompileOptions, compile_network
from sim.analog import AnalogSimulator
from sim.memristive import IdealMemristiveSimulator
from test_compile import random_input, random_network

_IMAGES = {}


def image(rows=16, cols=16, levels=8, faults=None, target="memristive"):
    key = (rows, cols, levels, faults is not None, target)
    if key not in _IMAGES:
        _IMAGES[key] = compile_network(random_network(0), CompileOptions(
            target=target, rows=rows, cols=cols, levels=levels, faults=faults)).image
    return _IMAGES[key]


def test_ideal_devices_without_wires_equal_the_ideal_simulator():
    """Stuck devices and finite levels only: spike for spike the same as sim/memristive.py."""
    faults = random_faults(16, 16, 16, 0.05, seed=1)
    img = image(faults=faults)
    x = random_input(0, steps=20, batch=3)
    ref = IdealMemristiveSimulator(img).run(x, record_spikes=True)
    got = AnalogSimulator(img, device="ideal").run(x, record_spikes=True)
    np.testing.assert_array_equal(got.spikes["chip"], ref.spikes["chip"])
    np.testing.assert_array_equal(got.output_array(), ref.output_array())


def test_bad_requests_are_refused():
    with pytest.raises(SimulationError, match="memristive"):
        AnalogSimulator(image(target="digital"))
    for kwargs in ({"t_read": 0}, {"r_wire": -1}, {"t_read": float("nan")}, {"reversed_fraction": 2}):
        with pytest.raises(SimulationError):
            AnalogSimulator(image(), device="ideal", **kwargs)


def test_device_noise_is_seeded_and_changes_the_weights():
    img = image()
    a, b, c = (AnalogSimulator(img, device="pcm", seed=s) for s in (3, 3, 4))
    np.testing.assert_array_equal(a.g_pos, b.g_pos)
    assert not np.array_equal(a.g_pos, c.g_pos)
    ideal = AnalogSimulator(img, device="ideal")
    err = np.abs((a.g_pos - a.g_neg) / a.dG - img.weights())[img.weights() != 0]
    assert 0 < err.mean() < 1.5, "programming noise of the order of a level, not more"
    quiet = AnalogSimulator(img, device="pcm", noise=False)  # drift only, at 1 s: none yet (t0 = 20 s)
    np.testing.assert_allclose(quiet.g_pos, ideal.g_pos, rtol=1e-12)


def test_pcm_drift_lowers_conductances_over_time():
    img = image()
    g = [AnalogSimulator(img, device="pcm", noise=False, t_read=t).g_pos for t in (20.0, 3600.0, 86400.0)]
    on = g[0] > 0
    assert (g[1][on] < g[0][on]).all() and (g[2][on] < g[1][on]).all()


def test_tiox_reversed_devices_mirror_their_target():
    img = image()
    sim = AnalogSimulator(img, device="tiox", noise=False, reversed_fraction=1.0)
    target = sim.g_min + img.arrays["g_pos"] * sim.dG
    np.testing.assert_allclose(sim.g_pos, sim.g_max + sim.g_min - target, rtol=1e-12)


def test_ir_drop_weights_give_the_nodal_models_currents_for_any_active_rows():
    """Effective weights from one solve per row equal a solve with many rows active (linearity)."""
    from analog_models.crossbar import NodalCrossbar

    img = image(rows=16, cols=16)
    sim = AnalogSimulator(img, device="pcm", r_wire=2.0, seed=1)
    plain = AnalogSimulator(img, device="pcm", r_wire=0.0, seed=1)
    t = 0
    rng = np.random.default_rng(0)
    payload = rng.integers(-3, 4, size=(5, img.rows)).astype(np.float64)
    v = payload * 0.2
    nodal = (NodalCrossbar(sim.g_pos[t], 2.0).column_currents(v)
             - NodalCrossbar(sim.g_neg[t], 2.0).column_currents(v)) / (0.2 * sim.dG)
    np.testing.assert_allclose(payload @ sim.ir_drop_weights()[t], nodal, rtol=1e-9, atol=1e-9)
    # IR drop only ever loses current: the effective weights are smaller than the devices'
    w_ir, w = np.abs(sim.ir_drop_weights()), np.abs((plain.g_pos - plain.g_neg) / plain.dG)
    assert (w_ir.sum(axis=(1, 2)) < w.sum(axis=(1, 2))).all()


@pytest.mark.spice
def test_characterize_and_compile_with_the_calibration(tmp_path):
    """`small analog characterize` writes a calibration that `small compile --calibration` uses."""
    import json

    from test_cli import run

    calib = tmp_path / "calib.json"
    r = run("analog", "characterize", "--device", "pcm", "-o", calib)
    assert r.returncode == 0, r.stderr
    cal = json.loads(calib.read_text())
    assert cal["device"] == "pcm" and cal["levels"] >= 2 and cal["ir_drop"]["worst_rel_error"] > 0
    assert 0 < cal["neuron"]["alpha"] < 1
    r = run("compile", "examples/digits/digits.nir", "--target", "memristive", "--calibration", calib,
            "-o", tmp_path / "net")
    assert r.returncode == 0, r.stderr
    assert f"{cal['levels']} levels" in r.stdout and "memristive_pcm_1h" in r.stdout
    assert "pJ per inference on the example input" in r.stdout
    report = json.loads((tmp_path / "net" / "report.json").read_text())
    assert report["energy"]["pJ_per_inference"] > 0 and report["energy"]["assumptions"]
    # a read pulse through a resistor pair: V^2 t per siemens (edges add a little)
    assert cal["energy"]["read_J_per_S"] == pytest.approx(0.2 ** 2 * 10e-9, rel=0.02)
    assert 0 < cal["energy"]["spike_J"] < 1e-12
    meta = json.loads((tmp_path / "net" / "image.json").read_text())
    assert meta["device"]["model"] == "pcm" and meta["device"]["r_wire_ohm"] == 1.0
    for bad, message in ((["--target", "digital"], "use it with --target memristive"),
                         (["--target", "memristive", "--calibration", tmp_path / "nope.json"], "does not exist")):
        args = bad if "--calibration" in bad else [*bad, "--calibration", calib]
        r = run("compile", "examples/digits/digits.nir", *args, "-o", tmp_path / "x")
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    calib.write_text(json.dumps({**cal, "levels": 1}))
    r = run("compile", "examples/digits/digits.nir", "--target", "memristive", "--calibration", calib, "-o", tmp_path / "x")
    assert r.returncode == 2 and "'levels' must be an integer in [2, 256]" in r.stderr


def test_the_chips_drift_compensation_scales_the_converted_columns_digitally():
    """digital_scale: the LI host columns (and the partial sums merged into them) keep their
    drifted currents and get the quantised factor as their controller's scale word; every other
    column keeps the float factor on its current. Without compensation nothing changes."""
    from compiler.column_scale import SCALE_ONE, quantise_scale
    from sim import chip_simulator
    from sim.analog import analog_spec
    from sim.memristive import value_columns

    img = image(8, 8)
    day = dict(device="pcm", t_read=86400.0, seed=0)
    plain = AnalogSimulator(img, **day)
    analog = AnalogSimulator(img, **day, drift_compensation="column")
    chip = AnalogSimulator(img, **day, drift_compensation="column", digital_scale=True)
    np.testing.assert_array_equal(chip.column_scale, quantise_scale(analog.compensation))
    converted = value_columns(img)
    assert converted.any() and np.all(chip.column_scale[converted] > SCALE_ONE)
    # neuron columns fed by a converted column's home: the ones whose currents stay as drifted
    fed_conv = np.isin(chip.addr, np.flatnonzero(converted.reshape(-1)))
    w, w_plain, w_analog = chip.dense_weights(), plain.dense_weights(), analog.dense_weights()
    np.testing.assert_allclose(w[:, fed_conv], w_plain[:, fed_conv])
    np.testing.assert_allclose(w[:, ~fed_conv], w_analog[:, ~fed_conv])
    # the float read-out: a converted column's value is its membrane times its scale
    x = random_input(0, steps=10, batch=2)
    unscaled = copy.copy(chip)
    unscaled._set_column_scale(img, None)  # the same chip with its scale words at 1.0
    out, out_plain = chip.run(x), unscaled.run(x)
    name = next(o["name"] for o in img.meta["outputs"] if o["kind"] == "value")
    k = chip.neurons(next(o["population"] for o in img.meta["outputs"] if o["name"] == name))
    factor = chip.column_scale.reshape(-1)[chip.addr[k]] / SCALE_ONE
    np.testing.assert_allclose(out.outputs[name], out_plain.outputs[name] * factor, rtol=1e-5, atol=1e-6)
    # no compensation: scale 1.0 everywhere, the same chip as before
    off = AnalogSimulator(img, **day, digital_scale=True)
    assert np.all(off.column_scale == SCALE_ONE)
    np.testing.assert_array_equal(off.dense_weights(), w_plain)
    # the verification names: DEVICE[@T_READ][+tile|+column]
    assert analog_spec("pcm@86400+column") == {"device": "pcm", "t_read": 86400.0, "drift_compensation": "column"}
    assert analog_spec("tiox") == {"device": "tiox"}
    np.testing.assert_array_equal(chip_simulator(img, "pcm@86400+column").column_scale, chip.column_scale)
    for bad in ("pcm+global", "pcm@day+tile"):
        with pytest.raises(SimulationError, match="DEVICE"):
            analog_spec(bad)
