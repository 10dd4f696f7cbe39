"""``small sweep``: one network compiled and simulated over a grid of memristive chip designs.

The grid is the Cartesian product of tile geometries, conductance levels per device and
stuck-device rates (``docs/sweep.md``). Each point is compiled for the memristive target --
at a non-zero stuck rate onto a chip of randomly stuck devices, placed fault-aware -- and run
on the ideal memristive simulator (``sim/memristive.py``: quantisation and stuck devices, no
noise) over the labelled test set. Its figures: accuracy, tiles, utilisation, quantisation
error, stuck cells, inter-tile traffic and the analog energy per inference
(``analog_models/energy.py``). They go into ``SWEEP_DIR/sweep.csv``, four plots and the
Pareto front.

Points are evaluated by :class:`l2l.runner.Runner` (in this process, on a local Dask cluster
or on a running scheduler) in chunks of about twice the number of workers; each finished
point is written at once to ``SWEEP_DIR/points/<point>.json``, so a killed sweep loses at
most one chunk, and a rerun (or a grid extended with more values) computes only the missing
points. A point's figures depend on its own parameters and the sweep's settings only: the
same whatever else the grid holds, however many workers, however often it was resumed.

The command (``small sweep``: options, printing) is in :mod:`small.cli`; this module is the
library. Its top level imports the standard library only; numpy, the compiler, Dask and
matplotlib are imported where they are used.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import itertools
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from small.fileio import remove_stale_temporaries, write_json

if TYPE_CHECKING:
    from compiler.ir import Network
    from sim.evaluate import TestSet

__all__ = ["Grid", "Point", "PointResult", "Source", "SweepOptions", "SweepResult", "SweepTask", "chip_seed",
           "check_sweep_dir", "pareto_front", "run_sweep", "sweep_identity"]

FORMAT = "small-sweep"
VERSION = 1
SWEEP_FILE = "sweep.json"  # model and test set hashes, settings, reference accuracy, energy figures
CSV_FILE = "sweep.csv"
POINTS_DIR = "points"  # one <point>.json per finished point
PLOTS = ("accuracy.png", "tiles.png", "energy.png", "pareto.png")
CSV_COLUMNS = (
    "rows", "cols", "levels", "stuck", "status", "accuracy", "reference_accuracy", "tiles", "tiles_lower_bound",
    "row_utilisation", "col_utilisation", "stuck_cells", "quantisation_rmse", "quantisation_rmse_relative",
    "inter_tile_events_per_step", "energy_pj_per_inference", "pareto",
)
DPI = 110

Progress = Callable[[str], None]


# -- the grid ------------------------------------------------------------------------------
def _rate(stuck: float) -> str:
    """A stuck rate as written in file names and the CSV: shortest round-trip text, ``0`` for zero."""
    text = repr(float(stuck))
    return text[:-2] if text.endswith(".0") else text


@dataclass(frozen=True, order=True)
class Point:
    """One design of the grid: tiles of ``rows`` x ``cols`` device pairs, ``levels`` conductance
    levels per device, each device of the chip stuck with probability ``stuck``."""

    rows: int
    cols: int
    levels: int
    stuck: float

    @property
    def tile(self) -> str:
        return f"{self.rows}x{self.cols}"

    @property
    def name(self) -> str:
        """``<rows>x<cols>-L<levels>-s<stuck>``: the point file's name, and the point in messages."""
        return f"{self.tile}-L{self.levels}-s{_rate(self.stuck)}"

    def vector(self) -> list[float]:
        """The candidate vector of :meth:`l2l.runner.Runner.map`: ``[rows, cols, levels, stuck]``."""
        return [float(self.rows), float(self.cols), float(self.levels), float(self.stuck)]

    @classmethod
    def from_vector(cls, x: Sequence[float]) -> Point:
        return cls(int(x[0]), int(x[1]), int(x[2]), float(x[3]))


