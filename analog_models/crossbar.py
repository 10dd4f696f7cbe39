"""A resistive crossbar read with wire resistance (IR drop): ngspice deck and a fast nodal model.

A crossbar of R rows x C columns holds conductances ``G[i, j]`` (siemens). Reading it drives the
rows with voltages ``v_rows`` (volts) and senses each column's current at a virtual ground. With
ideal wires the column currents are ``I = v_rows @ G``; with a resistance ``r_wire`` (ohms) on every
wire segment the cell voltages sag with distance from the drivers and from the sense amplifiers,
and every column current is smaller. Both :func:`netlist` (for ngspice) and
:class:`NodalCrossbar` (numpy/scipy) describe exactly this network (2x2 drawn; wires that cross
without a ``+`` do not touch)::

            r_driver      r_wire                 r_wire
    Vrow0 --[Rd]-- ra0 --[rw]-- xr0_0 -------------[rw]-------- xr0_1 ------   row 0 (open end)
    (rd0)                         |                               |
      |                         G[0,0]                          G[0,1]
     gnd                          |                               |
                                  +-------- xc0_0                 +-------- xc0_1   (open top)
                                              |                               |
                                            [rw]                            [rw]
                                              |                               |
    Vrow1 --[Rd]-- ra1 --[rw]-- xr1_0 --------|----[rw]-------- xr1_1 -------|--  row 1
    (rd1)                         |           |                   |           |
      |                         G[1,0]        |                 G[1,1]        |
     gnd                          |           |                   |           |
                                  +-------- xc1_0                 +-------- xc1_1
                                              |                               |
                                            [rw]                            [rw]
                                              |                               |
                                             s0                              s1
                                              |                               |
                                        Vcol0 (0 V)                     Vcol1 (0 V)
                                              |                               |
                                             gnd                             gnd

* Row ``i`` is driven at its **left** end by an ideal source ``Vrow<i>`` (node ``rd<i>``) behind
  an optional driver output resistance ``r_driver`` (node ``ra<i>`` after it; the same node as
  ``rd<i>`` when ``r_driver`` is 0). The row wire then passes **C segments** of ``r_wire``: the
  first from ``ra<i>`` to the row node of column 0, ``xr<i>_0``, each further one from
  ``xr<i>_<j-1>`` to ``xr<i>_<j>``. The row ends, open, at column C-1.
* The device ``G[i, j]`` connects the row node ``xr<i>_<j>`` to the column node ``xc<i>_<j>``.
* Column ``j`` is sensed at its **bottom** end (below row R-1) by a transimpedance amplifier
  whose input is a virtual ground: the 0 V source ``Vcol<j>`` from sense node ``s<j>`` to ground,
  whose current is the column current. The column wire passes **R segments** of ``r_wire``:
  from ``xc<i>_<j>`` to ``xc<i+1>_<j>`` for i < R-1, and from ``xc<R-1>_<j>`` to ``s<j>``. Its top
  end, at row 0, is open.

So cell (i, j) sees j+1 row segments to its driver and R-i column segments to its sense
amplifier: the top-right cell (0, C-1) is the farthest from both. A column current is positive
when current flows *into* the virtual ground (positive row voltages, positive conductances);
it is ngspice's branch current ``vcol<j>#branch``, and in the nodal model
``I_j = V(xc<R-1>_<j>) / r_wire``.

With ``r_wire = 0`` the wires are ideal: every row node of row i is ``ra<i>`` and every column
node of column j is ``s<j>`` (the deck has no zero-ohm resistors), and the currents are exactly
``v_rows @ G`` when ``r_driver`` is 0 too. A conductance of 0 is an open cell (no element).

The nodal model
---------------
:class:`NodalCrossbar` writes Kirchhoff's current law at the 2 R C wire nodes (the driven row
ends and the grounded sense nodes are known voltages)::

    A V = b,   A = sum over elements g (e_a - e_b)(e_a - e_b)^T + known-node terms,
    b[xr<i>_0] = g_in v_i,   g_in = 1 / (r_driver + r_wire)

(``r_driver`` and the first row segment are in series, so ``ra<i>`` needs no unknown). ``A`` is
symmetric positive definite; it is built once as a scipy sparse matrix and factorised once
(SuperLU, minimum-degree ordering on A + A^T, no pivoting), and every read is a triangular solve,
many right-hand sides at a time. It agrees with ngspice's operating point to about 1e-12
relative (both solve the same linear system); ``tests/test_analog_crossbar.py`` holds it to
1e-6 from 8x8 to 64x64.

ngspice's equation order
------------------------
ngspice 39 (Debian's build has no KLU) factorises with Sparse 1.3, which picks pivots by the
Markowitz criterion and physically swaps rows and columns of its linked lists to bring each pivot
into place; on a crossbar those swaps walk ever longer rows and columns, and the operating point
of a 128x128 crossbar takes about 2 minutes (a 64x64 one 3 to 5 s). Sparse prefers the pivot
already in place when it ties for the smallest Markowitz product, so a deck whose equations are
numbered in a minimum-degree order needs no swap at all. ngspice numbers equations in the order
devices first touch the matrix while it sets them up, behavioural ``B`` sources first and each
kind's instances last to first, so :func:`netlist` starts the deck with one zero-current ``B``
source per node, ``I=0*V(node)`` (or ``I=0*I(Vrow<i>)`` for a driven node and its source's
branch), listed in reverse: the driven and sensed nodes and their branches first (they are
singletons, eliminated without fill), then the internal nodes in an exact minimum-degree order
(:func:`_minimum_degree_order`). They carry no current and add no matrix entry that the
resistors and sources do not already have, so the circuit and its solution are unchanged
(``equation_order=False`` leaves them out); only the time changes: a 128x128 operating point in
about 4 s. Were ngspice to number its equations differently, the deck would still be right,
only slower.
"""

