"""IR drop in a crossbar: ngspice against the nodal model of ``analog_models/crossbar.py``.

For 16x16, 64x64 and 128x128 crossbars it times one read (every row at ``--v-read``) in ngspice
and in the nodal model, checks that the two agree, and checks the goals of the analog-models
stage: the nodal model at least 100x faster than ngspice at 64x64 with an error below 1e-6, and
a 128x128 operating point in ngspice in under 30 s.

Run from the repository root with the project's environment::

    .venv/bin/python bench/analog.py                   # 16, 64, 128 (about 20 s)
    .venv/bin/python bench/analog.py --sizes 32 96     # other sizes
    .venv/bin/python bench/analog.py --plain 64 128    # also ngspice without the equation-order hints
    .venv/bin/python bench/analog.py --digits          # also sim/analog.py on the digits test set
    .venv/bin/python bench/analog.py --digits --device pcm  # ... with PCM devices (default: ideal)
    .venv/bin/python bench/analog.py --json out.json   # all figures to a file as well

The crossbars
-------------
``G`` uniform in [1, 100] uS (seed ``--seed``), every row driven at ``--v-read`` (0.2 V) with no
driver resistance, ``--r-wire`` (1 ohm) on every row and column segment, columns sensed at
virtual grounds (the topology in ``analog_models/crossbar.py``'s docstring).

What is measured
----------------
Wall times, the best of ``--repeats`` (3), after one untimed ngspice run that loads the shared
library (its time is printed on its own):

* ``netlist s``: :func:`analog_models.crossbar.netlist` writing the deck, equation-order hints
  included (their minimum-degree order is most of it at 128x128);
* ``ngspice s``: :func:`analog_models.spice.simulate` of that deck with ``.op``: loading the
  circuit, the operating point, reading every vector back;
* ``factor ms``: :class:`~analog_models.crossbar.NodalCrossbar` built: the sparse nodal matrix
  assembled and factorised (SuperLU);
* ``solve ms``: one ``column_currents(v)``; ``batch 64 ms``: 64 different reads in one call;
* ``speed-up``: (netlist + ngspice) / (factor + solve), one read from nothing each; ``solve
  speed-up``: (netlist + ngspice) / solve, reads of a crossbar already factorised;
* ``error``: ``max |I_model - I_spice| / max |I_spice|`` over the columns; ``IR drop``: the
  same for ideal wires (``v @ G``);
* ``ngspice, no hints s`` (``--plain``): ngspice on the deck without the hints
  (``equation_order=False``): the same circuit in ngspice's own equation order, which Sparse 1.3
  reorders slowly (128x128: about 2 minutes); the 64x64 goal is also checked against it.
* ``--digits``: ``sim.analog.AnalogSimulator`` (written beside this stage) on the digits
  classifier compiled for the memristive target (64x64 tiles, 16 levels), over the whole test
  set, with ideal wires and with ``--r-wire``: samples per second and accuracy. Skipped, with a
  line saying so, when ``sim/analog.py`` or the digits files are missing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DIGITS_DIR = ROOT / "examples" / "digits"


def best_of(func, repeats: int):
    """(best wall time, last result) of ``repeats`` calls."""
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - t0)
    return best, result


def crossbar_figures(size: int, args) -> dict:
    from analog_models import spice
    from analog_models.crossbar import NodalCrossbar, max_rel_error, netlist

    rng = np.random.default_rng(args.seed)
    G = rng.uniform(1e-6, 100e-6, (size, size))
    v = np.full(size, args.v_read)
    out = {"size": size}
    out["netlist_s"], deck = best_of(lambda: netlist(G, v, args.r_wire), args.repeats)
    out["ngspice_s"], res = best_of(lambda: spice.simulate(deck, ".op"), args.repeats)
    i_spice = np.array([res[f"vcol{j}#branch"][0] for j in range(size)])
    out["factor_s"], model = best_of(lambda: NodalCrossbar(G, args.r_wire), args.repeats)
    out["solve_s"], i_model = best_of(lambda: model.column_currents(v), args.repeats)
    batch = rng.uniform(0.0, args.v_read, (64, size))
    out["batch64_s"], _ = best_of(lambda: model.column_currents(batch), args.repeats)
    spice_total = out["netlist_s"] + out["ngspice_s"]
    out["speedup"] = spice_total / (out["factor_s"] + out["solve_s"])
    out["solve_speedup"] = spice_total / out["solve_s"]
    out["error"] = max_rel_error(i_model, i_spice)
    out["ir_drop"] = max_rel_error(v @ G, i_spice)
    out["deck_lines"] = deck.count("\n")
    if size in args.plain:
        plain = netlist(G, v, args.r_wire, equation_order=False)
        out["plain_ngspice_s"], res = best_of(lambda: spice.simulate(plain, ".op"), 1)
        out["plain_error"] = max_rel_error(np.array([res[f"vcol{j}#branch"][0] for j in range(size)]), i_spice)
    return out


# -- the digits classifier through sim/analog.py (another stage's simulator) ---------------------
def bench_digits(args) -> dict | None:
    try:
        from sim.analog import AnalogSimulator
    except ImportError as exc:
        print(f"digits: skipped, sim/analog.py cannot be imported ({exc})")
        return None
    nir_path, data_path = DIGITS_DIR / "digits.nir", DIGITS_DIR / "test_set.npz"
    if not (nir_path.exists() and data_path.exists()):
        print(f"digits: skipped, {nir_path.relative_to(ROOT)} or {data_path.relative_to(ROOT)} is missing "
              "(examples/digits/train.py makes them)")
        return None
    from compiler.mapper import CompileOptions, compile_network
    from compiler.nir_frontend import import_nir

    image = compile_network(import_nir(nir_path, framework="snntorch"),
                            CompileOptions(target="memristive", rows=64, cols=64, levels=16, seed=args.seed)).image
    data = np.load(data_path)
    x, labels = data["x"].astype(np.float64), data["labels"]
    rows = []
    for r_wire in (0.0, args.r_wire):
        t0 = time.perf_counter()
        sim = AnalogSimulator(image, device=args.device, r_wire=r_wire, seed=args.seed)
        setup = time.perf_counter() - t0
        wall, res = best_of(lambda: sim.run(x), 1)
        counts = res.output_array().sum(axis=0)
        accuracy = float(np.mean(np.argmax(counts, axis=1) == labels))
        rows.append({"r_wire": r_wire, "setup_s": setup, "run_s": wall, "samples": x.shape[1], "steps": x.shape[0],
                     "samples_per_s": x.shape[1] / wall, "accuracy": accuracy})
    return {"tiles": image.n_tiles, "device": args.device, "runs": rows}


# -- report --------------------------------------------------------------------------------------
def machine() -> dict:
    cpu = platform.processor() or "?"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    except OSError:
        pass
    import PySpice

    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "pyspice": PySpice.__version__, "date": datetime.date.today().isoformat()}


def table(results: list[dict]) -> str:
    head = ["crossbar", "netlist s", "ngspice s", "factor ms", "solve ms", "batch 64 ms", "speed-up", "solve speed-up",
            "error", "IR drop", "ngspice, no hints s"]
    rows = [[f"{r['size']}x{r['size']}", f"{r['netlist_s']:.3f}", f"{r['ngspice_s']:.3f}", f"{r['factor_s'] * 1e3:.2f}",
             f"{r['solve_s'] * 1e3:.3f}", f"{r['batch64_s'] * 1e3:.2f}", f"{r['speedup']:,.0f}x",
             f"{r['solve_speedup']:,.0f}x", f"{r['error']:.1e}", f"{r['ir_drop'] * 100:.2f} %",
             f"{r['plain_ngspice_s']:.2f}" if "plain_ngspice_s" in r else ""] for r in results]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.rjust(w) for c, w in zip(row, widths)) + " |" for row in rows]
    return "\n".join(lines)


def goals(results: list[dict]) -> list[str]:
    by = {r["size"]: r for r in results}
    out = []
    if 64 in by:
        r = by[64]
        model = r["factor_s"] + r["solve_s"]
        verdicts = [f"per read of a factorised crossbar {r['solve_speedup']:,.0f}x "
                    f"({'met' if r['solve_speedup'] >= 100 else 'NOT MET'})",
                    f"one read from nothing {r['speedup']:,.0f}x against the deck with equation-order hints "
                    f"({'met' if r['speedup'] >= 100 else 'NOT MET'})"]
        if "plain_ngspice_s" in r:
            plain = (r["netlist_s"] + r["plain_ngspice_s"]) / model
            verdicts.append(f"{plain:,.0f}x against ngspice's own equation order "
                            f"({'met' if plain >= 100 else 'NOT MET'})")
        out.append("64x64, nodal model >= 100x faster than ngspice with error < 1e-6: " + "; ".join(verdicts)
                   + f"; error {r['error']:.1e} ({'met' if r['error'] < 1e-6 else 'NOT MET'})")
    if 128 in by:
        r = by[128]
        total = r["netlist_s"] + r["ngspice_s"]
        out.append(f"128x128 operating point in ngspice < 30 s: {'met' if total < 30 else 'NOT MET'} "
                   f"({total:.1f} s: deck {r['netlist_s']:.1f} s + ngspice {r['ngspice_s']:.1f} s"
                   + (f"; without the hints {r['plain_ngspice_s']:.0f} s" if "plain_ngspice_s" in r else "") + ")")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 64, 128], help="square crossbars, rows = columns")
    ap.add_argument("--r-wire", type=float, default=1.0, help="ohms per wire segment")
    ap.add_argument("--v-read", type=float, default=0.2, help="volts on every row")
    ap.add_argument("--repeats", type=int, default=3, help="timings per figure; the best is reported")
    ap.add_argument("--plain", type=int, nargs="*", default=[], metavar="SIZE",
                    help="also time ngspice without the equation-order hints at these sizes (128: minutes)")
    ap.add_argument("--digits", action="store_true", help="also sim/analog.py's throughput on the digits test set")
    ap.add_argument("--device", default="ideal", help="device model for --digits (ideal, pcm, tiox)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write all results to this file")
    args = ap.parse_args()

    from analog_models import spice

    info = machine()
    print(f"# {info['cpu']}, {info['cores']} cores, {info['date']}; Python {info['python']}, numpy {info['numpy']}, "
          f"scipy {info['scipy']}, PySpice {info['pyspice']}", flush=True)
    t0 = time.perf_counter()
    spice.simulate("* warm-up\nV1 a 0 1\nR1 a 0 1k\n", ".op")
    print(f"ngspice shared library loaded and a first deck run in {time.perf_counter() - t0:.2f} s", flush=True)
    results = []
    for size in args.sizes:
        results.append(crossbar_figures(size, args))
        r = results[-1]
        print(f"  {size}x{size}: ngspice {r['netlist_s'] + r['ngspice_s']:.2f} s, nodal "
              f"{(r['factor_s'] + r['solve_s']) * 1e3:.1f} ms, error {r['error']:.1e}", flush=True)
    print()
    print(table(results))
    print()
    print("\n".join(goals(results)))
    report = {"machine": info, "args": vars(args), "crossbars": results}
    if args.digits:
        print()
        digits = bench_digits(args)
        if digits:
            for run in digits["runs"]:
                print(f"digits ({digits['tiles']} tiles, device {digits['device']}), r_wire {run['r_wire']:g} ohm: "
                      f"{run['samples']} samples x {run['steps']} steps in {run['run_s']:.2f} s "
                      f"({run['samples_per_s']:,.0f} samples/s; setup {run['setup_s']:.2f} s), "
                      f"accuracy {run['accuracy'] * 100:.1f} %")
        report["digits"] = digits
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
