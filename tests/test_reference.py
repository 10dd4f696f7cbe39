"""The reference simulator executes docs/semantics.md exactly.

Hand-computed traces pin down each rule (reset timing, refractory, synaptic current,
adaptation, delays); a plain per-neuron Python loop of the documented equations checks random
networks of every model against the vectorised simulator, in every storage and batching mode.
"""

import numpy as np
import pytest
import scipy.sparse as sp

from small.errors import SimulationError
from compiler.ir import ALIF, IF, LI, LIF, CubaLIF, Input, Network, Population, Projection
from sim import reference
from sim.reference import ReferenceSimulator, simulate


def one_neuron(neuron, weight=1.0, bias=0.0):
    return Network(
        inputs=[Input("x", (1,))],
        populations=[Population("n", 1, neuron, bias=bias)],
        projections=[Projection("x", "n", np.array([[weight]]))],
        outputs={"y": "n"},
    )


def drive(values):
    return np.asarray(values, dtype=np.float32).reshape(-1, 1, 1)


def trace(net, x):
    r = simulate(net, x, record_membrane=True, dtype=np.float64)
    return r.outputs["y"][:, 0, 0], r.membrane["n"][:, 0, 0]


def test_lif_subtract_reset_applies_after_the_leak():
    s, v = trace(one_neuron(LIF(alpha=0.5, reset="subtract")), drive([0.75] * 6))
    # 0.75; 0.375+0.75 = 1.125 (spike); 0.5625-1+0.75 = 0.3125; 0.90625; 1.203125 (spike); 0.6015625-1+0.75
    np.testing.assert_allclose(v, [0.75, 1.125, 0.3125, 0.90625, 1.203125, 0.3515625])
    np.testing.assert_array_equal(s, [0, 1, 0, 0, 1, 0])


def test_lif_zero_reset_leaks_from_v_reset():
    s, v = trace(one_neuron(LIF(alpha=0.5, v_reset=0.2, v_leak=0.0)), drive([1.1, 0.0, 0.0]))
    np.testing.assert_allclose(v, [1.1, 0.1, 0.05])  # reset to 0.2, then leak: 0.5*0.2
    np.testing.assert_array_equal(s, [1, 0, 0])


def test_leak_towards_v_leak_and_initial_state():
    s, v = trace(one_neuron(LIF(alpha=0.5, v_leak=0.4, v_threshold=10)), drive([0, 0, 1]))
    np.testing.assert_allclose(v, [0.4, 0.4, 1.4])  # starts at v_leak and stays there


def test_refractory_blocks_input_and_firing():
    s, v = trace(one_neuron(LIF(alpha=1.0, refractory=2, v_threshold=0.5)), drive([1, 1, 1, 1, 1]))
    np.testing.assert_array_equal(s, [1, 0, 0, 1, 0])
    np.testing.assert_allclose(v, [1, 0, 0, 1, 0])


def test_cuba_lif_membrane_uses_the_updated_current():
    net = one_neuron(CubaLIF(alpha=0.5, alpha_syn=0.5, gain=1.0, syn_gain=2.0, v_threshold=10))
    _, v = trace(net, drive([1, 0, 0]))
    # i: 2, 1, 0.5 ; v: 2, 1+1=2, 1+0.5=1.5
    np.testing.assert_allclose(v, [2.0, 2.0, 1.5])


def test_if_integrates_without_leak_and_li_outputs_membrane():
    s, v = trace(one_neuron(IF(gain=0.5, v_threshold=0.9, reset="subtract")), drive([1, 1, 1]))
    np.testing.assert_allclose(v, [0.5, 1.0, 0.6])  # 1.0 - 0.9 + 0.5
    np.testing.assert_array_equal(s, [0, 1, 0])
    out, v = trace(one_neuron(LI(alpha=0.5, gain=2.0, v_leak=1.0)), drive([1, 0]))
    np.testing.assert_allclose(out, [1 * 0.5 + 0.5 + 2, 3 * 0.5 + 0.5])
    np.testing.assert_allclose(out, v)


def test_alif_threshold_adapts_after_each_spike():
    net = one_neuron(ALIF(alpha=1.0, v_threshold=1.0, alpha_adapt=0.5, adapt=1.0, reset="zero"))
    s, v = trace(net, drive([1.5, 1.5, 1.5, 1.5]))
    # b: 0, 1 (after spike at 0), 0.5, ...; v: 1.5 (spike), 1.5 (< 2, no), 3.0 (> 1.5 spike), 1.5 (< 1+0.25+1)
    np.testing.assert_array_equal(s, [1, 0, 1, 0])


