"""The ``small`` command line: the parser, calls into the library (:mod:`small.flow`,
:mod:`small.report`, :mod:`small.sweep`, ...) and printing.

Exit status: 0 success; 1 a check found a mismatch; 2 a user error (bad file, bad option,
bad network), reported as one line on stderr without a traceback. Heavy modules are imported
inside the subcommands, so ``small --help`` stays fast.
"""

from __future__ import annotations

import argparse
import errno
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Sequence

from small import flow
from small import options as check

EXIT_OK, EXIT_MISMATCH, EXIT_USER = 0, 1, 2
BOARDS = ("icebreaker", "hx8k", "ulx3s")  # hdl.export.BOARDS, without importing Amaranth for --help


class _Parser(argparse.ArgumentParser):
    """argparse that exits with status 2 and one line for usage errors (its default, kept explicit)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USER, f"{self.prog}: error: {message}\n")


def _indent(text: str) -> str:
    return "      " + text.replace("\n", "\n      ")


def _progress(line: str) -> None:
    print(line, flush=True)


# -- option groups -----------------------------------------------------------------------------
def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dt", type=check.positive_float, metavar="SECONDS",
                   help="time step to discretise a NIR file at (default: the framework's implicit step)")
    p.add_argument("--framework", choices=flow.FRAMEWORKS, default=None,
                   help="whose conventions the NIR file follows (default: nir, the literal equations)")
    p.add_argument("--reset", choices=("subtract", "zero"), default=None,
                   help="reset of the spiking neurons, which a NIR file cannot say (default: the framework's)")


def _add_compile_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", choices=("digital", "memristive"), default="digital")
    p.add_argument("--tile", type=check.tile, default=(64, 64), metavar="ROWSxCOLS",
                   help="crossbar geometry (default 64x64)")
    p.add_argument("--levels", type=check.levels, default=None,
                   help="conductance levels per device (default 16, or the calibration's distinguishable levels)")
    p.add_argument("--calibration", metavar="CALIB.json", help="memristive target: a device calibration "
                   "(`small analog characterize`): its levels, conductance range, device and wire resistance")
    p.add_argument("--faults", metavar="CHIP.json", help="stuck devices of the chip (memristive target)")
    p.add_argument("--seed", type=check.seed, default=0, help="seed of the partitioner (default 0)")
    p.add_argument("--max-tiles", type=check.positive_int, metavar="N", help="fail if the network needs more tiles")
    p.add_argument("--max-split", type=check.positive_int, default=16, metavar="N",
                   help="most tiles one neuron's inputs may be split across (default 16)")
    p.add_argument("--partitioner", choices=("auto", "metis", "networkx", "sequential"), default="auto")
    p.add_argument("--scale", choices=("tile", "column"), default="tile",
                   help="weight scale per tile group (default) or per neuron column")
    p.add_argument("--test-set", metavar="TEST.npz", help="labelled test set (default: test_set.npz beside the model)")
    _add_model_options(p)


def _add_force(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force", action="store_true", help="write the build into an existing folder that is not a "
                   "SMALL build (its files are kept)")


def _add_lanes(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lanes", type=check.lanes, default=1,
                   help="crossbar columns each tile accumulates per cycle (power of 2; default 1, the smallest tiles)")


def _add_verify_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--simulator", choices=("icarus", "verilator"), default="verilator",
                   help="HDL simulator of the verification (default verilator; both are installed by `make install`)")
    p.add_argument("--inputs", metavar="X.npy", help="inputs to verify with, [T, batch, *input_shape] (default: the "
                   f"build's {flow.EXAMPLE_INPUTS}, the test set's first {flow.VERIFY_SAMPLES} samples)")
    p.add_argument("--samples", type=check.positive_int, default=flow.VERIFY_SAMPLES, metavar="N",
                   help=f"verify at most N samples of the inputs (default {flow.VERIFY_SAMPLES})")


def _add_cluster_options(p: argparse.ArgumentParser, default: str = "[dask] in the config, else one per CPU core") -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=check.workers, metavar="N", help="evaluate on a local Dask cluster of N "
                       f"worker processes (default: {default}; 0: in this process, no Dask)")
    where.add_argument("--scheduler", metavar="ADDR", help="evaluate on a running Dask cluster, e.g. tcp://host:8786 "
                       "(`dask scheduler`, `dask worker ADDR`, or dask-jobqueue on SLURM: see docs/l2l.md)")


def _model(args: argparse.Namespace) -> flow.Model:
    return flow.load_model_and_test_set(args.model, test_set=args.test_set, dt=args.dt, framework=args.framework,
                                        reset=getattr(args, "reset", None))


def _build_options(args: argparse.Namespace) -> flow.BuildOptions:
    return flow.BuildOptions(target=args.target, tile=args.tile, levels=args.levels, calibration=args.calibration,
                             faults=args.faults, seed=args.seed, max_tiles=args.max_tiles, max_split=args.max_split,
                             partitioner=args.partitioner, scale=args.scale, chip=getattr(args, "chip", None))


# -- subcommands ---------------------------------------------------------------------------------
def cmd_import(args: argparse.Namespace) -> int:
    net = flow.load_model(args.model, args.dt, args.framework, reset=args.reset)
    print(net.summary())
    if args.output:
        from compiler.netfile import save_network

        save_network(net, args.output)
        print(f"wrote {args.output}")
    return EXIT_OK


def cmd_to_nir(args: argparse.Namespace) -> int:
    from compiler.nir_backend import write_nir

    net = flow.load_model(args.model, args.dt, args.framework, reset=args.reset)
    write_nir(net, args.output)
    print(f"wrote {args.output} ({len(net.populations)} neuron nodes, {len(net.projections)} projections)")
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    print(flow.simulate(args.model, args.input, args.output, dt=args.dt, framework=args.framework, reset=args.reset,
                        membrane=args.membrane, float64=args.float64).summary())
    return EXIT_OK


def cmd_flow(args: argparse.Namespace) -> int:
    """import -> reference -> compile (with the twin's accuracy) -> hdl -> verify -> export -> report."""
    from small.report import write_report

    stages = 7 if args.target == "digital" and args.board != "none" else 6
    t0 = time.perf_counter()

    def stage(k: int, name: str, text: str = "") -> None:
        print(f"[{k}/{stages}] {name:<10} {text}".rstrip(), flush=True)

    model = _model(args)
    stage(1, "import", model.summary())
    print(_indent(model.network.summary()))
    if model.test is None:
        stage(2, "reference", f"skipped: no labelled test set beside {model.path}")
    else:
        head, _, more = flow.reference_accuracy(model).summary().partition("\n")
        stage(2, "reference", head)
        if more:
            print(_indent(more))
    output = args.output or str(Path("build") / model.network.name)
    t = time.perf_counter()
    build = flow.compile_build(model, _build_options(args), output, force=args.force)
    stage(3, "compile", f"{time.perf_counter() - t:.1f} s")
    print(_indent(build.summary()))
    stage(4, "hdl")
    print(_indent(flow.generate_hdl(output, args.lanes).summary()))
    passed = True
    if model.test is None and args.inputs is None:
        stage(5, "verify", "skipped: no test set to take inputs from (give --inputs X.npy)")
    else:
        stage(5, "verify", f"{args.simulator}, cocotb, up to {args.samples} inputs ...")
        verification = flow.verify_build(output, simulator=args.simulator, inputs=args.inputs, samples=args.samples)
        print(_indent(verification.summary()))
        passed = verification.passed
    if stages == 7 and passed:
        stage(6, "export", f"bitstream for {args.board} ...")
        print(_indent(flow.export(output, board=args.board, lanes=args.lanes).summary()))
    stage(stages, "report")  # also after a mismatch: the page shows it
    print(_indent(write_report(output).summary()))
    print(f"flow {'done' if passed else 'FAILED'} in {time.perf_counter() - t0:.0f} s: {output}/")
    return EXIT_OK if passed else EXIT_MISMATCH


def cmd_compile(args: argparse.Namespace) -> int:
    print(flow.compile_build(_model(args), _build_options(args), args.output, force=args.force).summary())
    return EXIT_OK


def cmd_faults_random(args: argparse.Namespace) -> int:
    from compiler.faults import random_faults, save_faults

    fmap = random_faults(args.tiles, args.tile[0], args.tile[1], args.rate, seed=args.seed,
                         high_fraction=args.high_fraction, reversed_rate=args.reversed)
    save_faults(fmap, args.output)
    n = int((fmap.stuck >= 0).sum())
    flipped = int(fmap.reversed.sum())
    print(f"wrote {args.output}: {args.tiles} tiles of {args.tile[0]}x{args.tile[1]}, {n} stuck devices "
          f"({n / fmap.stuck.size * 100:.2f} % of {fmap.stuck.size})"
          + (f", {flipped} reversed ({flipped / fmap.stuck.size * 100:.2f} %)" if args.reversed else ""))
    return EXIT_OK


def cmd_finetune(args: argparse.Namespace) -> int:
    from small.errors import UnsupportedError
    from train.finetune import FinetuneOptions, finetune

    if getattr(args, "reset", None):
        raise UnsupportedError("small finetune reads the reset from the model: convert it first with "
                               "`small import MODEL --reset ... -o NET.small` and fine-tune NET.small")
    options = FinetuneOptions(tile=args.tile, levels=args.levels, target=args.target, scale=args.scale,
                              faults=args.faults, device=args.device, fault_pruning=args.fault_pruning,
                              prune_by=args.prune_by, rewire=args.rewire, fan_in=args.fan_in, epochs=args.epochs,
                              batch=args.batch, lr=args.lr, seed=args.seed, augment=args.augment, dt=args.dt,
                              framework=args.framework)
    print(finetune(args.model, args.data, args.test, options, args.output, progress=_progress).summary())
    return EXIT_OK


def cmd_chip(args: argparse.Namespace) -> int:
    print(flow.make_chip(args.spec, args.output, force=args.force).summary())
    return EXIT_OK


def cmd_load(args: argparse.Namespace) -> int:
    print(flow.load_build(args.build, args.chip, args.port).summary())
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    print(flow.run_build(args.build, args.chip, args.port, args.input, args.output, samples=args.samples))
    return EXIT_OK


def cmd_hdl(args: argparse.Namespace) -> int:
    print(flow.generate_hdl(args.build, args.lanes, chip=args.chip).summary())
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    print(flow.export(args.build, board=args.bitstream, netlist=args.netlist, lanes=args.lanes, spice=args.spice,
                      r_wire=args.r_wire).summary())
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    verification = flow.verify_build(args.build, simulator=args.simulator, inputs=args.inputs, samples=args.samples,
                                     waves=args.waves, uart=args.uart, backpressure=args.backpressure,
                                     analog=args.analog, drift_compensation=args.drift_compensation,
                                     t_read=args.t_read)
    print(verification.summary())
    return EXIT_OK if verification.passed else EXIT_MISMATCH


def cmd_report(args: argparse.Namespace) -> int:
    from small.report import REPORT_FILE, screenshot, write_report

    print(write_report(args.build).summary())
    if args.screenshot:
        print(screenshot(Path(args.build) / REPORT_FILE, args.screenshot, *args.screenshot_size))
    return EXIT_OK


def cmd_sweep(args: argparse.Namespace) -> int:
    from l2l.runner import Runner
    from small import sweep
    from small.errors import SimulationError

    sweep.check_sweep_dir(args.output)  # before anything loads: a mistyped -o costs no time
    model = _model(args)
    if model.test is None:
        raise SimulationError(f"no labelled test set beside {args.model!r} (test_set.npz): give one with --test-set "
                              "TEST.npz, a sweep's main figure is accuracy")
    net, test = model.network, model.test
    grid = sweep.Grid(args.tile, args.levels, args.stuck)
    options = sweep.SweepOptions(seed=args.seed, scale=args.scale, samples=args.samples, max_split=args.max_split,
                                 max_tiles=args.max_tiles)
    source = sweep.Source.files(model.path, model.test_path, framework=model.framework if model.is_nir else None)
    # the whole check before a cluster starts; run_sweep checks again and clears with --force
    sweep.check_sweep_dir(args.output, sweep.sweep_identity(net, test, source, options), args.force)
    t0 = time.perf_counter()
    with Runner(workers=args.workers, scheduler=args.scheduler) as runner:
        where = runner.describe()
        _progress(f"sweeping {net.name!r} over {len(grid)} points ({grid.describe()}), evaluated "
                  f"{where if runner.backend == 'serial' else 'on ' + where}")
        result = sweep.run_sweep(net, test, grid, args.output, runner, options=options, source=source,
                                 force=args.force, progress=_progress)
    print(result.summary())
    for r in result.errors:
        print(f"point {r.point.name} raised (a bug in SMALL, or its worker was lost):\n{r.traceback}", file=sys.stderr)
    print(f"wrote {', '.join(str(p) for p in result.files)}")
    rate = f" ({result.points_per_second:.2f} points/s)" if result.computed else ""
    print(f"{result.computed} points computed in {result.seconds:.1f} s{rate}, {result.reused} reused; "
          f"{time.perf_counter() - t0:.1f} s in all")
    if result.errors:
        print(f"small sweep: {len(result.errors)} points could not be evaluated (tracebacks above): rerun the same "
              "command to retry them", file=sys.stderr)
        return EXIT_MISMATCH
    return EXIT_OK


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
    from small.fileio import read_npy

    if args.conductances is None:
        rng = np.random.default_rng(args.seed)
        return rng.uniform(1e-6, 100e-6, size=(args.rows, args.cols))
    path = Path(args.conductances)
    G = read_npy(path, what="conductance file")
    if G.shape != (args.rows, args.cols) or G.dtype.kind not in "biuf":
        raise SmallError(f"{str(path)!r} must hold numbers of shape [{args.rows}, {args.cols}] (siemens, "
                         f"--rows x --cols), not {list(G.shape)}")
    if not np.all(np.isfinite(G)) or (G < 0).any():
        raise SmallError(f"{str(path)!r} holds negative or non-finite conductances: give siemens >= 0")
    return G.astype(np.float64)


def cmd_analog_crossbar(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from analog_models.crossbar import compare
    from small.errors import SmallError
    from small.fileio import read_npy

    G = _conductances(args)
    if args.v_rows is not None:
        v = read_npy(args.v_rows, what="row voltage file")
        if v.shape != (args.rows,) or not np.all(np.isfinite(v)):
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
    _add_force(p)
    _add_compile_options(p)
    _add_lanes(p)
    _add_verify_options(p)
    p.add_argument("--board", choices=(*BOARDS, "none"), default="icebreaker",
                   help="FPGA board of the bitstream (default icebreaker; none: no bitstream)")
    p.set_defaults(func=cmd_flow)

    p = sub.add_parser("compile", help="map a network onto crossbar tiles and write a HardwareImage")
    p.add_argument("model", help="model.nir or net.small (a test_set.npz beside it is used for the report)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="build folder (image.json, image.npz, report.json)")
    _add_force(p)
    _add_compile_options(p)
    p.add_argument("--chip", metavar="CHIP", help="compile for a programmable chip (`small chip -o CHIP`, or a "
                   "preset): its tiles and levels; what does not fit is named")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("faults", help="make chip fault maps")
    fsub = p.add_subparsers(dest="faults_command", metavar="KIND", parser_class=_Parser, required=True)
    q = fsub.add_parser("random", help="independent stuck (and reversed) devices at given rates")
    stuck = q.add_mutually_exclusive_group(required=True)
    stuck.add_argument("--rate", type=check.fraction, help="fraction of devices stuck, in [0, 1]")
    stuck.add_argument("--stuck", dest="rate", type=check.fraction, help="the same as --rate")
    q.add_argument("--reversed", type=check.fraction, default=0.0, help="fraction of devices that move the wrong "
                   "way when written (update factor ~ N(-1, 0.5), as measured on TiOx), in [0, 1] (default 0)")
    q.add_argument("--tiles", type=check.positive_int, default=16, help="physical tiles on the chip (default 16)")
    q.add_argument("--tile", type=check.tile, default=(64, 64), metavar="ROWSxCOLS")
    q.add_argument("--high-fraction", type=check.fraction, default=0.5,
                   help="fraction of stuck devices stuck high (default 0.5)")
    q.add_argument("--seed", type=check.seed, default=0)
    q.add_argument("-o", "--output", required=True, metavar="CHIP.json")
    q.set_defaults(func=cmd_faults_random)

    p = sub.add_parser("finetune", help="fine-tune a network for a concrete chip (surrogate-gradient BPTT; needs "
                       "the train extra): its levels, tiles (--rewire) and faulty devices (--fault-pruning)")
    p.add_argument("model", help="model.nir or net.small")
    p.add_argument("--data", required=True, metavar="TRAIN.npz", help="training set: x [T, N, *input_shape], labels [N]")
    p.add_argument("--test", required=True, metavar="TEST.npz", help="test set, the same format (accuracy before/after)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="model.nir, network.small, finetune.json, "
                   "curves.png, log.txt, checkpoint.npz")
    p.add_argument("--tile", type=check.tile, default=(64, 64), metavar="ROWSxCOLS", help="crossbar geometry (64x64)")
    p.add_argument("--levels", type=check.levels, default=16, help="conductance levels per device (default 16)")
    p.add_argument("--target", choices=("digital", "memristive"), help="default: memristive with --faults or "
                   "--device, else digital")
    p.add_argument("--scale", choices=("tile", "column"), default="tile", help="weight scale per tile group or column")
    p.add_argument("--faults", metavar="CHIP.json", help="the chip's fault map (stuck and reversed devices)")
    p.add_argument("--device", choices=("ideal", "tiox", "pcm"), help="memristive devices of the chip (default ideal)")
    p.add_argument("--fault-pruning", action="store_true", help="prune the synapses whose devices do not follow "
                   "updates (fault pruning, Kraisnikovic et al. 2023)")
    p.add_argument("--prune-by", choices=("map", "response"), default="map", help="find them in the fault map "
                   "(default) or from their responses to updates during training, as the paper does")
    p.add_argument("--rewire", action="store_true", help="keep every neuron's inputs on one tile (no fan-in splits), "
                   "rewiring connections during training (Q-rewiring)")
    p.add_argument("--fan-in", type=int, metavar="K", help="--rewire: at most K synapses per neuron")
    p.add_argument("--epochs", type=check.positive_int, default=10, help="passes over the training set (default 10)")
    p.add_argument("--batch", type=check.positive_int, default=64, help="samples per step (default 64)")
    p.add_argument("--lr", type=check.positive_float, default=2e-3, help="Adam's learning rate (default 0.002)")
    p.add_argument("--seed", type=check.seed, default=0, help="seed of the compile, the order and the chip's draw")
    p.add_argument("--augment", choices=("shuffle-time",), help="rate-coded inputs: shuffle each sample's steps per "
                   "channel every epoch (a fresh draw of the same rates)")
    _add_model_options(p)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("chip", help="generate a programmable chip of a fixed capacity once: chip.json, Verilog, RTLIL")
    p.add_argument("spec", help="a preset (up5k, hx8k, ulx3s) or a spec.toml of the capacity's fields")
    p.add_argument("-o", "--output", required=True, metavar="CHIP", help="chip folder (reused if the capacity is the same)")
    _add_force(p)
    p.set_defaults(func=cmd_chip)

    for name, text in (("load", "write a compiled network into a running chip over its serial port"),
                       ("run", "load a network into a chip over its serial port, stream inputs, collect the events")):
        p = sub.add_parser(name, help=text)
        p.add_argument("build", help="a `small compile --chip CHIP` build folder")
        p.add_argument("--chip", required=True, metavar="CHIP", help="the chip folder (`small chip -o CHIP`)")
        p.add_argument("--port", required=True, help="the board's serial port (/dev/ttyUSB1), or `sim`: the chip's "
                       "Verilog under Verilator behind a pseudo-terminal")
        if name == "run":
            p.add_argument("--input", metavar="X.npy", help="inputs [T, batch, n_in] (default: the build's examples)")
            p.add_argument("--output", required=True, metavar="Y.npy", help="the outputs [T, batch, n_out], as "
                           "`small simulate BUILD` writes them")
            p.add_argument("--samples", type=check.positive_int, default=flow.VERIFY_SAMPLES)
        p.set_defaults(func=cmd_load if name == "load" else cmd_run)

    p = sub.add_parser("hdl", help="generate the chip's RTL (Verilog and RTLIL) for a compiled digital image")
    p.add_argument("build", help="a `small compile --target digital` build folder; writes BUILD/hdl/")
    _add_lanes(p)
    p.add_argument("--chip", metavar="CHIP", help="the chip of this capacity (a preset, a spec.toml or a `small chip` "
                   "folder) instead of the smallest that holds the network: `small verify` then loads the network "
                   "into the same Verilog a board runs")
    p.set_defaults(func=cmd_hdl)

    p = sub.add_parser("verify", help="run the generated Verilog under Icarus or Verilator (cocotb) and compare it "
                       "with the image's simulator, event for event")
    p.add_argument("build", help="a build folder with hdl/small_chip.v (`small hdl`)")
    _add_verify_options(p)
    p.add_argument("--waves", action="store_true", help="write a waveform (FST under Icarus, VCD under Verilator)")
    p.add_argument("--uart", action="store_true", help="drive the chip through its UART bridge (the board's "
                   "design, at 4 clock cycles a bit) instead of its host ports")
    p.add_argument("--backpressure", type=check.seed, metavar="SEED",
                   help="random gaps between commands and random stalls of the outputs, seeded")
    p.add_argument("--analog", choices=("ideal", "pcm", "tiox"), default="ideal",
                   help="memristive builds: the devices of the analog tiles attached to the chip (default ideal; "
                        "pcm and tiox as sim/analog.py draws them, compared with sim/analog.py)")
    p.add_argument("--t-read", type=check.positive_float, metavar="SECONDS",
                   help="with --analog pcm|tiox: read the arrays this long after programming (default 1; drift)")
    p.add_argument("--drift-compensation", choices=("tile", "column"),
                   help="with --analog pcm|tiox: the tile controllers scale each LI column's ADC code by its "
                        "reference read (per tile or per column), as sim/analog.py's drift_compensation")
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
    q.add_argument("--seed", type=check.seed, default=0, help="seed of the device-level noise (pcm, tiox)")
    q.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    q.set_defaults(func=cmd_analog_device)
    q = asub.add_parser("crossbar", help="column currents with wire resistance: ngspice, the nodal model, ideal")
    q.add_argument("--rows", type=check.positive_int, default=64)
    q.add_argument("--cols", type=check.positive_int, default=64)
    q.add_argument("--r-wire", type=float, default=1.0, metavar="OHM", help="resistance of each wire segment")
    q.add_argument("--conductances", metavar="G.npy", help="siemens, [rows, cols] (default: random 1-100 uS)")
    q.add_argument("--v-read", type=float, default=0.2, metavar="VOLT", help="voltage on every row (default 0.2)")
    q.add_argument("--v-rows", metavar="V.npy", help="one voltage per row instead of --v-read")
    q.add_argument("--seed", type=check.seed, default=0, help="seed of the random conductances")
    q.add_argument("--json", action="store_true", help="print one JSON object (currents in amperes, errors, times)")
    q.set_defaults(func=cmd_analog_crossbar)
    q = asub.add_parser("characterize", help="calibrate the flow: device levels and noise, IR drop, neuron fit")
    q.add_argument("--device", choices=("pcm", "tiox"), required=True)
    q.add_argument("--r-wire", type=float, default=1.0, metavar="OHM", help="wire resistance per segment (default 1)")
    q.add_argument("--tile", type=check.tile, default=(64, 64), metavar="ROWSxCOLS", help="tile for the IR drop (64x64)")
    q.add_argument("--dt", type=check.positive_float, default=1e-3, metavar="SECONDS", help="network step of the neuron fit")
    q.add_argument("--seed", type=check.seed, default=0)
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
    q.add_argument("--n", type=check.positive_int, default=100, help="arm: trajectories drawn when no file is given (100)")
    q.add_argument("--hardware", choices=("float", "digital", "ideal", "pcm", "tiox"),
                   help="arm: the chip to learn on (default: the run's [task] hardware)")
    q.add_argument("--seed", type=check.seed, default=0, help="the chip's random draws (programming, drift, read noise)")
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
    p.add_argument("--screenshot-size", type=check.pixels, default=(1400, 2000), metavar="WIDTHxHEIGHT",
                   help="pixels of the screenshot (default 1400x2000)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("sweep", help="compile and simulate a network over a grid of tile sizes, levels and stuck-device "
                       "rates (in parallel on Dask): a CSV, plots and the Pareto front")
    p.add_argument("model", help="model.nir or net.small (a labelled test_set.npz beside it, or --test-set)")
    p.add_argument("--tile", type=check.comma_list(check.tile), default=((64, 64),), metavar="ROWSxCOLS,...",
                   help="crossbar geometries (default 64x64)")
    p.add_argument("--levels", type=check.comma_list(check.levels), default=(16,), metavar="L,...",
                   help=f"conductance levels per device, {check.MIN_LEVELS} to {check.MAX_LEVELS} (default 16)")
    p.add_argument("--stuck", type=check.comma_list(check.stuck), default=(0.0,), metavar="RATE,...",
                   help="fractions of devices stuck, half high and half low, in [0, 1) (default 0)")
    p.add_argument("-o", "--output", required=True, metavar="SWEEP_DIR",
                   help="sweep folder: points/, sweep.json, sweep.csv, plots; a rerun continues it")
    p.add_argument("--test-set", metavar="TEST.npz", help="labelled test set (default: test_set.npz beside the model)")
    p.add_argument("--samples", type=check.positive_int, metavar="N", help="measure on the first N test samples "
                   "(default all)")
    p.add_argument("--scale", choices=("tile", "column"), default="tile",
                   help="weight scale per tile group (default) or per neuron column")
    p.add_argument("--max-split", type=check.positive_int, default=16, metavar="N",
                   help="most tiles one neuron's inputs may be split across (default 16)")
    p.add_argument("--max-tiles", type=check.positive_int, metavar="N", help="a point that needs more tiles fails")
    p.add_argument("--seed", type=check.seed, default=0, help="seed of the partitioner and the fault maps (default 0)")
    p.add_argument("--force", action="store_true", help="start over in a folder holding another (or this) sweep")
    _add_cluster_options(p, default="one per CPU core")
    _add_model_options(p)
    p.set_defaults(func=cmd_sweep)
    return parser


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
    except OSError as exc:  # a path the system refuses before SMALL can look at the file
        if exc.errno not in _PATH_ERRNOS:
            raise
        print(f"small {args.command}: error: {_path_error(exc)}", file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        print("small: interrupted", file=sys.stderr)
        return 130


# The system's refusals of a path a user typed, wherever SMALL first touches it (pathlib's is_file()
# and exists() raise them): a name too long for the filesystem, a file or folder SMALL may not read
# or write.
_PATH_ERRNOS = {errno.ENAMETOOLONG: "use a shorter path", errno.EACCES: "check its permissions",
                errno.EPERM: "check its permissions", errno.EROFS: "write to a writable folder"}


def _path_error(exc: OSError) -> str:
    name = str(exc.filename)
    shown = repr(name) if len(name) <= 80 else f"{name[:60]!r}... ({len(name)} characters)"
    return f"{(exc.strerror or str(exc)).lower()}: {shown}: {_PATH_ERRNOS[exc.errno]}"


if __name__ == "__main__":
    sys.exit(main())
