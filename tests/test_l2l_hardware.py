"""The learning loop's chip (l2l/hardware.py) and its e-prop update (l2l/eprop.py).

The chip must be the compiled image: before any write, every kind of hardware runs exactly as
the simulators of sim/ run the image. Writes must change only the devices whose level changes,
count them, and give PCM devices fresh noise and a fresh drift clock. The e-prop update must
be the exact gradient for the readout and a descent direction for the network.
"""

from __future__ import annotations

import numpy as np
import pytest

from l2l import eprop
from l2l.hardware import ChipDevices
from l2l.learner import LearnerSpec, one_shot
from l2l.tasks import arm
from sim.digital import DigitalSimulator
from sim.memristive import IdealMemristiveSimulator

# Small enough to split across tiles: 5 clock + 8 hidden rows feed each hidden neuron (13 > 8).
SMALL = LearnerSpec(n_clock=5, n_lif=4, n_alif=4, levels=17, tile=8)


def small_chip(hardware: str, seed: int = 0, spec: LearnerSpec = SMALL) -> tuple[ChipDevices, np.ndarray]:
    x = spec.initial(seed)
    src, tgt, val, _ = spec.synapses(x)
    return ChipDevices(spec.network(x), (src, tgt, val), hardware, levels=spec.levels, rows=spec.tile, cols=spec.tile,
                seed=seed), x


def test_every_synapse_is_found_where_the_compiler_put_it():
    chip, x = small_chip("ideal")
    assert chip.image.n_tiles > 1 and (chip.image.arrays["col_kind"] == 2).any(), "the case must split fan-in"
    chip.reset(1)
    assert np.array_equal(chip.weights(chip.t_learn)[0], chip.sim.dense_weights())
    # each synapse's level is its weight over its column's scale, as the compiler quantised it
    _, _, val, _ = SMALL.synapses(x)
    assert np.array_equal(chip.level, np.clip(np.rint(val / chip.sites.scale), -16, 16))


@pytest.mark.parametrize("hardware,simulator", [("ideal", IdealMemristiveSimulator), ("digital", DigitalSimulator)])
def test_before_any_write_the_chip_runs_as_the_simulators_run_the_image(hardware, simulator):
    chip, _ = small_chip(hardware)
    chip.reset(3)
    x = np.random.default_rng(1).integers(0, 2, (40, 3, SMALL.n_clock))
    mine = chip.run(x, chip.t_learn, record=True)
    theirs = simulator(chip.image).run(x, record_spikes=True)
    assert np.array_equal(mine.spikes["chip"], theirs.spikes["chip"])
    assert np.array_equal(mine.outputs["velocity"], theirs.outputs["velocity"])


def test_float_hardware_runs_the_exact_weights():
    from sim.reference import ReferenceSimulator

    chip, x = small_chip("float")
    chip.reset(1)
    clock = SMALL.clock()
    mine = chip.run(clock, 0.0).outputs["velocity"]
    ref = ReferenceSimulator(SMALL.network(x)).run(clock).outputs["velocity"]
    np.testing.assert_allclose(mine, ref, rtol=1e-5, atol=1e-6)  # outputs are float32


def test_writes_round_to_whole_levels_clip_and_touch_only_changed_devices():
    chip, _ = small_chip("pcm")
    chip.reset(2)
    q0, g0 = chip.q.copy(), chip.g.copy()
    S = q0.shape[1]
    delta = np.zeros((2, S))
    delta[0, 0] = 0.4          # rounds to nothing: no write
    delta[0, 1] = 1.6          # +2 levels
    delta[1, 2] = -100.0       # clipped at -(L - 1)
    written = chip.write(delta)
    assert chip.q[0, 0] == q0[0, 0] and chip.q[0, 1] == np.clip(q0[0, 1] + 2, -16, 16) and chip.q[1, 2] == -16
    changed = np.zeros((2, S), dtype=bool)
    changed[0, 1] = chip.q[0, 1] != q0[0, 1]
    changed[1, 2] = q0[1, 2] != -16
    assert np.array_equal(written.any(axis=1), changed)
    assert np.array_equal(chip.writes, written.astype(np.int64))
    # unwritten devices keep their conductance exactly; written ones restart their drift clock
    assert np.array_equal(chip.g[~written], g0[~written])
    assert np.all(chip.t_programmed[written] == chip.t_learn) and np.all(chip.t_programmed[~written] == 0)
    # a second identical write request on the clipped synapse writes nothing more
    again = np.zeros((2, S))
    again[1, 2] = -5.0
    assert not chip.write(again).any()


