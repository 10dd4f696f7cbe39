"""NIR import and export: discretisation, composition of linear paths, recurrence, nesting,
lossless round trips, Norse's unit error and clear errors for bad files.

Graphs are built in memory with the ``nir`` package; file paths go through ``nir.write``.
"""

import math

import h5py
import nir
import numpy as np
import pytest
import scipy.sparse as sp

from small.errors import FileFormatError, NetworkError, SmallError, SmallWarning, UnsupportedError
from compiler.ir import ALIF, IF, LI, LIF, CubaLIF, Input, Network, Population, Projection
from compiler.nir_backend import write_nir
from compiler.nir_frontend import import_nir
from sim.reference import simulate

DT = 1e-3


# -----------------------------------------------------------------------------------------
# Helpers
# -----------------------------------------------------------------------------------------
def graph(nodes, edges, metadata=None):
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata or {}, type_check=False)


def inp(*shape):
    return nir.Input(input_type={"input": np.array(shape)})


def out(n):
    return nir.Output(output_type={"output": np.array([n])})


def lif(n, tau=2e-2, r=1.5, v_leak=0.0, v_threshold=1.0, v_reset=0.0):
    full = lambda v: np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)).copy()  # noqa: E731
    return nir.LIF(tau=full(tau), r=full(r), v_leak=full(v_leak), v_threshold=full(v_threshold), v_reset=full(v_reset))


def written(g, tmp_path, name="model.nir"):
    path = tmp_path / name
    nir.write(path, g)
    return path


def projections(net):
    """Dense weights keyed by (source, target, delay)."""
    return {(p.source, p.target, p.delay): p.dense_weight() for p in net.projections}


def vec(value, n):
    return np.broadcast_to(np.asarray(value, dtype=np.float64), (n,))


def assert_param(neuron, name, expected):
    np.testing.assert_allclose(vec(getattr(neuron, name), np.size(expected)), expected, rtol=1e-12, atol=1e-15)


def dense_conv2d(w, in_shape, padding):
    """Dense unrolled matrix of a stride-1 Conv2d, built tap by tap (independent of compiler.conv)."""
    c_out, c_in, kh, kw = w.shape
    _, h, wd = in_shape
    oh, ow = h + 2 * padding - kh + 1, wd + 2 * padding - kw + 1
    m = np.zeros((c_out, oh, ow, c_in, h, wd))
    for co in range(c_out):
        for ci in range(c_in):
            for ky in range(kh):
                for kx in range(kw):
                    for oy in range(oh):
                        for ox in range(ow):
                            iy, ix = oy - padding + ky, ox - padding + kx
                            if 0 <= iy < h and 0 <= ix < wd:
                                m[co, oy, ox, ci, iy, ix] += w[co, ci, ky, kx]
    return m.reshape(c_out * oh * ow, c_in * h * wd), (c_out, oh, ow)


# -----------------------------------------------------------------------------------------
# Import of every node type, discretisation per framework
# -----------------------------------------------------------------------------------------
def every_type_graph():
    """Input -> Affine -> LIF -> Linear -> CubaLIF -> Scale -> IF -> Linear -> LI -> Output."""
    rng = np.random.default_rng(0)
    nodes = {
        "x": inp(4),
        "fc1": nir.Affine(weight=rng.normal(size=(5, 4)), bias=rng.normal(size=5)),
        "lif": nir.LIF(tau=np.linspace(2e-3, 6e-3, 5), r=np.linspace(1, 2, 5), v_leak=np.full(5, 0.1),
                       v_threshold=np.linspace(0.5, 1.5, 5), v_reset=np.full(5, -0.2)),
        "fc2": nir.Linear(weight=rng.normal(size=(3, 5))),
        "cuba": nir.CubaLIF(tau_syn=np.array([2e-3, 3e-3, 4e-3]), tau_mem=np.array([5e-3, 8e-3, 1e-2]),
                            r=np.array([1.0, 2.0, 3.0]), v_leak=np.zeros(3), v_threshold=np.ones(3),
                            v_reset=np.zeros(3), w_in=np.array([0.5, 1.0, 2.0])),
        "scale": nir.Scale(scale=np.array([2.0, -1.0, 0.5])),
        "if": nir.IF(r=np.array([3.0, 4.0, 5.0]), v_threshold=np.full(3, 0.8), v_reset=np.zeros(3)),
        "fc3": nir.Linear(weight=rng.normal(size=(2, 3))),
        "li": nir.LI(tau=np.array([4e-3, 1e-2]), r=np.array([1.0, 0.5]), v_leak=np.array([0.0, 0.3])),
        "out": out(2),
    }
    edges = [("x", "fc1"), ("fc1", "lif"), ("lif", "fc2"), ("fc2", "cuba"), ("cuba", "scale"), ("scale", "if"),
             ("if", "fc3"), ("fc3", "li"), ("li", "out")]
    return graph(nodes, edges)


@pytest.mark.parametrize(
    "framework, dt, reset",
    [("nir", 1e-3, "zero"), ("nir", 5e-4, "zero"), ("snntorch", 1e-4, "subtract"), ("norse", 1e-3, "zero")],
)
def test_every_node_type_is_discretised_with_forward_euler(framework, dt, reset):
    g = every_type_graph()
    n = g.nodes
    kwargs = {"dt": dt} if framework == "nir" else {}  # snntorch and norse imply their step
    net = import_nir(g, framework=framework, **kwargs)
    assert net.dt == dt
    assert [p.name for p in net.populations] == ["lif", "cuba", "if", "li"]
    assert net.outputs == {"out": "li"}
    assert [i.name for i in net.inputs] == ["x"] and net.inputs[0].shape == (4,)

    p = {pop.name: pop for pop in net.populations}
    jump = framework == "norse"
    # LIF: alpha = 1 - dt/tau, gain = dt*r/tau
    lif_n = p["lif"].neuron
    assert type(lif_n) is LIF and lif_n.reset == reset
    assert_param(lif_n, "alpha", 1 - dt / n["lif"].tau)
    assert_param(lif_n, "gain", dt * n["lif"].r / n["lif"].tau)
    assert_param(lif_n, "v_leak", n["lif"].v_leak)
    assert_param(lif_n, "v_threshold", n["lif"].v_threshold)
    assert_param(lif_n, "v_reset", n["lif"].v_reset)
    # CubaLIF: syn_gain = dt*w_in/tau_syn (w_in itself for Norse)
    c, cn = p["cuba"].neuron, n["cuba"]
    assert type(c) is CubaLIF and c.reset == reset
    assert_param(c, "alpha", 1 - dt / cn.tau_mem)
    assert_param(c, "alpha_syn", 1 - dt / cn.tau_syn)
    assert_param(c, "gain", dt * cn.r / cn.tau_mem)
    assert_param(c, "syn_gain", cn.w_in if jump else dt * cn.w_in / cn.tau_syn)
    # IF: gain = dt*r (r for Norse)
    f = p["if"].neuron
    assert type(f) is IF and f.reset == reset
    assert_param(f, "gain", n["if"].r if jump else dt * n["if"].r)
    assert_param(f, "v_threshold", n["if"].v_threshold)
    # LI
    li = p["li"].neuron
    assert type(li) is LI
    assert_param(li, "alpha", 1 - dt / n["li"].tau)
    assert_param(li, "gain", dt * n["li"].r / n["li"].tau)
    assert_param(li, "v_leak", n["li"].v_leak)

    w = projections(net)
    assert set(w) == {("x", "lif", 0), ("lif", "cuba", 0), ("cuba", "if", 0), ("if", "li", 0)}
    np.testing.assert_array_equal(w[("x", "lif", 0)], n["fc1"].weight)
    np.testing.assert_array_equal(w[("lif", "cuba", 0)], n["fc2"].weight)
    np.testing.assert_array_equal(w[("cuba", "if", 0)], np.diag(n["scale"].scale))
    np.testing.assert_array_equal(w[("if", "li", 0)], n["fc3"].weight)
    np.testing.assert_array_equal(vec(p["lif"].bias, 5), n["fc1"].bias)
    for name in ("cuba", "if", "li"):
        assert not np.any(p[name].bias)


