"""Throughput of the learning-to-learn outer loop: evaluations per second on 1 and 2 local Dask workers.

Run from the repository root with the project's environment::

    .venv/bin/python bench/l2l.py            # about two minutes
    .venv/bin/python bench/l2l.py --quick    # a few seconds of each measurement

What is measured
----------------
Every figure goes through ``l2l.runner.Runner.map``, the call the outer loop makes once per
generation (pickling the task, submitting one Dask task per candidate, gathering in order), on
the ``function`` task (``l2l/tasks/functions.py``) with populations of ``--popsize`` (16).
Cluster start-up is not timed, one untimed generation warms the workers up (imports, the task
cache), and each figure is the fastest of a few repeated blocks of generations (other load on
the machine only ever slows a block down). The load average is printed before and after: on a
busy machine the speed-up says more about the other jobs than about Dask.

* ``cpu-bound``: each evaluation does ``work`` rounds of element-wise numpy arithmetic,
  calibrated in this process to ``--eval-ms`` (75 ms); no sleep, no BLAS threads. Evaluations
  per second in this process (serial), on a LocalCluster of 1 and of 2 single-threaded worker
  processes, and on a ``concurrent.futures.ProcessPoolExecutor`` of 2 processes (the floor a
  process pool sets). ``speed-up`` is 2 workers against 1 (the goal is >= 1.8 on 2 free cores;
  the client and scheduler run in this process and take their share).
* ``overhead``: the same with a near-zero-cost evaluation (a 10-D sphere): wall time per
  evaluation, serial, on Dask (1 and 2 workers) and on the process pool, so ``Dask - serial``
  is what Dask adds to each evaluation and ``Dask - pool`` what it adds beyond a process pool.

To add a measurement (the flagship meta-training, say), write a function ``name(args) ->
list of rows`` and append it to ``MEASUREMENTS``; ``--only name`` runs one.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from l2l.loop import evaluation_seeds  # noqa: E402
from l2l.runner import Runner, evaluate  # noqa: E402
from l2l.tasks.functions import FunctionTask, busy_work  # noqa: E402


def calibrate(eval_ms: float) -> int:
    """Rounds of ``busy_work`` that take ``eval_ms`` in this process (fastest of 5: the machine unloaded)."""
    busy_work(50)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        busy_work(200)
        times.append((time.perf_counter() - t0) / 200)
    return max(1, round(eval_ms / 1e3 / min(times)))


def generation(task, popsize: int, g: int):
    x0 = task.x0()
    X = x0 + 0.1 * np.random.default_rng(g).normal(size=(popsize, x0.size))
    return X, evaluation_seeds(0, g, popsize)


def best_of(repeats: int, block) -> float:
    """The fastest of ``repeats`` timings of ``block()`` (other load on the machine only slows it down)."""
    return min(block() for _ in range(repeats))


def time_runner(runner: Runner, task, popsize: int, generations: int, repeats: int) -> float:
    """Seconds per evaluation over ``generations`` generations (best of ``repeats``), after one untimed generation."""
    runner.map(task, *generation(task, popsize, 10**6))

    def block():
        t0 = time.perf_counter()
        for g in range(generations):
            evals = runner.map(task, *generation(task, popsize, g))
            assert len(evals) == popsize and all(e.ok for e in evals)
        return (time.perf_counter() - t0) / (generations * popsize)

    return best_of(repeats, block)


def time_pool(workers: int, task, popsize: int, generations: int, repeats: int) -> float:
    """The same on a ProcessPoolExecutor (task pickled with every evaluation, as Dask ships it)."""
    with concurrent.futures.ProcessPoolExecutor(workers) as pool:
        list(pool.map(evaluate, [task] * popsize, *generation(task, popsize, 10**6)))

        def block():
            t0 = time.perf_counter()
            for g in range(generations):
                X, seeds = generation(task, popsize, g)
                evals = list(pool.map(evaluate, [task] * popsize, X, seeds))
                assert all(e.ok for e in evals)
            return (time.perf_counter() - t0) / (generations * popsize)

        return best_of(repeats, block)


def on_backends(task, args, gens: int, repeats: int, serial_gens: int | None = None) -> dict[str, float]:
    """Seconds per evaluation in-process (``serial``) and on local Dask clusters of 1 and 2 workers."""
    per_eval = {}
    with Runner(workers=0) as runner:
        per_eval["serial"] = time_runner(runner, task, args.popsize, serial_gens or gens, repeats)
    for n in (1, 2):
        with Runner(workers=n) as runner:
            per_eval[f"dask {n}"] = time_runner(runner, task, args.popsize, gens, repeats)
    return per_eval


def cpu_bound(args) -> list[tuple]:
    work = calibrate(args.eval_ms)
    task = FunctionTask(n=10, work=work)
    gens, repeats = (2, 2) if args.quick else (4, 3)
    per_eval = on_backends(task, args, gens, repeats, serial_gens=1)
    per_eval["pool 2"] = time_pool(2, task, args.popsize, gens, repeats)
    rows = [("cpu-bound", f"work={work}", k, 1 / v, v * 1e3,
             f"work calibrated to {args.eval_ms:.0f} ms" if k == "serial" else "") for k, v in per_eval.items()]
    speedup = per_eval["dask 1"] / per_eval["dask 2"]
    rows.append(("cpu-bound", "", "speed-up 2/1", None, None, f"{speedup:.2f}x (goal >= 1.8x)"))
    rows.append(("cpu-bound", "", "dask 2 - pool 2", None, (per_eval["dask 2"] - per_eval["pool 2"]) * 1e3,
                 "Dask's cost per evaluation beyond a process pool"))
    return rows


def overhead(args) -> list[tuple]:
    task = FunctionTask(n=10)
    gens, repeats = (5, 2) if args.quick else (20, 3)
    per_eval = on_backends(task, args, gens, repeats)
    for n in (1, 2):
        per_eval[f"pool {n}"] = time_pool(n, task, args.popsize, gens, repeats)
    rows = [("overhead", "sphere, ~0 ms", k, 1 / v, v * 1e3, "") for k, v in per_eval.items()]
    for n in (1, 2):
        rows.append(("overhead", "", f"dask {n} - serial", None, (per_eval[f"dask {n}"] - per_eval["serial"]) * 1e3,
                     "what Dask adds per evaluation"))
        rows.append(("overhead", "", f"dask {n} - pool {n}", None, (per_eval[f"dask {n}"] - per_eval[f"pool {n}"]) * 1e3,
                     "beyond a process pool"))
    return rows


def arm(args) -> list[tuple]:
    """The flagship's own evaluation (compile, demonstration, e-prop, device writes, test on PCM)."""
    from l2l.tasks.oneshot import ArmTask

    task = ArmTask.from_config({}, "bench")
    gens, repeats = (1, 1) if args.quick else (3, 2)
    per_eval = on_backends(task, args, gens, repeats)
    rows = [("arm", "pcm, 16 trajectories", k, 1 / v, v * 1e3, "") for k, v in per_eval.items()]
    rows.append(("arm", "", "speed-up 2/1", None, None, f"{per_eval['dask 1'] / per_eval['dask 2']:.2f}x"))
    if args.run:
        summary = json.loads((Path(args.run) / "run.json").read_text())
        rows.append(("arm", f"{summary['generations']} generations", "flagship run", summary["evaluations"]
                     / summary["seconds"], summary["seconds"] / summary["evaluations"] * 1e3,
                     f"wall time {summary['seconds'] / 60:.1f} min for {summary['evaluations']} evaluations"))
    return rows


