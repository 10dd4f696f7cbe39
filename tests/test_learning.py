"""The learning circuit's integer e-prop rule (sim/learning.py) against its document, and against
the float rule it stands for (l2l/eprop.py)."""

import numpy as np
import pytest

from compiler.mapper import CompileOptions, compile_network
from sim import learning
from sim.digital import DigitalSimulator
from test_compile import random_input, random_network

FMT = learning.LearningFormat()


def sat(x, bits):
    hi = (1 << (bits - 1)) - 1
    return max(-hi - 1, min(hi, x))


def oracle(sim, result, rho, k, target, B, shifts, fmt=FMT):
    """The module docstring's equations, one synapse and one step at a time, in Python integers."""
    A = sim.image.arithmetic.decay_bits
    mulr = lambda x, a: (x * a + (1 << (A - 1))) >> A  # noqa: E731
    x, v, b = result.spikes["rows"], result.membrane["chip"], result.membrane["adaptation"]
    Tc, M = x.shape[:2]
    alpha, theta = sim.params["alpha"], sim.params["threshold"]
    outs = [o for o in sim.image.meta["outputs"] if o["kind"] == "value"]
    out_k = [int(n) for o in outs for n in sim.neurons(o["population"])]
    lat = [int(o["latency"]) for o in outs for _ in sim.neurons(o["population"])]
    kappa = max(int(alpha[n]) for n in out_k)
    tasks, T, n_out = target.shape
    acc = np.zeros((tasks, len(k)), dtype=object)
    for task in range(tasks):
        m = 0 if M == 1 else task

        def err(t, o):
            if lat[o] <= t < lat[o] + T:
                return int(v[t, m, out_k[o]]) - int(target[task, t - lat[o], o])
            return 0

        for s, (r, n) in enumerate(zip(rho.tolist(), k.tolist())):
            xb = e = total = 0
            for t in range(Tc):
                xb = sat(mulr(xb, int(alpha[n])) + (int(x[t, m, r]) << fmt.trace_frac), fmt.trace_bits)
                if sim.spiking[n]:
                    th = int(theta[n])
                    h = max(0, th - abs(int(v[t, m, n]) - th - int(b[t, m, n])))
                    inv = round((1 << fmt.inv_frac) / th)
                    psi = (h * inv) >> (fmt.inv_frac - fmt.psi_frac)
                    e = sat(mulr(e, kappa) + ((psi * xb) >> fmt.psi_frac), fmt.elig_bits)
                    L = 0 if t == Tc - 1 else sat(sum(int(B[n, o]) * err(t + 1, o) for o in range(n_out)) >> shifts[0],
                                                  fmt.signal_bits)
                else:
                    e = xb
                    L = sat(err(t, out_k.index(n)) >> shifts[1], fmt.signal_bits) if n in out_k else 0
                total = sat(total + L * e, fmt.acc_bits)
            acc[task, s] = total
    return acc


@pytest.fixture(scope="module")
def case():
    net = random_network(3)
    image = compile_network(net, CompileOptions(target="digital", rows=16, cols=16, levels=16, seed=3)).image
    sim = DigitalSimulator(image)
    x = random_input(3, steps=30, batch=1)
    result = sim.run(x, record_spikes=True)
    coo = sim.w.tocoo()
    rho, k = coo.row.astype(np.int64), coo.col.astype(np.int64)
    keep = np.isin(k, np.flatnonzero(sim.image.arrays["col_kind"].reshape(-1)[sim.addr] == 1))
    rng = np.random.default_rng(0)
    n_out = sum(o["size"] for o in image.meta["outputs"] if o["kind"] == "value")
    target = rng.integers(-3000, 3000, size=(2, 30, n_out))
    B = rng.integers(-40, 41, size=(sim.addr.size, n_out))
    return sim, result, rho[keep], k[keep], target, B


