"""What a compiled chip makes of a network's weights: levels, scales, stuck and reversed devices.

A synapse of weight ``w`` sits on crossbar cell ``(tile, row, col)`` of the compiled image
(:func:`locate`) as the signed level ``q = clip(rint(w f / s), -(L-1), L-1)``, with ``s`` its
column's scale and ``f`` the gain the compiler folds into the weight (``gain``, times
``syn_gain`` for CubaLIF). The compiler writes the pair ``(l+, l-)`` that comes closest to
``q`` around stuck devices (``compiler.faults.achievable``, which :meth:`Cells.realise` repeats); a device then holds

* its level ``l`` when healthy;
* its stuck level (0 or L-1) when stuck, whatever is written;
* ``clip(r l, 0, L-1) = 0`` when *reversed* with update factor ``r < 0``: programmed by
  program-and-verify from level 0, it moves the wrong way into level 0 and stays
  (``sim/analog.py`` realises the same in conductances; an image compiled with the fault map
  records it as stuck at 0 already, ``compiler/faults.py``).

so the weight the chip computes with is ``s (d(l+) - d(l-)) / f`` (:meth:`Cells.realise`, numpy
and torch alike). The functions here work in level units and are exact: the fine-tuning runs its
forward pass through them and the chip simulators agree with them up to device noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.faults import FaultMap
from compiler.image import HardwareImage
from compiler.ir import CubaLIF, Network
from small.errors import SimulationError


@dataclass
class Cells:
    """The crossbar cells of one projection's synapses (arrays over its nonzero entries)."""

    i: np.ndarray
    """Target index (weight row)."""
    j: np.ndarray
    """Source index (weight column)."""
    tile: np.ndarray
    row: np.ndarray
    col: np.ndarray
    scale: np.ndarray
    """Network weight per level (the column's scale over the folded gain)."""
    stuck_pos: np.ndarray
    stuck_neg: np.ndarray
    """Stuck level of each device, -1 healthy."""
    factor_pos: np.ndarray
    factor_neg: np.ndarray
    """Update factor of each device: 1 healthy (and stuck), < 0 reversed."""
    levels: int

    @property
    def faulty(self) -> np.ndarray:
        """Cells with a stuck or reversed device."""
        return (self.stuck_pos >= 0) | (self.stuck_neg >= 0) | (self.factor_pos != 1) | (self.factor_neg != 1)

    def realise(self, q, xp=np):
        """Signed level the chip holds for target levels ``q`` (numpy, or torch with ``xp=torch``)."""
        top = self.levels - 1
        sp_, sn = (xp.as_tensor(a) if xp is not np else a for a in (self.stuck_pos, self.stuck_neg))
        fp, fn = (xp.as_tensor(a, dtype=q.dtype) if xp is not np else a for a in (self.factor_pos, self.factor_neg))
        spf, snf = (a.to(q.dtype) if xp is not np else a.astype(q.dtype) for a in (sp_, sn))
        zero = q * 0
        pos, neg = xp.maximum(q, zero), xp.maximum(-q, zero)
        pos = xp.where((sn >= 0) & (sp_ < 0), xp.clip(q + snf, 0, top), pos)
        neg = xp.where((sp_ >= 0) & (sn < 0), xp.clip(spf - q, 0, top), neg)
        pos = xp.where(sp_ >= 0, spf + zero, pos)
        neg = xp.where(sn >= 0, snf + zero, neg)
        pos = xp.where(fp != 1, xp.clip(fp * pos, 0, top), pos)
        neg = xp.where(fn != 1, xp.clip(fn * neg, 0, top), neg)
        return pos - neg

    def closest_to_zero(self) -> np.ndarray:
        """The target level whose realisation is nearest 0 (ties: the smallest ``|q|``), per cell."""
        top = self.levels - 1
        qs = np.arange(-top, top + 1, dtype=np.float64)
        order = np.argsort(np.abs(qs), kind="stable")
        qs = qs[order]
        real = np.stack([self.realise(np.full(self.i.size, q)) for q in qs])
        return qs[np.argmin(np.abs(real), axis=0)]


