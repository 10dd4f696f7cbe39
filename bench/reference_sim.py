"""Throughput of SMALL's float reference simulator (``sim/reference.py``), compared with Brian2.

Run from the repository root with the project's environment::

    .venv/bin/python bench/reference_sim.py

What it measures (best of ``--repeats`` timings of ``ReferenceSimulator.run`` each; network
construction is not timed):

(i)  a recurrent network of 1,000 LIF neurons (80 % excitatory, 20 % inhibitory, 10 % random
     connectivity) driven by a per-neuron bias and 100 Poisson inputs (10 % connectivity),
     1,000 steps of 1 ms, at batch 1 and at batch 64 (64 independent input realisations);
     the same network (batch 1, batch element 0's input) in Brian2, in a separate virtual
     environment (``bench/brian2_lif.py``, ``bench/requirements-brian2.txt``), for the ratio
     of wall times and the agreement of firing rates;
(ii) the digits classifier (``examples/digits/digits.nir``) over its whole test set, if
     ``examples/digits/train.py`` has produced it.

Throughput: synaptic events/s = sum over all spikes (input spikes included) of the spiking
source's number of outgoing synapses, divided by the wall time; neuron-updates/s =
neurons x steps x batch / wall time.

The Brian2 interpreter is ``$BRIAN2_PYTHON`` (default ``/tmp/brian2-venv/bin/python``); without
it the comparison is skipped with a note on how to create it.

Network (i) as one dynamical system in both simulators
-------------------------------------------------------
Brian2: ``dv/dt = (I - v)/tau``, integrated exactly, ``v <- I + (v - I) a`` with
``a = exp(-dt/tau)``; spike when ``v > 1``; reset ``v = 0``; each presynaptic spike adds ``w``
to ``v``. Brian2 applies that jump at the end of the step of the presynaptic spike (after the
state update), so it decays once, by ``a``, before the threshold test of the next step.
``bench/brian2_lif.py`` schedules resets before synaptic propagation, so a jump that arrives
in the step a neuron spikes is kept (Brian2's default would drop it under the reset).

SMALL's LIF (``compiler/ir.py``) per step: ``v <- 0`` if it spiked in the previous step
(reset "zero"), ``v <- a v + (1 - a) v_leak``, ``v <- v + I_t``, spike if ``v > 1``. So:

* SMALL weight = ``a * w`` on a projection with delay 1: the jump a spike at step t causes
  reaches SMALL's current at step t+1 without decay, where Brian2's jump has decayed by ``a``
  by then (and ``a w`` applied after the reset equals Brian2's ``w`` applied after its reset
  and then decayed);
* the constant drive is SMALL's per-step bias ``(1 - a) I`` (``v_leak = 0`` so that the
  initial membrane is 0, as in Brian2);
* the input spike trains are the same index/step pairs in both: input spike at step t in
  Brian2, ``x[t] = 1`` in SMALL, on a delay-1 input projection (weights ``a * w_in``).

Then SMALL's membrane after step t is exactly Brian2's ``v`` at the threshold test of step t,
up to floating-point rounding (Brian2 computes in float64, ``I + (v - I) a``; SMALL in float32
by default, ``a v + (1 - a) I``). The network is chaotic, so rounding eventually makes
individual spike trains diverge; the rates agree statistically.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from compiler.ir import LIF, Input, Network, Population, Projection  # noqa: E402
from sim.reference import ReferenceSimulator  # noqa: E402

BRIAN2_SCRIPT = ROOT / "bench" / "brian2_lif.py"
DEFAULT_BRIAN2_PYTHON = "/tmp/brian2-venv/bin/python"
TORCH_SCRIPT = ROOT / "bench" / "torch_lif.py"
DEFAULT_TORCH_PYTHON = "/tmp/torch-venv/bin/python"
VENVS = {  # interpreter: requirements file
    DEFAULT_BRIAN2_PYTHON: ROOT / "bench" / "requirements-brian2.txt",
    DEFAULT_TORCH_PYTHON: ROOT / "bench" / "requirements-torch.txt",
}
DIGITS_DIR = ROOT / "examples" / "digits"

# Network (i).
N, N_EXC, N_IN = 1000, 800, 100
P_CONN, P_IN = 0.1, 0.1
TAU, DT, V_TH = 20e-3, 1e-3, 1.0
I_RANGE = (0.6, 1.0)  # per-neuron drive I of dv/dt = (I - v)/tau, uniform; below threshold
W_EXC, G_INH = 0.03, 6.0  # excitatory jump of v; inhibitory jump is -G_INH * W_EXC
W_IN, RATE_IN = 0.1, 10.0  # input jump, Poisson rate of each input (Hz)
SEED = 20240


# -- network (i) -------------------------------------------------------------------------------
def make_lif_network(steps: int, batch: int, seed: int = SEED) -> dict:
    """Parameters of network (i) in Brian2's units and the input spikes ``x`` [steps, batch, N_IN]."""
    rng = np.random.default_rng(seed)
    conn = rng.random((N, N)) < P_CONN  # [post, pre]
    np.fill_diagonal(conn, False)
    post, pre = np.nonzero(conn)
    w = np.where(pre < N_EXC, W_EXC, -G_INH * W_EXC)
    in_post, in_pre = np.nonzero(rng.random((N, N_IN)) < P_IN)
    in_w = np.full(in_pre.size, W_IN)
    drive = rng.uniform(*I_RANGE, N)
    x = rng.random((steps, batch, N_IN)) < RATE_IN * DT
    return {"pre": pre, "post": post, "w": w, "in_pre": in_pre, "in_post": in_post, "in_w": in_w,
            "I": drive, "x": x, "steps": steps}


