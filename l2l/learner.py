"""The meta-learned arm controller: a recurrent LIF/ALIF network that learns a trajectory from one demonstration.

Network (``LearnerSpec``): a clock of ``n_clock`` channels (``l2l.tasks.arm.clock_input``, one
channel active per window, 0/1 per step) drives ``n_lif`` LIF and ``n_alif`` ALIF neurons
(subtract reset), recurrently connected with one step of delay; a leaky-integrator readout of
two neurons gives the joint velocities (rad/s).

Candidate vector ``x`` (what the outer loop optimises), in this order:

=============== =================== ==================================================
``W_in``        ``[N, n_clock]``    clock -> hidden
``W_rec``       ``[N, N]``          hidden -> hidden (delay 1 step)
``W_out``       ``[2, N]``          hidden -> readout
``B``           ``[N, 2]``          e-prop feedback weights (learning signals)
``log10 lr``    ``[3]``             learning rates of the input, recurrent and readout weights
``log10 lr_n``  ``[N]``             per hidden neuron: a factor on the rates of its input and
                                    recurrent synapses, and of its readout synapses
=============== =================== ==================================================

(``N = n_lif + n_alif``.) **One-shot learning** (:func:`one_shot`): the chip runs the clock
once while the demonstration's target velocities are known, e-prop (``l2l/eprop.py``) turns the
error into one weight change per synapse, ``-lr_class * gradient`` in weight levels (on ``digital``
hardware the learning circuit's integer rule, ``sim/learning.py``), the change
is written to the devices (``l2l/hardware.py``: rounded to whole programming steps, only
changed devices written) and the chip runs the clock again: that is the produced trajectory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from compiler.ir import ALIF, LI, LIF, Input, Network, Population, Projection

from sim import learning

from . import eprop
from .hardware import ChipDevices
from .tasks import arm

__all__ = ["LearnerSpec", "OneShotResult", "one_shot"]

CLASSES = ("input", "recurrent", "readout")


@dataclass(frozen=True)
class LearnerSpec:
    """Architecture and fixed neuron constants of the learner (the ``[task]`` options)."""

    n_clock: int = 20
    """Clock channels (each active for steps / n_clock steps)."""
    n_lif: int = 20
    n_alif: int = 20
    tau_mem: float = 0.02
    """Hidden membrane time constant (s)."""
    tau_out: float = 0.02
    """Readout time constant (s)."""
    tau_adapt: float = 0.2
    """ALIF adaptation time constant (s)."""
    beta: float = 1.0
    """ALIF adaptation strength (threshold units per spike, before the decay)."""
    threshold: float = 1.0
    gamma: float = 0.3
    """Dampening of e-prop's pseudo-derivative."""
    levels: int = 17
    """Device levels: with 17, one programming step is 1/16 of the range (PCM)."""
    tile: int = 128
    """Square tile size (rows = cols)."""
    arm: arm.ArmParams = field(default_factory=arm.ArmParams)

    @property
    def n_hidden(self) -> int:
        return self.n_lif + self.n_alif

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        N = self.n_hidden
        return {"W_in": (N, self.n_clock), "W_rec": (N, N), "W_out": (2, N), "B": (N, 2), "log10_lr": (3,),
                "log10_lr_neuron": (N,)}

    @property
    def units(self) -> dict[str, float]:
        """The unit of each group in the candidate vector (its typical size at the start), so
        that one step size suits every group: ``x`` holds ``value / unit``."""
        return {"W_in": 0.15 * self.threshold, "W_rec": 0.1 / np.sqrt(self.n_hidden) * self.threshold,
                "W_out": 0.05, "B": 1.0, "log10_lr": 1.0, "log10_lr_neuron": 1.0}

    @property
    def size(self) -> int:
        return sum(int(np.prod(s)) for s in self.shapes.values())

    def unpack(self, x) -> dict[str, np.ndarray]:
        """The parameter groups of candidate ``x`` (in their own units: weights, log10 rates)."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.size,):
            raise ValueError(f"the learner has {self.size} parameters, not {list(x.shape)}")
        out, at = {}, 0
        for name, shape in self.shapes.items():
            n = int(np.prod(shape))
            out[name], at = x[at:at + n].reshape(shape) * self.units[name], at + n
        return out

    def pack(self, parts: dict[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([np.asarray(parts[name], dtype=np.float64).ravel() / self.units[name]
                               for name in self.shapes])

    def initial(self, seed: int = 0) -> np.ndarray:
        """A random start: clock weights that make the hidden neurons fire at about 50 Hz in a
        random set of windows, weak recurrence, readout weights that leave the output near 0,
        random feedback, learning rates of 0.01 (input, recurrent) and 1 level (readout)."""
        rng = np.random.default_rng(seed)
        N = self.n_hidden
        parts = {
            "W_in": rng.normal(0.05 / 0.15, 1.0, (N, self.n_clock)),
            "W_rec": rng.normal(0.0, 1.0, (N, N)),
            "W_out": rng.normal(0.0, 1.0, (2, N)),
            "B": rng.normal(0.0, 1.0, (N, 2)),
            "log10_lr": np.array([-3.0, -3.0, 0.5]),
            "log10_lr_neuron": np.zeros(N),
        }
        return np.concatenate([parts[name].ravel() for name in self.shapes])

    def clock(self) -> np.ndarray:
        """The clock input ``[steps, 1, n_clock]`` (0/1)."""
        p = self.arm
        return (arm.clock_input(p.steps, self.n_clock, kind="rates", rate=1.0 / p.dt, dt=p.dt) * p.dt)[:, None, :]

    def network(self, x) -> Network:
        """The candidate as a network for the compiler."""
        w = self.unpack(x)
        dt = self.arm.dt
        alpha, rho = np.exp(-dt / self.tau_mem), np.exp(-dt / self.tau_adapt)
        spiking = dict(alpha=alpha, v_threshold=self.threshold, reset="subtract")
        nl = self.n_lif
        pops = [Population("lif", self.n_lif, LIF(**spiking)),
                Population("alif", self.n_alif, ALIF(**spiking, alpha_adapt=rho, adapt=self.beta * (1 - rho))),
                Population("out", 2, LI(alpha=np.exp(-dt / self.tau_out)))]
        groups = {"lif": slice(0, nl), "alif": slice(nl, None)}
        projections = []
        for tgt, rows in groups.items():
            projections.append(Projection("clock", tgt, w["W_in"][rows]))
            for src, cols in groups.items():
                projections.append(Projection(src, tgt, w["W_rec"][rows, cols], delay=1))
        for src, cols in groups.items():
            projections.append(Projection(src, "out", w["W_out"][:, cols]))
        return Network(name="arm_learner", dt=dt, inputs=[Input("clock", (self.n_clock,))], populations=pops,
                       projections=projections, outputs={"velocity": "out"}).validate()

    def synapses(self, x) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every learnable synapse as ``(source, target, weight, class)``: sources are clock
        elements, then hidden neurons (``n_clock + i``); targets network neurons (hidden, then
        readout); class indexes :data:`CLASSES`."""
        w = self.unpack(x)
        N, n_in = self.n_hidden, self.n_clock
        parts = []
        for cls, (weight, src_offset, tgt_offset) in enumerate(((w["W_in"], 0, 0), (w["W_rec"], n_in, 0),
                                                                (w["W_out"], n_in, N))):
            post, pre = np.indices(weight.shape).reshape(2, -1)
            parts.append((src_offset + pre, tgt_offset + post, weight.ravel(), np.full(post.size, cls)))
        return tuple(np.concatenate(a) for a in zip(*parts))


