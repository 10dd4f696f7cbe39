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
