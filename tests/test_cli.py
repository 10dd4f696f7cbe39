"""The `small` command line: what users script against, and how it fails on bad input."""

import subprocess
import sys

import nir
import numpy as np
import pytest


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "small", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def lif_graph(weight=None, edges=None, extra_nodes=None):
    w = np.full((3, 4), 0.6, dtype=np.float32) if weight is None else weight
    nodes = {
        "input": nir.Input(input_type={"input": np.array([4])}),
        "fc": nir.Affine(weight=w, bias=np.zeros(w.shape[0], dtype=np.float32)),
        "lif": nir.LIF(tau=np.full(3, 2e-3), r=np.full(3, 2.0), v_leak=np.zeros(3), v_threshold=np.ones(3)),
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    nodes.update(extra_nodes or {})
    edges = edges or [("input", "fc"), ("fc", "lif"), ("lif", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "model.nir"
    nir.write(path, lif_graph())
    return path


def test_help_lists_the_subcommands():
    result = run("--help")
    assert result.returncode == 0
    for command in ("import", "simulate", "to-nir", "flow"):
        assert command in result.stdout


def test_simulate_writes_float32_spikes(model, tmp_path):
    x = np.ones((20, 2, 4), np.float32)
    np.save(tmp_path / "x.npy", x)
    result = run("simulate", model, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy", "--dt", "1e-3")
    assert result.returncode == 0, result.stderr
    y = np.load(tmp_path / "y.npy")
    assert y.dtype == np.float32 and y.shape == (20, 2, 3)
    assert set(np.unique(y)) <= {0.0, 1.0} and y.sum() > 0
    # Euler at dt = 1 ms: alpha = 0.5, gain = 1; input 4 * 0.6 = 2.4 per step -> fires every step.
    assert y[:, 0, 0].tolist() == [1.0] * 20


def test_import_saves_a_network_that_simulates_identically(model, tmp_path):
    result = run("import", model, "--dt", "1e-3", "-o", tmp_path / "net.small")
    assert result.returncode == 0, result.stderr
    assert "lif" in result.stdout
    x = (np.random.default_rng(0).random((30, 3, 4)) < 0.3).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    run("simulate", model, "--dt", "1e-3", "--input", tmp_path / "x.npy", "--output", tmp_path / "a.npy")
    run("simulate", tmp_path / "net.small", "--input", tmp_path / "x.npy", "--output", tmp_path / "b.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))


def test_to_nir_round_trip(model, tmp_path):
    assert run("to-nir", model, "--dt", "1e-3", "-o", tmp_path / "back.nir").returncode == 0
    again = nir.read(tmp_path / "back.nir")
    assert isinstance(again.nodes["lif"], nir.LIF)
    np.testing.assert_allclose(again.nodes["lif"].tau, 2e-3)


def write_truncated(tmp_path, model):
    data = model.read_bytes()
    (tmp_path / "bad.nir").write_bytes(data[: len(data) // 2])


def write_text(tmp_path, model):
    (tmp_path / "bad.nir").write_text("this is not HDF5\n")


def write_nan(tmp_path, model):
    w = np.full((3, 4), 0.5, np.float32)
    w[1, 2] = np.nan
    nir.write(tmp_path / "bad.nir", lif_graph(weight=w))


def write_dangling(tmp_path, model):
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "ghost"), ("lif", "output")]
    nir.write(tmp_path / "bad.nir", lif_graph(edges=edges))


def write_mismatch(tmp_path, model):
    nir.write(tmp_path / "bad.nir", lif_graph(weight=np.ones((3, 5), np.float32)))


def write_unsupported(tmp_path, model):
    """A node whose type NIR does not define (every NIR type imports)."""
    import h5py

    nir.write(tmp_path / "bad.nir", lif_graph())
    with h5py.File(tmp_path / "bad.nir", "r+") as f:
        del f["node/nodes/fc/type"]
        f["node/nodes/fc/type"] = np.bytes_("Dense")


@pytest.mark.parametrize(
    "make_bad, expected",
    [
        (write_truncated, "truncated"),
        (write_text, "not a valid HDF5 file"),
        (write_nan, "NaN"),
        (write_dangling, "'ghost'"),
        (write_mismatch, "weight shape [3, 5] but receives 4 values"),
        (write_unsupported, "node 'fc' has type 'Dense', which NIR does not define"),
    ],
)
@pytest.mark.parametrize("command", ["simulate", "import"])
def test_bad_models_fail_with_one_line_and_exit_2(tmp_path, model, make_bad, expected, command):
    make_bad(tmp_path, model)
    np.save(tmp_path / "x.npy", np.zeros((5, 1, 4), np.float32))
    out = tmp_path / "out.npy"
    args = ["--input", tmp_path / "x.npy", "--output", out] if command == "simulate" else ["-o", tmp_path / "net.small"]
    result = run(command, tmp_path / "bad.nir", "--dt", "1e-3", *args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert not out.exists() and not (tmp_path / "net.small").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_unsupported_node_message_lists_the_supported_set(tmp_path, model):
    write_unsupported(tmp_path, model)
    result = run("import", tmp_path / "bad.nir", "--dt", "1e-3")
    assert "supported: Input, Output" in result.stderr and "SumPool2d" in result.stderr


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--input", "{d}/missing.npy", "--dt", "1e-3"], "does not exist"),
        (["--input", "{d}/wrong.npy", "--dt", "1e-3"], "expected [T, batch, 4]"),
        (["--input", "{d}/x.npy", "--dt", "-1"], "positive number"),
        (["--input", "{d}/x.npy", "--framework", "keras"], "invalid choice"),
        (["--input", "{d}/x.npy"], "--dt"),  # framework nir needs a time step
    ],
)
def test_bad_options_fail_cleanly(tmp_path, model, args, expected):
    np.save(tmp_path / "x.npy", np.zeros((5, 1, 4), np.float32))
    np.save(tmp_path / "wrong.npy", np.zeros((5, 1, 7), np.float32))
    args = [a.format(d=tmp_path) for a in args]
    result = run("simulate", model, "--output", tmp_path / "y.npy", *args)
    assert result.returncode == 2, result.stdout
    assert "Traceback" not in result.stderr
    assert expected in result.stderr
    assert not (tmp_path / "y.npy").exists()


def test_help_imports_nothing_heavy():
    code = ("import sys, small.cli; small.cli.build_parser(); "
            "print(sorted(m for m in ('numpy', 'scipy', 'nir', 'h5py', 'compiler', 'sim') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]"
