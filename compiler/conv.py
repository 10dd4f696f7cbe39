"""Unroll 1-D and 2-D convolutions into sparse matrices over C-order flattened tensors.

A crossbar has no notion of weight sharing: every (output position, input position) pair that
a kernel tap connects becomes one synapse. The matrix acts on the input flattened as
``[C_in, *spatial]`` and yields the output flattened as ``[C_out, *out_spatial]`` (PyTorch's
cross-correlation convention, as NIR uses).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from small.errors import NetworkError
from small.limits import TAP_BYTES, check_memory


def _per_dim(value, ndim: int, what: str, where: str) -> tuple[int, ...]:
    arr = np.atleast_1d(np.asarray(value)).astype(np.int64).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, ndim)
    if arr.size != ndim:
        raise NetworkError(f"{where}: {what} {value!r} does not have {ndim} entries")
    return tuple(int(v) for v in arr)


def conv_output_shape(
    weight_shape: tuple[int, ...], in_spatial: tuple[int, ...], stride, padding, dilation, where: str = "conv"
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Return (output spatial shape, left padding per dim) for a convolution."""
    ndim = len(in_spatial)
    kernel = tuple(int(k) for k in weight_shape[2:])
    st = _per_dim(stride, ndim, "stride", where)
    dil = _per_dim(dilation, ndim, "dilation", where)
    if isinstance(padding, (str, bytes)):
        mode = padding.decode() if isinstance(padding, bytes) else padding
        if mode == "valid":
            pad_l, pad_r = (0,) * ndim, (0,) * ndim
        elif mode == "same":
            total = [d * (k - 1) for d, k in zip(dil, kernel)]
            pad_l = tuple(t // 2 for t in total)
            pad_r = tuple(t - t // 2 for t in total)
        else:
            raise NetworkError(f"{where}: padding {mode!r} is not 'same', 'valid' or a number")
    else:
        pad_l = pad_r = _per_dim(padding, ndim, "padding", where)
    if min(st) < 1 or min(dil) < 1 or min(pad_l) < 0:
        raise NetworkError(f"{where}: stride and dilation must be >= 1 and padding >= 0")
    out = tuple(
        (n + pl + pr - d * (k - 1) - 1) // s + 1
        for n, pl, pr, d, k, s in zip(in_spatial, pad_l, pad_r, dil, kernel, st)
    )
    if min(out) < 1:
        raise NetworkError(f"{where}: kernel {kernel} does not fit the input of spatial shape {in_spatial}")
    return out, pad_l


def conv_matrix(
    weight: np.ndarray, in_shape: tuple[int, ...], stride=1, padding=0, dilation=1, groups: int = 1, where: str = "conv"
) -> tuple[sp.csr_array, tuple[int, ...]]:
    """Sparse matrix of a convolution and its output shape ``(C_out, *out_spatial)``.

    ``weight`` has shape ``[C_out, C_in / groups, *kernel]`` and ``in_shape`` is
    ``(C_in, *spatial)`` with one or two spatial dimensions.
    """
    weight = np.asarray(weight, dtype=np.float64)
    ndim = weight.ndim - 2
    if ndim not in (1, 2) or len(in_shape) != ndim + 1:
        raise NetworkError(f"{where}: weight of shape {list(weight.shape)} does not match an input of shape {list(in_shape)}")
    c_out, c_in_g = weight.shape[:2]
    groups = int(groups)
    c_in = int(in_shape[0])
    if groups < 1 or c_out % groups or c_in != c_in_g * groups:
        raise NetworkError(
            f"{where}: input has {c_in} channels but the weight expects {c_in_g} x {groups} groups "
            f"(weight shape {list(weight.shape)})"
        )
    spatial = tuple(int(s) for s in in_shape[1:])
    out_spatial, pad_l = conv_output_shape(weight.shape, spatial, stride, padding, dilation, where)
    st = _per_dim(stride, ndim, "stride", where)
    dil = _per_dim(dilation, ndim, "dilation", where)
    # Pad to two spatial dims so one code path serves Conv1d and Conv2d.
    if ndim == 1:
        weight = weight[:, :, None, :]
        spatial, out_spatial2 = (1, *spatial), (1, *out_spatial)
        st, dil, pad_l = (1, *st), (1, *dil), (0, *pad_l)
    else:
        out_spatial2 = out_spatial
    kh, kw = weight.shape[2:]
    oh, ow = out_spatial2
    h, w = spatial
    taps = c_out * c_in_g * kh * kw * oh * ow  # the index grids below hold one entry per tap and position
    check_memory(taps * TAP_BYTES, f"{where}: unrolling the convolution of input {list(in_shape)} gives {taps} kernel "
                 "taps, which", error=NetworkError)
    co, cig, ky, kx, oy, ox = np.meshgrid(
        np.arange(c_out), np.arange(c_in_g), np.arange(kh), np.arange(kw), np.arange(oh), np.arange(ow), indexing="ij"
    )
    ci = (co // (c_out // groups)) * c_in_g + cig
    iy = oy * st[0] - pad_l[0] + ky * dil[0]
    ix = ox * st[1] - pad_l[1] + kx * dil[1]
    values = weight[co, cig, ky, kx]
    keep = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w) & (values != 0)
    rows = ((co * oh + oy) * ow + ox)[keep]
    cols = ((ci * h + iy) * w + ix)[keep]
    n_out, n_in = c_out * oh * ow, c_in * h * w
    matrix = sp.csr_array((values[keep], (rows, cols)), shape=(n_out, n_in))
    matrix.sum_duplicates()
    return matrix, (c_out, *out_spatial)


def pool_matrix(
    kernel_size, in_shape: tuple[int, ...], stride=None, padding=0, average: bool = False, where: str = "pool"
) -> tuple[sp.csr_array, tuple[int, ...]]:
    """Sparse matrix of a 2-D sum (or average) pooling and its output shape ``(C, *out_spatial)``.

    Pooling is a depthwise convolution with a kernel of ones (``1/(kh*kw)`` for the average,
    padding counted as zeros, as PyTorch's ``count_include_pad=True``); the output size follows
    NIR's rule ``floor((n + 2 p - k) / s) + 1``. ``stride`` defaults to the kernel size.
    """
    if len(in_shape) != 3:
        raise NetworkError(f"{where}: pooling needs an input of shape [channels, height, width], not {list(in_shape)}")
    kernel = _per_dim(kernel_size, 2, "kernel_size", where)
    if min(kernel) < 1:
        raise NetworkError(f"{where}: kernel_size {list(kernel)} must be >= 1")
    stride = kernel if stride is None else stride
    pad = _per_dim(padding, 2, "padding", where)
    spatial = tuple(int(n) for n in in_shape[1:])
    if any(k > n + 2 * p for k, n, p in zip(kernel, spatial, pad)):
        raise NetworkError(
            f"{where}: pooling window {list(kernel)} is larger than its (padded) input {list(spatial)}: "
            "use a smaller kernel_size or feed it a larger input"
        )
    channels = int(in_shape[0])
    weight = np.full((channels, 1, *kernel), 1.0 / (kernel[0] * kernel[1]) if average else 1.0)
    return conv_matrix(weight, in_shape, stride, pad, 1, channels, where)
