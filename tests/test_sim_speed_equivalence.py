"""The fast paths of the compiler give what the plain numpy ones give (issue 22: same images).

The partitioner's compiled loops (numba, used from ``COMPILED_FROM`` synapses on) and its
counting sorts are checked against the numpy versions, and ``np.unique``, on networks small
enough to run both.
"""

from __future__ import annotations

import numpy as np
import pytest

from compiler import partition
from compiler.partition import Synapses


def _synapses(n: int, fan_in: int, n_inputs: int, seed: int) -> Synapses:
    rng = np.random.default_rng(seed)
    # Target-major, as the compiler lists them; a few repeated keys and some shared inputs.
    target = np.repeat(np.arange(n), fan_in)
    key = rng.integers(0, n + n_inputs, target.size)
    key_source = np.concatenate([np.full(n_inputs, -1), np.arange(n)])
    return Synapses(n=n, target=target, key=key.astype(np.int64), key_source=key_source)


@pytest.mark.parametrize("seed, cols", [(0, 16), (1, 64), (2, 8)])
def test_compiled_row_sharing_grows_the_numpy_groups(seed, cols):
    syn = _synapses(300, 12, 20, seed)
    numpy_groups = partition.row_sharing(syn, cols)  # below COMPILED_FROM: numpy
    kernel = partition._grow_groups_kernel()
    old = partition._grow_groups_numpy
    try:
        partition._grow_groups_numpy = kernel  # what row_sharing runs above COMPILED_FROM
        compiled_groups = partition.row_sharing(syn, cols)
    finally:
        partition._grow_groups_numpy = old
    assert len(compiled_groups) == len(numpy_groups)
    for a, b in zip(compiled_groups, numpy_groups):
        np.testing.assert_array_equal(a, b)


def test_counting_sorts_and_uniques_equal_numpy():
    rng = np.random.default_rng(3)
    values = rng.integers(0, 1000, 20_000)
    np.testing.assert_array_equal(partition._stable_order_kernel()(values, 1000), np.argsort(values, kind="stable"))
    major, minor = rng.integers(0, 30, 20_000), rng.integers(0, 500, 20_000)
    want = np.unique(major * 500 + minor, return_inverse=True)
    for got in (partition.unique_pairs(major, 30, minor, 500), partition.unique_inverse(major * 500 + minor)):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    got = partition.unique_small(minor, 500)
    want = np.unique(minor, return_inverse=True)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    syn = _synapses(200, 10, 5, 4)
    np.testing.assert_array_equal(partition.key_major_order(syn), np.lexsort((syn.target, syn.key)))
