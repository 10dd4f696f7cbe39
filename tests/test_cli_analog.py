"""`small analog device|crossbar|neuron`: figures, files, and clear errors for bad input."""

import json

import numpy as np
import pytest

from test_cli import run

pytestmark = pytest.mark.spice


@pytest.mark.parametrize("model", ["linear-ion-drift", "vteam", "pcm", "tiox"])
def test_device_writes_a_plot_and_its_figures(tmp_path, model):
    png = tmp_path / "iv.png"
    r = run("analog", "device", "--model", model, "--plot", png)
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    figures = json.loads(png.with_suffix(".json").read_text())
    assert figures["model"] == model and figures["n_levels"] >= 2 and figures["g_max_S"] > figures["g_min_S"]


def test_crossbar_json_has_the_three_currents_and_the_errors(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "g.npy", rng.uniform(1e-6, 50e-6, size=(16, 12)))
    r = run("analog", "crossbar", "--rows", "16", "--cols", "12", "--r-wire", "2", "--conductances",
            tmp_path / "g.npy", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert {"i_cols_spice", "i_cols_model", "i_cols_ideal", "max_rel_error_model_vs_spice"} <= set(out)
    assert len(out["i_cols_spice"]) == 12 and out["max_rel_error_model_vs_spice"] < 1e-6
    ideal, spice = np.array(out["i_cols_ideal"]), np.array(out["i_cols_spice"])
    assert (spice < ideal).all(), "IR drop lowers every column current"


@pytest.mark.parametrize("content,message", [
    (np.full((4, 4), -1e-6), "negative or non-finite"),
    (np.full((4, 4), np.nan), "negative or non-finite"),
    (np.ones((3, 4)) * 1e-6, "shape [4, 4]"),
])
def test_bad_conductance_files_are_refused(tmp_path, content, message):
    np.save(tmp_path / "g.npy", content)
    r = run("analog", "crossbar", "--rows", "4", "--cols", "4", "--conductances", tmp_path / "g.npy")
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_unknown_device_model_is_a_usage_error():
    r = run("analog", "device", "--model", "nosuch")
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_neuron_reports_its_fit_and_plots(tmp_path):
    png = tmp_path / "neuron.png"
    r = run("analog", "neuron", "--plot", png)
    assert r.returncode == 0, r.stderr
    assert "alpha" in r.stdout and png.is_file()
    fit = json.loads(png.with_suffix(".json").read_text())["fit"]
    assert 0 < fit["alpha"] < 1 and fit["rate_error_max"] < 0.1


def test_export_spice_writes_a_deck_per_tile_that_ngspice_runs(tmp_path):
    """The deck of a compiled tile, run in ngspice: one step with two rows active moves each neuron's
    membrane by what the image's weights and thresholds say (ideal wires)."""
    from analog_models.spice import simulate
    from sim.tile_netlist import membrane_step, tile_deck
    from compiler.image import COL_NEURON, load_image
    from test_cli_hdl import build

    b = build(tmp_path / "net", target="memristive", rows=8, cols=8)
    r = run("export", b, "--spice")
    assert r.returncode == 0, r.stderr
    image = load_image(b)
    decks = sorted(p.name for p in (b / "spice").iterdir())
    assert decks == sorted(f"tile{t}.cir" for t in range(image.n_tiles))
    assert ".tran" in (b / "spice" / "tile0.cir").read_text()
    a = image.arrays
    t = int(np.argmax((a["col_kind"] == COL_NEURON).sum(axis=1)))
    rows = [1, 4]
    out = simulate(tile_deck(image, t, r_wire=0.0, active={0: rows}, analysis=False), ".tran 2e-9 2e-7 uic")
    expect = membrane_step(image, t, rows)
    neurons = np.flatnonzero(a["col_kind"][t] == COL_NEURON)
    got = np.array([out[f"mem{c}"][-1] for c in neurons])
    np.testing.assert_allclose(got, expect[neurons], rtol=2e-3, atol=1e-4)
    # with wire resistance the same step moves every membrane a little less
    wired = simulate(tile_deck(image, t, r_wire=5.0, active={0: rows}, analysis=False), ".tran 2e-9 2e-7 uic")
    assert all(abs(wired[f"mem{c}"][-1]) < abs(out[f"mem{c}"][-1]) for c in neurons if abs(expect[c]) > 1e-3)
    r = run("export", b, "--spice", "--bitstream", "icebreaker")
    assert r.returncode == 2 and "one or the other" in r.stderr
    digital = build(tmp_path / "dig")
    r = run("export", digital, "--spice")
    assert r.returncode == 2 and "--target memristive" in r.stderr and not (digital / "spice").exists()