@dataclass(frozen=True)
class Grid:
    """Tile geometries x levels x stuck rates; values sorted and deduplicated.

    Parameters
    ----------
    tiles : sequence of (rows, cols)
        Crossbar geometries, each at least 1x1.
    levels : sequence of int
        Conductance levels per device, 2 to 256.
    stuck : sequence of float
        Fractions of devices stuck (half high, half low), in ``[0, 1)``.
    """

    tiles: tuple[tuple[int, int], ...] = ((64, 64),)
    levels: tuple[int, ...] = (16,)
    stuck: tuple[float, ...] = (0.0,)

    def __post_init__(self) -> None:
        tiles = tuple(sorted({(int(r), int(c)) for r, c in self.tiles}, key=lambda t: (t[0] * t[1], t)))
        levels = tuple(sorted({int(v) for v in self.levels}))
        stuck = tuple(sorted({float(v) for v in self.stuck}))
        if not tiles or not levels or not stuck:
            raise ValueError(f"a grid needs at least one tile, level count and stuck rate, not {self!r}")
        for r, c in tiles:
            if r < 1 or c < 1:
                raise ValueError(f"tile {r}x{c} must have at least 1 row and 1 column")
        from small.options import MAX_LEVELS

        for v in levels:
            if not 2 <= v <= MAX_LEVELS:
                raise ValueError(f"levels must lie in 2..{MAX_LEVELS}, not {v!r}")
        for v in stuck:
            if not 0 <= v < 1:
                raise ValueError(f"stuck rates must lie in [0, 1), not {v!r}")
        object.__setattr__(self, "tiles", tiles)
        object.__setattr__(self, "levels", levels)
        object.__setattr__(self, "stuck", stuck)

    def points(self) -> list[Point]:
        """Every point, tile geometry slowest and stuck rate fastest (the CSV's order)."""
        return [Point(r, c, lv, s) for (r, c), lv, s in itertools.product(self.tiles, self.levels, self.stuck)]

    def __len__(self) -> int:
        return len(self.tiles) * len(self.levels) * len(self.stuck)

    def describe(self) -> str:
        return (f"tiles {', '.join(f'{r}x{c}' for r, c in self.tiles)}; levels {', '.join(map(str, self.levels))}; "
                f"stuck {', '.join(_rate(s) for s in self.stuck)}")

    def to_dict(self) -> dict:
        return {"tiles": [f"{r}x{c}" for r, c in self.tiles], "levels": list(self.levels), "stuck": list(self.stuck)}