from __future__ import annotations

import heapq
import time

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

__all__ = ["NodalCrossbar", "compare", "ideal_column_currents", "max_rel_error", "netlist", "spice_column_currents"]

_SOLVE_ENTRIES = 1 << 22  # right-hand sides per triangular solve: at most ~32 MB of float64


# -- validation ------------------------------------------------------------------------------
def _conductances(G) -> np.ndarray:
    try:
        g = np.array(G, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"G must be a 2-D array of conductances in siemens, not {type(G).__name__}") from None
    if g.ndim != 2 or 0 in g.shape:
        raise ValueError(f"G must be a non-empty 2-D array [rows, cols] of conductances (siemens), not shape {g.shape}")
    if not np.all(np.isfinite(g)):
        raise ValueError("G holds non-finite conductances (nan or inf): give finite siemens >= 0")
    if (g < 0).any():
        i, j = np.argwhere(g < 0)[0]
        raise ValueError(f"G[{i}, {j}] = {g[i, j]!r} S is negative: conductances must be >= 0 "
                         "(a signed weight is a differential pair of two crossbars)")
    g.setflags(write=False)
    return g


def _row_voltages(v_rows, rows: int, *, batched: bool) -> np.ndarray:
    try:
        v = np.asarray(v_rows, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"v_rows must be an array of row voltages in volts, not {type(v_rows).__name__}") from None
    shapes = f"[{rows}] or [batch, {rows}]" if batched else f"[{rows}]"
    if (v.ndim == 1 or (batched and v.ndim == 2)) and v.shape[-1] == rows:
        if not np.all(np.isfinite(v)):
            raise ValueError("v_rows holds non-finite voltages (nan or inf)")
        return v
    raise ValueError(f"v_rows must have shape {shapes} (one voltage per row of G), not {v.shape}")


def _resistance(name: str, value) -> float:
    try:
        r = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a resistance in ohms, not {value!r}") from None
    if not np.isfinite(r) or r < 0:
        raise ValueError(f"{name} must be a finite resistance >= 0 ohms, not {value!r}")
    return r


# -- ideal -------------------------------------------------------------------------------------
def ideal_column_currents(G, v_rows) -> np.ndarray:
    """Column currents of ideal wires (amperes): ``I = v_rows @ G``, for ``[R]`` or ``[B, R]`` rows."""
    g = _conductances(G)
    return _row_voltages(v_rows, g.shape[0], batched=True) @ g


