"""What the compact SPICE models share: windows, the sine and pulse-train protocols, the report.

A memristor subcircuit here has three pins, ``plus minus state``: the device between ``plus``
and ``minus``, and its normalised state variable ``x`` (0..1) as the voltage of ``state``
(a 1 F capacitor integrates ``dx/dt``, as in Biolek's SPICE model). The protocols drive
``plus`` from a voltage source ``Vdrive`` with ``minus`` grounded; the device current is
``-I(Vdrive)``.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from ..spice import simulate
from .report import DeviceReport, Levels, distinguishable_levels

WINDOWS = ("none", "joglekar", "biolek")

# the state capacitor leaks through this; with C = 1 F the time constant is 1e12 s (SPICE needs a DC path)
R_STATE_LEAK = 1e12
# the "none" window's boundary layer (fraction of the state range)
NONE_LAYER = 1e-3


def fmt(value: float) -> str:
    """A number as SPICE reads it, exactly enough (12 significant digits)."""
    return f"{float(value):.12g}"


def clamped(x: str) -> str:
    """``x`` limited to [0, 1]: the integrator may overshoot a bound by one timestep."""
    return f"max(min({x},1),0)"


def window_expression(window: str, p: float, x: str, increasing: str) -> str:
    """The window function ``f(x)`` as an ngspice B-source expression.

    ``x`` is the (clamped) state expression, ``increasing`` an expression that is positive
    while the drive pushes ``x`` up.

    * ``none``: ``f = 1`` inside [0, 1]; the motion stops at the bound it runs into. The stop
      is a linear ramp over the last ``NONE_LAYER`` of the range, not a step: with a step the
      implicit integrator's equation ``x' = x + h rate f(x')`` has no solution once ``h rate``
      exceeds the distance to the bound, and ngspice accepts a state far outside [0, 1].
    * ``joglekar`` (Joglekar & Wolf, Eur. J. Phys. 2009): ``f = 1 - (2x - 1)^(2p)``; it is 0 at
      both bounds whatever the drive, so a device driven into a bound stays there.
    * ``biolek`` (Biolek et al., Radioengineering 2009): ``f = 1 - (x - stp(-i))^(2p)``, ``stp``
      the unit step and ``i`` the drive's sign: 0 at the bound the state runs into, 1 at the
      bound it leaves.

    ``|.|^(2p)`` equals ``(.)^(2p)`` for the integer ``p`` of the papers and stays real for
    any ``p > 0``.
    """
    if window == "none":
        up, down = (f"min(1,max(0,{bound})/{fmt(NONE_LAYER)})" for bound in (f"1-({x})", x))
        return f"(({increasing}) > 0 ? {up} : {down})"
    if window == "joglekar":
        return f"(1-pow(abs(2*({x})-1),{fmt(2 * p)}))"
    if window == "biolek":
        return f"(1-pow(abs(({x})-u(-({increasing}))),{fmt(2 * p)}))"
    raise ValueError(f"window must be one of {', '.join(WINDOWS)}, not {window!r}")


def check_window(window: str, p: float) -> None:
    if window not in WINDOWS:
        raise ValueError(f"window must be one of {', '.join(WINDOWS)}, not {window!r}")
    if not (np.isfinite(p) and p > 0):
        raise ValueError(f"p (the window's exponent) must be a positive number, not {p!r}")


def _circuit(subcircuit, source: str):
    """A deck: the device subcircuit between ``drive`` and ground, ``drive`` driven by ``source``."""
    from PySpice.Spice.Netlist import Circuit

    circuit = Circuit(f"{subcircuit.name} characterisation")
    circuit.subcircuit(subcircuit)
    circuit.X("dut", subcircuit.name, "drive", circuit.gnd, "state")
    circuit.V("drive", "drive", circuit.gnd, source)
    return str(circuit)


def sine_drive(subcircuit, *, amplitude: float, frequency: float, periods: int = 1,
               points: int = 2000) -> dict[str, np.ndarray]:
    """Drive the device with ``amplitude sin(2 pi frequency t)`` for ``periods`` periods in ngspice.

    Returns ``time`` (s), ``voltage`` (V), ``current`` (A, into ``plus``) and ``state`` (x) at
    ngspice's own timepoints; the largest step is one ``points``-th of a period.
    """
    if not (amplitude > 0 and frequency > 0 and periods >= 1 and points >= 16):
        raise ValueError(f"the sine drive needs amplitude > 0, frequency > 0, periods >= 1, points >= 16, not "
                         f"{amplitude!r}, {frequency!r}, {periods!r}, {points!r}")
    period = 1.0 / frequency
    deck = _circuit(subcircuit, f"DC 0 SIN(0 {fmt(amplitude)} {fmt(frequency)} 0 0)")
    step = period / points
    # uic: start from the state capacitor's initial condition, not from an operating point
    result = simulate(deck, f".tran {fmt(step)} {fmt(periods * period)} 0 {fmt(step)} uic")
    return {"time": result["time"], "voltage": result["drive"], "current": -result["vdrive#branch"],
            "state": result["state"]}


def pulse_train(subcircuit, pulses, *, v_read: float, t_read: float, t_gap: float, t_edge: float,
                max_step: float | None = None) -> tuple[np.ndarray, float, dict[str, np.ndarray]]:
    """Apply write pulses, each followed by a read pulse, in one ngspice transient.

    ``pulses`` is a sequence of ``(amplitude V, width s)``. The waveform is: a read of the
    initial state, then for every pulse ``gap, write, gap, read``; every edge takes ``t_edge``.
    The conductance after a pulse is the current at the middle of the following read plateau
    divided by ``v_read`` (ngspice puts timepoints on every corner of the piecewise-linear
    source, so the plateau is resolved; the read itself disturbs a device with no threshold
    a little, as it would on the bench).

    Returns ``(conductance after each pulse [S], initial conductance [S], waveforms)`` with
    waveforms ``time``, ``voltage``, ``current``, ``state``.
    """
    pulses = [(float(a), float(w)) for a, w in pulses]
    if not pulses or any(w <= 0 for _, w in pulses) or min(t_read, t_gap, t_edge) <= 0 or v_read == 0:
        raise ValueError("a pulse train needs pulses of positive width, positive read, gap and edge times "
                         "and a non-zero read voltage")
    points = [(0.0, 0.0)]
    t = 0.0
    reads = []

    def plateau(amplitude, width):
        nonlocal t
        points.append((t + t_edge, amplitude))
        points.append((t + t_edge + width, amplitude))
        points.append((t + 2 * t_edge + width, 0.0))
        start = t + t_edge
        t += 2 * t_edge + width
        return start

    def gap():
        nonlocal t
        t += t_gap
        points.append((t, 0.0))

    gap()
    reads.append(plateau(v_read, t_read) + t_read / 2)
    for amplitude, width in pulses:
        gap()
        plateau(amplitude, width)
        gap()
        reads.append(plateau(v_read, t_read) + t_read / 2)
    gap()
    source = "PWL(" + " ".join(f"{fmt(tp)} {fmt(vp)}" for tp, vp in points) + ")"
    deck = _circuit(subcircuit, source)
    shortest = min(min(w for _, w in pulses), t_read, t_gap)
    max_step = shortest / 10 if max_step is None else max_step
    result = simulate(deck, f".tran {fmt(max_step)} {fmt(t)} 0 {fmt(max_step)} uic")
    time, current = result["time"], -result["vdrive#branch"]
    g = np.interp(reads, time, current) / v_read
    waves = {"time": time, "voltage": result["drive"], "current": current, "state": result["state"]}
    return g[1:], float(g[0]), waves


def loop_lobes(time: np.ndarray, voltage: np.ndarray, current: np.ndarray, frequency: float) -> list[float]:
    """The area of each half-period lobe of an I-V loop (V A), from the start of the drive.

    A pinched loop's two lobes turn in opposite senses, so a signed area over a whole period
    would cancel; each half period (from one zero of the sine to the next) is a closed curve
    through the origin and its shoelace area is the lobe's.
    """
    half = 0.5 / frequency
    n = int(round((time[-1] - time[0]) / half))
    areas = []
    for k in range(n):
        sel = (time >= k * half - 1e-12 * half) & (time <= (k + 1) * half + 1e-12 * half)
        v, i = voltage[sel], current[sel]
        areas.append(0.5 * abs(float(np.sum(v[:-1] * i[1:] - v[1:] * i[:-1]) + v[-1] * i[0] - v[0] * i[-1])))
    return areas


def pinch_currents(time: np.ndarray, current: np.ndarray, frequency: float) -> np.ndarray:
    """The current where the sine drive crosses 0 V (t = k / (2 f)), interpolated (A)."""
    half = 0.5 / frequency
    crossings = np.arange(1, int(round((time[-1] - time[0]) / half)) + 1) * half
    return np.interp(crossings, time, current)


def report(name, params, iv, fast, frequency, g, g0, *, n_up, description, iv_method, pulse_method,
           adc_bits: int = 8) -> DeviceReport:
    """A :class:`DeviceReport` of a SPICE model: loop metrics, pulse response, levels by read resolution."""
    states = np.concatenate([[g0], g])
    lsb = (states.max() - states.min()) / (2**adc_bits - 1)
    kept = distinguishable_levels(states, min_gap=lsb)
    levels = Levels(np.sort(states[kept]),
                    f"the {states.size} states the pulse train visits (initial state included), merged where two "
                    f"lie closer than one step of an ideal {adc_bits}-bit read of the visited range "
                    f"({lsb * 1e6:.4g} uS); the model is noise-free, so the read resolution decides")
    lobes = loop_lobes(iv["time"], iv["voltage"], iv["current"], frequency)
    lobes_fast = loop_lobes(fast["time"], fast["voltage"], fast["current"], 10 * frequency)
    pinch = pinch_currents(iv["time"], iv["current"], frequency)
    metrics = {
        "loop_area_VA": float(sum(lobes)),
        "loop_area_10x_VA": float(sum(lobes_fast)),
        "pinch_current_A": float(np.max(np.abs(pinch))),
        "peak_current_A": float(np.max(np.abs(iv["current"]))),
        "state_min": float(np.min(iv["state"])),
        "state_max": float(np.max(iv["state"])),
    }
    return DeviceReport(model=name, description=description, iv=iv, iv_method=iv_method,
                        conductance_vs_pulse=g, n_potentiation=n_up, pulse_method=pulse_method, g_initial=g0,
                        levels=levels, metrics=metrics, parameters=asdict(params))
