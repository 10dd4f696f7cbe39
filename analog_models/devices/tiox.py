"""TiOx RRAM as a parametric device model: a bounded conductance, noisy writes, faulty devices.

The TiOx devices (Southampton, Prodromakis group) of the fault-pruning work: Kraisnikovic,
Stathopoulos, Prodromakis & Legenstein, "Fault Pruning: Robust Training of Neural Networks with
Memristive Weights", UCNC 2023, LNCS 14003, 124-139.

* **range**: resistance between ``r_min`` = 6,844 and ``r_max`` = 14,109 Ohm, so the
  conductance ``g = 1 / R`` lies in [70.9, 146.1] uS;
* **weight**: ``w = a (1/R - 1/R_c)`` with the reference ``R_c`` = 9,217 Ohm (108.5 uS), which
  sits in the middle of the conductance range, so one device holds a signed weight; by default
  ``a = 1 / (g_max - 1/R_c)`` maps the range onto w in [-1, 1];
* **write noise**: every write lands within 1 % (one sigma, multiplicative) of its intended
  conductance;
* **faults**: each device has an update factor ``f`` that multiplies every requested change:
  1 for a healthy device, 0 for a *stuck* one (it never moves), ``f ~ N(-1, 0.5)`` for a
  *reversed* one (it moves the wrong way, by a device-specific amount).

The size of one programming pulse is not a published figure: :attr:`TiOxParameters.pulse_step`
(1/32 of the range) is this model's choice. Every random function takes a seeded
``np.random.Generator``; conductances are in siemens.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .report import DeviceReport, Levels, distinguishable_levels

__all__ = ["NORMAL", "REVERSED", "STUCK", "TiOxParameters", "characterize", "conductance", "draw_faults", "program",
           "update", "weight"]

NAME = "tiox"
NORMAL, STUCK, REVERSED = 0, 1, 2
"""Device kinds returned by :func:`draw_faults`."""


@dataclass(frozen=True)
class TiOxParameters:
    """Parameters of the TiOx RRAM model (defaults: the fault-pruning work, Kraisnikovic et al. 2023)."""

    r_min: float = 6844.0
    """Lowest resistance, the device's g_max = 1 / r_min (ohm). Kraisnikovic et al. 2023."""
    r_max: float = 14109.0
    """Highest resistance, the device's g_min = 1 / r_max (ohm). Kraisnikovic et al. 2023."""
    r_c: float = 9217.0
    """Reference resistance of weight 0, w = a (1/R - 1/R_c) (ohm). Kraisnikovic et al. 2023."""
    write_noise: float = 0.01
    """Relative standard deviation of a write (1 %). Kraisnikovic et al. 2023."""
    stuck_fraction: float = 0.0
    """Fraction of devices that never change (update factor 0). A scenario parameter, not a measurement."""
    reversed_fraction: float = 0.0
    """Fraction of devices that move the wrong way (factor ~ N(reversed_mean, reversed_std)). A scenario parameter."""
    reversed_mean: float = -1.0
    """Mean update factor of a reversed device. Kraisnikovic et al. 2023."""
    reversed_std: float = 0.5
    """Standard deviation of a reversed device's update factor. Kraisnikovic et al. 2023."""
    pulse_step: float = 1 / 32
    """Conductance change of one programming pulse as a fraction of g_max - g_min (this model's choice)."""

    def __post_init__(self):
        for name in ("r_min", "r_max", "r_c"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive resistance in ohm, not {value!r}")
        if not self.r_min < self.r_c < self.r_max:
            raise ValueError(f"r_c must lie between r_min ({self.r_min!r}) and r_max ({self.r_max!r}), "
                             f"not {self.r_c!r}")
        for name in ("write_noise", "stuck_fraction", "reversed_fraction", "reversed_std"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number >= 0, not {value!r}")
        if self.stuck_fraction + self.reversed_fraction > 1:
            raise ValueError(f"stuck_fraction + reversed_fraction must be at most 1, not "
                             f"{self.stuck_fraction + self.reversed_fraction!r}")
        if not np.isfinite(self.reversed_mean):
            raise ValueError(f"reversed_mean must be a finite number, not {self.reversed_mean!r}")
        if not (isinstance(self.pulse_step, (int, float)) and 0 < self.pulse_step <= 1):
            raise ValueError(f"pulse_step must be in (0, 1] (a fraction of the range), not {self.pulse_step!r}")

    @property
    def g_min(self) -> float:
        """1 / r_max (S)."""
        return 1.0 / self.r_max

    @property
    def g_max(self) -> float:
        """1 / r_min (S)."""
        return 1.0 / self.r_min

    @property
    def g_c(self) -> float:
        """1 / r_c, the conductance of weight 0 (S)."""
        return 1.0 / self.r_c


DEFAULT = TiOxParameters()


def weight(g, params: TiOxParameters = DEFAULT, a: float | None = None) -> np.ndarray:
    """w = a (g - 1/R_c); ``a`` defaults to 1 / (g_max - 1/R_c), so g_max maps to w = 1."""
    a = 1.0 / (params.g_max - params.g_c) if a is None else a
    return a * (np.asarray(g, dtype=np.float64) - params.g_c)


def conductance(w, params: TiOxParameters = DEFAULT, a: float | None = None) -> np.ndarray:
    """The conductance holding weight ``w`` (S), clipped to [g_min, g_max]: the inverse of :func:`weight`."""
    a = 1.0 / (params.g_max - params.g_c) if a is None else a
    return np.clip(params.g_c + np.asarray(w, dtype=np.float64) / a, params.g_min, params.g_max)


def draw_faults(shape, rng: np.random.Generator, params: TiOxParameters = DEFAULT) -> tuple[np.ndarray, np.ndarray]:
    """Draw each device's update factor and kind: ``(factor, kind)``, both of ``shape``.

    A device is stuck with probability ``stuck_fraction`` (factor 0, kind STUCK), reversed with
    probability ``reversed_fraction`` (factor ~ N(reversed_mean, reversed_std), kind REVERSED),
    healthy otherwise (factor 1, kind NORMAL).
    """
    u = rng.random(shape)
    kind = np.full(u.shape, NORMAL, dtype=np.int8)
    kind[u < params.stuck_fraction] = STUCK
    kind[(u >= params.stuck_fraction) & (u < params.stuck_fraction + params.reversed_fraction)] = REVERSED
    factor = np.ones(u.shape)
    factor[kind == STUCK] = 0.0
    rev = kind == REVERSED
    factor[rev] = params.reversed_mean + params.reversed_std * rng.standard_normal(int(rev.sum()))
    return factor, kind


def program(g_target, rng: np.random.Generator, params: TiOxParameters = DEFAULT) -> np.ndarray:
    """Program devices to ``g_target`` (S): within ``write_noise`` (relative), clipped to the range."""
    g_target = np.asarray(g_target, dtype=np.float64)
    g = g_target * (1.0 + params.write_noise * rng.standard_normal(g_target.shape))
    return np.clip(g, params.g_min, params.g_max)


def update(g, delta_g, factor, rng: np.random.Generator, params: TiOxParameters = DEFAULT) -> np.ndarray:
    """Apply requested changes ``delta_g`` (S) to devices at ``g`` with update factors ``factor``.

    ``g_new = clip((g + factor delta_g)(1 + write_noise xi), g_min, g_max)``; a device whose
    factor or requested change is 0 is not written and keeps ``g`` exactly.
    """
    g = np.asarray(g, dtype=np.float64)
    change = np.broadcast_to(np.asarray(factor, dtype=np.float64) * np.asarray(delta_g, dtype=np.float64), g.shape)
    written = change != 0
    noisy = (g + change) * (1.0 + params.write_noise * rng.standard_normal(g.shape))
    return np.where(written, np.clip(noisy, params.g_min, params.g_max), g)


def characterize(params: TiOxParameters | None = None, *, seed: int = 0, v_read: float = 0.2,
                 population: int = 10_000) -> DeviceReport:
    """TiOx's read lines, a 32-up 32-down pulse sequence of a healthy device, its levels, its faults.

    * I-V: one device programmed to each of 9 states evenly spaced over the range; the model
      is ohmic, I = g V over +- ``v_read``;
    * pulses: a healthy device from g_min, 1/``pulse_step`` pulses up then as many down, each
      a write with write noise;
    * levels: the pulse grid's states, each with sigma = ``write_noise`` of its conductance; a
      state is kept when its +-2 sigma band clears the last kept state's;
    * faults: the measured stuck and reversed fractions and the reversed factors' mean over a
      drawn ``population`` of devices.
    """
    p = params or TiOxParameters()
    rng = np.random.default_rng(seed)
    span = p.g_max - p.g_min
    voltage = np.linspace(-v_read, v_read, 41)
    g_states = program(p.g_min + np.linspace(0, 1, 9) * span, rng, p)
    current = g_states[:, None] * voltage[None, :]
    n = int(round(1 / p.pulse_step))
    g, trace = np.array([p.g_min]), []
    for sign in [1.0] * n + [-1.0] * n:
        g = update(g, sign * p.pulse_step * span, 1.0, rng, p)
        trace.append(g[0])
    grid = p.g_min + np.arange(n + 1) * p.pulse_step * span
    grid = grid[grid <= p.g_max * (1 + 1e-12)]
    kept = distinguishable_levels(grid, p.write_noise * grid, k=2.0)
    levels = Levels(grid[kept],
                    f"the {grid.size} states of the pulse grid (steps of {p.pulse_step:g} of the range), each "
                    f"spread by the {p.write_noise:.0%} write noise; a state is kept when its +-2 sigma band "
                    "clears the last kept state's")
    factor, kind = draw_faults(population, rng, p)
    reversed_factors = factor[kind == REVERSED]
    metrics = {
        "g_c_S": p.g_c,
        "stuck_fraction_drawn": float(np.mean(kind == STUCK)),
        "reversed_fraction_drawn": float(np.mean(kind == REVERSED)),
        "reversed_factor_mean": float(reversed_factors.mean()) if reversed_factors.size else float("nan"),
    }
    if not reversed_factors.size:
        del metrics["reversed_factor_mean"]
    return DeviceReport(
        model=NAME,
        description="TiOx RRAM, parametric model of the fault-pruning work (Kraisnikovic et al., UCNC 2023): "
                    f"{p.r_min:,.0f}-{p.r_max:,.0f} Ohm, 1 % write noise, stuck and reversed devices",
        iv={"voltage": voltage, "current": current, "conductance": g_states},
        iv_method=f"quasi-static: 9 devices programmed evenly over the range (seed {seed}); "
                  f"I = g V over +-{v_read:g} V, the model is ohmic at read voltages",
        conductance_vs_pulse=np.asarray(trace), n_potentiation=n, g_initial=p.g_min,
        pulse_method=f"parametric model, one healthy device from g_min: {n} pulses of +{p.pulse_step:g} of the range "
                     f"then {n} of -{p.pulse_step:g}, each write with {p.write_noise:.0%} noise (seed {seed})",
        levels=levels, metrics=metrics, parameters=asdict(p))