@dataclass
class OneShotResult:
    """Before and after one update, per task."""

    before: np.ndarray
    """Velocities produced before learning, ``[steps, 2]`` (the same for every task)."""
    after: np.ndarray
    """Velocities produced after the update, ``[tasks, steps, 2]``."""
    loss_before: np.ndarray
    """``arm.loss`` per task before, ``[tasks]``."""
    loss_after: np.ndarray
    written: np.ndarray
    """Devices (G+ and G-) written per task, ``[tasks]``."""
    n_devices: int
    """Devices holding learnable synapses (two per synapse)."""
    writes: np.ndarray
    """Writes per device over the whole evaluation, ``[tasks, 2, synapses]`` (endurance)."""

    @property
    def ratio(self) -> float:
        """Mean loss after over mean loss before."""
        return float(np.mean(self.loss_after) / np.mean(self.loss_before))

    @property
    def written_fraction(self) -> float:
        return float(np.mean(self.written) / self.n_devices)


def one_shot(spec: LearnerSpec, x, targets: arm.Trajectories, hardware: str = "float", *, seed: int = 0,
             t_learn: float = 60.0, t_test: float = 120.0) -> OneShotResult:
    """Program the candidate ``x`` on ``hardware``, learn each target from one demonstration, test it."""
    w = spec.unpack(x)
    net = spec.network(x)
    src, tgt, val, cls = spec.synapses(x)
    chip = ChipDevices(net, (src, tgt, val), hardware, levels=spec.levels, rows=spec.tile, cols=spec.tile,
                t_learn=t_learn, t_test=t_test, seed=seed)
    n = targets.n
    clock = spec.clock()
    chip.reset(1)
    demo = chip.run(clock, t_learn, record=True)
    before = demo.outputs["velocity"][:, 0].astype(np.float64)              # [steps, 2]
    error = before[None] - targets.velocities                               # [tasks, steps, 2]
    feedback = np.zeros((chip.sim.addr.size, 2))
    feedback[chip.neuron_k[:spec.n_hidden]] = w["B"]                        # hidden neuron -> its B row
    # each class's rate, times the rate of the synapse's hidden neuron (its target, or its source for the readout)
    hidden = np.where(cls == 2, src - spec.n_clock, tgt)
    lr = 10.0 ** (w["log10_lr"][cls] + w["log10_lr_neuron"][hidden])
    if hardware == "digital":  # the learning circuit's integer rule (sim/learning.py)
        delta = learning.eprop_update(chip.sim, demo, chip.sites.rho, chip.sites.k, targets.velocities, feedback, lr,
                                      spec.gamma)
    else:
        delta = -lr * eprop.gradient(chip.sim, demo, chip.sites.rho, chip.sites.k, error, feedback, gamma=spec.gamma)
    chip.reset(n)
    written = chip.write(delta)
    after = chip.run(clock, t_test).outputs["velocity"].astype(np.float64).transpose(1, 0, 2)
    return OneShotResult(before=before, after=after, loss_before=arm.loss(np.broadcast_to(before, after.shape), targets),
                         loss_after=arm.loss(after, targets), written=written.sum(axis=(1, 2)),
                         n_devices=2 * src.size, writes=chip.writes)

