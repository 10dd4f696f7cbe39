"""The analog LIF neuron (analog_models/neuron.py): the ngspice circuit against the RC formula,
and the discrete LIF fitted to it against both the circuit and docs/semantics.md.

Tolerances: the circuit's f-I curve within 3 % of the RC formula (measured: 0.1 %); the fitted
discrete LIF at dt = 0.1 ms within 5 % of the circuit's steady rates (measured: 1.4 % at most at
1.2-5 rheobases; a whole number of steps per interval bounds it by about 1 step / interval).
"""

import math

import numpy as np
import pytest

from analog_models import neuron
from analog_models.neuron import LifFit, NeuronParams, analytic_rate, run_lif

P = NeuronParams()


def lif_fit(dt=1e-4, refractory=9, v_threshold=P.v_th) -> LifFit:
    alpha = math.exp(-dt / P.tau)
    return LifFit(dt=dt, tau=P.tau, c_mem=P.c_mem, alpha=alpha, gain=(1 - alpha) * P.tau / dt,
                  v_threshold=v_threshold, v_reset=0.0, refractory=refractory, t_dead=(refractory + 0.5) * dt,
                  refractory_residual=0.0, rheobase=v_threshold / P.r_leak)


# -- no ngspice ------------------------------------------------------------------------------------
@pytest.mark.parametrize("change, word", [
    ({"c_mem": -1e-12}, "c_mem"), ({"c_mem": 0.0}, "c_mem"), ({"r_leak": float("nan")}, "r_leak"),
    ({"v_th": 0.0}, "v_reset < v_th"), ({"v_th": 2.0}, "v_th < vdd"), ({"t_ref": -1e-3}, "t_ref"),
    ({"t_switch": 1e-4}, "t_switch"), ({"r_on": 1e9}, "r_on"), ({"comparator_gain": True}, "comparator_gain"),
])
def test_invalid_parameters_are_rejected_naming_the_field(change, word):
    with pytest.raises(ValueError, match=word):
        NeuronParams(**change)


@pytest.mark.parametrize("i_in, word", [
    (1e-3, "reset switch"), (np.ones((3, 2)) * 1e-10, "1-D"), ([1e-10, float("inf")], "finite"), (True, "amperes"),
])
def test_invalid_inputs_are_rejected_before_ngspice(i_in, word):
    with pytest.raises(ValueError, match=word):
        neuron.simulate_neuron(P, i_in, 1e-3)


def test_analytic_rate_is_zero_up_to_the_rheobase_and_the_rc_formula_above():
    rates = analytic_rate(P, [0.0, 0.5 * P.rheobase, P.rheobase, 2 * P.rheobase])
    assert rates[:3].tolist() == [0.0, 0.0, 0.0]
    assert rates[3] == pytest.approx(1 / (P.t_ref + P.tau * math.log(2)))


def test_run_lif_is_the_reference_simulators_lif():
    """The fitted neuron, as compiler.ir.LIF parameters, runs identically in sim/reference.py."""
    from compiler.ir import LIF, Input, Network, Population, Projection
    from sim.reference import simulate

    fit = lif_fit(refractory=3)
    currents = P.rheobase * np.random.default_rng(1).uniform(0, 4, 400)
    v, s = run_lif(fit, currents)
    net = Network(inputs=[Input("x", (1,))], populations=[Population("n", 1, LIF(**fit.lif_params()))],
                  projections=[Projection("x", "n", np.ones((1, 1)))], outputs={"y": "n"})
    ref = simulate(net, fit.x(currents).reshape(-1, 1, 1), record_membrane=True, dtype=np.float64)
    assert s.sum() >= 5
    np.testing.assert_array_equal(ref.outputs["y"][:, 0, 0], s)
    np.testing.assert_allclose(ref.membrane["n"][:, 0, 0], v, rtol=1e-12, atol=1e-15)
    # an input counted in other units scales the gain only
    assert fit.lif_params(i_unit=1e-9)["gain"] == pytest.approx(fit.gain * 1e-9 * fit.dt / fit.c_mem)


