"""Chip fault maps (stuck and reversed devices) and fault-aware placement.

Fault map file (JSON, ``docs/hardware-image.md`` "Fault maps")::

    {"format": "small-faults", "version": 2,
     "geometry": {"tiles": 16, "rows": 64, "cols": 64},
     "stuck": [[tile, row, col, "pos"|"neg", "high"|"low"], ...],
     "reversed": [[tile, row, col, "pos"|"neg", factor], ...]}

A device stuck *high* sits at the top level ``L - 1`` (G_max), stuck *low* at level 0 (G_min),
whatever it is programmed to. A *reversed* device moves the wrong way when written: every
requested change is multiplied by its update factor (negative; the TiOx devices of the
fault-pruning work, Kraisnikovic et al. 2023, measured factors around N(-1, 0.5), which
:func:`random_faults` draws and clips to [-2, -0.1] as that work's code does). A map without
reversed devices is written as version 1, byte for byte as before; ``reversed`` needs version 2.

The chip programs a device by program-and-verify (pulses with read-back) from its reset state
G_min -- this model's assumption: a reversed device pushed up moves down and stays at G_min, so once
programmed it holds level 0 whatever it was asked for. :meth:`FaultMap.levels` therefore reports
it as stuck at level 0, and the compiler places and compensates it as such (an image's
``stuck_pos``/``stuck_neg`` include it). Its factor matters when it is written again in the field:
``l2l/hardware.py`` moves it ``factor`` times each requested change.

**Placement.** A stuck device hurts less when its partner can compensate: with ``l+`` stuck at
``a`` the pair still reaches ``q`` when ``a - q`` is a level, and so on. For each logical tile
the compiler chooses a physical tile, a row permutation and a column permutation that minimise
the summed squared weight error (in weight units) of the used cells. Tiles are assigned with
``scipy.optimize.linear_sum_assignment`` on the error at identity permutations (on large chips,
on the summed importance of used cells that meet a stuck device); within a tile,
rows and then columns are assigned with ``linear_sum_assignment`` in turn (each step solves
its assignment exactly given the other permutation, so the error never increases) until
neither improves.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from small.errors import FileFormatError, UnsupportedError
from small.fileio import atomic_output
from small.options import require

from small.schema import check

from .schemas import FAULTS_SCHEMA

FORMAT = "small-faults"
VERSION = 2
#: What an older map (no reversed devices) says it is; such maps are still written so.
VERSION_STUCK_ONLY = 1
#: Update factors of reversed devices: N(REVERSED_MEAN, REVERSED_STD) clipped to REVERSED_CLIP
#: (TiOx, Kraisnikovic et al. 2023; the clip is that work's code's, IGITUGraz/Fault-Pruning).
REVERSED_MEAN, REVERSED_STD, REVERSED_CLIP = -1.0, 0.5, (-2.0, -0.1)
DEVICES = {"pos": 0, "neg": 1}
STATES = ("high", "low")
ROUNDS = 4
# Above this many (logical tile x physical tile x cell) terms the tile assignment uses an estimate.
EXACT_TILE_COST_CELLS = 200_000_000
#: Most devices a fault map may describe (an int8 each, 256 MiB; 4096 tiles of 128x256, say): the
#: geometry is checked against it before the map is allocated.
MAX_DEVICES = 2**28


@dataclass
class FaultMap:
    """Faulty devices of a chip: ``stuck[tile, row, col, device]`` is -1 (healthy), 0 (low) or 1 (high);
    ``factor[tile, row, col, device]`` (float, None: no reversed device) is a reversed device's
    negative update factor and 1 elsewhere."""

    stuck: np.ndarray
    factor: np.ndarray | None = None

    @property
    def reversed(self) -> np.ndarray:
        """Which devices are reversed (bool, the shape of ``stuck``)."""
        return np.zeros(self.stuck.shape, dtype=bool) if self.factor is None else self.factor != 1

    @property
    def tiles(self) -> int:
        return int(self.stuck.shape[0])

    @property
    def rows(self) -> int:
        return int(self.stuck.shape[1])

    @property
    def cols(self) -> int:
        return int(self.stuck.shape[2])

    def levels(self, levels: int) -> tuple[np.ndarray, np.ndarray]:
        """Levels the ``pos`` and ``neg`` devices hold whatever is programmed, ``-1`` where they
        follow: stuck devices at theirs, reversed devices at 0 (see the module docstring)."""
        low = (self.stuck == 0) | self.reversed
        lv = np.where(self.stuck == 1, levels - 1, np.where(low, 0, -1)).astype(np.int16)
        return lv[..., 0], lv[..., 1]

    def to_json(self) -> dict:
        t, r, c, d = np.nonzero(self.stuck >= 0)
        entries = [[int(a), int(b), int(e), "pos" if f == 0 else "neg", "high" if self.stuck[a, b, e, f] == 1 else "low"]
                   for a, b, e, f in zip(t, r, c, d)]
        doc = {"format": FORMAT, "version": VERSION_STUCK_ONLY,
               "geometry": {"tiles": self.tiles, "rows": self.rows, "cols": self.cols}, "stuck": entries}
        if self.reversed.any():
            t, r, c, d = np.nonzero(self.reversed)
            doc["version"] = VERSION
            doc["reversed"] = [[int(a), int(b), int(e), "pos" if f == 0 else "neg", float(self.factor[a, b, e, f])]
                               for a, b, e, f in zip(t, r, c, d)]
        return doc


def random_faults(tiles: int, rows: int, cols: int, rate: float, *, seed: int = 0, high_fraction: float = 0.5,
                  reversed_rate: float = 0.0) -> FaultMap:
    """Each device independently stuck with probability ``rate``; stuck high with ``high_fraction``;
    of the others, reversed with probability ``reversed_rate / (1 - rate)`` (so that a fraction
    ``reversed_rate`` of all devices is reversed), with factors drawn as :data:`REVERSED_MEAN`,
    :data:`REVERSED_STD` and :data:`REVERSED_CLIP` say. With ``reversed_rate = 0`` the draw is the
    one this function always made (same seed, same map)."""
    # the words of `small faults random`'s checks
    require(("count", "tiles", tiles), ("count", "rows", rows), ("count", "cols", cols), ("fraction", "rate", rate),
            ("fraction", "high_fraction", high_fraction), ("fraction", "reversed_rate", reversed_rate),
            error=UnsupportedError)
    if rate + reversed_rate > 1:
        raise UnsupportedError(f"stuck rate {rate!r} plus reversed rate {reversed_rate!r} is more than 1: a device is "
                               "stuck or reversed, not both")
    try:
        rng = np.random.default_rng(seed)
    except (TypeError, ValueError):
        raise UnsupportedError(f"seed {seed!r} is not a whole number >= 0") from None
    shape = (tiles, rows, cols, 2)
    if math.prod(shape) > MAX_DEVICES:  # what load_faults would refuse, refused before the allocation
        raise UnsupportedError(f"{tiles} tiles of {rows}x{cols} hold {math.prod(shape)} devices, more than the "
                               f"{MAX_DEVICES} a fault map may describe")
    stuck = np.where(rng.random(shape) < rate, (rng.random(shape) < high_fraction).astype(np.int8), -1).astype(np.int8)
    if not reversed_rate:
        return FaultMap(stuck)
    flip = (stuck < 0) & (rng.random(shape) < reversed_rate / (1.0 - rate))
    factor = np.ones(shape, dtype=np.float64)
    factor[flip] = np.clip(rng.normal(REVERSED_MEAN, REVERSED_STD, int(flip.sum())), *REVERSED_CLIP)
    return FaultMap(stuck, factor)


def save_faults(fmap: FaultMap, path: str | os.PathLike) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(fmap.to_json(), separators=(",", ":")) + "\n")



def _devices(entries: list, key: str, shape: tuple, geo: dict, what: str, fix: str) -> np.ndarray:
    """Flat indices into the ``shape`` device array of fault-map entries ``[tile, row, col, device, ...]``;
    ``FileFormatError`` for an entry outside the geometry or a device named twice."""
    index = np.array([entry[:3] for entry in entries], dtype=np.int64)
    outside = np.flatnonzero(np.any(index >= np.array(shape[:3]), axis=1))
    if outside.size:
        i = int(outside[0])
        raise FileFormatError(f"invalid {what}: {key}[{i}] {entries[i]} lies outside the geometry "
                              f"{geo['tiles']} tiles of {geo['rows']}x{geo['cols']}")
    device = np.array([DEVICES[entry[3]] for entry in entries], dtype=np.int64)
    flat = np.ravel_multi_index((*index.T, device), shape)
    order = np.argsort(flat, kind="stable")
    twice = np.flatnonzero(flat[order][1:] == flat[order][:-1])
    if twice.size:
        a, b = sorted(int(i) for i in order[twice[0]:twice[0] + 2])
        raise FileFormatError(f"invalid {what}: {key}[{a}] {entries[a]} and {key}[{b}] {entries[b]} name the "
                              f"same device: {fix}")
    return flat

def load_faults(path: str | os.PathLike) -> FaultMap:
    """Read and check a fault map; :class:`FileFormatError` naming the problem.

    The file holds :data:`~compiler.schemas.FAULTS_SCHEMA` (integer indices, known devices and
    states, a bounded geometry) before anything is allocated; then every index must lie inside
    the geometry, the chip must fit :data:`MAX_DEVICES`, and no device may be listed twice
    (stuck high and stuck low at once, say).
    """
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"fault map {str(path)!r} does not exist (make one with `small faults random`)")
    try:
        doc = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise FileFormatError(f"fault map {path} is not valid JSON ({exc})") from None
    what = f"fault map {path}"
    if isinstance(doc, dict) and doc.get("format") == FORMAT and isinstance(doc.get("version"), int) \
            and not isinstance(doc["version"], bool) and doc["version"] > VERSION:
        raise FileFormatError(f"{what} has version {doc['version']}; this SMALL reads up to {VERSION}: upgrade SMALL")
    check(FAULTS_SCHEMA, doc, what)
    geo = doc["geometry"]
    shape = (geo["tiles"], geo["rows"], geo["cols"], 2)
    if math.prod(shape) > MAX_DEVICES:
        raise FileFormatError(f"invalid {what}: geometry {geo['tiles']} tiles of {geo['rows']}x{geo['cols']} holds "
                              f"{math.prod(shape)} devices, more than the {MAX_DEVICES} a fault map may describe")
    stuck = np.full(shape, -1, dtype=np.int8)
    entries = doc["stuck"]
    if entries:
        flat = _devices(entries, "stuck", shape, geo, what, "list each stuck device once, high or low")
        stuck.reshape(-1)[flat] = [1 if entry[4] == "high" else 0 for entry in entries]
    reversed_entries = doc.get("reversed", [])
    if not reversed_entries:
        return FaultMap(stuck)
    if doc["version"] < VERSION:
        raise FileFormatError(f"invalid {what}: reversed devices need version {VERSION}, the file says {doc['version']}")
    flat = _devices(reversed_entries, "reversed", shape, geo, what, "list each reversed device once")
    both = np.flatnonzero(stuck.reshape(-1)[flat] >= 0)
    if both.size:
        i = int(both[0])
        raise FileFormatError(f"invalid {what}: reversed[{i}] {reversed_entries[i]} is also listed as stuck: a device "
                              "is stuck or reversed, not both")
    factor = np.ones(shape, dtype=np.float64)
    factor.reshape(-1)[flat] = [float(entry[4]) for entry in reversed_entries]
    return FaultMap(stuck, factor)


# -- error of a stuck pair -------------------------------------------------------------------
def achievable(q: np.ndarray, stuck_pos: np.ndarray, stuck_neg: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Levels ``(l+, l-)`` closest to the signed target ``q`` given stuck devices (-1 = healthy)."""
    top = levels - 1
    pos = np.maximum(q, 0)
    neg = np.maximum(-q, 0)
    sp_, sn = stuck_pos >= 0, stuck_neg >= 0
    # One device stuck: the partner compensates as far as its range allows.
    pos = np.where(sn & ~sp_, np.clip(q + stuck_neg, 0, top), pos)
    neg = np.where(sp_ & ~sn, np.clip(stuck_pos - q, 0, top), neg)
    pos = np.where(sp_, stuck_pos, pos)
    neg = np.where(sn, stuck_neg, neg)
    return pos, neg