def test_pcm_drift_depends_on_each_devices_age():
    chip, _ = small_chip("pcm")
    chip.reset(1)
    chip.device = type(chip.device)(chip.device.name, chip.device.g_min, chip.device.g_max, drift=chip.device.drift,
                                    exponents=chip.device.exponents)  # drift only: no read noise
    delta = np.zeros((1, chip.q.shape[1]))
    delta[0, :] = 3.0
    written = chip.write(delta)
    w_learn = chip.weights(chip.t_learn)[0, chip.sites.rho, chip.sites.k]
    w_late = chip.weights(1e6)[0, chip.sites.rho, chip.sites.k]
    # freshly written devices (age 0 at t_learn) have not drifted; the others have, from time 0
    g = chip.device.drift(chip.g, chip.t_learn - chip.t_programmed, None, chip.nu)
    assert written.any() and np.array_equal(g[written], chip.g[written])
    old = ~written & (chip.g > 0)  # (programming noise leaves some level-0 devices at 0 S)
    assert old.any() and np.all(g[old] < chip.g[old])
    assert np.mean(np.abs(w_late)) < 0.9 * np.mean(np.abs(w_learn))


def test_readout_gradient_is_the_exact_gradient_of_the_squared_error():
    spec = LearnerSpec(n_clock=6, n_lif=5, n_alif=5)
    chip, x = small_chip("float", spec=spec)
    chip.reset(1)
    clock = spec.clock()
    target = arm.random_trajectories(2, spec.arm, rng=np.random.default_rng(3)).velocities
    demo = chip.run(clock, 0.0, record=True)
    y = demo.outputs["velocity"][:, 0].astype(np.float64)
    readout = np.isin(chip.sites.k, chip.sim.neurons("out"))
    grad = eprop.gradient(chip.sim, demo, chip.sites.rho[readout], chip.sites.k[readout], y[None] - target)

    def half_sse(level: np.ndarray) -> np.ndarray:
        chip.level = level
        chip.reset(1)
        out = chip.run(clock, 0.0).outputs["velocity"][:, 0].astype(np.float64)
        return 0.5 * np.sum((out[None] - target) ** 2, axis=(1, 2))

    base = chip.level.copy()
    for i in np.flatnonzero(readout)[:6]:
        h = 0.5  # the output is linear in a readout weight: central differences are exact at any step
        up, down = base.copy(), base.copy()
        up[i] += h
        down[i] -= h
        numeric = (half_sse(up) - half_sse(down)) / (2 * h)
        j = int(np.flatnonzero(np.flatnonzero(readout) == i)[0])
        np.testing.assert_allclose(grad[:, j], numeric, rtol=1e-5, atol=1e-8)


def test_one_shot_update_with_symmetric_feedback_lowers_the_loss():
    spec = LearnerSpec()
    w = spec.unpack(spec.initial(0))
    w["B"][:] = w["W_out"].T / np.abs(w["W_out"]).mean()
    targets = arm.random_trajectories(8, spec.arm, rng=np.random.default_rng(5))
    for hardware in ("float", "pcm"):
        for rates in ([-9, -9, 0.0], [-2.5, -2.5, -9]):  # readout alone; input and recurrent alone
            w["log10_lr"][:] = rates
            r = one_shot(spec, spec.pack(w), targets, hardware)
            assert r.ratio < 1.0, (hardware, rates, r.ratio)
            assert 0 < r.written_fraction <= 1


def test_the_update_is_written_as_device_writes_and_counted():
    spec = LearnerSpec()
    targets = arm.random_trajectories(4, spec.arm, rng=np.random.default_rng(6))
    r = one_shot(spec, spec.initial(0), targets, "pcm")
    assert r.writes.shape == (4, 2, r.n_devices // 2)
    assert np.array_equal(r.writes.sum(axis=(1, 2)), r.written)
    assert r.writes.max() == 1  # one update: each device written at most once