def small_network(p: dict) -> Network:
    """Network (i) in SMALL's IR (see the module docstring for the conversion)."""
    a = float(np.exp(-DT / TAU))
    w_rec = sp.csr_array((a * p["w"], (p["post"], p["pre"])), shape=(N, N))
    w_in = sp.csr_array((a * p["in_w"], (p["in_post"], p["in_pre"])), shape=(N, N_IN))
    return Network(
        name="lif1000",
        dt=DT,
        inputs=[Input("in", (N_IN,))],
        populations=[Population("lif", N, LIF(alpha=a, gain=1.0, v_leak=0.0, v_threshold=V_TH, v_reset=0.0,
                                              refractory=0, reset="zero"), bias=(1.0 - a) * p["I"])],
        projections=[Projection("in", "lif", w_in, delay=1), Projection("lif", "lif", w_rec, delay=1)],
        outputs={"spikes": "lif"},
    ).validate()


def lif_events(p: dict, counts: np.ndarray, in_counts: np.ndarray) -> tuple[int, int]:
    """(recurrent, input) synaptic events for spike counts per neuron / per input (summed over batch)."""
    out_deg = np.bincount(p["pre"], minlength=N)
    in_deg = np.bincount(p["in_pre"], minlength=N_IN)
    return int(counts @ out_deg), int(in_counts @ in_deg)


def best_of(fn, repeats: int) -> tuple[float, object]:
    """Best wall time of ``repeats`` calls, after one untimed warm-up call, and the last result."""
    best, out = float("inf"), fn()
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def time_small(p: dict, batch: int, repeats: int, dtype=np.float32) -> dict:
    net = small_network(p)
    sim = ReferenceSimulator(net, dtype=dtype)
    x = np.ascontiguousarray(p["x"][:, :batch])
    wall, res = best_of(lambda: sim.run(x), repeats)
    spikes = res.outputs["spikes"]  # [T, batch, N] float32 0/1
    counts = spikes.sum(axis=0).astype(np.int64)  # [batch, N]
    ev_rec, ev_in = lif_events(p, counts.sum(axis=0), x.sum(axis=(0, 1)).astype(np.int64))
    return {"wall": wall, "counts": counts, "ev_rec": ev_rec, "ev_in": ev_in, "batch": batch,
            "updates": N * p["steps"] * batch, "raster": spikes[:, 0].astype(bool)}


# -- Brian2 ------------------------------------------------------------------------------------
def brian2_python() -> str | None:
    path = os.environ.get("BRIAN2_PYTHON", DEFAULT_BRIAN2_PYTHON)
    return path if (shutil.which(path) or os.path.exists(path)) else None


