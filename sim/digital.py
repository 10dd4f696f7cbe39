"""Bit-exact model of the digital twin: integer crossbars and fixed-point neurons.

This is the specification the RTL is checked against, so it follows ``docs/architecture.md``
("Integer neuron arithmetic") operation by operation: every intermediate value is an int64
numpy array, saturated to ``v_bits`` where the document says so, and decays round with
``mulr(x, a) = (x * a + 2**(decay_bits - 1)) >> decay_bits`` (arithmetic shift).

Example
-------
>>> image = load_image("build/net")                       # doctest: +SKIP
>>> DigitalSimulator(image).run(x).output_array()         # [T, batch, n_out]
"""

from __future__ import annotations

import numpy as np

from small.errors import SimulationError
from compiler.image import HardwareImage

from .chip import ChipSimulator


class DigitalSimulator(ChipSimulator):
    """Integer simulation of a digital HardwareImage, batched over samples."""

    value_dtype = np.int64

    def __init__(self, image: HardwareImage):
        if image.target != "digital":
            raise SimulationError(
                f"the image targets {image.target!r}: the digital twin runs digital images (compile with --target digital)"
            )
        super().__init__(image)
        ar = image.arithmetic
        self.frac, self.decay_bits = ar.frac_bits, ar.decay_bits
        self.lo, self.hi = -(1 << (ar.v_bits - 1)), (1 << (ar.v_bits - 1)) - 1
        self.half = 1 << (ar.decay_bits - 1)

    def _sat(self, x: np.ndarray) -> np.ndarray:
        return np.clip(x, self.lo, self.hi)

    def _mulr(self, x: np.ndarray, a: np.ndarray) -> np.ndarray:
        return (x * a + self.half) >> self.decay_bits


    def encode_inputs(self, x: np.ndarray) -> np.ndarray:
        # Host events carry a signed input_bits payload: saturate, round to nearest (ties to even).
        # Saturating first equals rounding first for every finite value, and nothing wraps.
        q = self.saturate_inputs(x)
        return q if q.dtype.kind == "i" else np.rint(q).astype(np.int64)

    def _drive(self, current: np.ndarray, bias: np.ndarray) -> np.ndarray:
        return self._sat((current << self.frac) + bias)

    def _values(self, state: dict[str, np.ndarray]) -> np.ndarray:
        return state["v"] / float(1 << self.frac)
