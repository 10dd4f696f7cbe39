"""The flow as a library: the operations behind ``small import/simulate/compile/hdl/verify/export``
and ``small flow``, each a function with a typed result whose ``summary()`` is what the command
line prints::

    from small import flow

    model = flow.load_model_and_test_set("examples/digits/digits.nir")
    build = flow.compile_build(model, flow.BuildOptions(levels=8), "build/digits")
    print(build.report.tiles_used, build.report.accuracy)
    flow.generate_hdl("build/digits")
    print(flow.verify_build("build/digits", simulator="verilator").summary())
    flow.export("build/digits", board="icebreaker")

A build folder is what :func:`compile_build` writes: ``image.json`` and ``image.npz`` (the
HardwareImage), ``report.json`` (:class:`compiler.mapper.CompileReport`), ``network.small``
(the network as compiled) and, with a test set, ``test_set.npz`` and ``example_inputs.npy``
(its first samples, what :func:`verify_build` runs by default). :func:`generate_hdl` adds
``hdl/``, :func:`verify_build` ``verify/``, :func:`export` the netlist and bitstream in ``hdl/``
or the SPICE decks in ``spice/``; ``small report`` (:mod:`small.report`) reads them all. Each is
written with :func:`small.fileio.atomic_directory` (locked, swapped in whole, a user's own files in
the folder kept) or, in place, with the build's lock held (:func:`small.fileio.output_lock`).

Only the standard library is imported at the top: the command line imports this module to build
its parser, and ``small --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from analog_models.calibration import Calibration
    from compiler.image import HardwareImage
    from compiler.ir import Network
    from compiler.mapper import CompileOptions, CompileReport, CompileResult
    from sim.evaluate import Measurement, TestSet
    from verify.runner import VerifyResult

NETWORK_FILE = "network.small"  # the network as compiled (imported, discretised), in the build folder
TEST_SET_FILE = "test_set.npz"  # a copy of the labelled test set, in the build folder
REPORT_JSON = "report.json"  # CompileReport.to_dict(), in the build folder
EXAMPLE_INPUTS = "example_inputs.npy"  # the test set's first samples, written by compile for verify
# What SMALL writes in a build folder, by compile and by the commands after it (small.report's page
# and figures among them): a recompile replaces these and keeps every other file, the user's.
BUILD_FILES = ("image.json", "image.npz", REPORT_JSON, NETWORK_FILE, EXAMPLE_INPUTS, TEST_SET_FILE, "hdl", "spice",
               "verify", "report.html", "report")
HDL_FILES = ("small_chip*", "summary.json")  # generate_hdl's and export's files in BUILD/hdl/
VERIFY_SAMPLES = 50
FRAMEWORKS = ("nir", "snntorch", "norse", "sinabs", "rockpool", "spyx")
EXPECTED_RESULTS = (("snntorch_result.json", "snnTorch"), ("torch_result.json", "the torch training model"))
"""What a bundled example's training framework measured on its test set, beside the model."""


def _lines(*lines: str) -> str:
    return "\n".join(lines)


# -- models and test sets ------------------------------------------------------------------------
def load_model(path: str | Path, dt: float | None = None, framework: str | None = None,
               reset: str | None = None) -> Network:
    """Load a network from a ``.nir`` file (imported at ``dt``/``framework``, with the spiking
    neurons' ``reset`` if given) or a ``.small`` file."""
    from compiler.netfile import SUFFIX, load_network
    from small.errors import FileFormatError

    path = Path(path)
    if not path.exists():
        raise FileFormatError(f"model file {str(path)!r} does not exist")
    if not path.is_file():
        raise FileFormatError(f"{str(path)!r} is a folder, not a model file: give a .nir or .small file")
    with open(path, "rb") as f:
        magic = f.read(8)
    if magic.startswith(b"PK") or path.suffix == SUFFIX:
        if dt is not None or framework is not None or reset is not None:
            raise FileFormatError(
                f"{str(path)!r} is a SMALL network file, already discretised at its own dt: drop --dt/--framework/--reset"
            )
        return load_network(path)
    from compiler.nir_frontend import import_nir

    return import_nir(path, dt=dt, framework=framework or "nir", reset=reset)


@dataclass
class Model:
    """A network and the labelled test set that goes with it."""

    path: Path
    network: Network
    test: TestSet | None
    test_path: Path | None
    framework: str | None
    """The NIR conventions the network was read with, asked for or recorded by the test set
    (None: NIR's literal equations, or a ``.small`` file)."""

    @property
    def is_nir(self) -> bool:
        return self.path.suffix == ".nir"

    def summary(self) -> str:
        """Where the network came from: ``model.nir (framework snntorch, dt 0.0001 s)``."""
        how = f"framework {self.framework or 'nir'}" if self.is_nir else "SMALL network file"
        return f"{self.path} ({how}, dt {self.network.dt:g} s)"


def load_model_and_test_set(path: str | Path, *, test_set: str | Path | None = None, dt: float | None = None,
                            framework: str | None = None, reset: str | None = None) -> Model:
    """The model and the labelled test set beside it (``test_set.npz``) or at ``test_set``.

    A NIR file is read at the test set's ``dt`` and ``framework`` unless they are given.
    """
    from sim.evaluate import load_test_set
    from small.errors import SimulationError

    path = Path(path)
    test_path = Path(test_set) if test_set else path.with_name(TEST_SET_FILE)
    if test_set and not test_path.is_file():
        raise SimulationError(f"test set {str(test_set)!r} does not exist")
    test = load_test_set(test_path) if test_path.is_file() else None
    nir = path.suffix == ".nir"
    dt = dt if dt is not None else (test.dt if test and nir else None)
    framework = framework or (test.framework if test and nir else None)
    return Model(path, load_model(path, dt, framework, reset), test, test_path if test is not None else None, framework)