def fold_factors(net: Network) -> dict[str, np.ndarray]:
    """The gain the compiler folds into the weights of each population's synapses."""
    out = {}
    for p in net.populations:
        g = np.broadcast_to(np.asarray(getattr(p.neuron, "gain", 1.0), dtype=np.float64), (p.size,)).copy()
        if isinstance(p.neuron, CubaLIF):
            g = g * np.broadcast_to(np.asarray(p.neuron.syn_gain, dtype=np.float64), (p.size,))
        out[p.name] = g
    return out


def locate(image: HardwareImage, net: Network, fmap: FaultMap | None = None) -> list[Cells]:
    """The cell of every synapse of ``net`` in ``image`` (compiled from ``net``), per projection.

    Row keys are (source, routed delay) as the compiler forms them; a neuron whose inputs are
    split reads them on its partial-sum tiles too. ``fmap`` (the map the image was compiled
    with) adds the reversed devices; the stuck ones are in the image.
    """
    from compiler.mapper import latencies

    a, C, L = image.arrays, image.cols, image.levels
    lat = latencies(net)
    in_off, n_in = {}, 0
    for inp in net.inputs:
        in_off[inp.name], n_in = n_in, n_in + inp.size
    in_scale = {i["name"]: float(i.get("scale", 1.0)) for i in image.meta.get("inputs", [])}
    rows: dict[tuple[int, int, int], int] = {}
    for table, offset in (("input", 0), ("route", n_in)):
        src = image.route_sources(table) + offset
        for s, t, r, d in zip(src.tolist(), a[f"{table}_tile"].tolist(), a[f"{table}_row"].tolist(),
                              a[f"{table}_delay"].tolist()):
            rows[(t, s, d)] = r
    home = image.home_columns()
    kind = a["col_kind"].reshape(-1)
    columns: dict[int, list[int]] = {}
    for c in np.flatnonzero(kind > 0):
        columns.setdefault(int(home[c]), []).append(int(c))
    fold = fold_factors(net)
    stuck = {d: a.get(f"stuck_{d}") for d in ("pos", "neg")}
    factor = None
    if fmap is not None and fmap.factor is not None:
        factor = fmap.factor[a["tile_phys"]]  # [T, R, C, 2] in the image's (physical) rows and columns
    out = []
    for proj in net.projections:
        w = proj.dense_weight()
        i, j = np.nonzero(w)
        addr = image.addresses(proj.target)[i]
        if proj.source in in_off:
            src, delay = in_off[proj.source] + j, proj.delay + lat[proj.target]
        else:
            src, delay = n_in + image.addresses(proj.source)[j], proj.delay + lat[proj.target] - lat[proj.source] - 1
        tile, row, col = (np.empty(i.size, dtype=np.int64) for _ in range(3))
        for n, (s, h) in enumerate(zip(src.tolist(), addr.tolist())):
            for c in columns.get(h, ()):
                r = rows.get((c // C, s, delay))
                if r is not None:
                    tile[n], row[n], col[n] = c // C, r, c % C
                    break
            else:
                raise SimulationError(f"synapse {proj.name}[{i[n]}, {j[n]}] has no crossbar cell in the image")
        scale = a["scale"][tile, col] / fold[proj.target][i] / in_scale.get(proj.source, 1.0)
        sp_ = stuck["pos"][tile, row, col] if stuck["pos"] is not None else np.full(i.size, -1)
        sn = stuck["neg"][tile, row, col] if stuck["neg"] is not None else np.full(i.size, -1)
        fp = factor[tile, row, col, 0] if factor is not None else np.ones(i.size)
        fn = factor[tile, row, col, 1] if factor is not None else np.ones(i.size)
        out.append(Cells(i, j, tile, row, col, scale.astype(np.float64), sp_.astype(np.int64), sn.astype(np.int64),
                         fp.astype(np.float64), fn.astype(np.float64), L))
    return out


def check_realise(cells: list[Cells], image: HardwareImage, net: Network) -> None:
    """The realisation of the network's own weights equals the image's levels (a self-check)."""
    g = image.effective_levels()
    for c, proj in zip(cells, net.projections):
        q = np.clip(np.rint(proj.dense_weight()[c.i, c.j] / c.scale), -(c.levels - 1), c.levels - 1)
        ideal = Cells(c.i, c.j, c.tile, c.row, c.col, c.scale, c.stuck_pos, c.stuck_neg,
                      np.ones_like(c.factor_pos), np.ones_like(c.factor_neg), c.levels)
        got = ideal.realise(q)
        want = g[0][c.tile, c.row, c.col].astype(np.int64) - g[1][c.tile, c.row, c.col]
        if not np.array_equal(got, want):
            raise SimulationError(f"projection {proj.name!r}: {int(np.sum(got != want))} cells differ from the image")


@dataclass
class Parasitic:
    """Cells that hold no synapse but carry a weight all the same: a fed row and a used column
    whose devices realise a nonzero level at target 0 (a reversed device written to 0, a pair
    stuck apart). The chip adds ``weight @ source(t - delay)`` to the target's input; the network
    has no such synapse, so the fine-tuning adds it to its forward pass as a fixed projection."""

    source: str
    target: str
    delay: int
    weight: np.ndarray
    """``[n_target, n_source]``, network units."""


def parasitic_cells(image: HardwareImage, net: Network, cells: list[Cells], fmap: FaultMap | None) -> list[Parasitic]:
    """Every fed row x used column cell without a synapse whose devices realise a nonzero level at 0."""
    from compiler.mapper import latencies

    a, C, L = image.arrays, image.cols, image.levels
    if "stuck_pos" not in a and (fmap is None or fmap.factor is None):
        return []
    lat = latencies(net)
    sources: list[tuple[str, int]] = []
    for inp in net.inputs:
        sources += [(inp.name, k) for k in range(inp.size)]
    n_in = len(sources)
    by_address = {}
    for p in net.populations:
        for k, addr in enumerate(image.addresses(p.name).tolist()):
            by_address[addr] = (p.name, k)
    occupied = np.zeros(a["g_pos"].shape, dtype=bool)
    for c in cells:
        occupied[c.tile, c.row, c.col] = True
    home = image.home_columns()
    used = a["col_kind"] > 0
    factor = fmap.factor[a["tile_phys"]] if fmap is not None and fmap.factor is not None else None
    fold = fold_factors(net)
    in_scale = {i["name"]: float(i.get("scale", 1.0)) for i in image.meta.get("inputs", [])}
    out: dict[tuple[str, str, int], np.ndarray] = {}
    for table, offset in (("input", 0), ("route", n_in)):
        src = image.route_sources(table) + offset
        for s, t, r, d in zip(src.tolist(), a[f"{table}_tile"].tolist(), a[f"{table}_row"].tolist(),
                              a[f"{table}_delay"].tolist()):
            cols = np.flatnonzero(used[t] & ~occupied[t, r])
            if not cols.size:
                continue
            n = cols.size
            sp_ = a["stuck_pos"][t, r, cols] if "stuck_pos" in a else np.full(n, -1)
            sn = a["stuck_neg"][t, r, cols] if "stuck_neg" in a else np.full(n, -1)
            fp = factor[t, r, cols, 0] if factor is not None else np.ones(n)
            fn = factor[t, r, cols, 1] if factor is not None else np.ones(n)
            probe = Cells(cols, cols, np.full(n, t), np.full(n, r), cols, np.ones(n), sp_.astype(np.int64),
                          sn.astype(np.int64), fp.astype(np.float64), fn.astype(np.float64), L)
            level = probe.realise(np.zeros(n))
            for c, v in zip(cols[level != 0].tolist(), level[level != 0].tolist()):
                target, i = by_address[int(home[t * C + c])]
                if s < n_in:
                    source, j = sources[s]
                    delay = d - lat[target]
                    factor_in = in_scale.get(source, 1.0)
                else:
                    source, j = by_address[s - n_in]
                    delay = d - lat[target] + lat[source] + 1
                    factor_in = 1.0
                key = (source, target, delay)
                if key not in out:
                    out[key] = np.zeros((net.population(target).size, net.source_size(source)))
                out[key][i, j] += v * a["scale"][t, c] / fold[target][i] / factor_in
    return [Parasitic(s, t, d, w) for (s, t, d), w in out.items()]