def cell_error(q: np.ndarray, stuck_pos: np.ndarray, stuck_neg: np.ndarray, levels: int) -> np.ndarray:
    """Squared error in levels of each cell (broadcasting)."""
    pos, neg = achievable(q, stuck_pos, stuck_neg, levels)
    return (q - (pos - neg)).astype(np.float64) ** 2


@dataclass
class Placement:
    """Where each logical tile went: ``tile_phys[t]``, ``row_perm[t][r]``, ``col_perm[t][c]`` (physical index)."""

    tile_phys: np.ndarray
    row_perm: np.ndarray
    col_perm: np.ndarray


def identity_placement(n_tiles: int, rows: int, cols: int) -> Placement:
    return Placement(np.arange(n_tiles), np.tile(np.arange(rows), (n_tiles, 1)), np.tile(np.arange(cols), (n_tiles, 1)))


def placement_error(q: np.ndarray, weight: np.ndarray, fmap: FaultMap, levels: int, pl: Placement) -> float:
    """Summed squared weight error of a placement: ``weight`` is each cell's squared scale (0 if unused)."""
    sp_all, sn_all = fmap.levels(levels)
    total = 0.0
    for t in range(q.shape[0]):
        p = pl.tile_phys[t]
        spm = sp_all[p][np.ix_(pl.row_perm[t], pl.col_perm[t])]
        snm = sn_all[p][np.ix_(pl.row_perm[t], pl.col_perm[t])]
        total += float(np.sum(cell_error(q[t], spm, snm, levels) * weight[t]))
    return total


