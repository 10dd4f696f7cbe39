"""HP's TiO2 memristor as the linear ion drift model, a SPICE subcircuit built with PySpice.

Strukov, Snider, Stewart & Williams, "The missing memristor found", Nature 453, 80 (2008):
a film of thickness ``D`` holds a doped (low-resistance) region of width ``w``; with the
normalised state ``x = w / D``::

    v = M(x) i,        M(x) = R_on x + R_off (1 - x)
    dx/dt = (mu_v R_on / D^2) i f(x)

where ``f`` is a window function keeping ``x`` in [0, 1]: Joglekar's ``1 - (2x - 1)^(2p)``
(Joglekar & Wolf, Eur. J. Phys. 30, 661, 2009) or Biolek's ``1 - (x - stp(-i))^(2p)``
(Biolek, Biolek & Biolkova, Radioengineering 18, 210, 2009).

The subcircuit follows Biolek's SPICE model: the port is a behavioural current source
``i = v / M(x)`` and the state is the voltage of a 1 F capacitor charged by a behavioural
current source ``dx/dt``. Its pins are ``plus minus state`` (``state`` reads x).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _spice
from .report import DeviceReport

__all__ = ["LinearIonDriftParameters", "characterize", "pulse_response", "resistance", "sine_response", "subcircuit"]

NAME = "linear-ion-drift"
WINDOWS = ("joglekar", "biolek", "none")


@dataclass(frozen=True)
class LinearIonDriftParameters:
    """Parameters of the HP linear ion drift memristor (defaults: Strukov 2008, Biolek 2009)."""

    r_on: float = 100.0
    """Resistance of the fully doped film, x = 1 (ohm). Strukov et al. 2008 (R_off/R_on = 160), Biolek et al. 2009."""
    r_off: float = 16e3
    """Resistance of the undoped film, x = 0 (ohm). Strukov et al. 2008, Biolek et al. 2009."""
    d: float = 10e-9
    """Film thickness D (m). Strukov et al. 2008: 10 nm."""
    mu_v: float = 1e-14
    """Dopant mobility (m^2 V^-1 s^-1). Strukov et al. 2008: 1e-10 cm^2 V^-1 s^-1."""
    p: float = 10.0
    """Window exponent (the window is 1 - (.)^(2p)). Biolek et al. 2009 use p = 10."""
    window: str = "biolek"
    """``"biolek"``, ``"joglekar"`` or ``"none"`` (hard bounds, no nonlinearity)."""
    x0: float = (16e3 - 11e3) / (16e3 - 100.0)
    """Initial state x = w / D in [0, 1]. Biolek et al. 2009 start at R_init = 11 kOhm: x0 = 0.3145."""

    def __post_init__(self):
        for name in ("r_on", "r_off", "d", "mu_v"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, not {value!r}")
        if not self.r_off > self.r_on:
            raise ValueError(f"r_off must be larger than r_on ({self.r_on!r} ohm), not {self.r_off!r}")
        if self.window not in WINDOWS:
            raise ValueError(f"window must be one of {', '.join(WINDOWS)}, not {self.window!r}")
        _spice.check_window(self.window, self.p)
        if not (isinstance(self.x0, (int, float)) and 0 <= self.x0 <= 1):
            raise ValueError(f"x0 must be in [0, 1], not {self.x0!r}")

    @property
    def k(self) -> float:
        """The state's rate per ampere, mu_v R_on / D^2 (A^-1 s^-1)."""
        return self.mu_v * self.r_on / self.d**2


def resistance(x, params: LinearIonDriftParameters | None = None) -> np.ndarray:
    """M(x) = R_on x + R_off (1 - x) (ohm), x clipped to [0, 1]."""
    p = params or LinearIonDriftParameters()
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    return p.r_on * x + p.r_off * (1 - x)


