"""An analog leaky integrate-and-fire neuron in ngspice, and its fit to the chip's discrete LIF.

The circuit is a silicon LIF of the "voltage-amplifier" kind (van Schaik, Neural Networks 14,
617, 2001, as reviewed in Indiveri et al., "Neuromorphic silicon neuron circuits", Front.
Neurosci. 5:73, 2011): the crossbar's column current charges a membrane capacitor, a comparator
fires when the membrane crosses a threshold, and the spike pulse both resets the membrane and
holds it there for a refractory period timed by a second capacitor. Unlike van Schaik's constant
leak current, the leak here is a conductance, so the membrane is an RC LIF like the chip's::

    I_in (column current)
      |
     mem ----+--------+--------+--> comparator (gain A, threshold V_th) --> cmp
      |      |        |                                                     | set
    C_mem  R_leak   reset switch (r_on, to V_reset) <-- while high -- spike latch --> spk
      |      |        |                                                     ^ clear      |
     gnd    gnd      gnd                              refractory timer ref -+  <- charged while spk is high

Between spikes the membrane is an RC integrator,

    C_mem dv/dt = I_in - v / R_leak,

so for a constant input above the rheobase ``I_rh = V_th / R_leak`` it fires periodically at

    f(I) = 1 / (t_ref + tau ln((I R - V_reset) / (I R - V_th))),   tau = R_leak C_mem,

and never below it. The elements (every one an ngspice primitive or B-source, node names as in
:func:`netlist`):

* ``Cmem``, ``Rleak``, ``Iin`` (DC or a PWL waveform) on node ``mem``;
* ``Bcmp``: the comparator, ``cmp = Vdd/2 (1 + tanh(2 A (v(mem) - V_th) / Vdd))``, open-loop
  gain ``A`` at the threshold (a finite-gain amplifier, not an ideal step);
* ``Bspk`` + ``Cspk``: a set/clear latch with time constant ``t_switch``, whose output ``spk``
  is the spike pulse (high from the threshold crossing to the end of the refractory period).
  It is set by ``cmp``, holds itself by positive feedback and is cleared by the timer;
* ``Bref`` + ``Cref``: the refractory timer, charged at a constant current while ``spk`` is
  high so that it reaches ``Vdd/2`` after exactly ``t_ref``, and discharged (``t_switch``)
  once ``spk`` is low again;
* ``Brst``: the reset switch, a conductance ``1 / r_on`` from ``mem`` to ``V_reset`` while
  ``spk`` is high: the membrane is discharged in a few ``r_on C_mem`` and held at ``V_reset``
  (plus ``I_in r_on``) for the whole refractory period, as the reset transistor of van
  Schaik's circuit does.

Logic levels are smooth (``tanh`` with a slope of 200 / V) so that the transient stays smooth;
they switch in a few microseconds, three orders of magnitude below the membrane's time
constant. Every simulation runs with Gear integration, tight charge and current tolerances (the
circuit moves picocoulombs with picoamperes) and a bounded step (``max_step``).

:func:`fit_lif` maps the circuit onto the chip's discrete LIF (``docs/semantics.md``) at a step
``dt``, measures the effective threshold and dead time from the circuit, and reports how far
the discrete neuron's rates and spike times are from the circuit's.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = [
    "LifFit", "NeuronParams", "NeuronReport", "analytic_rate", "characterize_neuron", "fi_curve", "fit_lif",
    "netlist", "plot", "run_lif", "simulate_neuron",
]

# Slope of the smooth logic gates (1/V): a gate switches over ~10 mV of its input.
_LOGIC_SLOPE = 200.0
# Capacitance of the latch and of the refractory timer (F): their currents scale with it.
_C_LOGIC = 1e-12
# ngspice's defaults (abstol 1 pA, chgtol 10 fC) are coarse for picoampere, picofarad circuits.
SPICE_OPTIONS = "method=gear abstol=1e-15 chgtol=1e-18 reltol=1e-3"
# Length of the random-input comparison of the fit (s): about 14 spikes, half a second of ngspice.
T_RANDOM = 60e-3


@dataclass(frozen=True)
class NeuronParams:
    """Parameters of the analog LIF circuit (SI units).

    Defaults: a subthreshold-CMOS LIF at the millisecond scale, in the ranges of Indiveri et al.
    2011 (Front. Neurosci. 5:73: membrane capacitors of about 1 pF, leak currents of tens to
    hundreds of pA, thresholds of a few hundred mV, refractory periods of about 1 ms, 1.8 V
    supplies of 180 nm processes) and of the DPI neuron of Chicca et al. 2014 (Proc. IEEE 102,
    1367).
    """

    c_mem: float = 1e-12
    """Membrane capacitance (F). 1 pF, Indiveri et al. 2011 (Sec. 3)."""
    r_leak: float = 5e9
    """Leak resistance (ohm): tau = R C = 5 ms; the rheobase V_th / R is 100 pA (a subthreshold leak)."""
    v_th: float = 0.5
    """Comparator threshold (V). Half a volt: Indiveri et al. 2011, axon-hillock and DPI neurons."""
    v_reset: float = 0.0
    """Membrane voltage the reset switch pulls to (V): ground, as in the axon-hillock reset."""
    t_ref: float = 1e-3
    """Refractory period (s): how long the reset switch holds the membrane. 1 ms, Indiveri et al. 2011."""
    vdd: float = 1.8
    """Supply of the comparator and the logic (V): a 180 nm process."""
    comparator_gain: float = 1000.0
    """Open-loop gain of the comparator at the threshold (V/V): 60 dB, a two-stage CMOS comparator."""
    r_on: float = 100e3
    """On-resistance of the reset switch (ohm): the membrane resets in r_on C_mem = 0.1 us."""
    t_switch: float = 1e-6
    """Time constant of the spike latch and of the timer's discharge (s): the spike pulse's edges."""

    def __post_init__(self):
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"NeuronParams.{name} must be a finite number, not {value!r}")
        for name, unit in (("c_mem", "F"), ("r_leak", "ohm"), ("t_ref", "s"), ("vdd", "V"),
                           ("comparator_gain", "V/V"), ("r_on", "ohm"), ("t_switch", "s")):
            if not getattr(self, name) > 0:
                raise ValueError(f"NeuronParams.{name} must be positive ({unit}), not {getattr(self, name)!r}")
        if not 0 <= self.v_reset < self.v_th < self.vdd:
            raise ValueError(f"NeuronParams needs 0 <= v_reset < v_th < vdd, not v_reset={self.v_reset!r}, "
                             f"v_th={self.v_th!r}, vdd={self.vdd!r} (volts)")
        if not self.t_switch <= self.t_ref / 20:
            raise ValueError(f"NeuronParams.t_switch ({self.t_switch!r} s) must be at most t_ref / 20 "
                             f"({self.t_ref / 20!r} s): the spike pulse's edges must be short against it")
        if not self.r_on * self.c_mem <= self.t_ref / 20:
            raise ValueError(f"NeuronParams.r_on ({self.r_on!r} ohm) is too large: the reset (r_on c_mem = "
                             f"{self.r_on * self.c_mem!r} s) must complete within t_ref / 20")
        if not self.r_on < self.r_leak / 100:
            raise ValueError(f"NeuronParams.r_on ({self.r_on!r} ohm) must be below r_leak / 100 "
                             f"({self.r_leak / 100!r} ohm) to hold the membrane at v_reset")

    @property
    def tau(self) -> float:
        """Membrane time constant R_leak C_mem (s)."""
        return self.r_leak * self.c_mem

    @property
    def rheobase(self) -> float:
        """Smallest constant input that makes the neuron fire, V_th / R_leak (A)."""
        return self.v_th / self.r_leak

    @property
    def i_max(self) -> float:
        """Largest input the reset switch holds below threshold, (V_th - V_reset) / (2 r_on) (A)."""
        return (self.v_th - self.v_reset) / (2 * self.r_on)

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


# -- the circuit ---------------------------------------------------------------------------------
def _f(x: float) -> str:
    """A number for the deck, every digit kept."""
    return repr(float(x))


def _gate(x: str) -> str:
    """A smooth logic level in [0, 1]: 1 when the voltage expression ``x`` is positive."""
    return f"(0.5*(1+tanh({_LOGIC_SLOPE:g}*({x}))))"


def _waveform(i_in, dt: float) -> tuple[float | None, list[tuple[float, float]] | None, np.ndarray | None]:
    """``(dc, pwl points, samples)`` for a constant or a per-step input (``dt`` seconds a sample)."""
    if isinstance(i_in, (bool, np.bool_)):
        raise ValueError(f"i_in must be a current in amperes (a number or one per step), not {i_in!r}")
    samples = np.asarray(i_in, dtype=np.float64)
    if not np.all(np.isfinite(samples)):
        raise ValueError("i_in must hold finite currents (amperes)")
    if samples.ndim == 0:
        return float(samples), None, None
    if samples.ndim != 1 or samples.size == 0:
        raise ValueError(f"i_in must be a number or a 1-D array of currents (one per step of dt), "
                         f"not an array of shape {samples.shape}")
    # zero-order hold, each step's edge centred on the step boundary so each step carries exactly
    # dt times its current, as the discrete neuron assumes
    edge = dt * 1e-3
    points = [(0.0, float(samples[0]))]
    for k in range(1, samples.size):
        points += [(k * dt - edge / 2, float(samples[k - 1])), (k * dt + edge / 2, float(samples[k]))]
    points.append((samples.size * dt, float(samples[-1])))
    return None, points, samples


def netlist(params: NeuronParams | None = None, i_in=0.0, dt: float = 1e-4) -> str:
    """The neuron's ngspice deck (no analysis line): input ``i_in`` amperes on node ``mem``.

    ``i_in`` is a constant (DC source) or a 1-D array of currents, one per step of ``dt``
    seconds, held through each step (a PWL source). Nodes: ``mem`` (membrane), ``cmp``
    (comparator output), ``spk`` (spike latch, high during a spike and its refractory period),
    ``ref`` (refractory timer). Every capacitor starts at 0 V: run the transient with ``uic``.
    """
    from PySpice.Spice.Netlist import Circuit

    p = params or NeuronParams()
    dc, points, _ = _waveform(i_in, dt)
    half = p.vdd / 2
    set_, hold, clear = _gate(f"v(cmp)-{_f(half)}"), _gate(f"v(spk)-{_f(half)}"), _gate(f"v(ref)-{_f(half)}")
    on, off = _gate(f"v(spk)-{_f(0.75 * p.vdd)}"), _gate(f"{_f(0.25 * p.vdd)}-v(spk)")
    g_logic = _C_LOGIC / p.t_switch
    i_timer = _C_LOGIC * half / p.t_ref  # reaches Vdd/2 after t_ref

    c = Circuit("analog LIF neuron")
    if points is None:
        c.I("in", c.gnd, "mem", dc)
    else:
        c.PieceWiseLinearCurrentSource("in", c.gnd, "mem", values=points)
    c.C("mem", "mem", c.gnd, p.c_mem, initial_condition=0)
    c.R("leak", "mem", c.gnd, p.r_leak)
    slope = 2 * p.comparator_gain / p.vdd
    c.BehavioralSource("cmp", "cmp", c.gnd,
                       voltage_expression=f"{_f(half)}*(1+tanh({_f(slope)}*(v(mem)-{_f(p.v_th)})))")
    # latch: relaxes towards Vdd when set, or when high and not cleared; towards 0 otherwise
    c.BehavioralSource("spk", c.gnd, "spk",
                       current_expression=f"{_f(g_logic)}*({_f(p.vdd)}*(1-(1-{set_})*(1-{hold}*(1-{clear})))-v(spk))")
    c.C("spk", "spk", c.gnd, _C_LOGIC, initial_condition=0)
    # timer: charges while the latch holds (so a clear cannot stall half-way), resets once it is low
    c.BehavioralSource("ref", c.gnd, "ref", current_expression=f"{hold}*{_f(i_timer)}-{off}*{_f(g_logic)}*v(ref)")
    c.C("ref", "ref", c.gnd, _C_LOGIC, initial_condition=0)
    c.BehavioralSource("rst", "mem", c.gnd, current_expression=f"{_f(1 / p.r_on)}*{on}*(v(mem)-{_f(p.v_reset)})")
    return str(c)


def _crossings(t: np.ndarray, y: np.ndarray, level: float) -> np.ndarray:
    """Times at which ``y`` rises through ``level`` (linear interpolation)."""
    k = np.nonzero((y[:-1] < level) & (y[1:] >= level))[0]
    return t[k] + (level - y[k]) / (y[k + 1] - y[k]) * (t[k + 1] - t[k])


def simulate_neuron(params: NeuronParams | None = None, i_in=0.0, t_end: float | None = None, dt: float = 1e-4,
                    *, max_step: float | None = None) -> dict[str, np.ndarray]:
    """ngspice transient of the neuron from rest (every capacitor at 0 V).

    Parameters
    ----------
    i_in
        Input current (A): a constant, or a 1-D array with one current per step of ``dt``
        (held through the step).
    t_end
        Simulated time (s); default ``len(i_in) * dt`` for an array, ``20 * dt`` for a constant.
    dt
        Step of a sampled input (s).
    max_step
        Largest transient step (s); default ``min(dt, 2 t_switch)`` (2 us), which keeps spike
        times within about a microsecond of a 0.25 us-step run over 15 ms (5 us: 30 us).

    Returns
    -------
    dict
        ``time`` (s, ngspice's time points), ``v_mem``, ``v_cmp``, ``v_spk``, ``v_ref`` (V),
        ``i_in`` (A, at the time points) and ``spikes``: the spike times (s), where the latch's
        output rises through Vdd/2 (about one ``t_switch`` after the membrane crosses V_th).
    """
    from . import spice

    p = params or NeuronParams()
    if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a positive time step (s), not {dt!r}")
    dc, _, samples = _waveform(i_in, dt)
    if t_end is None:
        t_end = dt * (20 if samples is None else samples.size)
    if not (isinstance(t_end, (int, float)) and math.isfinite(t_end) and t_end > 0):
        raise ValueError(f"t_end must be a positive time (s), not {t_end!r}")
    peak = abs(dc) if samples is None else float(np.max(np.abs(samples)))
    if peak > p.i_max:
        raise ValueError(f"input current {peak:.3g} A is above what the reset switch can hold, "
                         f"{p.i_max:.3g} A = (v_th - v_reset) / (2 r_on): lower it or r_on")
    step = min(dt, 2 * p.t_switch) if max_step is None else max_step
    if not (isinstance(step, (int, float)) and math.isfinite(step) and step > 0):
        raise ValueError(f"max_step must be a positive time (s), not {max_step!r}")
    out = spice.simulate(netlist(p, i_in, dt), f".tran {_f(min(dt, t_end / 100))} {_f(t_end)} 0 {_f(step)} uic",
                         options=SPICE_OPTIONS)
    t = out["time"]
    if samples is None:
        current = np.full_like(t, dc)
    else:
        current = samples[np.minimum((t / dt).astype(np.int64), samples.size - 1)]
    return {"time": t, "v_mem": out["mem"], "v_cmp": out["cmp"], "v_spk": out["spk"], "v_ref": out["ref"],
            "i_in": current, "spikes": _crossings(t, out["spk"], p.vdd / 2)}


# -- f-I curve -------------------------------------------------------------------------------------
def analytic_rate(params: NeuronParams | None, currents) -> np.ndarray:
    """The RC LIF's firing rate (Hz) for constant ``currents`` (A); 0 at or below the rheobase.

    ``f = 1 / (t_ref + tau ln((I R - V_reset) / (I R - V_th)))`` for ``I R > V_th``.
    """
    p = params or NeuronParams()
    v_inf = np.asarray(currents, dtype=np.float64) * p.r_leak
    rate = np.zeros_like(v_inf)
    above = v_inf > p.v_th
    rate[above] = 1 / (p.t_ref + p.tau * np.log((v_inf[above] - p.v_reset) / (v_inf[above] - p.v_th)))
    return rate


def _rate(spikes: np.ndarray) -> float:
    """Steady firing rate (Hz): 1 / the mean interval after the first spike; 0 with fewer than two."""
    return 1 / float(np.mean(np.diff(spikes))) if len(spikes) >= 2 else 0.0


def _t_end_for(p: NeuronParams, current: float, intervals: float = 3.5) -> float:
    """Long enough for ``intervals`` steady intervals after the first spike (at most 20 tau)."""
    v_inf = current * p.r_leak
    if v_inf <= p.v_th * 1.001:
        return 10 * p.tau
    charge = p.tau * math.log((v_inf - p.v_reset) / (v_inf - p.v_th))
    return min(p.tau * math.log(v_inf / (v_inf - p.v_th)) + intervals * (p.t_ref + charge), 20 * p.tau)


def fi_curve(params: NeuronParams | None = None, currents=None, *, max_step: float | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """The circuit's firing rate against constant input current: one ngspice run per current.

    ``currents`` (A) default to 0 to 5 times the rheobase in 21 steps. Each run lasts long enough
    for three to four steady intervals (at most 20 tau); the rate is 1 / the mean interval after
    the first spike, 0 when the neuron fires fewer than twice. Returns ``(currents, rates [Hz])``.
    """
    p = params or NeuronParams()
    currents = p.rheobase * np.linspace(0, 5, 21) if currents is None else np.asarray(currents, dtype=np.float64)
    if currents.ndim != 1:
        raise ValueError(f"currents must be a 1-D array of amperes, not shape {currents.shape}")
    rates = np.array([_rate(simulate_neuron(p, float(i), _t_end_for(p, float(i)), max_step=max_step)["spikes"])
                      for i in currents])
    return currents, rates


# -- the discrete LIF ------------------------------------------------------------------------------
@dataclass(frozen=True)
class LifFit:
    """The circuit as the chip's discrete LIF at step ``dt`` (``docs/semantics.md``, ``lif``, zero reset).

    The membrane between spikes is linear, so with an input held through each step it is exactly

        v[n] = alpha v[n-1] + gain x[n],   x[n] = I[n] dt / C_mem (V),
        alpha = exp(-dt / tau),            gain = (1 - alpha) tau / dt

    (``gain`` -> 1, forward Euler, as dt / tau -> 0). The neuron fires when ``v > v_threshold``,
    restarts from ``v_reset`` and ignores ``refractory`` steps of input. ``v_threshold`` and the
    dead time ``t_dead`` (threshold crossing to the membrane's release) are fitted to the
    circuit's steady intervals at constant currents, ``T(I) = t_dead + tau ln((I R - V_reset) /
    (I R - v_threshold))``. A crossing reported in step n happened on average half a step before
    that step's end, and the discrete neuron resumes at the end of its last blocked step, so
    ``refractory`` is the whole number of steps near ``t_dead / dt - 1/2`` that best reproduces
    the circuit's rates; ``refractory_residual`` is what is left, ``t_dead / dt - 1/2 -
    refractory`` steps.

    Errors: ``rate_error_*`` compare steady rates at the constant ``currents`` (relative to the
    circuit's); on a random input (one current per step, uniform in 0.5-3.5 rheobases,
    ``t_random`` seconds) ``count_error`` is the relative difference of spike counts,
    ``spike_time_error_*`` the differences of spike times of one-to-one pairs (closest first,
    within half the circuit's mean interval; a discrete spike in step n counts at
    ``(n + 1/2) dt``) and ``coincidence_fraction`` the share of the circuit's spikes with a
    discrete partner within one step. The residual sets the timing error: after every spike
    the discrete neuron restarts ``refractory_residual`` steps early (positive) or late, and on
    a fluctuating input these offsets add up to several steps while the counts still agree.
    A circuit meant for a twin at step dt wants ``|refractory_residual|`` small: shorten
    ``t_ref`` by ``refractory_residual * dt`` (lengthen it when negative).
    """

    dt: float
    """Step of the discrete neuron (s)."""
    tau: float
    """Membrane time constant R_leak C_mem (s)."""
    c_mem: float
    """Membrane capacitance (F): an input I is x = I dt / c_mem volts a step."""
    alpha: float
    """Decay per step, exp(-dt / tau)."""
    gain: float
    """Membrane increment per volt of x: (1 - alpha) tau / dt."""
    v_threshold: float
    """Effective threshold (V), fitted."""
    v_reset: float
    """Membrane after a spike (V)."""
    refractory: int
    """Steps after a spike that ignore their input."""
    t_dead: float
    """Effective refractory time of the circuit (s), fitted."""
    refractory_residual: float
    """t_dead / dt - 1/2 - refractory (steps): the dead time the whole steps miss."""
    rheobase: float
    """Smallest firing input current of the fitted neuron, v_threshold / R_leak (A)."""
    currents: tuple[float, ...] = ()
    """Constant currents of the rate comparison (A)."""
    rates_circuit: tuple[float, ...] = ()
    """The circuit's steady rates at ``currents`` (Hz, ngspice)."""
    rates_lif: tuple[float, ...] = ()
    """The fitted discrete LIF's steady rates at ``currents`` (Hz)."""
    rate_error_max: float = 0.0
    """Largest relative rate error at the constant currents."""
    rate_error_mean: float = 0.0
    """Mean relative rate error at the constant currents."""
    t_random: float = 0.0
    """Length of the random-input comparison (s)."""
    spikes_circuit: int = 0
    """Spikes of the circuit on the random input."""
    spikes_lif: int = 0
    """Spikes of the discrete LIF on the random input."""
    count_error: float = 0.0
    """|spikes_lif - spikes_circuit| / spikes_circuit on the random input."""
    coincidence_fraction: float = 0.0
    """Share of the circuit's spikes on the random input with a discrete spike within dt."""
    spike_time_error_mean: float = 0.0
    """Mean |t_lif - t_circuit| of the paired spikes (s)."""
    spike_time_error_max: float = 0.0
    """Largest |t_lif - t_circuit| of the paired spikes (s)."""

    def x(self, current) -> np.ndarray:
        """The discrete neuron's input for ``current`` amperes held one step: I dt / c_mem (V)."""
        return np.asarray(current, dtype=np.float64) * self.dt / self.c_mem

    def lif_params(self, i_unit: float | None = None) -> dict:
        """Keyword arguments of ``compiler.ir.LIF`` for an input counted in units of ``i_unit`` amperes.

        The state stays in volts; ``gain`` turns one input unit into volts of membrane:
        ``gain * i_unit * dt / c_mem``. Default ``i_unit = c_mem / dt``: the input is x itself.
        """
        scale = 1.0 if i_unit is None else i_unit * self.dt / self.c_mem
        return {"alpha": self.alpha, "gain": self.gain * scale, "v_leak": 0.0, "v_threshold": self.v_threshold,
                "v_reset": self.v_reset, "refractory": self.refractory, "reset": "zero"}

    def to_dict(self) -> dict:
        """JSON-able: scalars as numbers, the per-current rates as lists."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def run_lif(fit: LifFit, currents) -> tuple[np.ndarray, np.ndarray]:
    """The discrete LIF of ``docs/semantics.md`` (``lif``, zero reset, v_leak 0) in float64.

    ``currents``: amperes, ``[T]`` or ``[T, batch]``, one per step. Returns ``(v, spikes)`` of
    the same shape: the membrane compared with the threshold in each step (before any reset)
    and the 0/1 spikes (bool).
    """
    x = fit.x(currents)
    squeeze = x.ndim == 1
    x = x[:, None] if squeeze else x
    v = np.zeros(x.shape[1])
    s = np.zeros(x.shape[1], dtype=bool)
    c = np.zeros(x.shape[1], dtype=np.int64)
    vs, ss = np.empty_like(x), np.empty(x.shape, dtype=bool)
    for t in range(x.shape[0]):
        v = np.where(s, fit.v_reset, v)
        v = fit.alpha * v
        blocked = c > 0
        c = np.where(blocked, c - 1, c)
        v = np.where(blocked, v, v + fit.gain * x[t])
        s = (v > fit.v_threshold) & ~blocked
        c = np.where(s, fit.refractory, c)
        vs[t], ss[t] = v, s
    return (vs[:, 0], ss[:, 0]) if squeeze else (vs, ss)


def _lif_rates(fit: LifFit, currents: np.ndarray, t_end: float) -> np.ndarray:
    steps = max(int(math.ceil(t_end / fit.dt)), 2)
    _, spikes = run_lif(fit, np.broadcast_to(currents, (steps, len(currents))))
    return np.array([_rate((np.nonzero(spikes[:, j])[0] + 0.5) * fit.dt) for j in range(len(currents))])


def _pair(a: np.ndarray, b: np.ndarray, window: float) -> np.ndarray:
    """|a_i - b_j| of one-to-one pairs within ``window``, closest pairs first."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros(0)
    d = np.abs(a[:, None] - b[None, :])
    i, j = np.nonzero(d <= window)
    order = np.argsort(d[i, j], kind="stable")
    used_a, used_b, out = set(), set(), []
    for k in order:
        if i[k] not in used_a and j[k] not in used_b:
            used_a.add(i[k])
            used_b.add(j[k])
            out.append(d[i[k], j[k]])
    return np.array(out)


def _random_drive(p: NeuronParams, steps: int, seed: int) -> np.ndarray:
    """One current a step, uniform in 0.5-3.5 rheobases (A): mostly firing, with quiet stretches."""
    return p.rheobase * np.random.default_rng(seed).uniform(0.5, 3.5, steps)


def fit_lif(params: NeuronParams | None = None, dt: float = 1e-4, *, currents=None, t_random: float = T_RANDOM,
            seed: int = 0, max_step: float | None = None) -> LifFit:
    """Fit the chip's discrete LIF at step ``dt`` (s) to the circuit and measure its error (see :class:`LifFit`).

    ``currents`` (A, above the rheobase) default to 1.2, 1.5, 2, 3 and 5 rheobases; the random
    input has one current per step for ``t_random`` seconds, drawn with ``seed``. Runs one
    ngspice transient per current plus one for the random input.
    """
    p = params or NeuronParams()
    if not (isinstance(dt, (int, float)) and math.isfinite(dt) and 0 < dt <= p.tau):
        raise ValueError(f"dt must be a positive time step (s) no longer than tau ({p.tau!r} s), not {dt!r}")
    currents = p.rheobase * np.array([1.2, 1.5, 2.0, 3.0, 5.0]) if currents is None else \
        np.asarray(currents, dtype=np.float64)
    if currents.ndim != 1 or not np.all(currents > p.rheobase):
        raise ValueError(f"currents must be a 1-D array of amperes above the rheobase ({p.rheobase:.3g} A)")
    steps = int(round(t_random / dt))
    if steps < 10:
        raise ValueError(f"t_random ({t_random!r} s) must hold at least 10 steps of dt")
    _, rates = fi_curve(p, currents, max_step=max_step)
    drive = _random_drive(p, steps, seed)
    circuit = simulate_neuron(p, drive, steps * dt, dt, max_step=max_step)
    return _fit(p, dt, currents, rates, drive, circuit["spikes"])


def _fit(p: NeuronParams, dt: float, currents: np.ndarray, rates: np.ndarray, drive: np.ndarray,
         t_circuit: np.ndarray) -> LifFit:
    """:func:`fit_lif` from the circuit's steady ``rates`` at ``currents`` and its ``t_circuit``
    spike times on the per-step input ``drive``."""
    from scipy.optimize import least_squares

    ok = rates > 0
    if ok.sum() < 2:
        raise ValueError("fewer than two of the currents made the circuit fire steadily: give larger currents")

    # effective threshold and dead time from the steady intervals
    i_ok, period = currents[ok], 1 / rates[ok]

    def misfit(theta):
        v_th, t_dead = theta
        return (t_dead + p.tau * np.log((i_ok * p.r_leak - p.v_reset) / (i_ok * p.r_leak - v_th)) - period) / period

    hi = min(i_ok.min() * p.r_leak * (1 - 1e-9), p.vdd)
    sol = least_squares(misfit, x0=[min(p.v_th, hi * 0.999), p.t_ref], bounds=([p.v_reset, 0.0], [hi, np.inf]))
    v_th, t_dead = (float(v) for v in sol.x)

    alpha = math.exp(-dt / p.tau)
    base = dict(dt=float(dt), tau=p.tau, c_mem=p.c_mem, alpha=alpha, gain=(1 - alpha) * p.tau / dt,
                v_threshold=v_th, v_reset=p.v_reset, t_dead=t_dead, rheobase=v_th / p.r_leak)
    t_long = max(_t_end_for(p, float(i), 6) for i in currents[ok])
    best = None
    guess = max(int(round(t_dead / dt - 0.5)), 0)
    for refractory in sorted({max(guess - 1, 0), guess, guess + 1}):
        trial = LifFit(**base, refractory=refractory, refractory_residual=t_dead / dt - 0.5 - refractory)
        lif = _lif_rates(trial, currents, t_long)
        err = np.abs(lif[ok] - rates[ok]) / rates[ok]
        if best is None or err.mean() < best[1].mean() - 1e-12:
            best = (trial, err, lif)
    fit, err, lif = best

    # the held-out random input
    _, spikes = run_lif(fit, drive)
    t_lif = (np.nonzero(spikes)[0] + 0.5) * dt
    n_c, n_l = len(t_circuit), len(t_lif)
    pairs = _pair(t_circuit, t_lif, 0.5 * (np.mean(np.diff(t_circuit)) if n_c > 1 else len(drive) * dt))
    return dataclasses.replace(
        fit, currents=tuple(float(i) for i in currents), rates_circuit=tuple(float(r) for r in rates),
        rates_lif=tuple(float(r) for r in lif), rate_error_max=float(err.max()), rate_error_mean=float(err.mean()),
        t_random=len(drive) * dt, spikes_circuit=n_c, spikes_lif=n_l,
        count_error=abs(n_l - n_c) / n_c if n_c else float(n_l > 0),
        coincidence_fraction=float(np.sum(pairs <= dt)) / n_c if n_c else 0.0,
        spike_time_error_mean=float(pairs.mean()) if len(pairs) else 0.0,
        spike_time_error_max=float(pairs.max()) if len(pairs) else 0.0,
    )


# -- characterisation -----------------------------------------------------------------------------
@dataclass
class NeuronReport:
    """The neuron characterised: a membrane trace, the f-I curve, spike timing and the LIF fit.

    Arrays are in SI units (s, V, A, Hz).
    """

    params: NeuronParams
    trace: dict[str, np.ndarray]
    """:func:`simulate_neuron` at ``trace_current`` (time, v_mem, ..., spikes)."""
    trace_current: float
    """Constant input of the trace (A)."""
    currents: np.ndarray
    """Currents of the f-I curve (A)."""
    rates: np.ndarray
    """The circuit's rates (Hz, ngspice)."""
    rates_analytic: np.ndarray
    """The RC formula's rates (Hz), :func:`analytic_rate`."""
    rates_lif: np.ndarray
    """The fitted discrete LIF's rates (Hz)."""
    fit: LifFit
    random: dict[str, np.ndarray] = field(default_factory=dict)
    """The random-input comparison: ``time``, ``v_mem``, ``spikes`` (circuit), ``i_in`` (A a step),
    ``v_lif`` (V a step) and ``spikes_lif`` (s)."""

    def spike_timing(self) -> dict[str, float]:
        """First-spike latency and steady interval of the trace, circuit and RC formula (s)."""
        p, i = self.params, self.trace_current
        spikes = self.trace["spikes"]
        v_inf = i * p.r_leak
        return {
            "first_spike_s": float(spikes[0]) if len(spikes) else float("nan"),
            "first_spike_analytic_s": p.tau * math.log(v_inf / (v_inf - p.v_th)),
            "interval_s": float(np.mean(np.diff(spikes))) if len(spikes) > 1 else float("nan"),
            "interval_analytic_s": 1 / float(analytic_rate(p, [i])[0]),
            "interval_jitter_s": float(np.std(np.diff(spikes))) if len(spikes) > 2 else 0.0,
        }

    def figures(self) -> dict:
        """The report as a JSON-able dict: scalars at the top level, the f-I curve and the fit below."""
        firing = (self.rates > 0) & (self.rates_analytic > 0)
        rel = np.abs(self.rates[firing] - self.rates_analytic[firing]) / self.rates_analytic[firing]
        return {
            "model": "lif",
            "tau_s": self.params.tau,
            "rheobase_A": self.params.rheobase,
            "trace_current_A": self.trace_current,
            **self.spike_timing(),
            "fi_max_rel_error_vs_analytic": float(rel.max()) if rel.size else float("nan"),
            "fi": {"currents_A": self.currents.tolist(), "rates_Hz": self.rates.tolist(),
                   "rates_analytic_Hz": self.rates_analytic.tolist(), "rates_lif_Hz": self.rates_lif.tolist()},
            "parameters": self.params.to_dict(),
            "fit": self.fit.to_dict(),
            "methods": {
                "circuit": "ngspice transient (Gear, max step 2 us) of the RC membrane, tanh comparator, "
                           "spike latch, refractory timer and reset switch; see analog_models/neuron.py",
                "rates": "1 / mean interval after the first spike, from rest, constant input",
                "fit": "alpha = exp(-dt/tau), gain = (1-alpha) tau/dt on x = I dt/C; threshold and dead time "
                       "least-squares fitted to the circuit's intervals; refractory steps chosen on rates",
            },
        }


def characterize_neuron(params: NeuronParams | None = None, *, dt: float = 1e-4, currents=None,
                        trace_current: float | None = None, seed: int = 0) -> NeuronReport:
    """Membrane trace (at 2 rheobases unless ``trace_current``), f-I curve and LIF fit at step ``dt``.

    ``currents`` (A) default to 0-5 rheobases in 21 steps; the fit uses the ones above 1.1
    rheobases (one ngspice run each, shared with the f-I curve) and a random input of ``T_RANDOM`` seconds.
    """
    p = params or NeuronParams()
    if not (isinstance(dt, (int, float)) and math.isfinite(dt) and 0 < dt <= p.tau):
        raise ValueError(f"dt must be a positive time step (s) no longer than tau ({p.tau!r} s), not {dt!r}")
    i_trace = 2 * p.rheobase if trace_current is None else float(trace_current)
    trace = simulate_neuron(p, i_trace, _t_end_for(p, i_trace, 3.5))
    currents, rates = fi_curve(p, currents)
    above = currents > 1.1 * p.rheobase
    drive = _random_drive(p, max(int(round(T_RANDOM / dt)), 10), seed)
    random = simulate_neuron(p, drive, len(drive) * dt, dt)
    fit = _fit(p, dt, currents[above], rates[above], drive, random["spikes"])
    rates_lif = _lif_rates(fit, currents, max(_t_end_for(p, float(i), 6) for i in currents[above]))
    v_lif, s_lif = run_lif(fit, drive)
    return NeuronReport(
        params=p, trace=trace, trace_current=i_trace, currents=currents, rates=rates,
        rates_analytic=analytic_rate(p, currents), rates_lif=rates_lif, fit=fit,
        random={"time": random["time"], "v_mem": random["v_mem"], "spikes": random["spikes"], "i_in": drive,
                "v_lif": v_lif, "spikes_lif": (np.nonzero(s_lif)[0] + 0.5) * dt})


def plot(report: NeuronReport, path: str | os.PathLike) -> None:
    """Write ``report`` as a PNG at ``path``: membrane trace, f-I curves, random-input comparison.

    Uses matplotlib's object API on the Agg canvas (no pyplot state, no display).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    p, fit = report.params, report.fit
    fig = Figure(figsize=(15, 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    ax_v, ax_f, ax_r = fig.subplots(1, 3)

    tr = report.trace
    ax_v.plot(tr["time"] * 1e3, tr["v_mem"], lw=1.2, color="C0", label="membrane")
    ax_v.axhline(p.v_th, color="C3", ls="--", lw=1, label=f"V_th = {p.v_th:g} V")
    for k, t in enumerate(tr["spikes"]):
        ax_v.axvline(t * 1e3, color="0.6", lw=0.6, label="spikes" if k == 0 else None)
    ax_v.set_xlabel("time (ms)")
    ax_v.set_ylabel("membrane voltage (V)")
    ax_v.set_title(f"membrane at {report.trace_current * 1e12:.0f} pA (tau {p.tau * 1e3:g} ms, "
                   f"t_ref {p.t_ref * 1e3:g} ms)", fontsize=10)
    ax_v.legend(loc="lower right", fontsize=8)
    ax_v.grid(alpha=0.3)

    i_pa = report.currents * 1e12
    dense = np.linspace(report.currents.min(), report.currents.max(), 400)
    ax_f.plot(dense * 1e12, analytic_rate(p, dense), color="C1", lw=1.2, label="RC formula")
    ax_f.plot(i_pa, report.rates, "o", color="C0", ms=5, label="circuit (ngspice)")
    ax_f.plot(i_pa, report.rates_lif, "x", color="C2", ms=6, mew=1.5, label=f"discrete LIF, dt {fit.dt * 1e3:g} ms")
    ax_f.axvline(p.rheobase * 1e12, color="0.6", ls=":", lw=1, label="rheobase")
    ax_f.set_xlabel("input current (pA)")
    ax_f.set_ylabel("firing rate (Hz)")
    ax_f.set_title(f"f-I curve (LIF rate error: max {fit.rate_error_max * 100:.1f} %, "
                   f"mean {fit.rate_error_mean * 100:.1f} %)", fontsize=10)
    ax_f.legend(loc="upper left", fontsize=8)
    ax_f.grid(alpha=0.3)

    rd = report.random
    if rd:
        shown = min(30e-3, fit.t_random)  # a few spikes, readable
        steps_t = (np.arange(len(rd["v_lif"])) + 1) * fit.dt  # v_lif[n]: the membrane at the end of step n
        k = steps_t <= shown
        ax_r.plot(rd["time"][rd["time"] <= shown] * 1e3, rd["v_mem"][rd["time"] <= shown], lw=1, color="C0",
                  label="circuit")
        ax_r.plot(steps_t[k] * 1e3, rd["v_lif"][k], ".", ms=3, color="C2", label="discrete LIF (end of step)")
        ax_r.axhline(fit.v_threshold, color="C3", ls="--", lw=1, label="threshold")
        top = max(float(np.max(rd["v_mem"])), fit.v_threshold)
        for spikes, y, colour, name in ((rd["spikes"], 1.14, "C0", "circuit spikes"),
                                        (rd["spikes_lif"], 1.06, "C2", "LIF spikes")):
            s = spikes[spikes <= shown]
            ax_r.plot(s * 1e3, np.full(len(s), top * y), "|", color=colour, ms=10, mew=1.5, label=name)
        ax_r.set_xlabel(f"time (ms; first {shown * 1e3:g} of {fit.t_random * 1e3:g} ms)")
        ax_r.set_ylabel("membrane voltage (V)")
        ax_r.set_title(f"random input: {fit.spikes_circuit} vs {fit.spikes_lif} spikes, timing error "
                       f"{fit.spike_time_error_mean * 1e6:.0f} us mean", fontsize=10)
        ax_r.legend(loc="lower right", fontsize=7, framealpha=0.9)
        ax_r.grid(alpha=0.3)
    fig.savefig(os.fspath(path), dpi=110)
