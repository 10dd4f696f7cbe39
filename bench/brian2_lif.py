"""Brian2 side of ``bench/reference_sim.py``: simulate benchmark network (i) and time ``run()``.

Runs in a separate virtual environment (Brian2 is a benchmark-only dependency, pinned in
``bench/requirements-brian2.txt``; Brian2 2.9.0 does not import with numpy >= 2.4)::

    python3.11 -m venv /tmp/brian2-venv
    /tmp/brian2-venv/bin/pip install -r bench/requirements-brian2.txt
    /tmp/brian2-venv/bin/python bench/brian2_lif.py NET.npz OUT.npz --target cython

``NET.npz`` (written by ``bench/reference_sim.py``) holds the network in Brian2's units:
``I`` per-neuron drive (dimensionless, dv/dt = (I - v)/tau), ``tau``, ``dt``, ``steps``,
``v_th``, recurrent synapses ``pre``, ``post``, ``w`` (jump of v per presynaptic spike),
input synapses ``in_pre``, ``in_post``, ``in_w``, ``n_in`` and the input spike trains
``in_idx``, ``in_step`` (spike of input ``in_idx[k]`` at step ``in_step[k]``, i.e. at time
``in_step[k] * dt``).

The model, per step (Brian2's default schedule, except that resets come before synaptic
propagation -- see ``SCHEDULE``)::

    v <- I + (v - I) exp(-dt/tau)          (exact integration, "groups" slot)
    spike if v > v_th                      ("thresholds")
    v <- 0 for the neurons that spiked     ("resets")
    v <- v + w for each presynaptic spike  ("synapses", recurrent and input)

``OUT.npz`` gets ``counts`` (spikes per neuron, from the last repetition), ``wall`` (seconds
of each ``Network.run()`` call; the first includes code generation and, for the cython
target, compilation), ``build_s`` (network construction, not counted), ``target``, ``zero_run``
(seconds of ``run()`` calls of zero duration: run()'s fixed preparation, without the loop),
``long_run`` (seconds of runs ``long_factor`` times as long, the input spike trains
repeated) and the Brian2/numpy versions.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import numpy as np

# Brian2's default schedule is start, groups, thresholds, synapses, resets, end: a synaptic
# increment that arrives in the step a neuron spikes is overwritten by its reset. SMALL resets
# at the start of the next step and then adds that step's input, so the input is kept. Moving
# the resets before synaptic propagation makes Brian2 simulate the same dynamical system.
SCHEDULE = ["start", "groups", "thresholds", "resets", "synapses", "end"]
LONG = 10


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("net", help="network npz written by bench/reference_sim.py")
    ap.add_argument("out", help="where to write counts and timings (npz)")
    ap.add_argument("--target", choices=("numpy", "cython"), default="numpy")
    ap.add_argument("--repeats", type=int, default=4, help="run() calls (the first one compiles)")
    ap.add_argument("--keep-cache", action="store_true",
                    help="cython: use Brian2's usual on-disk cache instead of a fresh one (no compile time)")
    args = ap.parse_args()

    cache_dir = None
    if args.target == "cython" and not args.keep_cache:
        cache_dir = tempfile.mkdtemp(prefix="brian2-cython-")
    try:
        result = simulate(args, cache_dir)
    finally:
        if cache_dir:
            shutil.rmtree(cache_dir, ignore_errors=True)
    np.savez(args.out, **result)


def simulate(args: argparse.Namespace, cache_dir: str | None) -> dict:
    import brian2 as b2

    b2.prefs.codegen.target = args.target
    if cache_dir:
        b2.prefs.codegen.runtime.cython.cache_dir = cache_dir
    b2.prefs.codegen.loop_invariant_optimisations = True
    b2.BrianLogger.log_level_warn()

    d = np.load(args.net)
    n = int(d["n"])
    dt = float(d["dt"]) * b2.second
    tau = float(d["tau"]) * b2.second
    steps = int(d["steps"])
    v_th = float(d["v_th"])

    t0 = time.perf_counter()
    b2.start_scope()
    b2.defaultclock.dt = dt
    G = b2.NeuronGroup(
        n,
        "dv/dt = (I - v) / tau : 1\nI : 1 (constant)",
        threshold=f"v > {v_th!r}",
        reset="v = 0",
        method="exact",
        namespace={"tau": tau},
    )
    G.v = 0
    G.I = d["I"]
    rec = b2.Synapses(G, G, "w : 1", on_pre="v += w")
    rec.connect(i=d["pre"], j=d["post"])
    rec.w = d["w"]
    # The input repeats with period steps * dt: only the long runs below see the repetition.
    inp = b2.SpikeGeneratorGroup(int(d["n_in"]), d["in_idx"], d["in_step"] * dt, period=steps * dt)
    ins = b2.Synapses(inp, G, "w : 1", on_pre="v += w")
    ins.connect(i=d["in_pre"], j=d["in_post"])
    ins.w = d["in_w"]
    mon = b2.SpikeMonitor(G, record=False)  # counts only
    net = b2.Network(G, rec, inp, ins, mon)
    net.schedule = SCHEDULE
    net.store("initial")
    build_s = time.perf_counter() - t0

    wall = []
    counts = None
    for _ in range(args.repeats):
        net.restore("initial")
        t0 = time.perf_counter()
        net.run(steps * dt)
        wall.append(time.perf_counter() - t0)
        c = np.asarray(mon.count[:], dtype=np.int64).copy()
        if counts is not None and not np.array_equal(c, counts):
            raise SystemExit("Brian2 gave different spike counts on a repeated run")
        counts = c
    # run() also prepares every object (namespace resolution, code objects, for cython a check
    # of the compiled cache) before its loop. Time that alone (runs of zero duration) and runs
    # LONG times as long (the input repeated), so that the cost of
    # the steps alone is (long - zero) / LONG, without the noise of a difference of two
    # short timings.
    zero, long = [], []
    for _ in range(max(args.repeats - 1, 1)):
        net.restore("initial")
        t0 = time.perf_counter()
        net.run(0 * b2.second)
        zero.append(time.perf_counter() - t0)
        net.restore("initial")
        t0 = time.perf_counter()
        net.run(LONG * steps * dt)
        long.append(time.perf_counter() - t0)
    return {
        "zero_run": np.asarray(zero),
        "long_run": np.asarray(long),
        "long_factor": LONG,
        "counts": counts,
        "wall": np.asarray(wall),
        "build_s": build_s,
        "target": args.target,
        "brian2_version": b2.__version__,
        "numpy_version": np.__version__,
    }


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