def read_inputs(path: str | Path) -> np.ndarray:
    """One ``.npy`` array of inputs (no pickle), its declared size checked before it is read;
    :class:`SimulationError` naming the file if it is not one or is too large."""
    from small.errors import SimulationError
    from small.fileio import read_npy

    return read_npy(path, what="input file", error=SimulationError)


# -- simulate and reference ----------------------------------------------------------------------
@dataclass
class Simulation:
    """What :func:`simulate` wrote."""

    output: Path
    shape: tuple[int, ...]
    outputs: list[str]
    output_spikes: int
    simulator: str
    """``"the reference"`` or ``"the <target> image"``."""

    def summary(self) -> str:
        return (f"simulated {self.shape[0]} steps x batch {self.shape[1]} on {self.simulator}: wrote {self.output} "
                f"{list(self.shape)} ({', '.join(self.outputs)}; {self.output_spikes} output spikes)")


def simulate(model: str | Path, inputs: str | Path, output: str | Path, *, dt: float | None = None,
             framework: str | None = None, membrane: str | Path | None = None, float64: bool = False,
             reset: str | None = None) -> Simulation:
    """Run a model (reference simulator) or a build folder (its image's simulator) on ``inputs``
    (``.npy``); write the outputs ``[T, batch, n_out]`` to ``output`` and, for a model, every
    population's membrane trace to ``membrane`` (``.npz``)."""
    import numpy as np

    from small.errors import SimulationError
    from small.fileio import write_npy, write_npz

    x = read_inputs(inputs)
    if Path(model).is_dir():
        # A build folder: run its HardwareImage on the target's simulator.
        from compiler.image import load_image
        from sim import chip_simulator

        if dt is not None or framework is not None or reset is not None or membrane or float64:
            raise SimulationError("a build folder is simulated as compiled: drop --dt/--framework/--reset/--membrane/--float64")
        image = load_image(model)
        if not image.meta["outputs"]:
            raise SimulationError(f"the build {str(model)!r} has no outputs to write: compile a network with outputs")
        result = chip_simulator(image).run(x)  # the shapes the reference takes, with its messages
        names = [o["name"] for o in image.meta["outputs"]]
        spiking = [o["name"] for o in image.meta["outputs"] if o["kind"] == "spikes"]
        what = f"the {image.target} image"
    else:
        from sim.reference import ReferenceSimulator

        net = load_model(model, dt, framework, reset)
        if not net.outputs:
            raise SimulationError("the network has no outputs to write")
        sim = ReferenceSimulator(net, dtype=np.float64 if float64 else np.float32)
        result = sim.run(x.astype(np.float32, copy=False), record_membrane=bool(membrane))
        names = list(net.outputs)
        spiking = [k for k in names if net.population(net.outputs[k]).neuron.spiking]
        what = "the reference"
    y = result.output_array()
    write_npy(output, y)
    if membrane:
        write_npz(membrane, result.membrane)
    spikes = sum(float(result.outputs[k].sum()) for k in spiking)
    return Simulation(Path(output), tuple(y.shape), names, int(spikes), what)


@dataclass
class ReferenceAccuracy:
    """The float network's accuracy on its test set (``small flow``'s reference stage)."""

    accuracy: float
    samples: int
    steps: int
    readout: str
    seconds: float
    expected: list[tuple[str, float]]
    """What the training framework measured on the same inputs (bundled examples), by framework."""

    def summary(self) -> str:
        return _lines(f"accuracy {self.accuracy * 100:.2f} % on {self.samples} test samples ({self.steps} steps each, "
                      f"readout {self.readout}) in {self.seconds:.1f} s",
                      *(f"{who} measured {acc * 100:.2f} % on the same inputs" for who, acc in self.expected))


def reference_accuracy(model: Model) -> ReferenceAccuracy:
    """Score the float reference on the model's test set (which it must have)."""
    from sim.evaluate import accuracy

    from small.errors import SimulationError

    test = model.test
    if test is None:
        raise SimulationError(f"{model.path} has no labelled test set to score the reference on: give --test-set")
    t0 = time.perf_counter()
    acc = accuracy(model.network, test)
    seconds = time.perf_counter() - t0
    expected = []
    for name, who in EXPECTED_RESULTS:
        path = model.path.with_name(name)
        if path.is_file():
            expected.append((who, float(json.loads(path.read_text())["accuracy"])))
    return ReferenceAccuracy(acc, int(test.labels.size), int(test.x.shape[0]), test.readout, seconds, expected)


