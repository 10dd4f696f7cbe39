"""The ``small`` command line.

Exit status: 0 success; 1 a check found a mismatch; 2 a user error (bad file, bad option,
bad network), reported as one line on stderr without a traceback. Heavy modules are imported
inside the subcommands, so ``small --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Callable, Sequence

EXIT_OK, EXIT_MISMATCH, EXIT_USER = 0, 1, 2
BOARDS = ("icebreaker", "hx8k", "ulx3s")  # hdl.export.BOARDS, without importing Amaranth for --help
EXAMPLE_INPUTS = "example_inputs.npy"  # the test set's first samples, written by compile for verify
VERIFY_SAMPLES = 50
NETWORK_FILE = "network.small"  # the network as compiled (imported, discretised), in the build folder
TEST_SET_FILE = "test_set.npz"  # a copy of the labelled test set, in the build folder
FRAMEWORKS = ("nir", "snntorch", "norse")


class _Parser(argparse.ArgumentParser):
    """argparse that exits with status 2 and one line for usage errors (its default, kept explicit)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USER, f"{self.prog}: error: {message}\n")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return value


def _add_verify_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--simulator", choices=("icarus", "verilator"), default="verilator",
                   help="HDL simulator of the verification (default verilator; both are installed by `make install`)")
    p.add_argument("--inputs", metavar="X.npy", help="inputs to verify with, [T, batch, *input_shape] (default: the "
                   f"build's {EXAMPLE_INPUTS}, the test set's first {VERIFY_SAMPLES} samples)")
    p.add_argument("--samples", type=_positive_int, default=VERIFY_SAMPLES, metavar="N",
                   help=f"verify at most N samples of the inputs (default {VERIFY_SAMPLES})")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def _tile(text: str) -> tuple[int, int]:
    rows, sep, cols = text.lower().partition("x")
    try:
        r, c = int(rows), int(cols)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not ROWSxCOLS (e.g. 64x64)") from None
    if not sep or r < 1 or c < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a tile needs at least 1 row and 1 column (e.g. 64x64)")
    return r, c


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dt", type=_positive_float, metavar="SECONDS",
                   help="time step to discretise a NIR file at (default: the framework's implicit step)")
    p.add_argument("--framework", choices=FRAMEWORKS, default=None,
                   help="whose conventions the NIR file follows (default: nir, the literal equations)")


def _add_compile_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", choices=("digital", "memristive"), default="digital")
    p.add_argument("--tile", type=_tile, default=(64, 64), metavar="ROWSxCOLS", help="crossbar geometry (default 64x64)")
    p.add_argument("--levels", type=int, default=None,
                   help="conductance levels per device (default 16, or the calibration's distinguishable levels)")
    p.add_argument("--calibration", metavar="CALIB.json", help="memristive target: a device calibration "
                   "(`small analog characterize`): its levels, conductance range, device and wire resistance")
    p.add_argument("--faults", metavar="CHIP.json", help="stuck devices of the chip (memristive target)")
    p.add_argument("--seed", type=int, default=0, help="seed of the partitioner (default 0)")
    p.add_argument("--max-tiles", type=int, metavar="N", help="fail if the network needs more tiles")
    p.add_argument("--max-split", type=int, default=16, metavar="N",
                   help="most tiles one neuron's inputs may be split across (default 16)")
    p.add_argument("--partitioner", choices=("auto", "metis", "networkx", "sequential"), default="auto")
    p.add_argument("--scale", choices=("tile", "column"), default="tile",
                   help="weight scale per tile group (default) or per neuron column")
    p.add_argument("--test-set", metavar="TEST.npz", help="labelled test set (default: test_set.npz beside the model)")
    _add_model_options(p)


def load_model(path: str | Path, dt: float | None = None, framework: str | None = None):
    """Load a network from a ``.nir`` file (imported at ``dt``/``framework``) or a ``.small`` file."""
    from small.errors import FileFormatError
    from compiler.netfile import SUFFIX, load_network

    path = Path(path)
    if not path.exists():
        raise FileFormatError(f"model file {str(path)!r} does not exist")
    with open(path, "rb") as f:
        magic = f.read(8)
    if magic.startswith(b"PK") or path.suffix == SUFFIX:
        if dt is not None or framework is not None:
            raise FileFormatError(
                f"{str(path)!r} is a SMALL network file, already discretised at its own dt: drop --dt/--framework"
            )
        return load_network(path)
    from compiler.nir_frontend import import_nir

    return import_nir(path, dt=dt, framework=framework or "nir")


# -- subcommands ---------------------------------------------------------------------------
def cmd_import(args: argparse.Namespace) -> int:
    net = load_model(args.model, args.dt, args.framework)
    print(net.summary())
    if args.output:
        from compiler.netfile import save_network

        save_network(net, args.output)
        print(f"wrote {args.output}")
    return EXIT_OK


