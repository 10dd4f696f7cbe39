"""Fine-tuning for a concrete chip (``small finetune``, train/): faults, rewiring, drift compensation.

Run from the repository root (needs the train extra: torch)::

    .venv/bin/python bench/finetune.py                       # every table, bench/finetune.png
    .venv/bin/python bench/finetune.py --only faults --fault-rates 0.3,0.3 --plot bench/finetune-faults.png

On the digits classifier (``examples/digits``, 8 levels, 64x64 tiles, its ``train_set.npz``):

* **faults**: TiOx chips of 4 tiles with a fraction of the devices stuck (half high, half low)
  and a fraction reversed (``small faults random --stuck S --reversed R``); the given network
  (placed without regard to the faults, with the compiler's fault-aware placement, and with
  the fault-aware placement weighed by the training data's activity, which the fine-tuning
  keeps), fine-tuned without pruning, fine-tuned with fault pruning (the map's slopes, and
  discovered from the responses); each run: fresh Bernoulli draws of the training set's rates
  every epoch, cosine learning rate from 0.002, 60 epochs;
* **rewire**: tiles, fan-in splits and accuracy on the digital twin against the fan-in limit K;
* **drift**: PCM at 16 levels read 1 h and 1 day after programming, without and with drift
  compensation per tile and per column (``sim/analog.py``), no faults and 10 % stuck devices
  (fault-aware placement), mean of 3 chips;
* wall time per epoch (2 cores, shared).

Every fine-tuned figure is the tuned network compiled anew and run on the chip's simulator.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the project's packages before bench/

from compiler.faults import random_faults, save_faults  # noqa: E402
from compiler.mapper import CompileOptions, compile_network  # noqa: E402
from sim.analog import AnalogSimulator  # noqa: E402
from sim.evaluate import accuracy, load_test_set  # noqa: E402
from train.finetune import FinetuneOptions, finetune, load_network  # noqa: E402

DIGITS = ROOT / "examples" / "digits"
FAULTS = ((0.1, 0.0), (0.0, 0.1), (0.1, 0.1), (0.2, 0.2), (0.3, 0.3), (0.4, 0.0), (0.0, 0.4))
FAN_IN = (8, 16, 32, 48, 64)
DRIFT = ((3600.0, "1 h"), (86400.0, "1 day"))


def quiet(_line: str) -> None:
    pass


def run(folder: Path, name: str, **options) -> dict:
    r = finetune(DIGITS / "digits.nir", DIGITS / "train_set.npz", DIGITS / "test_set.npz",
                 FinetuneOptions(**options), folder / name, progress=quiet)
    return r.to_dict()


def faults_table(folder: Path, epochs: int, settings=FAULTS) -> list:
    print("\n| stuck | reversed | given (identity placement) | given (compiler's fault-aware) | given (by activity) | "
          "fine-tuned | fault pruning (map) | fault pruning (responses) | s/epoch |\n|---|---|---|---|---|---|---|---|---|")
    rows = []
    for stuck, rev in settings:
        chip = folder / f"chip-{stuck}-{rev}.json"
        save_faults(random_faults(4, 64, 64, stuck, seed=0, reversed_rate=rev), chip)
        common = dict(levels=8, faults=str(chip), device="tiox", epochs=epochs, augment="redraw", schedule="cosine")
        plain = run(folder, f"plain-{stuck}-{rev}", **common)
        by_map = run(folder, f"map-{stuck}-{rev}", fault_pruning=True, **common)
        by_resp = run(folder, f"resp-{stuck}-{rev}", fault_pruning=True, prune_by="response", **common)
        per_epoch = np.mean([e["seconds"] for e in plain["epochs"]])
        rows.append((stuck, rev, plain["accuracy_before_identity_placement"], plain["accuracy_before_compiler_placement"],
                     plain["accuracy_before"], plain["accuracy_after"], by_map["accuracy_after"],
                     by_resp["accuracy_after"]))
        print(f"| {stuck * 100:.0f} % | {rev * 100:.0f} % | " + " | ".join(f"{v * 100:.2f} %" for v in rows[-1][2:])
              + f" | {per_epoch:.1f} |", flush=True)
    return rows


def rewire_table(folder: Path, epochs: int) -> list:
    print("\n| fan-in limit | tiles | fan-in splits | accuracy (digital twin) | float | s/epoch |\n|---|---|---|---|---|---|")
    rows = []
    for k in FAN_IN:
        r = run(folder, f"rewire-{k}", levels=8, rewire=True, fan_in=k, epochs=epochs, augment="shuffle-time")
        per_epoch = np.mean([e["seconds"] for e in r["epochs"]])
        rows.append((k, r["tiles_after"], r["fan_in_splits_after"], r["accuracy_after"], r["reference_after"]))
        print(f"| {k} | {r['tiles_after']} | {r['fan_in_splits_after']} | {r['accuracy_after'] * 100:.2f} % | "
              f"{r['reference_after'] * 100:.2f} % | {per_epoch:.1f} |", flush=True)
    return rows


def drift_table(seeds: int = 3) -> list:
    test = load_test_set(DIGITS / "test_set.npz")
    net = load_network(DIGITS / "digits.nir", test.dt, test.framework)

    def image(stuck, seed):
        faults = random_faults(4, 64, 64, stuck, seed=seed) if stuck else None
        return compile_network(net, CompileOptions(target="memristive", levels=16, faults=faults)).image

    print("\n| time since programming | stuck | no compensation | per tile | per column |\n|---|---|---|---|---|")
    rows = []
    for stuck in (0.0, 0.1):
        images = [image(stuck, s) for s in range(seeds)]
        for t, label in DRIFT:
            accs = [np.mean([accuracy(AnalogSimulator(images[s], device="pcm", seed=s, t_read=t,
                                                      drift_compensation=mode), test) for s in range(seeds)])
                    for mode in (None, "tile", "column")]
            rows.append((stuck, t, *accs))
            print(f"| {label} | {stuck * 100:.0f} % | " + " | ".join(f"{a * 100:.2f} %" for a in accs) + " |",
                  flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=("faults", "rewire", "drift"))
    ap.add_argument("--epochs", type=int, default=60, help="epochs of the faults table")
    ap.add_argument("--rewire-epochs", type=int, default=20)
    ap.add_argument("--fault-rates", type=lambda t: tuple(float(v) for v in t.split(",")), metavar="STUCK,REVERSED",
                    help="one fault setting of the faults table (default: all)")
    ap.add_argument("--plot", default="bench/finetune.png")
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "drift"):
            rows["drift"] = drift_table()
        if args.only in (None, "rewire"):
            rows["rewire"] = rewire_table(Path(tmp), args.rewire_epochs)
        if args.only in (None, "faults"):
            settings = FAULTS if args.fault_rates is None else [args.fault_rates]
            rows["faults"] = faults_table(Path(tmp), args.epochs, settings)
    print(f"\n{time.perf_counter() - t0:.0f} s")
    plot(rows, Path(args.plot))


def plot(rows: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, len(rows), figsize=(5 * len(rows), 3.8), squeeze=False)
    ax = list(ax[0])
    if "faults" in rows:
        a = ax.pop(0)
        labels = [f"{s * 100:.0f}/{r * 100:.0f}" for s, r, *_ in rows["faults"]]
        x = np.arange(len(labels))
        for k, name in enumerate(("given, identity placement", "given, compiler's placement", "given, by activity",
                                  "fine-tuned", "pruned (map)", "pruned (responses)")):
            a.bar(x + (k - 2.5) * 0.14, [r[2 + k] * 100 for r in rows["faults"]], 0.14, label=name)
        a.set(xticks=x, xticklabels=labels, xlabel="stuck / reversed devices (%)", ylabel="accuracy (%)",
              title="TiOx chip, 8 levels")
        a.legend(fontsize=7)
    if "rewire" in rows:
        a = ax.pop(0)
        k, tiles, _, acc, _ = zip(*rows["rewire"])
        a.plot(k, np.array(acc) * 100, "o-", label="accuracy")
        a.set(xlabel="fan-in limit K", ylabel="accuracy (%)", title="Rewiring, 64x64 tiles, 8 levels")
        b = a.twinx()
        b.plot(k, tiles, "s--", color="grey", label="tiles")
        b.set_ylabel("tiles")
    if "drift" in rows:
        a = ax.pop(0)
        for stuck in (0.0, 0.1):
            sel = [r for r in rows["drift"] if r[0] == stuck]
            for j, mode in enumerate(("none", "tile", "column")):
                a.plot([r[1] for r in sel], [r[2 + j] * 100 for r in sel], "o-" if stuck == 0 else "s--",
                       label=f"{stuck * 100:.0f} % stuck, {mode}")
        a.set(xscale="log", xlabel="time since programming (s)", ylabel="accuracy (%)", title="PCM drift, 16 levels")
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
