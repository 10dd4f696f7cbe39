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
   reversed devices move the wrong way. From the chip's fault map (``faults``) they are
   programmed as the chip programs, by program-and-verify from G_min: a device with update
   factor ``r < 0`` ends at ``clip(G_min + r (G - G_min)) = G_min`` (the compiler already
   records it as stuck at level 0, ``compiler/faults.py``). At random, ``reversed_fraction``
   devices are programmed open-loop from the middle of the range and end at the mirror image of
   their target;
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

**Drift compensation** (``drift_compensation``, as aihwkit's ``GlobalDriftCompensation`` for
PCM): drift scales every conductance down by a similar factor, so the chip reads a reference
right after programming and again at ``t_read`` and rescales its read-out by the ratio. The
reference is the crossbar's response to every row driven at once, ``sum_r |G+ - G-|``
(aihwkit's all-ones input, absolute sum), per tile (``"tile"``: one factor per crossbar) or per
column (``"column"``: what a per-column digital scale in the tile controller applies):
``a = ref(t0) / ref(t_read)`` multiplies that column's current. ``ref(t0)`` is read after the
programming noise and before any drift; both reads are read-noise free (an averaged read).

**On the chip** (``digital_scale=True``, what ``small verify`` attaches to a memristive chip):
the tile controller sees a spiking column only through its comparator, so only the columns it
converts, the host-flagged LI columns, can be compensated digitally: their currents (and those
of the partial-sum columns merged into them) stay as read, and the chip multiplies each ADC
conversion by the column's scale word ``quantise_scale(a)`` (``compiler/column_scale.py``,
unsigned Q3.13, rounded half up; ``self.column_scale``, what the host writes into the
controllers). The other columns keep ``a`` on their current, the analog side's own compensation
(a gain trim of the analog neuron; outside the RTL). Because the digital scale multiplies the
whole membrane, it scales an LI column's bias, leak and ``v_init`` too (the float model scales
only the crossbar current); with ``drift_compensation=None`` every scale is 1.0.
Everything is batched over samples, vectorised, and seeded: the same seed gives the same chip.
"""

from __future__ import annotations

import numpy as np

from analog_models import devices
from analog_models.devices import DeviceNoise
from small.errors import SimulationError
from compiler.column_scale import quantise_scale
from compiler.faults import FaultMap
from compiler.image import HardwareImage

from .chip import ChipSimulator
from .memristive import ScaledReadout, value_columns


DRIFT_COMPENSATION = (None, "tile", "column")


def analog_spec(kind: str) -> dict:
    """The analog tiles a verification names: ``DEVICE[@T_READ][+tile|+column]`` (``pcm``,
    ``pcm@86400+column``: PCM devices read a day after programming, drift-compensated per
    column) as :class:`AnalogSimulator` keywords ``device``, ``t_read``, ``drift_compensation``.
    :class:`SimulationError` naming the form otherwise (the device itself is checked by the simulator)."""
    form = "DEVICE[@T_READ][+tile|+column], e.g. pcm@86400+column"
    rest, _, mode = str(kind).partition("+")
    device, at, t_read = rest.partition("@")
    spec: dict = {"device": device}
    if mode:
        if mode not in ("tile", "column"):
            raise SimulationError(f"drift compensation {mode!r} in analog model {kind!r}: use +tile or +column ({form})")
        spec["drift_compensation"] = mode
    if at:
        try:
            spec["t_read"] = float(t_read)
        except ValueError:
            raise SimulationError(f"read time {t_read!r} in analog model {kind!r} is not a number of seconds ({form})") \
                from None
    return spec


def reversed_factors(image: HardwareImage, faults: FaultMap) -> np.ndarray:
    """Update factor of every device of ``image`` from the chip's fault map, ``[tiles, rows, cols, 2]``
    (1 where not reversed); :class:`SimulationError` if the map is for another chip."""
    chip = int(image.meta.get("chip_tiles", image.n_tiles))
    if (faults.rows, faults.cols) != (image.rows, image.cols) or faults.tiles < chip:
        raise SimulationError(f"the fault map is for {faults.tiles} tiles of {faults.rows}x{faults.cols} but the image "
                              f"was compiled for {chip} tiles of {image.rows}x{image.cols}: use the map it was "
                              "compiled with")
    if faults.factor is None:
        return np.ones((image.n_tiles, image.rows, image.cols, 2))
    return faults.factor[image.arrays["tile_phys"]]


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


class AnalogSimulator(ScaledReadout, ChipSimulator):
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
    faults : the chip's fault map (the one the image was compiled with): its reversed devices
        move the wrong way by their own factors (its stuck devices are in the image already, and
        an image compiled with this map records the reversed ones as stuck at level 0 too).
    drift_compensation : None, ``"tile"`` or ``"column"``: rescale each tile's (column's)
        read-out by its reference read (see the module docstring).
    digital_scale : apply the factors of the columns the tile controllers convert (host-flagged
        LI columns) as the chip does, as quantised per-column digital scales on their ADC codes
        (``column_scale``), not on their currents (see the module docstring).
    noise : False turns programming and read noise off (drift and faults stay).
    seed : the chip's random draw (programming, drift exponents, read noise).
    """

    value_dtype = np.float64

    def __init__(self, image: HardwareImage, *, device: str | None = None, t_read: float = 1.0,
                 r_wire: float | None = None, reversed_fraction: float = 0.0, noise: bool = True,
                 seed: int = 0, faults: FaultMap | None = None, drift_compensation: str | None = None,
                 digital_scale: bool = False):
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
        if drift_compensation not in DRIFT_COMPENSATION:
            raise SimulationError(f"drift_compensation must be one of {', '.join(map(str, DRIFT_COMPENSATION))}, "
                                  f"not {drift_compensation!r}")
        factor = reversed_factors(image, faults) if faults is not None else None
        self.device = device_noise(device)
        self.t_read, self.r_wire = float(t_read), float(r_wire)
        rng = np.random.default_rng(seed)
        self.g_min, self.g_max = level_range(image, self.device)
        self.dG = (self.g_max - self.g_min) / (image.levels - 1)
        self.reference = None
        pos, neg = (self.conductances(levels, rng, noise=noise, reversed_fraction=reversed_fraction,
                                      factor=None if factor is None else factor[..., d],
                                      compensation=drift_compensation)
                    for d, levels in enumerate((image.arrays["g_pos"], image.arrays["g_neg"])))
        # stuck devices: at the end of the range whatever was programmed (and they do not drift)
        if "stuck_pos" in image.arrays:
            for g, stuck in ((pos, image.arrays["stuck_pos"]), (neg, image.arrays["stuck_neg"])):
                g[stuck >= 0] = self.g_min + stuck[stuck >= 0] * self.dG
        self.g_pos, self.g_neg = pos, neg
        # the weight of each cell in level units; the base class folds the partial-sum columns.
        # Exact conductances give exact levels (no rounding of (G+ - G-) / dG).
        if self.r_wire > 0:
            weights = (self.ir_drop_weights(), np.zeros_like(pos))
        elif self.device.name == "ideal" and not reversed_fraction and (factor is None or np.all(factor == 1)):
            weights = image.effective_levels()
        else:
            weights = ((pos - neg) / self.dG, np.zeros_like(pos))
        self.compensation = None
        column_scale = None
        if drift_compensation is not None:
            self.compensation = factor = self.compensation_factors(drift_compensation, image)
            if digital_scale:  # the columns the controllers convert: their scale is digital, on the codes
                column_scale = quantise_scale(self.compensation)
                converted = value_columns(image).reshape(-1)[image.home_columns()].reshape(factor.shape)
                factor = np.where(converted, 1.0, factor)
            weights = (weights[0] * factor[:, None, :], weights[1] * factor[:, None, :])
        super().__init__(image, weights=weights)
        self._set_column_scale(image, column_scale)


    # -- devices ---------------------------------------------------------------------------
    def conductances(self, levels: np.ndarray, rng: np.random.Generator, *, noise: bool,
                     reversed_fraction: float, factor: np.ndarray | None = None,
                     compensation: str | None = None) -> np.ndarray:
        """Conductances (siemens) that devices at ``levels`` hold at ``t_read``; with
        ``compensation``, the reference reads of ``t0`` and ``t_read`` are kept in
        ``self.reference`` (``[2, 2, ...]``: time, device)."""
        d = self.device
        target = self.g_min + levels.astype(np.float64) * self.dG
        if reversed_fraction:
            flip = rng.random(target.shape) < reversed_fraction
            target = np.where(flip, self.g_max + self.g_min - target, target)
        if factor is not None:  # program-and-verify from G_min (see the module docstring)
            target = np.where(factor != 1, np.clip(self.g_min + factor * (target - self.g_min), self.g_min, self.g_max),
                              target)
        g = d.program(target, rng) if (noise and d.program) else target
        programmed = g
        if d.drift:
            g = d.drift(g, self.t_read, rng)
        drifted = g
        if noise and d.read:
            g = d.read(g, self.t_read, rng)
        if compensation is not None:
            reads = np.stack([np.clip(programmed, 0.0, None), np.clip(drifted, 0.0, None)])
            self.reference = reads[:, None] if self.reference is None else np.concatenate(
                [self.reference, reads[:, None]], axis=1)
        return np.clip(g, 0.0, None)

    # -- drift compensation ----------------------------------------------------------------
    def compensation_factors(self, mode: str, image: HardwareImage) -> np.ndarray:
        """Read-out factor of every column, ``[tiles, cols]``: ``ref(t0) / ref(t_read)`` of its
        tile (``"tile"``) or its own (``"column"``), ``ref = sum over rows |G+ - G-|`` with the
        stuck devices at their levels (the chip reads what its devices hold)."""
        ref = self.reference.copy()  # [time, device, tiles, rows, cols]
        if "stuck_pos" in image.arrays:
            for k, stuck in enumerate((image.arrays["stuck_pos"], image.arrays["stuck_neg"])):
                ref[:, k][:, stuck >= 0] = self.g_min + stuck[stuck >= 0] * self.dG
        diff = np.abs(ref[:, 0] - ref[:, 1])  # [time, tiles, rows, cols]
        per = diff.sum(axis=2) if mode == "column" else diff.sum(axis=(2, 3))[:, :, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            a = np.where((per[0] > 0) & (per[1] > 0), per[0] / per[1], 1.0)  # no reference: leave as read
        return np.broadcast_to(a, (image.n_tiles, image.cols)).astype(np.float64)

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
