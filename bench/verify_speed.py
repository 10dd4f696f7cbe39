"""Verification throughput (issue 17, point 7): the digits test set through `small verify` on Verilator.

Run from the repository root with the project's environment::

    .venv/bin/python bench/verify_speed.py                          # 540 samples, 2 rounds (about 10 minutes)
    .venv/bin/python bench/verify_speed.py --samples 50 --rounds 1 --icarus-samples 2   # quick

The design: ``small compile examples/digits/digits.nir --target digital --levels 8`` (``make demo``'s
network, 4 tiles of 64x64) and ``small hdl --lanes L`` for each ``--lanes`` (default 8): the
programmable chip of the network's capacity, the network loaded over its ``config`` port before
the samples run. Inputs: the first ``--samples`` of ``examples/digits/test_set.npz`` (540 samples
of 25 steps, 26 chip steps each with the output latency), prepared as ``small verify`` prepares them.

Testbenches, all :func:`verify.runner.verify` (what ``small verify`` calls), every run required to
pass (every neuron spike where it enters the router, host spikes, end-of-step events equal to
``sim/digital.py``):

``per-cycle``   ``harness=False``: cocotb drives the chip's host ports and watches the router clock
                edge by clock edge (the testbench before the harness);
``harness``     the chip inside ``verify/harness.py``: Python writes a batch of command words,
                waits for ``ack`` and reads the batch's events back (the default of ``small verify``);
``harness-jN``  the same, the samples shared out over N simulator processes (``jobs=N``);
``cli``         ``small verify BUILD --inputs X.npy --samples N`` in a subprocess, wall time of the
                whole command (Python start-up, reading the build, the reused Verilator build, the
                run): what a user waits for once the design is built.

Every testbench's design is built first (and timed: ``build s``); then ``--rounds`` rounds run
every testbench once each, the order reversed every other round, so that a shared machine's load
falls on all of them alike. ``run s`` is the runner's wall time (simulator start-up, reference
model, testbench), ``tb s`` what the testbench measured itself, and for the harness the seconds
Python spent writing batches, waiting for the simulator and reading events back. Icarus runs
``per-cycle`` and ``harness`` on ``--icarus-samples`` samples in the same rounds (the second opinion).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODEL = ROOT / "examples" / "digits" / "digits.nir"
TEST_SET = ROOT / "examples" / "digits" / "test_set.npz"


def small(*args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "small", *map(str, args)], cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"small {' '.join(map(str, args))} failed ({r.returncode}): {r.stderr.strip()[-400:]}")
    return r.stdout


def builds(work: Path, lanes: list[int]) -> dict[int, Path]:
    base = work / "digits8"
    if not (base / "image.json").is_file():
        small("compile", MODEL, "--target", "digital", "--levels", "8", "-o", base)
    out = {}
    for n in lanes:
        folder = work / f"digits8-lanes{n}"
        if not (folder / "hdl" / "small_chip.v").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            shutil.copytree(base, folder)
            small("hdl", folder, "--lanes", n)
        out[n] = folder
    return out


def run_api(folder: Path, xs: np.ndarray, simulator: str, variant: str, work: Path) -> dict:
    from verify.runner import verify

    capacity = json.loads((folder / "hdl" / "summary.json").read_text()).get("capacity")
    kw = {"harness": False} if variant == "per-cycle" else {"jobs": int(variant[9:]) if "-j" in variant else 1}
    t0 = time.perf_counter()
    r = verify(folder, folder / "hdl" / "small_chip.v", xs, simulator=simulator, work_dir=work, name=variant,
               capacity=capacity, **kw)
    wall = time.perf_counter() - t0
    s = r.summary
    if not r.passed:
        raise SystemExit(f"{simulator} {variant} failed: {s['mismatch']}")
    return {"build_s": r.build_seconds if r.built else None, "run_s": r.run_seconds, "wall_s": wall,
            "tb_s": s["seconds"], "load_s": s["load_seconds"], "chip_steps": s["chip_steps"], "cycles": s["cycles"],
            "cycles_per_step": s["mean_cycles_per_step"], "compared": s["compared"], "harness": s.get("harness"),
            "steps_per_s": s["chip_steps"] / r.run_seconds}


def run_cli(folder: Path, inputs: Path, samples: int) -> dict:
    t0 = time.perf_counter()
    out = small("verify", folder, "--inputs", inputs, "--samples", samples)
    wall = time.perf_counter() - t0
    if "PASS" not in out or "reused" not in out:
        raise SystemExit(f"small verify did not pass on a reused build:\n{out}")
    return {"wall_s": wall, "summary": out.strip().splitlines()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=540)
    ap.add_argument("--icarus-samples", type=int, default=5, help="0: no Icarus runs")
    ap.add_argument("--lanes", type=int, nargs="+", default=[8])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--jobs", type=int, nargs="*", default=[2], help="harness runs sharded over N processes")
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "bench-verify-speed")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from compiler.image import load_image
    from sim.digital import DigitalSimulator

    args.work.mkdir(parents=True, exist_ok=True)
    folders = builds(args.work, args.lanes)
    x = np.load(TEST_SET)["x"][:, :args.samples]
    inputs = args.work / f"inputs-{args.samples}.npy"
    np.save(inputs, x)
    image = load_image(next(iter(folders.values())))
    xs, _, _ = DigitalSimulator(image).prepare_inputs(x)
    variants = ["per-cycle", "harness"] + [f"harness-j{n}" for n in args.jobs]
    plan = [(lanes, "verilator", v) for lanes in args.lanes for v in variants + ["cli"]]
    if args.icarus_samples:
        plan += [(args.lanes[0], "icarus", v) for v in ("per-cycle", "harness")]
    out = {"machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
           "started": time.strftime("%Y-%m-%d %H:%M:%S"), "samples": args.samples,
           "icarus_samples": args.icarus_samples, "builds": {}, "rounds": []}
    for lanes, sim, v in plan:  # build every design once (one sample), before anything is timed
        if v == "cli":  # `small verify` builds into BUILD/verify/
            t0 = time.perf_counter()
            small("verify", folders[lanes], "--inputs", inputs, "--samples", 1)
            out["builds"][f"cli lanes={lanes}"] = time.perf_counter() - t0
            continue
        if "-j" in v:
            continue
        folder = folders[lanes]
        r = run_api(folder, xs[:, :1], sim, v, args.work / f"verify-{lanes}")
        out["builds"][f"{sim} {v} lanes={lanes}"] = r["build_s"]
        print(f"built {sim} {v} lanes={lanes}: {r['build_s']}", flush=True)
    for k in range(args.rounds):
        rows = []
        for lanes, sim, v in (plan if k % 2 == 0 else plan[::-1]):
            folder = folders[lanes]
            load = os.getloadavg()[0]
            if v == "cli":
                r = run_cli(folder, inputs, args.samples)
            else:
                n = args.samples if sim == "verilator" else args.icarus_samples
                r = run_api(folder, xs[:, :n], sim, v, args.work / f"verify-{lanes}")
            r.update(lanes=lanes, simulator=sim, variant=v, load_before=load)
            rows.append(r)
            print(json.dumps({k2: r[k2] for k2 in ("simulator", "lanes", "variant", "wall_s", "load_before")}
                             | {k2: r.get(k2) for k2 in ("run_s", "tb_s", "harness")}), flush=True)
        out["rounds"].append(rows)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
