"""The memristive target with ideal devices: quantised conductances, exact analog neurons.

Each synapse contributes ``(G+ - G-) / dG`` (its level difference) per input event, stuck
devices included when the image records them; neurons follow ``docs/semantics.md`` in float64
with their parameters in level units (``docs/architecture.md``). Programming and read noise,
drift and IR drop are the analog-models stage's business (``sim/analog.py``); this simulator
isolates what quantisation and faults alone cost.
"""

from __future__ import annotations

import numpy as np

from small.errors import SimulationError
from compiler.image import HardwareImage

from .chip import ChipSimulator


class IdealMemristiveSimulator(ChipSimulator):
    """Float simulation of a memristive HardwareImage with ideal (noise-free) devices.

    ``stuck=False`` ignores the stuck devices recorded in the image (quantisation only).
    """

    value_dtype = np.float64

    def __init__(self, image: HardwareImage, *, stuck: bool = True):
        if image.target != "memristive":
            raise SimulationError(f"the image targets {image.target!r}: use sim.digital.DigitalSimulator for it")
        pos_neg = image.effective_levels() if stuck else (image.arrays["g_pos"], image.arrays["g_neg"])
        super().__init__(image, weights=pos_neg)

    def _drive(self, current: np.ndarray, bias: np.ndarray) -> np.ndarray:
        return current + bias
