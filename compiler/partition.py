"""Neurons onto tiles: which neurons share a tile's columns, and so which rows that tile needs.

A *group* is a set of at most C neurons that share neuron columns; it needs one row per
distinct (source, delay) among its neurons' synapses, and ``ceil(rows / R)`` tiles (the
extra tiles hold partial sums, ``docs/architecture.md``). The number of tiles is therefore
``sum over groups of ceil(rows_g / R)``: grouping neurons that read the same sources saves
rows, and grouping neurons with the neurons they talk to saves inter-tile events.

Both goals are encoded in one undirected graph over the neurons, partitioned into
``ceil(N / C)`` balanced parts:

- an edge between a neuron and each of its presynaptic neurons (events that stay in a tile);
- for each row key read by at most C neurons, a path through those neurons in index order (a
  hyperedge expanded as a path: O(synapses) edges, not O(targets^2)). A key read by more than
  C neurons needs a row on several tiles whatever the grouping, so it adds no edges.

The partitioner is METIS (``pymetis``) when installed, else networkx: Louvain communities
order the neurons, then Kernighan-Lin bisection, applied recursively with part sizes fixed to
fit the columns, refines the cut. ``sequential`` (neurons
in network order, C at a time) is the naive baseline; ``auto`` computes the graph partition, the
sequential one and the row-sharing one (:func:`row_sharing`) and keeps the best by (tiles,
routing entries, inter-tile synapses).

Unrolled convolutions and pooling have *locality*: neighbouring output positions read
overlapping input windows, and every channel at one position reads the same window. A graph
partition balances the cut but does not count rows; :func:`row_sharing` grows each group one
neuron at a time, always taking the neuron that adds the fewest new rows (ties: the one whose
rows the group already reads most often), so a group becomes a compact block of output
positions with all their channels, whose windows overlap. :func:`tiles_lower_bound` says how
far from the best possible a grouping is.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from small.errors import SmallWarning, UnsupportedError

METHODS = ("auto", "metis", "networkx", "sequential")
# From this many synapses on, the partitioner's loops run compiled (numba): loading the kernels
# costs about 1 s once per process, the numpy versions cost ~100 us per neuron placed.
COMPILED_FROM = 500_000
# Above this many graph edges networkx's pure-Python Kernighan-Lin becomes slow.
NETWORKX_SLOW_EDGES = 2_000_000


def distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values. ``np.unique`` takes a hash-based path in numpy 2.4 that is 100x
    slower on 10M int64 values than sorting and dropping equal neighbours."""
    s = np.sort(values, kind="stable")
    return s[np.concatenate([[True], s[1:] != s[:-1]])] if s.size else s


