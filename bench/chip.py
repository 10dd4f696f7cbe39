"""The programmable chip: what the presets hold and cost, what loading a network costs, and how
many cycles a step takes.

Run from the repository root with the project's environment::

    .venv/bin/python bench/chip.py [--specs up5k,hx8k,custom16] [--samples 20] [--no-synth]

What it measures:

(i)   per chip spec (the ``up5k`` and ``hx8k`` presets and a 16-tile custom spec of 64x64 tiles):
      the capacity (neuron columns, synapses), and, unless ``--no-synth``, the board design
      (``hdl.board.BoardTop``: the chip behind its UART bridge, memories empty) through yosys
      and nextpnr for the spec's iCE40: logic cells, block RAMs, SPRAMs, DSPs and fmax, or, when
      it does not fit, what it needs of each;
(ii)  per bundled network (the digits classifier at 16 levels, the recurrent ALIF example),
      compiled for 64x64 tiles: configuration words, bytes on the UART (host protocol v2
      frames, ``compiler/protocol.py``) and the load time at 115200 baud and at 3 Mbaud (10 bits
      a byte: 8N1, no gaps);
(iii) the digits classifier (8 levels, as ``make demo`` builds it) at 1 and 8 lanes: the
      programmable chip of its capacity under Verilator (``small verify``'s testbench, the
      network loaded over the host port), over ``--samples`` test inputs: mean cycles per chip
      step, cycles of an idle step (``hdl.chip.step_cycles``), and synaptic operations per
      cycle: the non-zero synapses of every row event of the run (the twin's row events,
      ``sim/chip.py``), divided by the cycles of all steps.

Cycle counts are deterministic; only the seconds depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from compiler.capacity import PRESETS, Capacity, config_writes  # noqa: E402
from compiler.protocol import Codec  # noqa: E402

SPECS = {"up5k": (PRESETS["up5k"], "icebreaker"), "hx8k": (PRESETS["hx8k"], "hx8k"),
         "custom16": (Capacity(tiles=16, rows=64, cols=64, levels=16, lanes=4, name="custom16"), "icebreaker")}
NETWORKS = {"digits": ("examples/digits/digits.nir", ["--levels", "16"]),
            "alif": ("examples/alif_memory/network.small", ["--scale", "column"])}


def compiled(source: str, extra: list[str], out: Path):
    from compiler.image import load_image
    from small.cli import main

    if main(["compile", str(ROOT / source), "--target", "digital", "-o", str(out), *extra]) != 0:
        raise SystemExit(f"could not compile {source}")
    return load_image(out)


def synthesis(cap: Capacity, board: str, out: Path) -> dict:
    from hdl.board import BoardTop
    from hdl.export import DesignTooLargeError, build_bitstream

    t0 = time.perf_counter()
    try:
        report = build_bitstream(BoardTop(cap), out, board=board)
        fits, util, fmax = True, report["utilisation"], min(report["fmax_mhz"].values(), default=None)
    except DesignTooLargeError as exc:
        fits, util, fmax = False, exc.utilisation, None
    get = {k: (util.get(k) or {}).get("used") for k in ("ICESTORM_LC", "ICESTORM_RAM", "ICESTORM_SPRAM", "ICESTORM_DSP")}
    return {"fits": fits, "logic_cells": get["ICESTORM_LC"], "block_rams": get["ICESTORM_RAM"],
            "sprams": get["ICESTORM_SPRAM"], "dsps": get["ICESTORM_DSP"], "fmax_mhz": fmax,
            "seconds": time.perf_counter() - t0}


def load_cost(image, cap: Capacity) -> dict:
    codec = Codec.of(cap)
    writes = config_writes(image, cap)
    size = sum(len(codec.write(*w)) for w in writes)
    return {"words": len(writes), "bytes": size, "s_115200": size * 10 / 115_200, "s_3M": size * 10 / 3_000_000}


def step_figures(image, build: Path, lanes: int, samples: int) -> dict:
    from hdl.chip import Chip, step_cycles
    from hdl.export import write_hdl
    from sim.digital import DigitalSimulator
    from verify.runner import verify

    cap = Capacity.of(image, lanes=lanes)
    hdl = build / f"hdl-{lanes}"
    write_hdl(Chip(cap), None, hdl)
    x = np.load(build / "test_set.npz")["x"][:, :samples]  # [T, N, ...]: the first samples
    sim = DigitalSimulator(image)
    xs, _, _ = sim.prepare_inputs(x)
    result = verify(build, hdl / "small_chip.v", xs, simulator="verilator", work_dir=build / f"verify-{lanes}",
                    name="bench", capacity=cap.to_dict())
    if not result.passed:
        raise SystemExit(f"verification failed at {lanes} lanes: {result.summary['mismatch']}")
    s = result.summary
    sim.run(xs)
    a = image.arrays
    synapses_per_row = ((a["g_pos"].astype(np.int64) - a["g_neg"]) != 0).sum(axis=2).reshape(-1)
    sops = int((sim.row_events * synapses_per_row).sum())
    step_total = s["mean_cycles_per_step"] * s["chip_steps"]
    return {"lanes": cap.tile_lanes, "samples": samples, "chip_steps": s["chip_steps"],
            "cycles_per_step": s["mean_cycles_per_step"], "idle_step": step_cycles(image, 0, lanes=lanes),
            "synaptic_ops": sops, "sops_per_cycle": sops / step_total, "verify_s": result.run_seconds,
            "load_s": s["load_seconds"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--specs", default="up5k,hx8k,custom16")
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--no-synth", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    out: dict = {"specs": {}, "networks": {}, "steps": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images = {name: compiled(src, extra, tmp / name) for name, (src, extra) in NETWORKS.items()}
        for name in filter(None, args.specs.split(",")):
            cap, board = SPECS[name]
            row = {"tiles": cap.tiles, "geometry": f"{cap.rows}x{cap.cols}", "levels": cap.levels,
                   "lanes": cap.tile_lanes, "neurons": cap.neurons, "synapses": cap.synapses,
                   "chip_id": f"0x{cap.chip_id:08x}"}
            row["loads"] = {}
            for net, image in images.items():
                problems = cap.problems(image)
                row["loads"][net] = load_cost(image, cap) if not problems else {"fits": False, "why": problems[0]}
            if not args.no_synth:
                print(f"synthesising {name} for {board} ...", flush=True)
                row["synthesis"] = synthesis(cap, board, tmp / f"bit-{name}")
            out["specs"][name] = row
            print(name, json.dumps(row), flush=True)
        digits8 = compiled(*NETWORKS["digits"][:1], ["--levels", "8"], tmp / "digits8")
        for lanes in (1, 8):
            fig = step_figures(digits8, tmp / "digits8", lanes, args.samples)
            out["steps"].append(fig)
            print("digits (8 levels)", json.dumps(fig), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