def chip_seed(rows: int, cols: int, seed: int) -> int:
    """Seed of the random fault map of every point with ``rows`` x ``cols`` tiles.

    A stable hash (SHA-256, not Python's salted ``hash``) of the geometry and the sweep's
    ``seed``. It leaves out levels and stuck rate on purpose: points of one geometry sit on the
    same simulated chip, so a row of the grid compares levels on identical defects, and since
    :func:`compiler.faults.random_faults` draws one uniform number per device, the devices
    stuck at rate 0.05 are among those stuck at 0.1.
    """
    digest = hashlib.sha256(f"small sweep chip {rows}x{cols} seed {seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


# -- what a sweep measures, and with what --------------------------------------------------
@dataclass(frozen=True)
class SweepOptions:
    """The settings that change a sweep's figures (``sweep.json`` records them; a resume must match).

    ``seed`` seeds the partitioner and the fault maps (:func:`chip_seed`); ``scale``,
    ``max_split`` and ``max_tiles`` are :class:`compiler.mapper.CompileOptions`'; ``samples``
    limits the test set to its first samples (None: all).
    """

    seed: int = 0
    scale: str = "tile"
    samples: int | None = None
    max_split: int = 16
    max_tiles: int | None = None


@dataclass(frozen=True)
class Source:
    """Where the network and test set came from, by name and SHA-256 (compared on resume)."""

    model_name: str
    model_sha256: str
    test_set_name: str
    test_set_sha256: str
    framework: str | None = None
    """The NIR convention the model was read with (None: not a NIR file, or not known)."""

    @classmethod
    def files(cls, model: str | os.PathLike, test_set: str | os.PathLike, framework: str | None = None) -> Source:
        """The hashes of the model and test set files."""
        model, test_set = Path(model), Path(test_set)
        return cls(model.name, _sha256(model.read_bytes()), test_set.name, _sha256(test_set.read_bytes()), framework)

    @classmethod
    def objects(cls, net: Network, test: TestSet) -> Source:
        """Content hashes of a network built in Python (its ``.small`` file) and of a test set's arrays."""
        from compiler.netfile import save_network

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "network.small"
            save_network(net, path)
            model = _sha256(path.read_bytes())
        h = hashlib.sha256()
        for a in (test.x, test.labels):
            h.update(f"{a.dtype.str}{list(a.shape)}".encode())
            h.update(a.tobytes())
        h.update(json.dumps([test.readout, test.window]).encode())
        return cls(f"{net.name} (in memory)", model, "test set (in memory)", h.hexdigest())


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class SweepTask:
    """Evaluates grid points for :meth:`l2l.runner.Runner.map`: everything a worker needs, no file paths.

    ``evaluate(x, seed)`` compiles the point ``x = [rows, cols, levels, stuck]`` (at a non-zero
    stuck rate: once to learn the number of tiles ``n``, then onto a chip of ``n`` tiles whose
    devices :func:`compiler.faults.random_faults` sticks with the seed ``seed``, placed
    fault-aware) and measures it on ``test``. It returns ``(1 - accuracy, info)`` with
    ``info["status"] == "ok"`` and the figures; a design the compiler refuses (it does not fit
    the tile, needs more than ``max_tiles``) is a result too, ``(1.0, {"status": "failed: <why>"})``.
    """

    net: Network
    test: TestSet
    """The samples the sweep measures (``SweepOptions.samples`` of them)."""
    input_scales: dict[str, float]
    energy: dict
    """:func:`analog_models.energy.measure`'s figures, measured once by the driver."""
    options: SweepOptions = field(default_factory=SweepOptions)
    source_name: str = ""
    source_sha256: str = ""

    def evaluate(self, x: Sequence[float], seed: int) -> tuple[float, dict]:
        from small.errors import SmallError

        try:
            figures = self.measure(Point.from_vector(x), seed)
        except SmallError as exc:
            return 1.0, {"status": f"failed: {exc}"}
        return 1.0 - figures["accuracy"], {"status": "ok", **figures}

    def measure(self, point: Point, seed: int) -> dict:
        """The figures of one point (raises :class:`small.errors.SmallError` if it does not compile)."""
        from compiler.faults import random_faults
        from compiler.mapper import CompileOptions, compile_network
        from sim.evaluate import accuracy_key, measure

        o = self.options
        opts = CompileOptions(target="memristive", rows=point.rows, cols=point.cols, levels=point.levels, seed=o.seed,
                              max_split=o.max_split, max_tiles=o.max_tiles, scale=o.scale)
        opts.validate()
        how = {"source_sha256": self.source_sha256, "source_name": self.source_name,
               "input_scales": dict(self.input_scales)}
        result = compile_network(self.net, opts, **how)
        if point.stuck > 0:
            # A chip with exactly the tiles the design needs: placement can move logical tiles
            # between them and permute rows and columns, but not avoid a bad tile altogether.
            faults = random_faults(result.report.tiles_used, point.rows, point.cols, point.stuck, seed=seed)
            result = compile_network(self.net, dataclasses.replace(opts, faults=faults), **how)
        image, report = result.image, result.report
        m = measure(image, self.net, self.test, energy=self.energy, counted=None)  # traffic and energy: all samples
        energy = m.energy
        return {
            "accuracy": float(m.accuracy[accuracy_key(image)]),
            "tiles": int(report.tiles_used),
            "tiles_lower_bound": int(report.tiles_lower_bound),
            "row_utilisation": float(report.row_utilisation),
            "col_utilisation": float(report.col_utilisation),
            "stuck_cells": int(report.faults.used_cells_with_stuck_device if report.faults else 0),
            "stuck_error_rmse": float(report.faults.stuck_error_rmse_placed if report.faults else 0.0),
            "quantisation_rmse": float(report.quantisation_rmse),
            "quantisation_rmse_relative": float(report.quantisation_rmse_relative),
            "inter_tile_events_per_step": m.inter_tile_events_per_step,
            "energy_pj_per_inference": float(energy["pJ_per_inference"]),
            "read_pj_per_inference": float(energy["read_pJ"]),
            "neuron_pj_per_inference": float(energy["neuron_pJ"]),
            "row_events_per_inference": float(energy["row_events_per_inference"]),
            "spikes_per_inference": float(energy["spikes_per_inference"]),
            "fan_in_splits": int(report.fan_in_splits),
            "partitioner": str(report.partitioner),
            "chip_seed": int(seed),
        }


# -- results -------------------------------------------------------------------------------
@dataclass(frozen=True)
class PointResult:
    """One point's outcome: ``status`` ``"ok"``, ``"failed: <why>"`` (the design does not compile)
    or ``"error: <exception>"`` (an evaluation that raised: a bug, or a worker lost for good;
    not saved, so a rerun tries it again)."""

    point: Point
    status: str
    figures: dict = field(default_factory=dict)
    pareto: bool = False
    seconds: float = 0.0
    traceback: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class SweepResult:
    """What :func:`run_sweep` did: the grid's results in order, and where it wrote them."""

    points: list[PointResult]
    reference_accuracy: float
    samples: int
    computed: int
    """Points evaluated by this call (the others were read from their point files)."""
    reused: int
    seconds: float
    """Wall time of this call's evaluations (what ``points_per_second`` divides by)."""
    files: list[Path]

    @property
    def points_per_second(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else 0.0

    @property
    def errors(self) -> list[PointResult]:
        return [r for r in self.points if r.status.startswith("error")]

    def summary(self) -> str:
        """One line per point (``*`` on the Pareto front), then the reference accuracy."""
        lines = [f"  {'tile':<10} {'levels':>6} {'stuck':>7} {'accuracy':>9} {'tiles':>6} {'energy/inference':>17}  status"]
        for r in self.points:
            p, f = r.point, r.figures
            if r.ok:
                figures = (f"{f['accuracy'] * 100:8.2f}% {f['tiles']:6d} {f['energy_pj_per_inference']:>14,.1f} pJ  ok")
            else:
                figures = f"{'-':>9} {'-':>6} {'-':>17}  {r.status}"
            lines.append(f"{'*' if r.pareto else ' '} {p.tile:<10} {p.levels:6d} {p.stuck * 100:6.3g}% {figures}")
        lines.append(f"* on the Pareto front (no other point is as accurate with as few tiles and as little energy); "
                     f"reference (float network) {self.reference_accuracy * 100:.2f} % on {self.samples} test samples")
        return "\n".join(lines)


def pareto_front(results: Sequence[PointResult]) -> list[bool]:
    """Which results lie on the Pareto front of (accuracy higher, tiles fewer, energy lower).

    A successful point is on the front unless another successful point is at least as good in
    all three figures and better in one; failed points never are.
    """
    keys = [(r.figures["accuracy"], -r.figures["tiles"], -r.figures["energy_pj_per_inference"]) if r.ok else None
            for r in results]
    front = []
    for k in keys:
        front.append(k is not None and not any(
            o is not None and all(a >= b for a, b in zip(o, k)) and o != k for o in keys))
    return front


# -- the sweep folder ----------------------------------------------------------------------
def sweep_identity(net: Network, test: TestSet, source: Source, options: SweepOptions) -> dict:
    """What ``sweep.json`` records and a resume must match: toolchain, model, test set, settings."""
    from small import __version__

    samples = int(test.labels.size) if options.samples is None else min(options.samples, int(test.labels.size))
    return {
        "toolchain": f"small {__version__}",
        "model": {"name": source.model_name, "sha256": source.model_sha256},
        "test_set": {"name": source.test_set_name, "sha256": source.test_set_sha256},
        "settings": {**dataclasses.asdict(options), "samples": samples, "dt": float(net.dt),
                     "framework": source.framework},
    }


_OPTION = {"max_split": "--max-split", "max_tiles": "--max-tiles"}


def _difference(old: dict, new: dict) -> str | None:
    """The first way in which the sweep ``old`` is not the one ``new`` describes, in words; None if none."""
    for what in ("model", "test_set"):
        if old.get(what, {}).get("sha256") != new[what]["sha256"]:
            o = old.get(what, {})
            return (f"holds a sweep of another {what.replace('_', ' ')} ({o.get('name')!r}, sha256 "
                    f"{str(o.get('sha256'))[:12]}..., not {new[what]['name']!r}, {new[what]['sha256'][:12]}...)")
    settings = old.get("settings", {})
    for key, value in new["settings"].items():
        if settings.get(key, None) != value:
            option = _OPTION.get(key, f"--{key}")
            return f"holds a sweep made with {option} {settings.get(key)}, not {value} (rerun with {option} " \
                   f"{settings.get(key)} to continue it)"
    if old.get("toolchain") != new["toolchain"]:
        return f"holds a sweep made by {old.get('toolchain')}, not {new['toolchain']}"
    return None


def check_sweep_dir(out_dir: str | os.PathLike, identity: dict | None = None, force: bool = False) -> dict | None:
    """Check that a sweep may run in ``out_dir``; the sweep it holds (``sweep.json``) if it continues it.

    Refuses a file, a non-empty folder without ``sweep.json`` (never a user's folder, even with
    ``force``) and, given ``identity``, a sweep of another model, test set or settings unless
    ``force`` (which starts over: nothing is removed here). Raises
    :class:`small.errors.FileFormatError` with the fix.
    """
    from small.errors import FileFormatError

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileFormatError(f"sweep folder {str(out)!r} is a file: choose another -o")
    if not out.is_dir() or not any(out.iterdir()):
        return None
    if not (out / SWEEP_FILE).is_file():
        raise FileFormatError(f"{str(out)!r} is not empty and holds no sweep (no {SWEEP_FILE}): choose another -o")
    try:
        old = json.loads((out / SWEEP_FILE).read_text())
        if old.get("format") != FORMAT:
            raise ValueError(f"format {old.get('format')!r}")
    except (ValueError, AttributeError) as exc:
        if force:
            return None
        raise FileFormatError(f"{str(out / SWEEP_FILE)!r} is not a readable sweep record ({exc}): "
                              "pass --force to start over in that folder") from None
    if identity is None:
        return old
    why = _difference(old, identity)
    if why is None:
        return None if force else old
    if force:
        return None
    raise FileFormatError(f"{str(out)!r} {why}: choose another -o, or pass --force to start over in it")


def _start_over(out: Path) -> None:
    """Remove what a sweep wrote in ``out`` (and nothing else)."""
    shutil.rmtree(out / POINTS_DIR, ignore_errors=True)
    for name in (SWEEP_FILE, CSV_FILE, *PLOTS):
        with contextlib.suppress(FileNotFoundError):
            (out / name).unlink()


def _read_point(path: Path, point: Point) -> PointResult | None:
    """A finished point from its file; None (computed again) if it is missing or not this point's."""
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
        if doc.get("point") != dataclasses.asdict(point) or not isinstance(doc.get("status"), str):
            return None
        return PointResult(point, doc["status"], doc.get("figures", {}), seconds=doc.get("timing", {}).get("seconds", 0))
    except (ValueError, AttributeError, OSError):
        return None


# -- the driver ----------------------------------------------------------------------------
def _print(line: str) -> None:
    print(line, flush=True)


def _chunk_size(runner) -> int:
    """About twice the workers, so that each finishes ~2 points between checkpoints."""
    if runner is None or runner.backend == "serial":
        return 1
    if runner.backend == "local":
        return 2 * max(1, int(runner.workers or os.cpu_count() or 1))
    n = int(runner.client.scheduler_info(n_workers=0).get("n_workers", 0)) if runner.client is not None else 0
    return 2 * max(1, n)


def run_sweep(net: Network, test: TestSet, grid: Grid, out_dir: str | os.PathLike, runner=None, *,
              options: SweepOptions = SweepOptions(), source: Source | None = None, energy: dict | None = None,
              force: bool = False, plots: bool = True, progress: Progress = _print) -> SweepResult:
    """Compile and measure ``net`` at every point of ``grid``; write ``out_dir`` (``docs/sweep.md``).

    Parameters
    ----------
    net, test : Network, TestSet
        The network and its labelled test set (``options.samples`` of its first samples are used).
    grid : Grid
    out_dir : path
        The sweep folder: created, continued (same model, test set and ``options``: finished
        points are read back, not computed) or, with ``force``, started over.
    runner : l2l.runner.Runner, optional
        A started runner (``with Runner(...) as runner``); None evaluates in this process.
    options : SweepOptions
    source : Source, optional
        Provenance recorded in ``sweep.json`` and the images; default: content hashes of ``net`` and ``test``.
    energy : dict, optional
        :func:`analog_models.energy.measure`'s figures for a new sweep (default: measured now,
        about a second of ngspice). A continued sweep keeps the figures it started with.
    plots : bool
        Draw the four PNGs (False: only the CSV; timing runs skip matplotlib).
    progress : callable
        Gets one line per finished chunk.

    Returns
    -------
    SweepResult
        ``seconds`` and ``points_per_second`` count this call's evaluations only.
    """
    import numpy as np

    from compiler.mapper import input_scales_for
    from sim.evaluate import TestSet, accuracy

    out = Path(out_dir)
    source = source or Source.objects(net, test)
    identity = sweep_identity(net, test, source, options)
    samples = identity["settings"]["samples"]
    previous = check_sweep_dir(out, identity, force)
    if previous is None and out.is_dir():
        _start_over(out)  # an empty folder, or --force
    measured_test = TestSet(test.x[:, :samples], test.labels[:samples], test.readout, test.window, test.framework,
                            test.dt)
    if previous is not None:
        measured = previous["measured"]
    else:
        if energy is None:
            from analog_models.energy import measure

            energy = measure()
        measured = {"reference_accuracy": accuracy(net, measured_test), "energy": energy}
    (out / POINTS_DIR).mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out, (SWEEP_FILE, CSV_FILE, *PLOTS))
    remove_stale_temporaries(out / POINTS_DIR)
    write_json(out / SWEEP_FILE, {"format": FORMAT, "version": VERSION, **identity, "measured": measured,
                                   "grid": grid.to_dict()})

    points = grid.points()
    results: dict[Point, PointResult] = {}
    for p in points:
        done = _read_point(out / POINTS_DIR / f"{p.name}.json", p)
        if done is not None:
            results[p] = done
    reused = len(results)
    if reused:
        progress(f"{reused} of {len(points)} points already done")
    pending = [p for p in points if p not in results]
    task = SweepTask(net, measured_test, input_scales_for(net, test.x), measured["energy"], options,
                     source.model_name, source.model_sha256)
    if pending and runner is None:
        from l2l.runner import Runner

        runner = Runner(workers=0)
    t0 = time.perf_counter()
    k = 0
    while k < len(pending):
        chunk = pending[k : k + _chunk_size(runner)]
        k += len(chunk)
        evals = runner.map(task, np.array([p.vector() for p in chunk]), [chip_seed(p.rows, p.cols, options.seed)
                                                                          for p in chunk])
        for p, ev in zip(chunk, evals):
            if ev.ok:
                info = dict(ev.info)
                status = info.pop("status")
                results[p] = PointResult(p, status, info, seconds=ev.seconds)
                write_json(out / POINTS_DIR / f"{p.name}.json", {
                    "format": f"{FORMAT}-point", "version": VERSION, "point": dataclasses.asdict(p), "status": status,
                    "figures": info, "timing": {"seconds": ev.seconds, "worker": ev.worker}})
            else:
                last = (ev.traceback or "unknown error").strip().splitlines()[-1]
                results[p] = PointResult(p, f"error: {last}", seconds=ev.seconds, traceback=ev.traceback)
        elapsed = time.perf_counter() - t0
        if len(chunk) == 1:
            r = results[chunk[0]]
            what = f"{r.point.name}: " + (f"accuracy {r.figures['accuracy'] * 100:.2f} %" if r.ok
                                           else r.status.split(":")[0])
        else:
            failed = sum(not results[p].ok for p in chunk)
            what = f"{chunk[0].name} .. {chunk[-1].name}" + (f" ({failed} not ok)" if failed else "")
        progress(f"point {reused + k}/{len(points)}  {what}  ({k / elapsed:.1f} points/s)")
    seconds = time.perf_counter() - t0 if pending else 0.0

    ordered = [results[p] for p in points]
    front = pareto_front(ordered)
    ordered = [dataclasses.replace(r, pareto=f) for r, f in zip(ordered, front)]
    result = SweepResult(ordered, float(measured["reference_accuracy"]), samples, len(pending), reused, seconds, [])
    result.files.append(_write_csv(out / CSV_FILE, result))
    if plots:
        result.files += _plot(out, result, net.name)
    return result


# -- outputs -------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    """A CSV cell: integers as they are, floats with 6 significant digits (readable, and equal
    across runs even if a sum were reassociated), booleans as true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _write_csv(path: Path, result: SweepResult) -> Path:
    from small.fileio import atomic_output

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in result.points:
        p = r.point
        row = {**r.figures, "rows": p.rows, "cols": p.cols, "levels": p.levels, "stuck": _rate(p.stuck),
               "status": r.status, "reference_accuracy": result.reference_accuracy, "pareto": r.pareto}
        w.writerow([_cell(row.get(column, "")) for column in CSV_COLUMNS])
    with atomic_output(path) as tmp:
        tmp.write_text(buf.getvalue())
    return path


