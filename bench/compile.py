"""Compile time, peak memory, tiles and inter-tile traffic of ``compile_network`` on large networks.

Run from the repository root with the project's environment::

    .venv/bin/python bench/compile.py                      # the whole matrix (about 20 minutes)
    .venv/bin/python bench/compile.py --sizes 1000 10000   # a part of it
    .venv/bin/python bench/compile.py --one 100000 64x64 auto --profile /tmp/c.prof

Every configuration (neurons, tile, partitioner) runs in a fresh interpreter (``--one``), so
its peak memory is its own.

The networks
------------
Random sparse recurrent networks with planted community structure, seeded (``--seed``):

* one LIF population of N neurons (alpha 0.9, threshold 1, reset to 0, per-neuron bias
  uniform in [0, 0.08]) with one recurrent sparse projection from itself, delay 1;
* communities of ``--community`` (256) consecutive neurons in the *planted* order, the last
  one smaller when N is not a multiple; each neuron has exactly ``--fan-in`` (100) distinct
  presynaptic neurons: ``--p-local`` (90 %) drawn without replacement from its own community
  (no autapses) and the rest from the ``2 * --neighbours`` (4) nearest communities on a ring
  (c-2, c-1, c+1, c+2): local circuits with sparser lateral links, as in cortical columns;
* 80 % of the neurons excitatory (weights uniform in [0.02, 0.08]), 20 % inhibitory
  ([-0.25, -0.05]), drawn per source neuron;
* one input of 64 channels: 10 % of the neurons, chosen at random, each read one random
  channel (weight uniform in [0.3, 0.5]);
* then the neuron indices are shuffled by a random permutation, so that communities are not
  contiguous in index order and the naive sequential placement does not get them for free.
  ``planted`` in the partitioner column is the same network *without* the shuffle compiled
  with ``partitioner="sequential"``: each group of C neurons then lies inside one community
  (C = 64 or 256 divides 256), the placement one would get from knowing the communities.

Everything is built with vectorised numpy (random keys + ``argpartition`` for sampling
without replacement, in chunks of rows), never a Python loop over synapses.

What is measured
----------------
* ``gen s``: building the network (not part of the compile time).
* ``compile s``: ``time.perf_counter`` around ``compile_network`` alone.
* ``peak GiB``: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` at the end of the compile. After
  the network is built, the process's high-water mark is reset (``/proc/self/clear_refs``,
  value 5; Linux resets ``ru_maxrss`` with it), so the figure is the peak *during the
  compile*, the resident network included. ``gen GiB`` is the peak before the reset. If the
  reset is not permitted the figure is the whole process's peak (reported as ``reset=False``).
* tiles used, the compiler's lower bound (``report.tiles_lower_bound``) and their ratio;
  routing entries.
* inter-tile events per step, two ways:

  - ``sim``: the digital twin runs ``--steps`` (100) steps at batch ``--batch`` (4) with
    input spikes of probability 0.1 per channel and step, and
    ``compiler.mapper.inter_tile_events_per_step`` weights each neuron's routes to tiles
    other than its own by its spike count. Done for N <= ``--sim-max`` (all sizes by
    default; the 100k simulation takes well under a minute).
  - ``struct``: the same count with every neuron firing with probability ``--fire-p`` (0.01)
    per step, i.e. ``fire_p * sum over neurons of (tiles other than its own that its routing
    entries reach)``; the ratio to sequential does not depend on ``fire_p``.

  ``vs seq`` is the reduction of the events per step against ``partitioner="sequential"`` on
  the same (shuffled) network and tile: ``1 - events / events_sequential``.

* ``seq-model``: the tiles and structural traffic of the sequential placement computed from the
  compiler's rules without compiling (:func:`sequential_model`), because the compile of the
  sequential placement runs out of memory at 100k neurons. Where ``sequential`` compiles, the
  two must agree exactly; where it does not, ``vs seq (struct)`` is taken against the model and
  marked ``*``.

The simulation and the traffic count come after the compile-memory reading, so they do not
change ``peak GiB``.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

N_IN = 64
CHUNK = 8192  # rows per block when sampling sources without replacement


# -------------------------------------------------------------------------------------------
def _sample_rows(rng: np.random.Generator, valid: np.ndarray, k: int) -> np.ndarray:
    """``k`` distinct column positions per row among the ``True`` entries of ``valid`` [rows, m].

    Random keys, invalid positions pushed to the end, ``argpartition``: uniform sampling without
    replacement. Rows with fewer than ``k`` valid positions get all of them (-1 pads the rest).
    """
    keys = rng.random(valid.shape, dtype=np.float32)
    keys[~valid] = 2.0
    pick = np.argpartition(keys, k - 1, axis=1)[:, :k] if k < valid.shape[1] else np.argsort(keys, axis=1)[:, :k]
    ok = np.take_along_axis(valid, pick, axis=1)
    return np.where(ok, pick, -1)


def make_weights(n: int, community: int, fan_in: int, p_local: float, neighbours: int, seed: int):
    """Planted-order network: recurrent CSR [n, n], input CSR [n, N_IN], bias [n]."""
    rng = np.random.default_rng(seed)
    S = community
    n_comm = -(-n // S)
    size = np.minimum(S, n - np.arange(n_comm) * S)
    k_loc = int(round(fan_in * p_local))
    k_ext = fan_in - k_loc
    # Neighbour communities on a ring, without duplicates or the community itself (-1: none).
    offs = [d for d in range(-neighbours, neighbours + 1) if d != 0]
    nb = (np.arange(n_comm)[:, None] + np.array(offs, dtype=np.int64)[None, :]) % n_comm
    nb = nb if offs else np.zeros((n_comm, 0), dtype=np.int64)
    for c in range(n_comm):  # per community, not per synapse
        seen = {c}
        for j in range(nb.shape[1]):
            if nb[c, j] in seen:
                nb[c, j] = -1
            else:
                seen.add(int(nb[c, j]))
    rows, cols = [], []
    member = np.arange(S)
    for start in range(0, n, CHUNK):
        tgt = np.arange(start, min(start + CHUNK, n))
        c = tgt // S
        # Local sources: own community, no autapse.
        valid = (member[None, :] < size[c][:, None]) & (member[None, :] != (tgt % S)[:, None])
        loc = _sample_rows(rng, valid, min(k_loc, S))
        src = np.where(loc >= 0, c[:, None] * S + loc, -1)
        parts = [src]
        if k_ext and nb.shape[1]:
            pool_c = np.repeat(nb[c], S, axis=1)  # [rows, len(offs) * S] community of each pool slot
            pool_m = np.tile(member, nb.shape[1])[None, :]
            valid = (pool_c >= 0) & (pool_m < size[np.maximum(pool_c, 0)])
            ext = _sample_rows(rng, valid, k_ext)
            e_src = np.take_along_axis(pool_c, np.maximum(ext, 0), axis=1) * S + pool_m[0][np.maximum(ext, 0)]
            parts.append(np.where(ext >= 0, e_src, -1))
        src = np.concatenate(parts, axis=1)
        t = np.broadcast_to(tgt[:, None], src.shape)
        keep = src >= 0
        rows.append(t[keep])
        cols.append(src[keep])
    r, s = np.concatenate(rows), np.concatenate(cols)
    del rows, cols
    exc = rng.random(n) < 0.8
    w_exc = rng.uniform(0.02, 0.08, r.size)
    w_inh = -rng.uniform(0.05, 0.25, r.size)
    w = np.where(exc[s], w_exc, w_inh)
    del w_exc, w_inh
    rec = sp.csr_array((w, (r, s)), shape=(n, n))
    del r, s, w
    fed = rng.choice(n, size=max(1, n // 10), replace=False)
    w_in = sp.csr_array((rng.uniform(0.3, 0.5, fed.size), (fed, rng.integers(0, N_IN, fed.size))), shape=(n, N_IN))
    bias = rng.uniform(0.0, 0.08, n)
    return rec, w_in, bias


def make_network(n: int, args, *, planted: bool):
    from compiler.ir import LIF, Input, Network, Population, Projection

    rec, w_in, bias = make_weights(n, args.community, args.fan_in, args.p_local, args.neighbours, args.seed)
    if not planted:  # shuffle the neuron indices: new index of planted neuron i is perm[i]
        perm = np.random.default_rng(args.seed + 1000).permutation(n)
        coo = rec.tocoo()
        rec = sp.csr_array((coo.data, (perm[coo.row], perm[coo.col])), shape=(n, n))
        del coo
        coo = w_in.tocoo()
        w_in = sp.csr_array((coo.data, (perm[coo.row], coo.col)), shape=(n, N_IN))
        b = np.empty_like(bias)
        b[perm] = bias
        bias = b
    net = Network(
        name=f"community{n}",
        inputs=[Input("in", (N_IN,))],
        populations=[Population("pop", n, LIF(alpha=0.9, v_threshold=1.0, v_reset=0.0), bias=bias)],
        projections=[Projection("in", "pop", w_in, delay=1), Projection("pop", "pop", rec, delay=1)],
        outputs={"spikes": "pop"},
    )
    return net, int(rec.nnz), int(w_in.nnz)


def sequential_model(net, R: int, C: int, max_split: int = 16) -> tuple[int, np.ndarray]:
    """Tiles and remote tiles per source neuron of ``partitioner="sequential"``, without compiling.

    Restates the compiler's rules for this network (one delay per source, so a group's rows are
    its distinct sources in the order inputs, then neurons by index): groups of C consecutive
    neurons; a group needing more than ``max_split`` tiles is halved (first half ``size // 2``)
    until it fits; a group's r-th row lies on its tile ``r // R``. A source's spike goes to every
    tile holding one of its rows but its own home tile (the first tile of its group). Checked
    against the compiled images wherever ``sequential`` compiles (``seq-model`` rows).
    """
    n = net.populations[0].size
    rec = next(p.weight for p in net.projections if p.source == "pop").tocoo()
    inp = next(p.weight for p in net.projections if p.source == "in").tocoo()
    tgt = np.concatenate([inp.row, rec.row]).astype(np.int64)
    elem = np.concatenate([inp.col, N_IN + rec.col.astype(np.int64)])
    K = n + N_IN
    starts = np.arange(0, n, C)
    ends = np.minimum(starts + C, n)
    while True:
        group_of = np.repeat(np.arange(starts.size), ends - starts)
        code = np.sort(group_of[tgt] * K + elem)
        code = code[np.concatenate([[True], code[1:] != code[:-1]])]
        need = -(-np.bincount(code // K, minlength=starts.size) // R)
        bad = (need > max_split) & (ends - starts > 1)
        if not bad.any():
            break
        mid = starts + (ends - starts) // 2
        starts = np.concatenate([starts[~bad], starts[bad], mid[bad]])
        ends = np.concatenate([ends[~bad], mid[bad], ends[bad]])
        order = np.argsort(starts, kind="stable")
        starts, ends = starts[order], ends[order]
    g, k = code // K, code % K
    first = np.searchsorted(g, np.arange(starts.size))
    tile_in_group = (np.arange(code.size) - first[g]) // R
    neuron = k >= N_IN
    src, g, tile_in_group = k[neuron] - N_IN, g[neuron], tile_in_group[neuron]
    home = (group_of[src] == g) & (tile_in_group == 0)
    return int(np.maximum(1, need).sum()), np.bincount(src[~home], minlength=n)


# -------------------------------------------------------------------------------------------
def _gib(kib: int) -> float:
    return kib / 2**20


def code_version() -> str:
    """Git HEAD plus a hash of compiler/ and sim/ as they are on disk (other edits may be under way)."""
    import hashlib

    h = hashlib.sha256()
    for f in sorted([*ROOT.glob("compiler/*.py"), *ROOT.glob("sim/*.py")]):
        h.update(f.name.encode() + f.read_bytes())
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "compiler", "sim"], cwd=ROOT, capture_output=True,
                               text=True).stdout.strip()
    except OSError:
        head, dirty = "?", ""
    return f"{head}{'+dirty' if dirty else ''} ({h.hexdigest()[:10]})"


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def run_one(n: int, tile: str, part: str, args) -> dict:
    """One configuration in this process; returns the figures as a dict."""
    version = code_version()  # before the import reads the files
    from compiler.mapper import CompileOptions, compile_network, inter_tile_events_per_step

    R, C = (int(v) for v in tile.lower().split("x"))
    planted = part == "planted"
    t0 = time.perf_counter()
    net, n_rec, n_inp = make_network(n, args, planted=planted)
    gen_s = time.perf_counter() - t0
    if part == "seq-model":
        t0 = time.perf_counter()
        tiles, remote = sequential_model(net, R, C)
        return {"neurons": n, "recurrent_synapses": n_rec, "input_synapses": n_inp, "tile": f"{R}x{C}",
                "partitioner": part, "gen_s": gen_s, "model_s": time.perf_counter() - t0, "tiles_used": tiles,
                "remote_tiles_per_spike": float(remote.sum()) / n, "events_struct": args.fire_p * float(remote.sum()),
                "events_sim": None, "sim_rate": None, "code": version}
    gc.collect()
    gen_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reset = _reset_peak()
    opts = CompileOptions(target="digital", rows=R, cols=C, levels=16, seed=args.seed,
                          partitioner="sequential" if planted else part)
    if args.profile:
        import cProfile

        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        result = compile_network(net, opts)
        prof.disable()
        compile_s = time.perf_counter() - t0
        prof.dump_stats(args.profile)
    else:
        t0 = time.perf_counter()
        result = compile_network(net, opts)
        compile_s = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rep, image = result.report, result.image
    out = {
        "neurons": n, "recurrent_synapses": n_rec, "input_synapses": n_inp, "tile": f"{R}x{C}", "partitioner": part,
        "partitioner_used": rep.partitioner, "gen_s": gen_s, "gen_peak_gib": _gib(gen_peak),
        "compile_s": compile_s, "peak_gib": _gib(peak), "peak_reset": reset,
        "tiles_used": rep.tiles_used, "tiles_lower_bound": rep.tiles_lower_bound,
        "lower_bound_terms": dataclasses.asdict(rep.lower_bound_terms), "routing_entries": rep.routing_entries,
        "fan_in_splits": rep.fan_in_splits, "row_utilisation": rep.row_utilisation,
        "col_utilisation": rep.col_utilisation, "code": version,
    }
    del net
    gc.collect()
    # Structural traffic: every neuron fires with probability fire_p per step.
    k = int(np.count_nonzero(image.arrays["col_kind"] == 1))
    out["remote_tiles_per_spike"] = inter_tile_events_per_step(image, np.ones(k), 1, 1) / k
    out["events_struct"] = args.fire_p * out["remote_tiles_per_spike"] * k
    out["events_sim"] = out["sim_rate"] = out["sim_s"] = None
    if n <= args.sim_max:
        from sim.digital import DigitalSimulator

        x = (np.random.default_rng(args.seed + 1).random((args.steps, args.batch, N_IN)) < 0.1).astype(np.uint8)
        t0 = time.perf_counter()
        simulator = DigitalSimulator(image)
        simulator.run(x)
        out["sim_s"] = time.perf_counter() - t0
        out["events_sim"] = inter_tile_events_per_step(image, simulator.spike_counts, args.steps, args.batch)
        out["sim_rate"] = float(simulator.spike_counts.sum()) / (k * args.steps * args.batch)
    return out


# -------------------------------------------------------------------------------------------
def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f} %"


def table(results: list[dict]) -> str:
    """Markdown table; ``vs seq`` against the compiled sequential placement, or the model (marked *) where it failed."""
    ok = [r for r in results if "error" not in r]
    seq = {(r["neurons"], r["tile"]): r for r in ok if r["partitioner"] == "sequential"}
    model = {(r["neurons"], r["tile"]): r for r in ok if r["partitioner"] == "seq-model"}
    head = ("| neurons | synapses | tile | partitioner | compile s | peak GiB | tiles | lower bound | ratio "
            "| routing entries | sim rate | events/step sim | vs seq (sim) | events/step struct | vs seq (struct) |")
    lines = [head, "|" + "|".join("-" * (len(c) + 2) for c in head.strip("|").split("|")) + "|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['neurons']:,} | | {r['tile']} | {r['partitioner']} | failed: {r['error']} "
                         "| | | | | | | | | | |")
            continue
        key = (r["neurons"], r["tile"])
        base, mark = (seq[key], "") if key in seq else (model.get(key), "*")
        syn = r["recurrent_synapses"] + r["input_synapses"]
        part = r["partitioner"] if r["partitioner"] != "auto" else f"auto ({r['partitioner_used']})"
        if r["partitioner"] == "seq-model":
            lines.append(f"| {r['neurons']:,} | {syn:,} | {r['tile']} | seq-model | | | {r['tiles_used']:,} | | | "
                         f"| | | | {r['events_struct']:,.0f} | |")
            continue
        red_sim = red_struct = ""
        if base is not None and r["partitioner"] != "sequential":
            if r["events_sim"] is not None and base.get("events_sim"):
                red_sim = _pct(1 - r["events_sim"] / base["events_sim"])
            if base["events_struct"]:
                red_struct = _pct(1 - r["events_struct"] / base["events_struct"]) + mark
        sim = "" if r["events_sim"] is None else f"{r['events_sim']:,.0f}"
        rate = "" if r["sim_rate"] is None else f"{r['sim_rate']:.4f}"
        lines.append(
            f"| {r['neurons']:,} | {syn:,} | {r['tile']} | {part} | {r['compile_s']:.2f} "
            f"| {r['peak_gib']:.2f} | {r['tiles_used']:,} | {r['tiles_lower_bound']:,} "
            f"| {r['tiles_used'] / r['tiles_lower_bound']:.2f} | {r['routing_entries']:,} | {rate} | {sim} | {red_sim} "
            f"| {r['events_struct']:,.0f} | {red_struct} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--one", nargs=3, metavar=("N", "RxC", "PARTITIONER"),
                    help="run one configuration in this process and print its figures as JSON")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--tiles", nargs="+", default=["64x64", "256x256"])
    ap.add_argument("--partitioners", nargs="+", default=["seq-model", "sequential", "auto", "planted", "networkx"],
                    help="compiler partitioners, and 'planted' and 'seq-model' (see the docstring)")
    ap.add_argument("--networkx-max", type=int, default=10000, help="run networkx only up to this many neurons")
    ap.add_argument("--community", type=int, default=256)
    ap.add_argument("--fan-in", type=int, default=100)
    ap.add_argument("--p-local", type=float, default=0.9)
    ap.add_argument("--neighbours", type=int, default=2, help="neighbour communities on each side")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--sim-max", type=int, default=100000, help="simulate up to this many neurons")
    ap.add_argument("--fire-p", type=float, default=0.01, help="firing probability per step for the structural count")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per configuration")
    ap.add_argument("--mem-limit", type=float, default=12.0,
                    help="GiB of address space per configuration (RLIMIT_AS), so that a run too large for the machine "
                         "fails with MemoryError instead of calling the OOM killer; 0: no limit")
    ap.add_argument("--profile", help="with --one: cProfile the compile into this file")
    ap.add_argument("--json", help="also write all results to this file")
    args = ap.parse_args()

    if args.one:
        n, tile, part = args.one
        if args.mem_limit > 0:
            limit = int(args.mem_limit * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        print("RESULT " + json.dumps(run_one(int(n), tile, part, args)), flush=True)
        return

    import scipy

    version = code_version()
    print(f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"numpy {np.__version__}, scipy {scipy.__version__}; code {version}", flush=True)
    passthrough = ["--community", str(args.community), "--fan-in", str(args.fan_in), "--p-local", str(args.p_local),
                   "--neighbours", str(args.neighbours), "--seed", str(args.seed), "--steps", str(args.steps),
                   "--batch", str(args.batch), "--sim-max", str(args.sim_max), "--fire-p", str(args.fire_p),
                   "--mem-limit", str(args.mem_limit)]
    results = []
    for n in args.sizes:
        for tile in args.tiles:
            for part in args.partitioners:
                if part == "networkx" and n > args.networkx_max:
                    continue
                cmd = [sys.executable, str(Path(__file__).resolve()), "--one", str(n), tile, part, *passthrough]
                t0 = time.perf_counter()
                try:
                    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, cwd=ROOT)
                except subprocess.TimeoutExpired:
                    r = {"neurons": n, "tile": tile, "partitioner": part,
                         "error": f"timeout after {args.timeout:.0f} s"}
                else:
                    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
                    if proc.returncode != 0 or not line:
                        sys.stderr.write(proc.stderr)
                        tail = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
                        r = {"neurons": n, "tile": tile, "partitioner": part, "error": tail[0]}
                    else:
                        r = json.loads(line[-1][len("RESULT "):])
                        if proc.stderr.strip():
                            r["stderr"] = proc.stderr.strip()
                results.append(r)
                if r.get("code", version) != version:
                    print(f"  note: compiler/sim changed during the matrix: {r['code']}", flush=True)
                if "error" in r:
                    summary = r["error"]
                elif part == "seq-model":
                    summary = f"{r['tiles_used']} tiles, {r['remote_tiles_per_spike']:.2f} remote tiles per spike"
                else:
                    summary = (f"compile {r['compile_s']:.2f} s, peak {r['peak_gib']:.2f} GiB, {r['tiles_used']} "
                               f"tiles (bound {r['tiles_lower_bound']}), {r['remote_tiles_per_spike']:.2f} remote "
                               "tiles per spike")
                print(f"{n:>7} {tile:>8} {part:<10} {summary}  [{time.perf_counter() - t0:.0f} s wall]", flush=True)
    print()
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
