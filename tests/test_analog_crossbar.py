"""The crossbar with wire resistance: the nodal model against ngspice, and what IR drop does.

``analog_models.crossbar`` writes the same resistive network twice, as a SPICE deck and as a
sparse nodal system; the nodal model is what ``sim/analog.py`` runs, so it must agree with
ngspice (to 1e-6 of the largest column current, from 8x8 to 64x64, square or not), reduce to
``v @ G`` with ideal wires, and lose current where a physicist expects it to.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from analog_models import crossbar
from analog_models.crossbar import (NodalCrossbar, compare, ideal_column_currents, max_rel_error, netlist,
                                    spice_column_currents)


def random_crossbar(rows: int, cols: int, seed: int):
    """Conductances 1-100 uS, row voltages 0-0.3 V, wire 1-5 ohm a segment."""
    rng = np.random.default_rng(seed)
    return rng.uniform(1e-6, 100e-6, (rows, cols)), rng.uniform(0.0, 0.3, rows), float(rng.uniform(1.0, 5.0))


# -- the nodal model against ngspice ------------------------------------------------------------
@pytest.mark.spice
@pytest.mark.parametrize("rows, cols", [(8, 8), (16, 16), (32, 32), (64, 64), (16, 8), (8, 24)])
def test_nodal_model_matches_ngspice(rows, cols):
    G, v, r_wire = random_crossbar(rows, cols, seed=rows * 1000 + cols)
    i_spice = spice_column_currents(G, v, r_wire)
    i_model = NodalCrossbar(G, r_wire).column_currents(v)
    assert max_rel_error(i_model, i_spice) <= 1e-6
    # and the wires matter at these sizes: the ideal currents are off by far more
    assert max_rel_error(ideal_column_currents(G, v), i_spice) > 1e-4


@pytest.mark.spice
@pytest.mark.parametrize("r_wire, r_driver", [(2.0, 50.0), (0.0, 50.0), (0.0, 0.0)])
def test_driver_resistance_and_ideal_wires_match_ngspice(r_wire, r_driver):
    G, v, _ = random_crossbar(12, 10, seed=7)
    G[3, :] = 0.0  # an open row and a few open cells
    G[:, 4] = 0.0
    G[5, 6] = 0.0
    i_spice = spice_column_currents(G, v - 0.1, r_wire, r_driver)  # some rows negative
    assert max_rel_error(NodalCrossbar(G, r_wire, r_driver).column_currents(v - 0.1), i_spice) <= 1e-6


@pytest.mark.spice
def test_equation_order_hints_do_not_change_the_circuit():
    G, v, r_wire = random_crossbar(16, 12, seed=3)
    G[2, 5] = 0.0
    ordered, plain = (netlist(G, v, r_wire, 20.0, equation_order=order) for order in (True, False))
    hints = [line for line in ordered.splitlines() if line.startswith("B")]
    assert hints and all(" 0 I=0*" in line for line in hints)  # zero-current sources only
    assert [line for line in ordered.splitlines() if not line.startswith(("B", "*"))] == \
           [line for line in plain.splitlines() if not line.startswith("*")]
    from analog_models import spice

    a, b = (spice.simulate(deck, ".op") for deck in (ordered, plain))
    for j in range(12):
        assert a[f"vcol{j}#branch"][0] == pytest.approx(b[f"vcol{j}#branch"][0], rel=1e-12)


@pytest.mark.spice
def test_column_currents_flow_into_the_virtual_grounds():
    G, v, r_wire = random_crossbar(8, 6, seed=11)
    assert (spice_column_currents(G, v + 0.05, r_wire) > 0).all()
    assert (spice_column_currents(G, -(v + 0.05), r_wire) < 0).all()


@pytest.mark.spice
def test_compare_reports_what_the_cli_prints():
    G, v, r_wire = random_crossbar(8, 5, seed=5)
    result = compare(G, v, r_wire)
    assert set(result) == {"i_cols_spice", "i_cols_model", "i_cols_ideal", "max_rel_error_model_vs_spice",
                           "max_rel_error_ideal_vs_spice", "seconds_spice", "seconds_model"}
    for key in ("i_cols_spice", "i_cols_model", "i_cols_ideal"):
        assert isinstance(result[key], list) and len(result[key]) == 5
        assert all(type(x) is float for x in result[key])
    assert result["i_cols_ideal"] == (v @ G).tolist()
    assert result["max_rel_error_model_vs_spice"] <= 1e-6 < result["max_rel_error_ideal_vs_spice"]
    assert result["seconds_spice"] > 0 and result["seconds_model"] > 0


# -- the nodal model alone ----------------------------------------------------------------------
def test_ideal_wires_give_exactly_v_times_g():
    G, v, _ = random_crossbar(16, 9, seed=1)
    batch = np.random.default_rng(2).uniform(-0.3, 0.3, (5, 16))
    model = NodalCrossbar(G, 0.0)
    assert np.array_equal(model.column_currents(v), v @ G)
    assert np.array_equal(model.column_currents(batch), batch @ G)
    assert np.array_equal(ideal_column_currents(G, batch), batch @ G)


def test_ir_drop_grows_with_wire_resistance():
    G, v, _ = random_crossbar(24, 16, seed=4)
    ideal = v @ G
    losses = [1 - NodalCrossbar(G, r).column_currents(v) / ideal for r in (0.5, 1.0, 2.0, 4.0)]
    assert (losses[0] > 0).all()
    for smaller, larger in zip(losses, losses[1:]):
        assert (larger > smaller).all()


def test_ir_drop_grows_with_distance_from_driver_and_sense_amplifier():
    # uniform devices: a cell's effective conductance (its current per volt on its row alone)
    # falls with every row segment to its driver (left) and column segment to its amplifier (bottom)
    G = np.full((16, 12), 50e-6)
    ratio = NodalCrossbar(G, 2.0).effective_conductances() / G
    assert (np.diff(ratio, axis=1) < 0).all()  # farther right: farther from the row driver
    assert (np.diff(ratio, axis=0) > 0).all()  # farther down: nearer the sense amplifier
    assert ratio.max() < 1 and ratio.argmin() == np.ravel_multi_index((0, 11), G.shape)  # top right is worst


def test_batched_reads_equal_one_read_at_a_time(monkeypatch):
    G, _, r_wire = random_crossbar(20, 14, seed=6)
    batch = np.random.default_rng(8).uniform(-0.3, 0.3, (7, 20))
    model = NodalCrossbar(G, r_wire, r_driver=10.0)
    single = np.stack([model.column_currents(row) for row in batch])
    np.testing.assert_allclose(model.column_currents(batch), single, rtol=1e-13, atol=0)
    monkeypatch.setattr(crossbar, "_SOLVE_ENTRIES", 3 * model.n_nodes)  # chunks of 3 right-hand sides
    np.testing.assert_allclose(model.column_currents(batch), single, rtol=1e-13, atol=0)
    np.testing.assert_allclose(batch @ model.effective_conductances(), single, rtol=1e-12, atol=1e-22)
    assert model.column_currents(np.zeros((0, 20))).shape == (0, 14)


# -- the deck -----------------------------------------------------------------------------------
def test_netlist_names_every_node_once():
    R, C = 11, 12  # xr1_11 and xr11_1 must be different nodes
    G, v, r_wire = random_crossbar(R, C, seed=9)
    deck = netlist(G, v, r_wire, 5.0, equation_order=False)
    lines = deck.splitlines()
    assert lines[0].startswith("*") and not any(line.lower().startswith((".op", ".end", ".tran")) for line in lines)
    elements = [line.split() for line in lines[1:]]
    nodes = {n for e in elements for n in e[1:3]} - {"0"}
    assert len(nodes) == 2 * R * C + 2 * R + C  # wire nodes, driver and driven nodes, sense nodes
    assert len({e[0].lower() for e in elements}) == len(elements)
    assert f"Vcol{C - 1} s{C - 1} 0 0" in lines
    assert sum(e[0].startswith("Rg") for e in elements) == R * C


def test_importing_the_module_starts_no_simulator():
    code = "import sys, analog_models.crossbar; sys.exit('PySpice' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


@pytest.mark.parametrize("make, match", [
    (lambda G, v: NodalCrossbar(-G, 1.0), "negative"),
    (lambda G, v: NodalCrossbar(np.where(G > 5e-5, np.nan, G), 1.0), "non-finite"),
    (lambda G, v: NodalCrossbar(G[0], 1.0), "2-D"),
    (lambda G, v: NodalCrossbar(np.zeros((0, 4)), 1.0), "non-empty"),
    (lambda G, v: NodalCrossbar(G, -1.0), "r_wire"),
    (lambda G, v: NodalCrossbar(G, float("inf")), "r_wire"),
    (lambda G, v: NodalCrossbar(G, 1.0, r_driver=-2.0), "r_driver"),
    (lambda G, v: NodalCrossbar(G, 1.0).column_currents(v[:-1]), r"\[6\] or \[batch, 6\]"),
    (lambda G, v: NodalCrossbar(G, 1.0).column_currents(v[None, None]), "v_rows"),
    (lambda G, v: NodalCrossbar(G, 1.0).column_currents(np.full(6, np.inf)), "non-finite"),
    (lambda G, v: ideal_column_currents(G, np.ones(4)), "v_rows"),
    (lambda G, v: netlist(G, np.stack([v, v]), 1.0), r"shape \[6\]"),
    (lambda G, v: netlist(G, v, "one ohm"), "r_wire"),
    (lambda G, v: compare(G, v, -0.5), "r_wire"),
])
def test_bad_inputs_are_rejected_with_a_reason(make, match):
    G, v, _ = random_crossbar(6, 4, seed=0)
    with pytest.raises(ValueError, match=match):
        make(G, v)
