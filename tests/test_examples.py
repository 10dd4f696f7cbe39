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


def test_flow_prints_the_digits_accuracy():
    result = subprocess.run([sys.executable, "-m", "small", "flow", str(EXAMPLES / "digits" / "digits.nir")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    reported = json.loads((EXAMPLES / "digits" / "snntorch_result.json").read_text())["accuracy"]
    assert f"accuracy {reported * 100:.2f} %" in result.stdout


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