def run_brian2(p: dict, target: str, repeats: int, workdir: Path, python: str) -> dict | None:
    x0 = p["x"][:, 0]
    in_step, in_idx = np.nonzero(x0)
    net_file, out_file = workdir / "net.npz", workdir / f"brian2_{target}.npz"
    np.savez(net_file, n=N, dt=DT, tau=TAU, steps=p["steps"], v_th=V_TH, I=p["I"], pre=p["pre"], post=p["post"],
             w=p["w"], n_in=N_IN, in_pre=p["in_pre"], in_post=p["in_post"], in_w=p["in_w"],
             in_idx=in_idx, in_step=in_step)
    cmd = [python, str(BRIAN2_SCRIPT), str(net_file), str(out_file), "--target", target,
           "--repeats", str(repeats + 1)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        print(f"Brian2 ({target}) failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}", file=sys.stderr)
        return None
    d = np.load(out_file)
    counts = d["counts"].astype(np.int64)
    ev_rec, ev_in = lif_events(p, counts, x0.sum(axis=0).astype(np.int64))
    wall = d["wall"]
    return {"wall": float(wall[1:].min()), "first": float(wall[0]), "build": float(d["build_s"]),
            "zero": float(d["zero_run"].min()),
            "loop": float((d["long_run"].min() - d["zero_run"].min()) / d["long_factor"]),
            "long_factor": int(d["long_factor"]),
            "counts": counts, "ev_rec": ev_rec, "ev_in": ev_in, "batch": 1, "updates": N * p["steps"],
            "version": str(d["brian2_version"]), "numpy": str(d["numpy_version"])}


# -- (iii) snnTorch and Norse, interleaved ---------------------------------------------------
def make_venvs() -> None:
    """Create the benchmark's framework venvs (Brian2; torch + snnTorch + Norse) where missing."""
    for python, requirements in VENVS.items():
        if os.path.exists(python):
            continue
        venv = Path(python).parent.parent
        print(f"creating {venv} from {requirements.relative_to(ROOT)}", flush=True)
        subprocess.run(["python3.11", "-m", "venv", str(venv)], check=True)
        # The requirements files pin torch; -c keeps any dependency from pulling another one.
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "-r", str(requirements), "-c", str(requirements)],
                       check=True)


def digits_workload() -> dict | None:
    """The digits classifier's weights and test set, as ``bench/torch_lif.py`` reads them."""
    nir_path, data_path = DIGITS_DIR / "digits.nir", DIGITS_DIR / "test_set.npz"
    if not (nir_path.exists() and data_path.exists()):
        return None
    import nir

    g = nir.read(nir_path)
    data = np.load(data_path)
    dt = float(data["dt"])
    affine = [g.nodes[k] for k in ("0", "2")]
    lif = [g.nodes[k] for k in ("1", "3")]
    out = {"digits_x": data["x"].astype(np.float32), "digits_dt": dt}
    for i, (a, n) in enumerate(zip(affine, lif), start=1):
        out[f"digits_w{i}"] = np.asarray(a.weight, dtype=np.float32)
        out[f"digits_b{i}"] = np.asarray(a.bias, dtype=np.float32)
        out[f"digits_beta{i}"] = (1.0 - dt / np.asarray(n.tau, dtype=np.float64)).astype(np.float32)
        out[f"digits_thr{i}"] = np.asarray(n.v_threshold, dtype=np.float32)
    return out


