"""What characterising a device gives back: the I-V loop, conductance against pulses, the levels.

:class:`DeviceReport` is the one shape every device model in this package reports in, whether
its numbers come from an ngspice transient (the compact SPICE models) or from a parametric
numpy model (PCM, TiOx). :func:`distinguishable_levels` decides which conductance states a read
circuit can tell apart, and :func:`plot` draws a report (matplotlib's Agg renderer, no display).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

__all__ = ["DeviceReport", "Levels", "distinguishable_levels", "plot"]


@dataclass(frozen=True)
class Levels:
    """The conductance states of a device that can be told apart, and how that was decided."""

    conductances: np.ndarray
    """The distinguishable levels, ascending (siemens)."""
    method: str
    """How the candidates were produced and which separation criterion kept them (one sentence)."""

    def __len__(self) -> int:
        return int(self.conductances.size)


def distinguishable_levels(means, sigmas=None, *, k: float = 2.0, min_gap: float = 0.0) -> np.ndarray:
    """The states that stay apart: indices into ``means``, ascending by mean.

    Walking up from the lowest state, a state is kept when its mean lies at least
    ``max(min_gap, k (sigma_i + sigma_last))`` above the last kept state's, that is when the two
    ``+- k sigma`` bands do not overlap (``k = 2``: each state misread as its neighbour with
    about 2 % probability for Gaussian spreads). Deterministic models pass no ``sigmas`` and a
    ``min_gap`` (the read circuit's resolution).

    Parameters
    ----------
    means : the candidate states' mean conductances (siemens).
    sigmas : their standard deviations (siemens), or None for noise-free states.
    k : separation in standard deviations on each side.
    min_gap : the smallest resolvable difference (siemens).
    """
    means = np.asarray(means, dtype=np.float64).ravel()
    sigmas = np.zeros_like(means) if sigmas is None else np.asarray(sigmas, dtype=np.float64).ravel()
    if means.shape != sigmas.shape:
        raise ValueError(f"sigmas must have the shape of means {means.shape}, not {sigmas.shape}")
    if means.size == 0:
        return np.zeros(0, dtype=np.intp)
    if not (k >= 0 and min_gap >= 0):
        raise ValueError(f"k and min_gap must be >= 0, not {k!r} and {min_gap!r}")
    order = np.argsort(means, kind="stable")
    kept = [order[0]]
    for i in order[1:]:
        last = kept[-1]
        if means[i] - means[last] >= max(min_gap, k * (sigmas[i] + sigmas[last])) and means[i] > means[last]:
            kept.append(i)
    return np.asarray(kept, dtype=np.intp)


def _scalar(value):
    """A JSON-able scalar: Python numbers, rounded to 6 significant digits (readable, stable)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(f"{float(value):.6g}")
    return value


@dataclass
class DeviceReport:
    """One device model characterised: its I-V loop, its response to pulses, its levels.

    Every array is in SI units (volts, amperes, siemens, seconds). ``iv["current"]`` is
    one-dimensional for a loop (the SPICE models' sine drive) and ``[states, voltages]`` for a
    family of quasi-static lines (one per programmed state, PCM and TiOx).
    """

    model: str
    """The registry name (``"vteam"``)."""
    description: str
    """The model and its source, one line."""
    iv: dict[str, np.ndarray]
    """``voltage`` (V) and ``current`` (A); ``time`` (s) and ``state`` (0..1) where the model has them."""
    iv_method: str
    """How ``iv`` was obtained (drive, simulator)."""
    conductance_vs_pulse: np.ndarray
    """Conductance after each programming pulse (S): ``n_potentiation`` up, then the rest down."""
    n_potentiation: int
    """How many of ``conductance_vs_pulse`` are potentiating pulses (the rest depress)."""
    pulse_method: str
    """How ``conductance_vs_pulse`` was obtained (pulse amplitude, width, read)."""
    g_initial: float
    """Conductance before the first pulse (S)."""
    levels: Levels
    """The distinguishable conductance levels and how they were determined."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Model-specific figures (loop area in V A, pinch current in A, fault fractions, ...)."""
    parameters: dict = field(default_factory=dict)
    """The parameters the model ran with (their dataclass as a dict)."""

    def __post_init__(self):
        if self.n_potentiation < 0 or self.n_potentiation > len(self.conductance_vs_pulse):
            raise ValueError(f"n_potentiation must be in [0, {len(self.conductance_vs_pulse)}], "
                             f"not {self.n_potentiation!r}")

    def figures(self) -> dict:
        """The report as a JSON-able dict: scalars at the top level, lists and prose below.

        Scalars (``g_min_S``, ``on_off_ratio``, ``n_levels``, the metrics) are plain numbers at
        the top level; ``levels_S`` and ``conductance_vs_pulse_S`` are lists; ``methods`` says
        how each part was obtained and ``parameters`` lists the model's parameters.
        """
        g = np.concatenate([[self.g_initial], self.conductance_vs_pulse])
        g_min, g_max = float(np.min(g)), float(np.max(g))
        out = {
            "model": self.model,
            "g_min_S": _scalar(g_min),
            "g_max_S": _scalar(g_max),
            "on_off_ratio": _scalar(g_max / g_min) if g_min > 0 else None,
            "n_levels": len(self.levels),
            "n_pulses": int(len(self.conductance_vs_pulse)),
            "g_initial_S": _scalar(self.g_initial),
        }
        out.update({key: _scalar(value) for key, value in self.metrics.items()})
        out["levels_S"] = [_scalar(v) for v in self.levels.conductances]
        out["conductance_vs_pulse_S"] = [_scalar(v) for v in self.conductance_vs_pulse]
        out["methods"] = {"description": self.description, "iv": self.iv_method, "pulses": self.pulse_method,
                          "levels": self.levels.method}
        out["parameters"] = {key: [_scalar(v) for v in value] if isinstance(value, (tuple, list)) else _scalar(value)
                             for key, value in self.parameters.items()}
        return out


def _current_scale(current: np.ndarray) -> tuple[float, str]:
    peak = float(np.max(np.abs(current))) if current.size else 0.0
    for scale, unit in ((1e-3, "mA"), (1e-6, "uA"), (1e-9, "nA")):
        if peak >= scale:
            return scale, unit
    return 1e-9, "nA"


def plot(report: DeviceReport, path: str | os.PathLike) -> None:
    """Write ``report`` as a PNG at ``path``: the I-V loop (left), conductance against pulses (right).

    Uses matplotlib's object API on the Agg canvas (no pyplot state, no display), so it is safe
    in threads and headless runs. The distinguishable levels are the ticks on the right edge.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax_iv, ax_g = fig.subplots(1, 2)
    v, i = np.asarray(report.iv["voltage"]), np.asarray(report.iv["current"])
    scale, unit = _current_scale(i)
    if i.ndim == 1:
        ax_iv.plot(v, i / scale, lw=1.2, color="C0")
        ax_iv.plot(v[:1], i[:1] / scale, "o", color="C3", ms=4, label="start")
        ax_iv.legend(loc="upper left", fontsize=8)
    else:
        from matplotlib import colormaps

        colours = colormaps["viridis"](np.linspace(0, 0.9, len(i)))
        for row, colour in zip(i, colours, strict=True):
            ax_iv.plot(v, row / scale, lw=0.8, color=colour)
    ax_iv.axhline(0, color="0.6", lw=0.5)
    ax_iv.axvline(0, color="0.6", lw=0.5)
    ax_iv.set_xlabel("voltage (V)")
    ax_iv.set_ylabel(f"current ({unit})")
    ax_iv.set_title(f"{report.model}: I-V", fontsize=10)
    ax_iv.grid(alpha=0.3)

    g = np.asarray(report.conductance_vs_pulse) * 1e6
    n_up = report.n_potentiation
    pulses = np.arange(1, g.size + 1)
    ax_g.plot([0], [report.g_initial * 1e6], "o", color="0.4", ms=4, label="initial")
    if n_up:
        ax_g.plot(pulses[:n_up], g[:n_up], ".-", color="C2", lw=1, label="potentiation")
    if g.size > n_up:
        ax_g.plot(pulses[n_up:], g[n_up:], ".-", color="C3", lw=1, label="depression")
    for level in report.levels.conductances * 1e6:
        ax_g.axhline(level, xmin=0.985, xmax=1.0, color="k", lw=0.8)
    ax_g.set_xlabel("pulse number")
    ax_g.set_ylabel("conductance (uS)")
    ax_g.set_title(f"{report.model}: G after each pulse ({len(report.levels)} distinguishable levels, ticks)",
                   fontsize=10)
    ax_g.legend(loc="best", fontsize=8)
    ax_g.grid(alpha=0.3)
    fig.savefig(path, format="png", dpi=110)