def test_bias_and_delay():
    net = Network(
        inputs=[Input("x", (1,))],
        populations=[Population("a", 1, LIF(alpha=0.0, v_threshold=0.5)), Population("b", 1, LI(alpha=0.0), bias=0.25)],
        projections=[Projection("x", "a", np.ones((1, 1))), Projection("a", "b", np.ones((1, 1)), delay=3)],
        outputs={"y": "b"},
    )
    out = simulate(net, drive([1, 0, 0, 0, 0, 0])).outputs["y"][:, 0, 0]
    np.testing.assert_allclose(out, [0.25, 0.25, 0.25, 1.25, 0.25, 0.25])


def loop_oracle(net, x):
    """Per-neuron scalar loop of docs/semantics.md (float64)."""
    steps, batch = x.shape[:2]
    pops = {p.name: p for p in net.populations}
    out = {p: np.zeros((steps, batch, pops[p].size)) for p in pops}
    for b in range(batch):
        state = {}
        for p in net.populations:
            prm = {k: np.broadcast_to(np.asarray(v, float), (p.size,)) for k, v in p.neuron.params().items()}
            v0 = np.zeros(p.size) if isinstance(p.neuron, IF) else prm["v_leak"].copy()
            state[p.name] = dict(v=v0, i=np.zeros(p.size), b=np.zeros(p.size), s=np.zeros(p.size, bool),
                                 c=np.zeros(p.size, int), prm=prm)
        for t in range(steps):
            for name in net.update_order():
                p, st, prm = pops[name], state[name], state[name]["prm"]
                cur = np.broadcast_to(np.asarray(p.bias, float), (p.size,)).copy()
                for proj in net.projections:
                    if proj.target != name or t - proj.delay < 0:
                        continue
                    src = x[t - proj.delay, b] if proj.source == "x" else out[proj.source][t - proj.delay, b]
                    cur += proj.dense_weight() @ src
                for j in range(p.size):
                    d = cur[j]
                    if isinstance(p.neuron, CubaLIF):
                        st["i"][j] = prm["alpha_syn"][j] * st["i"][j] + prm["syn_gain"][j] * d
                        d = st["i"][j]
                    alpha = 1.0 if isinstance(p.neuron, IF) else prm["alpha"][j]
                    leak = 0.0 if isinstance(p.neuron, IF) else prm["v_leak"][j]
                    if not p.neuron.spiking:
                        st["v"][j] = alpha * st["v"][j] + (1 - alpha) * leak + prm["gain"][j] * d
                        out[name][t, b, j] = st["v"][j]
                        continue
                    prev = st["s"][j]
                    if prev and p.neuron.reset == "zero":
                        st["v"][j] = prm["v_reset"][j]
                    st["v"][j] = alpha * st["v"][j] + (1 - alpha) * leak
                    if prev and p.neuron.reset == "subtract":
                        st["v"][j] -= prm["v_threshold"][j]
                    blocked = st["c"][j] > 0
                    if blocked:
                        st["c"][j] -= 1
                    else:
                        st["v"][j] += prm["gain"][j] * d
                    thr = prm["v_threshold"][j]
                    if isinstance(p.neuron, ALIF):
                        st["b"][j] = prm["alpha_adapt"][j] * st["b"][j] + prm["adapt"][j] * prev
                        thr += st["b"][j]
                    st["s"][j] = st["v"][j] > thr and not blocked
                    if st["s"][j]:
                        st["c"][j] = prm["refractory"][j]
                    out[name][t, b, j] = st["s"][j]
    return out


