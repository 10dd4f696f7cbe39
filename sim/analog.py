"""The memristive target with device-level non-idealities: what a real analog chip computes.

:class:`AnalogSimulator` runs a memristive :class:`~compiler.image.HardwareImage` like
``sim/memristive.py`` (the same chip: rows, crossbars, partial sums merged in the analog domain,
routing), but each device holds a *conductance*, not a level:

1. **finite levels**: level ``l`` of ``L`` is programmed towards ``G_min + l dG``,
   ``dG = (G_max - G_min) / (L - 1)``, with ``G_min``, ``G_max`` the range the compiler mapped
   the levels onto (``image.json`` ``device``), or the device's own range if it cannot hold
   that one (:func:`level_range`);
2. **programming noise**: the device model's write noise (PCM: sigma(w) of the IBM model, w the
   target as a fraction of G_max; TiOx: 1 % of the target);
3. **faults**: stuck devices recorded in the image sit at G_min or G_max whatever is programmed;
   ``reversed_fraction`` devices (TiOx) move the wrong way: they end at the mirror image of their
   target in the device's range;
4. **drift** ``t_read`` seconds after programming: ``G (t / t0)^-nu`` with a per-device ``nu``
   (PCM; TiOx does not drift);
5. **read noise**: 1/f noise of each read at ``t_read`` (PCM), drawn once per run;
6. **IR drop**: with ``r_wire > 0`` every tile's two crossbars (G+ and G-) are resistive
   networks with that wire resistance per segment (``analog_models.crossbar``'s nodal model,
   the one validated against ngspice). The network is linear in the row voltages, so each
   crossbar is solved once, for each row alone, and the simulator runs the resulting effective
   weights: the IR drop of any pattern of active rows, at the cost of an ideal crossbar.

Column currents are converted back to weight levels (``I / (V_read dG)``), so with every
non-ideality off the simulator equals :class:`~sim.memristive.IdealMemristiveSimulator` exactly.
Everything is batched over samples, vectorised, and seeded: the same seed gives the same chip.
"""

from __future__ import annotations

import numpy as np

from analog_models import devices
from analog_models.devices import DeviceNoise
from small.errors import SimulationError
from compiler.image import HardwareImage

from .chip import ChipSimulator


def device_noise(name: str) -> DeviceNoise:
    """The non-idealities of device ``name`` (``ideal``: none; ``pcm``, ``tiox``: ``analog_models.devices``)."""
    if name == "ideal":
        return DeviceNoise("ideal", 0.0, 25e-6)
    try:
        return devices.noise_model(name)
    except ValueError as exc:
        raise SimulationError(str(exc)) from None


def level_range(image: HardwareImage, device: DeviceNoise) -> tuple[float, float]:
    """``(G_min, G_max)`` (S) that ``device`` programs the image's levels onto: the image's range
    (the compiler's default, or a calibration's) when the device can hold it, else the device's
    own range (a TiOx device cannot go below its ``g_min``, so an image compiled for the default
    0.1-25 uS is spread over TiOx's range instead of being clipped to one end of it)."""
    g_min, g_max = image.conductance_range()
    if device.name != "ideal" and (g_min < device.g_min or g_max > device.g_max):
        return device.g_min, device.g_max
    return g_min, g_max