def test_integrator_becomes_a_leakless_li():
    g = graph({"x": inp(3), "fc": nir.Linear(weight=np.eye(3)), "i": nir.I(r=np.array([1.0, 2.0, 4.0])), "y": out(3)},
              [("x", "fc"), ("fc", "i"), ("i", "y")])
    net = import_nir(g, dt=2e-3)
    neuron = net.population("i").neuron
    assert type(neuron) is LI
    assert_param(neuron, "alpha", np.ones(3))
    assert_param(neuron, "v_leak", np.zeros(3))
    assert_param(neuron, "gain", 2e-3 * np.array([1.0, 2.0, 4.0]))
    # It integrates: a constant input of 1 gives gain * t.
    result = simulate(net, np.ones((4, 1, 3)), dtype=np.float64)
    np.testing.assert_allclose(result.outputs["y"][:, 0, :], np.outer(np.arange(1, 5), 2e-3 * np.array([1.0, 2.0, 4.0])),
                               rtol=1e-6)


@pytest.mark.parametrize("framework, dt, gain", [("nir", 2e-3, 2e-3), ("norse", 1e-3, 1.0), ("sinabs", 1.0, 1.0),
                                                 ("spyx", 1.0, 1.0)])
def test_if_and_integrator_in_every_parameterisation(tmp_path, framework, dt, gain):
    """Parameters as scalars, vectors or [C, H, W] arrays (as Sinabs writes IF after a Conv2d),
    with and without v_reset; each framework's input gain."""
    shape = (2, 2, 3)
    n = math.prod(shape)
    thr = np.linspace(0.5, 1.5, n).reshape(shape)
    nodes = {"x": inp(n), "fc": nir.Linear(weight=np.eye(n)),
             "a": nir.IF(r=np.ones(shape), v_threshold=thr, v_reset=np.full(shape, -0.25)),
             "fc2": nir.Linear(weight=np.eye(n)), "b": nir.IF(r=np.ones(n), v_threshold=np.ones(n)),
             "fc3": nir.Linear(weight=np.eye(n)), "i": nir.I(r=np.ones(n)), "y": out(n), "z": out(n)}
    g = graph(nodes, [("x", "fc"), ("fc", "a"), ("a", "fc2"), ("fc2", "b"), ("b", "y"), ("a", "fc3"), ("fc3", "i"),
                      ("i", "z")])
    for source in (g, written(g, tmp_path)):
        net = import_nir(source, dt=dt, framework=framework)
        a, b = net.population("a").neuron, net.population("b").neuron
        assert type(a) is IF and type(b) is IF
        assert_param(a, "v_threshold", thr.reshape(-1))
        assert_param(a, "v_reset", np.full(n, -0.25))
        assert_param(a, "gain", np.full(n, gain))
        assert a.fire_at_threshold == (framework == "sinabs")
        assert_param(net.population("i").neuron, "gain", np.full(n, dt))


def test_plain_nir_needs_a_time_step_and_frameworks_imply_theirs(tmp_path):
    g = every_type_graph()
    with pytest.raises(NetworkError, match="--dt"):
        import_nir(g)
    with pytest.raises(NetworkError, match="--dt"):
        import_nir(written(g, tmp_path))
    assert import_nir(g, framework="snntorch").dt == 1e-4
    assert import_nir(g, framework="norse").dt == 1e-3
    assert import_nir(g, framework="snntorch", dt=2e-4).dt == 2e-4  # an explicit step wins
    with pytest.raises(NetworkError, match="framework"):
        import_nir(g, framework="tensorflow", dt=1e-3)


def test_time_constant_shorter_than_dt_is_rejected():
    g = graph({"x": inp(2), "fc": nir.Linear(weight=np.eye(2)), "l": lif(2, tau=5e-4), "y": out(2)},
              [("x", "fc"), ("fc", "l"), ("l", "y")])
    with pytest.raises(NetworkError, match=r"'l'.*tau.*shorter than dt"):
        import_nir(g, dt=1e-3)
    assert import_nir(g, dt=1e-4).population("l").neuron.alpha == pytest.approx(0.8)


# -----------------------------------------------------------------------------------------
# Composition of linear paths
# -----------------------------------------------------------------------------------------
def test_chain_of_linear_nodes_is_one_projection_with_the_product_weight_and_carried_biases():
    rng = np.random.default_rng(1)
    a, a_b = rng.normal(size=(6, 4)), rng.normal(size=6)
    s = rng.normal(size=6)
    b, b_b = rng.normal(size=(3, 6)), rng.normal(size=3)
    c = rng.normal(size=(2, 3))
    g = graph({"x": inp(4), "a": nir.Affine(weight=a, bias=a_b), "s": nir.Scale(scale=s),
               "b": nir.Affine(weight=b, bias=b_b), "c": nir.Linear(weight=c), "l": lif(2), "y": out(2)},
              [("x", "a"), ("a", "s"), ("s", "b"), ("b", "c"), ("c", "l"), ("l", "y")])
    net = import_nir(g, dt=DT)
    assert len(net.projections) == 1
    proj = net.projections[0]
    assert (proj.source, proj.target, proj.delay) == ("x", "l", 0)
    np.testing.assert_allclose(proj.dense_weight(), c @ b @ np.diag(s) @ a, rtol=1e-12)
    np.testing.assert_allclose(vec(net.population("l").bias, 2), c @ (b @ (s * a_b) + b_b), rtol=1e-12)


def test_bias_reaches_each_target_through_its_own_chain():
    rng = np.random.default_rng(2)
    w, bias = rng.normal(size=(3, 4)), np.array([1.0, -2.0, 0.5])
    p = rng.normal(size=(2, 3))
    s = np.array([2.0, 3.0, -1.0])
    g = graph({"x": inp(4), "fc": nir.Affine(weight=w, bias=bias), "p": nir.Linear(weight=p), "s": nir.Scale(scale=s),
               "la": lif(2), "lb": lif(3), "ya": out(2), "yb": out(3)},
              [("x", "fc"), ("fc", "p"), ("p", "la"), ("fc", "s"), ("s", "lb"), ("la", "ya"), ("lb", "yb")])
    net = import_nir(g, dt=DT)
    np.testing.assert_allclose(vec(net.population("la").bias, 2), p @ bias, rtol=1e-12)
    np.testing.assert_allclose(vec(net.population("lb").bias, 3), s * bias, rtol=1e-12)
    w_net = projections(net)
    np.testing.assert_allclose(w_net[("x", "la", 0)], p @ w, rtol=1e-12)
    np.testing.assert_allclose(w_net[("x", "lb", 0)], np.diag(s) @ w, rtol=1e-12)