def subcircuit(params: LinearIonDriftParameters | None = None, name: str = "linear_ion_drift"):
    """The memristor as a PySpice ``SubCircuit`` with pins ``plus minus state``.

    ``Bmem`` is the port (``i = v / M(x)``), ``Bx`` charges the 1 F capacitor ``Cx`` (whose
    voltage is x, initial condition ``x0``: run the transient with ``uic``) at ``dx/dt``.
    """
    from PySpice.Spice.Netlist import SubCircuit

    p = params or LinearIonDriftParameters()
    f = _spice.fmt
    x = _spice.clamped("v(state)")
    i = f"(v(plus,minus)/({f(p.r_on)}*{x}+{f(p.r_off)}*(1-{x})))"
    window = _spice.window_expression(p.window, p.p, x, increasing=i)
    sub = SubCircuit(name, "plus", "minus", "state")
    sub.BehavioralSource("mem", "plus", "minus", current_expression=i)
    sub.BehavioralSource("x", sub.gnd, "state", current_expression=f"{f(p.k)}*{i}*{window}")
    sub.C("x", "state", sub.gnd, 1, initial_condition=p.x0)
    sub.R("leak", "state", sub.gnd, _spice.R_STATE_LEAK)
    return sub


def sine_response(params: LinearIonDriftParameters | None = None, *, amplitude: float = 1.0,
                  frequency: float = 1.0, periods: int = 1, points: int = 2000) -> dict[str, np.ndarray]:
    """ngspice transient of the device under ``amplitude sin(2 pi frequency t)``.

    Returns ``time`` (s), ``voltage`` (V), ``current`` (A) and ``state`` (x). With the default
    parameters, 1 V at 1 Hz moves x from 0.31 to about 0.73 and back: a pinched loop.
    """
    return _spice.sine_drive(subcircuit(params), amplitude=amplitude, frequency=frequency, periods=periods,
                             points=points)


def pulse_response(params: LinearIonDriftParameters | None = None, *, n_up: int = 16, n_down: int = 16,
                   amplitude: float = 1.0, width: float = 20e-3, v_read: float = 0.1,
                   t_read: float = 2e-3) -> tuple[np.ndarray, float, dict[str, np.ndarray]]:
    """Conductance after each of ``n_up`` pulses of ``+amplitude`` then ``n_down`` of ``-amplitude``.

    Every pulse lasts ``width`` seconds and is followed by a read at ``v_read`` for ``t_read``
    (one ngspice transient, see ``_spice.pulse_train``). Returns ``(G after each pulse [S],
    initial G [S], waveforms)``.
    """
    pulses = [(amplitude, width)] * n_up + [(-amplitude, width)] * n_down
    return _spice.pulse_train(subcircuit(params), pulses, v_read=v_read, t_read=t_read, t_gap=t_read / 2,
                              t_edge=t_read / 20)


def characterize(params: LinearIonDriftParameters | None = None, *, seed: int = 0) -> DeviceReport:
    """The HP memristor's loop (1 V, 1 Hz sine), 16 + 16 pulses (+-1 V, 20 ms) and its levels.

    The model is deterministic: ``seed`` is accepted for a uniform interface and unused. The
    loop's fingerprint is measured too: the lobe area at 10 Hz (``loop_area_10x_VA``) is far
    smaller than at 1 Hz. Levels: every state the pulse train visits, merged where two lie
    closer than one step of an 8-bit read of the visited range.
    """
    del seed
    p = params or LinearIonDriftParameters()
    amplitude, frequency = 1.0, 1.0
    iv = sine_response(p, amplitude=amplitude, frequency=frequency)
    fast = sine_response(p, amplitude=amplitude, frequency=10 * frequency)
    g, g0, _ = pulse_response(p)
    return _spice.report(
        NAME, p, iv, fast, frequency, g, g0, n_up=16,
        description="HP TiO2 linear ion drift memristor (Strukov et al., Nature 2008) with the "
                    f"{p.window} window (p = {p.p:g}), SPICE subcircuit after Biolek et al. 2009",
        iv_method=f"ngspice transient, {amplitude:g} V {frequency:g} Hz sine, one period from x0 = {p.x0:.4g}",
        pulse_method="ngspice transient: 16 pulses of +1 V then 16 of -1 V, 20 ms each, each followed by a "
                     "2 ms read at 0.1 V (G = I / V at mid-read)")

