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
