"""The memristive target with ideal devices: quantised conductances, exact analog neurons.

Each synapse contributes ``(G+ - G-) / dG`` (its level difference) per input event, stuck
devices included when the image records them; neurons follow ``docs/semantics.md`` in float64
with their parameters in level units (``docs/architecture.md``). Programming and read noise,
drift and IR drop are the analog-models stage's business (``sim/analog.py``); this simulator
isolates what quantisation and faults alone cost.

The memristive chip's **digital read-out** is modelled here too, for both memristive simulators
(:class:`ScaledReadout`): a tile controller converts a host-flagged LI column's membrane with its
ADC and multiplies the code by the column's digital scale (``compiler/column_scale.py``,
unsigned Q3.13, ``SCALE_ONE`` by default); :func:`scale_codes` is that integer arithmetic, the
twin of ``hdl/memristive_tile.py``'s, and ``column_scale`` the words a simulator's chip holds.
"""

from __future__ import annotations

import numpy as np

from small.errors import SimulationError
from compiler.column_scale import SCALE_FRAC, SCALE_ONE, check_scale_words
from compiler.image import COL_NEURON, NON_SPIKING_MODELS, HardwareImage

from .chip import ChipSimulator


def scale_codes(codes, scale, v_bits: int) -> np.ndarray:
    """ADC codes times column scale words, as the tile controller computes them (int64):
    ``clamp((code * scale + 2**(F-1)) >> F, -2**(v_bits-1), 2**(v_bits-1) - 1)``, ``F = SCALE_FRAC``
    (round half up, saturate to the codes' own width; ``scale = SCALE_ONE`` changes nothing)."""
    x = (np.asarray(codes, dtype=np.int64) * np.asarray(scale, dtype=np.int64) + (1 << (SCALE_FRAC - 1))) >> SCALE_FRAC
    lim = 1 << (v_bits - 1)
    return np.clip(x, -lim, lim - 1)


def value_columns(image: HardwareImage) -> np.ndarray:
    """``[tiles, cols]`` bool: the columns whose membrane a tile controller converts and reports
    (host-flagged LI neuron columns), the only ones its digital scale reaches."""
    a = image.arrays
    return (a["col_kind"] == COL_NEURON) & np.isin(a["col_model"], NON_SPIKING_MODELS) & a["host_out"].astype(bool)


class ScaledReadout:
    """The chip's digital read-out of a memristive simulator: ``column_scale`` (``[tiles, cols]``
    words, ``compiler/column_scale.py``), applied to the LI values it reports.

    :meth:`run`'s value outputs are the float model, ``v * scale / 2**SCALE_FRAC`` (no ADC
    rounding, as everywhere in the float simulators); verification takes the chip's integers
    from :meth:`value_codes`.
    """

    def _set_column_scale(self, image: HardwareImage, scale) -> None:
        if scale is None:
            scale = np.full((image.n_tiles, image.cols), SCALE_ONE, dtype=np.int64)
        try:
            self.column_scale = check_scale_words(scale, (image.n_tiles, image.cols))
        except ValueError as exc:
            raise SimulationError(str(exc)) from None
        self._readout = (self.column_scale.reshape(-1)[self.addr] / SCALE_ONE
                         if np.any(self.column_scale != SCALE_ONE) else None)

    def _values(self, state: dict[str, np.ndarray]) -> np.ndarray:
        return state["v"] if self._readout is None else state["v"] * self._readout

    def value_codes(self, codes, k, v_bits: int) -> np.ndarray:
        """ADC ``codes`` (signed ``v_bits``) of neurons ``k`` (positions in ``addr``) as the chip
        reports them (:func:`scale_codes` with each neuron's column scale)."""
        return scale_codes(codes, self.column_scale.reshape(-1)[self.addr[np.asarray(k)]], v_bits)


class IdealMemristiveSimulator(ScaledReadout, ChipSimulator):
    """Float simulation of a memristive HardwareImage with ideal (noise-free) devices.

    ``stuck=False`` ignores the stuck devices recorded in the image (quantisation only);
    ``column_scale``: the tile controllers' per-column digital scale words, ``[tiles, cols]``
    (default ``SCALE_ONE``: values as converted).
    """

    value_dtype = np.float64

    def __init__(self, image: HardwareImage, *, stuck: bool = True, column_scale=None):
        if image.target != "memristive":
            raise SimulationError(f"the image targets {image.target!r}: use sim.digital.DigitalSimulator for it")
        pos_neg = image.effective_levels() if stuck else (image.arrays["g_pos"], image.arrays["g_neg"])
        super().__init__(image, weights=pos_neg)
        self._set_column_scale(image, column_scale)

    def _drive(self, current: np.ndarray, bias: np.ndarray) -> np.ndarray:
        return current + bias
