"""Energy of a memristive chip's analog operations, measured in ngspice, and per inference.

Two figures come from SPICE simulations (``small analog characterize`` measures them into the
calibration file's ``energy``):

``read_J_per_S``
    the energy one read pulse delivers per siemens of device conductance: a device pair (G+ and
    G-, 10 uS each) between a row driver that pulses to ``v_read`` for ``t_pulse`` and two
    virtual-ground columns, integrated as ``-∫ V I dt`` of the driver in an ngspice transient,
    divided by G+ + G-. A row event pulses every device pair of its row, so it costs
    ``read_J_per_S * sum_c (G+_rc + G-_rc)`` (for resistors the energy is linear in G).
``spike_J``
    the energy the input delivers to the analog LIF neuron (``analog_models.neuron``) per output
    spike at twice its rheobase, ``∫ V_mem I_in dt`` over the simulation divided by the spikes.

Assumptions (reported next to every estimate): the digital controller, router and host
interface are not counted; nor are the column sense amplifiers (ideal virtual grounds), the
comparator, latch and reset switch (behavioural elements in the neuron circuit) or wire losses;
devices hold their programmed conductances (``G_min + level dG``, stuck devices at their level).
"""

from __future__ import annotations

import numpy as np

V_READ = 0.2
T_PULSE = 10e-9
ASSUMPTIONS = [
    "row event: one read pulse of t_pulse at v_read through every device pair of the row into ideal virtual grounds",
    "per-pulse energy from an ngspice transient of a device pair, linear in the row's total conductance",
    "neuron: energy the input delivers to the analog LIF circuit per spike at 2x rheobase (ngspice)",
    "not counted: digital controller, router, host interface, sense amplifiers, comparator/latch/reset switch, wires",
    "devices at their programmed conductances (no noise or drift)",
]


def read_energy_per_siemens(v_read: float = V_READ, t_pulse: float = T_PULSE, g: float = 10e-6) -> float:
    """Joules per siemens of one read pulse, from an ngspice transient of a device pair."""
    from .spice import simulate

    edge = t_pulse / 100
    deck = "\n".join([
        "read pulse through one device pair",
        f"Vrow row 0 PULSE(0 {v_read} {edge} {edge} {edge} {t_pulse} 1)",
        f"Rpos row cpos {1 / g}", f"Rneg row cneg {1 / g}",
        "Vsp cpos 0 0", "Vsn cneg 0 0",
    ])
    r = simulate(deck, f".tran {t_pulse / 1000} {t_pulse + 4 * edge}", options="reltol=1e-6")
    t, v, i = r["time"], r["row"], r["vrow#branch"]
    energy = -np.trapezoid(v * i, t)  # a source's branch current flows into its + node
    return float(energy / (2 * g))


def spike_energy(params=None) -> float:
    """Joules the input delivers to the analog LIF circuit per spike, at twice its rheobase."""
    from .neuron import NeuronParams, simulate_neuron

    p = params or NeuronParams()
    i_in = 2 * p.rheobase
    run = simulate_neuron(p, i_in, t_end=20 * (p.t_ref + p.tau))
    spikes = len(run["spikes"])
    if not spikes:
        raise ValueError("the neuron did not spike at twice its rheobase")
    return float(np.trapezoid(np.clip(run["v_mem"], 0, None) * run["i_in"], run["time"]) / spikes)


def measure(v_read: float = V_READ, t_pulse: float = T_PULSE, neuron_params=None) -> dict:
    """The calibration file's ``energy``: both figures, the pulse, and the assumptions."""
    return {"v_read_V": v_read, "t_pulse_s": t_pulse, "read_J_per_S": read_energy_per_siemens(v_read, t_pulse),
            "spike_J": spike_energy(neuron_params), "assumptions": ASSUMPTIONS}


def per_inference(image, row_events: np.ndarray, spikes: int, samples: int, energy: dict) -> dict:
    """Estimate of one inference's analog energy on a memristive image.

    ``row_events`` ``[tiles * rows]``: each row's events over the run (``ChipSimulator.row_events``),
    ``spikes``: neuron spikes over the run, ``samples``: how many inputs the run had.
    """
    g_pos, g_neg = image.conductances()
    row_g = (g_pos + g_neg).sum(axis=2).reshape(-1)  # siemens per row
    read_per_tile = (row_events * row_g).reshape(image.n_tiles, -1).sum(axis=1) * energy["read_J_per_S"] / samples
    read = float(read_per_tile.sum())
    spike = spikes * energy["spike_J"] / samples
    events = float(row_events.sum()) / samples
    return {"pJ_per_inference": (read + spike) * 1e12, "read_pJ": read * 1e12, "neuron_pJ": spike * 1e12,
            "read_pJ_per_tile": [float(v) * 1e12 for v in read_per_tile],
            "row_events_per_inference": events, "spikes_per_inference": spikes / samples,
            "pJ_per_row_event": read * 1e12 / events if events else 0.0,
            "pJ_per_synaptic_event": energy["read_J_per_S"] * float(np.mean(row_g)) / image.cols * 1e12,
            "pJ_per_spike": energy["spike_J"] * 1e12, "v_read_V": energy["v_read_V"], "t_pulse_s": energy["t_pulse_s"],
            # the figures used, so that `small report` estimates with the build's calibration too
            "read_J_per_S": energy["read_J_per_S"], "spike_J": energy["spike_J"],
            "assumptions": energy["assumptions"]}
