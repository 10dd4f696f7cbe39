"""``small finetune``: surrogate-gradient BPTT fine-tuning of a network for a concrete chip.

The network is compiled for the chip (tile geometry, levels, fault map), and every training step
runs it as the chip holds it: each synapse at its crossbar cell's level, its column's scale, its
devices' faults (:mod:`train.chip`). The float weights are the optimiser's; the forward pass uses
their chip realisation, and the gradient reaches the float weights through a straight-through
estimator (rounding passes the gradient unchanged). Once per epoch the current network is
compiled again, so the levels and scales trained against are the compiler's own. With a fault
map the placement is a fault-aware placement of the given network, kept fixed
(:func:`placed_map`): re-placing every epoch would move synapses off the devices they were
trained for. By default (``placement="activity"``) it is the compiler's placement with each
cell's error weighed by how often its row's source fires on the training data, so the rows of
silent inputs take the worst devices; ``"weights"`` is the compiler's own.

``rewire``: every group of neurons that shares a tile reads at most R row keys
(:mod:`train.rewire`), so no neuron's inputs are split over tiles, with dormant synapses learning
and rewired every epoch; ``fan_in`` bounds each neuron's synapses (Q-rewiring's limit).

``fault_pruning`` (Kraisnikovic et al., UCNC 2023): a synapse whose devices do not follow
requested changes -- the least-squares slope of the level the chip holds against the level
requested is below :data:`PRUNE_SLOPE` (the work uses 0.1 on resistance changes; here levels,
and a cell with one device stuck still follows at slope 0.5) -- is pruned: held at the level
whose realisation is nearest 0 and no longer trained; the others train through their devices'
exact response. ``prune_by="map"`` computes the slope from the fault
map; ``"response"`` discovers it as the work does, from each synapse's requested and observed
level changes over training (:data:`PRUNE_WINDOW` changes at least); until a synapse is pruned
its update is the one a healthy device would take (straight through), since a gradient through
the devices' response would never ask a stuck device to move. Without pruning, training sees the
faulty chip in the forward pass but updates as if every device were healthy.

Outputs (``docs/finetune.md``): ``model.nir`` and ``network.small`` (the tuned network, weights on
the chip's level grid), ``finetune.json`` (accuracies before and after on the same chip, tiles,
options, the curves' numbers), ``curves.png``, ``log.txt`` and ``checkpoint.npz`` (the last
complete epoch: a run stopped with Ctrl-C leaves it and its log).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from compiler.faults import FaultMap, load_faults
from compiler.ir import Network
from compiler.mapper import CompileOptions, compile_network
from sim.evaluate import TestSet, accuracy, load_test_set
from small.errors import SimulationError, UnsupportedError
from small.fileio import atomic_directory, check_output_folder, json_text, write_npz

from . import require_torch

MARKER = "checkpoint.npz"
OWNED = ("model.nir", "network.small", "finetune.json", "curves.png", "log.txt", MARKER)
DEVICES = ("ideal", "tiox", "pcm")
PRUNE_BY = ("map", "response")
AUGMENT = (None, "shuffle-time", "redraw")
SCHEDULES = ("constant", "cosine")
PLACEMENTS = ("activity", "weights")
PRUNE_SLOPE = 0.25
"""Slope of held against requested level below which a synapse is pruned."""
PRUNE_WINDOW = 4
"""Requested level changes a synapse must have seen before ``prune_by="response"`` judges it."""
ZERO_KEEP = 1e-3
"""A trained synapse at level 0 is exported as this fraction of a level, not 0, so that the tuned
network keeps its connectivity and compiles onto the same cells (the compiler maps nonzero
weights only)."""
T_READ = {"pcm": 3600.0, "tiox": 1.0, "ideal": 1.0}


@dataclass(frozen=True)
class FinetuneOptions:
    """What ``small finetune`` is asked for (command-line names in ``docs/finetune.md``)."""

    tile: tuple[int, int] = (64, 64)
    levels: int = 16
    target: str | None = None
    """``digital`` or ``memristive``; default memristive with a fault map or a device, else digital."""
    scale: str = "tile"
    faults: str | None = None
    device: str | None = None
    """Device model of the memristive chip (``ideal``, ``tiox``, ``pcm``); default ideal."""
    fault_pruning: bool = False
    prune_by: str = "map"
    rewire: bool = False
    fan_in: int | None = None
    epochs: int = 10
    batch: int = 64
    lr: float = 2e-3
    seed: int = 0
    augment: str | None = None
    """``"shuffle-time"``: each sample's steps in a fresh random order per input channel every
    epoch (a rate code's steps are exchangeable: the same spike counts in a new order);
    ``"redraw"``: a fresh Bernoulli draw every epoch of each channel's rate (its spikes over the
    sample's steps), as rate-coded sets are drawn; None: as given."""
    placement: str = "activity"
    """With a fault map: ``activity`` weighs each cell's error in the fault-aware placement by how
    often its row's source fires on the training data (a silent input's row may hold the worst
    devices); ``weights`` is the compiler's own objective (weights only)."""
    schedule: str = "constant"
    """Learning rate over the run: ``constant``, or ``cosine`` (from ``lr`` down to ``lr / 20`` at the last epoch)."""
    dt: float | None = None
    framework: str | None = None

    @property
    def chip_target(self) -> str:
        return self.target or ("memristive" if self.faults or self.device else "digital")

    def validate(self) -> None:
        """:class:`UnsupportedError` naming the first contradictory or out-of-range option."""
        if self.fan_in is not None and not self.rewire:
            raise UnsupportedError("--fan-in limits the synapses of each neuron while rewiring: add --rewire")
        if self.fan_in is not None and (not isinstance(self.fan_in, int) or self.fan_in < 1):
            raise UnsupportedError(f"--fan-in must be a whole number >= 1 (synapses per neuron), not {self.fan_in!r}")
        if self.fan_in is not None and self.fan_in > self.tile[0]:
            raise UnsupportedError(f"--fan-in {self.fan_in} is more than the tile's {self.tile[0]} rows: a neuron reads "
                                   f"at most one tile's rows without splits; use --fan-in {self.tile[0]} or less")
        if self.fault_pruning and not self.faults:
            raise UnsupportedError("--fault-pruning prunes the faulty devices of a chip: give its fault map with "
                                   "--faults CHIP.json (`small faults random --stuck R --reversed R` makes one)")
        if self.augment not in AUGMENT:
            raise UnsupportedError(f"--augment must be one of {', '.join(a for a in AUGMENT if a)}, not {self.augment!r}")
        if self.schedule not in SCHEDULES:
            raise UnsupportedError(f"--schedule must be one of {', '.join(SCHEDULES)}, not {self.schedule!r}")
        if self.placement not in PLACEMENTS:
            raise UnsupportedError(f"--placement must be one of {', '.join(PLACEMENTS)}, not {self.placement!r}")
        if self.prune_by not in PRUNE_BY:
            raise UnsupportedError(f"--prune-by must be one of {', '.join(PRUNE_BY)}, not {self.prune_by!r}")
        if self.device is not None and self.device not in DEVICES:
            raise UnsupportedError(f"--device must be one of {', '.join(DEVICES)}, not {self.device!r}")
        if self.chip_target == "digital" and (self.faults or self.device):
            raise UnsupportedError("a fault map or a device model describes memristive devices: drop --target digital")
        if self.rewire and self.faults:
            raise UnsupportedError("--rewire and --faults together are not supported yet: rewire first, then fine-tune "
                                   "the rewired network against the fault map")
        for name in ("epochs", "batch"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise UnsupportedError(f"--{name} must be a whole number >= 1, not {getattr(self, name)!r}")
        if not (isinstance(self.lr, float) and math.isfinite(self.lr) and self.lr > 0):
            raise UnsupportedError(f"--lr must be a positive number, not {self.lr!r}")

    def compile_options(self, faults: FaultMap | None, fault_aware: bool = False) -> CompileOptions:
        """The compile for the chip. With a fault map the placement is the identity (``fault_aware``
        False): the compiler's fault-aware placement moves synapses between cells whenever the
        weights change, and the fine-tuning trains every synapse for the devices of its cell."""
        return CompileOptions(target=self.chip_target, rows=self.tile[0], cols=self.tile[1], levels=self.levels,
                              scale=self.scale, seed=self.seed, faults=faults, fault_aware=fault_aware)


@dataclass
class FinetuneResult:
    """What a fine-tuning run measured (``finetune.json``)."""

    network: str
    output: str
    chip: str
    accuracy_before: float
    """Test accuracy of the given network on the chip (fractions throughout)."""
    accuracy_after: float
    """Test accuracy of the tuned network, compiled anew, on the same chip."""
    accuracy_before_identity_placement: float | None
    """With a fault map: the given network placed without regard to the faults (``accuracy_before``
    and ``accuracy_after`` use the run's fault-aware placement of the given network,
    :func:`placed_map`, by activity unless ``placement="weights"``)."""
    accuracy_before_compiler_placement: float | None
    """With a fault map and ``placement="activity"``: the given network as ``small compile --faults``
    places it (the compiler's fault-aware placement, weights only)."""
    reference_before: float
    """Float (uncompiled) accuracy of the given network."""
    reference_after: float
    tiles_before: int
    tiles_after: int
    fan_in_splits_before: int
    fan_in_splits_after: int
    synapses_before: int
    synapses_after: int
    pruned_synapses: int
    epochs: list[dict]
    options: dict
    seconds: float
    test_samples: int
    train_samples: int
    versions: dict = field(default_factory=dict)
    tuned_sha256: dict = field(default_factory=dict)
    """SHA-256 of ``model.nir`` and ``network.small`` as written: ``small report`` of a build compiled
    from either finds this file by it and shows the before/after comparison."""
    rewire_rule: str | None = None
    """``--rewire``: how each tile's rows were shared, ``"by layer"`` (the outputs' inputs first) or ``"alike"``."""

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        lines = [f"fine-tuned {self.network!r} for {self.chip} in {self.seconds:.0f} s "
                 f"({len(self.epochs)} epochs on {self.train_samples} samples)",
                 f"  accuracy on the chip  {self.accuracy_before * 100:.2f} % before, {self.accuracy_after * 100:.2f} % "
                 f"after ({self.test_samples} test samples)",
                 f"  float accuracy        {self.reference_before * 100:.2f} % before, "
                 f"{self.reference_after * 100:.2f} % after",
                 f"  tiles                 {self.tiles_before} before, {self.tiles_after} after; fan-in splits "
                 f"{self.fan_in_splits_before} before, {self.fan_in_splits_after} after",
                 f"  synapses              {self.synapses_before} before, {self.synapses_after} after"
                 + (f"; {self.pruned_synapses} pruned as faulty" if self.options.get("fault_pruning") else ""),
                 f"wrote {self.output}/: model.nir, network.small, finetune.json, curves.png, log.txt, {MARKER}"]
        return "\n".join(lines)


# -- inputs ----------------------------------------------------------------------------------------
def load_network(path: str | Path, dt: float | None, framework: str | None) -> Network:
    """A ``.small`` file, or a NIR file read at ``dt`` under ``framework``'s conventions."""
    from compiler.netfile import SUFFIX, load_network as load_small
    from small.errors import FileFormatError

    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"model file {str(path)!r} does not exist")
    with open(path, "rb") as f:
        magic = f.read(8)
    if magic.startswith(b"PK") or path.suffix == SUFFIX:
        return load_small(path)
    from compiler.nir_frontend import import_nir

    return import_nir(path, dt=dt, framework=framework or "nir")


def check_data(net: Network, data: TestSet, what: str, path: str | Path) -> None:
    """The set's inputs fit the network's input and its labels its outputs, or one line saying which not."""
    if len(net.inputs) != 1:
        raise UnsupportedError(f"fine-tuning takes networks with one input; {net.name!r} has {len(net.inputs)}")
    inp = net.inputs[0]
    shape = tuple(data.x.shape[2:])
    if shape != inp.shape and shape != (inp.size,):
        raise SimulationError(f"{what} {str(path)!r}: x has shape {list(data.x.shape)}, the network's input "
                              f"{inp.name!r} takes [T, N, {', '.join(map(str, inp.shape))}]: give a set made for this "
                              "network")
    n_out = sum(net.population(p).size for p in net.outputs.values())
    bad = np.flatnonzero((data.labels < 0) | (data.labels >= n_out))
    if bad.size:
        raise SimulationError(f"{what} {str(path)!r}: label {int(data.labels[bad[0]])} of sample {int(bad[0])} is not "
                              f"an output of the network (0 to {n_out - 1}): give labels that index its outputs")
    if data.x.dtype.kind == "f" and not np.all(np.isfinite(data.x)):
        raise SimulationError(f"{what} {str(path)!r}: x contains NaN or Inf")


def check_fault_map(fmap: FaultMap, options: FinetuneOptions, path: str) -> None:
    if (fmap.rows, fmap.cols) != tuple(options.tile):
        raise UnsupportedError(f"the fault map {path!r} is for {fmap.rows}x{fmap.cols} tiles but --tile is "
                               f"{options.tile[0]}x{options.tile[1]}: use --tile {fmap.rows}x{fmap.cols} or a fault map "
                               "for this geometry")


# -- the chip ------------------------------------------------------------------------------------
class Chip:
    """Compile a network for the chip and score it there, always the same way (same seed)."""

    def __init__(self, options: FinetuneOptions, fmap: FaultMap | None):
        self.options, self.fmap = options, fmap
        self.device = options.device or ("ideal" if options.chip_target == "memristive" else None)

    def compile(self, net: Network):
        return compile_network(net, self.options.compile_options(self.fmap))

    def simulator(self, image):
        from sim import chip_simulator

        if image.target == "digital" or (self.device == "ideal" and self.fmap is None):
            return chip_simulator(image)
        from sim.analog import AnalogSimulator

        return AnalogSimulator(image, device=self.device, t_read=T_READ[self.device], faults=self.fmap,
                               seed=self.options.seed)

    def describe(self) -> str:
        o = self.options
        what = f"{o.tile[0]}x{o.tile[1]} tiles, {o.levels} levels, {o.chip_target}"
        if self.device and o.chip_target == "memristive":
            what += f" ({self.device} devices)"
        if self.fmap is not None:
            n = self.fmap.stuck.size
            what += (f", {int((self.fmap.stuck >= 0).sum()) / n * 100:.0f} % stuck and "
                     f"{int(self.fmap.reversed.sum()) / n * 100:.0f} % reversed devices")
        return what


def source_rates(net: Network, image, data: TestSet) -> np.ndarray:
    """Mean spike rate of the source of every row of ``image`` on ``data`` (``[tiles, rows]``, 0 where
    unfed): the input elements' from the set, the neurons' from the reference simulator."""
    from sim.reference import ReferenceSimulator

    a = image.arrays
    x = data.x.reshape(data.x.shape[0], data.x.shape[1], -1)
    run = ReferenceSimulator(net).run(x, record_spikes=True)
    rate_in = x.mean(axis=(0, 1)).astype(np.float64)
    rate_col = np.zeros(a["col_kind"].size)
    for p in net.populations:
        if p.name in run.spikes:
            rate_col[image.addresses(p.name)] = run.spikes[p.name].mean(axis=(0, 1))
    out = np.zeros(a["g_pos"].shape[:2])
    out[a["input_tile"], a["input_row"]] = rate_in[image.route_sources("input")]
    out[a["route_tile"], a["route_row"]] = rate_col[image.route_sources("route")]
    return out


def placed_map(net: Network, options: FinetuneOptions, fmap: FaultMap, rates: TestSet | None = None) -> FaultMap:
    """The chip's fault map relabelled so that the identity placement puts every cell of ``net``
    on the device the compiler's fault-aware placement gives it (``compiler.faults.place``, run
    on exactly what ``compile_network`` runs it on). Compiling with it and ``fault_aware=False``
    keeps that placement fixed while the weights change; the devices, and so every simulated
    figure, are the real chip's."""
    from compiler.faults import place

    plain = compile_network(net, dataclasses.replace(options.compile_options(None), target="memristive")).image
    a = plain.arrays
    q = plain.weights().astype(np.int64)
    fed = np.zeros(q.shape[:2], dtype=bool)
    fed[a["input_tile"], a["input_row"]] = True
    fed[a["route_tile"], a["route_row"]] = True
    importance = (fed[:, :, None] & (a["col_kind"] > 0)[:, None, :]) * a["scale"][:, None, :] ** 2
    if rates is not None:
        # a row's error costs in proportion to how often its source fires (E[s^2] = p for spikes)
        importance = importance * source_rates(net, plain, rates)[:, :, None]
    pl = place(q, importance, fmap, options.levels)
    T = q.shape[0]
    order = np.concatenate([pl.tile_phys, np.setdiff1d(np.arange(fmap.tiles), pl.tile_phys)])
    rows, cols = pl.row_perm[:, :, None], pl.col_perm[:, None, :]

    def relabel(x):
        out = x[order].copy()
        out[:T] = x[pl.tile_phys[:, None, None], rows, cols]
        return out

    return FaultMap(relabel(fmap.stuck), None if fmap.factor is None else relabel(fmap.factor))


def with_weights(net: Network, weights: list[np.ndarray], biases: dict[str, np.ndarray]) -> Network:
    """A copy of ``net`` with new projection weights (dense) and population biases."""
    out = copy.deepcopy(net)
    for proj, w in zip(out.projections, weights):
        proj.weight = np.asarray(w, dtype=np.float64)
    for pop in out.populations:
        b = np.asarray(biases[pop.name], dtype=np.float64)
        pop.bias = float(b[0]) if np.all(b == b[0]) and np.ndim(pop.bias) == 0 else b
    return out


# -- the run -------------------------------------------------------------------------------------
def finetune(model: str | Path, data: str | Path, test: str | Path, options: FinetuneOptions, output: str | Path, *,
             progress: Callable[[str], None] = print) -> FinetuneResult:
    """Fine-tune ``model`` on ``data`` for the chip ``options`` describe; score on ``test``; write ``output``."""
    options.validate()
    check_output_folder(output, marker=MARKER, owned=OWNED)
    train_set, test_set = load_test_set(data), load_test_set(test)
    net = load_network(model, options.dt if options.dt is not None else test_set.dt,
                       options.framework or test_set.framework)
    net.validate()
    check_data(net, train_set, "training set", data)
    check_data(net, test_set, "test set", test)
    fmap = None
    if options.faults:
        fmap = load_faults(options.faults)
        check_fault_map(fmap, options, str(options.faults))
    torch = require_torch()
    torch.manual_seed(options.seed)
    chip = Chip(options, fmap)
    t0 = time.perf_counter()
    before = chip.compile(net)  # before anything is written: a network that does not fit says so now
    log: list[str] = []

    def say(line: str) -> None:
        log.append(line)
        progress(line)

    acc_identity = acc_compiler = None
    if fmap is not None:
        # a fault-aware placement of the given network (by activity, or the compiler's), kept for the whole run
        acc_identity = accuracy(chip.simulator(before.image), test_set)
        activity = options.placement == "activity"
        chip.fmap = placed_map(net, options, fmap, train_set if activity else None)
        if activity:
            compiler_placed = Chip(options, placed_map(net, options, fmap))
            acc_compiler = accuracy(compiler_placed.simulator(compiler_placed.compile(net).image), test_set)
        before = chip.compile(net)
    acc_before = accuracy(chip.simulator(before.image), test_set)
    ref_before = accuracy(net, test_set)
    say(f"chip: {chip.describe()}")
    say(f"before: {before.report.tiles_used} tiles, {before.report.fan_in_splits} fan-in splits, accuracy on the chip "
        f"{acc_before * 100:.2f} %, float {ref_before * 100:.2f} %"
        + (f" (fault-aware placement{', by activity' if acc_compiler is not None else ''}; "
           f"{acc_identity * 100:.2f} % with the identity"
           + (f", {acc_compiler * 100:.2f} % with the compiler's" if acc_compiler is not None else "") + ")"
           if acc_identity is not None else ""))
    trainer = _Trainer(net, train_set, options, chip, torch)
    if options.rewire:
        say(f"rewiring: each tile's rows shared {trainer.tier_rule} (the plan that loses less on the training data)")
    with atomic_directory(output, marker=MARKER, owned=OWNED) as tmp:
        interrupted = False
        try:
            trainer.run(test_set, say, lambda: _checkpoint(tmp, trainer, log))
        except KeyboardInterrupt:
            if not trainer.history:
                raise  # no epoch complete: nothing to keep, nothing written
            interrupted = True
            say(f"interrupted: {MARKER} holds the last complete epoch ({len(trainer.history)})")
        if interrupted:
            (tmp / "log.txt").write_text("\n".join(log) + "\n")  # the checkpoint stays the last complete one
        else:
            tuned = trainer.export()
            after = chip.compile(tuned)
            acc_after = accuracy(chip.simulator(after.image), test_set)
            ref_after = accuracy(tuned, test_set)
            say(f"after: {after.report.tiles_used} tiles, {after.report.fan_in_splits} fan-in splits, accuracy on the "
                f"chip {acc_after * 100:.2f} %, float {ref_after * 100:.2f} %")
            from compiler.netfile import save_network
            from compiler.nir_backend import write_nir

            save_network(tuned, tmp / "network.small")
            write_nir(tuned, tmp / "model.nir")
            result = FinetuneResult(
                network=net.name, output=str(output), chip=chip.describe(), accuracy_before=acc_before,
                accuracy_after=acc_after, accuracy_before_identity_placement=acc_identity,
                accuracy_before_compiler_placement=acc_compiler,
                reference_before=ref_before, reference_after=ref_after,
                tiles_before=before.report.tiles_used, tiles_after=after.report.tiles_used,
                fan_in_splits_before=before.report.fan_in_splits, fan_in_splits_after=after.report.fan_in_splits,
                synapses_before=net.n_synapses, synapses_after=tuned.n_synapses, pruned_synapses=trainer.n_pruned(),
                epochs=trainer.history, options=_options_doc(options, model, data, test),
                seconds=time.perf_counter() - t0, test_samples=int(test_set.labels.size),
                train_samples=int(train_set.labels.size), versions={"torch": torch.__version__},
                rewire_rule=trainer.tier_rule,
                tuned_sha256={name: hashlib.sha256((tmp / name).read_bytes()).hexdigest()
                              for name in ("model.nir", "network.small")})
            (tmp / "finetune.json").write_text(json_text(result.to_dict()))
            _plot(trainer.history, tmp / "curves.png", acc_before)
            _checkpoint(tmp, trainer, log)
    if interrupted:
        raise KeyboardInterrupt
    return result


def _options_doc(options: FinetuneOptions, model, data, test) -> dict:
    doc = asdict(options)
    doc["tile"] = f"{options.tile[0]}x{options.tile[1]}"
    doc["target"] = options.chip_target
    doc.update(model=str(model), data=str(data), test=str(test))
    return doc


def _checkpoint(folder: Path, trainer: "_Trainer", log: list[str]) -> None:
    arrays = {f"weight/{k}": w for k, w in enumerate(trainer.masked_weights())}
    arrays.update({f"bias/{k}": b for k, b in trainer.biases().items()})
    arrays["epoch"] = np.array(len(trainer.history))
    write_npz(folder / MARKER, arrays)
    (folder / "log.txt").write_text("\n".join(log) + "\n")


def _plot(history: list[dict], path: Path, acc_before: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    a.plot(epochs, [h["loss"] for h in history], "o-")
    a.set_xlabel("epoch")
    a.set_ylabel("training loss")
    b.plot(epochs, [h["train_accuracy"] * 100 for h in history], "o-", label="training (chip forward)")
    b.plot(epochs, [h["chip_accuracy"] * 100 for h in history], "s-", label="test, on the chip")
    b.axhline(acc_before * 100, color="grey", ls="--", label="test, before")
    b.set_xlabel("epoch")
    b.set_ylabel("accuracy (%)")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)


class _Trainer:
    """The training state and loop (see the module docstring)."""

    def __init__(self, net: Network, data: TestSet, options: FinetuneOptions, chip: Chip, torch):
        from .torchnet import SpikingNetwork

        self.torch, self.net, self.options, self.chip = torch, net, options, chip
        self.model = SpikingNetwork(net)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=options.lr)
        self.x = data.x.reshape(data.x.shape[0], data.x.shape[1], -1)
        self.labels = data.labels
        self.readout, self.window = data.readout, data.window
        self.history: list[dict] = []
        self.rng = np.random.default_rng(options.seed)
        self.masks = None
        self.tier_rule = None
        if options.rewire:
            from .rewire import plan_groups, synapse_table, tiers

            self.table = synapse_table(net)
            self.groups = plan_groups(net.n_neurons, options.tile[1])
            # serve the later layers first, or every neuron alike: whichever loses less on the data
            losses = {}
            for name, tier in (("by layer", tiers(net)), ("alike", None)):
                self.tiers = tier
                self.rewire()
                losses[name] = (self.masked_loss(), tier)
            self.tier_rule = min(losses, key=lambda k: losses[k][0])
            self.tiers = losses[self.tier_rule][1]
            self.rewire()
        self.pruned: list[np.ndarray] | None = None
        self.fixed: list[np.ndarray] | None = None
        self.cells = None

    # -- connectivity -------------------------------------------------------------------------
    def current_weights(self) -> list[np.ndarray]:
        return [w.detach().double().numpy().copy() for w in self.model.weight]

    def biases(self) -> dict[str, np.ndarray]:
        return {k: b.detach().double().numpy().copy() for k, b in self.model.bias.items()}

    def rewire(self) -> None:
        from .rewire import select_keys

        w = self.current_weights()
        flat = np.array([w[p][i, j] for p, i, j in zip(self.table.proj, self.table.i, self.table.j)])
        keep = select_keys(self.table, flat, self.groups, self.options.tile[0], self.options.fan_in, self.tiers)
        masks = [np.zeros_like(x) for x in w]
        for p, i, j, k in zip(self.table.proj, self.table.i, self.table.j, keep):
            masks[p][i, j] = float(k)
        self.masks = masks

    def masked_loss(self, n: int = 256) -> float:
        """The float network's loss with the current masks on the first ``n`` training samples."""
        torch = self.torch
        from .torchnet import readout_logits

        with torch.no_grad():
            w = [torch.as_tensor(a, dtype=self.model.dtype) for a in self.masked_weights()]
            out = self.model(torch.as_tensor(self.x[:, :n].astype(np.float32)), w)
            logits = readout_logits(out, self.readout, self.window)
            return float(torch.nn.functional.cross_entropy(logits, torch.as_tensor(self.labels[:n])))

    def masked_weights(self) -> list[np.ndarray]:
        w = self.current_weights()
        return w if self.masks is None else [a * m for a, m in zip(w, self.masks)]

    # -- the chip's view of the weights -------------------------------------------------------------
    def recompile(self) -> None:
        """Compile the current network; take its cells (levels, scales, faults) for the next epoch."""
        from .chip import locate, parasitic_cells

        net = with_weights(self.net, self.masked_weights(), self.biases())
        result = self.chip.compile(net)
        self.cells = locate(result.image, net, self.chip.fmap)
        self.extra = parasitic_cells(result.image, net, self.cells, self.chip.fmap)
        self.tiles = result.report.tiles_used
        if self.options.fault_pruning:
            self.update_pruning()

    def update_pruning(self) -> None:
        """Which cells are pruned (see the module docstring), and the level each pruned one holds."""
        top = self.options.levels - 1
        if self.options.prune_by == "map":
            qs = np.arange(-top, top + 1, dtype=np.float64)
            dq = qs - qs.mean()
            self.pruned = []
            for c in self.cells:
                real = np.stack([c.realise(np.full(c.i.size, q)) for q in qs])
                self.pruned.append((dq[:, None] * (real - real.mean(0))).sum(0) / (dq ** 2).sum() < PRUNE_SLOPE)
        else:
            self.pruned = [self._pruned_dense[k][c.i, c.j] for k, c in enumerate(self.cells)]
        self.fixed = [c.closest_to_zero() for c in self.cells]

    def judge_responses(self) -> None:
        """``prune_by="response"``: prune the synapses whose held level followed the requested one
        with a slope below :data:`PRUNE_SLOPE` over at least :data:`PRUNE_WINDOW` changes."""
        for stats, pruned in zip(self._stats_dense, self._pruned_dense):
            with np.errstate(divide="ignore", invalid="ignore"):
                slope = np.where(stats[1] > 0, stats[0] / stats[1], 1.0)
            pruned |= (stats[2] >= PRUNE_WINDOW) & (slope < PRUNE_SLOPE)

    def chip_weights(self, exact: bool):
        """The weights the chip holds (torch, one per projection), differentiable towards the float ones."""
        torch = self.torch
        out = []
        top = self.options.levels - 1
        for k, (w, c) in enumerate(zip(self.model.weight, self.cells)):
            ii, jj = torch.as_tensor(c.i), torch.as_tensor(c.j)
            scale = torch.as_tensor(c.scale, dtype=w.dtype)
            qf = w[ii, jj] / scale
            q = qf + (torch.round(qf) - qf).detach()
            q = torch.clamp(q, -top, top)
            if exact and self.pruned is not None:
                real = c.realise(q, xp=torch)
            else:
                real = q + (torch.as_tensor(c.realise(q.detach().numpy()), dtype=w.dtype) - q).detach()
            if self.pruned is not None:
                fixed = torch.as_tensor(c.realise(self.fixed[k]), dtype=w.dtype)
                real = torch.where(torch.as_tensor(self.pruned[k]), fixed, real)
            dense = torch.zeros_like(w).index_put((ii, jj), real * scale)
            if self.masks is not None:
                # the chip holds only the active synapses; every synapse, dormant ones included,
                # gets the gradient (deep rewiring: a dormant weight that grows is connected next)
                dense = w + (dense - w).detach()
            out.append(dense)
        return out

    def observe(self, before: list[np.ndarray]) -> None:
        """``prune_by="response"``: requested against held level changes of every synapse since ``before``."""
        top = self.options.levels - 1
        for k, c in enumerate(self.cells):
            w = self.model.weight[k].detach().double().numpy()
            q0 = np.clip(np.rint(before[k][c.i, c.j] / c.scale), -top, top)
            q1 = np.clip(np.rint(w[c.i, c.j] / c.scale), -top, top)
            dq = q1 - q0
            moved = dq != 0
            if not moved.any():
                continue
            dr = c.realise(q1) - c.realise(q0)
            stats = self._stats_dense[k]
            np.add.at(stats[0], (c.i[moved], c.j[moved]), dq[moved] * dr[moved])
            np.add.at(stats[1], (c.i[moved], c.j[moved]), dq[moved] ** 2)
            np.add.at(stats[2], (c.i[moved], c.j[moved]), 1)

    # -- the loop ------------------------------------------------------------------------------
    def run(self, test: TestSet, say: Callable[[str], None], checkpoint: Callable[[], None]) -> None:
        torch, o = self.torch, self.options
        if o.fault_pruning and o.prune_by == "response":
            self._stats_dense = [np.zeros((3, *w.shape)) for w in self.model.weight]
            self._pruned_dense = [np.zeros(w.shape, bool) for w in self.model.weight]
        self.recompile()
        loss_fn = torch.nn.CrossEntropyLoss()
        n = self.labels.size
        # with the map, train through the devices' exact response; discovering faults (as the paper does)
        # needs the requests of a healthy device (straight through) to see which devices do not follow
        exact = o.fault_pruning and o.prune_by == "map"
        for epoch in range(1, o.epochs + 1):
            t0 = time.perf_counter()
            if o.schedule == "cosine":
                lr = o.lr / 20 + (o.lr - o.lr / 20) * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / max(o.epochs - 1, 1)))
                for g in self.opt.param_groups:
                    g["lr"] = lr
            order = self.rng.permutation(n)
            total, correct, loss_sum = 0, 0, 0.0
            batches = math.ceil(n / o.batch)
            for b in range(batches):
                idx = order[b * o.batch:(b + 1) * o.batch]
                xb = self.x[:, idx]
                if o.augment == "redraw":
                    # a fresh Bernoulli draw of every channel's rate (its spikes over the sample's steps)
                    rate = xb.mean(axis=0, keepdims=True)
                    xb = (self.rng.random(xb.shape) < rate).astype(np.float32)
                elif o.augment == "shuffle-time":
                    # a rate code's steps are exchangeable: a fresh order per sample and channel is a fresh draw
                    order_t = np.argsort(self.rng.random(xb.shape), axis=0)
                    xb = np.take_along_axis(xb, order_t, axis=0)
                x = torch.as_tensor(xb.astype(np.float32))
                y = torch.as_tensor(self.labels[idx])
                before = self.current_weights() if (o.fault_pruning and o.prune_by == "response") else None
                logits = self._logits(x, exact)
                loss = loss_fn(logits, y)
                self.opt.zero_grad()
                loss.backward()
                self.opt.step()
                if before is not None:
                    self.observe(before)
                loss_sum += loss.item() * idx.size
                correct += int((logits.argmax(1) == y).sum())
                total += idx.size
            if o.fault_pruning and o.prune_by == "response":
                self.judge_responses()
            if o.rewire:
                self.rewire()
            self.recompile()
            chip_acc = self.chip_accuracy(test)
            entry = {"epoch": epoch, "loss": loss_sum / total, "train_accuracy": correct / total,
                     "chip_accuracy": chip_acc, "tiles": self.tiles, "pruned": self.n_pruned(),
                     "seconds": time.perf_counter() - t0}
            self.history.append(entry)
            bar = "#" * round(20 * epoch / o.epochs)
            say(f"epoch {epoch:3d}/{o.epochs} [{bar:<20}] loss {entry['loss']:.4f}, train {correct / total * 100:.2f} %, "
                f"chip test {chip_acc * 100:.2f} %, {self.tiles} tiles"
                + (f", {entry['pruned']} pruned" if o.fault_pruning else "") + f" ({entry['seconds']:.1f} s)")
            checkpoint()

    def _logits(self, x, exact: bool):
        from .torchnet import readout_logits

        out = self.model(x, self.chip_weights(exact), self.extra)
        return readout_logits(out, self.readout, self.window)

    def chip_accuracy(self, test: TestSet) -> float:
        """The current network, compiled, on the chip's simulator (as the final score is taken)."""
        net = self.export()
        return accuracy(self.chip.simulator(self.chip.compile(net).image), test)

    def n_pruned(self) -> int:
        return 0 if self.pruned is None else int(sum(int(p.sum()) for p in self.pruned))

    def export(self) -> Network:
        """The network with every synapse at the level the chip is asked to hold (see :data:`ZERO_KEEP`)."""
        top = self.options.levels - 1
        weights = [np.zeros_like(w) for w in self.current_weights()]
        raw = self.masked_weights()
        for k, c in enumerate(self.cells):
            q = np.clip(np.rint(raw[k][c.i, c.j] / c.scale), -top, top)
            if self.pruned is not None:
                q = np.where(self.pruned[k], self.fixed[k], q)
            sign = np.where(raw[k][c.i, c.j] < 0, -1.0, 1.0)
            weights[k][c.i, c.j] = np.where(q == 0, sign * ZERO_KEEP, q) * c.scale
        return with_weights(self.net, weights, self.biases())
