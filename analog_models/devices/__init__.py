"""Memristive device models: compact SPICE models and parametric (statistical) models.

==================  =========================================================  ==============
name                model                                                      runs in
==================  =========================================================  ==============
linear-ion-drift    HP TiO2, Strukov et al. 2008; Joglekar / Biolek windows    ngspice
vteam               VTEAM, Kvatinsky et al. 2015 (voltage thresholds)          ngspice
pcm                 IBM PCM: programming noise, drift, 1/f read noise          numpy
tiox                TiOx RRAM: 1 % write noise, stuck and reversed devices     numpy
==================  =========================================================  ==============

One call characterises any of them (``small analog device --model M`` uses it)::

    report = characterize("vteam")          # DeviceReport: iv, conductance_vs_pulse, levels
    report.figures()                        # JSON-able summary
    plot(report, "iv.png")                  # I-V and G-vs-pulse side by side

:func:`noise_model` gives the simulators a parametric model's non-idealities as plain
functions (programming, drift, read noise). Nothing here starts ngspice or imports PySpice
at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import linear_ion_drift, pcm, tiox, vteam
from .report import DeviceReport, Levels, distinguishable_levels, plot

__all__ = ["MODELS", "DeviceModel", "DeviceNoise", "DeviceReport", "Levels", "characterize", "distinguishable_levels",
           "get", "linear_ion_drift", "noise_model", "pcm", "plot", "tiox", "vteam"]


@dataclass(frozen=True)
class DeviceModel:
    """One entry of the registry: a device model and how to characterise it."""

    name: str
    """Registry name, as the command line spells it (``"linear-ion-drift"``)."""
    description: str
    """What the model is, one line, with its source."""
    parameters: type
    """The model's parameter dataclass; its defaults are the published set."""
    characterize: Callable[..., DeviceReport]
    """``characterize(params=None, *, seed=0) -> DeviceReport``."""
    spice: bool
    """True when characterising runs ngspice (a compact SPICE model)."""


MODELS: dict[str, DeviceModel] = {
    "linear-ion-drift": DeviceModel(
        "linear-ion-drift", "HP TiO2 linear ion drift memristor (Strukov et al., Nature 2008), Joglekar/Biolek windows",
        linear_ion_drift.LinearIonDriftParameters, linear_ion_drift.characterize, spice=True),
    "vteam": DeviceModel(
        "vteam", "VTEAM voltage-threshold memristor (Kvatinsky et al., IEEE TCAS-II 2015)",
        vteam.VTEAMParameters, vteam.characterize, spice=True),
    "pcm": DeviceModel(
        "pcm", "IBM phase-change memory statistical model (Nandakumar et al. 2019, Joshi et al. 2020)",
        pcm.PCMParameters, pcm.characterize, spice=False),
    "tiox": DeviceModel(
        "tiox", "TiOx RRAM with stuck and reversed devices (Kraisnikovic et al., UCNC 2023)",
        tiox.TiOxParameters, tiox.characterize, spice=False),
}


def get(name: str) -> DeviceModel:
    """The registry entry of model ``name``; ``ValueError`` naming the known models otherwise."""
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown device model {name!r}: use one of {', '.join(MODELS)}") from None


def characterize(name: str, *, seed: int = 0, params=None) -> DeviceReport:
    """Characterise device model ``name`` with its published parameters (or ``params``).

    The SPICE models (``linear-ion-drift``, ``vteam``) run three short ngspice transients
    (a sine at f and 10 f, a pulse train); the parametric ones (``pcm``, ``tiox``) draw their
    noise from ``np.random.default_rng(seed)``. Raises ``ValueError`` for an unknown name or bad
    parameters and ``analog_models.spice.SpiceError`` when ngspice fails.
    """
    model = get(name)
    if params is not None and not isinstance(params, model.parameters):
        raise ValueError(f"params must be a {model.parameters.__name__} for model {name!r}, not "
                         f"{type(params).__name__}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a whole number >= 0, not {seed!r}")
    return model.characterize(params, seed=seed)


@dataclass(frozen=True)
class DeviceNoise:
    """A parametric device's non-idealities as functions, for the device-level simulators.

    Conductances in siemens, times in seconds since programming; every function takes the
    caller's ``np.random.Generator``.
    """

    name: str
    """Registry name (``"pcm"``)."""
    g_min: float
    """Lowest programmable conductance (S)."""
    g_max: float
    """Highest programmable conductance (S)."""
    program: Callable | None = None
    """``program(g_target, rng) -> g``: programming (write) noise; None: exact."""
    drift: Callable | None = None
    """``drift(g, t, rng, nu=None) -> g``: conductance t seconds after programming (``t`` a number or an
    array like ``g``); ``nu``: the devices' drift exponents, drawn from ``rng`` if None; None: no drift."""
    exponents: Callable | None = None
    """``exponents(g_target, rng) -> nu``: one drift exponent per device programmed towards ``g_target``
    (devices keep theirs while they hold their state); None: no drift."""
    read: Callable | None = None
    """``read(g, t, rng) -> g``: one read's noise t seconds after programming; None: noise-free reads."""


def noise_model(name: str, params=None) -> DeviceNoise:
    """The non-idealities of parametric device ``name`` (``pcm`` or ``tiox``) as a :class:`DeviceNoise`.

    PCM: programming noise sigma_p(w), drift with per-device exponents drawn for the programmed
    conductance (no drift before ``t0`` = 20 s), 1/f read noise; range [0, 25 uS].
    TiOx: 1 % write noise, no drift, noise-free reads; range [1/14,109, 1/6,844] S. Faults
    (stuck, reversed devices) are the simulator's to place (:func:`tiox.draw_faults` draws them).
    """
    model = get(name)
    if model.spice:
        raise ValueError(f"device model {name!r} is a SPICE model with no parametric noise model: use "
                         f"{' or '.join(n for n, m in MODELS.items() if not m.spice)}")
    p = params or model.parameters()
    if name == "pcm":
        return DeviceNoise(
            "pcm", 0.0, p.g_max,
            program=lambda g, rng: pcm.program(g, rng, p),
            drift=lambda g, t, rng, nu=None: pcm.drift(g, t, nu=nu, rng=rng, params=p),
            exponents=lambda g, rng: pcm.drift_exponents(g, rng, p),
            read=lambda g, t, rng: pcm.read(g, t, rng, p))
    return DeviceNoise("tiox", p.g_min, p.g_max, program=lambda g, rng: tiox.program(g, rng, p))
