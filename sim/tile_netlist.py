"""SPICE decks of compiled memristive tiles (``small export BUILD --spice``), runnable in ngspice.

One deck per tile ``t`` of a memristive HardwareImage:

* the tile's two crossbars, G+ and G-, each a subcircuit (``analog_models.crossbar``'s network:
  ``r_wire`` per segment on rows and columns) with every device at its programmed conductance
  ``G_min + level dG`` (stuck devices at their stuck level; the image's conductance range);
* one row driver per row, shared by both crossbars: a voltage source ``Vrow<r>`` that pulses to
  ``v_read`` for ``t_pulse`` at the start of each network step in which its row is active (by
  default every used row in step 0; edit the PWL to apply other inputs);
* per column two virtual grounds ``Vsp<c>``, ``Vsn<c>`` (0 V), and for each neuron column an
  analog LIF neuron (``analog_models.neuron``, as the subcircuit ``small_lif``) whose input is
  ``k_c (I(Vsp<c>) - I(Vsn<c>))`` (current-controlled sources), with ``k_c`` chosen so that one
  weight level of one row event moves the membrane by ``V_th / threshold_c`` (its threshold in
  levels), its leak resistor set so that ``exp(-dt / R C)`` is the column's ``alpha``, and its
  refractory time the column's refractory steps times ``dt``.

What the deck does not model, stated in its header: ALIF adaptation and CubaLIF synaptic
currents (those columns get the plain LIF circuit), the columns' bias and leak terms, partial-sum
columns merging across tiles (a partial-sum column's current is sensed but feeds no neuron here),
subtract resets (the circuit resets to zero).
"""

from __future__ import annotations

import math

import numpy as np

from compiler.image import COL_NEURON, NON_SPIKING_MODELS, HardwareImage

V_READ = 0.2
T_PULSE = 10e-9


def _crossbar_subckt(name: str, g: np.ndarray, r_wire: float) -> list[str]:
    """``g`` as ``.subckt name rd0 .. rd{R-1} s0 .. s{C-1}`` (drivers and sense nodes as pins)."""
    from analog_models.crossbar import netlist

    R, C = g.shape
    deck = netlist(g, np.zeros(R), r_wire, equation_order=False).splitlines()
    body = [line for line in deck[1:] if not line.startswith(("Vrow", "Vcol"))]
    pins = " ".join([f"rd{i}" for i in range(R)] + [f"s{j}" for j in range(C)])
    return [f".subckt {name} {pins}", *body, f".ends {name}"]


def neuron_subckt(params=None) -> list[str]:
    """The analog LIF neuron as ``.subckt small_lif mem rleak_scale`` -> see :func:`tile_deck`."""
    from analog_models.neuron import NeuronParams, netlist

    p = params or NeuronParams()
    lines = netlist(p, 0.0).splitlines()
    body = [line for line in lines[1:] if line.strip() and not line.lower().startswith(("iin", ".end", ".title"))
            and not line.startswith("Rleak")]
    return [".subckt small_lif mem params: rleak=1e9", *body, "Rleak mem 0 {rleak}", ".ends small_lif"]


