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

import math
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from small.errors import SmallWarning, UnsupportedError

METHODS = ("auto", "metis", "networkx", "sequential")
# Above this many graph edges networkx's pure-Python Kernighan-Lin becomes slow.
NETWORKX_SLOW_EDGES = 2_000_000


def distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values. ``np.unique`` takes a hash-based path in numpy 2.4 that is 100x
    slower on 10M int64 values than sorting and dropping equal neighbours."""
    s = np.sort(values, kind="stable")
    return s[np.concatenate([[True], s[1:] != s[:-1]])] if s.size else s


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


def neuron_graph(syn: Synapses, cols: int) -> sp.csr_array:
    """The symmetric weighted graph described in the module docstring."""
    src = syn.key_source[syn.key]
    has_src = src >= 0
    a = [src[has_src], ]
    b = [syn.target[has_src]]
    order = np.lexsort((syn.target, syn.key))
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
    order = np.argsort(syn.target, kind="stable")
    t_ptr = np.searchsorted(syn.target[order], np.arange(n + 1))
    keys_of = syn.key[order]  # the row keys of neuron i: keys_of[t_ptr[i]:t_ptr[i + 1]]
    readers_n = np.bincount(syn.key, minlength=syn.n_keys)
    k_order = np.argsort(syn.key, kind="stable")
    k_ptr = np.searchsorted(syn.key[k_order], np.arange(syn.n_keys + 1))
    readers_of = syn.target[k_order]
    local = readers_n <= _SHARED_KEY_TILES * cols
    degree = np.diff(t_ptr)
    covered = np.zeros(n, dtype=np.int64)  # of a neuron's keys, how many the group already reads
    affinity = np.zeros(n, dtype=np.int64)  # over its keys, the members reading them
    members_per_key = np.zeros(syn.n_keys, dtype=np.int64)
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
        # In the order grown: a group too wide for --max-split is halved in column order, and
        # each half of a grown block is again a block.
        groups.append(np.asarray(group, dtype=np.int64))
    return groups


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