class AnalogSimulator(ChipSimulator):
    """Device-level simulation of a memristive HardwareImage (see the module docstring).

    Parameters
    ----------
    image : a memristive HardwareImage.
    device : ``"pcm"``, ``"tiox"`` or ``"ideal"`` (exact conductances: only finite levels,
        stuck devices and IR drop remain); default: the image's calibrated device, else PCM.
    t_read : seconds between programming and the reads (drift, read noise; PCM drifts after
        its ``t0`` of 20 s).
    r_wire : ohms per wire segment of the crossbars (0: no IR drop); default: the image's
        calibrated wire resistance, else 0.
    reversed_fraction : fraction of devices that move the wrong way when programmed.
    noise : False turns programming and read noise off (drift and faults stay).
    seed : the chip's random draw (programming, drift exponents, read noise).
    """

    value_dtype = np.float64

    def __init__(self, image: HardwareImage, *, device: str | None = None, t_read: float = 1.0,
                 r_wire: float | None = None, reversed_fraction: float = 0.0, noise: bool = True,
                 seed: int = 0):
        if image.target != "memristive":
            raise SimulationError(f"the image targets {image.target!r}: the analog simulator runs memristive images "
                                  "(compile with --target memristive)")
        # a calibrated image (small compile --calibration) names its device and wire resistance
        calibrated = image.meta.get("device") or {}
        device = device or calibrated.get("model", "pcm")
        r_wire = float(calibrated.get("r_wire_ohm", 0.0)) if r_wire is None else r_wire
        for name, value, lo in (("t_read", t_read, 0.0), ("r_wire", r_wire, 0.0),
                                ("reversed_fraction", reversed_fraction, 0.0)):
            if not np.isfinite(value) or value < lo or (name == "t_read" and value == 0):
                raise SimulationError(f"{name} must be a positive finite number, not {value!r}")
        if reversed_fraction > 1:
            raise SimulationError(f"reversed_fraction must be in [0, 1], not {reversed_fraction!r}")
        self.device = device_noise(device)
        self.t_read, self.r_wire = float(t_read), float(r_wire)
        rng = np.random.default_rng(seed)
        self.g_min, self.g_max = level_range(image, self.device)
        self.dG = (self.g_max - self.g_min) / (image.levels - 1)
        pos, neg = (self.conductances(levels, rng, noise=noise, reversed_fraction=reversed_fraction)
                    for levels in (image.arrays["g_pos"], image.arrays["g_neg"]))
        # stuck devices: at the end of the range whatever was programmed (and they do not drift)
        if "stuck_pos" in image.arrays:
            for g, stuck in ((pos, image.arrays["stuck_pos"]), (neg, image.arrays["stuck_neg"])):
                g[stuck >= 0] = self.g_min + stuck[stuck >= 0] * self.dG
        self.g_pos, self.g_neg = pos, neg
        # the weight of each cell in level units; the base class folds the partial-sum columns.
        # Exact conductances give exact levels (no rounding of (G+ - G-) / dG).
        if self.r_wire > 0:
            weights = (self.ir_drop_weights(), np.zeros_like(pos))
        elif self.device.name == "ideal" and not reversed_fraction:
            weights = image.effective_levels()
        else:
            weights = ((pos - neg) / self.dG, np.zeros_like(pos))
        super().__init__(image, weights=weights)

    # -- devices ---------------------------------------------------------------------------
    def conductances(self, levels: np.ndarray, rng: np.random.Generator, *, noise: bool,
                     reversed_fraction: float) -> np.ndarray:
        """Conductances (siemens) that devices at ``levels`` hold at ``t_read``."""
        d = self.device
        target = self.g_min + levels.astype(np.float64) * self.dG
        if reversed_fraction:
            flip = rng.random(target.shape) < reversed_fraction
            target = np.where(flip, self.g_max + self.g_min - target, target)
        g = d.program(target, rng) if (noise and d.program) else target
        if d.drift:
            g = d.drift(g, self.t_read, rng)
        if noise and d.read:
            g = d.read(g, self.t_read, rng)
        return np.clip(g, 0.0, None)

    # -- IR drop ---------------------------------------------------------------------------
    def ir_drop_weights(self) -> np.ndarray:
        """Each cell's effective weight (level units) with wire resistance, ``[tiles, rows, cols]``.

        A crossbar with wire resistance is a linear network: its column currents are
        ``v_rows @ M`` for an ``R x C`` transfer matrix ``M``, which the nodal model gives by
        solving once for each row driven alone. Row ``r`` of ``(M+ - M-) / dG`` is then what one
        event on row ``r`` adds to each column, exactly as with every other row active at once.
        """
        from analog_models.crossbar import NodalCrossbar

        return np.stack([(NodalCrossbar(gp, self.r_wire).effective_conductances()
                          - NodalCrossbar(gn, self.r_wire).effective_conductances()) / self.dG
                         for gp, gn in zip(self.g_pos, self.g_neg)])

    # -- arithmetic: floats in level units, as sim/memristive.py ---------------------------------
    def _drive(self, current: np.ndarray, bias: np.ndarray) -> np.ndarray:
        return current + bias
