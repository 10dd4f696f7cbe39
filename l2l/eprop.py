"""e-prop: the inner loop's weight update from one demonstration, computed from the chip's own signals.

e-prop (Bellec et al. 2020, "A solution to the learning dilemma for recurrent networks of
spiking neurons") approximates the loss gradient by a sum over time of a *learning signal*
``L_k(t)`` times an *eligibility trace* ``e_rk(t)`` that each synapse computes locally, forward
in time. Everything here is computed from what the chip recorded in the demonstration run
(``ChipSimulator.run(record_spikes=True)``: every crossbar row's payload ``x_r(t)``, every
neuron's membrane ``v_k(t)`` and threshold adaptation ``b_k(t)``), in chip time and in weight
levels, with the neuron update of ``docs/architecture.md``::

    v_k(t) = alpha_k v_k(t-1) - theta_k s_k(t-1) + sum_r w_rk x_r(t)     (subtract reset)
    b_k(t) = rho_k b_k(t-1) + a_k s_k(t-1),    s_k(t) = [v_k(t) > theta_k + b_k(t)]

**Eligibility** (LIF: ``a_k = 0``; ALIF as in the paper's LSNN), with the pseudo-derivative
``psi_k(t) = gamma / theta_k max(0, 1 - |v_k(t) - theta_k - b_k(t)| / theta_k)``::

    eps_v(t) = alpha_k eps_v(t-1) + x_r(t)
    eps_a(t) = rho_k eps_a(t-1) + a_k psi_k(t-1) (eps_v(t-1) - eps_a(t-1))
    e_rk(t)  = psi_k(t) (eps_v(t) - eps_a(t))

and the trace is low-pass filtered with the readout's decay ``kappa`` (``F_kappa``), since a
spike's effect on the leaky readout lasts.

**Learning signals** from the demonstration's error ``err_o(t) = y_o(t) - y*_o(t)`` at the
readouts (in the outputs' units): ``L_k(t) = sum_o B_ko err_o(t + 1)`` for a spiking neuron
(a spike reaches the readout one chip step later) through feedback weights ``B`` (here
meta-learned, as in "natural e-prop"); a readout's own weights get the exact gradient of the
squared error, ``err_o(t) c_o eps_v(t)`` (``c_o``: the output's value scale).

The returned gradient is ``sum_t L_k(t) e_rk(t)`` per synapse, per task: the update a chip's
learning circuit would accumulate over the demonstration and then write.
"""

from __future__ import annotations

import numpy as np

from sim.chip import ChipSimulator

__all__ = ["gradient"]


def _level_units(sim: ChipSimulator):
    """Decays as fractions, thresholds, adaptation and the state scale in weight levels."""
    p = sim.params
    if sim.image.target == "digital":
        ar = sim.image.arithmetic
        one, unit = float(1 << ar.decay_bits), float(1 << ar.frac_bits)
    else:
        one = unit = 1.0
    return p["alpha"] / one, p["alpha_adapt"] / one, p["threshold"] / unit, p["adapt"] / unit, unit


def gradient(sim: ChipSimulator, result, rho: np.ndarray, k: np.ndarray, error: np.ndarray,
             feedback: np.ndarray | None = None, *, gamma: float = 0.3) -> np.ndarray:
    """e-prop gradient ``[tasks, synapses]`` (loss per weight level) for synapses at rows ``rho``, neurons ``k``.

    ``result``: the recorded demonstration run, either one sample (every task saw the same
    network before learning: the arm) or one sample per task (a batch of demonstrations).
    ``error``: ``[tasks, T, n_out]`` output minus target, network time, outputs in the image's
    order. ``feedback``: ``B``, ``[K, n_out]`` per simulator neuron (readout rows ignored; None
    when only readout synapses are asked for).
    """
    image = sim.image
    rows = result.spikes["rows"]                                   # [Tc, M, n_rows]
    Tc, M = rows.shape[:2]
    tasks, T, n_out = error.shape
    if M not in (1, tasks):
        raise ValueError(f"the demonstration run has {M} samples: expected 1 or one per task ({tasks})")
    outputs = image.meta["outputs"]
    out_k = np.concatenate([sim.neurons(o["population"]) for o in outputs])
    out_scale = np.concatenate([image.arrays[f"output/{o['name']}/value_scale"] for o in outputs])
    latency = np.concatenate([np.full(sim.neurons(o["population"]).size, int(o["latency"])) for o in outputs])
    if n_out != out_k.size:
        raise ValueError(f"error has {n_out} outputs, the image has {out_k.size}")
    # error in chip time: output o's network step t is chip step t + latency_o
    err = np.zeros((tasks, Tc, n_out))
    for o in range(n_out):
        err[:, latency[o]:latency[o] + T, o] = error[:, :, o]

    # Only the rows and neurons of the synapses asked for.
    r_used, r_of = np.unique(rho, return_inverse=True)
    k_used, k_of = np.unique(k, return_inverse=True)
    alpha, rho_a, theta, adapt, unit = _level_units(sim)
    kappa = float(np.mean(alpha[out_k]))
    alpha, rho_a, theta, adapt = alpha[k_used], rho_a[k_used], theta[k_used], adapt[k_used]
    spiking = sim.spiking[k_used]
    x = rows[:, :, r_used].astype(np.float64)                      # [Tc, M, R']
    v = result.membrane["chip"][:, :, k_used] / unit               # [Tc, M, K']
    b = result.membrane["adaptation"][:, :, k_used] / unit
    th = np.where(spiking, theta, 1.0)  # readouts have no threshold
    psi = np.where(spiking, gamma / th * np.maximum(0.0, 1.0 - np.abs(v - th - b) / th), 0.0)
    shape = (M, r_used.size, k_used.size)
    eps_v, eps_a, trace = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    elig = np.empty((Tc, *shape))
    psi_prev = np.zeros((M, 1, k_used.size))
    for t in range(Tc):
        eps_a = rho_a * eps_a + adapt * psi_prev * (eps_v - eps_a)
        eps_v = alpha * eps_v + x[t][:, :, None]
        # spiking neurons: filtered e-prop trace; readouts: d v / d w itself
        psi_t = psi[t][:, None, :]
        trace = np.where(spiking, kappa * trace + psi_t * (eps_v - eps_a), eps_v)
        elig[t] = trace
        psi_prev = psi_t
    # learning signal per neuron: feedback of the next step's error; readouts: their own error
    signal = np.zeros((tasks, Tc, sim.addr.size))
    if feedback is not None:
        signal[:, :-1] = err[:, 1:] @ np.asarray(feedback, dtype=np.float64).T
    signal[:, :, out_k] = err * out_scale
    signal = signal[:, :, k_used]
    # G[task, r, k] = sum_t signal[task, t, k] elig[t, task (or 0), r, k]
    if M == 1:
        G = np.matmul(signal.transpose(2, 0, 1), elig[:, 0].transpose(2, 0, 1)).transpose(1, 2, 0)
    else:
        G = np.einsum("btk,tbrk->brk", signal, elig, optimize=True)
    return G[:, r_of, k_of]
