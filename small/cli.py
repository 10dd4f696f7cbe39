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


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dt", type=_positive_float, metavar="SECONDS",
                   help="time step to discretise a NIR file at (default: the framework's implicit step)")
    p.add_argument("--framework", choices=FRAMEWORKS, default=None,
                   help="whose conventions the NIR file follows (default: nir, the literal equations)")


def load_model(path: str | Path, dt: float | None = None, framework: str | None = None):
    """Load a network from a ``.nir`` file (imported at ``dt``/``framework``) or a ``.small`` file."""
    from compiler.errors import FileFormatError
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

    from compiler.errors import SimulationError
    from compiler.fileio import write_npy, write_npz
    from sim.reference import ReferenceSimulator

    net = load_model(args.model, args.dt, args.framework)
    if not Path(args.input).is_file():
        raise SimulationError(f"input file {args.input!r} does not exist")
    try:
        x = np.load(args.input, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise SimulationError(f"cannot read {args.input!r} as a .npy array ({exc})") from None
    if not isinstance(x, np.ndarray):
        raise SimulationError(f"{args.input!r} is an .npz archive: give one .npy array [T, batch, n_in]")
    if not net.outputs:
        raise SimulationError("the network has no outputs to write")
    sim = ReferenceSimulator(net, dtype=np.float64 if args.float64 else np.float32)
    result = sim.run(x.astype(np.float32, copy=False), record_membrane=bool(args.membrane))
    y = result.output_array()
    write_npy(args.output, y)
    if args.membrane:
        write_npz(args.membrane, result.membrane)
    spikes = sum(float(v.sum()) for k, v in result.outputs.items() if net.population(net.outputs[k]).neuron.spiking)
    print(f"simulated {y.shape[0]} steps x batch {y.shape[1]}: wrote {args.output} {list(y.shape)} "
          f"({', '.join(net.outputs)}; {int(spikes)} output spikes)")
    return EXIT_OK


def cmd_flow(args: argparse.Namespace) -> int:
    import json
    import time

    from compiler.errors import SimulationError
    from sim.evaluate import accuracy, load_test_set

    model = Path(args.model)
    test_path = Path(args.test_set) if args.test_set else model.with_name("test_set.npz")
    test = load_test_set(test_path) if test_path.is_file() else None
    if args.test_set and test is None:
        raise SimulationError(f"test set {args.test_set!r} does not exist")
    dt = args.dt if args.dt is not None else (test.dt if test and model.suffix == ".nir" else None)
    framework = args.framework or (test.framework if test and model.suffix == ".nir" else None)
    t0 = time.perf_counter()
    net = load_model(model, dt, framework)
    how = f"framework {framework or 'nir'}" if model.suffix == ".nir" else "SMALL network file"
    print(f"[1/2] import    {model} ({how}, dt {net.dt:g} s)")
    print("      " + net.summary().replace("\n", "\n      "))
    if test is None:
        print(f"[2/2] reference  skipped: no labelled test set at {test_path}")
        return EXIT_OK
    acc = accuracy(net, test)
    elapsed = time.perf_counter() - t0
    print(f"[2/2] reference  accuracy {acc * 100:.2f} % on {len(test.labels)} test samples "
          f"({test.x.shape[0]} steps each, readout {test.readout}) in {elapsed:.1f} s")
    # A bundled example records what its training framework measured on the same inputs.
    for name, who in (("snntorch_result.json", "snnTorch"), ("torch_result.json", "the torch training model")):
        expected = model.with_name(name)
        if expected.is_file():
            ref = json.loads(expected.read_text())
            print(f"      {who} measured {ref['accuracy'] * 100:.2f} % on the same inputs")
    return EXIT_OK


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

    p = sub.add_parser("simulate", help="run the float reference simulator on an input array")
    p.add_argument("model", help="model.nir or net.small")
    p.add_argument("--input", required=True, metavar="X.npy", help="float32 [T, batch, *input_shape] or [T, batch, n_in]")
    p.add_argument("--output", required=True, metavar="Y.npy", help="float32 [T, batch, n_out]: spikes 0/1, LI values")
    p.add_argument("--membrane", metavar="MEM.npz", help="also write every population's membrane trace [T, batch, n]")
    p.add_argument("--float64", action="store_true", help="compute in float64 instead of float32")
    _add_model_options(p)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("flow", help="the main job: import, reference simulation and accuracy on a labelled test set")
    p.add_argument("model", help="model.nir or net.small (a test_set.npz beside it is used)")
    p.add_argument("--test-set", metavar="TEST.npz", help="labelled test set (default: test_set.npz beside the model)")
    _add_model_options(p)
    p.set_defaults(func=cmd_flow)
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
    from compiler.errors import SmallError

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