def test_parallel_paths_between_the_same_nodes_are_summed():
    rng = np.random.default_rng(3)
    w1, w2, w3 = rng.normal(size=(3, 2)), rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    g = graph({"x": inp(2), "p1": nir.Linear(weight=w1), "p2": nir.Linear(weight=w2), "p3": nir.Linear(weight=w3),
               "d": nir.Delay(delay=np.full(3, 2 * DT)), "l": lif(3), "y": out(3)},
              [("x", "p1"), ("x", "p2"), ("x", "p3"), ("p1", "l"), ("p2", "l"), ("p3", "d"), ("d", "l"), ("l", "y")])
    net = import_nir(g, dt=DT)
    w = projections(net)
    assert set(w) == {("x", "l", 0), ("x", "l", 2)}
    np.testing.assert_allclose(w[("x", "l", 0)], w1 + w2, rtol=1e-12)
    np.testing.assert_allclose(w[("x", "l", 2)], w3, rtol=1e-12)


@pytest.mark.parametrize("start_dim, flat_shape", [(0, (24,)), (1, (2, 12))])
def test_flatten_keeps_sizes_and_input_shape(start_dim, flat_shape):
    rng = np.random.default_rng(4)
    w = rng.normal(size=(5, 24))
    g = graph({"x": inp(2, 3, 4), "flat": nir.Flatten(input_type={"input": np.array([2, 3, 4])}, start_dim=start_dim),
               "fc": nir.Linear(weight=w), "l": lif(5), "y": out(5)},
              [("x", "flat"), ("flat", "fc"), ("fc", "l"), ("l", "y")])
    net = import_nir(g, dt=DT)
    assert net.inputs[0].shape == (2, 3, 4)
    np.testing.assert_array_equal(net.projections[0].dense_weight(), w)
    # Input tensors [T, batch, 2, 3, 4] are flattened in C order, as the Flatten node does.
    x = rng.normal(size=(6, 2, 2, 3, 4)) * 5
    a = simulate(net, x, dtype=np.float64).outputs["y"]
    b = simulate(net, x.reshape(6, 2, 24), dtype=np.float64).outputs["y"]
    np.testing.assert_array_equal(a, b)


def test_conv2d_flatten_affine_lif_simulates_like_the_hand_built_network():
    rng = np.random.default_rng(5)
    cw, cb = rng.normal(size=(3, 2, 3, 3)), rng.normal(size=3) * 0.1
    fc_w, fc_b = rng.normal(size=(4, 108)) * 0.3, rng.normal(size=4) * 0.1
    tau1, r1, tau2, r2 = 5e-3, 2.0, 1e-2, 3.0
    g = graph(
        {
            "x": inp(2, 6, 6),
            "conv": nir.Conv2d(input_shape=(6, 6), weight=cw, stride=1, padding=1, dilation=1, groups=1, bias=cb),
            "l1": lif(108, tau=tau1, r=r1, v_threshold=0.5),
            "flat": nir.Flatten(input_type={"input": np.array([3, 6, 6])}, start_dim=0),
            "fc": nir.Affine(weight=fc_w, bias=fc_b),
            "l2": lif(4, tau=tau2, r=r2, v_threshold=0.2),
            "y": out(4),
        },
        [("x", "conv"), ("conv", "l1"), ("l1", "flat"), ("flat", "fc"), ("fc", "l2"), ("l2", "y")],
    )
    net = import_nir(g, dt=DT)
    conv_dense, conv_out = dense_conv2d(cw, (2, 6, 6), padding=1)
    assert conv_out == (3, 6, 6)
    np.testing.assert_allclose(projections(net)[("x", "l1", 0)], conv_dense, rtol=1e-12)

    hand = Network(
        dt=DT,
        inputs=[Input("x", (2, 6, 6))],
        populations=[
            Population("l1", 108, LIF(alpha=1 - DT / tau1, gain=DT * r1 / tau1, v_threshold=0.5), bias=np.repeat(cb, 36)),
            Population("l2", 4, LIF(alpha=1 - DT / tau2, gain=DT * r2 / tau2, v_threshold=0.2), bias=fc_b),
        ],
        projections=[Projection("x", "l1", conv_dense), Projection("l1", "l2", fc_w)],
        outputs={"y": "l2"},
    ).validate()
    x = (rng.random(size=(30, 3, 2, 6, 6)) < 0.4).astype(np.float32)
    a = simulate(net, x, dtype=np.float64, record_spikes=["l1"])
    b = simulate(hand, x, dtype=np.float64, record_spikes=["l1"])
    assert a.spikes["l1"].any() and a.outputs["y"].any() and not a.outputs["y"].all()  # the test exercises spiking
    np.testing.assert_array_equal(a.spikes["l1"], b.spikes["l1"])
    np.testing.assert_array_equal(a.outputs["y"], b.outputs["y"])