# -- ngspice ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def report():
    return neuron.characterize_neuron()


@pytest.mark.spice
def test_fires_periodically_above_rheobase_and_not_below():
    above = neuron.simulate_neuron(P, 2 * P.rheobase, 20e-3)
    isi = np.diff(above["spikes"])
    assert len(above["spikes"]) >= 4
    assert np.ptp(isi) < 1e-6  # periodic to a microsecond
    assert isi.mean() == pytest.approx(1 / analytic_rate(P, [2 * P.rheobase])[0], rel=0.01)
    assert above["v_mem"].max() < P.v_th + 0.01  # reset right at the threshold

    below = neuron.simulate_neuron(P, 0.95 * P.rheobase, 10 * P.tau)
    assert len(below["spikes"]) == 0
    assert below["v_mem"][-1] == pytest.approx(0.95 * P.v_th, rel=1e-3)  # settles at I R


@pytest.mark.spice
def test_fi_curve_increases_and_follows_the_rc_formula(report):
    rates, analytic = report.rates, report.rates_analytic
    firing = report.currents > 1.1 * P.rheobase
    assert np.all(rates[report.currents <= P.rheobase] == 0)
    assert np.all(np.diff(rates[firing]) > 0)
    np.testing.assert_allclose(rates[firing], analytic[firing], rtol=0.03)


@pytest.mark.spice
def test_circuit_membrane_is_the_discrete_membrane_at_step_ends():
    """With one current a step the RC membrane is exactly alpha v + gain x at every step's end."""
    dt = 1e-4
    currents = P.rheobase * np.random.default_rng(2).uniform(0, 1.5, 60)
    circuit = neuron.simulate_neuron(P, currents, dt=dt)
    v, s = run_lif(lif_fit(dt), currents)
    before = (np.arange(60) + 1) * dt < (circuit["spikes"][0] if len(circuit["spikes"]) else np.inf)
    assert before.sum() > 10
    np.testing.assert_allclose(np.interp((np.arange(60) + 1)[before] * dt, circuit["time"], circuit["v_mem"]),
                               v[before], atol=1e-3)


@pytest.mark.spice
def test_fitted_lif_reproduces_the_circuit():
    fit = neuron.fit_lif(P, 1e-4)
    assert fit.alpha == pytest.approx(math.exp(-0.1 / 5))
    assert fit.v_threshold == pytest.approx(P.v_th, rel=0.01)
    assert fit.t_dead == pytest.approx(P.t_ref, rel=0.02)
    assert fit.refractory == round(fit.t_dead / fit.dt - 0.5)
    assert fit.rate_error_max < 0.05
    assert fit.count_error <= 0.1 and fit.spikes_circuit >= 10
    assert set(fit.to_dict()) >= {"alpha", "gain", "v_threshold", "refractory", "rate_error_max",
                                  "count_error", "spike_time_error_mean"}


@pytest.mark.spice
def test_refractory_period_trimmed_to_whole_steps_aligns_spike_times():
    """With t_dead = (refractory + 1/2) dt the discrete spikes land in the circuit's steps."""
    fit = neuron.fit_lif(NeuronParams(t_ref=1.05e-3), 1e-4)
    assert abs(fit.refractory_residual) < 0.1
    assert fit.count_error <= 0.05
    assert fit.coincidence_fraction >= 0.8
    assert fit.spike_time_error_mean < fit.dt


@pytest.mark.spice
def test_plot_writes_a_png_and_figures_are_json(report, tmp_path):
    import json

    path = tmp_path / "neuron.png"
    neuron.plot(report, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    figures = json.loads(json.dumps(report.figures()))
    assert figures["fi_max_rel_error_vs_analytic"] < 0.03
    assert figures["fit"]["refractory"] == report.fit.refractory
    assert figures["interval_s"] == pytest.approx(figures["interval_analytic_s"], rel=0.01)