def place(q: np.ndarray, weight: np.ndarray, fmap: FaultMap, levels: int) -> Placement:
    """Fault-aware placement of logical tiles ``q[t, row, col]`` (see the module docstring).

    ``weight[t, r, c]`` is the squared weight scale of a cell whose row is fed and whose column
    holds a neuron or a partial sum, and 0 elsewhere: errors count in weight units, used cells only.
    """
    T, R, C = q.shape
    sp_all, sn_all = fmap.levels(levels)
    if T * fmap.tiles * R * C <= EXACT_TILE_COST_CELLS:
        # Tile assignment on the exact identity-permutation error.
        cost = np.zeros((T, fmap.tiles))
        for t in range(T):
            cost[t] = np.sum(cell_error(q[t][None], sp_all, sn_all, levels) * weight[t][None], axis=(1, 2))
    else:
        # Large chips: the importance of the used cells that meet a stuck device, one matrix
        # product; the row and column assignments below then work on the exact error.
        stuck = ((sp_all >= 0) | (sn_all >= 0)).reshape(fmap.tiles, -1).astype(np.float32)
        cost = weight.reshape(T, -1).astype(np.float32) @ stuck.T
    _, tile_phys = linear_sum_assignment(cost)
    pl = identity_placement(T, R, C)
    pl.tile_phys = tile_phys
    for t in range(T):
        spt, snt = sp_all[tile_phys[t]], sn_all[tile_phys[t]]
        rp, cp = pl.row_perm[t], pl.col_perm[t]
        best = np.inf
        for _ in range(ROUNDS):
            # rows: cost[i, r] = error of logical row i on physical row r, columns as placed.
            e = cell_error(q[t][:, None, :], spt[None, :, cp], snt[None, :, cp], levels) * weight[t][:, None, :]
            _, rp = linear_sum_assignment(e.sum(axis=2))
            e = cell_error(q[t].T[:, None, :], spt[rp].T[None, :, :], snt[rp].T[None, :, :], levels) * weight[t].T[:, None, :]
            _, cp = linear_sum_assignment(e.sum(axis=2))
            err = float(np.sum(cell_error(q[t], spt[np.ix_(rp, cp)], snt[np.ix_(rp, cp)], levels) * weight[t]))
            if not err < best:
                break
            best = err
            pl.row_perm[t], pl.col_perm[t] = rp, cp
    return pl