class FrameworkWorker:
    """``bench/torch_lif.py`` in the torch venv, answering one timed run per request."""

    def __init__(self, python: str, work: Path, threads: int):
        self.proc = subprocess.Popen([python, str(TORCH_SCRIPT), str(work), "--threads", str(threads)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.info = self._answer()

    def _answer(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{TORCH_SCRIPT.name} stopped (exit {self.proc.wait()})")
        return json.loads(line)

    def run(self, framework: str, case: str) -> dict:
        self.proc.stdin.write(json.dumps({"framework": framework, "case": case}) + "\n")
        return self._answer()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def bench_frameworks(p: dict, batch: int, repeats: int, python: str, threads: int) -> dict:
    """SMALL, snnTorch and Norse on digits and network (i) at batch 1 and ``batch``, interleaved.

    Each repetition runs every simulator once on a case before the next repetition starts;
    one untimed warm-up run each first. Returns ``{case: {simulator: {"wall", "counts"}}}``.
    """
    from compiler.nir_frontend import import_nir

    a = float(np.exp(-DT / TAU))
    work = {"lif_x": p["x"][:, :batch], "lif_alpha": a, "lif_bias": (1.0 - a) * p["I"],
            "lif_w_rec": sp.csr_array((a * p["w"], (p["post"], p["pre"])), shape=(N, N)).toarray(),
            "lif_w_in": sp.csr_array((a * p["in_w"], (p["in_post"], p["in_pre"])), shape=(N, N_IN)).toarray()}
    cases = {"lif1000": (ReferenceSimulator(small_network(p)), np.ascontiguousarray(p["x"][:, :1]))}
    if batch > 1:
        cases["lif1000_b64"] = (ReferenceSimulator(small_network(p)), np.ascontiguousarray(p["x"][:, :batch]))
    digits = digits_workload()
    if digits is not None:
        work.update(digits)
        cases = {"digits": (ReferenceSimulator(import_nir(DIGITS_DIR / "digits.nir", framework="snntorch")),
                            digits["digits_x"]), **cases}
    results: dict = {case: {} for case in cases}
    with tempfile.TemporaryDirectory(prefix="small-bench-") as tmp:
        np.savez(Path(tmp) / "work.npz", **work)
        worker = FrameworkWorker(python, Path(tmp) / "work.npz", threads)
        try:
            results["versions"] = worker.info["versions"]
            for case, (sim, x) in cases.items():
                for r in range(repeats + 1):  # the first round is the warm-up
                    start = time.perf_counter()
                    out = sim.run(x).output_array()
                    wall = time.perf_counter() - start
                    timed = {"SMALL": {"wall": wall, "counts": out.sum(axis=(0, 1)).astype(np.int64)}}
                    for fw in ("snntorch", "norse"):
                        ans = worker.run(fw, case)
                        timed[fw] = {"wall": ans["wall"], "counts": np.asarray(ans["counts"], dtype=np.int64)}
                    for name, t in timed.items():
                        if r == 0:
                            continue
                        best = results[case].setdefault(name, {"wall": float("inf"), "walls": []})
                        best["walls"].append(t["wall"])
                        best["counts"] = t["counts"]
                        best["wall"] = min(best["wall"], t["wall"])
        finally:
            worker.close()
    if digits is not None:
        results["digits_snntorch_counts"] = np.load(DIGITS_DIR / "test_set.npz")["snntorch_output_counts"].sum(axis=0)
    return results


# -- (ii) digits --------------------------------------------------------------------------------
def bench_digits(repeats: int) -> dict | None:
    nir_path, data_path = DIGITS_DIR / "digits.nir", DIGITS_DIR / "test_set.npz"
    if not (nir_path.exists() and data_path.exists()):
        print(f"(ii) skipped: {nir_path.relative_to(ROOT)} and {data_path.relative_to(ROOT)} do not exist yet "
              "(examples/digits/train.py makes them)")
        return None
    from compiler.nir_frontend import import_nir

    net = import_nir(nir_path, framework="snntorch")
    data = np.load(data_path)
    x = data["x"].astype(np.float32)  # [T, N, 64]
    steps, n_samples = x.shape[:2]
    sim = ReferenceSimulator(net)
    wall, res = best_of(lambda: sim.run(x), repeats)
    # Events, from a recorded run (recording is not part of the timed runs).
    rec = sim.run(x, record_spikes=True)
    active = {net.inputs[0].name: (x != 0).sum(axis=(0, 1))} if len(net.inputs) == 1 else {}
    for name, s in rec.spikes.items():
        active[name] = s.sum(axis=(0, 1))
    events = 0
    for proj in net.projections:
        w = proj.dense_weight()
        out_deg = np.count_nonzero(w, axis=0)  # synapses per source
        if proj.source in active:
            events += int(np.asarray(active[proj.source], dtype=np.int64) @ out_deg)
    counts = res.output_array().sum(axis=0)  # [N, n_out]
    acc = float(np.mean(np.argmax(counts, axis=1) == data["labels"])) if "labels" in data else float("nan")
    return {"wall": wall, "samples": n_samples, "steps": steps, "neurons": net.n_neurons,
            "synapses": net.n_synapses, "updates": net.n_neurons * steps * n_samples, "events": events,
            "accuracy": acc}


# -- report ------------------------------------------------------------------------------------
def machine() -> dict:
    model = platform.processor() or "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "date": datetime.date.today().isoformat()}


def fmt_rate(x: float) -> str:
    return f"{x / 1e6:,.2f} M" if x >= 1e6 else f"{x / 1e3:,.1f} k"


def row(label: str, r: dict, steps: int) -> list[str]:
    events = r["ev_rec"] + r["ev_in"]
    rate_hz = r["counts"].mean() / (steps * DT)
    return [label, str(r["batch"]), f"{r['wall'] * 1e3:,.1f}", fmt_rate(events / r["wall"]),
            fmt_rate(r["updates"] / r["wall"]), f"{rate_hz:.2f}"]


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) + " |"
              for r in rows]
    return "\n".join(lines)


def compare(small: dict, other: dict) -> tuple[float, float, float, float]:
    """Mean rates (Hz) of both, their relative difference, fraction of neurons whose count differs."""
    a, b = small["counts"][0], other["counts"]
    ra, rb = a.mean() / (len(small["raster"]) * DT), b.mean() / (len(small["raster"]) * DT)
    return ra, rb, (ra - rb) / rb, float(np.mean(a != b))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3, help="timings per figure; the best is reported")
    ap.add_argument("--targets", default="numpy,cython", help="Brian2 code-generation targets, comma-separated")
    ap.add_argument("--no-brian2", action="store_true", help="skip the Brian2 comparison")
    ap.add_argument("--no-digits", action="store_true", help="skip (ii)")
    ap.add_argument("--no-torch", action="store_true", help="skip (iii), snnTorch and Norse")
    ap.add_argument("--torch-threads", type=int, default=2, help="torch intra-op threads in (iii)")
    ap.add_argument("--make-venvs", action="store_true",
                    help="create /tmp/brian2-venv and /tmp/torch-venv from bench/requirements-*.txt if missing")
    ap.add_argument("--only-torch", action="store_true", help="run (iii) alone")
    args = ap.parse_args()
    if args.make_venvs:
        make_venvs()
    if args.only_torch:
        report_frameworks(args)
        return

    m = machine()
    print(f"{m['date']}  {m['cpu']}, {m['cores']} cores  Python {m['python']}  numpy {m['numpy']}  "
          f"scipy {m['scipy']}")
    p = make_lif_network(args.steps, max(args.batch, 1))
    print(f"(i) {N} LIF neurons ({N_EXC} exc), {p['pre'].size} recurrent + {p['in_pre'].size} input synapses, "
          f"{args.steps} steps of {DT * 1e3:g} ms; best of {args.repeats} after a warm-up run")

    header = ["simulator", "batch", "wall ms", "syn. events/s", "neuron-updates/s", "rate Hz"]
    rows = []
    s1 = time_small(p, 1, args.repeats)
    rows.append(row("SMALL reference, float32", s1, args.steps))
    s64 = time_small(p, args.batch, args.repeats) if args.batch > 1 else None
    if s64:
        rows.append(row("SMALL reference, float32", s64, args.steps))
    s1d = time_small(p, 1, args.repeats, dtype=np.float64)
    rows.append(row("SMALL reference, float64", s1d, args.steps))

    brian = {}
    if not args.no_brian2:
        python = brian2_python()
        if python is None:
            print("Brian2 comparison skipped: no interpreter at $BRIAN2_PYTHON "
                  f"(default {DEFAULT_BRIAN2_PYTHON}). Create it with\n"
                  "    python3.11 -m venv /tmp/brian2-venv\n"
                  "    /tmp/brian2-venv/bin/pip install -r bench/requirements-brian2.txt")
        else:
            with tempfile.TemporaryDirectory(prefix="small-bench-") as tmp:
                for target in [t.strip() for t in args.targets.split(",") if t.strip()]:
                    r = run_brian2(p, target, args.repeats, Path(tmp), python)
                    if r:
                        brian[target] = r
                        rows.append(row(f"Brian2 {r['version']}, {target}", r, args.steps))
    print()
    print(table(header, rows))

    if brian:
        print()
        print("Brian2 first run() (code generation; compilation for cython) and construction, not in the table:")
        for target, r in brian.items():
            print(f"  {target}: first run {r['first'] * 1e3:,.0f} ms, construction {r['build'] * 1e3:,.0f} ms; "
                  f"a run() of zero duration takes {r['zero'] * 1e3:,.1f} ms; {args.steps} steps alone take about "
                  f"{r['loop'] * 1e3:,.1f} ms (from runs {r['long_factor']}x as long)")
        print()
        print("Speed and agreement at batch 1 (Brian2 wall / SMALL wall; rate = mean over neurons):")
        for target, r in brian.items():
            for label, s in (("float32", s1), ("float64", s1d)):
                ra, rb, rel, frac = compare(s, r)
                print(f"  vs Brian2 {target:<6}: SMALL {label} {r['wall'] / s['wall']:5.2f}x faster "
                      f"({r['loop'] / s['wall']:4.2f}x against Brian2's steps alone); "
                      f"rate {ra:.3f} Hz vs {rb:.3f} Hz ({rel:+.2%}); spike count differs for {frac:.1%} of neurons")
        if len(brian) == 2:
            a, b = brian.values()
            print(f"  Brian2 numpy vs cython: spike count differs for {np.mean(a['counts'] != b['counts']):.1%} "
                  "of neurons")
    first = np.nonzero(s1["raster"] != s1d["raster"])
    when = f"step {first[0].min()}" if first[0].size else "never"
    print(f"SMALL float32 vs float64 (batch 1): rasters first differ at {when}; "
              f"rates {s1['counts'].mean() / (args.steps * DT):.3f} vs {s1d['counts'].mean() / (args.steps * DT):.3f} Hz")
    if s64:
        rates = s64["counts"].mean(axis=1) / (args.steps * DT)
        print(f"batch {args.batch}: rate per input realisation {rates.mean():.2f} +- {rates.std():.2f} Hz (mean +- sd)")

    if not args.no_digits:
        print()
        d = bench_digits(args.repeats)
        if d:
            print(f"(ii) digits classifier: {d['neurons']} neurons, {d['synapses']} synapses, {d['samples']} test "
                  f"samples x {d['steps']} steps in one batch; best of {args.repeats} after a warm-up run")
            print(table(["simulator", "batch", "wall ms", "samples/s", "syn. events/s", "neuron-updates/s"],
                        [["SMALL reference, float32", str(d["samples"]), f"{d['wall'] * 1e3:,.1f}",
                          f"{d['samples'] / d['wall']:,.0f}", fmt_rate(d["events"] / d["wall"]),
                          fmt_rate(d["updates"] / d["wall"])]]))
            print(f"accuracy on the test set: {d['accuracy']:.2%}")
    if not args.no_torch:
        report_frameworks(args)


