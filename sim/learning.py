"""e-prop in integers: the weight update a learning chip computes, bit for bit.

``l2l/eprop.py`` computes the e-prop gradient in floats from a demonstration the chip recorded.
This module is the same rule as a digital learning circuit computes it, every quantity an
integer of a stated width, so that the RTL can be proven equal to it (``docs/architecture.md``,
"On-chip learning"). It runs on the signals the digital twin records (``ChipSimulator.run(...,
record_spikes=True)``: each row's payload ``x_r(t)``, each column's membrane ``v_k(t)`` and
adaptation ``b_k(t)`` in state units after chip step ``t``) and the target events the host
streams (each readout's wanted membrane in state units, per chip step).

Per chip step ``t``, with ``mulr`` and ``sat`` of ``docs/architecture.md`` (``A`` = the image's
``decay_bits``)::

    row trace    xb_ra(t)  = sat_T(mulr(xb_ra(t-1), alpha_a) + (x_r(t) << XF))
    derivative   h_k(t)    = max(0, theta_k - |v_k(t) - theta_k - b_k(t)|)
                 psi_k(t)  = (h_k(t) * inv_k) >> (IF - PF)       inv_k = round(2^IF / theta_k)
    eligibility  e_s(t)    = sat_E(mulr(e_s(t-1), kappa) + ((psi_k(t) * xb_ra(t)) >> PF))   spiking k
                 e_s(t)    = xb_ra(t)                                                       readout k
    error        err_o(t)  = v_o(t) - target_o(t)                    (0 where no target is given)
    signal       L_k(t)    = sat_L((sum_o B_ko err_o(t + 1)) >> SS)  spiking k (0 at the last step)
                 L_o(t)    = sat_L(err_o(t) >> SO)                   readout o
    accumulator  acc_s     = sat_C(acc_s + L_k(t) * e_s(t))
    update       d_s       = (-acc_s * mant_s + r_s) >> shift_s,     r_s = 16 LFSR bits aligned to shift_s
                 w_s       = clip(w_s + d_s, -(L-1), L-1)            (only changed weights are written)

for each plastic synapse ``s`` from row ``r`` to column ``k``; ``a`` is the decay ``alpha_k`` of
the synapse's column, so a row keeps one trace per distinct decay among its plastic targets
(one per population in practice: exact, not an approximation). ``kappa`` is the readouts' decay.

Departures from the float rule, by design of the hardware: the ALIF adaptation term of the
eligibility (``eps_a``, a per-synapse state that depends on the neuron's past derivatives) is
left out; ``psi`` is ``max(0, 1 - |v - theta - b| / theta)`` in ``PF`` fraction bits, the
factor ``gamma / theta`` going into the learning rate; the feedback weights ``B`` hold the
readouts' value scales; the rate of a synapse is a ``16``-bit mantissa and a shift; the update
rounds stochastically with a 16-bit LFSR (``x^16 + x^14 + x^13 + x^11 + 1``, Galois form,
advanced once per synapse in the order given, one sequence per task). :func:`float_units`
gives each synapse's factor from these integers to the float gradient, so that the two rules
can be compared (``bench/learning.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.digital import DigitalSimulator

__all__ = ["LearningFormat", "lfsr", "integer_accumulators", "integer_update", "quantize_rates", "quantize_feedback",
           "signal_shifts", "float_units", "target_events", "eprop_update"]

LFSR_TAPS = 0xB400  # x^16 + x^14 + x^13 + x^11 + 1, Galois form
RAND_BITS = 16


@dataclass(frozen=True)
class LearningFormat:
    """Widths and fraction bits of the learning circuit (the learning block's number format)."""

    trace_frac: int = 8
    """XF: fraction bits of a row trace (a payload of 1 adds ``2^XF``)."""
    trace_bits: int = 20
    """T: width of a row trace (signed, saturating)."""
    psi_frac: int = 8
    """PF: fraction bits of the pseudo-derivative (``psi`` lies in ``[0, 2^PF]``)."""
    inv_frac: int = 16
    """IF: fraction bits of a column's ``1 / theta`` (``theta`` in state units)."""
    elig_bits: int = 24
    """E: width of a synapse's filtered eligibility (signed, saturating)."""
    feedback_bits: int = 12
    """Width of a feedback weight (signed, saturating)."""
    signal_bits: int = 16
    """Width of a learning signal ``L`` (signed, saturating), after the signal shift."""
    acc_bits: int = 40
    """C: width of a synapse's update accumulator (signed, saturating)."""
    mant_bits: int = 16
    """Width of a synapse's rate mantissa (unsigned)."""
    lfsr_seed: int = 0xACE1
    """Initial LFSR state (non-zero, 16 bits)."""


def _sat(x: np.ndarray, bits: int) -> np.ndarray:
    hi = (1 << (bits - 1)) - 1
    return np.clip(x, -hi - 1, hi)


def lfsr(n: int, seed: int = 0xACE1) -> np.ndarray:
    """The first ``n`` states after ``seed`` of the 16-bit Galois LFSR (one step per synapse)."""
    if not 0 < seed < 1 << RAND_BITS:
        raise ValueError(f"the LFSR seed must be a non-zero 16-bit number, not {seed}")
    out = np.empty(n, dtype=np.int64)
    s = seed
    for i in range(n):
        s = (s >> 1) ^ (LFSR_TAPS if s & 1 else 0)
        out[i] = s
    return out


def _signals(sim: DigitalSimulator, result, rho: np.ndarray, k: np.ndarray, target: np.ndarray,
             fmt: LearningFormat):
    """Row traces, derivatives and errors of a demonstration (see the module docstring)."""
    x = result.spikes["rows"].astype(np.int64)                     # [Tc, M, rows]
    v = result.membrane["chip"].astype(np.int64)                   # [Tc, M, K]
    b = result.membrane["adaptation"].astype(np.int64)
    Tc, M = x.shape[:2]
    alpha = sim.params["alpha"].astype(np.int64)
    theta = sim.params["threshold"].astype(np.int64)
    # one trace per (row, decay of its plastic column)
    keys = np.stack([rho, alpha[k]], axis=1)
    pairs, trace_of = np.unique(keys, axis=0, return_inverse=True)
    xr = x[:, :, pairs[:, 0]]                                      # [Tc, M, P]
    xb = np.zeros((Tc, M, len(pairs)), dtype=np.int64)
    prev = np.zeros((M, len(pairs)), dtype=np.int64)
    for t in range(Tc):
        prev = _sat(sim._mulr(prev, pairs[:, 1]) + (xr[t] << fmt.trace_frac), fmt.trace_bits)
        xb[t] = prev
    # pseudo-derivative of every column (0 for readouts, which do not use it)
    safe = np.where(sim.spiking & (theta > 0), theta, 1)
    inv = np.rint((1 << fmt.inv_frac) / safe).astype(np.int64)
    h = np.maximum(0, theta - np.abs(v - theta - b))
    psi = np.where(sim.spiking & (theta > 0), (h * inv) >> (fmt.inv_frac - fmt.psi_frac), 0)
    # errors in chip time: output o's network step t is chip step t + latency_o
    outputs = _readouts(sim)
    out_k = np.concatenate([sim.neurons(o["population"]) for o in outputs] or [[]]).astype(np.int64)
    latency = np.concatenate([np.full(sim.neurons(o["population"]).size, int(o["latency"])) for o in outputs] or [[]])
    tasks, T, n_out = target.shape
    if n_out != out_k.size:
        raise ValueError(f"targets have {n_out} outputs, the image has {out_k.size}")
    if M not in (1, tasks):
        raise ValueError(f"the demonstration run has {M} samples: expected 1 or one per task ({tasks})")
    err = np.zeros((tasks, Tc, n_out), dtype=np.int64)
    for o in range(n_out):
        lo, hi = latency[o], min(Tc, latency[o] + T)
        vo = v[lo:hi, :, out_k[o]].T                               # [M, steps]
        err[:, lo:hi, o] = vo - target[:, : hi - lo, o]
    return xb, trace_of, psi, err, out_k


def integer_accumulators(sim: DigitalSimulator, result, rho: np.ndarray, k: np.ndarray, target: np.ndarray,
                         feedback: np.ndarray, shifts: tuple[int, int] = (0, 0),
                         fmt: LearningFormat = LearningFormat()) -> np.ndarray:
    """Every plastic synapse's accumulator ``acc_s`` after the demonstration, ``[tasks, synapses]``.

    ``rho``, ``k``: the synapses' rows and columns (simulator indices, as ``l2l.hardware.Sites``);
    ``target``: ``[tasks, T, n_out]`` integer target events (each readout's wanted membrane in
    state units, network time; the image's value outputs in order); ``feedback``: integer ``B`` ``[K, n_out]`` per simulator neuron
    (:func:`quantize_feedback`; rows of readouts are ignored); ``shifts``: the signal shifts
    ``(SS, SO)`` of the spiking columns' and the readouts' learning signals (:func:`signal_shifts`).
    """
    xb, trace_of, psi, err, out_k = _signals(sim, result, rho, k, np.asarray(target, dtype=np.int64), fmt)
    Tc, M = xb.shape[:2]
    tasks = err.shape[0]
    B = _sat(np.asarray(feedback, dtype=np.int64), fmt.feedback_bits)
    kappa = int(sim.params["alpha"][out_k].max(initial=0)) if out_k.size else 0
    readout = ~sim.spiking[k]
    out_of = np.full(sim.addr.size, -1, dtype=np.int64)
    out_of[out_k] = np.arange(out_k.size)
    # learning signals [tasks, Tc, synapses]: spiking columns from the next step's errors through B
    hidden_signal = np.zeros((tasks, Tc, sim.addr.size), dtype=np.int64)
    hidden_signal[:, :-1] = _sat((err[:, 1:] @ B.T) >> shifts[0], fmt.signal_bits)
    err = _sat(err >> shifts[1], fmt.signal_bits)
    e = np.zeros((max(M, 1), k.size), dtype=np.int64)
    acc = np.zeros((tasks, k.size), dtype=np.int64)
    own = np.where(readout & (out_of[k] >= 0), out_of[k], 0)
    for t in range(Tc):
        xs = xb[t][:, trace_of]                                     # [M, S]
        spiking_e = _sat(sim._mulr(e, kappa) + ((psi[t][:, k] * xs) >> fmt.psi_frac), fmt.elig_bits)
        e = np.where(readout, xs, spiking_e)
        signal = np.where(readout, err[:, t, own], hidden_signal[:, t, k])
        acc = _sat(acc + signal * e, fmt.acc_bits)
    return acc


def integer_update(acc: np.ndarray, mant: np.ndarray, shift: np.ndarray, fmt: LearningFormat = LearningFormat()
                   ) -> np.ndarray:
    """Weight changes in levels ``[tasks, synapses]``: ``(-acc * mant + r) >> shift`` with ``r``
    the LFSR's 16 bits aligned to the shift (stochastic rounding; one LFSR sequence per task)."""
    acc = np.asarray(acc, dtype=np.int64)
    mant = np.broadcast_to(np.asarray(mant, dtype=np.int64), acc.shape)
    shift = np.broadcast_to(np.asarray(shift, dtype=np.int64), acc.shape)
    if np.any(mant < 0) or np.any(mant >= 1 << fmt.mant_bits) or np.any(shift < 0) or np.any(shift > 62):
        raise ValueError(f"rates need mantissas in [0, 2^{fmt.mant_bits}) and shifts in [0, 62]")
    r = np.broadcast_to(lfsr(acc.shape[-1], fmt.lfsr_seed), acc.shape)
    r = np.where(shift >= RAND_BITS, r << np.maximum(shift - RAND_BITS, 0), r >> np.maximum(RAND_BITS - shift, 0))
    return (-acc * mant + r) >> shift


def quantize_rates(rate: np.ndarray, fmt: LearningFormat = LearningFormat()) -> tuple[np.ndarray, np.ndarray]:
    """A positive factor per synapse (levels per accumulator unit) as ``(mant, shift)``:
    ``rate ~ mant / 2^shift`` with the mantissa's top bit set (0 for a zero rate). A rate too
    small for ``shift <= 62`` is 0, one too large for ``shift >= 0`` saturates; both are reported
    by :func:`rate_problems`."""
    rate = np.asarray(rate, dtype=np.float64)
    mant = np.zeros(rate.shape, dtype=np.int64)
    shift = np.zeros(rate.shape, dtype=np.int64)
    pos = rate > 0
    e = np.floor(np.log2(rate[pos])).astype(np.int64)             # 2^e <= rate < 2^(e+1)
    s = np.clip(fmt.mant_bits - 1 - e, 0, 62)
    m = np.rint(rate[pos] * np.exp2(s)).astype(np.int64)
    m = np.minimum(m, (1 << fmt.mant_bits) - 1)
    mant[pos], shift[pos] = m, s
    return mant, shift


def quantize_feedback(feedback: np.ndarray, sim: DigitalSimulator, fmt: LearningFormat = LearningFormat()
                      ) -> tuple[np.ndarray, int]:
    """Float feedback weights ``B`` ``[K, n_out]`` (per output unit of error, as ``l2l.eprop``
    takes them) as integers per state unit of error: ``(B_q, BF)`` with ``B_q ~ B * c_o / 2^F * 2^BF``
    (``c_o`` the output's value scale, ``F`` the image's ``frac_bits``) and ``BF`` the largest
    fraction that keeps every ``B_q`` within ``feedback_bits``."""
    B = np.asarray(feedback, dtype=np.float64) * _value_scales(sim)[None, :] / float(1 << sim.image.arithmetic.frac_bits)
    top = float(np.abs(B).max(initial=0.0))
    limit = (1 << (fmt.feedback_bits - 1)) - 1
    frac = 30 if top == 0 else int(np.clip(np.floor(np.log2(limit / top)), 0, 30))
    return _sat(np.rint(B * float(1 << frac)).astype(np.int64), fmt.feedback_bits), frac


def signal_shifts(feedback_q: np.ndarray, max_error: int, fmt: LearningFormat = LearningFormat()) -> tuple[int, int]:
    """The signal shifts ``(SS, SO)`` that keep learning signals within ``signal_bits`` for errors
    up to ``max_error`` state units (e.g. twice the largest target event)."""
    worst_hidden = int(max_error) * int(np.abs(np.asarray(feedback_q, dtype=np.int64)).sum(axis=1).max(initial=0))
    room = fmt.signal_bits - 1
    return max(0, worst_hidden.bit_length() - room), max(0, int(max_error).bit_length() - room)


def _readouts(sim: DigitalSimulator) -> list[dict]:
    """The image's value outputs (readouts), whose target events drive the learning signals."""
    return [o for o in sim.image.meta["outputs"] if o["kind"] == "value"]


def _value_scales(sim: DigitalSimulator) -> np.ndarray:
    return np.concatenate([sim.image.arrays[f"output/{o['name']}/value_scale"] for o in _readouts(sim)] or [[]])


def float_units(sim: DigitalSimulator, k: np.ndarray, gamma: float, feedback_frac: int, shifts: tuple[int, int] = (0, 0),
                fmt: LearningFormat = LearningFormat()) -> np.ndarray:
    """Per synapse, ``l2l.eprop.gradient``'s units (loss per weight level, errors in output units)
    per unit of the integer accumulator: ``gamma / theta`` (``theta`` in levels) over
    ``2^(XF + BF - SS)`` for a spiking column, ``c_o^2 / 2^(F + XF - SO)`` for readout ``o`` (its
    signal is its own error in state units, ``c_o / 2^F`` output units each, times ``c_o``). A
    float rate times this is the rate :func:`quantize_rates` takes."""
    F = sim.image.arithmetic.frac_bits
    theta = sim.params["threshold"][k] / float(1 << F)
    spiking = sim.spiking[k]
    out_k = np.concatenate([sim.neurons(o["population"]) for o in _readouts(sim)] or [[]]).astype(np.int64)
    scale = np.zeros(sim.addr.size)
    scale[out_k] = _value_scales(sim)
    with np.errstate(divide="ignore"):
        hidden = np.where(theta > 0, gamma / np.where(theta > 0, theta, 1.0), 0.0)
    return np.where(spiking, hidden * np.exp2(shifts[0] - fmt.trace_frac - feedback_frac),
                    scale[k] ** 2 * np.exp2(shifts[1] - F - fmt.trace_frac))


def target_events(sim: DigitalSimulator, targets: np.ndarray) -> np.ndarray:
    """Wanted readout values ``[tasks, T, n_out]`` (output units) as the integer target events
    the host streams: each readout's membrane in state units."""
    F = sim.image.arithmetic.frac_bits
    return np.rint(np.asarray(targets, dtype=np.float64) / _value_scales(sim) * float(1 << F)).astype(np.int64)


def eprop_update(sim: DigitalSimulator, result, rho: np.ndarray, k: np.ndarray, targets: np.ndarray,
                 feedback: np.ndarray, rate: np.ndarray, gamma: float, fmt: LearningFormat = LearningFormat()
                 ) -> np.ndarray:
    """The learning circuit's weight changes (levels, ``[tasks, synapses]``) for float parameters:
    ``feedback`` ``B`` ``[K, n_out]`` and ``rate`` per synapse as ``l2l.eprop.gradient``'s caller
    uses them (``-rate * gradient``), ``targets`` in output units ``[tasks, T, n_out]``. The
    integers the chip is given (``B_q``, the shifts, each synapse's mantissa and shift) are
    derived here the way a compiler fills the learning block; the signal shifts from the
    targets' range (twice the largest target event)."""
    target = target_events(sim, targets)
    feedback_q, frac = quantize_feedback(feedback, sim, fmt)
    shifts = signal_shifts(feedback_q, 2 * int(np.abs(target).max(initial=1)), fmt)
    acc = integer_accumulators(sim, result, rho, k, target, feedback_q, shifts, fmt)
    mant, shift = quantize_rates(np.asarray(rate) * float_units(sim, k, gamma, frac, shifts, fmt), fmt)
    return integer_update(acc, mant, shift, fmt)
