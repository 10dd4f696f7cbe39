"""IBM's phase-change memory (PCM) as a parametric device model: programming, drift, read noise.

The statistical model fitted on a million doped-GST devices (Nandakumar et al., ICECS 2019;
Joshi et al., "Accurate deep neural network inference using computational phase-change
memory", Nat. Commun. 11, 2473, 2020), as used for learning-to-learn with PCM synapses
(Bohnstingl et al., Front. Neurosci. 2019) and implemented in aihwkit's ``PCMLikeNoiseModel``.
With ``w = g_target / g_max`` (``g_max`` = 25 uS):

* **programming** (iterative program-and-verify): ``g = g_target + sigma_p(w) xi``,
  ``sigma_p(w) = -1.1731 w^2 + 1.965 |w| + 0.2635`` (uS), clipped at 0;
* **drift**: ``g(t) = g(t0) (t / t0)^-nu`` with a per-device exponent
  ``nu ~ |N(mu_nu(w), sigma_nu(w))|``, ``mu_nu = clip(-0.0155 ln w + 0.0244, 0.049, 0.1)``,
  ``sigma_nu = clip(-0.0125 ln w - 0.0059, 0.008, 0.045)``; ``t`` counts from the end of
  programming and ``t0`` (20 s) is the first read, before which the model says nothing (the
  conductance is taken as programmed);
* **1/f read noise**: ``g_read = g + g Q sqrt(ln((t + t_r) / t_r)) xi``,
  ``Q = min(0.0088 / w^0.65, 0.2)``, ``t_r = 250 ns`` (this is the project's design formula;
  aihwkit writes ``2 t_r`` in the denominator, which changes the noise by 2 % at t = 1 s);
* **updates** in steps of ``g_max / 16`` (a 4-bit device, as in the learning-to-learn work).

Every random function takes a seeded ``np.random.Generator``; conductances are in siemens.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .report import DeviceReport, Levels, distinguishable_levels

__all__ = ["PCMParameters", "characterize", "drift", "drift_exponents", "drift_nu_mean", "drift_nu_std", "program",
           "programming_sigma", "quantize", "read", "read_noise_sigma"]

NAME = "pcm"

PROG_COEFFICIENTS = (0.2635, 1.965, -1.1731)
"""sigma_p(w) = c0 + c1 |w| + c2 w^2 in uS at g_max = 25 uS (Nandakumar et al. 2019; aihwkit ``PCMLikeNoiseModel``)."""
PROG_REFERENCE_G_MAX = 25e-6
"""The g_max (S) the programming polynomial was fitted at; other g_max scale sigma_p proportionally (as aihwkit)."""
NU_MEAN = (-0.0155, 0.0244, 0.049, 0.1)
"""mu_nu(w) = clip(a ln w + b, lo, hi): (a, b, lo, hi). Joshi et al. 2020; aihwkit."""
NU_STD = (-0.0125, -0.0059, 0.008, 0.045)
"""sigma_nu(w) = clip(a ln w + b, lo, hi): (a, b, lo, hi). Joshi et al. 2020; aihwkit."""
READ_Q = (0.0088, 0.65, 0.2)
"""Q(w) = min(c / w^e, q_max): (c, e, q_max). Joshi et al. 2020; aihwkit."""
_W_FLOOR = 1e-7  # w below this counts as this (ln w and w^-0.65 stay finite; aihwkit's _ZERO_CLIP)


@dataclass(frozen=True)
class PCMParameters:
    """Parameters of the PCM device model (defaults: IBM's doped-GST PCM, see the module docstring)."""

    g_max: float = 25e-6
    """Largest programmable conductance (S). 25 uS: Joshi et al. 2020, the project's design."""
    t0: float = 20.0
    """Time of the first read after programming, the drift reference (s). Joshi et al. 2020; aihwkit ``t_0``."""
    t_read: float = 250e-9
    """Duration of a read, the 1/f integral's lower cut-off t_r (s). Joshi et al. 2020; aihwkit ``t_read``."""
    steps: int = 16
    """Programming steps over [0, g_max]: an update moves g_max / steps. 16 in the learning-to-learn work."""
    prog_noise_scale: float = 1.0
    """Multiplies sigma_p (1: as measured; 0: exact programming)."""
    drift_scale: float = 1.0
    """Multiplies the drift exponents nu (1: as measured; 0: no drift)."""
    read_noise_scale: float = 1.0
    """Multiplies the 1/f read noise (1: as measured; 0: noise-free reads)."""

    def __post_init__(self):
        for name in ("g_max", "t0", "t_read"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, not {value!r}")
        if not (isinstance(self.steps, (int, np.integer)) and self.steps >= 1):
            raise ValueError(f"steps must be a positive whole number, not {self.steps!r}")
        for name in ("prog_noise_scale", "drift_scale", "read_noise_scale"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number >= 0, not {value!r}")

    @property
    def step(self) -> float:
        """One programming step, g_max / steps (S)."""
        return self.g_max / self.steps


DEFAULT = PCMParameters()


def _w(g, params: PCMParameters) -> np.ndarray:
    return np.maximum(np.abs(np.asarray(g, dtype=np.float64)) / params.g_max, _W_FLOOR)


def programming_sigma(g_target, params: PCMParameters = DEFAULT) -> np.ndarray:
    """sigma_p of programming towards ``g_target`` (S): ``(0.2635 + 1.965 |w| - 1.1731 w^2)`` uS."""
    w = np.abs(np.asarray(g_target, dtype=np.float64)) / params.g_max
    c0, c1, c2 = PROG_COEFFICIENTS
    sigma_us = c0 + c1 * w + c2 * w**2
    return sigma_us * 1e-6 * (params.g_max / PROG_REFERENCE_G_MAX) * params.prog_noise_scale


def program(g_target, rng: np.random.Generator, params: PCMParameters = DEFAULT) -> np.ndarray:
    """Program devices towards ``g_target`` (S): the target plus programming noise, at least 0."""
    g_target = np.asarray(g_target, dtype=np.float64)
    g = g_target + programming_sigma(g_target, params) * rng.standard_normal(g_target.shape)
    return np.maximum(g, 0.0)


def quantize(g_target, params: PCMParameters = DEFAULT) -> np.ndarray:
    """``g_target`` rounded to the nearest of the ``steps + 1`` programmable states in [0, g_max] (S)."""
    k = np.clip(np.rint(np.asarray(g_target, dtype=np.float64) / params.step), 0, params.steps)
    return k * params.step


def drift_nu_mean(g_target, params: PCMParameters = DEFAULT) -> np.ndarray:
    """mu_nu(w) = clip(-0.0155 ln w + 0.0244, 0.049, 0.1), without ``drift_scale``."""
    a, b, lo, hi = NU_MEAN
    return np.clip(a * np.log(_w(g_target, params)) + b, lo, hi)


def drift_nu_std(g_target, params: PCMParameters = DEFAULT) -> np.ndarray:
    """sigma_nu(w) = clip(-0.0125 ln w - 0.0059, 0.008, 0.045), without ``drift_scale``."""
    a, b, lo, hi = NU_STD
    return np.clip(a * np.log(_w(g_target, params)) + b, lo, hi)


def drift_exponents(g_target, rng: np.random.Generator, params: PCMParameters = DEFAULT) -> np.ndarray:
    """One drift exponent per device: ``|N(mu_nu, sigma_nu)| drift_scale`` (as aihwkit: folded at 0)."""
    mu, sd = drift_nu_mean(g_target, params), drift_nu_std(g_target, params)
    return np.abs(mu + sd * rng.standard_normal(mu.shape)) * params.drift_scale


def drift(g, t: float, t0: float | None = None, *, nu=None, rng: np.random.Generator | None = None,
          params: PCMParameters = DEFAULT) -> np.ndarray:
    """Conductance ``t`` seconds after programming: ``g (t / t0)^-nu`` for ``t > t0``, else ``g``.

    ``t`` is one time for every device or an array of each device's age (broadcast with ``g``).

    ``g`` is the conductance at ``t0`` (``params.t0`` unless given). ``nu``: the devices' drift
    exponents; if None they are drawn from ``rng`` for the devices' conductances
    (:func:`drift_exponents`), or, without ``rng``, the mean ``mu_nu drift_scale`` is used.
    """
    t0 = params.t0 if t0 is None else t0
    if not np.all(np.isfinite(t) & (np.asarray(t) >= 0)):
        raise ValueError(f"t must be a time >= 0 (seconds since programming), not {t!r}")
    if not (np.isfinite(t0) and t0 > 0):
        raise ValueError(f"t0 must be a positive time (seconds), not {t0!r}")
    g = np.asarray(g, dtype=np.float64)
    if nu is None:
        nu = drift_exponents(g, rng, params) if rng is not None else drift_nu_mean(g, params) * params.drift_scale
    nu = np.broadcast_to(np.asarray(nu, dtype=np.float64), g.shape)
    return np.where(t > t0, g * (np.maximum(t, t0) / t0) ** (-nu), g)


def read_noise_sigma(g, t: float, params: PCMParameters = DEFAULT) -> np.ndarray:
    """sigma of a read ``t`` seconds after programming (S): ``g Q(w) sqrt(ln((t + t_r) / t_r))``."""
    if not np.all(np.isfinite(t) & (np.asarray(t) >= 0)):
        raise ValueError(f"t must be a time >= 0 (seconds since programming), not {t!r}")
    g = np.asarray(g, dtype=np.float64)
    c, e, q_max = READ_Q
    q = np.minimum(c / _w(g, params) ** e, q_max)
    return np.abs(g) * q * np.sqrt(np.log((t + params.t_read) / params.t_read)) * params.read_noise_scale


def read(g, t: float, rng: np.random.Generator, params: PCMParameters = DEFAULT) -> np.ndarray:
    """What a read ``t`` seconds after programming returns for devices at ``g`` (S): 1/f noise added, at least 0."""
    g = np.asarray(g, dtype=np.float64)
    return np.maximum(g + read_noise_sigma(g, t, params) * rng.standard_normal(g.shape), 0.0)


def characterize(params: PCMParameters | None = None, *, seed: int = 0, v_read: float = 0.2,
                 t_eval: float = 3600.0, samples: int = 4000) -> DeviceReport:
    """PCM's read lines, a 16-up 16-down pulse sequence and its levels one hour after programming.

    * I-V: one device per programmable state (``steps + 1`` of them), programmed and read at
      ``t0``; the model's I-V is linear (``I = g V``) over +- ``v_read``;
    * pulses: from a programmed-to-0 device, ``steps`` potentiating updates of +g_max/steps then
      ``steps`` depressing ones, each programmed with programming noise and read at ``t0``;
    * levels: ``samples`` devices per state, programmed, drifted to ``t_eval`` and read then;
      a state is kept when its +-2 sigma band clears the last kept one's.
    """
    p = params or PCMParameters()
    rng = np.random.default_rng(seed)
    targets = np.arange(p.steps + 1) * p.step
    voltage = np.linspace(-v_read, v_read, 41)
    g_states = read(program(targets, rng, p), p.t0, rng, p)
    current = g_states[:, None] * voltage[None, :]
    # pulses: the intended state walks up one step a pulse and back; each write is program-and-verify
    walk = np.concatenate([np.arange(1, p.steps + 1), np.arange(p.steps - 1, -1, -1)]) * p.step
    g_initial = float(read(program(np.zeros(1), rng, p), p.t0, rng, p)[0])
    g_pulses = read(program(walk, rng, p), p.t0, rng, p)
    # levels: the state distributions at t_eval
    population = np.repeat(targets[:, None], samples, axis=1)
    g_eval = read(drift(program(population, rng, p), t_eval, rng=rng, params=p), t_eval, rng, p)
    means, sigmas = g_eval.mean(axis=1), g_eval.std(axis=1)
    kept = distinguishable_levels(means, sigmas, k=2.0)
    levels = Levels(means[kept],
                    f"{p.steps + 1} programmable states (steps of g_max/{p.steps}), {samples} devices each "
                    f"programmed, drifted and read {t_eval:g} s after programming (seed {seed}); a state is "
                    "kept when its mean +-2 sigma band clears the last kept state's")
    half = np.array([p.g_max / 2])
    metrics = {
        "programming_sigma_at_half_gmax_S": float(programming_sigma(half, p)[0]),
        "drift_nu_mean_at_half_gmax": float(drift_nu_mean(half, p)[0] * p.drift_scale),
        "read_sigma_at_half_gmax_t_eval_S": float(read_noise_sigma(half, t_eval, p)[0]),
        "t_eval_s": float(t_eval),
        "mean_drift_factor_t_eval": float(np.mean(means[1:] / targets[1:])),
    }
    return DeviceReport(
        model=NAME,
        description="IBM phase-change memory, statistical device model (Nandakumar et al. 2019, Joshi et al. 2020): "
                    "programming noise, conductance drift, 1/f read noise, 4-bit updates",
        iv={"voltage": voltage, "current": current, "conductance": g_states},
        iv_method=f"quasi-static: one device per programmable state ({p.steps + 1}), programmed and read at "
                  f"t0 = {p.t0:g} s (seed {seed}); I = g V over +-{v_read:g} V, the model is ohmic at read voltages",
        conductance_vs_pulse=g_pulses, n_potentiation=p.steps, g_initial=g_initial,
        pulse_method=f"parametric model: {p.steps} updates of +g_max/{p.steps} then {p.steps} of -g_max/{p.steps}, "
                     f"each a program-and-verify write with programming noise, read at t0 = {p.t0:g} s (seed {seed})",
        levels=levels, metrics=metrics, parameters=asdict(p))