# -- ngspice -----------------------------------------------------------------------------------
def netlist(G, v_rows, r_wire: float, r_driver: float = 0.0, *, equation_order: bool = True) -> str:
    """The SPICE deck of the crossbar read with ``v_rows`` (the module docstring's network).

    A title line and the elements, without analysis or ``.end`` (``analog_models.spice.simulate``
    adds them). Column ``j``'s current is the branch current of ``Vcol<j>`` (``vcol<j>#branch``).
    With ``equation_order`` the deck starts with zero-current ``B`` sources that fix the order of
    ngspice's equations (see "ngspice's equation order" in the module docstring): the same
    circuit, solved about 10 times faster at 64x64 and 30 times faster at 128x128.
    """
    g = _conductances(G)
    R, C = g.shape
    v = _row_voltages(v_rows, R, batched=False)
    rw, rd = _resistance("r_wire", r_wire), _resistance("r_driver", r_driver)
    rows, cols = range(R), range(C)
    ra = [f"ra{i}" if rd > 0 else f"rd{i}" for i in rows]
    if rw > 0:
        xr = [[f"xr{i}_{j}" for j in cols] for i in rows]
        xc = [[f"xc{i}_{j}" for j in cols] for i in rows]
    else:  # ideal wires: one node per row, the sense node per column
        xr = [[ra[i]] * C for i in rows]
        xc = [[f"s{j}" for j in cols]] * R
    # str(float) is the shortest text that reads back as the same double
    elements = [f"Vrow{i} rd{i} 0 {float(v[i])!r}" for i in rows] + [f"Vcol{j} s{j} 0 0" for j in cols]
    if rd > 0:
        elements += [f"Rdrv{i} rd{i} ra{i} {rd!r}" for i in rows]
    if rw > 0:
        elements += [f"Rrw{i}_{j} {ra[i] if j == 0 else xr[i][j - 1]} {xr[i][j]} {rw!r}" for i in rows for j in cols]
        elements += [f"Rcw{i}_{j} {xc[i][j]} {xc[i + 1][j] if i < R - 1 else f's{j}'} {rw!r}"
                     for i in rows for j in cols]
    r_cell = (1.0 / np.where(g > 0, g, 1.0)).tolist()
    elements += [f"Rg{i}_{j} {xr[i][j]} {xc[i][j]} {r_cell[i][j]!r}" for i in rows for j in cols if g[i, j] > 0]
    lines = [f"* SMALL crossbar {R}x{C}, r_wire {rw!r} ohm a segment, r_driver {rd!r} ohm"]
    if equation_order:
        lines += _equation_order(g, ra if rd > 0 else [], xr if rw > 0 else [], xc if rw > 0 else [])
    return "\n".join(lines + elements) + "\n"


def _equation_order(g: np.ndarray, ra: list, xr: list, xc: list) -> list[str]:
    """Zero-current B sources that number ngspice's equations in a minimum-degree order.

    ``ra``, ``xr``, ``xc``: the names of the internal nodes (empty when the deck has none).
    """
    R, C = g.shape
    # the graph of the internal nodes (the driven and sensed nodes go first, as singletons).
    # Node numbers break ties between nodes of equal degree: cells numbered by bit-reversed row
    # and column give about 30 % less fill-in than row-major numbers (a dissection of sorts).
    n_ra = len(ra)
    names = list(ra)
    a, b = [], []
    if xr:
        ir = n_ra + 2 * (_bit_reversed_rank(R)[:, None] * C + _bit_reversed_rank(C)[None, :])
        ic = ir + 1  # the row and the column node of a cell next to each other
        names += [""] * (2 * R * C)
        for i in range(R):
            for j in range(C):
                names[ir[i, j]], names[ic[i, j]] = xr[i][j], xc[i][j]
        pos = g.ravel() > 0
        a = [ir[:, :-1].ravel(), ic[:-1, :].ravel(), ir.ravel()[pos]]
        b = [ir[:, 1:].ravel(), ic[1:, :].ravel(), ic.ravel()[pos]]
        if n_ra:
            a.append(np.arange(n_ra))
            b.append(ir[:, 0])
    a = np.concatenate(a) if a else np.zeros(0, dtype=np.int64)
    b = np.concatenate(b) if b else np.zeros(0, dtype=np.int64)
    order = _minimum_degree_order(len(names), a, b)
    hints = [f"Bo{i} rd{i} 0 I=0*I(Vrow{i})" for i in range(R)]
    hints += [f"Bo{R + j} s{j} 0 I=0*I(Vcol{j})" for j in range(C)]
    hints += [f"Bo{R + C + k} {names[node]} 0 I=0*V({names[node]})" for k, node in enumerate(order)]
    return ["* zero-current sources that only number the equations for ngspice's sparse solver,",
            "* listed last to first because ngspice sets its devices up in reverse order"] + hints[::-1]


def _bit_reversed_rank(m: int) -> np.ndarray:
    """The rank of each of 0..m-1 when sorted by its bit-reversed binary digits."""
    bits = max(1, (m - 1).bit_length())
    return np.argsort(np.argsort([int(f"{x:0{bits}b}"[::-1], 2) for x in range(m)], kind="stable"))