# -- compile -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BuildOptions:
    """What ``small compile`` is asked for: :class:`compiler.mapper.CompileOptions` as the user gives
    them, with files (calibration, fault map) by path."""

    target: str = "digital"
    tile: tuple[int, int] = (64, 64)
    levels: int | None = None
    """Conductance levels per device (None: 16, or the calibration's distinguishable levels)."""
    calibration: str | Path | None = None
    """A device calibration (memristive target): its levels, conductance range, device and wires."""
    faults: str | Path | None = None
    """A chip's fault map (memristive target)."""
    seed: int = 0
    max_tiles: int | None = None
    max_split: int = 16
    partitioner: str = "auto"
    scale: str = "tile"
    chip: str | Path | None = None
    """A programmable chip (``small chip -o CHIP``): its tiles' geometry and levels, and the fit is checked."""

    @classmethod
    def of_image(cls, image: HardwareImage, target: str | None = None) -> BuildOptions:
        """The options ``image`` was compiled with (``image.json``), for ``target`` (default: the
        image's): geometry, levels, seed, partitioner, split and scale; no device files."""
        opts = image.meta.get("options", {})
        return cls(target=target or image.target, tile=(image.rows, image.cols), levels=image.levels,
                   seed=int(image.meta["seed"]), max_split=int(opts.get("max_split", 16)),
                   partitioner=opts.get("partitioner", "auto"), scale=opts.get("scale", "tile"))

    def load_calibration(self) -> Calibration | None:
        """The calibration file's content (None without one); refused for the digital target."""
        from small.errors import SmallError

        if not self.calibration:
            return None
        from analog_models.calibration import Calibration

        if self.target != "memristive":
            raise SmallError("--calibration describes memristive devices: use it with --target memristive")
        return Calibration.load(self.calibration)

    def compile_options(self, calibration: Calibration | None = None) -> CompileOptions:
        """The compiler's options, validated (``calibration``: :meth:`load_calibration`'s, if loaded already)."""
        from compiler.faults import load_faults
        from compiler.mapper import CompileOptions

        cal = calibration or self.load_calibration()
        calibrated = {} if cal is None else {"g_min_us": cal.g_min_uS, "g_max_us": cal.g_max_uS,
                                             "device": {"model": cal.device, "r_wire_ohm": cal.r_wire}}
        levels = self.levels if self.levels is not None else (cal.levels if cal is not None else 16)
        opts = CompileOptions(target=self.target, rows=self.tile[0], cols=self.tile[1], levels=levels, seed=self.seed,
                              max_tiles=self.max_tiles, max_split=self.max_split, partitioner=self.partitioner,
                              scale=self.scale, faults=load_faults(self.faults) if self.faults else None, **calibrated)
        opts.validate()
        return opts


def compile_model(network: Network, options: BuildOptions, *, input_scales: dict[str, float] | None = None,
                  source_name: str = "", source_sha256: str = "") -> CompileResult:
    """Compile ``network`` as ``options`` say (no measuring, nothing written)."""
    from compiler.mapper import compile_network

    return compile_network(network, options.compile_options(), source_sha256=source_sha256, source_name=source_name,
                           input_scales=input_scales)


@dataclass
class CompiledBuild:
    """A compiled, measured and written build folder (:func:`compile_build`)."""

    output: Path
    network: Network
    image: HardwareImage
    report: CompileReport
    """As written to ``report.json``, with the measured figures when there was a test set."""
    measurement: Measurement | None
    """:func:`sim.evaluate.measure` on the test set (None: no test set)."""

    def summary(self) -> str:
        """The few lines a hardware engineer reads after ``small compile``."""
        import numpy as np

        r, image = self.report, self.image
        rows, cols = np.asarray(r.rows_used_per_tile), np.asarray(r.cols_used_per_tile)
        R, C = image.rows, image.cols
        lines = [
            f"compiled {self.network.name!r} for the {image.target} target: {r.neurons} neurons, "
            f"{r.synapses_mapped} synapses on {R}x{C} tiles, {image.levels} levels",
            f"  tiles            {r.tiles_used} used, lower bound {r.tiles_lower_bound} (partitioner {r.partitioner})",
            f"  rows per tile    min {rows.min()} / mean {rows.mean():.1f} / max {rows.max()} of {R} "
            f"({r.row_utilisation * 100:.0f} % used)",
            f"  columns per tile min {cols.min()} / mean {cols.mean():.1f} / max {cols.max()} of {C} "
            f"({r.col_utilisation * 100:.0f} % used)",
            *(["  per tile         " + ", ".join(f"{t}: {a}x{b}" for t, (a, b) in enumerate(zip(rows, cols)))
               + " (rows x columns used)"] if len(rows) <= 16 else []),
            f"  fan-in splits    {r.fan_in_splits} neurons read rows on more than one tile",
            f"  routing          {r.routing_entries} table entries, {r.input_map_entries} input-map entries, "
            f"{r.delay_slots} delay slot(s)",
            "  latency          " + ", ".join(f"{k} {v}" for k, v in r.latency.items()) + " steps",
            f"  quantisation     RMSE {r.quantisation_rmse:.4g} ({r.quantisation_rmse_relative * 100:.1f} % of "
            "the RMS weight)",
        ]
        if r.inter_tile_events_per_step is not None:
            lines.append(f"  traffic          {r.inter_tile_events_per_step:.2f} inter-tile events per step "
                         "on the example input")
        if r.faults:
            f = r.faults
            lines.append(f"  stuck devices    {f.used_cells_with_stuck_device} used cells have a stuck device; "
                         f"weight RMSE {f.stuck_error_rmse_naive:.4g} placed naively, "
                         f"{f.stuck_error_rmse_placed:.4g} fault-aware")
        e = r.energy
        if e:
            lines.append(f"  energy           {e['pJ_per_inference']:,.1f} pJ per inference on the example input "
                         f"(crossbar reads {e['read_pJ']:,.1f}, neurons {e['neuron_pJ']:,.1f}; "
                         f"{e['row_events_per_inference']:,.0f} row events, {e['spikes_per_inference']:,.0f} spikes; "
                         "analog only, assumptions in report.json)")
        if r.accuracy:
            lines.append("  accuracy         " + ", ".join(f"{k} {v * 100:.2f} %" for k, v in r.accuracy.items())
                         + f" on {r.test_samples} test samples")
        lines.append(f"wrote {self.output}/image.json, image.npz, {REPORT_JSON}, {NETWORK_FILE}"
                     + (f", {EXAMPLE_INPUTS}, {TEST_SET_FILE}" if r.test_samples else ""))
        return _lines(*lines)


