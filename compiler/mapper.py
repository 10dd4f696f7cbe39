"""The compiler's back end: a validated network IR in, a :class:`HardwareImage` out.

Passes, in order (``docs/architecture.md`` states the chip they target):

1. **Latency alignment.** On the chip a spike crosses one hop per step, while the IR allows
   zero-delay projections. Each population gets a latency ``L(P) >= 0`` (the longest path
   with ``L(target) >= L(source) + 1 - delay`` for neuron sources, ``>= -delay`` for inputs);
   a projection's routed delay is then ``delay + L(target) - L(source) - hop``, never negative,
   and the network's timing is kept exactly: outputs of network step t leave the chip in step
   ``t + L``. A cycle that would need a negative delay is rejected.
2. **Row keys.** Each synapse reads one row key ``(source element, routed delay)``. Neuron
   gains (``gain * syn_gain``) and input scales are folded into the weights, so neurons add
   their input unscaled.
3. **Partitioning** (``compiler/partition.py``) into groups of at most C neurons; a group needs
   ``ceil(rows / R)`` tiles, the first with the neurons and the rest with partial-sum columns.
4. **Quantisation** (``compiler/quantize.py``) with one scale per group (``scale="tile"``: a
   group's tiles add their column sums, so they share it) or per neuron (``"column"``);
   thresholds, resets, leaks and biases are divided by the neuron's scale, in level units
   (memristive) or fixed point (digital).
5. **Routing tables** from row keys, then **fault-aware placement** (``compiler/faults.py``)
   permuting rows, columns and tiles when a fault map is given.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from small import __version__
from small.errors import NetworkError, SmallWarning, UnsupportedError
from small.limits import CELL_BYTES, check_memory
from small.options import require

from .events import Geometry, describe
from .faults import FaultMap, achievable, identity_placement, place, placement_error
from .image import (COL_NEURON, COL_PARTIAL, FIRE_CODES, FORMAT, MODEL_CODES, NEURON_PARAMS, RESET_CODES, VERSION, Arithmetic,
                    HardwareImage)
from .ir import ALIF, IF, LI, CubaLI, CubaLIF, Network
from .partition import (METHODS, Synapses, distinct, evaluate, group_neurons, unique_inverse, unique_pairs,
                        unique_small)
from .quantize import best_scale, level_pairs, quantize, zeroing_outliers

TARGETS = ("digital", "memristive")
SCALE_MODES = ("tile", "column")


@dataclass
class CompileOptions:
    """What ``small compile`` was asked for. Geometry and levels are validated here."""

    target: str = "digital"
    rows: int = 64
    cols: int = 64
    levels: int = 16
    seed: int = 0
    max_tiles: int | None = None
    max_split: int = 16
    """Most tiles one neuron's inputs may be split across (the partial-sum merge's reach)."""
    partitioner: str = "auto"
    scale: str = "tile"
    """``"tile"``: one weight scale per tile group; ``"column"``: one per neuron (finer, same hardware)."""
    faults: FaultMap | None = None
    fault_aware: bool = True
    """With ``faults``: permute rows, columns and tiles so stuck devices hurt least (False: keep
    the identity placement, still programming partners to compensate; for comparisons)."""
    g_min_us: float = 0.1
    g_max_us: float = 25.0
    device: dict | None = None
    """A calibration's device (``model``, ``r_wire_ohm``), recorded in ``image.json`` ``device`` for
    ``sim/analog.py`` (``small compile --calibration``)."""
    arithmetic: Arithmetic = field(default_factory=Arithmetic)

    def validate(self) -> None:
        if self.target not in TARGETS:
            raise UnsupportedError(f"target {self.target!r} is not one of {', '.join(TARGETS)}")
        checks = [("count", "rows", self.rows), ("count", "cols", self.cols), ("levels", "levels", self.levels),
                  ("seed", "seed", self.seed), ("count", "max_split", self.max_split)]
        if self.max_tiles is not None:
            checks.append(("count", "max_tiles", self.max_tiles))
        require(*checks, error=UnsupportedError)  # the command line's rules, in the same words
        if self.scale not in SCALE_MODES:
            raise UnsupportedError(f"--scale {self.scale!r} is not one of {', '.join(SCALE_MODES)}")
        if self.partitioner not in METHODS:
            raise UnsupportedError(f"partitioner {self.partitioner!r} is not one of {', '.join(METHODS)}")
        if self.faults is not None:
            if self.target != "memristive":
                raise UnsupportedError("a fault map describes memristive devices: use --target memristive with --faults")
            f = self.faults
            if (f.rows, f.cols) != (self.rows, self.cols):
                raise UnsupportedError(
                    f"the fault map is for {f.rows}x{f.cols} tiles but --tile is {self.rows}x{self.cols}: "
                    f"use --tile {f.rows}x{f.cols} or a fault map for this geometry"
                )


@dataclass
class FaultReport:
    """What the chip's stuck devices did to the mapping (``report.json`` ``faults``)."""

    chip_tiles: int
    stuck_devices_on_chip: int
    used_cells_with_stuck_device: int
    stuck_error_rmse_naive: float
    """RMS weight error (in weight units, over used cells) with the identity placement."""
    stuck_error_rmse_placed: float
    """The same after fault-aware placement (equal to the naive one with ``fault_aware=False``)."""


