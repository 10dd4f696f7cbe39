"""Task ``alif``: tune the recurrent ALIF example's hyper-parameters with its readout learned on the chip.

``[run] task = "alif"``: the cheap learning-to-learn case (CI runs it end to end). The network
is ``examples/alif_memory`` (50 LIF + 50 ALIF neurons, cue accumulation over a 50 ms delay)
with its trained input and recurrent weights; its readout starts from small random weights
and is learned **on the memristive chip**: ``updates`` e-prop steps (``l2l/eprop.py``; for the
readout, the exact gradient of the squared error), each from ``demos`` demonstration trials,
written to the devices as whole programming steps (``l2l/hardware.py``). The loss is the error
rate on ``tests`` held-out trials after learning, plus ``0.01`` times the readout's mean
squared error in the recall window (a tie-breaker that makes the loss continuous).

Candidate ``x`` (5 numbers): log factors on the example's own values (``x = 0`` is the trained
network: tau_mem 20 ms, threshold 1, tau_adapt 1 s, adapt 0.1 per spike) and the readout's
learning rate:

==== ======================= ===================================================
x_0  ``log`` factor          membrane time constant ``tau_mem`` (LIF and ALIF; gain ``1 - alpha`` follows)
x_1  ``log`` factor          firing threshold
x_2  ``log`` factor          ALIF adaptation time constant ``tau_adapt``
x_3  ``log`` factor          ALIF adaptation strength ``beta = adapt / (1 - alpha_adapt)``
x_4  ``log10``               readout learning rate (weight levels per unit of error and trace)
==== ======================= ===================================================

The trials are the example's test set: the first ``demos * updates`` are the demonstrations,
the last ``tests`` the held-out trials. The ``[task]`` section: ``hardware`` (``ideal``,
``pcm``, ``tiox``, ``digital`` or ``float``; default ``"ideal"``), ``levels`` (16), ``tile``
(128), ``demos`` (32), ``updates`` (2), ``tests`` (128), ``sigma0`` (0.5), ``init_seed`` (0),
``network`` and ``test_set`` (paths; default: the bundled example).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from small.limits import CELL_BYTES, check_memory

from . import Task, register

__all__ = ["AlifTask", "PARAMETERS"]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "alif_memory"
PARAMETERS = ("log_tau_mem", "log_threshold", "log_tau_adapt", "log_beta", "log10_lr")


@register
@dataclass(frozen=True)
class AlifTask(Task):
    """Hyper-parameters of the ALIF example with an on-chip readout (see the module)."""

    name = "alif"

    hardware: str = "ideal"
    levels: int = 16
    tile: int = 128
    demos: int = 32
    updates: int = 2
    tests: int = 128
    sigma0: float = 0.5
    init_seed: int = 0
    network: str = str(EXAMPLE / "network.small")
    test_set: str = str(EXAMPLE / "test_set.npz")

    def __post_init__(self):
        check_memory(self.tile * self.tile * CELL_BYTES, f"tile {self.tile}: one {self.tile}x{self.tile} tile",
                     error=ValueError)

    @classmethod
    def from_config(cls, section: Mapping[str, Any], where: str) -> AlifTask:
        from l2l.fields import Field, fields
        from l2l.hardware import HARDWARE

        values = fields(section, where, {
            "hardware": Field(str, default="ideal", choices=HARDWARE),
            "levels": Field(int, default=16, minimum=2),
            "tile": Field(int, default=128, minimum=8),
            "demos": Field(int, default=32, minimum=1, doc="demonstration trials per update"),
            "updates": Field(int, default=2, minimum=1, doc="e-prop updates of the readout"),
            "tests": Field(int, default=128, minimum=1, doc="held-out trials that score the result"),
            "sigma0": Field(float, default=0.5),
            "init_seed": Field(int, default=0),
            "network": Field(str, default=cls.network),
            "test_set": Field(str, default=cls.test_set),
        })
        task = cls(**values)
        task._trials()  # a missing or short test set fails now, not in every evaluation
        return task

    def x0(self) -> np.ndarray:
        return np.array([0.0, 0.0, 0.0, 0.0, 0.0])

    def _trials(self):
        from sim.evaluate import load_test_set

        test = load_test_set(self.test_set)
        need = self.demos * self.updates + self.tests
        if test.labels.size < need:
            raise ValueError(f"test_set {self.test_set!r} has {test.labels.size} trials: {self.demos} demos x "
                             f"{self.updates} updates + {self.tests} tests = {need} are needed")
        return test

    def hyperparameters(self, x) -> dict[str, float]:
        """The candidate's factors on the example's values and its learning rate."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (len(PARAMETERS),):
            raise ValueError(f"x must hold the {len(PARAMETERS)} numbers {', '.join(PARAMETERS)}, not {list(x.shape)}")
        factors = np.exp(x[:4])
        return {"tau_mem_factor": float(factors[0]), "threshold_factor": float(factors[1]),
                "tau_adapt_factor": float(factors[2]), "beta_factor": float(factors[3]), "lr": float(10.0 ** x[4])}

    def network_for(self, x):
        """The example network with the candidate's neurons and a fresh random readout."""
        from compiler.netfile import load_network

        h = self.hyperparameters(x)
        net = load_network(self.network)
        for pop in net.populations:
            n = pop.neuron
            if pop.name in ("lif", "alif"):
                # time constants scale through the decays: alpha = exp(-dt / tau) -> alpha ** (1 / factor)
                alpha = np.asarray(n.alpha) ** (1.0 / h["tau_mem_factor"])
                changes = dict(alpha=alpha, gain=1 - alpha, v_threshold=np.asarray(n.v_threshold) * h["threshold_factor"])
                if pop.name == "alif":
                    rho0 = np.asarray(n.alpha_adapt)
                    beta = np.asarray(n.adapt) / (1 - rho0) * h["beta_factor"]
                    rho = rho0 ** (1.0 / h["tau_adapt_factor"])
                    changes.update(alpha_adapt=rho, adapt=beta * (1 - rho))
                pop.neuron = replace(n, **changes)
            else:
                pop.bias = 0.0  # the readout is learned afresh
        rng = np.random.default_rng(self.init_seed)
        for proj in net.projections:
            if proj.target == "out":
                proj.weight = rng.normal(0.0, 0.05, proj.weight.shape)
        return net.validate()

    def evaluate(self, x: np.ndarray, seed: int) -> tuple[float, dict]:
        from l2l import eprop
        from l2l.hardware import ChipDevices
        from sim.evaluate import classify

        h = self.hyperparameters(x)
        net = self.network_for(x)
        test = self._trials()
        n_in = sum(i.size for i in net.inputs)
        offset = {p.name: o for p, o in zip(net.populations, np.cumsum([0] + [p.size for p in net.populations]))}
        src, tgt, val = [], [], []
        for proj in net.projections:
            if proj.target == "out":
                post, pre = np.nonzero(np.ones(proj.weight.shape))
                src.append(n_in + offset[proj.source] + pre), tgt.append(offset["out"] + post)
                val.append(proj.weight[post, pre])
        synapses = tuple(np.concatenate(a) for a in (src, tgt, val))
        chip = ChipDevices(net, synapses, self.hardware, levels=self.levels, rows=self.tile, cols=self.tile, seed=seed)
        chip.reset(1)
        start, end = test.window
        x_all, labels = test.x, test.labels
        for u in range(self.updates):
            trials = slice(u * self.demos, (u + 1) * self.demos)
            demo = chip.run(x_all[:, trials], chip.t_learn, record=True)
            error = self._error(demo.outputs["decision"], labels[trials], start, end)
            grad = eprop.gradient(chip.sim, demo, chip.sites.rho, chip.sites.k, error)
            chip.write(-h["lr"] * grad.sum(axis=0, keepdims=True))
        held_out = slice(labels.size - self.tests, labels.size)
        out = chip.run(x_all[:, held_out], chip.t_test).outputs["decision"]
        accuracy = float(np.mean(classify(out, "mean_value", (start, end)) == labels[held_out]))
        mse = float(np.mean(self._error(out, labels[held_out], start, end)[:, start:end] ** 2))
        return (1.0 - accuracy) + 0.01 * mse, {"accuracy": accuracy, "mse": mse,
                                               "written": int(chip.writes.sum()), **h}

    @staticmethod
    def _error(out: np.ndarray, labels: np.ndarray, start: int, end: int) -> np.ndarray:
        """Readout minus target (+1 for the trial's class, -1 for the other) in the recall window; ``[trials, T, 2]``."""
        target = np.where(np.arange(2)[None, :] == labels[:, None], 1.0, -1.0)
        err = np.zeros(out.shape[1:2] + out.shape[0:1] + out.shape[2:])
        err[:, start:end] = out.transpose(1, 0, 2)[:, start:end] - target[:, None, :]
        return err

    def describe(self) -> str:
        return (f"task 'alif' (5 hyper-parameters of the ALIF example; readout learned on {self.hardware} hardware "
                f"from {self.updates} x {self.demos} demonstrations, scored on {self.tests} held-out trials)")