def compile_build(model: Model, options: BuildOptions, output: str | Path, *, force: bool = False) -> CompiledBuild:
    """Compile the model as ``options`` say, measure the image on the test set (accuracy, inter-tile
    traffic; with a calibration the devices' accuracy and the analog energy too), and write the
    build folder ``output`` with the network as compiled and a copy of the test set, so that
    ``small report`` needs nothing else. Nothing is written if any step fails. ``force``: write into
    a folder that is not a build (its files are kept)."""
    import shutil

    import numpy as np

    from compiler.mapper import compile_network, input_scales_for
    from compiler.netfile import save_network
    from sim.evaluate import measure
    from small.fileio import atomic_directory, check_output_folder, write_json

    check_output_folder(output, marker="image.json", owned=BUILD_FILES, force=force)  # before minutes of work
    capacity = None
    if options.chip is not None:
        capacity = load_chip(options.chip)
        options = dataclasses.replace(options, tile=(capacity.rows, capacity.cols),
                                      levels=options.levels or capacity.levels)
    cal = options.load_calibration()
    opts = options.compile_options(cal)
    net, test = model.network, model.test
    result = compile_network(net, opts, source_sha256=hashlib.sha256(model.path.read_bytes()).hexdigest(),
                             source_name=model.path.name,
                             input_scales=input_scales_for(net, test.x) if test is not None else {})
    image, report, measured = result.image, result.report, None
    if capacity is not None:
        capacity.check(image)  # what does not fit is named, nothing is written
    if test is not None:
        measured = measure(image, net, test, reference=True, analog=cal is not None,
                           energy=cal.energy if cal is not None else None)
        report = dataclasses.replace(report, inter_tile_events_per_step=measured.inter_tile_events_per_step,
                                     accuracy=measured.accuracy, energy=measured.energy,
                                     test_samples=measured.test_samples)
    with atomic_directory(output, marker="image.json", owned=BUILD_FILES, force=force) as tmp:
        image.save(tmp)
        write_json(tmp / REPORT_JSON, report.to_dict())
        save_network(net, tmp / NETWORK_FILE)
        if test is not None:  # what `small verify` runs by default
            np.save(tmp / EXAMPLE_INPUTS, test.x[:, :VERIFY_SAMPLES])
            shutil.copyfile(model.test_path, tmp / TEST_SET_FILE)
    return CompiledBuild(Path(output), net, image, report, measured)


def _read_json(path: Path, fix: str) -> dict:
    """The JSON object in ``path``, a file SMALL wrote; :class:`SmallError` (one line, ``fix``) if it is damaged."""
    from small.errors import SmallError

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise SmallError(f"{str(path)!r} is not readable JSON ({exc}): {fix}") from None
    if not isinstance(doc, dict):
        raise SmallError(f"{str(path)!r} holds no JSON object: {fix}")
    return doc


# -- programmable chips -----------------------------------------------------------------------------
CHIP_FILES = ("chip.json", "small_chip.v", "small_chip.il", "small_chip_uart.v", "summary.json")
SIM_CLOCK, SIM_BAUD = 12_000_000, 3_000_000  # the design `--port sim` runs: 4 clock cycles a UART bit


def load_chip(spec: str | Path):
    """The :class:`~compiler.capacity.Capacity` of a preset name, a ``chip.toml`` or a ``small chip`` folder."""
    import tomllib

    from compiler.capacity import PRESETS, Capacity, CapacityError

    path = Path(spec)
    if str(spec) in PRESETS:
        return PRESETS[str(spec)]
    if path.is_dir():
        if not (path / "chip.json").is_file():
            raise CapacityError(f"{str(path)!r} has no chip.json: make the chip with `small chip PRESET -o {path}`")
        fix = f"make the chip again with `small chip SPEC -o {path}`"
        capacity = _read_json(path / "chip.json", fix).get("capacity")
        if not isinstance(capacity, dict):
            raise CapacityError(f"{str(path / 'chip.json')!r} has no capacity table: {fix}")
        return Capacity.from_dict(capacity, f"{path}/chip.json")
    if path.suffix == ".toml" and path.is_file():
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise CapacityError(f"{str(path)!r} is not valid TOML: {exc}") from None
        return Capacity.from_dict(data.get("chip", data), str(path))
    raise CapacityError(f"no chip {str(spec)!r}: give a preset ({', '.join(PRESETS)}), a spec.toml or a folder "
                        "made by `small chip`")


@dataclass
class ChipBuild:
    out: Path
    capacity: object
    reused: bool
    info: dict

    def summary(self) -> str:
        c = self.capacity
        lines = [f"chip {c.name!r} (ID 0x{c.chip_id:08x}): {c.tiles} tile{'s' if c.tiles > 1 else ''} of {c.rows}x{c.cols}"
                 f"{' (serial neuron unit)' if c.neuron == 'serial' else ''}, {c.levels} levels, "
                 f"{c.synapses:,} synapses, {c.neurons} neuron columns, {c.delay_slots} delay slots, "
                 f"{c.n_inputs} inputs, {c.route_entries} routing and {c.input_entries} input-map entries, "
                 f"{c.tile_lanes} lanes",
                 f"  memories       {self.info['memory_bits'] / 8192:.1f} KiB",
                 ("reused " if self.reused else "wrote ") + f"{self.out}/chip.json, small_chip.v, small_chip.il, "
                 "small_chip_uart.v"]
        return _lines(*lines)


