"""The per-column digital scale of a memristive tile controller: its fixed-point format.

A memristive tile's controller multiplies every ADC conversion it reports (the membrane of a
host-flagged LI column, ``hdl/memristive_tile.py``) by its column's **scale**, a run-time
configuration word the host writes (``cfg_*`` ports), computed from reference reads of the
array: drift compensation (``sim/analog.py``'s ``drift_compensation``). The format is fixed
here, once, for the RTL (``hdl/memristive_tile.py``) and its bit-exact twin
(``sim/memristive.py``, :func:`sim.memristive.scale_codes`):

- a scale is an **unsigned Q3.13** number in ``SCALE_BITS = 16`` bits: the word ``s`` means
  ``s / 2**13``, so ``0 <= factor <= 8 - 2**-13`` in steps of ``2**-13`` (1.2e-4);
  ``SCALE_ONE = 2**13`` (1.0) is every column's scale after reset and leaves every value as it is;
- a conversion ``code`` (signed ``v_bits``, ``docs/architecture.md``) becomes
  ``clamp(floor((code * s + 2**12) / 2**13), -2**(v_bits-1), 2**(v_bits-1) - 1)``:
  rounded half up (towards +inf) and saturated to the conversion's own width;
- :func:`quantise_scale` turns a float factor into its word: ``min(floor(f * 2**13 + 1/2), 2**16 - 1)``
  (half up; a factor of 8 or more saturates).

Pure data: numpy only.
"""

from __future__ import annotations

import numpy as np

SCALE_BITS = 16
"""Width of a column's scale word (unsigned)."""
SCALE_FRAC = 13
"""Fraction bits of a scale word: ``s`` means ``s / 2**SCALE_FRAC``."""
SCALE_ONE = 1 << SCALE_FRAC
"""The scale word of a factor of exactly 1.0 (the reset value: values pass unchanged)."""
SCALE_MAX = (1 << SCALE_BITS) - 1


def quantise_scale(factors) -> np.ndarray:
    """Scale words (int64, same shape) of float ``factors``: ``factor * 2**SCALE_FRAC`` rounded half
    up, saturated to ``[0, 2**SCALE_BITS - 1]`` (a factor of 8 or more reads as ``8 - 2**-13``).

    ValueError for a negative, NaN or infinite factor: a scale multiplies a magnitude.
    """
    f = np.asarray(factors, dtype=np.float64)
    if not np.all(np.isfinite(f)) or np.any(f < 0):
        bad = f[~(np.isfinite(f) & (f >= 0))].reshape(-1)[0]
        raise ValueError(f"a column scale must be a finite factor >= 0, not {float(bad)!r}")
    words = np.floor(np.minimum(f, SCALE_MAX) * SCALE_ONE + 0.5)
    return np.minimum(words, SCALE_MAX).astype(np.int64)


def check_scale_words(words, shape: tuple[int, ...], what: str = "column scale") -> np.ndarray:
    """``words`` as an int64 array of ``shape`` whose entries fit ``SCALE_BITS`` unsigned bits
    (ValueError naming the fix otherwise)."""
    arr = np.asarray(words)
    if arr.shape != tuple(shape):
        raise ValueError(f"the {what} must have shape {list(shape)} (one word per column), not {list(arr.shape)}")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"the {what} must be integer words (compiler.column_scale.quantise_scale turns "
                         f"factors into words), not {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() > SCALE_MAX):
        raise ValueError(f"the {what} words must lie in [0, {SCALE_MAX}] (unsigned Q3.{SCALE_FRAC}), "
                         f"not {int(arr.min() if arr.min() < 0 else arr.max())}")
    return arr
