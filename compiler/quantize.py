"""Weights to conductance levels: differential pairs with a per-tile scale.

A synapse is a pair of devices programmed to levels ``l+`` and ``l-`` in ``[0, L-1]``; its
weight is ``scale * (l+ - l-)``, so the representable weights are ``scale * q`` for the
integers ``q`` in ``[-(L-1), L-1]``. One device of a pair is always at level 0 (``l+ = max(q,
0)``, ``l- = max(-q, 0)``), which keeps the other device's full range for the value.

**Scale rule.** The scale of a tile group (the tiles that share neuron columns) minimises the
squared error ``sum (w - scale * clip(rint(w / scale), -(L-1), L-1))**2`` over the group's
synapses. :func:`best_scale` evaluates a grid of 96 candidates between 0.2 and 1.0 times
``max|w| / (L-1)`` (below that, clipping the largest weights saves more error on the small
ones), then refines the best with least-squares updates ``scale = sum(w q) / sum(q q)`` while
the error decreases. Thresholds, biases and resets are divided by the same scale
(``compiler/mapper.py``), so the neuron sees exactly the rescaled network.
"""

from __future__ import annotations

import numpy as np

GRID = np.linspace(0.2, 1.0, 96)
#: The most weights of one scale group that :func:`zeroing_outliers` considers outliers.
MAX_OUTLIERS = 8
#: How many times the next weight an outlier is at least.
OUTLIER_GAP = 4.0


def quantize(w: np.ndarray, scale: float, levels: int) -> np.ndarray:
    """Signed level differences ``q`` (int) for weights ``w`` at ``scale``."""
    top = levels - 1
    return np.clip(np.rint(w / scale), -top, top).astype(np.int64)


def _sse(w: np.ndarray, scale: float, levels: int) -> float:
    return float(np.sum((w - scale * quantize(w, scale, levels)) ** 2))


def best_scale(w: np.ndarray, levels: int) -> float:
    """The MSE-optimal scale for the weights ``w`` (see the module docstring); 1.0 if all zero."""
    w = np.asarray(w, dtype=np.float64).ravel()
    w = w[w != 0]
    top = levels - 1
    wmax = float(np.max(np.abs(w))) if w.size else 0.0
    if wmax == 0:
        return 1.0
    # Candidates in chunks, so 256x256 tiles (65k weights x 96 candidates) stay small in memory.
    candidates = GRID * wmax / top
    errors = np.empty(candidates.size)
    for i in range(0, candidates.size, 16):
        s = candidates[i : i + 16, None]
        q = np.clip(np.rint(w[None, :] / s), -top, top)
        errors[i : i + 16] = np.sum((w[None, :] - s * q) ** 2, axis=1)
    scale = float(candidates[int(np.argmin(errors))])
    err = float(errors.min())
    for _ in range(20):
        q = quantize(w, scale, levels)
        qq = float(np.dot(q, q))
        if qq == 0:
            break
        new = float(np.dot(w, q)) / qq
        new_err = _sse(w, new, levels) if new > 0 else np.inf
        if not new_err < err:
            break
        scale, err = new, new_err
    return scale


def level_pairs(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Device levels ``(l+, l-)`` for signed level differences ``q``."""
    return np.maximum(q, 0).astype(np.uint8), np.maximum(-q, 0).astype(np.uint8)


def zeroing_outliers(w: np.ndarray, q: np.ndarray, owner: np.ndarray, scales: np.ndarray,
                     levels: int) -> list[tuple[int, np.ndarray, float]]:
    """Groups where a few outlying weights set the scale and leave most of the others at level 0.

    A scale group (``owner`` of each weight; ``scales`` per group) is flagged when more than
    half of its weights quantise to ``q = 0`` because of outliers: its ``m`` largest ``|w|``
    (``m`` up to :data:`MAX_OUTLIERS`) are at least :data:`OUTLIER_GAP` times the next one, and
    without them the others' own best scale would keep at least half of them. A group whose
    weights are merely too many for a coarse grid (2 or 3 levels) is not flagged. Returns
    ``(group, indices of the outlying weights in w, largest first, fraction of the group's
    weights at 0)`` for each flagged group, worst first.
    """
    count = np.bincount(owner, minlength=scales.size)
    zeroed = np.bincount(owner, weights=(q == 0), minlength=scales.size) / np.maximum(count, 1)
    order = np.lexsort((-np.abs(w), owner))  # by group, largest |w| first
    mag = np.abs(w[order])
    first = np.concatenate([[0], np.cumsum(count)])
    flagged = []
    for g in np.flatnonzero(zeroed > 0.5):
        top = mag[first[g]:min(first[g + 1], first[g] + MAX_OUTLIERS + 1)]
        for m in np.flatnonzero(top[:-1] >= OUTLIER_GAP * top[1:]) + 1:  # a gap after the m largest
            rest = w[order[first[g] + m:first[g + 1]]]
            if np.mean(quantize(rest, best_scale(rest, levels), levels) == 0) <= 0.5:
                flagged.append((int(g), order[first[g]:first[g] + m], float(zeroed[g])))
                break
    return sorted(flagged, key=lambda f: -f[2])
