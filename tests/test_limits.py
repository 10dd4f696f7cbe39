"""Sizes declared by a file or an option are checked against the memory budget before allocation.

Each hostile input is a few hundred bytes that declares GiB to TiB. The command runs in a
subprocess whose address space is capped at a few GiB, so an attempted huge allocation would end
in a MemoryError traceback instead of the clean refusal: exit 2, one line naming the size and
the limit, no traceback, nothing written.
"""

import io
import os
import subprocess
import sys
import zipfile

import h5py
import nir
import numpy as np
import pytest

from small.errors import SmallError
from small.limits import MEMORY_ENV, check_memory, memory_budget

# An address-space cap that the interpreter with numpy, scipy and h5py fits in but no refused size does.
_CAP = 3 << 30
_RUN = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap})); "
        "from small.cli import main; sys.exit(main(sys.argv[1:]))").format(cap=_CAP)


def small(tmp_path, *args, budget="1"):
    """Run ``small ARGS`` in ``tmp_path`` under the cap with a memory budget of ``budget`` GiB."""
    env = {**os.environ, MEMORY_ENV: budget}
    return subprocess.run([sys.executable, "-c", _RUN, *map(str, args)], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=120)


def files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def refused(tmp_path, *args, needs, budget="1"):
    """Assert that ``small ARGS`` is refused cleanly, naming ``needs``; return its error line."""
    before = files(tmp_path)
    result = small(tmp_path, *args, budget=budget)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr
    assert len(lines) == 1 or lines[-1].startswith(("usage:", "small")), result.stderr
    assert needs in lines[-1] and "needs" in lines[-1], lines[-1]
    assert files(tmp_path) == before
    return lines[-1]