def test_the_accumulators_follow_the_documented_integer_rule(case):
    sim, result, rho, k, target, B = case
    assert sim.spiking[k].any() and (~sim.spiking[k]).any()  # spiking and readout columns learn
    shifts = (4, 1)
    got = learning.integer_accumulators(sim, result, rho, k, target, B, shifts)
    want = oracle(sim, result, rho, k, target, B, shifts)
    np.testing.assert_array_equal(got, want.astype(np.int64))
    assert np.count_nonzero(got) > rho.size // 2
    # the check can fail: one bit of a format differs
    off = learning.integer_accumulators(sim, result, rho, k, target, B, shifts,
                                        learning.LearningFormat(psi_frac=FMT.psi_frac - 1))
    assert not np.array_equal(off, got)


def test_stochastic_rounding_is_unbiased_and_reproducible():
    acc = np.full((1, 4000), 1000, dtype=np.int64)
    mant, shift = learning.quantize_rates(np.full(4000, 0.3e-3))  # -0.3 levels each, on average
    d = learning.integer_update(acc, mant, shift)
    assert set(np.unique(d).tolist()) == {-1, 0}
    assert abs(d.mean() + 0.3) < 0.02
    np.testing.assert_array_equal(d, learning.integer_update(acc, mant, shift))
    assert not np.array_equal(d, learning.integer_update(acc, mant, shift, learning.LearningFormat(lfsr_seed=7)))


def test_the_lfsr_has_the_full_period():
    seq = learning.lfsr(65535)
    assert seq[-1] == 0xACE1 and len(set(seq.tolist())) == 65535


def test_rates_keep_sixteen_bits():
    rate = np.exp(np.random.default_rng(1).uniform(-30, 5, size=500))
    mant, shift = learning.quantize_rates(rate)
    np.testing.assert_allclose(mant / np.exp2(shift), rate, rtol=2 ** -15)
    assert mant.max() < 1 << 16


@pytest.mark.slow
def test_the_integer_rule_tracks_the_float_rule_on_the_arm():
    """The meta-trained arm learner on the digital twin: the accumulators, in the float rule's
    units, correlate with its gradient (>= 0.99 per synapse class) and one update helps as much."""
    from l2l import eprop
    from l2l.evaluate import load_meta_trained
    from l2l.hardware import ChipDevices
    from l2l.learner import one_shot
    from l2l.tasks import arm

    config, x, _ = load_meta_trained("examples/arm")
    task, spec = config.task, config.task.spec
    targets = arm.random_trajectories(4, spec.arm, rng=np.random.default_rng(5))
    w = spec.unpack(x)
    src, tgt, val, cls = spec.synapses(x)
    chip = ChipDevices(spec.network(x), (src, tgt, val), "digital", levels=spec.levels, rows=spec.tile,
                       cols=spec.tile, t_learn=task.t_learn, t_test=task.t_test, seed=0)
    chip.reset(1)
    demo = chip.run(spec.clock(), task.t_learn, record=True)
    error = demo.outputs["velocity"][:, 0].astype(np.float64)[None] - targets.velocities
    feedback = np.zeros((chip.sim.addr.size, 2))
    feedback[chip.neuron_k[:spec.n_hidden]] = w["B"]
    grad = eprop.gradient(chip.sim, demo, chip.sites.rho, chip.sites.k, error, feedback, gamma=spec.gamma)
    target = learning.target_events(chip.sim, targets.velocities)
    B, frac = learning.quantize_feedback(feedback, chip.sim)
    shifts = learning.signal_shifts(B, 2 * int(np.abs(target).max()))
    acc = learning.integer_accumulators(chip.sim, demo, chip.sites.rho, chip.sites.k, target, B, shifts)
    estimate = acc * learning.float_units(chip.sim, chip.sites.k, spec.gamma, frac, shifts)
    for c in range(3):
        assert np.corrcoef(grad[:, cls == c].ravel(), estimate[:, cls == c].ravel())[0, 1] > 0.99, c
    integer = one_shot(spec, x, targets, "digital", t_learn=task.t_learn, t_test=task.t_test)
    assert integer.ratio < 0.5
