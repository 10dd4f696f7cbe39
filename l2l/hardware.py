"""The chip a learning-to-learn candidate runs on, and the inner loop's weight update as device writes.

A candidate network is compiled (``compiler.compile_network``) to a HardwareImage and run by the
chip simulators of ``sim/``. :class:`ChipDevices` adds what learning in the field needs on top:

* **where every synapse sits**: crossbar row ``rho = tile * R + row`` and neuron ``k`` (the
  simulators' column folding), device ``(tile, row, col)`` and the column's weight per level;
* **one chip per task**: the learning rule changes each task's chip differently, so the chip
  keeps a ``[tasks, synapses]`` state and runs every task's chip in one batch
  (``ChipSimulator.run(weights=...)``);
* **device writes** (:meth:`ChipDevices.write`): a requested change in weight levels is rounded to
  the device's programming step (one level: with 17 levels a PCM step is 1/16 of the range),
  the new signed level is clipped to ``+-(L - 1)`` and split over the differential pair
  (``compiler.quantize.level_pairs``), and only devices whose level changes are written. Each
  written device gets fresh programming noise and restarts its drift clock; every write is
  counted per device (endurance).

Hardware (``HARDWARE``):

========== ==================================================================================
``float``   the candidate's exact float weights on the chip's mapping (no quantisation, exact
            updates within the crossbar's range of +-(L - 1) levels): the reference the
            hardware is compared with
``digital`` the digital twin (``sim/digital.py``): integer levels, fixed-point neurons
``ideal``   memristive tiles with exact conductances (``sim/memristive.py``)
``pcm``     memristive tiles with PCM devices: programming noise, drift from each device's own
            programming time with its own exponent, 1/f read noise (``analog_models.devices``,
            as ``sim/analog.py``)
``tiox``    memristive tiles with TiOx devices: 1 % programming noise
========== ==================================================================================

Faults (``faults``, a chip's fault map): the candidate is compiled onto that chip (its stuck
devices placed around); a stuck device holds its level whatever is written; a reversed device
with update factor ``r < 0`` ends programming at G_min (program-and-verify from reset, as
``sim/analog.py`` and ``compiler/faults.py`` say) and every later write in the field moves it
``r`` times the requested change (``G + r (G_target - G)``, clipped to the range), as in the
fault-pruning work.

Drift compensation (``drift_compensation``, PCM): each task's read-out of a column is rescaled by
``sum |G+ - G-|`` of its learnable synapses as programmed over the same sum at the read, as
``sim/analog.py``'s per-column compensation does.

Time line of one task (seconds): every device is programmed at 0 with the candidate's weights;
the demonstration is run and the update written at ``t_learn``; the test run reads at
``t_test``. Drift and read noise use each device's age at the read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from small.errors import SimulationError
from compiler.faults import FaultMap
from compiler.image import COL_NEURON, COL_PARTIAL, HardwareImage
from compiler.ir import Network
from compiler.mapper import CompileOptions, compile_network
from compiler.quantize import level_pairs
from sim import chip_simulator

__all__ = ["HARDWARE", "ChipDevices", "Sites"]

HARDWARE = ("float", "digital", "ideal", "pcm", "tiox")


@dataclass(frozen=True)
class Sites:
    """Where each synapse sits on the chip (arrays over synapses, in the caller's order)."""

    rho: np.ndarray
    """Crossbar row ``tile * R + row`` (the simulators' row index)."""
    k: np.ndarray
    """Neuron the synapse feeds (the simulators' neuron index)."""
    tile: np.ndarray
    row: np.ndarray
    col: np.ndarray
    scale: np.ndarray
    """Network weight per level of the synapse's column."""

    @classmethod
    def locate(cls, image: HardwareImage, neuron_index: np.ndarray, source: np.ndarray, target: np.ndarray) -> Sites:
        """The sites of synapses ``source -> target``.

        ``source``: input element ``e`` (``0 <= e < n_in``, inputs in the image's order) or
        ``n_in + a`` for the neuron at column address ``a``; ``target``: column address.
        ``neuron_index`` maps a column address to the simulators' neuron index.
        """
        a, T, R, C = image.arrays, image.n_tiles, image.rows, image.cols
        n_in = int(a["input_ptr"].size - 1)
        row_source = np.full(T * R, -1, dtype=np.int64)
        irow = a["input_tile"].astype(np.int64) * R + a["input_row"]
        nrow = a["route_tile"].astype(np.int64) * R + a["route_row"]
        row_source[irow] = image.route_sources("input")
        row_source[nrow] = n_in + image.route_sources("route")
        if irow.size + nrow.size != np.unique(np.concatenate([irow, nrow])).size:
            raise SimulationError("a crossbar row is fed twice: the image is corrupt")
        # (tile, source) -> row, and (tile, neuron address) -> the column that feeds it in that tile
        kind = a["col_kind"].reshape(-1)
        home = image.home_columns()
        used = (kind == COL_NEURON) | (kind == COL_PARTIAL)
        col_of = {(int(c) // C, int(home[c])): int(c) % C for c in np.flatnonzero(used)}
        fed = np.flatnonzero(row_source >= 0)
        row_of = {(int(r) // R, int(row_source[r])): int(r) % R for r in fed}
        tiles_of: dict[int, list[int]] = {}
        for t, h in col_of:
            tiles_of.setdefault(h, []).append(t)
        n = np.asarray(source).size
        tile, row, col = (np.empty(n, dtype=np.int64) for _ in range(3))
        for i, (s, h) in enumerate(zip(np.asarray(source).tolist(), np.asarray(target).tolist())):
            for t in tiles_of.get(h, ()):
                if (t, s) in row_of:
                    tile[i], row[i], col[i] = t, row_of[t, s], col_of[t, h]
                    break
            else:
                raise SimulationError(f"synapse {s} -> {h} has no crossbar cell: it was not compiled")
        return cls(rho=tile * R + row, k=neuron_index[home[tile * C + col]], tile=tile, row=row, col=col,
                   scale=a["scale"][tile, col].astype(np.float64))


class ChipDevices:
    """The devices of a simulated chip running a compiled candidate, one device state per task
    (see the module docstring); not the generated RTL chip (``hdl.chip.Chip``).

    Parameters
    ----------
    net : the candidate network.
    synapses : ``(source, target, weight)`` of every synapse the learning rule may change, in
        network terms: ``source`` an input element (``0 <= e < n_in``) or ``n_in + i`` for
        network neuron ``i`` (populations in order), ``target`` a network neuron.
    hardware : one of :data:`HARDWARE`.
    levels, rows, cols : the compile options (memristive and digital targets).
    t_learn, t_test : read times (s after programming) of the demonstration and the test.
    seed : the chip's random draws (programming, drift exponents, read noise).
    faults : the chip's fault map (``pcm`` and ``tiox`` hardware): stuck and reversed devices.
    drift_compensation : rescale each column's read-out by its reference read (``pcm``, ``tiox``).
    """

    def __init__(self, net: Network, synapses: tuple[np.ndarray, np.ndarray, np.ndarray], hardware: str, *,
                 levels: int = 17, rows: int = 128, cols: int = 128, t_learn: float = 60.0, t_test: float = 120.0,
                 seed: int = 0, faults: FaultMap | None = None, drift_compensation: bool = False):
        if hardware not in HARDWARE:
            raise SimulationError(f"hardware must be one of {', '.join(HARDWARE)}, not {hardware!r}")
        if not 0 <= t_learn <= t_test:
            raise SimulationError(f"need 0 <= t_learn <= t_test, not {t_learn} and {t_test}")
        self.hardware, self.t_learn, self.t_test = hardware, float(t_learn), float(t_test)
        self.rng = np.random.default_rng(seed)
        target = "digital" if hardware == "digital" else "memristive"
        if (faults is not None or drift_compensation) and hardware not in ("pcm", "tiox"):
            raise SimulationError(f"faults and drift compensation are device effects: use pcm or tiox hardware, not "
                                  f"{hardware!r}")
        self.image = compile_network(net, CompileOptions(target=target, rows=rows, cols=cols, levels=levels,
                                                         scale="column", seed=seed, faults=faults)).image
        self.drift_compensation = drift_compensation
        # the arithmetic: the digital twin, or memristive tiles in level units (the devices are ours)
        self.sim = chip_simulator(self.image)
        self.top = self.image.levels - 1
        # network neuron i -> column address, and the simulators' neuron index
        addr = np.concatenate([self.image.addresses(p.name) for p in net.populations])
        self.neuron_k = self.sim.index[addr]
        source, tgt, weight = (np.asarray(a) for a in synapses)
        n_in = sum(i.size for i in net.inputs)
        chip_source = np.where(source < n_in, source, n_in + addr[np.maximum(source - n_in, 0)])
        self.sites = Sites.locate(self.image, self.sim.index, chip_source, addr[tgt])
        q = self.image.weights()[self.sites.tile, self.sites.row, self.sites.col].astype(np.int64)
        self.base = self.sim.dense_weights()
        self.base[self.sites.rho, self.sites.k] = 0  # the learnable synapses come from the state below
        self.n_tasks = 0
        if hardware == "float":
            self.level = np.asarray(weight, dtype=np.float64) / self.sites.scale  # exact weights, in levels
        else:
            self.level = q
        self.device = None
        if hardware in ("pcm", "tiox"):
            from sim.analog import device_noise, level_range

            self.device = device_noise(hardware)
            self.g_min, self.g_max = level_range(self.image, self.device)
            self.dG = (self.g_max - self.g_min) / self.top
            site = (self.sites.tile, self.sites.row, self.sites.col)
            pos, neg = (self.image.arrays[name][site].astype(np.int64) for name in ("g_pos", "g_neg"))
            # [2, synapses]: each device's stuck level (-1 healthy) and update factor (1 unless reversed)
            self.stuck = np.full((2, pos.size), -1, dtype=np.int64)
            self.factor = np.ones((2, pos.size))
            if faults is not None:
                self.stuck = np.stack([self.image.arrays[f"stuck_{d}"][site] for d in ("pos", "neg")]).astype(np.int64)
                phys = self.image.arrays["tile_phys"][self.sites.tile]
                if faults.factor is not None:
                    self.factor = faults.factor[phys, self.sites.row, self.sites.col].T.copy()
                    self.stuck[self.factor != 1] = -1  # the image holds reversed devices at 0; they still move
            target = np.stack([self.g_min + pos * self.dG, self.g_min + neg * self.dG])
            target = np.where(self.factor != 1, self.g_min, target)  # program-and-verify: runs into G_min
            self.g0, self.nu0 = self._program(target)
            self.g0 = np.where(self.stuck >= 0, self.g_min + self.stuck * self.dG, self.g0)

    # -- state per task ----------------------------------------------------------------------
    def reset(self, n_tasks: int) -> None:
        """``n_tasks`` copies of the chip as programmed with the candidate's weights at time 0
        (the same devices: one chip, which each task then changes in its own way)."""
        self.n_tasks = n_tasks
        S = self.sites.rho.size
        self.q = np.broadcast_to(self.level, (n_tasks, S)).copy()
        self.writes = np.zeros((n_tasks, 2, S), dtype=np.int64)
        if self.device is not None:
            self.g = np.broadcast_to(self.g0, (n_tasks, 2, S)).copy()
            self.g_ref = self.g.copy()  # the reference read right after programming (drift compensation)
            self.nu = np.broadcast_to(self.nu0, (n_tasks, 2, S)).copy()
            self.t_programmed = np.zeros((n_tasks, 2, S))

    def _program(self, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Conductances just after programming towards ``target``, and the devices' drift exponents."""
        d = self.device
        g = d.program(target, self.rng) if d.program else target.copy()
        nu = d.exponents(target, self.rng) if d.exponents else np.zeros_like(target)
        return g, nu

    def weights(self, t: float) -> np.ndarray:
        """Every task's crossbars read at time ``t``: ``[tasks, T * R, K]`` for ``ChipSimulator.run``."""
        if self.device is None:
            w = self.q
        else:
            g = self.g
            if self.device.drift:
                g = self.device.drift(g, t - self.t_programmed, self.rng, self.nu)
            drifted = g
            if self.device.read:
                g = self.device.read(g, t - self.t_programmed, self.rng)
            g = np.where(self.stuck >= 0, self.g_min + self.stuck * self.dG, g)  # stuck devices neither drift nor move
            w = (g[:, 0] - g[:, 1]) / self.dG
            if self.drift_compensation:
                w = w * self._compensation(np.where(self.stuck >= 0, g, drifted))
        dense = np.broadcast_to(self.base, (self.n_tasks, *self.base.shape)).astype(w.dtype)
        dense[:, self.sites.rho, self.sites.k] = w
        return dense

    def run(self, x: np.ndarray, t: float, *, record: bool = False):
        """Run the chips on inputs ``x`` read at time ``t``: ``[T, tasks, n_in]``, or ``[T, 1, n_in]``
        for every task; with one task, any batch ``[T, batch, n_in]`` runs on its chip."""
        w = self.weights(t)
        if self.n_tasks == 1:
            w = w[0]
        elif x.shape[1] == 1:
            x = np.broadcast_to(x, (x.shape[0], self.n_tasks, x.shape[2]))
        return self.sim.run(x, record_spikes=record, weights=w)

    def write(self, delta: np.ndarray) -> np.ndarray:
        """Apply requested weight changes ``delta`` (levels, ``[tasks, synapses]``) at ``t_learn``.

        Rounded to whole levels (the device's programming step) except on ``float`` hardware,
        and clipped to the crossbar's range ``+-(L - 1)`` levels; returns which devices were written, ``[tasks, 2, synapses]`` (G+ and G-).
        """
        delta = np.asarray(delta, dtype=np.float64)
        if delta.shape != self.q.shape:
            raise SimulationError(f"delta has shape {list(delta.shape)}: expected [tasks, synapses] = {list(self.q.shape)}")
        if self.hardware == "float":
            # exact values; a changed weight stays in the crossbar's range
            new = np.where(delta != 0, np.clip(self.q + delta, -self.top, self.top), self.q)
            changed = new != self.q
            self.q = new
            written = np.stack([changed, changed], axis=1)
            self.writes += written
            return written
        new = np.clip(self.q + np.rint(delta).astype(np.int64), -self.top, self.top)
        old_pair, new_pair = np.stack(level_pairs(self.q), axis=1), np.stack(level_pairs(new), axis=1)
        written = old_pair != new_pair
        self.q = new
        self.writes += written
        if self.device is not None and written.any():
            target = self.g_min + new_pair[written].astype(np.float64) * self.dG
            factor = np.broadcast_to(self.factor, written.shape)[written]
            # a reversed device moves r times the requested change from where it is (at t_learn)
            now = self.g[written]
            target = np.where(factor != 1, np.clip(now + factor * (target - now), self.g_min, self.g_max), target)
            g, nu = self._program(target)
            stuck = np.broadcast_to(self.stuck, written.shape)[written] >= 0
            g = np.where(stuck, now, g)
            self.g[written], self.nu[written], self.t_programmed[written] = g, nu, self.t_learn
            self.g_ref[written] = g  # the controller reads a written column's reference again
        return written

    def _compensation(self, g_read: np.ndarray) -> np.ndarray:
        """Per task and synapse: its column's ``sum |G+ - G-|`` as programmed over the same at the read."""
        col = self.sites.tile * self.image.cols + self.sites.col
        _, inv = np.unique(col, return_inverse=True)
        n = int(inv.max(initial=-1)) + 1
        out = np.ones((self.n_tasks, col.size))
        for task in range(self.n_tasks):
            ref = np.bincount(inv, weights=np.abs(self.g_ref[task, 0] - self.g_ref[task, 1]), minlength=n)
            now = np.bincount(inv, weights=np.abs(g_read[task, 0] - g_read[task, 1]), minlength=n)
            with np.errstate(divide="ignore", invalid="ignore"):
                out[task] = np.where((ref > 0) & (now > 0), ref / now, 1.0)[inv]
        return out
