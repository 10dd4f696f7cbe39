"""Reports and sweeps: time to build a build's report, and the sweep's points per second on 1 and 2 workers.

Run from the repository root with the project's environment::

    .venv/bin/python bench/report.py            # about two minutes
    .venv/bin/python bench/report.py --quick    # the report once, a 4-point sweep

What is measured
----------------
* ``report``: ``small.report.write_report`` on the digits classifier (``examples/digits``),
  compiled as ``make demo`` compiles it (digital, 8 levels, 64x64 tiles: 4 tiles) and for
  memristive tiles (16 levels) with 5 % stuck devices: the whole page, simulations included
  (reference, twin and device-level accuracy on 540 test samples, rasters, traffic, energy).
  Fastest of ``--repeat`` runs, and where the time goes.
* ``sweep``: ``small.sweep.run_sweep`` over the issue's grid on the digits classifier (tiles
  32x32, 64x64, 128x128; 4, 8, 16 levels; 0, 5 and 10 % stuck devices: 27 points, all 540 test
  samples each) in this process, on a local Dask cluster of 1 worker and of 2 workers. Cluster
  start-up is not timed and an untimed 2-point sweep warms the workers up (imports); each
  timed sweep starts over (``force``) so every point is computed. ``speed-up`` is 2 workers
  against 1. The load average is printed: on a busy machine the speed-up says more about the
  other jobs than about Dask.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DIGITS = ROOT / "examples" / "digits" / "digits.nir"


def compile_digits(out: Path, **options) -> None:
    from small.flow import BuildOptions, compile_build, load_model_and_test_set

    compile_build(load_model_and_test_set(DIGITS), BuildOptions(**options), out)


def bench_report(tmp: Path, repeat: int) -> list[str]:
    from compiler.faults import random_faults, save_faults
    from small.report import build_sections, load_build, write_report

    lines = []
    faults = tmp / "faults.json"
    save_faults(random_faults(8, 64, 64, 0.05, seed=0), faults)
    for name, options in (("digital, 8 levels", {"levels": 8}),
                          ("memristive, 16 levels, 5 % stuck", {"target": "memristive", "faults": faults})):
        build = tmp / name.split(",")[0]
        compile_digits(build, **options)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            write_report(build)
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        b = load_build(build)
        t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        sections, _ = build_sections(b)
        t_sections = time.perf_counter() - t0
        figures = sum(len(s.figures) for s in sections)
        size = (build / "report.html").stat().st_size / 1e6
        lines.append(f"report {name:<34} {min(times):5.1f} s (fastest of {repeat}; load + other target's compile "
                     f"{t_load:.1f} s, simulate + draw {t_sections:.1f} s), {figures} figures, {size:.1f} MB page")
    return lines


def bench_sweep(tmp: Path, quick: bool) -> list[str]:
    from analog_models.energy import measure
    from l2l.runner import Runner
    from small.flow import load_model
    from small.sweep import Grid, run_sweep
    from sim.evaluate import load_test_set

    test = load_test_set(DIGITS.with_name("test_set.npz"))
    net = load_model(DIGITS, dt=test.dt, framework=test.framework)
    energy = measure()
    grid = (Grid(tiles=[(64, 64)], levels=[8, 16], stuck=[0.0, 0.1]) if quick else
            Grid(tiles=[(32, 32), (64, 64), (128, 128)], levels=[4, 8, 16], stuck=[0.0, 0.05, 0.1]))
    warm = Grid(tiles=[(64, 64)], levels=[16], stuck=[0.0, 0.1])
    quiet = dict(force=True, plots=False, progress=lambda s: None, energy=energy)
    rates, lines = {}, []
    for label, workers in (("in process", 0), ("1 worker", 1), ("2 workers", 2)):
        with Runner(workers=workers) as runner:
            run_sweep(net, test, warm, tmp / f"warm{workers}", runner if workers else None, **quiet)
            t0 = time.perf_counter()
            result = run_sweep(net, test, grid, tmp / f"sweep{workers}", runner if workers else None, **quiet)
            wall = time.perf_counter() - t0
        rates[workers] = len(grid) / wall
        lines.append(f"sweep  {label:<11} {len(grid)} points in {wall:5.1f} s: {rates[workers]:.2f} points/s")
    lines.append(f"sweep  speed-up 2 workers / 1 worker: {rates[2] / rates[1]:.2f}x; 1 worker / in process: "
                 f"{rates[1] / rates[0]:.2f}x")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=("report", "sweep"))
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "report"):
            for line in bench_report(Path(tmp), 1 if args.quick else 3):
                print(line, flush=True)
        if args.only in (None, "sweep"):
            for line in bench_sweep(Path(tmp), args.quick):
                print(line, flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
