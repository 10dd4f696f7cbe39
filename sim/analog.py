"""The memristive target with device-level non-idealities: what a real analog chip computes.

:class:`AnalogSimulator` runs a memristive :class:`~compiler.image.HardwareImage` like
``sim/memristive.py`` (the same chip: rows, crossbars, partial sums merged in the analog domain,
routing), but each device holds a *conductance*, not a level:

1. **finite levels**: level ``l`` of ``L`` is programmed towards ``G_min + l dG``,
   ``dG = (G_max - G_min) / (L - 1)``, with ``G_min``, ``G_max`` the range the compiler mapped
   the levels onto (``image.json`` ``device``; the device model's own range otherwise);
2. **programming noise**: the device model's write noise (PCM: sigma(w) of the IBM model, w the
   target as a fraction of G_max; TiOx: 1 % of the target);
3. **faults**: stuck devices recorded in the image sit at G_min or G_max whatever is programmed;
   ``reversed_fraction`` devices (TiOx) move the wrong way: they end at the mirror image of their
   target in the device's range;
4. **drift** ``t_read`` seconds after programming: ``G (t / t0)^-nu`` with a per-device ``nu``
   (PCM; TiOx does not drift);
5. **read noise**: 1/f noise of each read at ``t_read`` (PCM), drawn once per run;
6. **IR drop**: with ``r_wire > 0`` every tile's two crossbars (G+ and G-) are solved as
   resistive networks with that wire resistance per segment (``analog_models.crossbar``'s nodal
   model, the one validated against ngspice), rows driven at ``payload * v_read``.

Column currents are converted back to weight levels (``I / (V_read dG)``), so with every
non-ideality off the simulator equals :class:`~sim.memristive.IdealMemristiveSimulator` exactly.
Everything is batched over samples, vectorised, and seeded: the same seed gives the same chip.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from compiler.errors import SimulationError
from compiler.image import COL_PARTIAL, HardwareImage

from .chip import ChipSimulator


@dataclass(frozen=True)
class DeviceNoise:
    """How one device technology deviates from its target conductance (see the module docstring).

    Built from ``analog_models.devices`` by :func:`device_noise`; ``"ideal"`` has no noise at all.
    """

    name: str
    g_min: float
    """Lowest programmable conductance (siemens)."""
    g_max: float
    """Highest programmable conductance (siemens)."""
    program: object = None
    """``program(g_target [S], rng) -> g`` or None (exact)."""
    drift: object = None
    """``drift(g [S], t [s], rng) -> g`` or None (no drift)."""
    read: object = None
    """``read(g [S], t [s], rng) -> g`` or None (noise-free reads)."""


def device_noise(name: str) -> DeviceNoise:
    """The non-idealities of device ``name`` (``ideal``, ``pcm``, ``tiox``)."""
    if name == "ideal":
        return DeviceNoise("ideal", 0.0, 25e-6)
    from analog_models import devices

    return devices.noise_model(name)


class AnalogSimulator(ChipSimulator):
    """Device-level simulation of a memristive HardwareImage (see the module docstring).

    Parameters
    ----------
    image : a memristive HardwareImage.
    device : ``"pcm"``, ``"tiox"`` or ``"ideal"`` (exact conductances: only finite levels,
        stuck devices and IR drop remain).
    t_read : seconds between programming and the reads (drift, read noise); at least ``t0``.
    r_wire : ohms per wire segment of the crossbars (0: no IR drop).
    v_read : the read voltage of a row with payload 1 (volts).
    reversed_fraction : fraction of devices that move the wrong way when programmed.
    noise : False turns programming and read noise off (drift and faults stay).
    seed : the chip's random draw (programming, drift exponents, read noise).
    """

    value_dtype = np.float64

    def __init__(self, image: HardwareImage, *, device: str = "pcm", t_read: float = 1.0, r_wire: float = 0.0,
                 v_read: float = 0.2, reversed_fraction: float = 0.0, noise: bool = True, seed: int = 0):
        if image.target != "memristive":
            raise SimulationError(f"the image targets {image.target!r}: the analog simulator runs memristive images "
                                  "(compile with --target memristive)")
        for name, value, lo in (("t_read", t_read, 0.0), ("r_wire", r_wire, 0.0), ("v_read", v_read, 0.0),
                                ("reversed_fraction", reversed_fraction, 0.0)):
            if not np.isfinite(value) or value < lo or (name in ("t_read", "v_read") and value == 0):
                raise SimulationError(f"{name} must be a positive finite number, not {value!r}")
        if reversed_fraction > 1:
            raise SimulationError(f"reversed_fraction must be in [0, 1], not {reversed_fraction!r}")
        self.device = device_noise(device)
        self.t_read, self.r_wire, self.v_read = float(t_read), float(r_wire), float(v_read)
        rng = np.random.default_rng(seed)
        # the conductance range the compiler mapped levels onto (image.json "device"), else the device's
        rng_us = image.meta.get("device") or {}
        self.g_min = float(rng_us.get("g_min_uS", self.device.g_min * 1e6)) * 1e-6
        self.g_max = float(rng_us.get("g_max_uS", self.device.g_max * 1e6)) * 1e-6
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
        exact = self.device.name == "ideal" and not reversed_fraction
        super().__init__(image, weights=image.effective_levels() if exact else ((pos - neg) / self.dG, np.zeros_like(pos)))
        if self.r_wire > 0:
            self._setup_ir_drop(image)

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
    def _setup_ir_drop(self, image: HardwareImage) -> None:
        from analog_models.crossbar import NodalCrossbar

        T, R, C = image.n_tiles, image.rows, image.cols
        self._nodal = [(NodalCrossbar(self.g_pos[t], self.r_wire), NodalCrossbar(self.g_neg[t], self.r_wire))
                       for t in range(T)]
        # tile column -> neuron index (partial-sum columns fold onto their neuron)
        kind = image.arrays["col_kind"].reshape(-1)
        home = np.where(kind == COL_PARTIAL, image.arrays["merge_to"].reshape(-1), np.arange(T * C))
        k = self.index[home]
        keep = k >= 0
        self._fold = sp.csr_array((np.ones(keep.sum()), (np.flatnonzero(keep), k[keep])), shape=(T * C, self.addr.size))

    def _crossbar(self, rows: np.ndarray) -> np.ndarray:
        if self.r_wire == 0:
            return super()._crossbar(rows)
        T, R = len(self._nodal), self.image.rows
        volts = rows.reshape(rows.shape[0], T, R) * self.v_read
        cols = []
        for t, (pos, neg) in enumerate(self._nodal):
            v = volts[:, t]
            if not v.any():
                cols.append(np.zeros((rows.shape[0], self.image.cols)))
                continue
            cols.append(pos.column_currents(v) - neg.column_currents(v))
        current = np.concatenate(cols, axis=1) / (self.v_read * self.dG)
        return np.asarray(current @ self._fold)

    # -- arithmetic: floats in level units, as sim/memristive.py ---------------------------------
    def _encode_inputs(self, x: np.ndarray) -> np.ndarray:
        return x.astype(np.float64)

    def _drive(self, current: np.ndarray, bias: np.ndarray) -> np.ndarray:
        return current + bias