def _minimum_degree_order(n: int, a: np.ndarray, b: np.ndarray, dense_at: int = 4000) -> list[int]:
    """An exact minimum-degree elimination order of the graph with edges ``a[k] - b[k]``.

    Each step eliminates a node of least degree (the smallest index among ties) and joins its
    neighbours into a clique (the fill-in). Sets while the graph is large, then a dense boolean
    matrix for the last ``dense_at`` nodes, where the cliques are big.
    """
    adj = [set() for _ in range(n)]
    for x, y in zip(a.tolist(), b.tolist()):
        adj[x].add(y)
        adj[y].add(x)
    heap = [(len(s), k) for k, s in enumerate(adj)]
    heapq.heapify(heap)
    done = bytearray(n)
    order: list[int] = []
    alive = n
    while alive > dense_at:
        d, k = heapq.heappop(heap)
        if done[k] or d != len(adj[k]):  # eliminated, or a stale degree
            continue
        done[k] = 1
        order.append(k)
        alive -= 1
        nb, adj[k] = adj[k], set()
        for x in nb:
            s = adj[x]
            s |= nb
            s.discard(x)
            s.discard(k)
            heapq.heappush(heap, (len(s), x))
    rest = np.array([k for k in range(n) if not done[k]], dtype=np.int64)
    m = rest.size
    local = np.full(n, -1, dtype=np.int64)
    local[rest] = np.arange(m)
    M = np.zeros((m, m), dtype=bool)
    for i, k in enumerate(rest.tolist()):
        M[i, local[list(adj[k])]] = True
    deg = M.sum(axis=1).astype(np.int64)
    gone = np.iinfo(np.int64).max
    for left in range(m, 0, -1):
        k = int(np.argmin(deg))
        if deg[k] == left - 1:  # what is left is a clique: every order is a minimum-degree order
            order += rest[deg < gone].tolist()
            break
        order.append(int(rest[k]))
        nb = np.flatnonzero(M[k])
        block = np.ix_(nb, nb)
        deg[nb] += nb.size - 2 - M[block].sum(axis=1)  # new neighbours, less the eliminated node
        M[block] = True
        M[nb, nb] = False
        M[k, :] = False
        M[:, k] = False
        deg[k] = gone
    return order


def spice_column_currents(G, v_rows, r_wire: float, r_driver: float = 0.0) -> np.ndarray:
    """Column currents ``[C]`` (amperes, into the virtual grounds) of ngspice's operating point.

    Raises ``analog_models.spice.SpiceError`` if ngspice cannot solve the deck.
    """
    from analog_models import spice

    C = _conductances(G).shape[1]
    result = spice.simulate(netlist(G, v_rows, r_wire, r_driver), ".op")
    return np.array([result[f"vcol{j}#branch"][0] for j in range(C)], dtype=np.float64)


