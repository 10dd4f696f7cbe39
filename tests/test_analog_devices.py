"""analog_models/devices: the compact SPICE memristors in ngspice and the parametric PCM / TiOx models.

Tests that run ngspice carry ``@pytest.mark.spice`` (each transient takes tens of
milliseconds); the parametric models' statistics are checked on seeded samples large enough
that the tolerances are several standard errors wide.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from analog_models import devices
from analog_models.devices import _spice, linear_ion_drift, pcm, tiox, vteam

spice = pytest.mark.spice


# -- HP linear ion drift ---------------------------------------------------------------------------
@spice
def test_hp_loop_is_pinched_with_positive_area():
    f = 1.0
    run = linear_ion_drift.sine_response(frequency=f)
    t, v, i = run["time"], run["voltage"], run["current"]
    peak = np.abs(i).max()
    assert peak > 1e-5  # a real current flows (1 V over ~10 kOhm)
    # both branches pass through the origin: the falling zero crossing (T/2) and the rising one (T)
    pinch = _spice.pinch_currents(t, i, f)
    assert pinch.size == 2
    assert np.all(np.abs(pinch) < 1e-6 * peak)
    # and it is a loop, not a line: both lobes enclose area, and the state moved
    lobes = _spice.loop_lobes(t, v, i, f)
    assert len(lobes) == 2 and min(lobes) > 0.05 * 1.0 * peak  # 1 V amplitude
    assert run["state"].max() - run["state"].min() > 0.1


@spice
def test_hp_loop_shrinks_at_higher_frequency():
    """The memristor fingerprint: the lobe area falls with frequency towards a straight line."""
    areas = []
    for f in (1.0, 10.0, 100.0):
        run = linear_ion_drift.sine_response(frequency=f)
        areas.append(sum(_spice.loop_lobes(run["time"], run["voltage"], run["current"], f)))
    assert areas[0] > 5 * areas[1] > 25 * areas[2] > 0


@spice
def test_joglekar_and_biolek_windows_differ():
    """Near a bound Joglekar's window slows the state both ways; Biolek's only towards the bound."""
    base = linear_ion_drift.LinearIonDriftParameters(p=1, x0=0.1)
    runs = {w: linear_ion_drift.sine_response(replace(base, window=w), amplitude=1.5, frequency=1.0)
            for w in ("joglekar", "biolek")}
    xj, xb = runs["joglekar"]["state"], runs["biolek"]["state"]
    # leaving the lower bound: f_J(0.1) = 0.36, f_B(0.1) = 0.99, so Biolek's state climbs further
    assert xb.max() > xj.max() + 0.05
    assert np.abs(np.interp(runs["joglekar"]["time"], runs["biolek"]["time"], xb) - xj).max() > 0.05


@spice
def test_hp_conductance_rises_with_positive_pulses_and_falls_with_negative():
    g, g0, _ = linear_ion_drift.pulse_response(n_up=8, n_down=8)
    assert np.all(np.diff(np.concatenate([[g0], g[:8]])) > 0)
    assert np.all(np.diff(g[7:]) < 0)
    p = linear_ion_drift.LinearIonDriftParameters()
    assert 1 / p.r_off <= g.min() and g.max() <= 1 / p.r_on


# -- VTEAM -----------------------------------------------------------------------------------------
@spice
def test_vteam_does_not_move_below_its_thresholds():
    p = vteam.VTEAMParameters(x0=0.5)
    assert p.v_on < -0.15 and 0.015 < p.v_off
    # pulses between v_on and v_off: nothing happens, to the last digit ngspice reports
    g, g0, waves = vteam.pulse_response(p, n_up=4, n_down=4, v_set=-0.15, t_set=10e-9, v_reset=0.015,
                                        t_reset=10e-9)
    assert np.abs(waves["state"] - 0.5).max() < 1e-9
    np.testing.assert_allclose(g, g0, rtol=1e-9)
    np.testing.assert_allclose(g0, 1 / vteam.resistance(0.5, p), rtol=1e-6)
    # just beyond them it does: set (negative) raises G, reset (positive) lowers it
    g, g0, _ = vteam.pulse_response(p, n_up=4, n_down=4, v_set=-0.25, t_set=1e-9, v_reset=0.5, t_reset=15e-9)
    assert g[3] > 1.05 * g0 and g[-1] < 0.95 * g[3]


def test_vteam_rate_is_zero_between_thresholds():
    p = vteam.VTEAMParameters()
    v = np.linspace(p.v_on, p.v_off, 101)
    assert np.all(vteam.state_rate(v, p) == 0)
    assert vteam.state_rate(2 * p.v_off, p) > 0 > vteam.state_rate(2 * p.v_on, p)
    # (v / v_off - 1)^alpha_off: at 3 v_off the rate is k_off 2^alpha_off / (w_off - w_on)
    assert math.isclose(vteam.state_rate(3 * p.v_off, p), p.k_off * 2**p.alpha_off / (p.w_off - p.w_on))


@spice
def test_vteam_loop_is_pinched():
    run = vteam.sine_response()
    pinch = _spice.pinch_currents(run["time"], run["current"], 10e6)
    assert np.all(np.abs(pinch) < 1e-6 * np.abs(run["current"]).max())
    assert -1e-2 < run["state"].min() and run["state"].max() < 1 + 1e-2  # the window holds x in [0, 1]


# -- PCM -------------------------------------------------------------------------------------------
def test_pcm_programming_noise_follows_the_polynomial():
    rng = np.random.default_rng(0)
    n = 200_000
    for w in (0.25, 0.5, 0.9):
        target = w * 25e-6
        g = pcm.program(np.full(n, target), rng)
        sigma = (-1.1731 * w**2 + 1.965 * w + 0.2635) * 1e-6
        assert math.isclose(pcm.programming_sigma(target), sigma, rel_tol=1e-12)
        assert abs(g.mean() - target) < 5 * sigma / math.sqrt(n)
        assert g.std() == pytest.approx(sigma, rel=0.01)  # standard error of the std: 0.16 %
    assert pcm.program(np.zeros(1000), rng).min() >= 0  # never negative


def test_pcm_drift_follows_a_power_law():
    p = pcm.PCMParameters()
    g = np.full(3, 10e-6)
    nu = np.array([0.03, 0.06, 0.1])
    for t in (100.0, 3600.0, 86400.0):
        np.testing.assert_allclose(pcm.drift(g, t, nu=nu), g * (t / p.t0) ** -nu, rtol=1e-12)
    np.testing.assert_array_equal(pcm.drift(g, 5.0, nu=nu), g)  # nothing before the first read at t0
    # drawn exponents: |N(mu_nu, sigma_nu)| for the device's w
    rng = np.random.default_rng(1)
    w = 0.05
    g = np.full(100_000, w * p.g_max)
    nu_hat = -np.log(pcm.drift(g, 3600.0, rng=rng) / g) / np.log(3600.0 / p.t0)
    mu = np.clip(-0.0155 * np.log(w) + 0.0244, 0.049, 0.1)
    sd = np.clip(-0.0125 * np.log(w) - 0.0059, 0.008, 0.045)
    # the folded normal's moments (1 % of these exponents would be negative unfolded)
    mean = sd * math.sqrt(2 / math.pi) * math.exp(-mu**2 / (2 * sd**2)) + mu * math.erf(mu / (sd * math.sqrt(2)))
    assert nu_hat.mean() == pytest.approx(mean, rel=0.005)
    assert nu_hat.std() == pytest.approx(math.sqrt(mu**2 + sd**2 - mean**2), rel=0.01)
    assert nu_hat.min() >= 0


def test_pcm_read_noise_is_one_over_f():
    p = pcm.PCMParameters()
    rng = np.random.default_rng(2)
    g0 = 0.5 * p.g_max
    q = min(0.0088 / 0.5**0.65, 0.2)
    for t in (1.0, 3600.0):
        sigma = g0 * q * math.sqrt(math.log((t + p.t_read) / p.t_read))
        g = pcm.read(np.full(100_000, g0), t, rng)
        assert g.std() == pytest.approx(sigma, rel=0.02)
    assert pcm.read_noise_sigma(g0, 3600.0) > pcm.read_noise_sigma(g0, 1.0)  # grows with log time


def test_pcm_updates_are_sixteenths_of_g_max():
    p = pcm.PCMParameters()
    assert p.step == 25e-6 / 16
    np.testing.assert_allclose(pcm.quantize([-1e-6, 0.7e-6, 0.8e-6, 12.6e-6, 30e-6]),
                               [0, 0, p.step, 8 * p.step, 25e-6])


# -- TiOx ------------------------------------------------------------------------------------------
def test_tiox_range_and_weight_mapping():
    p = tiox.TiOxParameters()
    assert p.g_min == 1 / 14109 and p.g_max == 1 / 6844
    assert tiox.weight(1 / 9217) == 0
    assert tiox.weight(p.g_max) == pytest.approx(1.0)
    assert tiox.weight(p.g_min) == pytest.approx(-1.0, abs=1e-3)  # R_c sits mid-range in conductance
    np.testing.assert_allclose(tiox.weight(tiox.conductance([-0.5, 0.0, 0.5])), [-0.5, 0.0, 0.5])


def test_tiox_stuck_and_reversed_fractions():
    p = tiox.TiOxParameters(stuck_fraction=0.1, reversed_fraction=0.2)
    n = 200_000
    factor, kind = tiox.draw_faults(n, np.random.default_rng(3), p)
    for frac, k in ((0.1, tiox.STUCK), (0.2, tiox.REVERSED), (0.7, tiox.NORMAL)):
        assert abs(np.mean(kind == k) - frac) < 4 * math.sqrt(frac * (1 - frac) / n)
    assert np.all(factor[kind == tiox.STUCK] == 0) and np.all(factor[kind == tiox.NORMAL] == 1)
    rev = factor[kind == tiox.REVERSED]
    assert rev.mean() == pytest.approx(-1.0, abs=0.01) and rev.std() == pytest.approx(0.5, rel=0.02)
    # an update: stuck devices keep their conductance exactly, reversed ones move the other way on average
    rng = np.random.default_rng(4)
    g = np.full(n, 1 / p.r_c)
    step = 2e-6
    g_new = tiox.update(g, step, factor, rng, p)
    np.testing.assert_array_equal(g_new[kind == tiox.STUCK], g[kind == tiox.STUCK])
    assert np.mean(g_new[kind == tiox.REVERSED] - g[kind == tiox.REVERSED]) == pytest.approx(-step, rel=0.05)
    assert np.mean(g_new[kind == tiox.NORMAL] - g[kind == tiox.NORMAL]) == pytest.approx(step, rel=0.02)
    assert g_new.min() >= p.g_min and g_new.max() <= p.g_max


def test_tiox_write_noise_is_one_percent():
    target = np.full(100_000, 1e-4)
    g = tiox.program(target, np.random.default_rng(5))
    assert (g / target - 1).std() == pytest.approx(0.01, rel=0.02)


# -- the registry ----------------------------------------------------------------------------------
def test_unknown_model_names_the_known_ones():
    with pytest.raises(ValueError, match="linear-ion-drift, vteam, pcm, tiox"):
        devices.get("hp")
    with pytest.raises(ValueError, match="unknown device model"):
        devices.characterize("memristor")
    with pytest.raises(ValueError, match="pcm or tiox"):
        devices.noise_model("vteam")


@pytest.mark.parametrize("make", [
    lambda: linear_ion_drift.LinearIonDriftParameters(window="prodromakis"),
    lambda: linear_ion_drift.LinearIonDriftParameters(r_off=50.0),
    lambda: linear_ion_drift.LinearIonDriftParameters(x0=1.5),
    lambda: vteam.VTEAMParameters(v_off=-0.1),
    lambda: vteam.VTEAMParameters(iv_relation="cubic"),
    lambda: pcm.PCMParameters(steps=0),
    lambda: tiox.TiOxParameters(stuck_fraction=0.6, reversed_fraction=0.6),
    lambda: tiox.TiOxParameters(r_c=20000.0),
])
def test_bad_parameters_are_refused(make):
    with pytest.raises(ValueError, match="must"):
        make()


def test_noise_model_feeds_the_simulators():
    rng = np.random.default_rng(6)
    noise = devices.noise_model("pcm")
    assert (noise.g_min, noise.g_max) == (0.0, 25e-6)
    g = noise.read(noise.drift(noise.program(np.full(1000, 10e-6), rng), 3600.0, rng), 3600.0, rng)
    assert g.shape == (1000,) and 0.5 * 10e-6 < g.mean() < 10e-6  # drifted down, noisy, positive
    noise = devices.noise_model("tiox")
    assert noise.drift is None and noise.read is None
    assert noise.g_min == pytest.approx(1 / 14109)


@pytest.mark.parametrize("name", [pytest.param(n, marks=spice) if m.spice else n for n, m in devices.MODELS.items()])
def test_characterize_every_model(name, tmp_path):
    report = devices.characterize(name, seed=0)
    figures = report.figures()
    json.dumps(figures, allow_nan=False)  # JSON-able, every number finite
    assert figures["model"] == name and figures["n_levels"] >= 2
    assert all(math.isfinite(v) for v in figures.values() if isinstance(v, float))
    assert np.all(np.isfinite(report.conductance_vs_pulse)) and np.all(report.conductance_vs_pulse >= 0)
    assert np.all(np.isfinite(report.iv["voltage"])) and np.all(np.isfinite(report.iv["current"]))
    assert report.levels.method and np.all(np.diff(report.levels.conductances) > 0)
    # potentiation raises the conductance overall, depression lowers it
    up = report.conductance_vs_pulse[report.n_potentiation - 1]
    assert up > report.g_initial and report.conductance_vs_pulse[-1] < up
    png = tmp_path / "iv.png"
    devices.plot(report, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_parametric_reports_are_reproducible():
    for name in ("pcm", "tiox"):
        a, b = devices.characterize(name, seed=7).figures(), devices.characterize(name, seed=7).figures()
        assert a == b
        assert devices.characterize(name, seed=8).figures() != a


def test_distinguishable_levels():
    # +-2 sigma bands: 0 and 1 overlap (gap 1 < 2 (0.3 + 0.3)), 0 and 2 do not
    kept = devices.distinguishable_levels([0.0, 1.0, 2.0, 3.5], [0.3, 0.3, 0.3, 0.3])
    np.testing.assert_array_equal(kept, [0, 2, 3])
    np.testing.assert_array_equal(devices.distinguishable_levels([3.0, 1.0, 1.05, 2.0], min_gap=0.1), [1, 3, 0])