def cmd_to_nir(args: argparse.Namespace) -> int:
    from compiler.nir_backend import write_nir

    net = load_model(args.model, args.dt, args.framework)
    write_nir(net, args.output)
    print(f"wrote {args.output} ({len(net.populations)} neuron nodes, {len(net.projections)} projections)")
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    import numpy as np

    from small.errors import SimulationError
    from small.fileio import write_npy, write_npz

    if not Path(args.input).is_file():
        raise SimulationError(f"input file {args.input!r} does not exist")
    try:
        x = np.load(args.input, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise SimulationError(f"cannot read {args.input!r} as a .npy array ({exc})") from None
    if not isinstance(x, np.ndarray):
        raise SimulationError(f"{args.input!r} is an .npz archive: give one .npy array [T, batch, n_in]")
    if Path(args.model).is_dir():
        # A build folder: run its HardwareImage on the target's simulator.
        from compiler.image import load_image
        from sim import chip_simulator

        if args.dt is not None or args.framework is not None or args.membrane or args.float64:
            raise SimulationError("a build folder is simulated as compiled: drop --dt/--framework/--membrane/--float64")
        image = load_image(args.model)
        result = chip_simulator(image).run(x)
        names = [o["name"] for o in image.meta["outputs"]]
        spiking = [o["name"] for o in image.meta["outputs"] if o["kind"] == "spikes"]
        what = f"the {image.target} image"
    else:
        from sim.reference import ReferenceSimulator

        net = load_model(args.model, args.dt, args.framework)
        if not net.outputs:
            raise SimulationError("the network has no outputs to write")
        sim = ReferenceSimulator(net, dtype=np.float64 if args.float64 else np.float32)
        result = sim.run(x.astype(np.float32, copy=False), record_membrane=bool(args.membrane))
        names = list(net.outputs)
        spiking = [k for k in names if net.population(net.outputs[k]).neuron.spiking]
        what = "the reference"
    y = result.output_array()
    write_npy(args.output, y)
    if args.membrane:
        write_npz(args.membrane, result.membrane)
    spikes = sum(float(result.outputs[k].sum()) for k in spiking)
    print(f"simulated {y.shape[0]} steps x batch {y.shape[1]} on {what}: wrote {args.output} {list(y.shape)} "
          f"({', '.join(names)}; {int(spikes)} output spikes)")
    return EXIT_OK


def _model_and_test_set(args: argparse.Namespace):
    """The model (at the test set's dt/framework unless given), the labelled test set beside it (or
    ``--test-set``; None without one), the framework and the test set's path."""
    from small.errors import SimulationError
    from sim.evaluate import load_test_set

    model = Path(args.model)
    test_path = Path(args.test_set) if args.test_set else model.with_name("test_set.npz")
    if args.test_set and not test_path.is_file():
        raise SimulationError(f"test set {args.test_set!r} does not exist")
    test = load_test_set(test_path) if test_path.is_file() else None
    dt = args.dt if args.dt is not None else (test.dt if test and model.suffix == ".nir" else None)
    framework = args.framework or (test.framework if test and model.suffix == ".nir" else None)
    return load_model(model, dt, framework), test, framework, test_path if test is not None else None


def cmd_flow(args: argparse.Namespace) -> int:
    """import -> reference -> compile (with the twin's accuracy) -> hdl -> verify -> export."""
    import json
    import time

    from sim.evaluate import accuracy

    model = Path(args.model)
    stages = 7 if args.target == "digital" and args.board != "none" else 6
    t0 = time.perf_counter()

    def stage(k: int, name: str, text: str) -> None:
        print(f"[{k}/{stages}] {name:<10} {text}".rstrip(), flush=True)

    def indent(text: str) -> str:
        return "      " + text.replace("\n", "\n      ")

    net, test, framework, test_path = _model_and_test_set(args)
    how = f"framework {framework or 'nir'}" if model.suffix == ".nir" else "SMALL network file"
    stage(1, "import", f"{model} ({how}, dt {net.dt:g} s)")
    print(indent(net.summary()))
    if test is None:
        stage(2, "reference", f"skipped: no labelled test set beside {model}")
    else:
        acc = accuracy(net, test)
        stage(2, "reference", f"accuracy {acc * 100:.2f} % on {len(test.labels)} test samples "
              f"({test.x.shape[0]} steps each, readout {test.readout}) in {time.perf_counter() - t0:.1f} s")
        # A bundled example records what its training framework measured on the same inputs.
        for name, who in (("snntorch_result.json", "snnTorch"), ("torch_result.json", "the torch training model")):
            expected = model.with_name(name)
            if expected.is_file():
                ref = json.loads(expected.read_text())
                print(f"      {who} measured {ref['accuracy'] * 100:.2f} % on the same inputs")
    output = args.output or str(Path("build") / net.name)
    t = time.perf_counter()
    summary = _compile_and_write(net, model, test, test_path, args, output)
    stage(3, "compile", f"{time.perf_counter() - t:.1f} s")
    print(indent(summary))
    stage(4, "hdl", "")
    print(indent(generate_hdl(output, args.lanes)))
    status = EXIT_OK
    if test is None and args.inputs is None:
        stage(5, "verify", "skipped: no test set to take inputs from (give --inputs X.npy)")
    else:
        stage(5, "verify", f"{args.simulator}, cocotb, up to {args.samples} inputs ...")
        result = run_verify(output, simulator=args.simulator, inputs=args.inputs, samples=args.samples)
        print(indent(_verify_report(result, output)))
        status = EXIT_OK if result.passed else EXIT_MISMATCH
    if stages == 7 and status == EXIT_OK:
        stage(6, "export", f"bitstream for {args.board} ...")
        print(indent(export(output, board=args.board, netlist=False, lanes=args.lanes)))
    from small.report import write_report

    stage(stages, "report", "")  # also after a mismatch: the page shows it
    print(indent(write_report(output)))
    print(f"flow {'done' if status == EXIT_OK else 'FAILED'} in {time.perf_counter() - t0:.0f} s: {output}/")
    return status


def cmd_compile(args: argparse.Namespace) -> int:
    net, test, _, test_path = _model_and_test_set(args)
    print(_compile_and_write(net, Path(args.model), test, test_path, args, args.output))
    return EXIT_OK


def _compile_and_write(net, model: Path, test, test_path: Path | None, args: argparse.Namespace, output: str) -> str:
    """Compile with the options in ``args``, measure on the test set, write the build folder (with
    the network as compiled and a copy of the test set, so that `small report` needs nothing else)."""
    import hashlib
    import json
    import shutil

    import numpy as np

    from small.errors import SmallError
    from compiler.faults import load_faults
    from small.fileio import atomic_directory
    from compiler.mapper import CompileOptions, compile_network, input_scales_for, inter_tile_events_per_step
    from compiler.netfile import save_network
    from sim import chip_simulator
    from sim.evaluate import accuracy

    levels, cal, calibrated = args.levels or 16, None, {}
    if args.calibration:
        from analog_models.calibration import Calibration

        if args.target != "memristive":
            raise SmallError("--calibration describes memristive devices: use it with --target memristive")
        cal = Calibration.load(args.calibration)
        levels = args.levels or cal.levels
        calibrated = {"g_min_us": cal.g_min_uS, "g_max_us": cal.g_max_uS,  # CompileOptions fields
                      "device": {"model": cal.device, "r_wire_ohm": cal.r_wire}}
    opts = CompileOptions(target=args.target, rows=args.tile[0], cols=args.tile[1], levels=levels, seed=args.seed,
                          max_tiles=args.max_tiles, max_split=args.max_split, partitioner=args.partitioner, scale=args.scale,
                          faults=load_faults(args.faults) if args.faults else None, **calibrated)
    opts.validate()
    scales = input_scales_for(net, test.x) if test is not None else {}
    result = compile_network(net, opts, source_sha256=hashlib.sha256(model.read_bytes()).hexdigest(),
                             source_name=model.name, input_scales=scales)
    image, report = result.image, result.report
    if test is not None:
        sim = chip_simulator(image)
        sample = test.x[:, :256]
        sim.run(sample)
        report["inter_tile_events_per_step"] = inter_tile_events_per_step(image, sim.spike_counts, sample.shape[0],
                                                                          sample.shape[1])
        report["accuracy"] = {"reference": accuracy(net, test), _SIM_NAME[image.target]: accuracy(sim, test)}
        if cal is not None:  # the calibrated devices (sim/analog.py: noise, drift at 1 h, IR drop)
            from sim.analog import AnalogSimulator

            report["accuracy"][f"memristive_{cal.device}_1h"] = accuracy(
                AnalogSimulator(image, t_read=3600.0), test)
            if cal.energy:
                from analog_models.energy import per_inference

                report["energy"] = per_inference(image, sim.row_events, int(sim.spike_counts.sum()), sample.shape[1],
                                                 cal.energy)
        report["test_samples"] = int(test.labels.size)
    with atomic_directory(output, marker="image.json") as tmp:
        image.save(tmp)
        (tmp / "report.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
        save_network(net, tmp / NETWORK_FILE)
        if test is not None:  # what `small verify` runs by default
            np.save(tmp / EXAMPLE_INPUTS, test.x[:, :VERIFY_SAMPLES])
            shutil.copyfile(test_path, tmp / TEST_SET_FILE)
    return _compile_summary(net, image, report, output)


_SIM_NAME = {"digital": "digital", "memristive": "memristive_ideal"}


def _compile_summary(net, image, report: dict, output: str) -> str:
    """The few lines a hardware engineer reads after `small compile`."""
    import numpy as np

    rows = np.asarray(report["rows_used_per_tile"])
    cols = np.asarray(report["cols_used_per_tile"])
    R, C = image.rows, image.cols
    lines = [
        f"compiled {net.name!r} for the {image.target} target: {report['neurons']} neurons, "
        f"{report['synapses_mapped']} synapses on {R}x{C} tiles, {image.levels} levels",
        f"  tiles            {report['tiles_used']} used, lower bound {report['tiles_lower_bound']} "
        f"(partitioner {report['partitioner']})",
        f"  rows per tile    min {rows.min()} / mean {rows.mean():.1f} / max {rows.max()} of {R} "
        f"({report['row_utilisation'] * 100:.0f} % used)",
        f"  columns per tile min {cols.min()} / mean {cols.mean():.1f} / max {cols.max()} of {C} "
        f"({report['col_utilisation'] * 100:.0f} % used)",
        *(["  per tile         " + ", ".join(f"{t}: {r}x{c}" for t, (r, c) in enumerate(zip(rows, cols)))
           + " (rows x columns used)"] if len(rows) <= 16 else []),
        f"  fan-in splits    {report['fan_in_splits']} neurons read rows on more than one tile",
        f"  routing          {report['routing_entries']} table entries, {report['input_map_entries']} input-map entries, "
        f"{report['delay_slots']} delay slot(s)",
        "  latency          " + ", ".join(f"{k} {v}" for k, v in report["latency"].items()) + " steps",
        f"  quantisation     RMSE {report['quantisation_rmse']:.4g} ({report['quantisation_rmse_relative'] * 100:.1f} % of "
        "the RMS weight)",
    ]
    if report.get("inter_tile_events_per_step") is not None:
        lines.append(f"  traffic          {report['inter_tile_events_per_step']:.2f} inter-tile events per step "
                     "on the example input")
    faults = report.get("faults")
    if faults:
        lines.append(f"  stuck devices    {faults['used_cells_with_stuck_device']} used cells have a stuck device; "
                     f"weight RMSE {faults['stuck_error_rmse_naive']:.4g} placed naively, "
                     f"{faults['stuck_error_rmse_placed']:.4g} fault-aware")
    energy = report.get("energy")
    if energy:
        lines.append(f"  energy           {energy['pJ_per_inference']:,.1f} pJ per inference on the example input "
                     f"(crossbar reads {energy['read_pJ']:,.1f}, neurons {energy['neuron_pJ']:,.1f}; "
                     f"{energy['row_events_per_inference']:,.0f} row events, {energy['spikes_per_inference']:,.0f} spikes; "
                     "analog only, assumptions in report.json)")
    acc = report.get("accuracy")
    if acc:
        lines.append("  accuracy         " + ", ".join(f"{k} {v * 100:.2f} %" for k, v in acc.items())
                     + f" on {report['test_samples']} test samples")
    lines.append(f"wrote {output}/image.json, image.npz, report.json, {NETWORK_FILE}"
                 + (f", {EXAMPLE_INPUTS}, {TEST_SET_FILE}" if report.get("test_samples") else ""))
    return "\n".join(lines)


def cmd_faults_random(args: argparse.Namespace) -> int:
    from compiler.faults import random_faults, save_faults

    fmap = random_faults(args.tiles, args.tile[0], args.tile[1], args.rate, seed=args.seed,
                         high_fraction=args.high_fraction)
    save_faults(fmap, args.output)
    n = int((fmap.stuck >= 0).sum())
    print(f"wrote {args.output}: {args.tiles} tiles of {args.tile[0]}x{args.tile[1]}, {n} stuck devices "
          f"({n / fmap.stuck.size * 100:.2f} % of {fmap.stuck.size})")
    return EXIT_OK


def _check_digital(image) -> None:
    from small.errors import SmallError

    if image.target != "digital":
        raise SmallError(f"the image targets {image.target!r}: its tiles are analog, so there is no FPGA design to "
                         "build; compile with --target digital for an all-digital chip")


def _chip(image, lanes: int):
    """The generated chip of a build's image, or a one-line reason why there is none."""
    from small.errors import SmallError
    from hdl.chip import Chip

    try:
        return Chip(image, lanes=lanes)
    except ValueError as exc:
        raise SmallError(str(exc)) from None


def _add_lanes(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lanes", type=_lanes, default=1,
                   help="crossbar columns each tile accumulates per cycle (power of 2; default 1, the smallest tiles)")


def _lanes(text: str) -> int:
    """``--lanes``: a power of two."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1 or n & (n - 1):
        raise argparse.ArgumentTypeError(f"{text!r} is not a power of two (1, 2, 4, 8, ...)")
    return n


def generate_hdl(build: str | Path, lanes: int) -> str:
    """Write ``build/hdl/`` (Verilog, RTLIL, summary.json) for the build's image; the report lines."""
    import json

    from small.fileio import atomic_directory
    from compiler.image import load_image
    from hdl.chip import step_cycles
    from hdl.export import write_hdl

    image = load_image(build)
    chip = _chip(image, lanes)
    digital = image.target == "digital"
    out = Path(build) / "hdl"
    with atomic_directory(out, marker="small_chip.v") as tmp:
        summary = write_hdl(chip, None, tmp)
        summary.update(image_sha256=image.meta.get("arrays_sha256"), target=image.target, tiles=image.n_tiles,
                       rows=image.rows, cols=image.cols, delay_slots=image.delay_slots)
        if digital:
            summary.update(lanes=chip.tiles[0].lanes, cycles_per_step_idle=step_cycles(image, 0, lanes=lanes),
                           cycles_per_active_row=chip.tiles[0].words + 4)
        (tmp / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    mems = summary["memories"]
    by_kind = {}
    for mem in mems:
        by_kind.setdefault(mem["name"].rsplit(".", 1)[-1], []).append(mem)
    tiles = (f"{chip.tiles[0].lanes} lane{'s' if chip.tiles[0].lanes > 1 else ''} a tile" if digital
             else "analog arrays and neurons outside the RTL")
    lines = [f"generated the chip of {str(build)!r}: {image.n_tiles} {image.target} tiles of {image.rows}x{image.cols}, "
             f"{tiles}, router with {int(image.arrays['route_ptr'][-1])} entries, input map with "
             f"{int(image.arrays['input_ptr'][-1])} ({summary['seconds']:.1f} s)",
             f"  memories       {len(mems)}, {summary['memory_bits'] / 8192:.1f} KiB: "
             + ", ".join(f"{k} {len(v)} x {max(m['depth'] for m in v)}x{max(m['width'] for m in v)}"
                         for k, v in sorted(by_kind.items())) + " (largest depth x width)"]
    host = [p for p in summary["ports"] if p["name"] not in ("clk", "rst") and not p["name"].startswith("tile")]
    lines.append("  host ports     " + ", ".join(f"{p['name']} {p['direction']} {p['width']}" for p in host))
    if digital:
        lines.append(f"  step latency   {summary['cycles_per_step_idle']} cycles with no activity, "
                     f"+{summary['cycles_per_active_row']} per active row of the busiest tile, +1 per routed event")
    else:
        lines.append(f"  analog ports   {len(summary['ports']) - len(host) - 2} (tile<t>__row_drive, __pulse, __fired, "
                     "...: see hdl/memristive_tile.py)")
    lines.append(f"wrote {out}/small_chip.v, small_chip.il, summary.json")
    return "\n".join(lines)


def cmd_hdl(args: argparse.Namespace) -> int:
    print(generate_hdl(args.build, args.lanes))
    return EXIT_OK


def export_spice(build: str | Path, image, r_wire: float | None) -> str:
    """``BUILD/spice/tile<t>.cir``: every tile's SPICE deck (``sim/tile_netlist.py``)."""
    from sim.tile_netlist import tile_deck
    from small.errors import SmallError
    from small.fileio import atomic_directory

    if image.target != "memristive":
        raise SmallError("--spice writes the analog tiles of a memristive image: compile with --target memristive")
    r = float((image.meta.get("device") or {}).get("r_wire_ohm", 1.0)) if r_wire is None else r_wire
    out = Path(build) / "spice"
    with atomic_directory(out, marker="tile0.cir") as tmp:
        for t in range(image.n_tiles):
            (tmp / f"tile{t}.cir").write_text(tile_deck(image, t, r_wire=r, source=str(build)))
    return (f"spice: {image.n_tiles} tile decks ({image.rows}x{image.cols} device pairs, {r:g} ohm a wire segment, "
            f"analog LIF neurons) in {out}/; run one with `ngspice -b {out}/tile0.cir`")


def export(build: str | Path, *, board: str | None, netlist: bool, lanes: int, spice: bool = False,
           r_wire: float | None = None) -> str:
    """Synthesise the build's chip, or write its tiles' SPICE decks (``small export``); the report lines."""
    from small.errors import SmallError
    from compiler.image import load_image

    image = load_image(build)
    if not (board or netlist or spice):
        raise SmallError("say what to export: --bitstream BOARD and/or --netlist (digital), or --spice (memristive)")
    if spice and (board or netlist):
        raise SmallError("--spice exports a memristive image's analog tiles, --bitstream and --netlist a digital "
                         "image's logic: ask for one or the other")
    if spice:
        return export_spice(build, image, r_wire)
    _check_digital(image)
    lines = []
    out = Path(build) / "hdl"
    if netlist:
        from hdl.export import write_netlist

        info = write_netlist(_chip(image, lanes), out)
        cells = info["cells"]
        lines.append(f"netlist: {sum(cells.values())} cells (" + ", ".join(f"{k} {v}" for k, v in sorted(cells.items()))
                     + f") in {info['seconds']:.0f} s; wrote {out}/small_chip_netlist.v, small_chip_netlist.json")
    if board:
        from hdl.board import BoardTop
        from hdl.export import build_bitstream

        lines.append(_fpga_summary(build_bitstream(BoardTop(image, lanes=lanes), out, board=board), out))
    return "\n".join(lines)


def cmd_export(args: argparse.Namespace) -> int:
    print(export(args.build, board=args.bitstream, netlist=args.netlist, lanes=args.lanes, spice=args.spice,
                 r_wire=args.r_wire))
    return EXIT_OK


def _verify_inputs(image, build: Path, path: str | None, samples: int):
    """Inputs ``[T, batch, n_in]`` in host units: ``--inputs`` or the build's example inputs."""
    import numpy as np

    from small.errors import SimulationError, SmallError
    from sim import chip_simulator

    if path is None:
        path = build / EXAMPLE_INPUTS
        if not path.is_file():
            raise SmallError(f"{str(build)!r} has no {EXAMPLE_INPUTS} (it was compiled without a test set): "
                             "give inputs with --inputs X.npy [T, batch, n_in]")
    elif not Path(path).is_file():
        raise SmallError(f"input file {str(path)!r} does not exist")
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise SimulationError(f"cannot read {str(path)!r} as a .npy array ({exc})") from None
    if not isinstance(x, np.ndarray):
        raise SimulationError(f"{str(path)!r} is an .npz archive: give one .npy array [T, batch, n_in]")
    xs, _, _ = chip_simulator(image).prepare_inputs(x[:, :samples] if x.ndim >= 2 else x)
    if image.target == "memristive" and not np.all(xs == np.rint(xs)):
        raise SimulationError(f"{str(path)!r}: a memristive chip's host events carry whole-number payloads, and these "
                              "inputs (divided by the input scale) are not whole numbers")
    return xs


def run_verify(build: str | Path, *, simulator: str, inputs: str | None = None, samples: int = VERIFY_SAMPLES,
               waves: bool = False, uart: bool = False, backpressure: int | None = None, analog: str = "ideal"):
    """Verify the generated chip of ``build`` (``small verify``); returns the :class:`VerifyResult`."""
    import json

    from small.errors import SmallError
    from compiler.image import load_image
    from verify.runner import verify

    build = Path(build)
    image = load_image(build)
    verilog = build / "hdl" / "small_chip.v"
    summary_file = build / "hdl" / "summary.json"
    if not verilog.is_file() or not summary_file.is_file():
        raise SmallError(f"no generated chip in {str(build / 'hdl')!r}: run `small hdl {build}` first")
    hdl_summary = json.loads(summary_file.read_text())
    if hdl_summary.get("image_sha256") not in (None, image.meta.get("arrays_sha256")):
        warnings.warn(f"{verilog} was generated from another image than {build}/image.json: "
                      f"run `small hdl {build}` again unless that is what you want to check")
    xs = _verify_inputs(image, build, inputs, samples)
    work = build / "verify"
    kw = {}
    if uart:
        _check_digital(image)  # the board's design
        from hdl.board import BridgedChip
        from hdl.export import write_hdl

        clk, baud = 12_000_000, 3_000_000  # 4 clock cycles a bit: short frames in simulation
        out = work / "uart-hdl"
        write_hdl(BridgedChip(image, clk_freq=clk, baud=baud, lanes=int(hdl_summary.get("lanes", 1))), None, out,
                  name="small_chip_uart")
        verilog = out / "small_chip_uart.v"
        kw = {"top": "small_chip_uart", "kind": "uart", "divisor": clk // baud}
    if analog != "ideal" and image.target != "memristive":
        raise SmallError(f"--analog {analog} models the analog tiles of a memristive chip; {build} is {image.target}")
    return verify(build, verilog, xs, simulator=simulator, work_dir=work, waves=waves, backpressure=backpressure,
                  name="uart" if uart else f"chip-{analog}" if analog != "ideal" else "chip", analog=analog, **kw)


def _verify_report(result, build) -> str:
    s = result.summary
    c = s["compared"]
    steps = s["chip_steps"]
    sim = result.simulator
    lines = [f"verify {build} on {sim}: {s['samples']} input{'s' * (s['samples'] != 1)} x {s['network_steps']} steps "
             f"({steps} chip steps compared)",
             "  build        " + (f"{result.build_seconds:.1f} s" if result.built else "reused (same Verilog)"),
             f"  simulate     {result.run_seconds:.1f} s: {s['cycles']:,} cycles, {s['mean_cycles_per_step']:,.0f} a step, "
             f"{steps / max(result.run_seconds, 1e-9):,.0f} steps/s",
             "  compared     " + (f"{c['spikes']:,} neuron spikes (where they enter the router), "
                                   if s["internal_spikes_probed"] else "")
             + f"{c['host_spikes']:,} host spikes, {c['values']:,} LI values, {c['steps']:,} end-of-step events"]
    if result.waves:
        lines.append(f"  waveform     {result.waves}")
    if result.passed:
        lines.append(f"PASS: the RTL equals {s['reference']} on every event")
    else:
        lines.append(f"FAIL: first mismatch: {s['mismatch']}")
    return "\n".join(lines)


def cmd_verify(args: argparse.Namespace) -> int:
    result = run_verify(args.build, simulator=args.simulator, inputs=args.inputs, samples=args.samples,
                        waves=args.waves, uart=args.uart, backpressure=args.backpressure, analog=args.analog)
    print(_verify_report(result, args.build))
    return EXIT_OK if result.passed else EXIT_MISMATCH


def _fpga_summary(report: dict, out: Path) -> str:
    lines = [f"bitstream for {report['board']} ({report['device']}) in {report['seconds']:.0f} s"]
    for name, use in report["resources"].items():
        lines.append(f"  {name:<14} {use['used']} of {use['available']} ({use['used'] / max(1, use['available']) * 100:.0f} %)")
    for clock, mhz in report["fmax_mhz"].items():
        flag = "meets" if mhz >= report["required_mhz"] else "MISSES"
        lines.append(f"  fmax {clock:<9} {mhz:.1f} MHz ({flag} {report['required_mhz']:.0f} MHz)")
    lines.append(f"wrote {out}/small_chip.bin, small_chip_fpga.json")
    return "\n".join(lines)


# -- analog models ------------------------------------------------------------------------------
DEVICE_MODELS = ("linear-ion-drift", "vteam", "pcm", "tiox")  # analog_models.devices.MODELS


def _write_figures(plot: str | None, figures: dict, plotter) -> str:
    """Write ``plot`` (PNG) and the figures as JSON beside it; the line that says so."""
    import json

    from small.fileio import atomic_output

    if not plot:
        return ""
    png = Path(plot)
    if png.suffix.lower() != ".png":
        from small.errors import SmallError

        raise SmallError(f"--plot {plot!r}: give a .png file name")
    with atomic_output(png) as tmp:
        plotter(tmp)
    with atomic_output(png.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(figures, indent=1, sort_keys=True) + "\n")
    return f"wrote {png}, {png.with_suffix('.json')}"


def _user_errors(func):
    """Run ``func``; a ValueError (a bad parameter or file) becomes a user error (exit 2)."""
    from small.errors import SmallError

    try:
        return func()
    except ValueError as exc:
        raise SmallError(str(exc)) from None


def cmd_analog_device(args: argparse.Namespace) -> int:
    import json

    from analog_models import devices

    report = _user_errors(lambda: devices.characterize(args.model, seed=args.seed))
    figures = report.figures()
    if args.json:
        print(json.dumps(figures, sort_keys=True))
    else:
        print(f"device {args.model}: " + ", ".join(f"{k} {v}" for k, v in figures.items() if not isinstance(v, (list, dict))))
    line = _write_figures(args.plot, figures, lambda path: devices.plot(report, path))
    if line and not args.json:
        print(line)
    return EXIT_OK


def _conductances(args: argparse.Namespace):
    """``--conductances G.npy`` (siemens, [rows, cols]) or random ones (1-100 uS, seeded)."""
    import numpy as np

    from small.errors import SmallError

    if args.conductances is None:
        rng = np.random.default_rng(args.seed)
        return rng.uniform(1e-6, 100e-6, size=(args.rows, args.cols))
    path = Path(args.conductances)
    if not path.is_file():
        raise SmallError(f"conductance file {str(path)!r} does not exist")
    try:
        G = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise SmallError(f"cannot read {str(path)!r} as a .npy array ({exc})") from None
    if not isinstance(G, np.ndarray) or G.shape != (args.rows, args.cols) or G.dtype.kind not in "biuf":
        raise SmallError(f"{str(path)!r} must hold numbers of shape [{args.rows}, {args.cols}] (siemens, "
                         f"--rows x --cols), not {getattr(G, 'shape', '?')}")
    if not np.all(np.isfinite(G)) or (G < 0).any():
        raise SmallError(f"{str(path)!r} holds negative or non-finite conductances: give siemens >= 0")
    return G.astype(np.float64)


def cmd_analog_crossbar(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from analog_models.crossbar import compare
    from small.errors import SmallError

    G = _conductances(args)
    if args.v_rows is not None:
        if not Path(args.v_rows).is_file():
            raise SmallError(f"row voltage file {args.v_rows!r} does not exist")
        v = np.load(args.v_rows, allow_pickle=False)
        if not isinstance(v, np.ndarray) or v.shape != (args.rows,) or not np.all(np.isfinite(v)):
            raise SmallError(f"{args.v_rows!r} must hold {args.rows} finite row voltages (volts)")
    else:
        v = np.full(args.rows, args.v_read)
    result = _user_errors(lambda: compare(G, v.astype(np.float64), args.r_wire))
    if args.json:
        print(json.dumps(result))
        return EXIT_OK
    ideal, spice, model = (np.asarray(result[k]) for k in ("i_cols_ideal", "i_cols_spice", "i_cols_model"))
    print(f"crossbar {args.rows}x{args.cols}, wire {args.r_wire:g} ohm a segment, rows at "
          + (f"{args.v_read:g} V" if args.v_rows is None else args.v_rows))
    print(f"  column currents  ideal G^T V {ideal.mean() * 1e6:.3f} uA mean; ngspice {spice.mean() * 1e6:.3f} uA "
          f"({result['seconds_spice']:.2f} s); nodal model {model.mean() * 1e6:.3f} uA ({result['seconds_model'] * 1e3:.1f} ms)")
    print(f"  IR drop          ideal vs ngspice: {result['max_rel_error_ideal_vs_spice'] * 100:.3f} % at most")
    print(f"  nodal model      vs ngspice: {result['max_rel_error_model_vs_spice']:.2e} relative at most")
    return EXIT_OK


def cmd_analog_characterize(args: argparse.Namespace) -> int:
    from analog_models.calibration import characterize

    cal = _user_errors(lambda: characterize(args.device, r_wire=args.r_wire, tile=args.tile, dt=args.dt,
                                            seed=args.seed))
    cal.save(args.output)
    n = cal.neuron
    print(f"calibrated {args.device}: {cal.levels} distinguishable levels in {cal.g_min_uS:g}-{cal.g_max_uS:g} uS; "
          f"IR drop on {args.tile[0]}x{args.tile[1]} at {args.r_wire:g} ohm a segment: "
          f"{cal.ir_drop['worst_rel_error'] * 100:.2f} % worst, {cal.ir_drop['typical_rel_error'] * 100:.2f} % typical")
    print(f"  neuron fit at dt {args.dt:g} s: alpha {n.get('alpha', float('nan')):.4f}, "
          f"refractory {n.get('refractory')} steps, rate error {n.get('rate_error_max', float('nan')) * 100:.1f} % at most")
    print(f"wrote {args.output} (use: small compile MODEL --target memristive --calibration {args.output})")
    return EXIT_OK


def cmd_analog_neuron(args: argparse.Namespace) -> int:
    import json

    from analog_models import neuron

    report = neuron.characterize_neuron()
    figures = report.figures()
    if args.json:
        print(json.dumps(figures, sort_keys=True))
    else:
        fit = figures.get("fit", {})
        print(f"analog {args.model} neuron: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                      for k, v in fit.items() if not isinstance(v, (list, dict))))
    line = _write_figures(args.plot, figures, lambda path: neuron.plot(report, path))
    if line and not args.json:
        print(line)
    return EXIT_OK


# -- learning to learn ---------------------------------------------------------------------------
def _workers(text: str) -> int:
    """``--workers``: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0 (0: evaluate in this process, no Dask)")
    return value


def _add_cluster_options(p: argparse.ArgumentParser, default: str = "[dask] in the config, else one per CPU core") -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_workers, metavar="N", help="evaluate on a local Dask cluster of N worker "
                       f"processes (default: {default}; 0: in this process, no Dask)")
    where.add_argument("--scheduler", metavar="ADDR", help="evaluate on a running Dask cluster, e.g. tcp://host:8786 "
                       "(`dask scheduler`, `dask worker ADDR`, or dask-jobqueue on SLURM: see docs/l2l.md)")


def _l2l_runner(args: argparse.Namespace, stack, config=None):
    """The started evaluation backend (closed with ``stack``): --workers/--scheduler, else the config's [dask].

    Called once without ``config`` first: an explicit --scheduler is reached then, before the
    configuration and its task are imported, so an unreachable one is reported within seconds.
    """
    from l2l.runner import Runner

    if config is None:
        return stack.enter_context(Runner(scheduler=args.scheduler)) if args.scheduler is not None else None
    if args.workers is not None:
        workers, scheduler = args.workers, None
    else:
        workers, scheduler = config.dask.workers, config.dask.scheduler
    return stack.enter_context(Runner(workers=workers, scheduler=scheduler, retries=config.dask.retries))


def _progress(line: str) -> None:
    print(line, flush=True)


def cmd_l2l_run(args: argparse.Namespace) -> int:
    import contextlib

    with contextlib.ExitStack() as stack:
        runner = _l2l_runner(args, stack)
        from l2l.config import load_config
        from l2l.loop import check_run_dir, meta_train

        check_run_dir(args.output, args.force)  # before a local cluster starts: a mistake costs no time
        config = load_config(args.config)
        runner = runner or _l2l_runner(args, stack, config)
        runner.retries = config.dask.retries
        meta_train(config, args.output, runner, progress=_progress, force=args.force)
    return EXIT_OK


def cmd_l2l_resume(args: argparse.Namespace) -> int:
    import contextlib

    with contextlib.ExitStack() as stack:
        runner = _l2l_runner(args, stack)
        from l2l.config import load_config
        from l2l.loop import CONFIG_FILE, RunDirError, resume

        config_file = Path(args.run_dir) / CONFIG_FILE
        if not config_file.is_file():
            raise RunDirError(f"{args.run_dir!r} holds no run (no {CONFIG_FILE}): start one with "
                              f"`small l2l run CONFIG -o {args.run_dir}`")
        config = load_config(config_file)
        runner = runner or _l2l_runner(args, stack, config)
        runner.retries = config.dask.retries
        resume(args.run_dir, runner, progress=_progress)
    return EXIT_OK


def cmd_l2l_eval(args: argparse.Namespace) -> int:
    from l2l import evaluate

    return evaluate.main(args)


# -- entry point ---------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="small", description="SMALL: map spiking networks onto memristive crossbar chips.")
    parser.add_argument("--version", action="store_true", help="print the toolchain version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("import", help="read a NIR file (or .small network) and print or save it as a SMALL network")
    p.add_argument("model", help="model.nir or net.small")
    p.add_argument("-o", "--output", metavar="NET.small", help="write SMALL's network file")
    _add_model_options(p)
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("to-nir", help="export a network to NIR (SMALL's extensions kept in node metadata)")
    p.add_argument("model", help="net.small or model.nir")
    p.add_argument("-o", "--output", required=True, metavar="OUT.nir")
    _add_model_options(p)
    p.set_defaults(func=cmd_to_nir)

    p = sub.add_parser("simulate", help="run the reference simulator, or a compiled image's simulator, on an input array")
    p.add_argument("model", help="model.nir or net.small (reference), or a `small compile` build folder (its target)")
    p.add_argument("--input", required=True, metavar="X.npy", help="float32 [T, batch, *input_shape] or [T, batch, n_in]")
    p.add_argument("--output", required=True, metavar="Y.npy", help="float32 [T, batch, n_out]: spikes 0/1, LI values")
    p.add_argument("--membrane", metavar="MEM.npz", help="also write every population's membrane trace [T, batch, n]")
    p.add_argument("--float64", action="store_true", help="compute in float64 instead of float32")
    _add_model_options(p)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("flow", help="the main job: import, reference accuracy, compile (with the twin's accuracy), "
                       "hdl, verify, export")
    p.add_argument("model", help="model.nir or net.small (a test_set.npz beside it is used)")
    p.add_argument("-o", "--output", metavar="DIR", help="build folder (default: build/<network name>)")
    _add_compile_options(p)
    _add_lanes(p)
    _add_verify_options(p)
    p.add_argument("--board", choices=(*BOARDS, "none"), default="icebreaker",
                   help="FPGA board of the bitstream (default icebreaker; none: no bitstream)")
    p.set_defaults(func=cmd_flow)

    p = sub.add_parser("compile", help="map a network onto crossbar tiles and write a HardwareImage")
    p.add_argument("model", help="model.nir or net.small (a test_set.npz beside it is used for the report)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="build folder (image.json, image.npz, report.json)")
    _add_compile_options(p)
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("faults", help="make chip fault maps")
    fsub = p.add_subparsers(dest="faults_command", metavar="KIND", parser_class=_Parser, required=True)
    q = fsub.add_parser("random", help="independent stuck devices at a given rate")
    q.add_argument("--rate", type=float, required=True, help="fraction of devices stuck, in [0, 1]")
    q.add_argument("--tiles", type=int, default=16, help="physical tiles on the chip (default 16)")
    q.add_argument("--tile", type=_tile, default=(64, 64), metavar="ROWSxCOLS")
    q.add_argument("--high-fraction", type=float, default=0.5, help="fraction of stuck devices stuck high (default 0.5)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("-o", "--output", required=True, metavar="CHIP.json")
    q.set_defaults(func=cmd_faults_random)

    p = sub.add_parser("hdl", help="generate the chip's RTL (Verilog and RTLIL) for a compiled digital image")
    p.add_argument("build", help="a `small compile --target digital` build folder; writes BUILD/hdl/")
    _add_lanes(p)
    p.set_defaults(func=cmd_hdl)

    p = sub.add_parser("verify", help="run the generated Verilog under Icarus or Verilator (cocotb) and compare it "
                       "with the image's simulator, event for event")
    p.add_argument("build", help="a build folder with hdl/small_chip.v (`small hdl`)")
    _add_verify_options(p)
    p.add_argument("--waves", action="store_true", help="write a waveform (FST under Icarus, VCD under Verilator)")
    p.add_argument("--uart", action="store_true", help="drive the chip through its UART bridge (the board's "
                   "design, at 4 clock cycles a bit) instead of its host ports")
    p.add_argument("--backpressure", type=int, metavar="SEED",
                   help="random gaps between commands and random stalls of the outputs, seeded")
    p.add_argument("--analog", choices=("ideal", "pcm", "tiox"), default="ideal",
                   help="memristive builds: the devices of the analog tiles attached to the chip (default ideal; "
                        "pcm and tiox as sim/analog.py draws them, compared with sim/analog.py)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("export", help="synthesise the generated chip: FPGA bitstream and/or gate-level netlist")
    p.add_argument("build", help="a `small compile --target digital` build folder; writes BUILD/hdl/")
    p.add_argument("--bitstream", metavar="BOARD", help="build a bitstream for this board: icebreaker (iCE40 UP5K), "
                   "hx8k (iCE40 HX8K breakout), ulx3s (ECP5, needs the optional yowasp wheels)")
    p.add_argument("--netlist", action="store_true", help="write yosys's iCE40 gate-level netlist (Verilog and JSON)")
    p.add_argument("--spice", action="store_true", help="memristive builds: a SPICE deck of every tile (devices at "
                   "their programmed conductances, wires, row drivers, analog neurons), runnable in ngspice")
    p.add_argument("--r-wire", type=float, metavar="OHM", help="--spice: wire resistance per segment (default: the "
                   "calibration's, else 1 ohm)")
    _add_lanes(p)
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("analog", help="analog models in ngspice: devices, crossbars with IR drop, analog neurons")
    asub = p.add_subparsers(dest="analog_command", metavar="WHAT", parser_class=_Parser, required=True)
    q = asub.add_parser("device", help="simulate a memristive device: I-V loop, conductance vs pulses, levels")
    q.add_argument("--model", choices=DEVICE_MODELS, required=True)
    q.add_argument("--plot", metavar="IV.png", help="write the figures as a PNG, and as JSON beside it")
    q.add_argument("--seed", type=int, default=0, help="seed of the device-level noise (pcm, tiox)")
    q.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    q.set_defaults(func=cmd_analog_device)
    q = asub.add_parser("crossbar", help="column currents with wire resistance: ngspice, the nodal model, ideal")
    q.add_argument("--rows", type=_positive_int, default=64)
    q.add_argument("--cols", type=_positive_int, default=64)
    q.add_argument("--r-wire", type=float, default=1.0, metavar="OHM", help="resistance of each wire segment")
    q.add_argument("--conductances", metavar="G.npy", help="siemens, [rows, cols] (default: random 1-100 uS)")
    q.add_argument("--v-read", type=float, default=0.2, metavar="VOLT", help="voltage on every row (default 0.2)")
    q.add_argument("--v-rows", metavar="V.npy", help="one voltage per row instead of --v-read")
    q.add_argument("--seed", type=int, default=0, help="seed of the random conductances")
    q.add_argument("--json", action="store_true", help="print one JSON object (currents in amperes, errors, times)")
    q.set_defaults(func=cmd_analog_crossbar)
    q = asub.add_parser("characterize", help="calibrate the flow: device levels and noise, IR drop, neuron fit")
    q.add_argument("--device", choices=("pcm", "tiox"), required=True)
    q.add_argument("--r-wire", type=float, default=1.0, metavar="OHM", help="wire resistance per segment (default 1)")
    q.add_argument("--tile", type=_tile, default=(64, 64), metavar="ROWSxCOLS", help="tile for the IR drop (64x64)")
    q.add_argument("--dt", type=_positive_float, default=1e-3, metavar="SECONDS", help="network step of the neuron fit")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("-o", "--output", required=True, metavar="CALIB.json")
    q.set_defaults(func=cmd_analog_characterize)
    q = asub.add_parser("neuron", help="the analog LIF neuron circuit: membrane trace, f-I curve, fit to the digital LIF")
    q.add_argument("--model", choices=("lif",), default="lif")
    q.add_argument("--plot", metavar="NEURON.png", help="write the figures as a PNG, and as JSON beside it")
    q.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    q.set_defaults(func=cmd_analog_neuron)

    p = sub.add_parser("l2l", help="learning to learn: meta-train on a local or remote Dask cluster, resume, evaluate")
    lsub = p.add_subparsers(dest="l2l_command", metavar="WHAT", parser_class=_Parser, required=True)
    q = lsub.add_parser("run", help="meta-train as a configuration file says, checkpointing every generation")
    q.add_argument("config", metavar="CONFIG.toml", help="the run's configuration (format: docs/l2l.md)")
    q.add_argument("-o", "--output", required=True, metavar="RUN_DIR", help="run folder: config, checkpoint, results")
    q.add_argument("--force", action="store_true", help="start over in a run folder that is not empty")
    _add_cluster_options(q)
    q.set_defaults(func=cmd_l2l_run)
    q = lsub.add_parser("resume", help="continue a stopped or killed run from its last checkpoint")
    q.add_argument("run_dir", metavar="RUN_DIR", help="the run folder of `small l2l run`")
    _add_cluster_options(q)
    q.set_defaults(func=cmd_l2l_resume)
    q = lsub.add_parser("eval", help="evaluate a meta-trained network on tasks it never saw, on each kind of hardware")
    q.add_argument("run_dir", metavar="RUN_DIR", help="a run folder of `small l2l run`, or a model folder (examples/arm)")
    q.add_argument("--trajectories", metavar="FILE.npz", help="arm: trajectories to learn (array `angles` [n, 250, 2], "
                   "radians); default: --n drawn with a fixed test seed")
    q.add_argument("--n", type=_positive_int, default=100, help="arm: trajectories drawn when no file is given (100)")
    q.add_argument("--hardware", choices=("float", "digital", "ideal", "pcm", "tiox"),
                   help="arm: the chip to learn on (default: the run's [task] hardware)")
    q.add_argument("--seed", type=int, default=0, help="the chip's random draws (programming, drift, read noise)")
    q.add_argument("--plots", metavar="DIR", help="arm: folder for the plots (default RUN_DIR/eval)")
    q.add_argument("--save-model", metavar="DIR", help="also write the evaluated candidate as a model folder "
                   "(config.toml + model.npz, small enough to commit)")
    q.add_argument("--no-baseline", action="store_true", help="arm: skip the baseline (the starting network with "
                   "its learning rates tuned: 44 more evaluations)")
    q.add_argument("--json", action="store_true", help="one JSON object on stdout")
    q.set_defaults(func=cmd_l2l_eval)

    p = sub.add_parser("report", help="write BUILD/report.html: one self-contained page of figures about a build "
                       "(network, tiles, conductances, traffic, spikes, accuracy, FPGA, energy, verification)")
    p.add_argument("build", help="a `small compile` (or `small flow`) build folder")
    p.add_argument("--screenshot", metavar="PAGE.png", help="also render the page's top in headless Chromium to a PNG")
    p.add_argument("--screenshot-size", type=_pixels, default=(1400, 2000), metavar="WIDTHxHEIGHT",
                   help="pixels of the screenshot (default 1400x2000)")
    p.set_defaults(func=cmd_report)

    from small import sweep  # light at import: it loads the compiler and Dask inside cmd_sweep

    p = sub.add_parser("sweep", help="compile and simulate a network over a grid of tile sizes, levels and stuck-device "
                       "rates (in parallel on Dask): a CSV, plots and the Pareto front")
    sweep.add_arguments(p)
    p.set_defaults(func=sweep.cmd_sweep)
    return parser


def _pixels(text: str) -> tuple[int, int]:
    w, sep, h = text.lower().partition("x")
    if not (sep and w.isdigit() and h.isdigit() and 100 <= int(w) <= 8000 and 100 <= int(h) <= 16000):
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT in pixels (e.g. 1400x2000)")
    return int(w), int(h)


def cmd_report(args: argparse.Namespace) -> int:
    from small.report import REPORT_FILE, screenshot, write_report

    print(write_report(args.build))
    if args.screenshot:
        print(screenshot(Path(args.build) / REPORT_FILE, args.screenshot, *args.screenshot_size))
    return EXIT_OK


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from small import __version__

        print(f"small {__version__}")
        return EXIT_OK
    if not args.command:
        parser.print_help()
        return EXIT_USER
    from small.errors import SmallError

    warnings.showwarning = _show_warning
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except SmallError as exc:
        print(f"small {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        print("small: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
