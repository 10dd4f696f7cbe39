"""Chip fault maps (stuck devices) and fault-aware placement.

Fault map file (JSON, ``docs/hardware-image.md`` "Fault maps")::

    {"format": "small-faults", "version": 1,
     "geometry": {"tiles": 16, "rows": 64, "cols": 64},
     "stuck": [[tile, row, col, "pos"|"neg", "high"|"low"], ...]}

A device stuck *high* sits at the top level ``L - 1`` (G_max), stuck *low* at level 0 (G_min),
whatever it is programmed to.

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
VERSION = 1
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
    """Stuck devices of a chip: ``stuck[tile, row, col, device]`` is -1 (healthy), 0 (low) or 1 (high)."""

    stuck: np.ndarray

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
        """Stuck levels of the ``pos`` and ``neg`` devices, ``-1`` where healthy."""
        lv = np.where(self.stuck == 1, levels - 1, np.where(self.stuck == 0, 0, -1)).astype(np.int16)
        return lv[..., 0], lv[..., 1]

    def to_json(self) -> dict:
        t, r, c, d = np.nonzero(self.stuck >= 0)
        entries = [[int(a), int(b), int(e), "pos" if f == 0 else "neg", "high" if self.stuck[a, b, e, f] == 1 else "low"]
                   for a, b, e, f in zip(t, r, c, d)]
        return {"format": FORMAT, "version": VERSION,
                "geometry": {"tiles": self.tiles, "rows": self.rows, "cols": self.cols}, "stuck": entries}


def random_faults(tiles: int, rows: int, cols: int, rate: float, *, seed: int = 0, high_fraction: float = 0.5) -> FaultMap:
    """Each device independently stuck with probability ``rate``; stuck high with ``high_fraction``."""
    # the words of `small faults random`'s checks
    require(("count", "tiles", tiles), ("count", "rows", rows), ("count", "cols", cols), ("fraction", "rate", rate),
            ("fraction", "high_fraction", high_fraction), error=UnsupportedError)
    try:
        rng = np.random.default_rng(seed)
    except (TypeError, ValueError):
        raise UnsupportedError(f"seed {seed!r} is not a whole number >= 0") from None
    shape = (tiles, rows, cols, 2)
    if math.prod(shape) > MAX_DEVICES:  # what load_faults would refuse, refused before the allocation
        raise UnsupportedError(f"{tiles} tiles of {rows}x{cols} hold {math.prod(shape)} devices, more than the "
                               f"{MAX_DEVICES} a fault map may describe")
    stuck = np.where(rng.random(shape) < rate, (rng.random(shape) < high_fraction).astype(np.int8), -1).astype(np.int8)
    return FaultMap(stuck)


def save_faults(fmap: FaultMap, path: str | os.PathLike) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(fmap.to_json(), separators=(",", ":")) + "\n")


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
        raise FileFormatError(f"{what} has version {doc['version']}; this SMALL reads {VERSION}: upgrade SMALL")
    check(FAULTS_SCHEMA, doc, what)
    geo = doc["geometry"]
    shape = (geo["tiles"], geo["rows"], geo["cols"], 2)
    if math.prod(shape) > MAX_DEVICES:
        raise FileFormatError(f"invalid {what}: geometry {geo['tiles']} tiles of {geo['rows']}x{geo['cols']} holds "
                              f"{math.prod(shape)} devices, more than the {MAX_DEVICES} a fault map may describe")
    stuck = np.full(shape, -1, dtype=np.int8)
    entries = doc["stuck"]
    if entries:
        index = np.array([entry[:3] for entry in entries], dtype=np.int64)
        outside = np.flatnonzero(np.any(index >= np.array(shape[:3]), axis=1))
        if outside.size:
            i = int(outside[0])
            raise FileFormatError(f"invalid {what}: stuck[{i}] {entries[i]} lies outside the geometry "
                                  f"{geo['tiles']} tiles of {geo['rows']}x{geo['cols']}")
        device = np.array([DEVICES[entry[3]] for entry in entries], dtype=np.int64)
        flat = np.ravel_multi_index((*index.T, device), shape)
        order = np.argsort(flat, kind="stable")
        twice = np.flatnonzero(flat[order][1:] == flat[order][:-1])
        if twice.size:
            a, b = sorted(int(i) for i in order[twice[0]:twice[0] + 2])
            raise FileFormatError(f"invalid {what}: stuck[{a}] {entries[a]} and stuck[{b}] {entries[b]} name the "
                                  "same device: list each stuck device once, high or low")
        stuck.reshape(-1)[flat] = [1 if entry[4] == "high" else 0 for entry in entries]
    return FaultMap(stuck)


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