def tile_deck(image: HardwareImage, t: int, *, r_wire: float = 1.0, steps: int = 5, v_read: float = V_READ,
              t_pulse: float = T_PULSE, active=None, source: str = "", analysis: bool = True) -> str:
    """The ngspice deck of tile ``t`` (see the module docstring).

    ``active``: ``{step: rows}`` pulsed in each network step (default: every used row in step 0).
    With ``analysis``, a ``.tran`` over ``steps`` network steps, ``.print`` of every neuron's
    membrane ``v(mem<c>)`` and ``.end``, so ``ngspice -b`` runs the file as it is.
    """
    from analog_models.neuron import NeuronParams

    if image.target != "memristive":
        raise ValueError(f"a SPICE deck needs a memristive image, not a {image.target!r} one: "
                         "compile with --target memristive")
    a, R, C = image.arrays, image.rows, image.cols
    g_min, g_max = image.conductance_range()
    dG = (g_max - g_min) / (image.levels - 1)
    gp, gn = (g[t] for g in image.conductances())
    dt = float(image.meta["network"]["dt"])
    p = NeuronParams()
    used_rows = sorted({int(r) for tt, r in zip(a["route_tile"], a["route_row"]) if tt == t}
                       | {int(r) for tt, r in zip(a["input_tile"], a["input_row"]) if tt == t})
    active = {0: used_rows} if active is None else active
    edge = t_pulse / 10
    lines = [f"* SMALL tile {t} of {source or 'a memristive image'}: {R}x{C} device pairs, {image.levels} levels in "
             f"{g_min * 1e6:g}-{g_max * 1e6:g} uS, wire {r_wire:g} ohm a segment, network step {dt:g} s",
             f"* rows pulse to {v_read:g} V for {t_pulse:g} s at the start of each step they are active in",
             "* not modelled: ALIF adaptation, CubaLIF synaptic current, bias/leak terms, partial sums of other tiles,",
             "* subtract reset (the circuit resets to zero). Run: ngspice -b this_file",
             *_crossbar_subckt("xbar_pos", gp, r_wire), *_crossbar_subckt("xbar_neg", gn, r_wire),
             *neuron_subckt(p)]
    for r in range(R):
        times = [s for s, rows in sorted(active.items()) if r in rows]
        if times:
            pts = []
            for s in times:
                t0 = s * dt
                # edges of t_pulse / 10: the trapezoid's area is v_read * t_pulse
                pts += [f"{t0:g} 0", f"{t0 + edge:g} {v_read:g}", f"{t0 + t_pulse:g} {v_read:g}",
                        f"{t0 + t_pulse + edge:g} 0"]
            lines.append(f"Vrow{r} rd{r} 0 PWL({' '.join(pts)})")
        else:
            lines.append(f"Vrow{r} rd{r} 0 0")
    lines.append("Xpos " + " ".join([f"rd{i}" for i in range(R)] + [f"sp{j}" for j in range(C)]) + " xbar_pos")
    lines.append("Xneg " + " ".join([f"rd{i}" for i in range(R)] + [f"sn{j}" for j in range(C)]) + " xbar_neg")
    for c in range(C):
        lines += [f"Vsp{c} sp{c} 0 0", f"Vsn{c} sn{c} 0 0"]
        if int(a["col_kind"][t, c]) != COL_NEURON:
            continue
        theta = float(a["param/threshold"][t, c])
        if int(a["col_model"][t, c]) in NON_SPIKING_MODELS or theta <= 0:
            theta = 1e9  # a readout integrates and never fires
        alpha = float(a["param/alpha"][t, c])
        tau = -dt / math.log(alpha) if 0 < alpha < 1 else 1e3 * dt
        k = (p.v_th / theta) * p.c_mem / (v_read * dG * t_pulse)
        lines += [f"Fp{c} 0 mem{c} Vsp{c} {k:.6g}", f"Fn{c} mem{c} 0 Vsn{c} {k:.6g}",
                  f"Xn{c} mem{c} small_lif rleak={tau / p.c_mem:.6g}"]
    if analysis:
        mems = [f"v(mem{c})" for c in range(C) if int(a["col_kind"][t, c]) == COL_NEURON]
        lines += [f".tran {dt / 100:g} {steps * dt:g} uic", *(f".print tran {' '.join(mems[i:i + 8])}"
                                                                   for i in range(0, len(mems), 8)), ".end"]
    return "\n".join(lines) + "\n"


def membrane_step(image: HardwareImage, t: int, rows) -> np.ndarray:
    """What one step with ``rows`` active (payload 1) should add to each column's membrane in the
    deck, in volts, with ideal wires: ``V_th / threshold_c * sum_r (l+_rc - l-_rc)`` (0 elsewhere)."""
    from analog_models.neuron import NeuronParams

    a = image.arrays
    pos, neg = image.effective_levels()
    w = pos[t].astype(float) - neg[t]
    theta = np.where(np.isin(a["col_model"][t], NON_SPIKING_MODELS), 1e9, a["param/threshold"][t].astype(float))
    dv = NeuronParams().v_th / theta * w[list(rows)].sum(axis=0)
    return np.where(a["col_kind"][t] == COL_NEURON, dv, 0.0)