def graph(n_in=4, n_out=3, in_shape=None):
    nodes = {
        "input": nir.Input(input_type={"input": np.array(in_shape or [n_in])}),
        "fc": nir.Affine(weight=np.full((n_out, n_in), 0.6, dtype=np.float32), bias=np.zeros(n_out, dtype=np.float32)),
        "lif": nir.LIF(tau=np.full(n_out, 2e-3), r=np.full(n_out, 2.0), v_leak=np.zeros(n_out),
                       v_threshold=np.ones(n_out)),
        "output": nir.Output(output_type={"output": np.array([n_out])}),
    }
    return nir.NIRGraph(nodes=nodes, edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")], type_check=False)


def npy_header(shape, descr="<f8"):
    """The bytes of a ``.npy`` file that declares ``shape`` and holds no data."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "model.nir"
    nir.write(path, graph())
    return path


def test_nir_linear_of_a_billion_inputs_is_refused_before_reading(tmp_path, model):
    # a chunked, compressed dataset that was never written takes no room in the file
    with h5py.File(model, "a") as f:
        del f["node/nodes/fc/weight"]
        f.create_dataset("node/nodes/fc/weight", shape=(3, 10**9), dtype="f4", chunks=(1, 2**20), compression="gzip")
    assert model.stat().st_size < 100_000
    line = refused(tmp_path, "import", model, "-o", "net.small", "--dt", "1e-3", needs="[3, 1000000000]")
    assert "fc/weight" in line and MEMORY_ENV in line


def test_nir_conv2d_on_a_4000x4000_input_is_refused(tmp_path):
    path = tmp_path / "conv.nir"
    conv = nir.Conv2d(input_shape=np.array([4000, 4000]), weight=np.ones((1, 1, 3, 3), dtype=np.float32),
                      stride=1, padding=1, dilation=1, groups=1, bias=np.zeros(1))
    lif = nir.LIF(tau=np.array([2e-3]), r=np.array([2.0]), v_leak=np.zeros(1), v_threshold=np.ones(1))
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([1, 4000, 4000])}), "conv": conv,
                            "lif": lif, "output": nir.Output(output_type={"output": np.array([1, 4000, 4000])})},
                     edges=[("input", "conv"), ("conv", "lif"), ("lif", "output")], type_check=False)
    nir.write(path, g)
    # 16 million neurons: refused by a small budget as they are declared ...
    refused(tmp_path, "import", path, "-o", "net.small", "--dt", "1e-3", needs="[1, 4000, 4000]")
    # ... and, where they would fit, the unrolled convolution's 144 million taps are refused
    line = refused(tmp_path, "import", path, "-o", "net.small", "--dt", "1e-3", needs="144000000 kernel taps", budget="8")
    assert "conv" in line


def test_composed_dense_layers_are_refused_before_multiplying(tmp_path):
    # two 8 MB layers through a width of 10 compose into 10^5 x 10^5 synapses
    n = 100_000
    g = nir.NIRGraph(nodes={
        "input": nir.Input(input_type={"input": np.array([n])}),
        "a": nir.Linear(weight=np.ones((10, n), dtype=np.float32)),
        "b": nir.Linear(weight=np.ones((n, 10), dtype=np.float32)),
        "lif": nir.LIF(tau=np.array([2e-3]), r=np.array([2.0]), v_leak=np.zeros(1), v_threshold=np.ones(1)),
        "output": nir.Output(output_type={"output": np.array([n])}),
    }, edges=[("input", "a"), ("a", "b"), ("b", "lif"), ("lif", "output")], type_check=False)
    nir.write(tmp_path / "deep.nir", g)
    refused(tmp_path, "import", "deep.nir", "-o", "net.small", "--dt", "1e-3", needs="10000000000 synapses")


def test_npy_input_declaring_64e9_floats_is_refused(tmp_path, model):
    (tmp_path / "x.npy").write_bytes(npy_header((64, 10**9)))
    assert (tmp_path / "x.npy").stat().st_size < 200
    line = refused(tmp_path, "simulate", model, "--input", "x.npy", "--output", "y.npy", "--dt", "1e-3",
                   needs="[64, 1000000000]")
    assert "477 GiB" in line


def test_npz_test_set_member_declaring_terabytes_is_refused(tmp_path, model):
    with zipfile.ZipFile(tmp_path / "test.npz", "w") as zf:
        zf.writestr("x.npy", npy_header((10**6, 10**6, 4)))
        zf.writestr("labels.npy", npy_header((10**6,), "<i8"))
    line = refused(tmp_path, "compile", model, "-o", "build", "--dt", "1e-3", "--test-set", "test.npz", needs="[1000000, 1000000, 4]")
    assert "'x.npy'" in line


def test_small_file_member_declaring_terabytes_is_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "net.small", "w") as zf:
        zf.writestr("network.json.npy", npy_header((10**12,), "<U4"))
    refused(tmp_path, "compile", "net.small", "-o", "build", needs="[1000000000000]")


def test_npz_member_that_is_not_an_array_counts_its_size(tmp_path):
    from small.fileio import read_npz

    with zipfile.ZipFile(tmp_path / "a.npz", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("raw", b"\0" * (2 << 20))
    os.environ[MEMORY_ENV] = "0.001"
    try:
        with pytest.raises(SmallError, match="all its arrays"):
            read_npz(tmp_path / "a.npz")
    finally:
        del os.environ[MEMORY_ENV]


def test_a_tile_of_10_billion_cells_is_refused_at_parse_time(tmp_path, model):
    line = refused(tmp_path, "compile", model, "-o", "build", "--tile", "100000x100000", needs="100000x100000",
                   budget="")
    assert "tile" in line


def test_an_image_larger_than_the_budget_is_refused_before_allocation(tmp_path):
    nir.write(tmp_path / "wide.nir", graph(n_in=4, n_out=300))
    # one 256x200 tile (0.8 MiB) fits a 1 MiB budget; the two this network needs do not
    line = refused(tmp_path, "compile", "wide.nir", "-o", "build", "--dt", "1e-3", "--tile", "256x200", needs="2 tiles of 256x200",
                   budget=str(1 / 1024))
    assert "102400 cells" in line


@pytest.mark.parametrize("config, needs", [
    ('[run]\ntask = "function"\ngenerations = 1\n[optimizer]\nname = "cmaes"\npopsize = 1000000000000\n',
     "popsize 1000000000000"),
    ('[run]\ntask = "function"\ngenerations = 1\n[task]\nn = 1000000000\n[optimizer]\nname = "cmaes"\n',
     "n 1000000000"),
    ('[run]\ntask = "arm"\ngenerations = 1\n[task]\nbatch = 1000000000\n[optimizer]\nname = "cmaes"\n',
     "batch 1000000000"),
    ('[run]\ntask = "arm"\ngenerations = 1\n[task]\nn_lif = 10000000\n[optimizer]\nname = "cmaes"\n',
     "10000020 neurons"),
])
def test_l2l_population_and_problem_sizes_are_refused(tmp_path, config, needs):
    (tmp_path / "config.toml").write_text(config)
    refused(tmp_path, "l2l", "run", "config.toml", "-o", "run", "--workers", "0", needs=needs)


def test_l2l_eval_of_a_trillion_trajectories_is_refused(tmp_path):
    from pathlib import Path

    model = Path(__file__).resolve().parents[1] / "examples" / "arm"
    refused(tmp_path, "l2l", "eval", model, "--n", str(10**12), "--no-baseline", needs="1000000000000 trajectories")


def test_trajectory_file_declaring_terabytes_is_refused(tmp_path):
    from l2l.tasks.arm import TrajectoryFileError, load_trajectories

    with zipfile.ZipFile(tmp_path / "t.npz", "w") as zf:
        zf.writestr("angles.npy", npy_header((10**9, 250, 2)))
    with pytest.raises(TrajectoryFileError, match=r"\[1000000000, 250, 2\]"):
        load_trajectories(tmp_path / "t.npz")


def test_budget_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(MEMORY_ENV, "2")
    assert memory_budget() == 2 << 30
    with pytest.raises(SmallError, match=f"more than SMALL's memory limit of 2 GiB: set {MEMORY_ENV}=3"):
        check_memory(3 << 30, "this", error=SmallError)
    monkeypatch.setenv(MEMORY_ENV, "lots")
    with pytest.raises(SmallError, match="not a positive number of GiB"):
        memory_budget()


def test_verify_and_simulate_read_inputs_through_the_same_check(tmp_path, monkeypatch):
    from small.errors import SimulationError
    from small.flow import read_inputs

    (tmp_path / "x.npy").write_bytes(npy_header((64, 10**9)))
    monkeypatch.setenv(MEMORY_ENV, "1")
    with pytest.raises(SimulationError, match=r"input file .* declares shape \[64, 1000000000\] of float64"):
        read_inputs(tmp_path / "x.npy")
