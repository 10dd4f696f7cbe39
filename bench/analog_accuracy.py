"""Digits accuracy on the memristive chip under device-level non-idealities (sim/analog.py).

Run from the repository root::

    .venv/bin/python bench/analog_accuracy.py                    # table + bench/analog_accuracy.png
    .venv/bin/python bench/analog_accuracy.py --device tiox --seeds 3 --plot out.png

The digits classifier (``examples/digits``, snnTorch conventions) is compiled for the memristive
target on 64x64 tiles and run on all 540 test samples by :class:`sim.analog.AnalogSimulator`:

* **levels** 2, 4, 8, 16, 32, 64 (device noise on, read 1 hour after programming, no faults);
* **stuck devices** 0 .. 50 % of the chip (half stuck at G_min, half at G_max; a random fault
  map per seed, 16 levels, 1 hour), compiled with fault-aware placement and without it
  (``CompileOptions.fault_aware``; partners are programmed to compensate in both);
* **drift** 1 s, 1 min, 1 h, 1 day after programming (16 levels, no faults), PCM only drifts;
  without and with fault-aware placement at 10 % stuck devices.

Each point is the mean over ``--seeds`` chips (programming noise, read noise, drift exponents and
fault maps are drawn per seed). The ideal-device accuracy (sim/memristive.py) and the float
reference are printed for comparison.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the project's packages before bench/ (bench/hdl.py is not hdl/)

from compiler.faults import random_faults  # noqa: E402
from compiler.mapper import CompileOptions, compile_network
from compiler.nir_frontend import import_nir
from sim.analog import AnalogSimulator
from sim.evaluate import accuracy, load_test_set
from sim.memristive import IdealMemristiveSimulator

LEVELS = (2, 4, 8, 16, 32, 64)
STUCK = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)
DRIFT = ((1.0, "1 s"), (60.0, "1 min"), (3600.0, "1 h"), (86400.0, "1 day"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="pcm", choices=("pcm", "tiox"))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--plot", default="bench/analog_accuracy.png")
    args = ap.parse_args()

    folder = Path("examples/digits")
    test = load_test_set(folder / "test_set.npz")
    net = import_nir(folder / "digits.nir", framework=test.framework)
    t0 = time.perf_counter()

    def image(levels=16, stuck=0.0, seed=0, fault_aware=True):
        faults = random_faults(4, 64, 64, stuck, seed=seed) if stuck else None
        return compile_network(net, CompileOptions(target="memristive", levels=levels, faults=faults,
                                                   fault_aware=fault_aware)).image

    def acc(img, seed, **kw):
        return accuracy(AnalogSimulator(img, device=args.device, seed=seed, **kw), test)

    def mean(f):
        return float(np.mean([f(s) for s in range(args.seeds)]))

    print(f"# digits, {len(test.labels)} test samples, device {args.device}, mean of {args.seeds} chips")
    print(f"float reference: {accuracy(net, test) * 100:.2f} %; ideal devices at 16 levels: "
          f"{accuracy(IdealMemristiveSimulator(image()), test) * 100:.2f} %")
    rows = {"levels": [], "stuck": [], "drift": []}
    print("\n| levels | ideal devices | device, 1 h |\n|---|---|---|")
    for L in LEVELS:
        img = image(levels=L)
        ideal, noisy = accuracy(IdealMemristiveSimulator(img), test), mean(lambda s: acc(img, s, t_read=3600.0))
        rows["levels"].append((L, ideal, noisy))
        print(f"| {L} | {ideal * 100:.2f} % | {noisy * 100:.2f} % |", flush=True)
    print("\n| stuck devices | fault-aware placement | naive placement |\n|---|---|---|")
    for f in STUCK:
        aware = mean(lambda s: acc(image(stuck=f, seed=s), s, t_read=3600.0))
        naive = mean(lambda s: acc(image(stuck=f, seed=s, fault_aware=False), s, t_read=3600.0))
        rows["stuck"].append((f, aware, naive))
        print(f"| {f * 100:.0f} % | {aware * 100:.2f} % | {naive * 100:.2f} % |", flush=True)
    print("\n| time since programming | no faults | 10 % stuck, fault-aware | 10 % stuck, naive |\n|---|---|---|---|")
    clean = image()
    for t, label in DRIFT:
        a = mean(lambda s: acc(clean, s, t_read=t))
        b = mean(lambda s: acc(image(stuck=0.1, seed=s), s, t_read=t))
        c = mean(lambda s: acc(image(stuck=0.1, seed=s, fault_aware=False), s, t_read=t))
        rows["drift"].append((t, a, b, c))
        print(f"| {label} | {a * 100:.2f} % | {b * 100:.2f} % | {c * 100:.2f} % |", flush=True)
    print(f"\n{time.perf_counter() - t0:.0f} s")
    plot(rows, args, Path(args.plot))


def plot(rows, args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(13, 3.8))
    L, ideal, noisy = zip(*rows["levels"])
    ax[0].plot(L, np.array(ideal) * 100, "o-", label="ideal devices")
    ax[0].plot(L, np.array(noisy) * 100, "s-", label=f"{args.device}, 1 h")
    ax[0].set_xscale("log", base=2)
    ax[0].minorticks_off()
    ax[0].set(xticks=L, xticklabels=[str(v) for v in L], xlabel="conductance levels per device",
              ylabel="accuracy (%)", title="Levels")
    f, aware, naive = zip(*rows["stuck"])
    ax[1].plot(np.array(f) * 100, np.array(aware) * 100, "o-", label="fault-aware placement")
    ax[1].plot(np.array(f) * 100, np.array(naive) * 100, "s--", label="naive placement")
    ax[1].set(xlabel="stuck devices (%)", ylabel="accuracy (%)", title="Stuck devices (16 levels, 1 h)")
    t, a, b, c = zip(*rows["drift"])
    ax[2].plot(t, np.array(a) * 100, "o-", label="no faults")
    ax[2].plot(t, np.array(b) * 100, "s-", label="10 % stuck, fault-aware")
    ax[2].plot(t, np.array(c) * 100, "^--", label="10 % stuck, naive")
    ax[2].set(xscale="log", xlabel="time since programming (s)", ylabel="accuracy (%)", title="Drift (16 levels)")
    for a_ in ax:
        a_.grid(alpha=0.3)
        a_.legend(fontsize=8)
    fig.suptitle(f"Digits classifier on the memristive chip ({args.device}, sim/analog.py, mean of {args.seeds} chips)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