def random_network(seed, sparse=False):
    rng = np.random.default_rng(seed)
    n_in = 6
    pops = [
        Population("lif", 7, LIF(alpha=rng.uniform(0.5, 0.95, 7), gain=rng.uniform(0.5, 1.5, 7), v_leak=0.1,
                                 v_threshold=rng.uniform(0.8, 1.2, 7), reset="subtract", refractory=1), bias=0.05),
        Population("cuba", 5, CubaLIF(alpha=0.8, alpha_syn=rng.uniform(0.3, 0.9, 5), syn_gain=0.7, v_reset=-0.1,
                                      refractory=rng.integers(0, 3, 5))),
        Population("iff", 4, IF(gain=0.6, v_threshold=1.1)),
        Population("alif", 6, ALIF(alpha=0.9, alpha_adapt=0.95, adapt=rng.uniform(0, 0.3, 6), reset="subtract")),
        Population("out", 3, LI(alpha=0.9, gain=0.5, v_leak=-0.2)),
    ]
    sizes = {"x": n_in, **{p.name: p.size for p in pops}}

    def w(tgt, src, scale=1.2, density=0.6):
        m = rng.normal(0, scale, (sizes[tgt], sizes[src])) * (rng.random((sizes[tgt], sizes[src])) < density)
        return sp.csr_array(m) if sparse else m

    projs = [
        Projection("x", "lif", w("lif", "x")), Projection("x", "cuba", w("cuba", "x")),
        Projection("lif", "lif", w("lif", "lif", 0.5), delay=1), Projection("lif", "iff", w("iff", "lif")),
        Projection("cuba", "alif", w("alif", "cuba")), Projection("iff", "alif", w("alif", "iff"), delay=2),
        Projection("alif", "cuba", w("cuba", "alif", 0.5), delay=1), Projection("alif", "out", w("out", "alif")),
        Projection("lif", "out", w("out", "lif"), delay=4),
    ]
    net = Network(inputs=[Input("x", (n_in,))], populations=pops, projections=projs,
                  outputs={"o_lif": "lif", "o_alif": "alif", "o_out": "out"})
    return net.validate()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("sparse", [False, True])
def test_random_networks_match_the_documented_equations(seed, sparse, monkeypatch):
    if sparse:  # force the CSR gather path even for these small matrices
        monkeypatch.setattr(reference, "DENSE_LIMIT_ENTRIES", 0)
    net = random_network(seed, sparse)
    rng = np.random.default_rng(100 + seed)
    x = (rng.random((40, 3, 6)) < 0.3).astype(np.float32)
    expected = loop_oracle(net, x)
    got = simulate(net, x, record_spikes=True, dtype=np.float64)
    for pop in ("lif", "cuba", "iff", "alif"):
        np.testing.assert_array_equal(got.spikes[pop], expected[pop].astype(bool), err_msg=pop)
    np.testing.assert_allclose(got.outputs["o_out"], expected["out"], rtol=1e-6, atol=1e-6)  # outputs are float32


def test_event_driven_and_dense_paths_agree(monkeypatch):
    net = random_network(5)
    x = np.random.default_rng(7).normal(0.3, 0.5, (30, 4, 6)).astype(np.float32)  # real-valued input
    a = simulate(net, x, dtype=np.float64).output_array()
    monkeypatch.setattr(reference, "EVENT_FRACTION", 2.0)  # never use the matrix product
    b = simulate(net, x, dtype=np.float64).output_array()
    monkeypatch.setattr(reference, "EVENT_FRACTION", -1.0)  # always use it
    c = simulate(net, x, dtype=np.float64).output_array()
    np.testing.assert_allclose(a, b, atol=1e-12)
    np.testing.assert_allclose(a, c, atol=1e-12)


def test_batch_elements_are_independent():
    net = random_network(3)
    x = (np.random.default_rng(1).random((25, 5, 6)) < 0.3).astype(np.float32)
    together = simulate(net, x).output_array()
    for b in range(5):
        np.testing.assert_array_equal(simulate(net, x[:, b : b + 1]).output_array()[:, 0], together[:, b])


def test_input_shapes_are_checked():
    net = random_network(0)
    sim = ReferenceSimulator(net)
    with pytest.raises(SimulationError, match=r"expected \[T, batch, 6\]"):
        sim.run(np.zeros((10, 2, 5), np.float32))
    with pytest.raises(SimulationError, match="NaN"):
        sim.run(np.full((10, 2, 6), np.nan, np.float32))
    with pytest.raises(SimulationError, match="no such population"):
        sim.run(np.zeros((10, 2, 6), np.float32), record_membrane=["nope"])


def test_multidimensional_input_is_flattened_in_c_order():
    net = Network(inputs=[Input("img", (2, 3))], populations=[Population("n", 6, LI(alpha=0.0))],
                  projections=[Projection("img", "n", np.eye(6))], outputs={"y": "n"})
    x = np.arange(12, dtype=np.float32).reshape(1, 2, 2, 3)
    np.testing.assert_array_equal(simulate(net, x).outputs["y"][0], x.reshape(1, 2, 6)[0])