# name -> function(args) -> rows of (measurement, setting, backend, evals/s, ms per eval, note)
MEASUREMENTS = {
    "cpu-bound": cpu_bound,
    "overhead": overhead,
    "arm": arm,
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer generations (a few seconds per measurement)")
    parser.add_argument("--popsize", type=int, default=16, help="candidates per generation (default 16)")
    parser.add_argument("--eval-ms", type=float, default=75.0, help="cost of a CPU-bound evaluation (default 75 ms)")
    parser.add_argument("--only", choices=list(MEASUREMENTS), action="append", help="run only these measurements")
    parser.add_argument("--run", metavar="RUN_DIR", help="a finished flagship run (small l2l run examples/arm/config.toml): "
                        "report its wall time")
    args = parser.parse_args(argv)
    print(f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.2f}; popsize {args.popsize}", flush=True)
    header = f"{'measurement':<10} {'setting':<22} {'backend':<18} {'eval/s':>9} {'ms/eval':>9}  note"
    print(header)
    print("-" * len(header))
    for name in args.only or MEASUREMENTS:
        for what, setting, backend, rate, ms, note in MEASUREMENTS[name](args):
            print(f"{what:<10} {setting:<22} {backend:<18} {'' if rate is None else f'{rate:9.1f}':>9} "
                  f"{'' if ms is None else f'{ms:9.3f}':>9}  {note}".rstrip(), flush=True)
    print(f"load average after {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
