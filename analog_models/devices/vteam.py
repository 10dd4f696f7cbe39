"""VTEAM, the voltage-threshold adaptive memristor model, as a SPICE subcircuit built with PySpice.

Kvatinsky, Ramadan, Friedman & Kolodny, "VTEAM: A General Model for Voltage-Controlled
Memristors", IEEE TCAS-II 62(8), 786 (2015). The state ``w`` runs from ``w_on`` (low
resistance) to ``w_off`` (high resistance) and moves only beyond a threshold voltage::

    dw/dt = k_off (v / v_off - 1)^alpha_off f_off(w)    0 < v_off < v
          = 0                                           v_on < v < v_off
          = k_on (v / v_on - 1)^alpha_on f_on(w)        v < v_on < 0

    linear I-V:       v = (R_on + (R_off - R_on) x) i
    exponential I-V:  v = R_on exp(lambda x) i,  lambda = ln(R_off / R_on)

with ``x = (w - w_on) / (w_off - w_on)`` in [0, 1] and ``k_off > 0 > k_on``. A positive voltage
above ``v_off`` switches the device *off* (x up, conductance down), a negative one below
``v_on`` switches it *on*. The window is the same for both directions here: ``none`` (hard
bounds, as the model's reference implementations), ``joglekar`` or ``biolek``.

The subcircuit's pins are ``plus minus state``; ``state`` reads x (a 1 F capacitor charged at
``dx/dt``, as in Biolek's SPICE memristor).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from . import _spice
from .report import DeviceReport

__all__ = ["VTEAMParameters", "characterize", "pulse_response", "resistance", "sine_response", "state_rate",
           "subcircuit"]

NAME = "vteam"
IV_RELATIONS = ("linear", "exponential")


@dataclass(frozen=True)
class VTEAMParameters:
    """Parameters of the VTEAM model.

    Defaults: the parameter set distributed with the VTEAM Verilog-A model by Kvatinsky's group
    (Technion/ASIC2, "memristor models") and used as the VTEAM defaults of MemTorch (Lammie et
    al., Neurocomputing 2022): a fast, strongly asymmetric device (switching on within
    nanoseconds below -0.2 V, off within about 100 ns at +1 V).
    """

    r_on: float = 50.0
    """Resistance in the on state, x = 0 (ohm)."""
    r_off: float = 1000.0
    """Resistance in the off state, x = 1 (ohm)."""
    v_on: float = -0.2
    """On-switching threshold (V, negative): below it the device switches on."""
    v_off: float = 0.02
    """Off-switching threshold (V, positive): above it the device switches off."""
    k_on: float = -10.0
    """On-switching rate constant (m/s, negative)."""
    k_off: float = 5e-4
    """Off-switching rate constant (m/s, positive)."""
    alpha_on: float = 3.0
    """On-switching nonlinearity exponent."""
    alpha_off: float = 1.0
    """Off-switching nonlinearity exponent."""
    w_on: float = 0.0
    """State bound of the on state (m)."""
    w_off: float = 3e-9
    """State bound of the off state (m): the 3 nm of the reference implementation."""
    iv_relation: str = "linear"
    """``"linear"`` or ``"exponential"`` resistance in x (both in the VTEAM paper)."""
    window: str = "none"
    """``"none"`` (hard bounds), ``"joglekar"`` or ``"biolek"``."""
    p: float = 2.0
    """Window exponent (joglekar, biolek)."""
    x0: float = 0.0
    """Initial normalised state (w - w_on) / (w_off - w_on), in [0, 1]: 0 is fully on."""

    def __post_init__(self):
        checks = (("r_on", self.r_on > 0), ("r_off", self.r_off > self.r_on), ("v_on", self.v_on < 0),
                  ("v_off", self.v_off > 0), ("k_on", self.k_on < 0), ("k_off", self.k_off > 0),
                  ("alpha_on", self.alpha_on > 0), ("alpha_off", self.alpha_off > 0),
                  ("w_off", self.w_off > self.w_on), ("x0", 0 <= self.x0 <= 1))
        musts = {"r_on": "a positive resistance", "r_off": "larger than r_on", "v_on": "negative",
                 "v_off": "positive", "k_on": "negative", "k_off": "positive", "alpha_on": "positive",
                 "alpha_off": "positive", "w_off": "larger than w_on", "x0": "in [0, 1]"}
        for name, ok in checks:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and ok):
                raise ValueError(f"{name} must be {musts[name]}, not {value!r}")
        if self.iv_relation not in IV_RELATIONS:
            raise ValueError(f"iv_relation must be one of {', '.join(IV_RELATIONS)}, not {self.iv_relation!r}")
        _spice.check_window(self.window, self.p)


def resistance(x, params: VTEAMParameters | None = None) -> np.ndarray:
    """The resistance at normalised state ``x`` (ohm), x clipped to [0, 1]."""
    p = params or VTEAMParameters()
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    if p.iv_relation == "linear":
        return p.r_on + (p.r_off - p.r_on) * x
    return p.r_on * np.exp(np.log(p.r_off / p.r_on) * x)


def state_rate(v, params: VTEAMParameters | None = None) -> np.ndarray:
    """dx/dt at voltage ``v`` without the window (1/s): exactly 0 between the thresholds."""
    p = params or VTEAMParameters()
    v = np.asarray(v, dtype=np.float64)
    span = p.w_off - p.w_on
    with np.errstate(invalid="ignore"):
        off = p.k_off * np.maximum(v / p.v_off - 1, 0) ** p.alpha_off
        on = p.k_on * np.maximum(v / p.v_on - 1, 0) ** p.alpha_on
    return np.where(v > p.v_off, off, np.where(v < p.v_on, on, 0.0)) / span


def subcircuit(params: VTEAMParameters | None = None, name: str = "vteam"):
    """The VTEAM memristor as a PySpice ``SubCircuit`` with pins ``plus minus state``.

    ``Bmem`` is the port (``i = v / R(x)``); ``Bx`` charges the 1 F capacitor ``Cx`` (x, initial
    condition ``x0``: run transients with ``uic``) at ``dx/dt``, which is exactly 0 between
    ``v_on`` and ``v_off``.
    """
    from PySpice.Spice.Netlist import SubCircuit

    p = params or VTEAMParameters()
    f = _spice.fmt
    x = _spice.clamped("v(state)")
    v = "v(plus,minus)"
    if p.iv_relation == "linear":
        r = f"({f(p.r_on)}+{f(p.r_off - p.r_on)}*{x})"
    else:
        r = f"({f(p.r_on)}*exp({f(np.log(p.r_off / p.r_on))}*{x}))"
    span = p.w_off - p.w_on
    # (v/v_off - 1) and (v/v_on - 1) are positive exactly beyond their thresholds
    rate = (f"({v} > {f(p.v_off)} ? {f(p.k_off / span)}*pow({v}/{f(p.v_off)}-1,{f(p.alpha_off)}) : "
            f"({v} < {f(p.v_on)} ? {f(p.k_on / span)}*pow({v}/{f(p.v_on)}-1,{f(p.alpha_on)}) : 0))")
    window = _spice.window_expression(p.window, p.p, x, increasing=v)
    sub = SubCircuit(name, "plus", "minus", "state")
    sub.BehavioralSource("mem", "plus", "minus", current_expression=f"{v}/{r}")
    sub.BehavioralSource("x", sub.gnd, "state", current_expression=f"{rate}*{window}")
    sub.C("x", "state", sub.gnd, 1, initial_condition=p.x0)
    sub.R("leak", "state", sub.gnd, _spice.R_STATE_LEAK)
    return sub


def sine_response(params: VTEAMParameters | None = None, *, amplitude: float = 1.0, frequency: float = 10e6,
                  periods: int = 1, points: int = 4000) -> dict[str, np.ndarray]:
    """ngspice transient under ``amplitude sin(2 pi frequency t)``: ``time``, ``voltage``, ``current``, ``state``."""
    return _spice.sine_drive(subcircuit(params), amplitude=amplitude, frequency=frequency, periods=periods,
                             points=points)


def pulse_response(params: VTEAMParameters | None = None, *, n_up: int = 16, n_down: int = 16,
                   v_set: float = -0.25, t_set: float = 1e-9, v_reset: float = 0.5, t_reset: float = 15e-9,
                   v_read: float = 0.01, t_read: float = 2e-9) -> tuple[np.ndarray, float, dict[str, np.ndarray]]:
    """Conductance after ``n_up`` set pulses (``v_set`` for ``t_set``) then ``n_down`` reset pulses.

    Set pulses (negative, beyond ``v_on``) potentiate, reset pulses (positive, beyond ``v_off``)
    depress; each is followed by a read at ``v_read`` (below both thresholds: the read does not
    disturb the state). One ngspice transient; returns ``(G after each pulse [S], initial G [S],
    waveforms)``.
    """
    pulses = [(v_set, t_set)] * n_up + [(v_reset, t_reset)] * n_down
    return _spice.pulse_train(subcircuit(params), pulses, v_read=v_read, t_read=t_read, t_gap=t_read / 2,
                              t_edge=min(t_set, t_reset) / 20)


def characterize(params: VTEAMParameters | None = None, *, seed: int = 0) -> DeviceReport:
    """VTEAM's loop (1 V, 10 MHz sine), 16 set + 16 reset pulses and its levels.

    Starts from the off state (x0 = 1) unless ``params`` say otherwise, so that the set pulses
    have somewhere to go. Deterministic: ``seed`` is unused.
    """
    del seed
    p = params or VTEAMParameters()
    amplitude, frequency = 1.0, 10e6
    iv = sine_response(p, amplitude=amplitude, frequency=frequency)
    fast = sine_response(p, amplitude=amplitude, frequency=10 * frequency)
    start_off = replace(p, x0=1.0) if params is None else p
    g, g0, _ = pulse_response(start_off)
    return _spice.report(
        NAME, p, iv, fast, frequency, g, g0, n_up=16,
        description=f"VTEAM voltage-threshold memristor (Kvatinsky et al., IEEE TCAS-II 2015), {p.iv_relation} "
                    f"I-V, {p.window} window, SPICE subcircuit",
        iv_method=f"ngspice transient, {amplitude:g} V {frequency / 1e6:g} MHz sine, one period from x0 = {p.x0:g}",
        pulse_method=f"ngspice transient from x0 = {start_off.x0:g}: 16 set pulses of -0.25 V for 1 ns, then 16 "
                     "reset pulses of +0.5 V for 15 ns, each followed by a 2 ns read at 0.01 V (below both "
                     "thresholds; G = I / V at mid-read)")