def _generator_hash() -> str:
    """SHA-256 (16 hex digits) of the sources that generate a chip: a chip folder made by another
    version of the generator is rebuilt, not reused."""
    import compiler
    import hdl

    files = sorted(Path(hdl.__file__).parent.glob("*.py")) + \
        [Path(compiler.__file__).parent / f for f in ("capacity.py", "events.py", "protocol.py", "image.py")]
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()[:16]


def make_chip(spec: str | Path, output: str | Path, *, force: bool = False) -> ChipBuild:
    """Generate the programmable chip of a capacity once (``small chip``): ``chip.json``, its Verilog and
    RTLIL, and the chip behind its UART bridge (``small_chip_uart.v``, what ``--port sim`` runs). A
    second call with the same capacity (and the same generator sources) reuses the folder."""
    from compiler.capacity import PROTOCOL_VERSION
    from hdl.board import BridgedChip
    from hdl.chip import Chip
    from hdl.export import write_hdl
    from small.fileio import atomic_directory, write_json

    capacity = load_chip(spec)
    out = Path(output)
    meta = {"format": "small-chip", "version": 1, "protocol": PROTOCOL_VERSION, "chip_id": f"0x{capacity.chip_id:08x}",
            "capacity": capacity.to_dict(), "generator": _generator_hash()}
    if (out / "chip.json").is_file() and all((out / f).is_file() for f in CHIP_FILES):
        fix = f"remove {out} and run again"
        old = _read_json(out / "chip.json", fix)
        if {k: old.get(k) for k in meta} == meta:
            return ChipBuild(out, capacity, True, _read_json(out / "summary.json", fix))
    with atomic_directory(out, marker="chip.json", owned=CHIP_FILES, force=force) as tmp:
        info = write_hdl(Chip(capacity), None, tmp)
        write_hdl(BridgedChip(capacity, clk_freq=SIM_CLOCK, baud=SIM_BAUD), None, tmp, name="small_chip_uart")
        write_json(tmp / "summary.json", info)
        write_json(tmp / "chip.json", meta)
    return ChipBuild(out, capacity, False, info)


@dataclass
class Loaded:
    port: str
    frames: int
    bytes: int
    seconds: float

    def summary(self) -> str:
        return (f"loaded {self.frames} words ({self.bytes:,} bytes) into the chip on {self.port} in "
                f"{self.seconds:.2f} s; the chip's ID matched and no write was refused")


@contextlib.contextmanager
def host_link(chip: str | Path, port: str, *, timeout: float = 5.0):
    """A :class:`verify.host.HostLink` to the chip on ``port``; ``port == "sim"``: the chip folder's
    ``small_chip_uart.v`` under Verilator behind a pseudo-terminal."""
    from verify.host import HostLink

    capacity = load_chip(chip)
    if port != "sim":
        with HostLink(port, capacity, timeout=timeout) as link:
            yield link
        return
    from verify.serial_sim import SimulatedBoard

    folder = Path(chip)
    if not (folder / "small_chip_uart.v").is_file():
        from small.errors import SmallError
        raise SmallError(f"--port sim runs a chip folder's small_chip_uart.v: make it with `small chip ... -o {folder}`")
    with SimulatedBoard(folder / "small_chip_uart.v", top="small_chip_uart", divisor=SIM_CLOCK // SIM_BAUD,
                        build_dir=folder / "sim") as board:
        with HostLink(board.port, capacity, timeout=max(timeout, 30.0)) as link:
            yield link


def load_build(build: str | Path, chip: str | Path, port: str) -> Loaded:
    """Write the build's network into the chip on ``port`` (``small load``)."""
    from compiler.image import load_image

    image = load_image(build)
    load_chip(chip).check(image)
    with host_link(chip, port) as link:
        stats = link.load(image)
    return Loaded(port, stats.frames, stats.bytes, stats.seconds)


def run_build(build: str | Path, chip: str | Path, port: str, inputs: str | Path | None, output: str | Path,
              samples: int = VERIFY_SAMPLES) -> str:
    """Load the build into the chip on ``port``, stream the inputs, collect the host events (``small
    run``) and write the outputs they stand for, ``[T, batch, n_out]`` in network time, as ``small
    simulate BUILD`` writes them (``.npy``)."""
    import numpy as np

    from compiler.image import load_image
    from sim import chip_simulator
    from small.fileio import write_npy
    from verify.host import run_samples

    build = Path(build)
    image = load_image(build)
    load_chip(chip).check(image)
    xs = _verify_inputs(image, build, inputs, samples)
    with host_link(chip, port) as link:
        t0 = time.perf_counter()
        link.load(image)
        runs = run_samples(link, image, xs)
        seconds = time.perf_counter() - t0
    sim = chip_simulator(image)
    index = {int(a): k for k, a in enumerate(sim.addr)}
    steps = len(runs[0].spikes) if runs else 0
    spikes = np.zeros((steps, len(runs), len(index)), dtype=bool)
    values = np.zeros((steps, len(runs), len(index)), dtype=sim.value_dtype)
    for b, run in enumerate(runs):
        for t in range(steps):
            for a in run.spikes[t]:
                spikes[t, b, index[a]] = True
            for a, v in run.values[t].items():
                values[t, b, index[a]] = v
    y = sim.host_outputs(spikes, values, xs.shape[0]).output_array()
    write_npy(output, y)
    return (f"ran {len(runs)} sample(s) x {steps} chip steps on the chip on {port} in {seconds:.1f} s "
            f"({int(spikes.sum())} host spikes); wrote {output}: outputs {list(y.shape)} as `small simulate` "
            "writes them")


# -- hdl -------------------------------------------------------------------------------------------
def _check_digital(image: HardwareImage) -> None:
    from small.errors import SmallError

    if image.target != "digital":
        raise SmallError(f"the image targets {image.target!r}: its tiles are analog, so there is no FPGA design to "
                         "build; compile with --target digital for an all-digital chip")