def unique_inverse(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)``, faster on concatenated sorted runs.

    A stable (merge) sort finds the runs that synapse lists come in (each projection target-
    major), where ``np.unique``'s quicksort costs 1-2 s on 10M values whatever their order.
    """
    perm = np.argsort(values, kind="stable")
    return _unique_from_order(values, perm)


def _unique_from_order(values: np.ndarray, perm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values and the inverse, from an order that sorts ``values``."""
    ordered = values[perm]
    first = np.empty(ordered.size, dtype=bool)
    first[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    inverse = np.empty(values.size, dtype=np.int64)
    inverse[perm] = np.cumsum(first) - 1
    return ordered[first], inverse


def unique_small(values: np.ndarray, n_values: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)`` for integers in ``[0, n_values)``, without sorting."""
    present = np.bincount(values, minlength=n_values) > 0
    return np.flatnonzero(present), (np.cumsum(present) - 1)[values]


def unique_pairs(major: np.ndarray, n_major: int, minor: np.ndarray, n_minor: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(major * n_minor + minor, return_inverse=True)`` for small non-negative integers,
    by two counting sorts (least significant first) instead of a comparison sort."""
    by_minor = stable_order(minor, n_minor)
    perm = by_minor[stable_order(major[by_minor], n_major)]
    del by_minor
    codes = major * n_minor
    codes += minor
    return _unique_from_order(codes, perm)


def stable_order(values: np.ndarray, n_values: int) -> np.ndarray:
    """``np.argsort(values, kind="stable")`` for integers in ``[0, n_values)``: a counting sort."""
    if values.size < COMPILED_FROM:
        return np.argsort(values, kind="stable")
    return _stable_order_kernel()(np.ascontiguousarray(values, dtype=np.int64), int(n_values))


def _stable_order(values, n_values):
    next_pos = np.zeros(n_values + 1, dtype=np.int64)
    for v in values:
        next_pos[v + 1] += 1
    for v in range(n_values):
        next_pos[v + 1] += next_pos[v]
    order = np.empty(values.size, dtype=np.int64)
    for i in range(values.size):
        v = values[i]
        order[next_pos[v]] = i
        next_pos[v] += 1
    return order


@functools.cache
def _stable_order_kernel():
    try:
        import numba
    except ImportError:
        return lambda values, n_values: np.argsort(values, kind="stable")
    return numba.njit(cache=True)(_stable_order)


def have_pymetis() -> bool:
    try:
        import pymetis  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class Synapses:
    """The network as the partitioner sees it: ``n`` neurons, synapses ``(target, key)``.

    ``key_source[k]`` is the neuron a row key comes from, or -1 for a host input.
    """

    n: int
    target: np.ndarray
    key: np.ndarray
    key_source: np.ndarray

    @property
    def n_keys(self) -> int:
        return int(self.key_source.size)


@dataclass
class Grouping:
    """A partition of the neurons into groups (each an array of neuron indices, in column order)."""

    method: str
    groups: list[np.ndarray]
    rows: np.ndarray  # distinct row keys per group
    tiles: int
    routing_entries: int
    cut: int  # (source neuron, other group) pairs: routes that leave the source's group

    def score(self) -> tuple[int, int, int]:
        return (self.tiles, self.routing_entries, self.cut)


def evaluate(method: str, syn: Synapses, groups: list[np.ndarray], rows_per_tile: int) -> Grouping:
    """Rows, tiles, routing entries and cut of a grouping."""
    group_of = np.empty(syn.n, dtype=np.int64)
    for g, members in enumerate(groups):
        group_of[members] = g
    pairs = distinct(group_of[syn.target] * syn.n_keys + syn.key)
    g_of_pair, key_of_pair = pairs // syn.n_keys, pairs % syn.n_keys
    rows = np.bincount(g_of_pair, minlength=len(groups))
    tiles = int(sum(max(1, math.ceil(r / rows_per_tile)) for r in rows))
    src = syn.key_source[key_of_pair]
    neuron_src = src >= 0
    cut_pairs = distinct(src[neuron_src] * len(groups) + g_of_pair[neuron_src])
    cut = int(np.count_nonzero(group_of[cut_pairs // len(groups)] != cut_pairs % len(groups)))
    return Grouping(method, groups, rows, tiles, int(pairs.size), cut)


def sequential(n: int, cols: int) -> list[np.ndarray]:
    """Neurons in network order, ``cols`` at a time."""
    return [np.arange(start, min(start + cols, n)) for start in range(0, n, cols)]


def key_major_order(syn: Synapses) -> np.ndarray:
    """The synapses ordered by key, then target (``np.lexsort((syn.target, syn.key))``)."""
    if np.all(syn.target[1:] >= syn.target[:-1]):  # target-major, as the compiler lists them
        return stable_order(syn.key, syn.n_keys)
    return np.lexsort((syn.target, syn.key))


def neuron_graph(syn: Synapses, cols: int) -> sp.csr_array:
    """The symmetric weighted graph described in the module docstring."""
    src = syn.key_source[syn.key]
    has_src = src >= 0
    a = [src[has_src], ]
    b = [syn.target[has_src]]
    order = key_major_order(syn)
    k, t = syn.key[order], syn.target[order]
    readers = np.bincount(syn.key, minlength=syn.n_keys)
    # A key read by more neurons than a tile holds must be repeated anyway: it says nothing
    # about which neurons belong together, and its path would only echo the index order.
    same = (k[1:] == k[:-1]) & (readers[k[1:]] <= cols)
    a.append(t[:-1][same])
    b.append(t[1:][same])
    a_all, b_all = np.concatenate(a), np.concatenate(b)
    keep = a_all != b_all
    a_all, b_all = a_all[keep], b_all[keep]
    ones = np.ones(a_all.size, dtype=np.int64)
    g = sp.coo_array((np.concatenate([ones, ones]), (np.concatenate([a_all, b_all]), np.concatenate([b_all, a_all]))),
                     shape=(syn.n, syn.n)).tocsr()
    g.sum_duplicates()
    return g


def _metis(graph: sp.csr_array, parts: int, seed: int) -> np.ndarray:
    import pymetis

    # Recursive bisection keeps communities whole far better than k-way at a tight balance
    # (measured in bench/RESULTS.md) and is faster; the small imbalance is repaired below.
    opts = pymetis.Options(seed=seed, ufactor=5)
    adjacency = pymetis.CSRAdjacency(graph.indptr, graph.indices)
    _, membership = pymetis.part_graph(parts, adjacency, eweights=graph.data, options=opts, recursive=True)
    return np.asarray(membership, dtype=np.int64)


def _networkx(graph: sp.csr_array, parts: int, cols: int, seed: int) -> np.ndarray:
    import networkx as nx

    if graph.nnz > NETWORKX_SLOW_EDGES:
        warnings.warn(f"partitioning a graph of {graph.nnz // 2} edges with networkx is slow: install pymetis",
                      SmallWarning, stacklevel=3)
    g = nx.from_scipy_sparse_array(graph)
    # Louvain communities give KL a good start: nodes ordered community by community.
    communities = nx.community.louvain_communities(g, seed=seed)
    start = [int(v) for c in sorted(communities, key=lambda c: (-len(c), min(c))) for v in sorted(c)]
    membership = np.zeros(graph.shape[0], dtype=np.int64)
    next_label = [0]

    def split(nodes: list[int], n_parts: int) -> None:
        if n_parts == 1:
            membership[nodes] = next_label[0]
            next_label[0] += 1
            return
        left_parts = (n_parts + 1) // 2
        size = round(len(nodes) * left_parts / n_parts)
        # Kernighan-Lin swaps pairs, so the sizes of the initial halves are kept: both fit.
        init = (set(nodes[:size]), set(nodes[size:]))
        left, right = nx.community.kernighan_lin_bisection(g.subgraph(nodes), partition=init, seed=seed)
        if len(left) != size:  # networkx does not promise to return the halves in the order given
            left, right = right, left
        rank = {v: i for i, v in enumerate(nodes)}  # keep the community order inside each half
        split(sorted(left, key=rank.__getitem__), left_parts)
        split(sorted(right, key=rank.__getitem__), n_parts - left_parts)

    split(start, parts)
    return membership


def _repair(membership: np.ndarray, graph: sp.csr_array, parts: int, cols: int) -> list[np.ndarray]:
    """Move neurons out of parts above ``cols``, the least attached first, into parts with room."""
    row = np.repeat(np.arange(graph.shape[0]), np.diff(graph.indptr))
    inside = np.bincount(row, weights=graph.data * (membership[graph.indices] == membership[row]),
                         minlength=graph.shape[0])
    sizes = np.bincount(membership, minlength=parts)
    for p in np.flatnonzero(sizes > cols):
        members = np.flatnonzero(membership == p)
        excess = members[np.argsort(inside[members], kind="stable")[: sizes[p] - cols]]
        for n in excess:
            room = np.flatnonzero(sizes < cols)
            q = int(room[np.argmin(sizes[room])])
            membership[n] = q
            sizes[p] -= 1
            sizes[q] += 1
    groups = [np.flatnonzero(membership == p) for p in range(parts)]
    return [g for g in groups if g.size]


# Keys read by more neurons than this many tiles' columns say nothing about which neurons belong
# together (a dense layer's inputs): they are left out of the row-sharing scores, not the rows.
_SHARED_KEY_TILES = 4


def row_sharing(syn: Synapses, cols: int) -> list[np.ndarray]:
    """Groups of at most ``cols`` neurons, grown greedily to share rows (see the module docstring).

    Each group starts at the lowest-numbered neuron left and adds, ``cols - 1`` times, the
    neuron that minimises (new rows, -(rows it shares with the group, each counted once per
    member reading it), index) among the neurons that share a row with the group (the
    lowest-numbered neuron left, if none does). Rows read by more than ``4 * cols`` neurons are
    left out of the scores. Each group is returned in the order it grew.
    """
    n = syn.n
    order = stable_order(syn.target, n)
    t_ptr = np.concatenate([[0], np.cumsum(np.bincount(syn.target, minlength=n))])
    keys_of = syn.key[order]  # neuron i's keys: keys_of[t_ptr[i]:t_ptr[i + 1]]
    readers_n = np.bincount(syn.key, minlength=syn.n_keys)
    k_order = stable_order(syn.key, syn.n_keys)
    k_ptr = np.concatenate([[0], np.cumsum(readers_n)])
    readers_of = syn.target[k_order].astype(np.int32)
    del k_order
    local = readers_n <= _SHARED_KEY_TILES * cols
    grow = _grow_groups_kernel() if syn.target.size >= COMPILED_FROM else _grow_groups_numpy
    grown, ends = grow(n, cols, t_ptr.astype(np.int64), keys_of.astype(np.int32),
                                        k_ptr.astype(np.int64), readers_of, local, syn.n_keys)
    # In the order grown: a group too wide for --max-split is halved in column order, and
    # each half of a grown block is again a block.
    return np.split(grown, ends[:-1])


def _grow_groups_numpy(n, cols, t_ptr, keys_of, k_ptr, readers_of, local, n_keys):
    """:func:`_grow_groups` in numpy operations per pick: no compilation to wait for, so it
    serves small networks (below ``COMPILED_FROM`` synapses); the same groups, in the same order."""
    degree = np.diff(t_ptr)
    covered = np.zeros(n, dtype=np.int64)  # of a neuron's keys, how many the group already reads
    affinity = np.zeros(n, dtype=np.int64)  # over its keys, the members reading them
    members_per_key = np.zeros(n_keys, dtype=np.int64)
    free = np.ones(n, dtype=bool)
    is_candidate = np.zeros(n, dtype=bool)

    def readers(keys: np.ndarray) -> np.ndarray:
        """Every reader of ``keys`` (with repeats), gathered from the key-major CSR at once."""
        starts, lengths = k_ptr[keys], k_ptr[keys + 1] - k_ptr[keys]
        offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
        return readers_of[offsets + np.arange(int(lengths.sum()))]

    groups: list[np.ndarray] = []
    next_free = 0
    while True:
        while next_free < n and not free[next_free]:
            next_free += 1
        if next_free >= n:
            break
        group: list[int] = []
        keys_used: list[np.ndarray] = []
        touched: list[np.ndarray] = []
        candidates = np.zeros(0, dtype=np.int64)
        pick = next_free
        while True:
            group.append(pick)
            free[pick] = False
            keys = keys_of[t_ptr[pick]:t_ptr[pick + 1]]
            fresh = keys[members_per_key[keys] == 0]
            keys_used.append(fresh)
            members_per_key[keys] += 1
            reached = readers(keys[local[keys]])
            np.add.at(affinity, reached, 1)
            np.add.at(covered, readers(fresh[local[fresh]]), 1)
            touched.append(reached)
            new = np.unique(reached[free[reached] & ~is_candidate[reached]])
            is_candidate[new] = True
            candidates = np.concatenate([candidates[free[candidates]], new])
            if len(group) == cols:
                break
            if candidates.size:
                pick = int(candidates[np.lexsort((candidates, -affinity[candidates], degree[candidates] - covered[candidates]))[0]])
            else:
                rest = np.flatnonzero(free[next_free:])
                if rest.size == 0:
                    break
                pick = next_free + int(rest[0])
        for reached in touched:
            covered[reached] = 0
            affinity[reached] = 0
        members_per_key[np.concatenate(keys_used)] = 0
        is_candidate[candidates] = False
        groups.append(np.asarray(group, dtype=np.int64))

    grown = np.concatenate(groups) if groups else np.zeros(0, dtype=np.int64)
    return grown, np.cumsum([g.size for g in groups], dtype=np.int64)


FREE, CANDIDATE, TAKEN = 0, 1, 2


def _grow_groups(n, cols, t_ptr, keys_of, k_ptr, readers_of, local, n_keys):
    """:func:`row_sharing`'s greedy loop: the neurons in the order grown and each group's end.

    Compiled by numba (``_grow_groups_kernel``); a group needs a pass over the keys of each
    member and their readers, and a scan of the candidates per pick.
    """
    covered = np.zeros(n, dtype=np.int32)  # of a neuron's keys, how many the group already reads
    affinity = np.zeros(n, dtype=np.int32)  # over its keys, the members reading them
    members_per_key = np.zeros(n_keys, dtype=np.int32)
    counted = np.zeros(n_keys, dtype=np.bool_)
    state = np.zeros(n, dtype=np.uint8)  # FREE, CANDIDATE (free, shares a row with the group) or TAKEN
    grown = np.empty(n, dtype=np.int64)
    ends = np.empty(n, dtype=np.int64)
    candidates = np.empty(n, dtype=np.int64)
    touched = np.empty(n, dtype=np.int64)  # neurons whose covered/affinity this group raised
    fresh_keys = np.empty(n_keys, dtype=np.int64)
    n_grown = n_groups = 0
    next_free = 0
    while True:
        while next_free < n and state[next_free] == TAKEN:
            next_free += 1
        if next_free >= n:
            break
        size = n_cand = n_touched = n_fresh = 0
        pick = next_free
        while True:
            grown[n_grown] = pick
            n_grown += 1
            size += 1
            state[pick] = TAKEN
            lo, hi = t_ptr[pick], t_ptr[pick + 1]
            # A key is fresh if no member read it before this neuron (a key this neuron lists
            # twice is fresh twice, and raises the member count once).
            for j in range(lo, hi):
                k = keys_of[j]
                fresh = members_per_key[k] == 0
                if fresh:
                    fresh_keys[n_fresh] = k
                    n_fresh += 1
                if not local[k]:
                    continue
                for r in range(k_ptr[k], k_ptr[k + 1]):
                    m = readers_of[r]
                    if affinity[m] == 0:
                        touched[n_touched] = m
                        n_touched += 1
                    affinity[m] += 1
                    if fresh:
                        covered[m] += 1
                    if state[m] == FREE:
                        state[m] = CANDIDATE
                        candidates[n_cand] = m
                        n_cand += 1
            for j in range(lo, hi):
                k = keys_of[j]
                if not counted[k]:
                    counted[k] = True
                    members_per_key[k] += 1
            for j in range(lo, hi):
                counted[keys_of[j]] = False
            if size == cols:
                break
            best, kept = -1, 0
            for c in range(n_cand):
                m = candidates[c]
                if state[m] == TAKEN:
                    continue
                candidates[kept] = m
                kept += 1
                if best < 0:
                    best = m
                    continue
                new_m, new_b = t_ptr[m + 1] - t_ptr[m] - covered[m], t_ptr[best + 1] - t_ptr[best] - covered[best]
                if new_m < new_b or new_m == new_b and (affinity[m] > affinity[best]
                                                        or affinity[m] == affinity[best] and m < best):
                    best = m
            n_cand = kept
            if best >= 0:
                pick = best
            else:
                pick = next_free
                while pick < n and state[pick] == TAKEN:
                    pick += 1
                if pick >= n:
                    break
        for c in range(n_touched):  # covered[m] > 0 only where affinity[m] > 0
            affinity[touched[c]] = 0
            covered[touched[c]] = 0
        for c in range(n_cand):
            if state[candidates[c]] == CANDIDATE:
                state[candidates[c]] = FREE
        for c in range(n_fresh):
            members_per_key[fresh_keys[c]] = 0
        ends[n_groups] = n_grown
        n_groups += 1
    return grown, ends[:n_groups]


@functools.cache
def _grow_groups_kernel():
    """:func:`_grow_groups` compiled (numba, cached on disk), or as plain Python without numba."""
    try:
        import numba
    except ImportError:  # correct, only slow
        return _grow_groups
    return numba.njit(cache=True)(_grow_groups)


def tiles_lower_bound(syn: Synapses, rows: int, cols: int) -> int:
    """No grouping into groups of at most ``cols`` neurons needs fewer tiles than this.

    A group needs at least as many rows as its neuron with the most distinct (source, delay)
    keys, so at least ``ceil(max / rows)`` tiles; the sum of group maxima is smallest when the
    neurons, sorted by their key count, are grouped ``cols`` at a time.
    """
    fan_in = np.sort(np.bincount(syn.target, minlength=syn.n))[::-1]
    return int(sum(max(1, math.ceil(int(chunk[0]) / rows)) for chunk in np.split(fan_in, range(cols, syn.n, cols)) if chunk.size))


def group_neurons(syn: Synapses, rows: int, cols: int, *, method: str = "auto", seed: int = 0) -> Grouping:
    """Partition the neurons into groups of at most ``cols`` (see the module docstring)."""
    if method not in METHODS:
        raise UnsupportedError(f"partitioner {method!r} is not one of {', '.join(METHODS)}")
    parts = max(1, math.ceil(syn.n / cols))
    candidates = [evaluate("sequential", syn, sequential(syn.n, cols), rows)]
    if method != "sequential" and parts > 1:
        graph = neuron_graph(syn, cols)
        use_metis = method == "metis" or (method == "auto" and have_pymetis())
        if method == "metis" and not have_pymetis():
            raise UnsupportedError("--partitioner metis needs pymetis: pip install pymetis (or use networkx)")
        membership = _metis(graph, parts, seed) if use_metis else _networkx(graph, parts, cols, seed)
        name = "metis" if use_metis else "networkx"
        candidates.append(evaluate(name, syn, _repair(membership, graph, parts, cols), rows))
    if method in ("metis", "networkx"):
        return candidates[-1]
    if method == "sequential":
        return candidates[0]
    if parts > 1:
        candidates.append(evaluate("row-sharing", syn, row_sharing(syn, cols), rows))
    return min(candidates, key=Grouping.score)