def _by_tile(result: SweepResult) -> dict[str, list[PointResult]]:
    out: dict[str, list[PointResult]] = {}
    for r in result.points:
        out.setdefault(r.point.tile, []).append(r)
    return out


def _panels(n: int, title: str, width: float = 4.2, height: float = 3.4):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ncols = min(n, 4)
    nrows = -(-n // ncols)
    fig = Figure(figsize=(width * ncols + 0.6, height * nrows + 0.7), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True).reshape(-1)
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig, axes


def _save(fig, path: Path) -> Path:
    from small.fileio import atomic_output

    with atomic_output(path) as tmp:
        fig.savefig(os.fspath(tmp), dpi=DPI)
    return path


def _stuck_colours(result: SweepResult) -> dict[float, Any]:
    from matplotlib import colormaps

    rates = sorted({r.point.stuck for r in result.points})
    cmap = colormaps["plasma"]
    return {s: cmap(0.8 * i / max(1, len(rates) - 1)) for i, s in enumerate(rates)}


def _per_levels_plot(result: SweepResult, path: Path, key: str, scale: float, ylabel: str, title: str,
                     reference: float | None = None) -> Path:
    """One panel per tile geometry: ``key`` against levels, one line per stuck rate."""
    tiles = _by_tile(result)
    fig, axes = _panels(len(tiles), title)
    colours = _stuck_colours(result)
    levels = sorted({r.point.levels for r in result.points})
    for ax, (tile, rs) in zip(axes, tiles.items()):
        for s, colour in colours.items():
            ok = [r for r in rs if r.point.stuck == s and r.ok]
            ax.plot([r.point.levels for r in ok], [r.figures[key] * scale for r in ok], "o-", color=colour, ms=5,
                    label=f"{s * 100:g} % stuck")
        failed = [r for r in rs if not r.ok]
        if failed:
            ax.plot([r.point.levels for r in failed], [0] * len(failed), "x", color="red", ms=8, mew=2,
                    transform=ax.get_xaxis_transform(), clip_on=False, label="did not compile")
        if reference is not None:
            ax.axhline(reference * scale, color="0.3", ls="--", lw=1, label=f"float reference {reference * scale:.1f}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels, [str(v) for v in levels])
        ax.minorticks_off()
        tiles_used = sorted({r.figures["tiles"] for r in rs if r.ok})
        ax.set_title(f"{tile} tiles" + (f" ({'/'.join(map(str, tiles_used))} used)" if tiles_used else ""),
                     fontsize=10)
        ax.set_xlabel("conductance levels per device")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(ylabel)
    axes[0].legend(fontsize=8)
    return _save(fig, path)


def _tiles_plot(result: SweepResult, path: Path, name: str) -> Path:
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tiles = _by_tile(result)
    labels = list(tiles)
    x = np.arange(len(labels))
    # A tile geometry's partition does not depend on levels or stuck rate: take its first success.
    first = [next((r for r in rs if r.ok), None) for rs in tiles.values()]
    fig = Figure(figsize=(max(8.0, 1.6 * len(labels) + 4), 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax, au = fig.subplots(1, 2)
    used = [r.figures["tiles"] if r else 0 for r in first]
    bound = [r.figures["tiles_lower_bound"] if r else 0 for r in first]
    bars = ax.bar(x, used, color="C0", width=0.6, label="tiles used")
    ax.plot(x, bound, "_", color="k", ms=30, mew=2, label="lower bound")
    for b, r, (tile, rs) in zip(bars, first, tiles.items()):
        text = "did not\ncompile" if r is None else f"{r.figures['tiles']}\n({r.figures['tiles'] * r.point.rows * r.point.cols * 2 / 1000:,.1f}k devices)"
        ax.annotate(text, (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom", fontsize=8,
                    xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(x, labels)
    ax.set_xlabel("tile (rows x columns of device pairs)")
    ax.set_ylabel("crossbar tiles")
    ax.set_ylim(0, max(used + bound + [1]) * 1.35)
    ax.set_title("tiles used per tile geometry", fontsize=10)
    ax.legend(fontsize=8, loc="upper right", markerscale=0.4)
    w = 0.38
    au.bar(x - w / 2, [r.figures["row_utilisation"] * 100 if r else 0 for r in first], w, label="rows", color="C1")
    au.bar(x + w / 2, [r.figures["col_utilisation"] * 100 if r else 0 for r in first], w, label="columns", color="C2")
    au.set_xticks(x, labels)
    au.set_xlabel("tile (rows x columns of device pairs)")
    au.set_ylabel("used (% of the tiles' rows / columns)")
    au.set_ylim(0, 110)
    au.set_title("crossbar utilisation", fontsize=10)
    au.legend(fontsize=8)
    fig.suptitle(f"{name}: tiles (independent of levels and stuck rate)")
    return _save(fig, path)


def _pareto_plot(result: SweepResult, path: Path, name: str) -> Path:
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ok = [r for r in result.points if r.ok]
    fig = Figure(figsize=(9, 6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    if ok:
        e = np.array([r.figures["energy_pj_per_inference"] for r in ok])
        a = np.array([r.figures["accuracy"] * 100 for r in ok])
        t = np.array([r.figures["tiles"] for r in ok])
        sc = ax.scatter(e, a, c=t, s=30 + 170 * t / t.max(), cmap="viridis", alpha=0.75, edgecolors="none", zorder=2)
        fig.colorbar(sc, ax=ax, label="tiles used (also marker size)")
        front = sorted((r for r in ok if r.pareto), key=lambda r: r.figures["energy_pj_per_inference"])
        fe = [r.figures["energy_pj_per_inference"] for r in front]
        fa = [r.figures["accuracy"] * 100 for r in front]
        ax.plot(fe, fa, "--", color="k", lw=1, zorder=3)
        ax.scatter(fe, fa, s=90, facecolors="none", edgecolors="k", lw=1.5, zorder=4, label="Pareto front")
        for i, r in enumerate(front):
            ax.annotate(f"{r.point.tile} L{r.point.levels} {r.point.stuck * 100:g}% ({r.figures['tiles']} t)",
                        (fe[i], fa[i]), xytext=(6, -12 if i % 2 else 6), textcoords="offset points", fontsize=7)
        if e.max() > 20 * e.min() > 0:
            ax.set_xscale("log")
    ax.axhline(result.reference_accuracy * 100, color="0.3", ls=":", lw=1,
               label=f"float reference {result.reference_accuracy * 100:.1f} %")
    ax.set_xlabel("analog energy per inference (pJ)")
    ax.set_ylabel(f"accuracy (% of {result.samples} test samples)")
    ax.set_title(f"{name}: accuracy vs energy; Pareto front in accuracy, tiles and energy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def _plot(out: Path, result: SweepResult, name: str) -> list[Path]:
    n = result.samples
    return [
        _per_levels_plot(result, out / "accuracy.png", "accuracy", 100, f"accuracy (% of {n} test samples)",
                         f"{name}: accuracy on the ideal memristive chip (quantised, stuck devices)",
                         reference=result.reference_accuracy),
        _tiles_plot(result, out / "tiles.png", name),
        _per_levels_plot(result, out / "energy.png", "energy_pj_per_inference", 1, "analog energy per inference (pJ)",
                         f"{name}: crossbar reads and analog neurons per inference (analog_models/energy.py)"),
        _pareto_plot(result, out / "pareto.png", name),
    ]