def report_frameworks(args) -> None:
    """(iii): print the interleaved SMALL / snnTorch / Norse table."""
    python = os.environ.get("TORCH_PYTHON", DEFAULT_TORCH_PYTHON)
    if not os.path.exists(python):
        print(f"(iii) skipped: no interpreter at $TORCH_PYTHON (default {DEFAULT_TORCH_PYTHON}); "
              "create it with --make-venvs")
        return
    p = make_lif_network(args.steps, max(args.batch, 1))
    r = bench_frameworks(p, args.batch, args.repeats, python, args.torch_threads)
    v = r.pop("versions")
    snn_counts = r.pop("digits_snntorch_counts", None)
    print()
    print(f"(iii) SMALL vs snnTorch {v['snntorch']} and Norse {v['norse']} (torch {v['torch']}, "
          f"{args.torch_threads} threads, no_grad), interleaved: best of {args.repeats} after a warm-up round")
    rows = []
    for case, sims in r.items():
        small = sims["SMALL"]["wall"]
        for name, t in sims.items():
            spikes = int(t["counts"].sum())
            rows.append([case, name, f"{t['wall'] * 1e3:,.1f}",
                         f"{max(t['walls']) * 1e3:,.1f}", f"{t['wall'] / small:.2f}", f"{spikes:,}"])
    print(table(["workload", "simulator", "best ms", "worst ms", "time / SMALL's", "output spikes"], rows))
    if snn_counts is not None and "digits" in r:
        same = np.array_equal(r["digits"]["SMALL"]["counts"], snn_counts)
        same_fw = np.array_equal(r["digits"]["snntorch"]["counts"], snn_counts)
        print(f"digits output spike counts per class equal to examples/digits/test_set.npz (snnTorch's own): "
              f"SMALL {same}, snnTorch here {same_fw}")


if __name__ == "__main__":
    main()