@dataclass
class LowerBoundTerms:
    """The three bounds whose maximum is ``tiles_lower_bound``."""

    neurons_over_cols: int
    row_keys_over_rows: int
    column_segments_over_cols: int


@dataclass
class CompileReport:
    """What a compile found: the figures of ``report.json``.

    The compiler fills the mapping's figures; the measured ones (``inter_tile_events_per_step``,
    ``accuracy``, ``energy``, ``test_samples``) stay None until a test set has been run
    (:func:`small.flow.compile_build` sets them from :func:`sim.evaluate.measure`).
    :meth:`to_dict` is the file format.
    """

    network: str
    target: str
    tile: str
    """``"<rows>x<cols>"``."""
    levels: int
    seed: int
    neurons: int
    synapses_mapped: int
    tiles_used: int
    tiles_lower_bound: int
    lower_bound_terms: LowerBoundTerms
    partitioner: str
    """The partitioner that ran (``"auto"`` resolved)."""
    rows_used_per_tile: list[int]
    cols_used_per_tile: list[int]
    row_utilisation: float
    col_utilisation: float
    fan_in_splits: int
    """Neurons whose input rows span more than one tile."""
    routing_entries: int
    input_map_entries: int
    delay_slots: int
    latency: dict[str, int]
    """Steps from a network step to the population's update on the chip, per population."""
    quantisation_rmse: float
    quantisation_rmse_relative: float
    compile_seconds: float
    events: dict
    """The chip's address-event layouts (:func:`compiler.events.describe`)."""
    faults: FaultReport | None = None
    inter_tile_events_per_step: float | None = None
    accuracy: dict[str, float] | None = None
    """Test-set accuracy per simulation (``reference``, ``digital``, ``memristive_ideal``, ...)."""
    energy: dict | None = None
    """:func:`analog_models.energy.per_inference` on the example input (calibrated memristive builds)."""
    test_samples: int | None = None

    _OPTIONAL = ("faults", "accuracy", "energy", "test_samples")  # left out of the file when None

    def to_dict(self) -> dict[str, Any]:
        """``report.json``'s content (``inter_tile_events_per_step`` is written even when unknown)."""
        d = asdict(self)
        for key in self._OPTIONAL:
            if d[key] is None:
                del d[key]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CompileReport:
        """A report read back from ``report.json`` (keys this SMALL does not know are ignored)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        values["lower_bound_terms"] = LowerBoundTerms(**values["lower_bound_terms"])
        if values.get("faults") is not None:
            values["faults"] = FaultReport(**values["faults"])
        return cls(**values)


@dataclass
class CompileResult:
    image: HardwareImage
    report: CompileReport


# -------------------------------------------------------------------------------------------
def latencies(net: Network) -> dict[str, int]:
    """Per-population latency (pass 1 of the module docstring)."""
    inputs = {i.name for i in net.inputs}
    lat = {p.name: 0 for p in net.populations}
    for _ in range(len(lat) + 1):
        changed = False
        for proj in net.projections:
            need = (0 if proj.source in inputs else lat[proj.source] + 1) - proj.delay
            if need > lat[proj.target]:
                lat[proj.target] = need
                changed = True
        if not changed:
            return lat
    growing = sorted(lat, key=lambda n: -lat[n])[:4]
    raise UnsupportedError(
        f"a cycle through {', '.join(map(repr, growing))} spans fewer network steps than it has hops; on the chip "
        "every hop between neurons takes one step: give the cycle's projections delays of at least 1 each"
    )


def _per_neuron(value: Any, n: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)).copy()


def network_synapses(net: Network, lat: dict[str, int], input_scales: dict[str, float]):
    """All synapses as (target neuron, source element, routed delay, folded weight), merged per key."""
    pop_off, n = {}, 0
    for p in net.populations:
        pop_off[p.name], n = n, n + p.size
    in_off, n_in = {}, 0
    for i in net.inputs:
        in_off[i.name], n_in = n_in, n_in + i.size
    fold = np.concatenate([_fold(p.neuron, p.size) for p in net.populations]) if net.populations else np.zeros(0)
    tgts, srcs, dels, ws = [], [], [], []
    for proj in net.projections:
        w = proj.weight.tocoo() if proj.is_sparse else None
        if w is None:
            j, i = np.nonzero(proj.weight)
            vals = proj.weight[j, i]
        else:
            j, i, vals = w.row.astype(np.int64), w.col.astype(np.int64), w.data
        keep = vals != 0
        j, i, vals = j[keep], i[keep], vals[keep]
        tgt = pop_off[proj.target] + j
        if proj.source in in_off:
            src = in_off[proj.source] + i
            delay = proj.delay + lat[proj.target]
            vals = vals * input_scales.get(proj.source, 1.0)
        else:
            src = n_in + pop_off[proj.source] + i
            delay = proj.delay + lat[proj.target] - lat[proj.source] - 1
        tgts.append(tgt)
        srcs.append(src)
        dels.append(np.full(tgt.size, delay, dtype=np.int64))
        ws.append(vals * fold[tgt])
    if not tgts:
        return n, n_in, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    tgt, src, dly, w = (np.concatenate(a) for a in (tgts, srcs, dels, ws))
    # Parallel projections with the same routed delay share a row: sum them.
    span = int(dly.max()) + 1
    elem_key = src * span + dly
    combined = tgt * (int(elem_key.max()) + 1) + elem_key
    uniq, inv = unique_inverse(combined)  # np.unique's, from the projections' sorted runs
    w = np.bincount(inv, weights=w)
    tgt = uniq // (int(elem_key.max()) + 1)
    elem_key = uniq % (int(elem_key.max()) + 1)
    keep = w != 0
    return n, n_in, tgt[keep], elem_key[keep] // span, elem_key[keep] % span, w[keep]


def _fold(neuron: Any, size: int) -> np.ndarray:
    gain = _per_neuron(getattr(neuron, "gain", 1.0), size)
    if isinstance(neuron, (CubaLIF, CubaLI)):
        gain = gain * _per_neuron(neuron.syn_gain, size)
    return gain


def neuron_columns(net: Network, scale_of_neuron: np.ndarray, opts: CompileOptions) -> dict[str, np.ndarray]:
    """Per-neuron hardware parameters (level units, or fixed point for the digital target)."""
    out: dict[str, list[np.ndarray]] = {k: [] for k in (*NEURON_PARAMS, "refractory", "model", "reset", "fire")}
    off = 0
    for p in net.populations:
        n, nr = p.size, p.neuron
        u = scale_of_neuron[off : off + n]
        off += n

        def get(name: str, default: float = 0.0) -> np.ndarray:
            return _per_neuron(getattr(nr, name, default), n)

        alpha = np.ones(n) if isinstance(nr, IF) else get("alpha")
        v_leak = np.zeros(n) if isinstance(nr, IF) else get("v_leak")
        values = {
            "alpha": alpha,
            "alpha_syn": get("alpha_syn") if isinstance(nr, (CubaLIF, CubaLI)) else np.zeros(n),
            "alpha_adapt": get("alpha_adapt") if isinstance(nr, ALIF) else np.zeros(n),
            "leak": (1 - alpha) * v_leak / u,
            "v_init": v_leak / u,
            "threshold": np.zeros(n) if isinstance(nr, LI) else get("v_threshold") / u,
            "v_reset": np.zeros(n) if isinstance(nr, LI) else get("v_reset") / u,
            "adapt": get("adapt") / u if isinstance(nr, ALIF) else np.zeros(n),
            "bias": _per_neuron(p.bias, n) * _fold(nr, n) / u,
        }
        if opts.target == "digital":
            ar = opts.arithmetic
            limit = 1 << (ar.v_bits - 1)
            for name, v in values.items():
                if name.startswith("alpha"):
                    values[name] = np.rint(v * (1 << ar.decay_bits)).astype(np.int64)
                    continue
                q = np.rint(v * (1 << ar.frac_bits))
                if np.any(np.abs(q) >= limit):
                    raise UnsupportedError(
                        f"population {p.name!r}: {name} is {float(np.max(np.abs(v))):.4g} weight levels, beyond the "
                        f"{ar.v_bits}-bit neuron state: the weights are tiny next to the threshold; rescale the network"
                    )
                values[name] = q.astype(np.int64)
        ref = get("refractory").astype(np.int64) if nr.spiking else np.zeros(n, dtype=np.int64)
        if opts.target == "digital" and np.any(ref >= 1 << opts.arithmetic.refractory_bits):
            raise UnsupportedError(
                f"population {p.name!r}: refractory period {int(ref.max())} steps does not fit the "
                f"{opts.arithmetic.refractory_bits}-bit counter"
            )
        for name, v in values.items():
            out[name].append(v)
        out["refractory"].append(ref)
        if nr.kind not in MODEL_CODES:
            raise UnsupportedError(f"population {p.name!r} is a {nr.kind} neuron, which the chip's columns do not "
                                   f"implement ({', '.join(MODEL_CODES)}): simulate it with `small simulate` instead")
        out["model"].append(np.full(n, MODEL_CODES[nr.kind], dtype=np.int8))
        out["reset"].append(np.full(n, RESET_CODES[getattr(nr, "reset", "zero")], dtype=np.int8))
        out["fire"].append(np.full(n, FIRE_CODES[">=" if getattr(nr, "fire_at_threshold", False) else ">"],
                                   dtype=np.int8))
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in out.items()}


def _limit_split(grouping, syn: Synapses, rows: int, max_split: int) -> list[np.ndarray]:
    """Halve groups whose rows need more than ``max_split`` tiles until each fits."""
    too_wide = {g for g, r in enumerate(grouping.rows) if math.ceil(r / rows) > max_split}
    if not too_wide:
        return grouping.groups
    group_of = np.full(syn.n, -1, dtype=np.int64)
    for g in too_wide:
        group_of[grouping.groups[g]] = g
    order = np.argsort(group_of[syn.target], kind="stable")  # synapses of the wide groups, by group
    bounds = np.searchsorted(group_of[syn.target][order], np.arange(len(grouping.groups) + 1))
    out: list[np.ndarray] = []
    for g, members in enumerate(grouping.groups):
        if g not in too_wide:
            out.append(members)
            continue
        own = order[bounds[g] : bounds[g + 1]]
        stack = [members]
        while stack:
            part = stack.pop()
            keys = syn.key[own[np.isin(syn.target[own], part)]]
            if part.size == 1 or math.ceil(distinct(keys).size / rows) <= max_split:
                out.append(part)
            else:
                stack.extend([part[part.size // 2:], part[: part.size // 2]])
    return out


# -------------------------------------------------------------------------------------------
def compile_network(net: Network, opts: CompileOptions, *, source_sha256: str = "", source_name: str = "",
                    input_scales: dict[str, float] | None = None) -> CompileResult:
    """Map ``net`` onto tiles (the passes in the module docstring)."""
    t_start = time.perf_counter()
    opts.validate()
    net.validate()
    if not net.populations:
        raise NetworkError("the network has no neurons to compile")
    R, C, L = opts.rows, opts.cols, opts.levels
    input_scales = dict(input_scales or {})
    lat = latencies(net)
    n, n_in, tgt, elem, dly, w = network_synapses(net, lat, input_scales)
    # Row keys: distinct (source element, routed delay).
    span = int(dly.max(initial=0)) + 1
    key_code, key = unique_small(elem * span + dly, (n_in + n) * span)
    key_elem, key_delay = key_code // span, key_code % span
    key_source = np.where(key_elem >= n_in, key_elem - n_in, -1)
    syn = Synapses(n=n, target=tgt, key=key.astype(np.int64), key_source=key_source)

    fan_in = np.bincount(tgt, minlength=n)
    worst = int(np.argmax(fan_in)) if n else 0
    if n and math.ceil(fan_in[worst] / R) > opts.max_split:
        pop, idx = _neuron_name(net, worst)
        raise UnsupportedError(
            f"neuron {idx} of population {pop!r} reads {int(fan_in[worst])} rows, more than {opts.max_split} tiles x {R} rows "
            f"= {opts.max_split * R} even when its inputs are split: use taller tiles (--tile {R * 2}x{C}) or --max-split "
            f"{math.ceil(fan_in[worst] / R)}"
        )
    grouping = group_neurons(syn, R, C, method=opts.partitioner, seed=opts.seed)
    groups = _limit_split(grouping, syn, R, opts.max_split)
    if len(groups) != len(grouping.groups):
        grouping = evaluate(grouping.method, syn, groups, R)
    if opts.max_tiles is not None and grouping.tiles > opts.max_tiles:
        raise UnsupportedError(
            f"the network needs {grouping.tiles} tiles of {R}x{C} but --max-tiles is {opts.max_tiles} "
            f"({grouping.tiles - opts.max_tiles} too many): use larger tiles or raise --max-tiles"
        )

    # -- tiles: group g occupies tiles base[g] .. base[g] + ceil(rows_g / R) - 1 ------------
    G = len(groups)
    group_of = np.empty(n, dtype=np.int64)
    col_of = np.empty(n, dtype=np.int64)
    for g, members in enumerate(groups):
        group_of[members] = g
        col_of[members] = np.arange(members.size)
    n_seg = np.maximum(1, -(-grouping.rows // R))
    base = np.concatenate([[0], np.cumsum(n_seg)[:-1]]).astype(np.int64)
    T = int(n_seg.sum())
    check_memory(T * R * C * CELL_BYTES, f"the image ({T} tiles of {R}x{C}, {T * R * C} cells)", error=UnsupportedError)
    if opts.faults is not None and T > opts.faults.tiles:
        raise UnsupportedError(
            f"the network needs {T} tiles but the fault map's chip has {opts.faults.tiles}: use a fault map for a larger chip"
        )
    pairs, pair_of_syn = unique_pairs(group_of[tgt], G, syn.key, syn.n_keys)
    pair_group, pair_key = pairs // syn.n_keys, pairs % syn.n_keys
    first = np.searchsorted(pair_group, np.arange(G))
    rank = np.arange(pairs.size) - first[pair_group]
    pair_tile = base[pair_group] + rank // R
    pair_row = rank % R

    # -- quantisation: one scale per group (all its tiles) or per neuron ------------------
    owner = group_of[tgt] if opts.scale == "tile" else tgt
    n_owner = G if opts.scale == "tile" else n
    order = np.argsort(owner, kind="stable")
    bounds = np.searchsorted(owner[order], np.arange(n_owner + 1))
    scales = np.array([best_scale(w[order[bounds[o] : bounds[o + 1]]], L) for o in range(n_owner)])
    scale_n = scales[group_of] if opts.scale == "tile" else scales  # weight per level, per neuron
    q = quantize(w, scale_n[tgt], L)
    syn_tile, syn_row, syn_col = pair_tile[pair_of_syn], pair_row[pair_of_syn], col_of[tgt]
    q_tiles = np.zeros((T, R, C), dtype=np.int16)  # |q| <= 255; int16 keeps 100k-neuron chips in memory
    q_tiles[syn_tile, syn_row, syn_col] = q
    err = w - q * scale_n[tgt]
    # outlying weights that set their group's scale and zero most of the others are named, and
    # the error is reported over the weights they ruined: their own exact levels would hide them
    outliers = zeroing_outliers(w, q, owner, scales, L)
    if outliers:
        top = outliers[0][1][0]
        warnings.warn(_outlier_warning(net, outliers, elem[top], tgt[top], n_in,
                                       "tile group" if opts.scale == "tile" else "neuron", L), SmallWarning)
    rest = np.ones(w.size, dtype=bool)
    for _, members, _ in outliers:
        rest[members] = False
    w_rms = float(np.sqrt(np.mean(w[rest] ** 2))) if rest.any() else 0.0
    q_rmse = float(np.sqrt(np.mean(err[rest] ** 2))) if rest.any() else 0.0

    # -- columns ------------------------------------------------------------------------
    cols = neuron_columns(net, scale_n, opts)
    home_tile = base[group_of]
    pdtype = np.int64 if opts.target == "digital" else np.float64
    col_kind = np.zeros((T, C), dtype=np.int8)
    col_model = np.zeros((T, C), dtype=np.int8)
    col_reset = np.zeros((T, C), dtype=np.int8)
    col_fire = np.zeros((T, C), dtype=np.int8)
    merge_to = np.full((T, C), -1, dtype=np.int32)
    params = {name: np.zeros((T, C), dtype=pdtype) for name in NEURON_PARAMS}
    refractory = np.zeros((T, C), dtype=np.int64)
    col_scale = np.ones((T, C))
    start = np.zeros((T, C), dtype=np.int64)
    col_kind[home_tile, col_of] = COL_NEURON
    col_model[home_tile, col_of] = cols["model"]
    col_reset[home_tile, col_of] = cols["reset"]
    col_fire[home_tile, col_of] = cols["fire"]
    for name in NEURON_PARAMS:
        params[name][home_tile, col_of] = cols[name]
    refractory[home_tile, col_of] = cols["refractory"]
    col_scale[home_tile, col_of] = scale_n
    start[home_tile, col_of] = np.concatenate([np.full(p.size, lat[p.name]) for p in net.populations])
    for extra in range(1, int(n_seg.max(initial=1))):
        split = n_seg[group_of] > extra
        col_kind[home_tile[split] + extra, col_of[split]] = COL_PARTIAL
        merge_to[home_tile[split] + extra, col_of[split]] = home_tile[split] * C + col_of[split]
        col_scale[home_tile[split] + extra, col_of[split]] = scale_n[split]
    row_used = np.zeros((T, R), dtype=bool)
    row_used[pair_tile, pair_row] = True

    # -- fault-aware placement ------------------------------------------------------------
    placement = identity_placement(T, R, C)
    fault_report: FaultReport | None = None
    if opts.faults is None:
        g_pos, g_neg = level_pairs(q_tiles)
    else:
        fmap = opts.faults
        used = row_used[:, :, None] & (col_kind > 0)[:, None, :]
        importance = used * col_scale[:, None, :] ** 2
        err_naive = placement_error(q_tiles, importance, fmap, L, placement)
        if opts.fault_aware:
            placement = place(q_tiles, importance, fmap, L)
        err_placed = placement_error(q_tiles, importance, fmap, L, placement)
        # Everything below is in physical coordinates: tile t's row r sits at row_perm[t][r].
        tix, rp_, cp_ = np.arange(T)[:, None, None], placement.row_perm[:, :, None], placement.col_perm[:, None, :]
        q_phys = np.zeros_like(q_tiles)
        q_phys[tix, rp_, cp_] = q_tiles
        used_phys = np.zeros_like(used)
        used_phys[tix, rp_, cp_] = used
        sp_all, sn_all = fmap.levels(L)
        stuck_pos, stuck_neg = sp_all[placement.tile_phys], sn_all[placement.tile_phys]
        g_pos, g_neg = achievable(q_phys, stuck_pos, stuck_neg, L)
        g_pos, g_neg = g_pos.astype(np.uint8), g_neg.astype(np.uint8)
        n_used = max(1, int(used.sum()))
        fault_report = FaultReport(
            chip_tiles=fmap.tiles,
            stuck_devices_on_chip=int((fmap.stuck >= 0).sum()),
            used_cells_with_stuck_device=int(np.sum(used_phys & ((stuck_pos >= 0) | (stuck_neg >= 0)))),
            stuck_error_rmse_naive=math.sqrt(err_naive / n_used),
            stuck_error_rmse_placed=math.sqrt(err_placed / n_used),
        )
    rp, cp = placement.row_perm, placement.col_perm

    def permute_cols(arr: np.ndarray) -> np.ndarray:
        out = np.zeros_like(arr)
        out[np.arange(T)[:, None], cp] = arr
        return out

    addr_map = (np.arange(T)[:, None] * C + cp).reshape(-1)  # logical column address -> physical
    merge_to = np.where(merge_to >= 0, addr_map[np.maximum(merge_to, 0)], -1).astype(np.int32)

    # -- routing tables -------------------------------------------------------------------
    dest_tile = pair_tile
    dest_row = rp[pair_tile, pair_row]
    dest_delay = key_delay[pair_key]
    src_elem = key_elem[pair_key]
    neuron_src = src_elem >= n_in
    src_neuron = src_elem[neuron_src] - n_in
    src_addr = home_tile[src_neuron] * C + cp[home_tile[src_neuron], col_of[src_neuron]]
    route_ptr, route_t, route_r, route_d = _table(src_addr, dest_tile[neuron_src], dest_row[neuron_src],
                                                  dest_delay[neuron_src], T * C)
    input_ptr, in_t, in_r, in_d = _table(src_elem[~neuron_src], dest_tile[~neuron_src], dest_row[~neuron_src],
                                         dest_delay[~neuron_src], n_in)
    delay_slots = int(max(route_d.max(initial=0), in_d.max(initial=0))) + 1

    host_out = np.zeros((T, C), dtype=bool)
    arrays: dict[str, np.ndarray] = {
        "g_pos": g_pos, "g_neg": g_neg, "scale": permute_cols(col_scale),
        "tile_phys": placement.tile_phys.astype(np.int32),
        "col_kind": permute_cols(col_kind), "col_model": permute_cols(col_model), "col_reset": permute_cols(col_reset),
        "col_fire": permute_cols(col_fire),
        "merge_to": permute_cols(merge_to), "param/refractory": permute_cols(refractory),
        "param/start": permute_cols(start),
        "route_ptr": route_ptr, "route_tile": route_t, "route_row": route_r, "route_delay": route_d,
        "input_ptr": input_ptr, "input_tile": in_t, "input_row": in_r, "input_delay": in_d,
    }
    for name in NEURON_PARAMS:
        arrays[f"param/{name}"] = permute_cols(params[name])
    if opts.faults is not None:
        arrays["stuck_pos"], arrays["stuck_neg"] = stuck_pos.astype(np.int16), stuck_neg.astype(np.int16)
    off = 0
    populations, pop_index = [], {}
    for p in net.populations:
        idx = np.arange(off, off + p.size)
        off += p.size
        pop_index[p.name] = idx
        arrays[f"pop/{p.name}/tile"] = home_tile[idx].astype(np.int32)
        arrays[f"pop/{p.name}/col"] = cp[home_tile[idx], col_of[idx]].astype(np.int32)
        populations.append({"name": p.name, "model": p.neuron.kind, "size": p.size, "latency": lat[p.name],
                            "reset": getattr(p.neuron, "reset", None)})
    outputs = []
    for out_name, pop_name in net.outputs.items():
        idx = pop_index[pop_name]
        pop = net.population(pop_name)
        host_out[home_tile[idx], cp[home_tile[idx], col_of[idx]]] = True
        entry = {"name": out_name, "population": pop_name, "size": pop.size, "latency": lat[pop_name],
                 "kind": "spikes" if pop.neuron.spiking else "value"}
        if not pop.neuron.spiking:
            arrays[f"output/{out_name}/value_scale"] = scale_n[idx].astype(np.float64)
        outputs.append(entry)
    arrays["host_out"] = host_out

    meta: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "toolchain": f"small {__version__}", "target": opts.target,
        "network": {"name": net.name, "source": source_name, "sha256": source_sha256, "dt": net.dt},
        "seed": opts.seed, "tile": {"rows": R, "cols": C}, "levels": L, "n_tiles": T,
        "chip_tiles": opts.faults.tiles if opts.faults is not None else T,
        "delay_slots": delay_slots,
        "inputs": [{"name": i.name, "size": i.size, "shape": list(i.shape), "scale": float(input_scales.get(i.name, 1.0))}
                   for i in net.inputs],
        "populations": populations, "outputs": outputs,
        "options": {"partitioner": opts.partitioner, "max_split": opts.max_split, "max_tiles": opts.max_tiles,
                    "scale": opts.scale},
    }
    if opts.target == "digital":
        meta["arithmetic"] = opts.arithmetic.to_dict()
    else:
        meta["device"] = {"g_min_uS": opts.g_min_us, "g_max_uS": opts.g_max_us, **(opts.device or {})}
    image = HardwareImage(meta, arrays).validate()

    rows_used = row_used.sum(axis=1)
    cols_used = (arrays["col_kind"] > 0).sum(axis=1)
    seg_bound = math.ceil(float(np.sum(np.maximum(1, -(-fan_in // R)))) / C)
    terms = LowerBoundTerms(neurons_over_cols=math.ceil(n / C), row_keys_over_rows=math.ceil(syn.n_keys / R),
                            column_segments_over_cols=seg_bound)
    report = CompileReport(
        network=net.name, target=opts.target, tile=f"{R}x{C}", levels=L, seed=opts.seed,
        neurons=n, synapses_mapped=int(w.size),
        tiles_used=T, tiles_lower_bound=max(terms.neurons_over_cols, terms.row_keys_over_rows, seg_bound),
        lower_bound_terms=terms, partitioner=grouping.method,
        rows_used_per_tile=rows_used.tolist(), cols_used_per_tile=cols_used.tolist(),
        row_utilisation=float(rows_used.sum() / (T * R)), col_utilisation=float(cols_used.sum() / (T * C)),
        fan_in_splits=int(np.sum(n_seg[group_of] > 1)),
        routing_entries=int(route_t.size), input_map_entries=int(in_t.size),
        delay_slots=delay_slots, latency=lat,
        quantisation_rmse=q_rmse, quantisation_rmse_relative=q_rmse / w_rms if w_rms else 0.0,
        compile_seconds=time.perf_counter() - t_start,
        events=describe(Geometry.of(image)), faults=fault_report,
    )
    return CompileResult(image, report)


def input_scales_for(net: Network, x: np.ndarray) -> dict[str, float]:
    """``compile_network``'s ``input_scales`` for example inputs ``x`` ``[T, N, ...]`` (a test set's).

    Inputs travel as signed 8-bit events (``docs/architecture.md``, "Host inputs"): values that
    are not all integers in ``[-127, 127]`` get ``s_in = max|x| / 127``. Only a network with one
    input is scaled (the test set holds one array); spike inputs keep ``s_in = 1`` (no entry).
    """
    if len(net.inputs) != 1:
        return {}
    integral = x.dtype.kind in "biu" or bool(np.all(x == np.rint(x)))
    top = float(np.max(np.abs(x))) if x.size else 0.0
    if top > 0 and not (integral and top <= 127):
        return {net.inputs[0].name: top / 127.0}
    return {}


def _table(src: np.ndarray, tile: np.ndarray, row: np.ndarray, delay: np.ndarray, n_sources: int):
    """CSR routing table sorted by source, then destination tile and row."""
    order = np.lexsort((row, tile, src))
    ptr = np.zeros(n_sources + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=n_sources), out=ptr[1:])
    return ptr, tile[order].astype(np.int32), row[order].astype(np.int32), delay[order].astype(np.int16)


def _outlier_warning(net: Network, outliers: list[tuple[int, np.ndarray, float]], elem: int, target: int, n_in: int,
                     group: str, levels: int) -> str:
    """The one line that names the worst zeroing outlier (:func:`compiler.quantize.zeroing_outliers`)."""
    _, members, zeroed = outliers[0]
    tgt_pop, j = _neuron_name(net, target)
    if elem < n_in:
        src, i = _element_name(net.inputs, elem)
    else:
        src, i = _neuron_name(net, elem - n_in)
    # the projection's own value (parallel projections with one routed delay share a synapse)
    proj = max((p for p in net.projections if p.source == src and p.target == tgt_pop),
               key=lambda p: abs(float(p.weight[j, i])))
    alone = "alone" if members.size == 1 else f"with {members.size - 1} more as large"
    more = f" (and in {len(outliers) - 1} other {group}s)" if len(outliers) > 1 else ""
    return (f"weight [{j}, {i}] = {float(proj.weight[j, i]):.4g} of projection {src!r} -> {tgt_pop!r} sets its {group}'s "
            f"scale {alone}: {zeroed * 100:.1f} % of that {group}'s weights quantise to zero at {levels} levels{more}; "
            "clip or fix that weight (a unit or export error?)")


def _element_name(items, index: int) -> tuple[str, int]:
    """The item (an input or population, in order) and its element holding flat ``index``."""
    off = 0
    for item in items:
        if index < off + item.size:
            return item.name, index - off
        off += item.size
    raise IndexError(index)


def _neuron_name(net: Network, index: int) -> tuple[str, int]:
    return _element_name(net.populations, index)


def inter_tile_events_per_step(image: HardwareImage, spike_counts: np.ndarray, steps: int, batch: int) -> float:
    """Inter-tile events per step: each spike times the tiles (other than its own) it is routed to."""
    a, C = image.arrays, image.cols
    pairs = distinct(image.route_sources("route") * image.n_tiles + a["route_tile"])
    s, t = pairs // image.n_tiles, pairs % image.n_tiles
    remote = np.bincount(s[t != s // C], minlength=image.n_tiles * C)
    return float(np.sum(spike_counts * remote[image.neuron_addresses()])) / max(1, steps * batch)
