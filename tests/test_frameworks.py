"""Sinabs, Rockpool and Spyx files import as their framework computes them.

Fixtures (``tests/fixtures/<framework>_*.nir`` and ``.npz``) were exported and simulated by the
frameworks themselves (``tests/fixtures/make_framework_fixtures.py``); SMALL's reference
simulation must give the same spikes in every layer, at every step, for every sample.
"""

import dataclasses
import re
import warnings
from pathlib import Path

import nir
import numpy as np
import pytest

from compiler import nir_frontend
from compiler.nir_frontend import import_nir
from sim.reference import simulate
from small.errors import NetworkError, SmallWarning

FIXTURES = Path(__file__).parent / "fixtures"
CASES = ["sinabs_iaf", "sinabs_conv", "sinabs_lif", "rockpool_lif", "spyx_lif", "spyx_rlif", "snntorch_conv"]


def load(name, **kwargs):
    data = np.load(FIXTURES / f"{name}.npz")
    framework = str(data["framework"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallWarning)  # Rockpool's batched Input shape
        net = import_nir(FIXTURES / f"{name}.nir", framework=framework, **kwargs)
    return net, data, framework


def layer_mismatches(net, data, framework):
    """Per recorded layer: spikes where SMALL and the framework differ."""
    layers = [k[len("spk__"):] for k in data if k.startswith("spk__")]
    x = data["x"].reshape(*data["x"].shape[:2], -1)
    result = simulate(net, x, record_spikes=layers)
    out = {}
    for layer in layers:
        want = data[f"spk__{layer}"]
        got = result.spikes[layer].reshape(want.shape)
        if framework == "spyx":  # Spyx's spike of step t is SMALL's of step t - 1
            got, want = got[:-1], want[1:]
        out[layer] = int(np.sum(got != want))
    return out


@pytest.mark.parametrize("name", CASES)
def test_every_layers_spikes_match_the_framework_exactly(name):
    net, data, framework = load(name)
    assert float(net.dt) == float(data["dt"])
    mismatches = layer_mismatches(net, data, framework)
    assert len(mismatches) == 2 and sum(v.size for k, v in data.items() if k.startswith("spk__")) > 0
    assert mismatches == dict.fromkeys(mismatches, 0)
    for layer in mismatches:  # neither silent nor saturated: the comparison says something
        assert 0.05 < float(data[f"spk__{layer}"].mean()) < 0.5


def test_snntorch_membrane_readout_is_the_last_linear_layer_of_the_same_step():
    """``Linear -> Leaky -> Linear``: snnTorch's output is the last Linear's value at each step."""
    net, data, framework = load("snntorch_readout")
    assert net.outputs == {"output": "output"} and not net.population("output").neuron.spiking
    assert layer_mismatches(net, data, framework) == {"1": 0}
    got = simulate(net, data["x"]).outputs["output"]
    np.testing.assert_allclose(got, data["value__output"], rtol=0, atol=1e-6)  # float32 sums in another order


@pytest.mark.parametrize("name", ["sinabs_iaf", "sinabs_conv"])
def test_sinabs_fires_at_the_threshold_itself(name):
    """Integer weights and thresholds (as on Speck) put the membrane exactly on the threshold often:
    SMALL's plain ``v > threshold`` would miss those spikes."""
    net, data, framework = load(name)
    assert all(p.neuron.fire_at_threshold and p.neuron.reset == "subtract" for p in net.populations)
    for p in net.populations:
        p.neuron.fire_at_threshold = False
    assert sum(layer_mismatches(net, data, framework).values()) > 0


@pytest.mark.parametrize("name", ["rockpool_lif", "sinabs_lif"])
def test_a_leaky_neuron_that_subtracts_in_the_spikes_own_step(monkeypatch, name):
    """Rockpool and Sinabs decay the membrane after the subtraction (``v = alpha (v - thr) + i``):
    SMALL's neuron is re-parameterised so that its own subtract-after-leak computes the same."""
    net, data, framework = load(name)
    hidden = net.populations[0].neuron
    assert hidden.fire_at_threshold and hidden.reset == "subtract" and np.all(hidden.v_leak < 0)
    # Without the re-parameterisation (SMALL's subtract-after-leak with the file's thresholds)
    # the spikes differ.
    monkeypatch.setitem(nir_frontend.CONVENTIONS, framework,
                        dataclasses.replace(nir_frontend.CONVENTIONS[framework], reset_before_leak=False))
    plain, _, _ = load(name)
    assert np.all(plain.populations[0].neuron.v_leak == 0)
    assert sum(layer_mismatches(plain, data, framework).values()) > 0


def test_rockpools_batched_input_shape_is_read_with_a_warning():
    with pytest.warns(SmallWarning, match=r"Input node 'input' has shape \[1, 12\].*Rockpool"):
        net = import_nir(FIXTURES / "rockpool_lif.nir", framework="rockpool")
    assert net.inputs[0].shape == (12,)


def test_spyx_spikes_leave_one_step_late():
    net, _, _ = load("spyx_rlif")
    delays = {(p.source, p.target): p.delay for p in net.projections}
    assert delays == {("input", "layer_1.layer_1.lif"): 0, ("layer_1.layer_1.lif", "layer_1.layer_1.lif"): 1,
                      ("layer_1.layer_1.lif", "layer_3"): 1}
    # Spyx writes r = beta: a plain NIR reading would scale every input by beta (1 - beta).
    lif = net.population("layer_3").neuron
    np.testing.assert_allclose(lif.gain, 1.0, rtol=1e-6)


@pytest.mark.parametrize("name", CASES)
def test_reset_override_reaches_every_spiking_layer(name):
    net, _, _ = load(name, reset="zero")
    assert {p.neuron.reset for p in net.populations} == {"zero"}


def test_sinabs_convention_refuses_a_file_sinabs_did_not_write(tmp_path):
    g = nir.read(FIXTURES / "sinabs_iaf.nir")
    node = next(n for n in g.nodes.values() if isinstance(n, nir.IF))
    node.r = node.r * 0.5
    path = tmp_path / "edited.nir"
    nir.write(path, g)
    with pytest.raises(NetworkError, match=r"IF node '\w+': r = 0.5, but Sinabs writes every IF with r = 1.*--framework nir"):
        import_nir(path, framework="sinabs")


def test_sinabs_conv_pooling_is_unrolled():
    net, _, _ = load("sinabs_conv")
    sizes = {p.name: p.size for p in net.populations}
    assert list(sizes.values()) == [4 * 8 * 8, 5]
    # SumPool2d(2) is folded into the Linear after it: the 5 outputs read the 256 neurons before it.
    (proj,) = [p for p in net.projections if p.target == net.populations[-1].name]
    assert proj.weight.shape == (5, 256)


# -----------------------------------------------------------------------------------------
# The NIR paper's graphs (neuromorphs/NIR, paper/02_cnn and paper/03_rnn; tests/fixtures/README.md)
# -----------------------------------------------------------------------------------------
BRAILLE = [("paper_braille_noDelay_bias_zero", "zero"), ("paper_braille_noDelay_noBias_subtract", "subtract")]


def paper(name, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallWarning)  # the subgraph files' misnamed edges
        return import_nir(FIXTURES / f"{name}.nir", **kwargs)


def test_the_papers_sinabs_cnn_imports_with_its_pooling_and_fires():
    net = paper("paper_cnn_sinabs", framework="sinabs")
    assert [(p.name, p.size) for p in net.populations] == [("1", 4096), ("3", 4096), ("6", 512), ("10", 256), ("12", 10)]
    assert all(p.neuron.kind == "if" and p.neuron.fire_at_threshold for p in net.populations)
    assert net.inputs[0].shape == (2, 34, 34)
    x = (np.random.default_rng(0).random((20, 2, 2 * 34 * 34)) < 0.1).astype(np.float32)
    result = simulate(net, x, record_spikes=["1", "12"])
    assert result.spikes["1"].mean() > 0.01 and result.outputs["output"].shape == (20, 2, 10)


@pytest.mark.parametrize("name, reset", BRAILLE)
def test_the_papers_braille_subgraph_and_flat_files_give_the_same_spikes(name, reset):
    flat = paper(name, framework="snntorch", reset=reset)
    with pytest.warns(SmallWarning, match=r"nested graph 'lif1': its edges name node 'lif'.*'lif1', is taken"):
        nested = import_nir(FIXTURES / f"{name}_subgraph.nir", framework="snntorch", reset=reset)
    assert [p.neuron.reset for p in nested.populations] == [reset, reset]
    x = (np.random.default_rng(1).random((256, 4, 12)) < 0.3).astype(np.float32)  # 256 steps, as in the paper
    a = simulate(flat, x, record_spikes=["lif1.lif", "lif2"])
    b = simulate(nested, x, record_spikes=["lif1.lif1", "lif2"])
    assert a.spikes["lif1.lif"].sum() > 100 and a.spikes["lif2"].sum() > 10  # the comparison says something
    np.testing.assert_array_equal(a.spikes["lif1.lif"], b.spikes["lif1.lif1"])
    np.testing.assert_array_equal(a.spikes["lif2"], b.spikes["lif2"])


@pytest.mark.parametrize("target", ["digital", "memristive"])
@pytest.mark.parametrize("name, kwargs", [
    *[(f"{n}{s}", {"framework": "snntorch", "reset": r}) for n, r in BRAILLE for s in ("", "_subgraph")],
    pytest.param("paper_cnn_sinabs", {"framework": "sinabs"}, marks=pytest.mark.slow),
])
def test_the_papers_graphs_compile_to_both_targets(name, kwargs, target):
    from compiler.mapper import CompileOptions, compile_network

    net = paper(name, **kwargs)
    image = compile_network(net, CompileOptions(target=target)).image
    assert image.meta["target"] == target and image.meta["n_tiles"] >= 1
    assert [o["population"] for o in image.meta["outputs"]] == [net.outputs["output"]]


@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.parametrize("name, options, values", [
    ("paper_braille_noDelay_bias_zero_subgraph", ["--framework", "snntorch", "--reset", "zero"], False),
    ("snntorch_readout", ["--framework", "snntorch"], True),  # the readout column's values leave the chip
])
def test_the_chip_verifies_on_random_spikes(tmp_path, capsys, name, options, values):
    from small.cli import main

    build = tmp_path / name
    x = tmp_path / "x.npy"
    np.save(x, (np.random.default_rng(2).random((30, 3, 12)) < 0.3).astype(np.float32))
    assert main(["compile", str(FIXTURES / f"{name}.nir"), *options, "-o", str(build)]) == 0
    assert main(["hdl", str(build)]) == 0
    assert main(["verify", str(build), "--simulator", "icarus", "--inputs", str(x)]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and (re.search(r"\b0 LI values", out) is None) == values


# -----------------------------------------------------------------------------------------
# Bad input on the command line: one line naming the node and the fix, exit 2, nothing written
# -----------------------------------------------------------------------------------------
def _snntorch_file_as_sinabs(path):
    path.write_bytes((FIXTURES / "snntorch_leaky.nir").read_bytes())


@pytest.mark.parametrize("make, extra, words", [
    ("bad_unknown_type", ["--dt", "1e-3"], ["node 'fc'", "'Dense'", "NIR does not define"]),
    ("bad_pool_window", ["--dt", "1"], ["SumPool2d node 'pool'", "larger than", "smaller kernel_size"]),
    ("bad_subgraph_ports", ["--dt", "1e-3"], ["nested graph 'blk'", "'out'", "correct the edge"]),
    (_snntorch_file_as_sinabs, ["--framework", "sinabs"], ["LIF node '1'", "Sinabs writes every LIF with r = 1",
                                                           "--framework nir"]),
])
def test_bad_files_fail_in_one_line_with_exit_2_and_write_nothing(tmp_path, capsys, make, extra, words):
    import test_nir
    from small.cli import main

    path = tmp_path / "bad.nir"
    (getattr(test_nir, make) if isinstance(make, str) else make)(path)
    out = tmp_path / "net.small"
    assert main(["import", str(path), "-o", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("small import: error: ") and "\n" not in err and "Traceback" not in err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"
    assert not out.exists()


def test_fire_at_threshold_survives_the_small_network_file(tmp_path):
    from compiler.netfile import load_network, save_network

    net, _, _ = load("sinabs_iaf")
    save_network(net, tmp_path / "net.small")
    again = load_network(tmp_path / "net.small")
    assert again.differences(net) == [] and all(p.neuron.fire_at_threshold for p in again.populations)
    # A network without it writes no such key: older files and their bytes stay as they were.
    plain, _, _ = load("snntorch_conv")
    assert all("fire_at_threshold" not in p.neuron.to_dict() for p in plain.populations)


@pytest.mark.parametrize("framework", ["rockpool", "spyx"])
def test_a_file_another_exporter_wrote_is_read_with_a_warning(framework):
    """snnTorch's r = 1/(1 - beta) is not what Rockpool or Spyx write: readable, but suspicious."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import_nir(FIXTURES / "snntorch_leaky.nir", framework=framework, dt=1e-4)  # snnTorch's step
    messages = [str(w.message) for w in caught if issubclass(w.category, SmallWarning)]
    assert len(messages) == 2 and all(f"{framework} writes r so that the gain is 1" in m for m in messages)
    assert messages[0].startswith("LIF node '1': its r gives an input gain of ")


@pytest.mark.parametrize("name", CASES)
def test_the_frameworks_own_files_import_without_a_gain_warning(name, recwarn):
    data = np.load(FIXTURES / f"{name}.npz")
    import_nir(FIXTURES / f"{name}.nir", framework=str(data["framework"]))
    assert not [w for w in recwarn if "input gain" in str(w.message)]


def test_reset_and_framework_on_the_command_line(tmp_path, capsys):
    from small.cli import main

    braille = str(FIXTURES / "paper_braille_noDelay_bias_zero.nir")
    assert main(["import", braille, "--framework", "snntorch", "--reset", "zero", "-o", str(tmp_path / "b.small")]) == 0
    out = capsys.readouterr().out
    assert "38 x cuba_lif, reset zero" in out and "7 x cuba_lif, reset zero" in out
    assert main(["import", str(FIXTURES / "sinabs_iaf.nir"), "--framework", "sinabs"]) == 0
    assert "20 x if, reset subtract, fires at v >= threshold" in capsys.readouterr().out
    # A .small file is already discretised: --reset is refused like --dt and --framework.
    assert main(["import", str(tmp_path / "b.small"), "--reset", "subtract"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("small import: error: ") and "drop --dt/--framework/--reset" in err and "\n" not in err
    x = tmp_path / "x.npy"
    np.save(x, (np.random.default_rng(0).random((20, 2, 12)) < 0.3).astype(np.float32))
    assert main(["simulate", braille, "--framework", "snntorch", "--reset", "zero", "--input", str(x),
                 "--output", str(tmp_path / "y.npy")]) == 0
    assert np.load(tmp_path / "y.npy").shape == (20, 2, 7)
