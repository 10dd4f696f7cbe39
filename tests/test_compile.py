"""The compiler: images that run the network they were compiled from.

The central checks compile random networks whose weights the levels represent exactly
(multiples of 1/8, with a weight of 15/8 into every neuron so every group's MSE-optimal scale
is exactly 1/8). Then quantisation costs nothing, and the ideal memristive image must reproduce
the float64 reference spike for spike: any error in latency alignment, routing, delays, row
keys, partial-sum merges, column placement or parameter rescaling shows up as a difference.
The digital twin is checked against a scalar transcription of docs/architecture.md that walks
the routing table entry by entry.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import scipy.sparse as sp

from small.errors import FileFormatError, UnsupportedError
from compiler.faults import random_faults
from compiler.image import COL_PARTIAL, MODEL_CODES, load_image
from compiler.ir import ALIF, IF, LI, LIF, CubaLI, CubaLIF, Input, Network, Population, Projection
from compiler.mapper import CompileOptions, compile_network, latencies
from sim.digital import DigitalSimulator
from sim.memristive import IdealMemristiveSimulator
from sim.reference import ReferenceSimulator

S = 0.125  # the weight scale every group should find


def exact_weights(rng, n_tgt, n_src, density):
    """Multiples of S in [-15 S, 15 S], with one 15 S weight per target so max|w| = 15 S everywhere."""
    k = rng.integers(-15, 16, size=(n_tgt, n_src)) * (rng.random((n_tgt, n_src)) < density)
    k[np.arange(n_tgt), rng.integers(0, n_src, n_tgt)] = 15
    return k * S


def random_network(seed, n_in=12):
    """Every neuron model, both resets, both firing rules (> and >=), refractory periods, delays
    0..2, recurrence, a dense fan-in."""
    rng = np.random.default_rng(seed)
    p = rng.permutation(4)
    models = {
        "lif": LIF(alpha=0.9, v_threshold=2.0, v_leak=0.25, v_reset=-0.5, refractory=int(p[0] % 3), reset="zero"),
        "cuba": CubaLIF(alpha=0.8, alpha_syn=0.7, v_threshold=1.5, refractory=1, reset="subtract"),
        # integer weights and threshold: the membrane often lands exactly on it, where > and >= differ
        "if": IF(v_threshold=3.0, reset=("zero", "subtract")[seed % 2], refractory=int(p[1] % 2),
                 fire_at_threshold=seed % 2 == 0),
        "alif": ALIF(alpha=0.95, v_threshold=1.0, alpha_adapt=0.9, adapt=0.375, reset="subtract"),
        "li": LI(alpha=0.875, v_leak=0.5),
        "cli": CubaLI(alpha=0.75, alpha_syn=0.5, v_leak=0.25),
    }
    sizes = {"lif": 11, "cuba": 9, "if": 7, "alif": 10, "li": 1, "cli": 2}  # 40: fills 8x8 tiles
    pops = [Population(name, sizes[name], models[name], bias=S * rng.integers(0, 3)) for name in models]
    projs = [
        Projection("x", "lif", exact_weights(rng, 11, n_in, 0.8)),
        Projection("x", "cuba", exact_weights(rng, 9, n_in, 0.5), delay=1),
        Projection("lif", "if", exact_weights(rng, 7, 11, 0.6)),
        Projection("cuba", "if", exact_weights(rng, 7, 9, 0.6), delay=2),
        Projection("x", "alif", exact_weights(rng, 10, n_in, 0.7)),
        Projection("alif", "alif", sp.csr_array(exact_weights(rng, 10, 10, 0.3)), delay=1),
        Projection("if", "lif", exact_weights(rng, 11, 7, 0.4), delay=2),  # a 2-hop cycle needs 2 steps
        Projection("alif", "li", exact_weights(rng, sizes["li"], 10, 1.0)),
        Projection("if", "li", exact_weights(rng, sizes["li"], 7, 1.0), delay=1),
        Projection("lif", "cli", exact_weights(rng, sizes["cli"], 11, 0.8)),
    ]
    return Network("random", 1e-3, [Input("x", (n_in,))], pops, projs,
                   {"spikes_if": "if", "spikes_alif": "alif", "readout": "li", "readout_cuba": "cli"}).validate()


def random_input(seed, n_in=12, steps=40, batch=3):
    return (np.random.default_rng(seed + 100).random((steps, batch, n_in)) < 0.35).astype(np.uint8)


GEOMETRIES = [(8, 8), (16, 12), (64, 64)]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("rows,cols", GEOMETRIES)
def test_ideal_memristive_image_reproduces_the_reference_exactly(seed, rows, cols):
    net = random_network(seed)
    x = random_input(seed)
    image = compile_network(net, CompileOptions(target="memristive", rows=rows, cols=cols, levels=16, seed=seed)).image
    if rows == 8:  # small tiles force fan-in splits and multicast routes
        assert np.any(image.arrays["col_kind"] == COL_PARTIAL)
    np.testing.assert_array_equal(image.arrays["scale"][image.arrays["col_kind"] > 0], S)
    ref = ReferenceSimulator(net, dtype=np.float64).run(x).outputs
    chip = IdealMemristiveSimulator(image).run(x).outputs
    for name in ref:
        np.testing.assert_array_equal(chip[name], ref[name], err_msg=f"output {name}")
    assert ref["spikes_if"].sum() + ref["spikes_alif"].sum() > 10  # the check has spikes to compare


# -- the digital twin against a scalar transcription of docs/architecture.md -----------------
def digital_oracle(image, x):
    """One neuron, one row, one routing entry at a time, exactly as docs/architecture.md reads."""
    a, T, R, C = image.arrays, image.n_tiles, image.rows, image.cols
    ar = image.arithmetic
    lo, hi = -(1 << (ar.v_bits - 1)), (1 << (ar.v_bits - 1)) - 1

    def sat(v):
        return max(lo, min(hi, v))

    def mulr(v, alpha):
        return (v * alpha + (1 << (ar.decay_bits - 1))) >> ar.decay_bits

    w = image.weights()
    steps, batch, n_in = x.shape
    neurons = [(t, c) for t in range(T) for c in range(C) if a["col_kind"][t, c] == 1]
    p = {name: {(t, c): int(a[f"param/{name}"][t, c]) for t, c in neurons}
         for name in ("alpha", "alpha_syn", "alpha_adapt", "leak", "v_init", "threshold", "v_reset", "adapt", "bias",
                      "refractory", "start")}
    latency = max(o["latency"] for o in image.meta["outputs"])
    out = {}
    for b in range(batch):
        state = {n: dict(v=p["v_init"][n], i=0, b=0, c=0, s=0) for n in neurons}
        pending = {}  # step -> set of (tile, row, payload)
        spikes_log = []
        for t in range(steps + latency):
            rows = dict()
            for e in range(n_in):
                for k in range(a["input_ptr"][e], a["input_ptr"][e + 1]):
                    due = t + int(a["input_delay"][k])
                    if t < steps and x[t, b, e]:
                        pending.setdefault(due, []).append((int(a["input_tile"][k]), int(a["input_row"][k]), int(x[t, b, e])))
            for tile, row, val in pending.pop(t, []):
                rows[(tile, row)] = val
            acc = {n: 0 for n in neurons}
            for (tile, row), val in rows.items():
                for c in range(C):
                    if w[tile, row, c] == 0 or a["col_kind"][tile, c] == 0:
                        continue
                    home = (tile, c) if a["col_kind"][tile, c] == 1 else divmod(int(a["merge_to"][tile, c]), C)
                    acc[home] += val * int(w[tile, row, c])
            fired = []
            for n in neurons:
                if t < p["start"][n]:  # before its population's network step 0
                    continue
                st, m = state[n], int(a["col_model"][n])
                drive = sat((acc[n] << ar.frac_bits) + p["bias"][n])
                if m in (MODEL_CODES["cuba_lif"], MODEL_CODES["cuba_li"]):
                    st["i"] = sat(mulr(st["i"], p["alpha_syn"][n]) + drive)
                    drive = st["i"]
                if m in (MODEL_CODES["li"], MODEL_CODES["cuba_li"]):
                    st["v"] = sat(sat(mulr(st["v"], p["alpha"][n]) + p["leak"][n]) + drive)
                    continue
                subtract = a["col_reset"][n] == 1
                v = st["v"]
                if st["s"] and not subtract:
                    v = p["v_reset"][n]
                v = sat(mulr(v, p["alpha"][n]) + p["leak"][n])
                if st["s"] and subtract:
                    v = sat(v - p["threshold"][n])
                blocked = st["c"] > 0
                if blocked:
                    st["c"] -= 1
                else:
                    v = sat(v + drive)
                st["b"] = sat(mulr(st["b"], p["alpha_adapt"][n]) + p["adapt"][n] * st["s"])
                level = p["threshold"][n] + st["b"]
                st["s"] = int((v >= level if a["col_fire"][n] == 1 else v > level) and not blocked)
                if st["s"]:
                    st["c"] = p["refractory"][n]
                    fired.append(n)
                st["v"] = v
            for tile, c in fired:
                for dt_, drow, delay in image.routes(tile * C + c):
                    pending.setdefault(t + 1 + delay, []).append((dt_, drow, 1))
            spikes_log.append({n for n in fired})
        out[b] = spikes_log
    return out, neurons


@pytest.mark.parametrize("seed", range(3))
def test_digital_twin_follows_the_documented_integer_arithmetic(seed):
    net = random_network(seed)
    # Weights off the level grid and a real quantisation: the twin must match the document anyway.
    for proj in net.projections:
        proj.weight = proj.weight * 1.37
    x = random_input(seed, steps=25, batch=2)
    image = compile_network(net, CompileOptions(target="digital", rows=8, cols=8, levels=8, seed=seed)).image
    result = DigitalSimulator(image).run(x, record_spikes=True)
    chip = result.spikes["chip"]
    expected, neurons = digital_oracle(image, x)
    addr = [t * image.cols + c for t, c in neurons]
    sim = DigitalSimulator(image)
    assert list(sim.addr) == addr
    total = 0
    for b, log in expected.items():
        for t, fired in enumerate(log):
            want = np.zeros(len(neurons), dtype=bool)
            want[[neurons.index(n) for n in fired]] = True
            np.testing.assert_array_equal(chip[t, b], want, err_msg=f"sample {b} step {t}")
            total += want.sum()
    assert total > 20


def test_digits_digital_twin_is_within_one_point_of_the_reference(digits):
    from sim.evaluate import accuracy

    net, test = digits
    image = compile_network(net, CompileOptions(target="digital", levels=16)).image
    ref, twin = accuracy(net, test), accuracy(DigitalSimulator(image), test)
    assert abs(ref - twin) <= 0.01, (ref, twin)


@pytest.fixture(scope="module")
def digits():
    from pathlib import Path

    from compiler.nir_frontend import import_nir
    from sim.evaluate import load_test_set

    root = Path(__file__).resolve().parents[1] / "examples" / "digits"
    test = load_test_set(root / "test_set.npz")
    return import_nir(root / "digits.nir", dt=test.dt, framework=test.framework), test


# -- latency alignment ------------------------------------------------------------------------
def chain(delays):
    pops = [Population(f"p{i}", 2, LIF()) for i in range(len(delays))]
    projs = [Projection("x" if i == 0 else f"p{i - 1}", f"p{i}", np.ones((2, 2)), delay=d) for i, d in enumerate(delays)]
    return Network("chain", 1e-3, [Input("x", (2,))], pops, projs, {"out": f"p{len(delays) - 1}"})


def test_zero_delay_layers_get_one_step_of_latency_per_hop():
    assert latencies(chain([0, 0, 0])) == {"p0": 0, "p1": 1, "p2": 2}
    assert latencies(chain([0, 3, 0])) == {"p0": 0, "p1": 0, "p2": 1}  # the delay absorbs the hop


def test_a_cycle_faster_than_its_hops_is_rejected():
    net = chain([0, 0])
    net.projections.append(Projection("p1", "p0", np.ones((2, 2)), delay=1))
    with pytest.raises(UnsupportedError, match="every hop between neurons takes one step"):
        compile_network(net, CompileOptions())


# -- partitioning -------------------------------------------------------------------------------
def community_network(n_comm=6, size=16, seed=0):
    """Communities of ``size`` neurons, all-to-all inside, shuffled so that index order hides them."""
    rng = np.random.default_rng(seed)
    n = n_comm * size
    perm = rng.permutation(n)
    comm = np.empty(n, dtype=int)
    comm[perm] = np.arange(n) // size
    w = (comm[:, None] == comm[None, :]) * 0.5
    np.fill_diagonal(w, 0)
    return Network("comm", 1e-3, [Input("x", (4,))], [Population("p", n, LIF())],
                   [Projection("x", "p", np.ones((n, 4))), Projection("p", "p", sp.csr_array(w), delay=1)], {"o": "p"})


@pytest.mark.parametrize("partitioner", ["metis", "networkx"])
def test_graph_partitioners_find_communities_that_sequential_placement_misses(partitioner):
    net = community_network()
    opts = dict(rows=20, cols=16, levels=16)
    seq = compile_network(net, CompileOptions(partitioner="sequential", **opts)).report
    graph = compile_network(net, CompileOptions(partitioner=partitioner, **opts)).report
    assert graph.tiles_used == graph.tiles_lower_bound == 6
    assert seq.tiles_used > graph.tiles_used
    assert graph.routing_entries < seq.routing_entries


def test_lower_bound_and_columns():
    net = community_network()
    report = compile_network(net, CompileOptions(rows=20, cols=16)).report
    assert report.tiles_used >= report.tiles_lower_bound
    assert max(report.cols_used_per_tile) <= 16 and max(report.rows_used_per_tile) <= 20


# -- faults -----------------------------------------------------------------------------------
def test_fault_aware_placement_reduces_the_stuck_device_error():
    net = random_network(0)
    fmap = random_faults(12, 16, 12, 0.1, seed=1)
    result = compile_network(net, CompileOptions(target="memristive", rows=16, cols=12, faults=fmap))
    faults = result.report.faults
    assert faults.used_cells_with_stuck_device > 0
    assert faults.stuck_error_rmse_placed < faults.stuck_error_rmse_naive
    image = result.image
    pos, neg = image.effective_levels()
    stuck = image.arrays["stuck_pos"] >= 0
    np.testing.assert_array_equal(pos[stuck], image.arrays["stuck_pos"][stuck])
    assert len(set(image.arrays["tile_phys"].tolist())) == image.n_tiles


def test_a_fault_map_for_another_geometry_is_rejected():
    with pytest.raises(UnsupportedError, match="fault map is for 16x16 tiles but --tile is 8x8"):
        compile_network(random_network(0), CompileOptions(target="memristive", rows=8, cols=8,
                                                          faults=random_faults(4, 16, 16, 0.1)))


# -- limits -----------------------------------------------------------------------------------
def test_fan_in_beyond_the_split_limit_and_max_tiles_are_rejected():
    net = random_network(0)
    with pytest.raises(UnsupportedError, match="even when its inputs are split"):
        compile_network(net, CompileOptions(rows=2, cols=8, max_split=2))
    with pytest.raises(UnsupportedError, match="--max-tiles is 2"):
        compile_network(net, CompileOptions(rows=8, cols=8, max_tiles=2))


# -- files ------------------------------------------------------------------------------------
def test_same_input_and_seed_give_byte_identical_images(tmp_path):
    for run in ("a", "b"):
        image = compile_network(random_network(1), CompileOptions(target="memristive", rows=8, cols=8, seed=5,
                                                                  faults=random_faults(40, 8, 8, 0.05, seed=2))).image
        (tmp_path / run).mkdir()
        image.save(tmp_path / run)
    for name in ("image.json", "image.npz"):
        digest = [hashlib.sha256((tmp_path / r / name).read_bytes()).hexdigest() for r in "ab"]
        assert digest[0] == digest[1], name


def test_images_round_trip_and_corruption_is_caught(tmp_path):
    image = compile_network(random_network(2), CompileOptions(rows=8, cols=8)).image
    image.save(tmp_path)
    loaded = load_image(tmp_path)
    assert loaded.meta == image.meta
    for key, value in image.arrays.items():
        np.testing.assert_array_equal(loaded.arrays[key], value)
    data = bytearray((tmp_path / "image.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "image.npz").write_bytes(bytes(data))
    with pytest.raises(FileFormatError, match="corrupt"):
        load_image(tmp_path)


def test_validation_rejects_an_inconsistent_image():
    image = compile_network(random_network(3), CompileOptions(rows=8, cols=8)).image
    image.arrays["g_pos"] = image.arrays["g_pos"].copy()
    image.arrays["g_pos"][0, 0, 0] = 200
    with pytest.raises(FileFormatError, match="above levels - 1"):
        image.validate()
    image = compile_network(random_network(3), CompileOptions(rows=8, cols=8)).image
    image.arrays["route_row"] = image.arrays["route_row"].copy()
    image.arrays["route_row"][:] = 0
    with pytest.raises(FileFormatError, match="more than one"):
        image.validate()


def test_groups_too_wide_for_the_split_limit_are_divided_and_stay_exact():
    net, x = random_network(0), random_input(0)
    image = compile_network(net, CompileOptions(target="memristive", rows=8, cols=32, max_split=3)).image
    merge = image.arrays["merge_to"]
    tile, _ = np.nonzero(merge >= 0)
    partial_tiles = np.unique(np.stack([merge[merge >= 0], tile]), axis=1)[0]
    assert np.bincount(partial_tiles).max() <= 2  # a home tile plus at most two partial tiles per neuron
    ref = ReferenceSimulator(net, dtype=np.float64).run(x).outputs
    chip = IdealMemristiveSimulator(image).run(x).outputs
    for name in ref:
        np.testing.assert_array_equal(chip[name], ref[name])


def test_without_pymetis_auto_falls_back_to_networkx(monkeypatch):
    import compiler.partition as partition

    monkeypatch.setattr(partition, "have_pymetis", lambda: False)
    report = compile_network(community_network(), CompileOptions(rows=20, cols=16)).report
    assert report.partitioner == "networkx" and report.tiles_used == 6