def test_conv1d_on_a_flat_input_uses_its_declared_input_shape():
    rng = np.random.default_rng(6)
    w, bias = rng.normal(size=(4, 1, 3)), np.array([0.1, 0.2, 0.3, 0.4])
    conv = nir.Conv1d(input_shape=8, weight=w, stride=2, padding=1, dilation=1, groups=2, bias=bias)
    g = graph({"x": inp(16), "conv": conv, "l": lif(16), "y": out(16)}, [("x", "conv"), ("conv", "l"), ("l", "y")])
    net = import_nir(g, dt=DT)
    assert net.population("l").size == 4 * 4  # (8 + 2 - 2 - 1)//2 + 1 = 4 positions
    xin = rng.normal(size=(2, 8))
    xp = np.pad(xin, [(0, 0), (1, 1)])
    expected = np.array([[sum(w[co, 0, k] * xp[co // 2, 2 * o + k] for k in range(3)) for o in range(4)] for co in range(4)])
    np.testing.assert_allclose(net.projections[0].dense_weight() @ xin.reshape(-1), expected.reshape(-1), rtol=1e-12)
    np.testing.assert_array_equal(vec(net.population("l").bias, 16), np.repeat(bias, 4))


def test_delay_nodes_become_projection_delays_in_steps():
    w = np.arange(1.0, 10.0).reshape(3, 3)

    def delayed(delay):
        return graph({"x": inp(3), "fc": nir.Linear(weight=w), "d": nir.Delay(delay=np.asarray(delay, dtype=np.float64)),
                      "l": lif(3, tau=1e-2), "y": out(3)},
                     [("x", "fc"), ("fc", "d"), ("d", "l"), ("l", "y")])

    net = import_nir(delayed(np.full(3, 2e-3)), dt=5e-4)
    assert [(p.source, p.target, p.delay) for p in net.projections] == [("x", "l", 4)]
    np.testing.assert_array_equal(net.projections[0].dense_weight(), w)

    # Non-uniform per-element delays split the projection by rows.
    net = import_nir(delayed([1e-3, 3e-3, 1e-3]), dt=DT)
    by_delay = {p.delay: p.dense_weight() for p in net.projections}
    assert sorted(by_delay) == [1, 3]
    np.testing.assert_array_equal(by_delay[1], w * np.array([[1], [0], [1]]))
    np.testing.assert_array_equal(by_delay[3], w * np.array([[0], [1], [0]]))
    # ... and simulate as the delays say: a single input pulse at t = 0 arrives at t = 1 and t = 3.
    x = np.zeros((6, 1, 3))
    x[0, 0, 0] = 1.0
    lin = net.population("l")
    lin.neuron.v_threshold = 1e9  # no spikes: watch the membrane
    v = simulate(net, x, dtype=np.float64, record_membrane=["l"]).membrane["l"][:, 0, :]
    assert np.all(v[0] == 0) and v[1, 0] > 0 and v[1, 1] == 0 and v[3, 1] > 0 and v[2, 1] == 0

    with pytest.raises(NetworkError, match=r"Delay node 'd'.*dt"):
        import_nir(delayed(np.full(3, 1.5e-3)), dt=DT)
    with pytest.raises(NetworkError, match=r"Delay node 'd'"):
        import_nir(delayed(np.full(3, -1e-3)), dt=DT)


def test_outputs_are_reported_in_the_graph_order():
    g = graph({"x": inp(2), "fc": nir.Linear(weight=np.ones((3, 2))), "l1": lif(3), "fc2": nir.Linear(weight=np.ones((2, 3))),
               "l2": lif(2), "late": out(2), "early": out(3)},
              [("x", "fc"), ("fc", "l1"), ("l1", "fc2"), ("fc2", "l2"), ("l1", "early"), ("l2", "late")])
    net = import_nir(g, dt=DT)
    assert list(net.outputs.items()) == [("late", "l2"), ("early", "l1")]


def test_affine_output_readout_is_the_affine_map_of_the_same_steps_spikes():
    """``LIF -> Affine -> Output`` (a classifier's membrane readout, as snnTorch computes it)."""
    rng = np.random.default_rng(3)
    w1, w2, b2 = rng.normal(size=(4, 3)) * 2, rng.normal(size=(2, 4)), np.array([0.25, -0.5])
    g = graph({"x": inp(3), "fc": nir.Linear(weight=w1), "l": lif(4, tau=4e-3), "ro": nir.Affine(weight=w2, bias=b2),
               "y": out(2)}, [("x", "fc"), ("fc", "l"), ("l", "ro"), ("ro", "y")])
    net = import_nir(g, dt=DT)
    assert net.outputs == {"y": "y"}
    readout = net.population("y").neuron
    assert type(readout) is LI and readout.alpha == 0.0 and readout.gain == 1.0
    x = (rng.random((30, 2, 3)) < 0.5).astype(np.float32)
    result = simulate(net, x, record_spikes=["l"], dtype=np.float64)
    spikes = result.spikes["l"]
    assert spikes.any()
    np.testing.assert_allclose(result.outputs["y"], spikes @ w2.T + b2, rtol=1e-6, atol=1e-7)  # outputs are float32
    # A readout straight from the input is an affine map of the input.
    g = graph({"x": inp(3), "ro": nir.Affine(weight=w1, bias=np.zeros(4)), "y": out(4)}, [("x", "ro"), ("ro", "y")])
    np.testing.assert_allclose(simulate(import_nir(g, dt=DT), x, dtype=np.float64).outputs["y"], x @ w1.T, rtol=1e-6, atol=1e-6)
    # An Output through Flatten is the neuron itself.
    g = graph({"x": inp(2), "fc": nir.Linear(weight=np.eye(2)), "l": lif(2),
               "flat": nir.Flatten(input_type={"input": np.array([2])}, start_dim=0), "y": out(2)},
              [("x", "fc"), ("fc", "l"), ("l", "flat"), ("flat", "y")])
    assert import_nir(g, dt=DT).outputs == {"y": "l"}


def pool_reference(x, kernel, stride, padding, average):
    """Pooling of one [C, H, W] array, window by window (independent of compiler.conv)."""
    c, h, w = x.shape
    xp = np.zeros((c, h + 2 * padding[0], w + 2 * padding[1]))
    xp[:, padding[0]:padding[0] + h, padding[1]:padding[1] + w] = x
    oh = (h + 2 * padding[0] - kernel[0]) // stride[0] + 1
    ow = (w + 2 * padding[1] - kernel[1]) // stride[1] + 1
    y = np.zeros((c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            win = xp[:, i * stride[0]:i * stride[0] + kernel[0], j * stride[1]:j * stride[1] + kernel[1]]
            y[:, i, j] = win.sum(axis=(1, 2)) / (kernel[0] * kernel[1] if average else 1)
    return y


@pytest.mark.parametrize("kind", ["SumPool2d", "AvgPool2d"])
@pytest.mark.parametrize("kernel, stride, padding", [((2, 2), (2, 2), (0, 0)), ((3, 2), (2, 1), (1, 0)), ((2, 3), (3, 2), (1, 1))])
def test_pooling_is_a_sparse_linear_map_with_nirs_floor_shape_rule(kind, kernel, stride, padding):
    shape = (2, 7, 6)  # odd sizes: the floor rule drops the incomplete window
    pool = getattr(nir, kind)(kernel_size=np.array(kernel), stride=np.array(stride), padding=np.array(padding))
    flat = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0)
    g = graph({"x": inp(*shape), "pool": pool, "flat": flat, "n": nir.IF(r=np.ones(1), v_threshold=np.ones(1)), "y": out(1)},
              [("x", "pool"), ("pool", "flat"), ("flat", "n"), ("n", "y")])
    oh = (shape[1] + 2 * padding[0] - kernel[0]) // stride[0] + 1
    ow = (shape[2] + 2 * padding[1] - kernel[1]) // stride[1] + 1
    g.nodes["n"] = nir.IF(r=np.ones(2 * oh * ow), v_threshold=np.ones(2 * oh * ow))
    net = import_nir(g, dt=1.0)
    (w,) = projections(net).values()
    assert w.shape == (2 * oh * ow, math.prod(shape))
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = rng.normal(size=shape)
        np.testing.assert_allclose(w @ x.reshape(-1), pool_reference(x, kernel, stride, padding, kind == "AvgPool2d").reshape(-1),
                                   rtol=1e-12, atol=1e-12)


def test_cubali_is_a_non_spiking_current_based_integrator():
    tau_syn, tau_mem, r, w_in, v_leak = np.array([2e-3, 4e-3]), np.array([5e-3, 1e-2]), np.array([1.0, 2.0]), 1.5, 0.1
    node = nir.CubaLI(tau_syn=tau_syn, tau_mem=tau_mem, r=r, v_leak=np.full(2, v_leak), w_in=w_in)
    w = np.array([[1.0, -0.5], [0.3, 0.8]])
    g = graph({"x": inp(2), "fc": nir.Linear(weight=w), "c": node, "y": out(2)}, [("x", "fc"), ("fc", "c"), ("c", "y")])
    net = import_nir(g, dt=DT)
    neuron = net.population("c").neuron
    assert neuron.kind == "cuba_li" and not neuron.spiking
    x = np.random.default_rng(1).normal(size=(40, 3, 2))
    got = simulate(net, x, dtype=np.float64).outputs["y"]
    i, v = np.zeros((3, 2)), np.full((3, 2), v_leak)
    for t in range(40):  # forward Euler of NIR's CubaLI, the input current updated first (semantics.md step 3)
        i = i + DT / tau_syn * (-i + w_in * (x[t] @ w.T))
        v = v + DT / tau_mem * (v_leak - v + r * i)
        np.testing.assert_allclose(got[t], v, rtol=1e-6, atol=1e-7)  # outputs are float32


def test_threshold_node_is_a_stateless_heaviside_of_its_input():
    thr = np.array([0.2, 0.0, -0.1])
    w, b = np.array([[1.0, -1.0], [0.5, 0.5], [0.0, 1.0]]), np.array([0.0, -0.5, 0.0])
    g = graph({"x": inp(2), "fc": nir.Affine(weight=w, bias=b), "z": nir.Threshold(threshold=thr), "y": out(3)},
              [("x", "fc"), ("fc", "z"), ("z", "y")])
    for framework, reset in (("nir", None), ("snntorch", None), ("nir", "subtract")):
        net = import_nir(g, dt=DT, framework=framework, reset=reset)
        x = np.random.default_rng(2).normal(size=(25, 4, 2))
        got = simulate(net, x, dtype=np.float64).outputs["y"]
        np.testing.assert_array_equal(got, (x @ w.T + b > thr).astype(got.dtype))


@pytest.mark.parametrize("framework", ["nir", "snntorch", "norse"])
def test_reset_option_overrides_the_frameworks_reset(framework):
    g = graph({"x": inp(2), "fc": nir.Linear(weight=np.ones((3, 2))), "l": lif(3), "y": out(3)},
              [("x", "fc"), ("fc", "l"), ("l", "y")])
    default = {"nir": "zero", "snntorch": "subtract", "norse": "zero"}[framework]
    assert import_nir(g, dt=DT, framework=framework).population("l").neuron.reset == default
    for reset in ("zero", "subtract"):
        net = import_nir(g, dt=DT, framework=framework, reset=reset)
        assert net.population("l").neuron.reset == reset and net.metadata["reset"] == reset
    with pytest.raises(NetworkError, match=r"unknown reset 'soft': use one of zero, subtract"):
        import_nir(g, dt=DT, reset="soft")


# -----------------------------------------------------------------------------------------
# Recurrent edges
# -----------------------------------------------------------------------------------------
def recurrent_graph(rng, n_in=3, n=6):
    w_in, b = rng.normal(size=(n, n_in)) * 1.5, rng.normal(size=n) * 0.05
    w_rec = rng.normal(size=(n, n)) * 0.8
    node = nir.LIF(tau=np.linspace(4e-3, 2e-2, n), r=np.linspace(1.0, 2.0, n), v_leak=np.linspace(-0.1, 0.1, n),
                   v_threshold=np.full(n, 0.6), v_reset=np.full(n, -0.1))
    g = graph({"x": inp(n_in), "fc": nir.Affine(weight=w_in, bias=b), "lif": node, "rec": nir.Linear(weight=w_rec),
               "y": out(n)},
              [("x", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "y")])
    return g, w_in, b, w_rec, node


@pytest.mark.parametrize("framework", ["nir", "snntorch"])
def test_recurrent_layer_gets_delay_one_and_simulates_as_the_lif_equations(framework):
    rng = np.random.default_rng(7)
    g, w_in, b, w_rec, node = recurrent_graph(rng)
    net = import_nir(g, dt=DT, framework=framework)
    w = projections(net)
    assert set(w) == {("x", "lif", 0), ("lif", "lif", 1)}
    np.testing.assert_array_equal(w[("lif", "lif", 1)], w_rec)

    # The LIF docstring of compiler/ir.py, step by step.
    alpha, gain = 1 - DT / node.tau, DT * node.r / node.tau
    subtract = framework == "snntorch"
    x = rng.normal(size=(60, 2, 3)) * 3 + 1.5
    v = np.tile(node.v_leak, (2, 1))
    s = np.zeros((2, 6), dtype=bool)
    expected = []
    for t in range(x.shape[0]):
        current = x[t] @ w_in.T + s @ w_rec.T + b
        if not subtract:
            v = np.where(s, node.v_reset, v)
        v = alpha * v + (1 - alpha) * node.v_leak
        if subtract:
            v = v - node.v_threshold * s
        v = v + gain * current
        s = v > node.v_threshold
        expected.append(s.copy())
    expected = np.array(expected, dtype=np.float32)
    assert 0.05 < expected.mean() < 0.95
    got = simulate(net, x, dtype=np.float64).outputs["y"]
    np.testing.assert_array_equal(got, expected)


def test_explicit_delay_in_a_loop_is_kept_and_not_extended():
    g = graph({"x": inp(2), "fc": nir.Linear(weight=np.ones((2, 2))), "l": lif(2), "rec": nir.Linear(weight=np.eye(2)),
               "d": nir.Delay(delay=np.full(2, 3 * DT)), "y": out(2)},
              [("x", "fc"), ("fc", "l"), ("l", "rec"), ("rec", "d"), ("d", "l"), ("l", "y")])
    net = import_nir(g, dt=DT)
    assert sorted((p.source, p.target, p.delay) for p in net.projections) == [("l", "l", 3), ("x", "l", 0)]


def test_zero_delay_cycle_between_two_layers_is_broken_on_the_closing_edge():
    g = graph({"x": inp(2), "fc": nir.Linear(weight=np.ones((3, 2))), "a": lif(3), "ab": nir.Linear(weight=np.ones((2, 3))),
               "b": lif(2), "ba": nir.Linear(weight=np.ones((3, 2))), "y": out(2)},
              [("x", "fc"), ("fc", "a"), ("a", "ab"), ("ab", "b"), ("b", "ba"), ("ba", "a"), ("b", "y")])
    net = import_nir(g, dt=DT)
    assert sorted((p.source, p.target, p.delay) for p in net.projections) == [
        ("a", "b", 0), ("b", "a", 1), ("x", "a", 0)]
    assert net.update_order() == ["a", "b"]


# -----------------------------------------------------------------------------------------
# Nested graphs
# -----------------------------------------------------------------------------------------
def test_nested_graph_imports_like_the_flat_equivalent(tmp_path):
    rng = np.random.default_rng(8)
    w1, b1 = rng.normal(size=(3, 4)), rng.normal(size=3)
    w_rec, w2 = rng.normal(size=(3, 3)), rng.normal(size=(2, 3))

    def parts():
        return (nir.Affine(weight=w1, bias=b1), lif(3, tau=5e-3), nir.Linear(weight=w_rec), nir.Linear(weight=w2),
                lif(2, tau=8e-3, r=2.0))

    fc, l1, rec, fc2, l2 = parts()
    block = graph({"input": inp(4), "fc": fc, "lif": l1, "rec": rec, "output": out(3)},
                  [("input", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")])
    nested = graph({"x": inp(4), "block": block, "fc2": fc2, "l2": l2, "y": out(2)},
                   [("x", "block"), ("block", "fc2"), ("fc2", "l2"), ("l2", "y")])
    fc, l1, rec, fc2, l2 = parts()
    flat = graph({"x": inp(4), "block.fc": fc, "block.lif": l1, "block.rec": rec, "fc2": fc2, "l2": l2, "y": out(2)},
                 [("x", "block.fc"), ("block.fc", "block.lif"), ("block.lif", "block.rec"), ("block.rec", "block.lif"),
                  ("block.lif", "fc2"), ("fc2", "l2"), ("l2", "y")])
    want = import_nir(flat, dt=DT)
    assert sorted(projections(want)) == [("block.lif", "block.lif", 1), ("block.lif", "l2", 0), ("x", "block.lif", 0)]
    got = import_nir(nested, dt=DT)
    assert got.differences(want) == []
    from_file = import_nir(written(nested, tmp_path), dt=DT)
    assert from_file.differences(want) == []


def test_nested_graphs_at_any_depth_with_nirtorch_port_names():
    """Three levels of nesting; edges into ``<sub>.input`` and out of ``<sub>.output`` (nirtorch's
    naming) import like edges to the nested graph's own name."""
    w1, w2 = np.full((3, 4), 0.4), np.full((2, 3), 0.7)
    inner = graph({"input": inp(3), "lif": lif(3), "output": out(3)}, [("input", "lif"), ("lif", "output")])
    middle = graph({"input": inp(3), "core": inner, "output": out(3)}, [("input", "core.input"), ("core.output", "output")])
    nested = graph({"x": inp(4), "fc": nir.Linear(weight=w1), "mid": middle, "fc2": nir.Linear(weight=w2), "l2": lif(2),
                    "y": out(2)},
                   [("x", "fc"), ("fc", "mid.input"), ("mid.output", "fc2"), ("fc2", "l2"), ("l2", "y")])
    net = import_nir(nested, dt=DT)
    assert [p.name for p in net.populations] == ["mid.core.lif", "l2"]
    assert sorted(projections(net)) == [("mid.core.lif", "l2", 0), ("x", "mid.core.lif", 0)]


def test_nested_graph_whose_edges_misname_its_only_neuron_is_repaired_with_a_warning():
    """The NIR paper's braille subgraph files name the node ``lif1`` and its edges ``lif``."""
    block = graph({"input": inp(3), "lif1": lif(3), "lin": nir.Linear(weight=np.eye(3)), "output": out(3)},
                  [("input", "lif"), ("lif", "lin"), ("lin", "lif"), ("lif", "output")])
    g = graph({"x": inp(3), "fc": nir.Linear(weight=np.eye(3)), "lif1": block, "y": out(3)},
              [("x", "fc"), ("fc", "lif1"), ("lif1", "y")])
    with pytest.warns(SmallWarning, match=r"nested graph 'lif1'.*'lif'.*'lif1', is taken"):
        net = import_nir(g, dt=DT)
    assert sorted(projections(net)) == [("lif1.lif1", "lif1.lif1", 1), ("x", "lif1.lif1", 0)]
    # Two candidates: nothing is guessed.
    block.nodes["spare"] = lif(3)
    with pytest.raises(NetworkError, match=r"nested graph 'lif1': edge 'input' -> 'lif' names node 'lif'.*correct the edge"):
        import_nir(g, dt=DT)


@pytest.mark.parametrize("top_first", [False, True])
def test_names_that_collide_once_flattened_are_refused_with_both_names(tmp_path, top_first):
    """A nested graph ``a`` holding ``b`` beside a top-level ``a.b``: two layers, not one population."""
    a = graph({"input": inp(3), "b": lif(3), "output": out(3)}, [("input", "b"), ("b", "output")])
    nodes = {"x": inp(3), "a": a, "a.b": lif(3, tau=7e-3), "y": out(3)}
    if top_first:
        nodes = {"x": nodes["x"], "a.b": nodes["a.b"], "a": a, "y": nodes["y"]}
    g = graph(nodes, [("x", "a"), ("a", "a.b"), ("a.b", "y")])
    for source in (g, written(g, tmp_path)):  # (a file lists its nodes in its own order)
        with pytest.raises(NetworkError, match="are both named 'a.b' once nested graphs are flattened: rename one"
                           ) as err:
            import_nir(source, dt=DT)
        assert str(err.value).startswith(("NIR nodes 'a.b' and 'b' of nested graph 'a' are",
                                          "NIR nodes 'b' of nested graph 'a' and 'a.b' are"))


# -----------------------------------------------------------------------------------------
# Round trips through SMALL's NIR export
# -----------------------------------------------------------------------------------------
def ir_feedforward():
    return Network(name="ff", dt=DT, inputs=[Input("x", (2, 3))],
                   populations=[Population("h", 4, LIF(alpha=0.9, gain=2.0)), Population("o", 2, LI(alpha=0.8))],
                   projections=[Projection("x", "h", np.arange(24.0).reshape(4, 6) / 10),
                                Projection("h", "o", np.ones((2, 4)))],
                   outputs={"y": "o"})


def ir_recurrent():
    rng = np.random.default_rng(9)
    return Network(name="rec", dt=5e-4, inputs=[Input("x", (3,))],
                   populations=[Population("h", 5, LIF(alpha=0.95, v_leak=0.1, v_reset=-0.2, v_threshold=0.7))],
                   projections=[Projection("x", "h", rng.normal(size=(5, 3))),
                                Projection("h", "h", rng.normal(size=(5, 5)), delay=1)],
                   outputs={"s": "h"})


def ir_cuba_if_li():
    return Network(name="models", dt=1e-4, inputs=[Input("x", (2,))],
                   populations=[Population("c", 3, CubaLIF(alpha=[0.9, 0.8, 0.7], alpha_syn=0.6, gain=1.5, syn_gain=[1, 2, 3])),
                                Population("f", 3, IF(gain=0.4, v_threshold=0.9, v_reset=0.1)),
                                Population("li", 2, LI(alpha=[0.5, 0.99], gain=3.0, v_leak=[0.0, 0.2])),
                                Population("acc", 2, LI(alpha=1.0, gain=0.25))],
                   projections=[Projection("x", "c", np.ones((3, 2))), Projection("c", "f", np.eye(3)),
                                Projection("f", "li", np.ones((2, 3))), Projection("f", "acc", np.ones((2, 3)))],
                   outputs={"v": "li", "sum": "acc"})


def ir_everything():
    """ALIF, refractory > 0, subtract reset, sparse projection, delays, per-neuron arrays, biases."""
    rng = np.random.default_rng(10)
    sparse_w = sp.random_array((6, 8), density=0.2, rng=rng, format="csr")
    return Network(
        name="everything", dt=DT, inputs=[Input("x", (8,))],
        populations=[
            Population("h", 6, LIF(alpha=rng.uniform(0.5, 0.99, 6), gain=rng.uniform(0.5, 2, 6), v_leak=0.05,
                                   v_threshold=rng.uniform(0.5, 1.5, 6), v_reset=-0.1, refractory=[0, 1, 2, 3, 0, 1],
                                   reset="subtract"), bias=rng.normal(size=6)),
            Population("a", 4, ALIF(alpha=0.9, alpha_adapt=[0.9, 0.95, 0.99, 0.999], adapt=0.2, refractory=2,
                                    reset="subtract"), bias=0.3),
            Population("c", 3, CubaLIF(alpha=0.85, alpha_syn=[0.3, 0.5, 0.7], refractory=1, reset="subtract")),
            Population("nl", 2, LIF(alpha=[1.0, 0.9], gain=0.7)),  # alpha = 1: no leak (tau = inf in NIR)
            Population("o", 3, LI(alpha=0.7, gain=[1.0, 2.0, 3.0])),
        ],
        projections=[
            Projection("x", "h", sparse_w),
            Projection("h", "h", rng.normal(size=(6, 6)), delay=1),
            Projection("h", "a", rng.normal(size=(4, 6)), delay=2),
            Projection("x", "a", rng.normal(size=(4, 8))),
            Projection("a", "c", rng.normal(size=(3, 4)), delay=3),
            Projection("a", "nl", rng.normal(size=(2, 4))),
            Projection("c", "o", rng.normal(size=(3, 3))),
            Projection("h", "o", rng.normal(size=(3, 6)), delay=1),
        ],
        outputs={"readout": "o", "spikes": "a"},
    ).validate()


def ir_threshold_rule_and_cuba_li():
    """A Sinabs-style ``>=`` population and a CubaLI readout: what ``small to-nir`` used to drop."""
    from compiler.ir import CubaLI, IF

    rng = np.random.default_rng(3)
    return Network(
        name="geq", dt=1e-3, inputs=[Input("x", (4,))],
        populations=[Population("h", 5, IF(v_threshold=1.0, reset="subtract", fire_at_threshold=True)),
                     Population("o", 2, CubaLI(alpha=0.8, alpha_syn=0.6, gain=0.5, syn_gain=2.0, v_leak=0.1))],
        projections=[Projection("x", "h", rng.normal(size=(5, 4))), Projection("h", "o", rng.normal(size=(2, 5)))],
        outputs={"readout": "o", "spikes": "h"},
    )


@pytest.mark.parametrize("make", [ir_feedforward, ir_recurrent, ir_cuba_if_li, ir_everything,
                                  ir_threshold_rule_and_cuba_li])
def test_ir_to_nir_to_ir_is_exact(make, tmp_path):
    net = make().validate()
    write_nir(net, tmp_path / "a.nir")
    back = import_nir(tmp_path / "a.nir")  # dt comes from SMALL's metadata
    assert back.differences(net) == []
    assert back.dt == net.dt and back.name == net.name
    assert list(back.outputs) == list(net.outputs)  # the order outputs are reported in survives
    # ... and again: nothing drifts.
    write_nir(back, tmp_path / "b.nir")
    again = import_nir(tmp_path / "b.nir")
    assert again.differences(net) == []
    x = (np.random.default_rng(0).random(size=(25, 2, *net.inputs[0].shape)) < 0.5).astype(np.float32)
    np.testing.assert_array_equal(simulate(net, x).output_array(), simulate(again, x).output_array())


def test_sparse_projections_stay_sparse_after_a_round_trip(tmp_path):
    net = ir_everything()
    write_nir(net, tmp_path / "a.nir")
    back = import_nir(tmp_path / "a.nir")
    by_key = {(p.source, p.target, p.delay): p for p in back.projections}
    assert by_key[("x", "h", 0)].is_sparse
    assert not by_key[("h", "h", 1)].is_sparse


@pytest.mark.parametrize("framework", ["nir", "snntorch", "norse"])
def test_nir_to_ir_to_nir_to_ir_is_lossless(framework, tmp_path):
    rng = np.random.default_rng(11)
    g = every_type_graph()
    rec, *_ = recurrent_graph(rng)
    kwargs = {"dt": 1e-3} if framework == "nir" else {}
    for source in (g, rec):
        first = import_nir(written(source, tmp_path, "src.nir"), framework=framework, **kwargs)
        write_nir(first, tmp_path / "small.nir")
        second = import_nir(tmp_path / "small.nir")  # SMALL's file records dt, reset and exact values
        assert second.differences(first) == []


def test_alif_travels_as_a_lif_node_with_small_metadata(tmp_path):
    net = ir_everything()
    write_nir(net, tmp_path / "a.nir")
    g = nir.read(tmp_path / "a.nir")
    node = g.nodes["a"]
    assert type(node) is nir.LIF
    meta = node.metadata["small"]
    assert meta["model"] == "alif"
    np.testing.assert_array_equal(meta["alpha_adapt"], [0.9, 0.95, 0.99, 0.999])
    assert float(meta["adapt"]) == 0.2
    back = import_nir(tmp_path / "a.nir").population("a")
    assert type(back.neuron) is ALIF
    assert back.neuron.equals(net.population("a").neuron)


def test_other_tools_read_standard_continuous_parameters(tmp_path):
    net = ir_cuba_if_li()
    net.populations.insert(0, Population("l", 3, LIF(alpha=[0.9, 0.5, 0.75], gain=[1.0, 2.0, 0.5])))
    net.projections.append(Projection("x", "l", np.ones((3, 2)), delay=2))
    net.populations[1].bias = np.array([0.1, 0.2, 0.3])
    net.validate()
    dt = net.dt
    write_nir(net, tmp_path / "a.nir")
    g = nir.read(tmp_path / "a.nir")  # plain NIR, with its type checks

    l = g.nodes["l"]
    assert type(l) is nir.LIF
    np.testing.assert_allclose(l.tau, dt / (1 - np.array([0.9, 0.5, 0.75])), rtol=1e-12)
    np.testing.assert_allclose(l.r, np.array([1.0, 2.0, 0.5]) * l.tau / dt, rtol=1e-12)
    c = g.nodes["c"]
    assert type(c) is nir.CubaLIF
    np.testing.assert_allclose(c.tau_mem, dt / (1 - np.array([0.9, 0.8, 0.7])), rtol=1e-12)
    np.testing.assert_allclose(c.tau_syn, dt / (1 - 0.6), rtol=1e-12)
    np.testing.assert_allclose(c.w_in, np.array([1.0, 2.0, 3.0]) * c.tau_syn / dt, rtol=1e-12)
    np.testing.assert_allclose(c.r, 1.5 * c.tau_mem / dt, rtol=1e-12)
    assert type(g.nodes["f"]) is nir.IF
    np.testing.assert_allclose(g.nodes["f"].r, 0.4 / dt, rtol=1e-12)
    assert type(g.nodes["li"]) is nir.LI
    np.testing.assert_allclose(g.nodes["li"].tau, dt / (1 - np.array([0.5, 0.99])), rtol=1e-12)
    assert type(g.nodes["acc"]) is nir.I
    np.testing.assert_allclose(g.nodes["acc"].r, 0.25 / dt, rtol=1e-12)
    # Projections: a Linear/Affine (carrying the bias) per projection, then a Delay of delay*dt seconds.
    edges = {(str(a), str(b)) for a, b in g.edges}
    affine = [k for k, v in g.nodes.items() if type(v) is nir.Affine]
    assert len(affine) == 1 and (affine[0], "c") in edges
    np.testing.assert_array_equal(g.nodes[affine[0]].bias, [0.1, 0.2, 0.3])
    delays = [v for v in g.nodes.values() if type(v) is nir.Delay]
    assert len(delays) == 1
    np.testing.assert_allclose(delays[0].delay, 2 * dt)
    # Re-discretising the continuous values (as another tool would) gives back the IR parameters.
    stripped = import_nir(_strip_small_metadata(tmp_path / "a.nir", tmp_path / "plain.nir"), dt=dt)
    assert stripped.population("l").neuron.reset == "zero"
    np.testing.assert_allclose(stripped.population("l").neuron.alpha, [0.9, 0.5, 0.75], rtol=1e-9)
    np.testing.assert_allclose(stripped.population("c").neuron.syn_gain, [1.0, 2.0, 3.0], rtol=1e-9)
    np.testing.assert_allclose(vec(stripped.population("c").bias, 3), [0.1, 0.2, 0.3])
    assert projections(stripped).keys() == projections(net).keys()


def _strip_small_metadata(src, dst):
    g = nir.read(src)
    g.metadata = {}
    for node in g.nodes.values():
        node.metadata = {}
    nir.write(dst, g)
    return dst


def test_metadata_edited_away_from_the_continuous_values_loses_with_a_warning(tmp_path):
    net = ir_recurrent()
    write_nir(net, tmp_path / "a.nir")
    g = nir.read(tmp_path / "a.nir")
    g.nodes["h"].tau = g.nodes["h"].tau * 2  # another tool changed the time constant
    nir.write(tmp_path / "edited.nir", g)
    with pytest.warns(SmallWarning, match="'h'.*metadata disagrees"):
        back = import_nir(tmp_path / "edited.nir")
    tau = 2 * net.dt / (1 - 0.95)
    assert_param(back.population("h").neuron, "alpha", np.full(5, 1 - net.dt / tau))


# -----------------------------------------------------------------------------------------
# Norse 1.1's unit error
# -----------------------------------------------------------------------------------------
def norse_graph(kind):
    n = 3
    if kind == "LIF":
        neuron = nir.LIF(tau=np.full(n, 1e-5), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n),
                         v_reset=np.zeros(n))
    else:
        neuron = nir.CubaLIF(tau_syn=np.full(n, 5e-6), tau_mem=np.full(n, 1e-5), r=np.ones(n), v_leak=np.zeros(n),
                             v_threshold=np.ones(n), v_reset=np.zeros(n), w_in=np.full(n, 2.0))
    return graph({"x": inp(n), "fc": nir.Linear(weight=np.eye(n)), "n": neuron, "y": out(n)},
                 [("x", "fc"), ("fc", "n"), ("n", "y")])


@pytest.mark.parametrize("kind", ["LIF", "CubaLIF"])
def test_norse_time_constants_written_as_dt_times_tau_are_corrected_with_a_warning(kind):
    g = norse_graph(kind)
    with pytest.warns(SmallWarning, match=r"'n'.*Norse"):
        net = import_nir(g, framework="norse")
    neuron = net.population("n").neuron
    # tau_mem 1e-5 -> 1e-2 s, tau_syn 5e-6 -> 5e-3 s at dt = 1e-3.
    assert_param(neuron, "alpha", np.full(3, 0.9))
    assert_param(neuron, "gain", np.full(3, 1e-3 * 1.0 / 1e-2))
    if kind == "CubaLIF":
        assert_param(neuron, "alpha_syn", np.full(3, 0.8))
        assert_param(neuron, "syn_gain", np.full(3, 2.0))
    with pytest.raises(NetworkError, match="--framework norse"):
        import_nir(g, dt=1e-3)


def test_norse_correction_needs_every_time_constant_of_the_node_below_dt(recwarn):
    g = norse_graph("CubaLIF")
    g.nodes["n"].tau_mem = np.full(3, 2e-2)  # only tau_syn is short: not Norse's unit error, just unstable
    with pytest.raises(NetworkError, match=r"'n'.*tau_syn.*shorter than dt"):
        import_nir(g, framework="norse")
    assert not [w for w in recwarn if issubclass(w.category, SmallWarning)]


# -----------------------------------------------------------------------------------------
# Bad input
# -----------------------------------------------------------------------------------------
def good_graph(weight=None, edges=None, extra=None, lif_node=None):
    nodes = {"input": inp(4), "fc": nir.Affine(weight=np.full((3, 4), 0.5) if weight is None else weight,
                                               bias=np.zeros(3)),
             "lif": lif_node or lif(3), "output": out(3)}
    nodes.update(extra or {})
    return graph(nodes, edges or [("input", "fc"), ("fc", "lif"), ("lif", "output")])


def bad_truncated(path):
    nir.write(path, good_graph())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def bad_text(path):
    path.write_text("this is not an HDF5 file\n")


def bad_empty_hdf5(path):
    with h5py.File(path, "w") as f:
        f.create_dataset("something", data=np.zeros(3))


def bad_nan(path):
    w = np.full((3, 4), 0.5)
    w[1, 2] = np.nan
    nir.write(path, good_graph(weight=w))


def bad_nan_hidden_by_zero(path):
    w = np.full((3, 4), 0.5)
    w[1, 2] = np.nan
    g = good_graph(weight=w)
    g.nodes["zero"] = nir.Linear(weight=np.zeros((3, 3)))
    g.edges = [("input", "fc"), ("fc", "zero"), ("zero", "lif"), ("lif", "output")]
    nir.write(path, g)


def bad_dangling(path):
    nir.write(path, good_graph(edges=[("input", "fc"), ("fc", "lif"), ("lif", "ghost"), ("lif", "output")]))


def bad_shape(path):
    nir.write(path, good_graph(weight=np.ones((3, 5))))


def bad_neuron_size(path):
    nir.write(path, good_graph(lif_node=lif(5)))


def bad_missing_parameter(path):
    nir.write(path, good_graph())
    with h5py.File(path, "r+") as f:
        del f["node/nodes/lif/tau"]


def bad_pool_window(path):
    pool = nir.SumPool2d(kernel_size=np.array([3, 3]), stride=np.array([1, 1]), padding=np.array([0, 0]))
    g = graph({"input": inp(1, 2, 2), "pool": pool, "n": nir.IF(r=np.ones(1), v_threshold=np.ones(1)), "output": out(1)},
              [("input", "pool"), ("pool", "n"), ("n", "output")])
    nir.write(path, g)


def bad_unknown_type(path):
    nir.write(path, good_graph())
    with h5py.File(path, "r+") as f:
        del f["node/nodes/fc/type"]
        f["node/nodes/fc/type"] = np.bytes_("Dense")


def bad_subgraph_ports(path):
    block = graph({"input": inp(3), "lif": lif(3), "output": out(3)}, [("input", "lif"), ("lif", "out")])
    nir.write(path, graph({"input": inp(4), "fc": nir.Linear(weight=np.ones((3, 4))), "blk": block, "output": out(3)},
                          [("input", "fc"), ("fc", "blk"), ("blk", "output")]))


def bad_negative_tau(path):
    nir.write(path, good_graph(lif_node=lif(3, tau=-1e-2)))


@pytest.mark.parametrize(
    "make_bad, error, patterns",
    [
        (bad_truncated, FileFormatError, ["bad.nir", "truncated"]),
        (bad_text, FileFormatError, ["bad.nir", "not a valid HDF5 file"]),
        (bad_empty_hdf5, FileFormatError, ["not a NIR graph"]),
        (bad_nan, NetworkError, ["'fc'", "NaN"]),
        (bad_nan_hidden_by_zero, NetworkError, ["'fc'", "NaN"]),
        (bad_dangling, NetworkError, ["'ghost'", "does not have"]),
        (bad_shape, NetworkError, ["'fc'", "[3, 5]", "4 values"]),
        (bad_neuron_size, NetworkError, ["'lif'", "5 values", "3 neurons"]),
        (bad_missing_parameter, NetworkError, ["'lif'", "LIF", "malformed"]),
        (bad_pool_window, NetworkError, ["SumPool2d node 'pool'", "window [3, 3] is larger than", "[2, 2]", "smaller kernel"]),
        (bad_unknown_type, UnsupportedError, ["'fc'", "'Dense'", "NIR does not define", "supported: Input, Output",
                                              "CubaLI", "Threshold", "SumPool2d", "AvgPool2d"]),
        (bad_subgraph_ports, NetworkError, ["nested graph 'blk'", "'out'", "correct the edge"]),
        (bad_negative_tau, NetworkError, ["'lif'", "tau", "not positive"]),
    ],
)
def test_bad_files_raise_a_small_error_naming_the_problem(tmp_path, make_bad, error, patterns):
    path = tmp_path / "bad.nir"
    make_bad(path)
    with pytest.raises(error) as info:
        import_nir(path, dt=DT)
    assert isinstance(info.value, SmallError)
    message = str(info.value)
    for pattern in patterns:
        assert pattern in message, f"{pattern!r} not in {message!r}"
    assert "\n" not in message


def test_missing_file_is_a_file_format_error(tmp_path):
    with pytest.raises(FileFormatError, match="does not exist"):
        import_nir(tmp_path / "nope.nir", dt=DT)


def test_unknown_node_in_an_in_memory_graph_is_rejected():
    class Dense(nir.Linear):
        pass

    g = good_graph(extra={"d": Dense(weight=np.ones((3, 3)))},
                   edges=[("input", "fc"), ("fc", "d"), ("d", "lif"), ("lif", "output")])
    with pytest.raises(UnsupportedError, match=r"node 'd' has type 'Dense', which NIR does not define.*supported: .*LIF"):
        import_nir(g, dt=DT)


def test_a_non_spiking_neuron_feeding_another_layer_is_refused():
    li = nir.LI(tau=np.full(3, 1e-2), r=np.ones(3), v_leak=np.zeros(3))
    g = good_graph(extra={"li": li, "fc2": nir.Linear(weight=np.eye(3))},
                   edges=[("input", "fc"), ("fc", "li"), ("li", "fc2"), ("fc2", "lif"), ("lif", "output")])
    with pytest.raises(UnsupportedError, match=r"LI node 'li' feeds LIF node 'lif'.*sends no events"):
        import_nir(g, dt=DT)