def _chip(image: HardwareImage, lanes: int, *, rom: bool = False, capacity=None):
    """The generated chip of a build's image, or a one-line reason why there is none.

    A digital image gets the programmable chip of the smallest capacity that holds it, its
    memories empty (the host loads the network over the host port), or with ``rom`` the same
    chip with the network as its memories' initial values (a bitstream that runs on power-up);
    ``capacity``: that chip instead (the network must fit it). A memristive image gets its tile
    controllers."""
    from compiler.capacity import Capacity
    from hdl.chip import Chip
    from small.errors import SmallError

    try:
        if image.target != "digital":
            if capacity is not None:
                raise SmallError(f"a {image.target} build has no programmable chip: --chip is for digital builds")
            return Chip(image, lanes=lanes)
        if capacity is None:
            capacity = Capacity.of(image, lanes=lanes)
        else:
            capacity.check(image)
        return Chip(capacity, image=image if rom else None)
    except ValueError as exc:
        raise SmallError(str(exc)) from None


@dataclass
class GeneratedHdl:
    """The chip's RTL written to ``BUILD/hdl/`` (:func:`generate_hdl`)."""

    build: Path
    image: HardwareImage
    info: dict
    """``hdl/summary.json``: files, ports, memories, timings; lanes and cycles for a digital chip."""

    @property
    def out(self) -> Path:
        return self.build / "hdl"

    def summary(self) -> str:
        image, info = self.image, self.info
        digital = image.target == "digital"
        by_kind: dict[str, list[dict]] = {}
        for mem in info["memories"]:
            by_kind.setdefault(mem["name"].rsplit(".", 1)[-1], []).append(mem)
        tiles = (f"{info['lanes']} lane{'s' if info['lanes'] > 1 else ''} a tile" if digital
                 else "analog arrays and neurons outside the RTL")
        host = [p for p in info["ports"] if p["name"] not in ("clk", "rst") and not p["name"].startswith("tile")]
        lines = [f"generated the chip of {str(self.build)!r}: {image.n_tiles} {image.target} tiles of "
                 f"{image.rows}x{image.cols}, {tiles}, router with {int(image.arrays['route_ptr'][-1])} entries, "
                 f"input map with {int(image.arrays['input_ptr'][-1])} ({info['seconds']:.1f} s)",
                 f"  memories       {len(info['memories'])}, {info['memory_bits'] / 8192:.1f} KiB: "
                 + ", ".join(f"{k} {len(v)} x {max(m['depth'] for m in v)}x{max(m['width'] for m in v)}"
                             for k, v in sorted(by_kind.items())) + " (largest depth x width)",
                 "  host ports     " + ", ".join(f"{p['name']} {p['direction']} {p['width']}" for p in host)]
        if digital:
            lines.append(f"  step latency   {info['cycles_per_step_idle']} cycles with no activity, "
                         f"+{info['cycles_per_active_row']} per active row of the busiest tile, +1 per routed event")
        else:
            lines.append(f"  analog ports   {len(info['ports']) - len(host) - 2} (tile<t>__row_drive, __pulse, __fired, "
                         "...: see hdl/memristive_tile.py)")
        lines.append(f"wrote {self.out}/small_chip.v, small_chip.il, summary.json")
        return _lines(*lines)


def generate_hdl(build: str | Path, lanes: int = 1, *, chip: str | Path | None = None) -> GeneratedHdl:
    """Write ``BUILD/hdl/`` (Verilog, RTLIL, ``summary.json``) for the build's image: the chip of
    the smallest capacity that holds it, or the chip ``chip`` (a preset, spec or chip folder)."""
    from compiler.image import load_image
    from hdl.chip import step_cycles
    from hdl.export import write_hdl
    from small.fileio import atomic_directory, write_json

    build = Path(build)
    image = load_image(build)
    chip = _chip(image, lanes, capacity=load_chip(chip) if chip is not None else None)
    with atomic_directory(build / "hdl", marker="small_chip.v", owned=HDL_FILES) as tmp:
        info = write_hdl(chip, None, tmp)
        info.update(image_sha256=image.meta.get("arrays_sha256"), target=image.target, tiles=image.n_tiles,
                    rows=image.rows, cols=image.cols, delay_slots=image.delay_slots)
        if image.target == "digital":
            info.update(lanes=chip.tiles[0].lanes, cycles_per_step_idle=step_cycles(image, 0, capacity=chip.capacity),
                        cycles_per_active_row=chip.tiles[0].words + 1, capacity=chip.capacity.to_dict(),
                        chip_id=f"0x{chip.capacity.chip_id:08x}")
        write_json(tmp / "summary.json", info)
    return GeneratedHdl(build, image, info)


# -- export ----------------------------------------------------------------------------------------
@dataclass
class SpiceDecks:
    """``BUILD/spice/tile<t>.cir``, one SPICE deck a tile."""

    out: Path
    tiles: int
    rows: int
    cols: int
    r_wire: float

    def summary(self) -> str:
        return (f"spice: {self.tiles} tile decks ({self.rows}x{self.cols} device pairs, {self.r_wire:g} ohm a wire "
                f"segment, analog LIF neurons) in {self.out}/; run one with `ngspice -b {self.out}/tile0.cir`")


