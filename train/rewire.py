"""Connectivity that fits the tiles: every neuron's inputs on one tile (no fan-in splits).

A tile of R rows and C columns holds up to C neurons (a *group*, ``compiler/partition.py``) and
one row per distinct row key -- (source, routed delay) -- among its neurons' synapses. A group
needs no partial-sum tiles when its keys number at most R. :func:`plan_groups` takes the
groups the compiler's ``sequential`` partitioner would form (neurons in network order, C at a
time; the default partitioner keeps whichever of that and its graph partition needs fewer
tiles, so this plan bounds the tiles); :func:`select_keys` chooses each group's R keys.

**Choice of keys** (greedy, concave): neuron ``i`` with incoming weights ``w_i`` keeps the
coverage ``c_i = sum over kept keys of w_ik^2 / |w_i|^2``; keys are added one at a time, each
time the key that most increases ``sum_i log(eps + c_i)`` over the group's neurons. The log
gives every neuron some inputs before any neuron gets many. Neurons are served by layer, the
last first (:func:`tiers`): in a group holding hidden and output neurons, the outputs keep their
inputs and the hidden neurons share what rows are left.
``fan_in`` (Q-rewiring's per-neuron limit, ``K``) then keeps each neuron's ``K`` largest
synapses among its group's keys.

**Rewiring** during training (deep rewiring, Bellec et al. 2018, as Q-rewiring uses it): the
dormant synapses keep their weights and receive the loss's gradient as if they were connected
(``train/finetune.py``), and the selection is run again every epoch on the current weights, so a
dormant connection whose weight grew replaces an active one that shrank.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.ir import Network
from compiler.mapper import latencies

EPS = 0.05


@dataclass
class SynapseTable:
    """Every possible synapse of the network: projection ``proj``, target row ``i`` and source
    column ``j`` of its weight, the target neuron's network index and the synapse's row key."""

    proj: np.ndarray
    i: np.ndarray
    j: np.ndarray
    neuron: np.ndarray
    key: np.ndarray


def synapse_table(net: Network) -> SynapseTable:
    """All entries of every projection (dense: the rewiring may connect any of them)."""
    lat = latencies(net)
    pop_off, n = {}, 0
    for p in net.populations:
        pop_off[p.name], n = n, n + p.size
    in_off, n_in = {}, 0
    for inp in net.inputs:
        in_off[inp.name], n_in = n_in, n_in + inp.size
    span = max([p.delay + max(lat.values(), default=0) for p in net.projections], default=0) + 1
    cols = {k: [] for k in ("proj", "i", "j", "neuron", "key")}
    for k, proj in enumerate(net.projections):
        n_t, n_s = proj.weight.shape
        i, j = (a.ravel() for a in np.meshgrid(np.arange(n_t), np.arange(n_s), indexing="ij"))
        if proj.source in in_off:
            src, delay = in_off[proj.source] + j, proj.delay + lat[proj.target]
        else:
            src, delay = n_in + pop_off[proj.source] + j, proj.delay + lat[proj.target] - lat[proj.source] - 1
        for name, value in (("proj", np.full(i.size, k)), ("i", i), ("j", j), ("neuron", pop_off[proj.target] + i),
                            ("key", src * span + delay)):
            cols[name].append(value)
    return SynapseTable(**{k: np.concatenate(v).astype(np.int64) for k, v in cols.items()})


def tiers(net: Network) -> np.ndarray:
    """Per neuron: how many projections its population is from the inputs (longest path), so
    that later layers are served first by :func:`select_keys`."""
    depth = {p.name: 0 for p in net.populations}
    for _ in range(len(depth)):
        for proj in net.projections:
            if proj.source in depth and proj.delay == 0 and depth[proj.target] < depth[proj.source] + 1:
                depth[proj.target] = depth[proj.source] + 1
    return np.concatenate([np.full(p.size, depth[p.name]) for p in net.populations])


def plan_groups(n_neurons: int, cols: int) -> np.ndarray:
    """The group of every neuron under the ``sequential`` partition (network order, ``cols`` at a time)."""
    return np.arange(n_neurons) // cols


def select_keys(table: SynapseTable, weight: np.ndarray, group: np.ndarray, rows: int,
                fan_in: int | None = None, tier: np.ndarray | None = None) -> np.ndarray:
    """Which synapses stay connected (bool per table entry): at most ``rows`` keys per group
    and at most ``fan_in`` synapses per neuron (see the module docstring). ``weight`` holds every
    table entry's current weight; ``tier`` (per neuron, higher first) serves the neurons nearer
    the outputs before those feeding them: an output neuron without inputs is a lost class,
    a hidden neuron without inputs one feature fewer."""
    w2 = weight.astype(np.float64) ** 2
    norm = np.bincount(table.neuron, weights=w2, minlength=group.size)
    share = w2 / np.maximum(norm[table.neuron], 1e-300)
    keep = np.zeros(table.key.size, dtype=bool)
    g_of = group[table.neuron]
    for g in np.unique(g_of):
        idx = np.flatnonzero(g_of == g)
        keys, inv = np.unique(table.key[idx], return_inverse=True)
        members, m_inv = np.unique(table.neuron[idx], return_inverse=True)
        if keys.size <= rows:
            chosen = np.ones(keys.size, dtype=bool)
        else:
            gain = np.zeros((keys.size, members.size))  # share of each member's weight a key brings
            np.add.at(gain, (inv, m_inv), share[idx])
            cover = np.zeros(members.size)
            chosen = np.zeros(keys.size, dtype=bool)
            member_tier = np.zeros(members.size) if tier is None else tier[members]
            for level in sorted(set(member_tier.tolist()), reverse=True):
                now = member_tier == level
                useful = (gain[:, now] > 0).any(axis=1)
                while chosen.sum() < rows and (useful & ~chosen).any():
                    value = np.log(EPS + cover[None, now] + gain[:, now]).sum(1) - np.log(EPS + cover[now]).sum()
                    value[chosen | ~useful] = -np.inf
                    best = int(np.argmax(value))
                    chosen[best] = True
                    cover += gain[best]
        keep[idx] = chosen[inv]
    if fan_in is not None:
        order = np.lexsort((-w2, table.neuron))  # per neuron, largest weight first, among the kept
        order = order[keep[order]]
        first = np.searchsorted(table.neuron[order], np.arange(group.size))
        rank = np.arange(order.size) - first[table.neuron[order]]
        keep[order[rank >= fan_in]] = False
    return keep


def group_rows(table: SynapseTable, keep: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Distinct row keys each group reads with the synapses ``keep``."""
    g = group[table.neuron[keep]]
    pairs = np.unique(np.stack([g, table.key[keep]]), axis=1)
    return np.bincount(pairs[0], minlength=int(group.max(initial=-1)) + 1)
