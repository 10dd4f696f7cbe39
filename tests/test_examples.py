"""The bundled trained examples run without torch and reproduce what their training framework measured."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from compiler.netfile import load_network
from compiler.nir_frontend import import_nir
from sim.evaluate import accuracy, classify, load_test_set
from sim.reference import simulate

EXAMPLES = Path(__file__).parents[1] / "examples"


def test_digits_matches_snntorch_sample_for_sample():
    folder = EXAMPLES / "digits"
    test = load_test_set(folder / "test_set.npz")
    assert test.framework == "snntorch"
    net = import_nir(folder / "digits.nir", framework=test.framework)
    counts = simulate(net, test.x).output_array().sum(axis=0).astype(np.int64)
    expected = np.load(folder / "test_set.npz")["snntorch_output_counts"]
    np.testing.assert_array_equal(counts, expected)  # every output neuron's spike count, every sample
    reported = json.loads((folder / "snntorch_result.json").read_text())["accuracy"]
    assert accuracy(net, test) == pytest.approx(reported, abs=1e-12)
    assert reported > 0.9


@pytest.mark.rtl
@pytest.mark.slow
def test_flow_runs_the_digits_classifier_from_nir_to_verified_rtl(tmp_path):
    """`make demo`'s main job, without the bitstream (tests/test_hdl_export.py builds those)."""
    result = subprocess.run([sys.executable, "-m", "small", "flow", str(EXAMPLES / "digits" / "digits.nir"),
                             "--levels", "8", "--board", "none", "--samples", "5", "-o", str(tmp_path / "digits")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    reported = json.loads((EXAMPLES / "digits" / "snntorch_result.json").read_text())["accuracy"]
    out = result.stdout
    assert f"[2/6] reference  accuracy {reported * 100:.2f} %" in out
    assert "digital 97.22 % on 540 test samples" in out
    assert "5 inputs x 25 steps (130 chip steps compared)" in out and "PASS" in out
    assert (tmp_path / "digits" / "hdl" / "small_chip.v").is_file()
    assert "[6/6] report" in out and "verified   PASS" in out and (tmp_path / "digits" / "report.html").is_file()


def test_classify_ties_go_to_the_lowest_index():
    out = np.zeros((3, 1, 4), np.float32)
    out[:, 0, 1] = out[:, 0, 3] = 1
    assert classify(out, "spike_count").tolist() == [1]


def test_alif_memory_matches_its_torch_model_sample_for_sample():
    folder = EXAMPLES / "alif_memory"
    net = load_network(folder / "network.small")
    assert {p.neuron.kind for p in net.populations} == {"lif", "alif", "li"}
    assert any(p.source == p.target and p.delay == 1 for p in net.projections)  # recurrent
    test = load_test_set(folder / "test_set.npz")
    assert test.readout == "mean_value" and test.window is not None
    raw = np.load(folder / "test_set.npz")
    result = simulate(net, test.x, record_spikes=["lif", "alif"])
    counts = np.concatenate([result.spikes["lif"], result.spikes["alif"]], axis=-1).sum(axis=0)
    np.testing.assert_array_equal(counts, raw["torch_spike_counts"])  # every neuron's spike count
    start, end = test.window
    mean = result.output_array()[start:end].mean(axis=0)
    np.testing.assert_allclose(mean, raw["torch_out_mean"], atol=1e-4)
    reported = json.loads((folder / "torch_result.json").read_text())
    assert accuracy(net, test) == pytest.approx(reported["accuracy"], abs=1e-12)
    assert reported["accuracy"] > reported["control_accuracy_no_adaptation"]  # the memory needs adaptation