@dataclass
class Exported:
    """What :func:`export` wrote into ``out``: a gate-level netlist, a bitstream, or SPICE decks."""

    out: Path
    netlist: dict | None = None
    """:func:`hdl.export.write_netlist`'s summary: ``cells`` per iCE40 primitive, ``seconds``."""
    bitstream: dict | None = None
    """:func:`hdl.export.build_bitstream`'s report (``small_chip_fpga.json``): resources, fmax."""
    spice: SpiceDecks | None = None

    def summary(self) -> str:
        lines = []
        if self.spice is not None:
            lines.append(self.spice.summary())
        if self.netlist is not None:
            cells = self.netlist["cells"]
            lines.append(f"netlist: {sum(cells.values())} cells (" + ", ".join(f"{k} {v}" for k, v in sorted(cells.items()))
                         + f") in {self.netlist['seconds']:.0f} s; wrote {self.out}/small_chip_netlist.v, "
                         "small_chip_netlist.json")
        if self.bitstream is not None:
            b = self.bitstream
            lines.append(f"bitstream for {b['board']} ({b['device']}) in {b['seconds']:.0f} s")
            for name, use in b["resources"].items():
                lines.append(f"  {name:<14} {use['used']} of {use['available']} "
                             f"({use['used'] / max(1, use['available']) * 100:.0f} %)")
            for clock, mhz in b["fmax_mhz"].items():
                flag = "meets" if mhz >= b["required_mhz"] else "MISSES"
                lines.append(f"  fmax {clock:<9} {mhz:.1f} MHz ({flag} {b['required_mhz']:.0f} MHz)")
            lines.append(f"wrote {self.out}/small_chip.bin, small_chip_fpga.json")
        return _lines(*lines)


def _spice_decks(build: str | Path, image: HardwareImage, r_wire: float | None) -> SpiceDecks:
    """``BUILD/spice/tile<t>.cir``: every tile's SPICE deck (``sim/tile_netlist.py``) of a memristive build."""
    from sim.tile_netlist import tile_deck
    from small.errors import SmallError
    from small.fileio import atomic_directory

    if image.target != "memristive":
        raise SmallError("--spice writes the analog tiles of a memristive image: compile with --target memristive")
    r = float((image.meta.get("device") or {}).get("r_wire_ohm", 1.0)) if r_wire is None else r_wire
    out = Path(build) / "spice"
    with atomic_directory(out, marker="tile0.cir", owned=("tile*.cir",)) as tmp:
        for t in range(image.n_tiles):
            (tmp / f"tile{t}.cir").write_text(tile_deck(image, t, r_wire=r, source=str(build)))
    return SpiceDecks(out, image.n_tiles, image.rows, image.cols, r)


def export(build: str | Path, *, board: str | None = None, netlist: bool = False, lanes: int = 1,
           spice: bool = False, r_wire: float | None = None) -> Exported:
    """Synthesise the build's chip (a bitstream for ``board`` and/or the gate-level netlist) or write
    its tiles' SPICE decks (``spice``, a memristive build; ``r_wire``: ohms a wire segment, default
    the calibration's, else 1) (``small export``)."""
    from compiler.image import load_image
    from small.errors import SmallError
    from small.fileio import output_lock

    image = load_image(build)
    if not (board or netlist or spice):
        raise SmallError("say what to export: --bitstream BOARD and/or --netlist (digital), or --spice (memristive)")
    if spice and (board or netlist):
        raise SmallError("--spice exports a memristive image's analog tiles, --bitstream and --netlist a digital "
                         "image's logic: ask for one or the other")
    if spice:
        decks = _spice_decks(build, image, r_wire)
        return Exported(decks.out, spice=decks)
    _check_digital(image)
    out = Path(build) / "hdl"
    result = Exported(out)
    with output_lock(build):  # the files go into hdl/ in place: no recompile swaps the build meanwhile
        if netlist:
            from hdl.export import write_netlist

            result.netlist = write_netlist(_chip(image, lanes), out)
        if board:
            from hdl.board import BoardTop
            from hdl.export import build_bitstream

            result.bitstream = build_bitstream(BoardTop(image, lanes=lanes), out, board=board)
    return result


# -- verify ----------------------------------------------------------------------------------------
@dataclass
class Verification:
    """A run of the generated Verilog against the image's simulator (:func:`verify_build`)."""

    build: Path
    result: VerifyResult

    @property
    def passed(self) -> bool:
        return self.result.passed

    def summary(self) -> str:
        r = self.result
        s, c = r.summary, r.summary["compared"]
        steps = s["chip_steps"]
        lines = [f"verify {self.build} on {r.simulator}: {s['samples']} input{'s' * (s['samples'] != 1)} x "
                 f"{s['network_steps']} steps ({steps} chip steps compared)",
                 "  build        " + (f"{r.build_seconds:.1f} s" if r.built else "reused (same Verilog)"),
                 *([f"  load         {s['load_words']:,} configuration words written into the chip over its "
                    f"host port in {s['load_seconds']:.1f} s"] if s.get("load_words") else []),
                 f"  simulate     {r.run_seconds:.1f} s: {s['cycles']:,} cycles, {s['mean_cycles_per_step']:,.0f} a "
                 f"step, {steps / max(r.run_seconds, 1e-9):,.0f} steps/s",
                 "  compared     " + (f"{c['spikes']:,} neuron spikes (where they enter the router), "
                                       if s["internal_spikes_probed"] else "")
                 + f"{c['host_spikes']:,} host spikes, {c['values']:,} LI values, {c['steps']:,} end-of-step events"]
        if r.waves:
            lines.append(f"  waveform     {r.waves}")
        lines.append(f"PASS: the RTL equals {s['reference']} on every event" if r.passed
                     else f"FAIL: first mismatch: {s['mismatch']}")
        return _lines(*lines)


