"""Labelled test sets, classification accuracy, and :func:`measure`: a compiled image's accuracy,
inter-tile traffic and energy on a test set.

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
from small.fileio import NUMBER_KINDS, read_npz
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
    if x.dtype.kind not in NUMBER_KINDS or labels.dtype.kind not in NUMBER_KINDS:
        raise SimulationError(f"test set {str(path)!r}: x holds {x.dtype} and labels {labels.dtype} values; expected "
                              "numbers (x float32 spikes or values, labels whole numbers)")
    if labels.dtype.kind == "f" and not np.all(np.isfinite(labels) & (labels == np.round(labels))):
        raise SimulationError(f"test set {str(path)!r}: labels must be whole numbers (class indices)")
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


# -- measuring a compiled image --------------------------------------------------------------
EXAMPLE_SAMPLES = 256
"""How many of the first test samples traffic and energy are counted on (the "example input")."""
T_READ = 3600.0
"""Seconds between programming and reading the device-level memristive chip (drift, read noise)."""
BATCH = 256  # samples per simulator run


def accuracy_key(image: Any) -> str:
    """The name of an image's own simulator in ``report.json`` ``accuracy``."""
    return "digital" if image.target == "digital" else "memristive_ideal"


def analog_key(image: Any) -> str:
    """The name of :func:`measure`'s device-level simulation of a memristive image (the image's
    calibrated device, else PCM, read after an hour)."""
    return f"memristive_{(image.meta.get('device') or {}).get('model', 'pcm')}_1h"


@dataclass
class Measurement:
    """What :func:`measure` found for one compiled image."""

    accuracy: dict[str, float]
    """Test-set accuracy per simulation, named as in ``report.json``: ``reference`` (the float
    network), :func:`accuracy_key` (the image's own simulator), :func:`analog_key`."""
    test_samples: int
    """Labelled samples the accuracies are over (0: inputs without labels)."""
    counted_samples: int
    """The first inputs the event counts below cover."""
    steps: int
    spike_counts: np.ndarray
    """Each neuron's spikes over the counted inputs (neuron order of ``image.neuron_addresses()``)."""
    row_events: np.ndarray
    """Each crossbar row's events over the counted inputs, ``[tiles * rows]``."""
    input_events: np.ndarray
    """Each input element's host events (nonzero inputs) over the counted inputs."""
    inter_tile_events_per_step: float
    """Per input and network step: every spike times the tiles other than its own it is routed to."""
    energy: dict | None = None
    """:func:`analog_models.energy.per_inference` on the counted inputs (memristive images given
    energy figures)."""


class _Counter:
    """A chip simulator that adds up its runs' spike and row-event counts while fewer than
    ``limit`` samples were counted (:func:`accuracy` runs in batches; each run resets the counts)."""

    def __init__(self, sim: Any, limit: int | None):
        self.sim, self.limit, self.samples = sim, limit, 0
        self.spike_counts: Any = 0
        self.row_events: Any = 0

    def run(self, x: np.ndarray) -> Any:
        result = self.sim.run(x)
        if self.limit is None or self.samples < self.limit:
            self.spike_counts = self.spike_counts + self.sim.spike_counts
            self.row_events = self.row_events + self.sim.row_events
            self.samples += x.shape[1]
        return result


def measure(image: Any, network: Network, test: TestSet | None = None, *, inputs: np.ndarray | None = None,
            reference: bool = False, analog: bool = False, energy: dict | None = None,
            counted: int | None = EXAMPLE_SAMPLES, known: dict[str, float] | None = None) -> Measurement:
    """Accuracy, inter-tile traffic and energy of a compiled image of ``network``.

    Runs the image's own simulator (:func:`sim.chip_simulator`) over ``test`` (or over unlabelled
    ``inputs`` ``[T, N, ...]``: no accuracy) and counts its spikes, row events and host events on
    the first ``counted`` inputs (None: all), rounded up to whole batches of ``BATCH`` (the counts
    come from the accuracy run when there is one).

    reference : also the float network's accuracy (``sim/reference.py``).
    analog : a memristive image's device-level accuracy too (:class:`sim.analog.AnalogSimulator`,
        its calibrated device or PCM, read ``T_READ`` after programming, seed 0).
    energy : energy figures (:func:`analog_models.energy.measure`, or a calibration's): a
        memristive image's analog energy per inference on the counted inputs.
    known : accuracies already measured (``report.json``), taken instead of measured again.
    """
    from analog_models.energy import per_inference
    from compiler.mapper import inter_tile_events_per_step

    from . import chip_simulator

    if test is None and inputs is None:
        raise SimulationError("measure needs a test set or inputs")
    x = test.x if test is not None else inputs
    known = known or {}
    acc: dict[str, float] = {}

    def score(key: str, make: Any) -> None:  # make(): the model to score, unless its accuracy is known
        if test is not None:
            acc[key] = known[key] if known.get(key) is not None else accuracy(make(), test, batch_size=BATCH)

    sim = chip_simulator(image)
    counter = _Counter(sim, counted)
    if reference:
        score("reference", lambda: network)
    score(accuracy_key(image), lambda: counter)
    if counter.samples == 0:  # no accuracy run (known, or no labels): count on runs of their own
        for start in range(0, x.shape[1] if counted is None else min(x.shape[1], counted), BATCH):
            counter.run(x[:, start : start + BATCH])
    memristive = image.target == "memristive"
    if analog and memristive:
        from .analog import AnalogSimulator

        score(analog_key(image), lambda: AnalogSimulator(image, t_read=T_READ, seed=0))
    n, steps = counter.samples, int(x.shape[0])
    spikes, rows = np.asarray(counter.spike_counts), np.asarray(counter.row_events)
    host = np.count_nonzero(sim.prepare_inputs(x[:, :n])[0], axis=(0, 1))
    return Measurement(
        accuracy=acc, test_samples=int(test.labels.size) if test is not None else 0, counted_samples=n, steps=steps,
        spike_counts=spikes, row_events=rows, input_events=host,
        inter_tile_events_per_step=inter_tile_events_per_step(image, spikes, steps, n),
        energy=per_inference(image, rows, int(spikes.sum()), n, energy) if energy and memristive else None,
    )
