"""Labelled test sets and classification accuracy.

A test set is an ``.npz`` archive (read with ``allow_pickle=False``) with

``x``
    inputs ``[T, N, *input_shape]`` (spikes as uint8/bool or currents as float);
``labels``
    integer class per sample ``[N]``;
``readout`` (optional, default ``"spike_count"``)
    ``"spike_count"``: the class is the output neuron with most spikes over the window;
    ``"mean_value"``: the output neuron with the largest mean value (LI membrane) over it;
``window`` (optional)
    ``[start, end)`` steps the readout looks at (default: all steps);
``framework``, ``dt`` (optional)
    how to read the accompanying NIR file (``small simulate`` options).

Ties go to the lowest index (``numpy.argmax``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from small.errors import SimulationError
from small.fileio import read_npz
from compiler.ir import Network

READOUTS = ("spike_count", "mean_value")


@dataclass
class TestSet:
    x: np.ndarray
    labels: np.ndarray
    readout: str = "spike_count"
    window: tuple[int, int] | None = None
    framework: str | None = None
    dt: float | None = None

    __test__ = False  # not a pytest test class


def load_test_set(path: str | Path) -> TestSet:
    """Read and check a labelled test set (see the module docstring)."""
    data = read_npz(path, what="test set")
    for key in ("x", "labels"):
        if key not in data:
            raise SimulationError(f"test set {str(path)!r} lacks the array {key!r}")
    x, labels = data["x"], data["labels"]
    if x.ndim < 3 or labels.ndim != 1 or x.shape[1] != labels.shape[0]:
        raise SimulationError(
            f"test set {str(path)!r}: x has shape {list(x.shape)} and labels {list(labels.shape)}; "
            "expected x [T, N, ...] and labels [N]"
        )
    readout = str(data["readout"]) if "readout" in data else "spike_count"
    if readout not in READOUTS:
        raise SimulationError(f"test set {str(path)!r}: readout {readout!r} is not one of {', '.join(READOUTS)}")
    window = tuple(int(v) for v in data["window"]) if "window" in data else None
    return TestSet(
        x=x,
        labels=labels.astype(np.int64),
        readout=readout,
        window=window,  # type: ignore[arg-type]
        framework=str(data["framework"]) if "framework" in data else None,
        dt=float(data["dt"]) if "dt" in data else None,
    )


def classify(outputs: np.ndarray, readout: str, window: tuple[int, int] | None = None) -> np.ndarray:
    """Class per sample from network outputs ``[T, N, n_out]``."""
    if window is not None:
        outputs = outputs[window[0] : window[1]]
    score = outputs.sum(axis=0) if readout == "spike_count" else outputs.mean(axis=0)
    return np.argmax(score, axis=-1)


def accuracy(model: Network | Any, test: TestSet, *, batch_size: int = 256) -> float:
    """Fraction of test samples classified correctly by ``model``.

    ``model`` is a network (run on the reference simulator) or any simulator with
    ``run(x) -> SimulationResult`` (the chip simulators of ``sim/``).
    """
    from .reference import ReferenceSimulator

    sim = ReferenceSimulator(model) if isinstance(model, Network) else model
    n = test.labels.shape[0]
    correct = 0
    for start in range(0, n, batch_size):
        result = sim.run(test.x[:, start : start + batch_size])
        predicted = classify(result.output_array(), test.readout, test.window)
        correct += int(np.sum(predicted == test.labels[start : start + batch_size]))
    return correct / n