def _verify_inputs(image: HardwareImage, build: Path, path: str | Path | None, samples: int) -> np.ndarray:
    """Inputs ``[T, batch, n_in]`` in host units: ``path`` or the build's example inputs."""
    import numpy as np

    from sim import chip_simulator
    from small.errors import SimulationError, SmallError

    if path is None:
        path = build / EXAMPLE_INPUTS
        if not path.is_file():
            raise SmallError(f"{str(build)!r} has no {EXAMPLE_INPUTS} (it was compiled without a test set): "
                             "give inputs with --inputs X.npy [T, batch, n_in]")
    x = read_inputs(path)
    xs, _, _ = chip_simulator(image).prepare_inputs(x[:, :samples] if x.ndim >= 2 else x)  # as `small simulate`
    if image.target == "memristive" and not np.all(xs == np.rint(xs)):
        raise SimulationError(f"{str(path)!r}: a memristive chip's host events carry whole-number payloads, and these "
                              "inputs (divided by the input scale) are not whole numbers")
    return xs


def verify_build(build: str | Path, *, simulator: str, inputs: str | Path | None = None,
                 samples: int = VERIFY_SAMPLES, waves: bool = False, uart: bool = False,
                 backpressure: int | None = None, analog: str = "ideal", drift_compensation: str | None = None,
                 t_read: float | None = None) -> Verification:
    """Run the generated chip of ``build`` (``small hdl``) under ``simulator`` (icarus, verilator)
    and compare it with the image's simulator event for event (``small verify``).

    inputs : a ``.npy`` of inputs (default: the build's example inputs), of which ``samples`` run.
    uart : drive the chip through its UART bridge (the board's design) instead of its host ports.
    backpressure : seed of random gaps between commands and stalls of the outputs.
    analog : memristive builds: the devices of the analog tiles attached to the chip.
    drift_compensation, t_read : with a device, read its array ``t_read`` seconds after programming
        (default 1) and compensate drift per ``"tile"`` or ``"column"`` as the chip does: a chip
        whose tile controllers hold the scale words of the array's reference reads is generated
        into ``BUILD/verify/compensated-hdl/`` and compared with sim/analog.py.
    """
    from compiler.image import load_image
    from small.errors import SmallError
    from small.fileio import output_lock
    from verify.runner import verify

    build = Path(build)
    # BUILD/verify/ is written in place, and the simulator reads the build for minutes: hold the build's lock
    # (a missing build is refused by load_image before anything is written)
    with output_lock(build) if build.is_dir() else contextlib.nullcontext():
        image = load_image(build)
        verilog = build / "hdl" / "small_chip.v"
        summary_file = build / "hdl" / "summary.json"
        if not verilog.is_file() or not summary_file.is_file():
            raise SmallError(f"no generated chip in {str(build / 'hdl')!r}: run `small hdl {build}` first")
        hdl_summary = _read_json(summary_file, f"run `small hdl {build}` again")
        capacity, lanes = hdl_summary.get("capacity"), hdl_summary.get("lanes", 1)
        if not (capacity is None or isinstance(capacity, dict)) or not (isinstance(lanes, int) and lanes >= 1):
            raise SmallError(f"{str(summary_file)!r} is damaged (its capacity or lanes): run `small hdl {build}` again")
        if hdl_summary.get("image_sha256") not in (None, image.meta.get("arrays_sha256")):
            warnings.warn(f"{verilog} was generated from another image than {build}/image.json: "
                          f"run `small hdl {build}` again unless that is what you want to check")
        xs = _verify_inputs(image, build, inputs, samples)
        work = build / "verify"
        # a programmable chip (`small hdl` of a digital build) starts empty: the testbench writes the
        # network into it over the host port (or the UART) before the first sample
        kw = {"capacity": hdl_summary.get("capacity")}
        if uart:
            _check_digital(image)  # the board's design
            from compiler.capacity import Capacity
            from hdl.board import BridgedChip
            from hdl.export import write_hdl

            clk, baud = 12_000_000, 3_000_000  # 4 clock cycles a bit: short frames in simulation
            out = work / "uart-hdl"
            spec = Capacity.from_dict(kw["capacity"]) if kw["capacity"] else image
            write_hdl(BridgedChip(spec, clk_freq=clk, baud=baud, lanes=int(hdl_summary.get("lanes", 1))), None, out,
                      name="small_chip_uart")
            verilog = out / "small_chip_uart.v"
            kw.update(top="small_chip_uart", kind="uart", divisor=clk // baud)
        if analog != "ideal" and image.target != "memristive":
            raise SmallError(f"--analog {analog} models the analog tiles of a memristive chip; "
                             f"{build} is {image.target}")
        name = "uart" if uart else f"chip-{analog}" if analog != "ideal" else "chip"
        if drift_compensation or t_read is not None:
            if analog == "ideal":
                raise SmallError("--drift-compensation and --t-read model device drift: add --analog pcm or tiox")
            import numpy as np

            name += f"-{drift_compensation}" if drift_compensation else "-drifted"
            analog += f"@{np.format_float_positional(float(t_read), trim='-')}" if t_read is not None else ""
            analog += f"+{drift_compensation}" if drift_compensation else ""
        if drift_compensation:  # the controllers hold the host's scale words (from the array's reference reads)
            from hdl.export import write_hdl
            from verify.analog import column_scales, preload_column_scales

            chip = _chip(image, 1)
            preload_column_scales(chip, column_scales(image, analog))
            write_hdl(chip, None, work / "compensated-hdl")
            verilog = work / "compensated-hdl" / "small_chip.v"
        result = verify(build, verilog, xs, simulator=simulator, work_dir=work, waves=waves, backpressure=backpressure,
                        name=name, analog=analog, **kw)
        return Verification(build, result)
