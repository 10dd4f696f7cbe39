"""Unrolled convolutions equal PyTorch-convention cross-correlation and reject impossible geometry."""

import itertools
import zlib
from pathlib import Path

import numpy as np
import pytest

from compiler.conv import conv_matrix
from small.errors import NetworkError

FIXTURES = Path(__file__).parent / "fixtures"


def reference_conv(x, w, stride, padding, dilation, groups):
    """Direct cross-correlation by loops: x [C_in, *spatial], w [C_out, C_in/groups, *kernel]."""
    ndim = x.ndim - 1
    kernel = w.shape[2:]
    stride, dilation = (stride,) * ndim, (dilation,) * ndim
    if padding == "valid":
        pads = [(0, 0)] * ndim
    elif padding == "same":
        totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
        pads = [(t // 2, t - t // 2) for t in totals]
    else:
        pads = [(padding, padding)] * ndim
    xp = np.pad(x, [(0, 0), *pads])
    out_spatial = [
        (xp.shape[1 + i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1 for i in range(ndim)
    ]
    c_out, c_in_g = w.shape[:2]
    per_group = c_out // groups
    y = np.zeros((c_out, *out_spatial))
    for co in range(c_out):
        g = co // per_group
        for pos in itertools.product(*(range(n) for n in out_spatial)):
            acc = 0.0
            for cig in range(c_in_g):
                for tap in itertools.product(*(range(k) for k in kernel)):
                    idx = tuple(p * s + t * d for p, s, t, d in zip(pos, stride, tap, dilation))
                    acc += w[(co, cig, *tap)] * xp[(g * c_in_g + cig, *idx)]
            y[(co, *pos)] = acc
    return y


def torch_output_size(n, k, stride, padding, dilation):
    """PyTorch's documented formula: floor((n + 2p - d(k-1) - 1) / s + 1)."""
    if padding == "same":
        return n
    p = 0 if padding == "valid" else padding
    return (n + 2 * p - dilation * (k - 1) - 1) // stride + 1


CASES = [
    # (in_shape [C_in, *spatial], kernel, c_out, stride, padding, dilation, groups)
    ((1, 7), (3,), 2, 1, 0, 1, 1),
    ((2, 9), (3,), 4, 2, 1, 1, 2),
    ((3, 8), (2,), 3, 1, "same", 2, 1),
    ((2, 10), (4,), 2, 2, "valid", 2, 1),
    ((4, 6), (3,), 4, 1, "same", 1, 2),
    ((2, 7), (4,), 2, 1, "same", 1, 1),  # odd total padding: the extra element goes right
    ((1, 5, 5), (3, 3), 2, 1, 0, 1, 1),
    ((2, 6, 7), (3, 2), 4, 2, 1, 1, 2),
    ((2, 7, 6), (2, 3), 3, 1, "same", 2, 1),
    ((4, 8, 8), (3, 3), 2, 2, "valid", 2, 2),
    ((3, 5, 6), (4, 4), 2, 1, "same", 1, 1),  # odd total padding in both axes
    ((2, 4, 9), (1, 3), 2, 1, 1, 2, 1),
]


@pytest.mark.parametrize("in_shape, kernel, c_out, stride, padding, dilation, groups", CASES)
def test_conv_matrix_equals_direct_cross_correlation(in_shape, kernel, c_out, stride, padding, dilation, groups):
    rng = np.random.default_rng(zlib.crc32(repr((in_shape, kernel, stride, padding, dilation, groups)).encode()))
    w = rng.normal(size=(c_out, in_shape[0] // groups, *kernel))
    matrix, out_shape = conv_matrix(w, in_shape, stride, padding, dilation, groups)
    expected_spatial = tuple(
        torch_output_size(n, k, stride, padding, dilation) for n, k in zip(in_shape[1:], kernel)
    )
    assert out_shape == (c_out, *expected_spatial)
    assert matrix.shape == (np.prod(out_shape), np.prod(in_shape))
    for _ in range(3):
        x = rng.normal(size=in_shape)
        y = reference_conv(x, w, stride, padding, dilation, groups)
        assert y.shape == out_shape
        np.testing.assert_allclose(matrix @ x.reshape(-1), y.reshape(-1), rtol=1e-12, atol=1e-12)


def test_conv_matrix_per_dimension_geometry_and_zero_taps():
    """Tuple stride/padding/dilation apply per axis; zero weights create no synapses."""
    rng = np.random.default_rng(1)
    w = rng.normal(size=(2, 1, 3, 2))
    w[0, 0, 1, :] = 0.0
    in_shape = (1, 7, 6)
    matrix, out_shape = conv_matrix(w, in_shape, stride=(2, 1), padding=(1, 0), dilation=(1, 2))
    assert out_shape == (2, (7 + 2 - 2 - 1) // 2 + 1, (6 - 2 - 1) // 1 + 1)
    x = rng.normal(size=in_shape)
    # Reference: pad rows only, then loop with per-axis stride and dilation.
    xp = np.pad(x, [(0, 0), (1, 1), (0, 0)])
    y = np.zeros(out_shape)
    for co, oy, ox in itertools.product(*(range(n) for n in out_shape)):
        y[co, oy, ox] = sum(
            w[co, 0, ky, kx] * xp[0, oy * 2 + ky, ox + 2 * kx] for ky in range(3) for kx in range(2)
        )
    np.testing.assert_allclose(matrix @ x.reshape(-1), y.reshape(-1), atol=1e-12)
    assert matrix.nnz == np.count_nonzero(matrix.toarray())
    rows_per_channel = out_shape[1] * out_shape[2]
    # Channel 0 has 4 non-zero taps, channel 1 has 6: no synapse may exceed that per output.
    per_row = np.diff(matrix.indptr)
    assert per_row[:rows_per_channel].max() <= 4 and per_row[rows_per_channel:].max() <= 6


def test_conv_matrix_accepts_padding_string_as_bytes():
    """HDF5 hands strings back as bytes; 'same' must still mean same."""
    w = np.ones((1, 1, 3))
    a, shape_a = conv_matrix(w, (1, 5), padding=b"same")
    b, shape_b = conv_matrix(w, (1, 5), padding="same")
    assert shape_a == shape_b == (1, 5)
    assert (a != b).nnz == 0


@pytest.mark.parametrize(
    "weight_shape, in_shape, kwargs, message",
    [
        ((2, 3, 3, 3), (2, 5, 5), {}, "input has 2 channels"),
        ((4, 1, 3), (3, 8), {"groups": 2}, "channels"),
        ((3, 1, 3), (2, 8), {"groups": 2}, "groups"),
        ((1, 1, 5, 5), (1, 3, 3), {}, "does not fit"),
        ((1, 1, 5), (1, 2), {"padding": 1}, "does not fit"),
        ((1, 1, 3, 3), (1, 4, 4), {"dilation": 2}, "does not fit"),
        ((1, 1, 3), (1, 5), {"stride": 0}, "stride"),
        ((1, 1, 3), (1, 5), {"padding": "full"}, "padding"),
        ((1, 1, 3, 3), (1, 5), {}, "does not match"),
    ],
)
def test_bad_geometry_raises_network_error(weight_shape, in_shape, kwargs, message):
    with pytest.raises(NetworkError, match=message) as info:
        conv_matrix(np.ones(weight_shape), in_shape, where="Conv node 'c1'", **kwargs)
    assert "'c1'" in str(info.value)


# -----------------------------------------------------------------------------------------
# Convolution-aware placement
# -----------------------------------------------------------------------------------------
def _synapses(net, rows=16, cols=16):
    """The partitioner's view of ``net``, as compile_network builds it."""
    from compiler import mapper

    seen = {}

    def spy(syn, *args, **kwargs):
        seen["syn"] = syn
        return original(syn, *args, **kwargs)

    original = mapper.group_neurons
    mapper.group_neurons = spy
    try:
        result = mapper.compile_network(net, mapper.CompileOptions(rows=rows, cols=cols))
    finally:
        mapper.group_neurons = original
    return seen["syn"], result.report


def test_conv_layers_are_placed_in_blocks_that_share_rows():
    """snnTorch's Conv2d(1,4,3) on 8x8 -> LIF -> Linear(144,5) -> LIF on 16x16 tiles: each group
    holds 2x2 output positions with all 4 channels (a 4x4 input window: 16 rows, one tile), and
    the 5 output neurons read 144 rows (9 tiles): 18 tiles, the lower bound (32 by graph cut)."""
    from compiler.nir_frontend import import_nir
    from compiler.partition import evaluate, group_neurons, row_sharing, tiles_lower_bound

    net = import_nir(FIXTURES / "snntorch_conv.nir", framework="snntorch")
    syn, report = _synapses(net)
    assert report.tiles_used == 18 and report.partitioner == "row-sharing"
    assert tiles_lower_bound(syn, 16, 16) == 18
    groups = row_sharing(syn, 16)
    first = np.sort(groups[0])
    channel, pos = np.divmod(first, 36)
    assert sorted(set(channel)) == [0, 1, 2, 3] and sorted(set(pos)) == [0, 1, 6, 7]  # (0,0) (0,1) (1,0) (1,1)
    assert evaluate("x", syn, groups, 16).rows[:9].tolist() == [16] * 9
    assert group_neurons(syn, 16, 16, method="metis").tiles > 18


@pytest.mark.parametrize("seed", range(4))
def test_the_tile_bound_is_below_every_grouping(seed):
    from compiler.partition import METHODS, Synapses, group_neurons, row_sharing, evaluate, sequential, tiles_lower_bound

    rng = np.random.default_rng(seed)
    n, n_keys, rows, cols = 60, 80, 8, 6
    target = rng.integers(0, n, 700)
    key = rng.integers(0, n_keys, 700)
    pairs = np.unique(target * n_keys + key)
    syn = Synapses(n=n, target=pairs // n_keys, key=pairs % n_keys, key_source=np.full(n_keys, -1))
    bound = tiles_lower_bound(syn, rows, cols)
    for method in METHODS:
        assert group_neurons(syn, rows, cols, method=method).tiles >= bound
    for _ in range(20):  # random groupings too
        perm = rng.permutation(n)
        assert evaluate("r", syn, [perm[i:i + cols] for i in range(0, n, cols)], rows).tiles >= bound
    groups = row_sharing(syn, cols)
    assert sorted(np.concatenate(groups).tolist()) == list(range(n)) and max(map(len, groups)) <= cols
    assert len(sequential(n, cols)) == len(groups)
