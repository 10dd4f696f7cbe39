"""On-chip learning: the learning circuit's integer e-prop rule (``sim/learning.py``) against the
float rule it stands for (``l2l/eprop.py``), on the meta-trained arm learner (``examples/arm``).

Run from the repository root with the project's environment::

    .venv/bin/python bench/learning.py [--n 100] [--seed 0]

On the digital twin, for ``--n`` unseen trajectories (the evaluation's test seed): the
correlation of the integer accumulators (in the float rule's units) with the float gradient per
synapse class, the ratio of their norms, the one-shot loss ratio (after / before the update)
with either rule, the devices written, and the time each rule takes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    from l2l import eprop
    from l2l.evaluate import TEST_SEED, load_meta_trained
    from l2l.hardware import ChipDevices
    from l2l.tasks import arm
    from sim import learning

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    config, x, _ = load_meta_trained(ROOT / "examples" / "arm")
    task, spec = config.task, config.task.spec
    targets = arm.random_trajectories(args.n, spec.arm, rng=np.random.default_rng(TEST_SEED))
    w = spec.unpack(x)
    src, tgt, val, cls = spec.synapses(x)
    chip = ChipDevices(spec.network(x), (src, tgt, val), "digital", levels=spec.levels, rows=spec.tile,
                       cols=spec.tile, t_learn=task.t_learn, t_test=task.t_test, seed=args.seed)
    clock = spec.clock()
    chip.reset(1)
    demo = chip.run(clock, task.t_learn, record=True)
    before = demo.outputs["velocity"][:, 0].astype(np.float64)
    feedback = np.zeros((chip.sim.addr.size, 2))
    feedback[chip.neuron_k[:spec.n_hidden]] = w["B"]
    hidden = np.where(cls == 2, src - spec.n_clock, tgt)
    lr = 10.0 ** (w["log10_lr"][cls] + w["log10_lr_neuron"][hidden])
    sites = chip.sites

    t0 = time.perf_counter()
    grad = eprop.gradient(chip.sim, demo, sites.rho, sites.k, before[None] - targets.velocities, feedback,
                          gamma=spec.gamma)
    t_float = time.perf_counter() - t0
    t0 = time.perf_counter()
    delta_int = learning.eprop_update(chip.sim, demo, sites.rho, sites.k, targets.velocities, feedback, lr, spec.gamma)
    t_int = time.perf_counter() - t0
    target = learning.target_events(chip.sim, targets.velocities)
    B, frac = learning.quantize_feedback(feedback, chip.sim)
    shifts = learning.signal_shifts(B, 2 * int(np.abs(target).max()))
    acc = learning.integer_accumulators(chip.sim, demo, sites.rho, sites.k, target, B, shifts)
    estimate = acc * learning.float_units(chip.sim, sites.k, spec.gamma, frac, shifts)

    def after(delta):
        chip.reset(args.n)
        written = chip.write(delta)
        out = chip.run(clock, task.t_test).outputs["velocity"].astype(np.float64).transpose(1, 0, 2)
        return float(np.mean(arm.loss(out, targets))), float(written.mean())

    loss_before = float(np.mean(arm.loss(np.broadcast_to(before, (args.n, *before.shape)), targets)))
    float_after, float_written = after(-lr * grad)
    int_after, int_written = after(delta_int)
    print(f"arm learner, digital twin, {args.n} trajectories, {sites.rho.size} plastic synapses; "
          f"B: {frac} fraction bits, signal shifts {shifts}, largest accumulator {int(np.abs(acc).max()).bit_length()} bits")
    for c, name in enumerate(("input", "recurrent", "readout")):
        m = cls == c
        r = np.corrcoef(grad[:, m].ravel(), estimate[:, m].ravel())[0, 1]
        ratio = np.linalg.norm(estimate[:, m]) / np.linalg.norm(grad[:, m])
        print(f"  {name:9s} synapses: correlation {r:.5f}, norm integer / float {ratio:.4f}")
    print(f"  loss before {loss_before:.3f}; after one update: float rule {float_after:.3f} "
          f"(ratio {float_after / loss_before:.3f}, {100 * float_written:.1f} % of devices written), integer rule "
          f"{int_after:.3f} (ratio {int_after / loss_before:.3f}, {100 * int_written:.1f} %); integer / float "
          f"{int_after / float_after:.3f}")
    print(f"  time per demonstration batch: float rule {t_float:.3f} s, integer rule {t_int:.3f} s")


if __name__ == "__main__":
    main()