# -- nodal model -------------------------------------------------------------------------------
class NodalCrossbar:
    """The crossbar's resistive network, factorised once, read many times (module docstring).

    Parameters
    ----------
    G : conductances ``[R, C]`` (siemens, >= 0).
    r_wire : resistance of one wire segment (ohms, >= 0; 0: ideal wires).
    r_driver : output resistance of each row driver (ohms, >= 0).

    ``column_currents(v_rows)`` takes ``[R]`` or ``[B, R]`` row voltages and returns ``[C]`` or
    ``[B, C]`` column currents (amperes). With ``r_wire = 0`` no system is solved: the rows are
    equipotential and the columns at 0 V, so the currents are ``u @ G`` with
    ``u_i = v_i g_d / (g_d + sum_j G[i, j])``, ``g_d = 1 / r_driver`` (``u = v``, and the result
    exactly ``v_rows @ G``, when ``r_driver`` is 0).
    """

    def __init__(self, G, r_wire: float, r_driver: float = 0.0):
        self.G = _conductances(G)
        self.r_wire = _resistance("r_wire", r_wire)
        self.r_driver = _resistance("r_driver", r_driver)
        self.rows, self.cols = self.G.shape
        self._lu = None
        self._eff = None
        if self.r_wire > 0:
            self._factorise()

    @property
    def n_nodes(self) -> int:
        """Unknown node voltages of the nodal system (0 with ideal wires)."""
        return 2 * self.G.size if self.r_wire > 0 else 0

    def _factorise(self) -> None:
        R, C = self.rows, self.cols
        gw = 1.0 / self.r_wire
        # row and column node of each cell next to each other: the ordering SuperLU fills least
        cell = np.arange(R * C).reshape(R, C)
        xr, xc = 2 * cell, 2 * cell + 1
        a = np.concatenate([xr[:, :-1].ravel(), xc[:-1, :].ravel(), xr.ravel()])
        b = np.concatenate([xr[:, 1:].ravel(), xc[1:, :].ravel(), xc.ravel()])
        g = np.concatenate([np.full(R * (C - 1), gw), np.full((R - 1) * C, gw), self.G.ravel()])
        n = 2 * R * C
        diag = np.bincount(a, g, n) + np.bincount(b, g, n)
        g_in = 1.0 / (self.r_driver + self.r_wire)
        diag[xr[:, 0]] += g_in  # first row segment (behind the driver resistance) to the source
        diag[xc[-1, :]] += gw  # last column segment to the virtual ground
        nodes = np.arange(n)
        A = sp.csc_array((np.concatenate([-g, -g, diag]),
                          (np.concatenate([a, b, nodes]), np.concatenate([b, a, nodes]))), shape=(n, n))
        # symmetric positive definite: a symmetric ordering and the diagonal as pivots
        self._lu = spla.splu(A, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                             options={"SymmetricMode": True})
        self._drive_nodes, self._g_in = xr[:, 0], g_in
        self._sense_nodes, self._g_sense = xc[-1, :], gw

    def column_currents(self, v_rows) -> np.ndarray:
        """Column currents (amperes) for row voltages ``[R]`` or ``[B, R]`` (volts)."""
        v = _row_voltages(v_rows, self.rows, batched=True)
        if self._lu is None:
            if self.r_driver == 0:
                return v @ self.G
            g_d = 1.0 / self.r_driver
            return (v * (g_d / (g_d + self.G.sum(axis=1)))) @ self.G
        vb = np.atleast_2d(v)
        out = np.empty((vb.shape[0], self.cols))
        n = self.n_nodes
        step = max(1, _SOLVE_ENTRIES // n)
        for k in range(0, vb.shape[0], step):
            chunk = vb[k:k + step]
            rhs = np.zeros((n, chunk.shape[0]), order="F")
            rhs[self._drive_nodes] = self._g_in * chunk.T
            out[k:k + step] = (self._g_sense * self._lu.solve(rhs)[self._sense_nodes]).T
        return out[0] if v.ndim == 1 else out

    def effective_conductances(self) -> np.ndarray:
        """``G_eff [R, C]`` with ``column_currents(v) == v @ G_eff`` up to rounding (cached).

        The network is linear, so R solves (one per row) give every later read as one matrix
        product: the fast path for a simulator that reads the same crossbar many times.
        """
        if self._eff is None:
            self._eff = self.column_currents(np.eye(self.rows))
            self._eff.setflags(write=False)
        return self._eff


# -- comparison ------------------------------------------------------------------------------
def max_rel_error(currents, reference) -> float:
    """``max_j |I_j - I_ref,j| / max_j |I_ref,j|`` (0 when both are all zero)."""
    a, ref = np.asarray(currents, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    diff, scale = float(np.max(np.abs(a - ref))), float(np.max(np.abs(ref)))
    if scale > 0:
        return diff / scale
    return 0.0 if diff == 0 else float("inf")


def compare(G, v_rows, r_wire: float, *, r_driver: float = 0.0) -> dict:
    """ngspice, the nodal model and ideal wires on one read: currents, errors and timings.

    Returns
    -------
    dict with ``i_cols_spice``, ``i_cols_model``, ``i_cols_ideal`` (lists of floats, amperes),
    ``max_rel_error_model_vs_spice`` (the nodal model's error, :func:`max_rel_error`),
    ``max_rel_error_ideal_vs_spice`` (what IR drop costs), ``seconds_spice`` (deck written and
    simulated) and ``seconds_model`` (matrix built, factorised and solved).
    """
    g = _conductances(G)
    v = _row_voltages(v_rows, g.shape[0], batched=False)
    rw, rd = _resistance("r_wire", r_wire), _resistance("r_driver", r_driver)
    t0 = time.perf_counter()
    i_spice = spice_column_currents(g, v, rw, rd)
    t1 = time.perf_counter()
    i_model = NodalCrossbar(g, rw, rd).column_currents(v)
    t2 = time.perf_counter()
    i_ideal = v @ g
    return {"i_cols_spice": i_spice.tolist(), "i_cols_model": i_model.tolist(), "i_cols_ideal": i_ideal.tolist(),
            "max_rel_error_model_vs_spice": max_rel_error(i_model, i_spice),
            "max_rel_error_ideal_vs_spice": max_rel_error(i_ideal, i_spice),
            "seconds_spice": t1 - t0, "seconds_model": t2 - t1}
