"""Hostile values (issue 21): option values checked at parse time, colliding NIR names, inputs out
of range or not finite, a weight outlier that zeroes its tile, a scheduler that never answers.

A user error ends with exit status 2, one line on stderr, no traceback and nothing written.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from compiler.faults import random_faults
from compiler.ir import LIF, Input, Network, Population, Projection
from compiler.mapper import CompileOptions, compile_network
from compiler.netfile import save_network
from sim.analog import AnalogSimulator
from sim.digital import DigitalSimulator
from sim.memristive import IdealMemristiveSimulator
from sim.reference import ReferenceSimulator
from small.errors import SimulationError, SmallWarning, UnsupportedError

import test_cli_l2l

cli = test_cli_l2l.cli  # the fixture: `small` in this process, (exit status, stdout, stderr)


def one_line(err: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def network(weight: np.ndarray, name: str = "net") -> Network:
    """One input, one LIF population, one dense projection."""
    n_tgt, n_src = weight.shape
    return Network(name=name, dt=1e-3, inputs=[Input("x", (n_src,))],
                   populations=[Population("h", n_tgt, LIF(alpha=0.9, v_threshold=2.0))],
                   projections=[Projection("x", "h", weight)], outputs={"y": "h"})


@pytest.fixture(scope="module")
def small_net(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("net") / "net.small"
    save_network(network(np.random.default_rng(0).normal(0.5, 1.0, (6, 8))), path)
    return path


# -- option values, at parse time and at the library's boundary ---------------------------------
@pytest.mark.parametrize("args,message", [
    (("--levels", "0"), "argument --levels: '0' is not a number of conductance levels from 2 to 256"),
    (("--levels", "1000000000"), "'1000000000' is not a number of conductance levels from 2 to 256"),
    (("--seed", "12345678901234567890"), "argument --seed: '12345678901234567890' is not a seed from 0 to 2^63 - 1"),
    (("--seed", "-1"), "'-1' is not a seed"),
    (("--max-tiles", "0"), "argument --max-tiles: '0' is not a positive whole number"),
    (("--max-split", "-3"), "argument --max-split: '-3' is not a positive whole number"),
    (("--dt", "-1"), "argument --dt: '-1' is not a positive number of seconds"),
    (("--dt", "nan"), "'nan' is not a positive number of seconds"),
    (("--dt", "inf"), "'inf' is not a positive number of seconds"),
])
def test_compile_options_are_checked_at_parse_time(small_net, tmp_path, cli, args, message):
    out = tmp_path / "build"
    status, stdout, err = cli("compile", small_net, "-o", out, *args)
    assert status == 2 and message in one_line(err) and not stdout
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args,message", [
    (("--rate", "0.1", "--tiles", "0"), "argument --tiles: '0' is not a positive whole number"),
    (("--rate", "1.5"), "argument --rate: '1.5' is not a valid fraction: it must lie in [0, 1]"),
    (("--rate", "nan"), "argument --rate: 'nan' is not a valid fraction"),
    (("--rate", "0.1", "--high-fraction", "-0.1"), "argument --high-fraction: '-0.1' is not a valid fraction"),
    (("--rate", "0.1", "--seed", "99999999999999999999"), "argument --seed: '99999999999999999999' is not a seed"),
])
def test_faults_random_options_are_checked_at_parse_time(tmp_path, cli, args, message):
    out = tmp_path / "chip.json"
    status, _, err = cli("faults", "random", *args, "-o", out)
    assert status == 2 and message in one_line(err) and not out.exists()


@pytest.mark.parametrize("command", [("sweep", "net.small", "-o", "sweep"), ("l2l", "eval", "run"),
                                     ("analog", "device", "--model", "pcm"), ("verify", "build", "--backpressure")])
def test_every_seed_option_has_the_same_range(tmp_path, cli, command):
    args = [*command, "-1"] if command[-1] == "--backpressure" else [*command, "--seed", "-1"]
    status, _, err = cli(*args)
    assert status == 2 and "'-1' is not a seed from 0 to 2^63 - 1" in one_line(err)
    assert list(tmp_path.iterdir()) == []


def test_the_levels_default_is_still_16_or_the_calibrations():
    from small.cli import build_parser

    assert build_parser().parse_args(["compile", "m.nir", "-o", "b"]).levels is None  # flow.BuildOptions decides


@pytest.mark.parametrize("options,message", [
    (dict(levels=0), "levels 0 is not a number of conductance levels from 2 to 256"),
    (dict(levels=10**9), "levels 1000000000 is not a number of conductance levels from 2 to 256"),
    (dict(levels=16.5), "levels 16.5 is not a number of conductance levels"),
    (dict(seed=12345678901234567890), "seed 12345678901234567890 is not a seed from 0 to 2^63 - 1"),
    (dict(seed=-1), "seed -1 is not a seed"),
    (dict(max_tiles=0), "max_tiles 0 is not a positive whole number"),
    (dict(max_split=0), "max_split 0 is not a positive whole number"),
    (dict(rows=0), "rows 0 is not a positive whole number"),
])
def test_compile_options_give_scripts_the_command_lines_words(options, message):
    with pytest.raises(UnsupportedError, match=message.replace("^", r"\^")):
        CompileOptions(**options).validate()


def test_a_63_bit_seed_compiles_with_metis():
    """l2l derives 63-bit evaluation seeds and compiles with them: the range is pymetis's int64."""
    net = network(np.random.default_rng(1).normal(size=(40, 8)))
    compile_network(net, CompileOptions(rows=8, cols=8, seed=2**63 - 1, partitioner="metis"))


@pytest.mark.parametrize("args,message", [
    ((0, 8, 8, 0.1), "tiles 0 is not a positive whole number"),
    ((2, 8, 8, 1.5), "rate 1.5 is not a valid fraction: it must lie in \\[0, 1\\]"),
    ((2, 8, 8, float("nan")), "rate nan is not a valid fraction"),
])
def test_random_faults_checks_its_arguments(args, message):
    with pytest.raises(UnsupportedError, match=message):
        random_faults(*args)
    with pytest.raises(UnsupportedError, match="high_fraction 2 is not a valid fraction"):
        random_faults(2, 8, 8, 0.1, high_fraction=2)


# -- NIR names that collide once nested graphs are flattened -----------------------------------
def test_colliding_nir_names_are_one_line_and_nothing_written(tmp_path, cli):
    import nir

    def lif():
        return nir.LIF(tau=np.full(3, 0.02), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.ones(3), v_reset=np.zeros(3))

    a = nir.NIRGraph(nodes={"input": nir.Input(np.array([3])), "b": lif(), "output": nir.Output(np.array([3]))},
                     edges=[("input", "b"), ("b", "output")])
    g = nir.NIRGraph(nodes={"x": nir.Input(np.array([3])), "a": a, "a.b": lif(), "y": nir.Output(np.array([3]))},
                     edges=[("x", "a"), ("a", "a.b"), ("a.b", "y")])
    nir.write(tmp_path / "model.nir", g)
    for command in (["import", "-o", tmp_path / "net.small"], ["compile", "-o", tmp_path / "build"]):
        status, _, err = cli(command[0], tmp_path / "model.nir", "--dt", "1e-3", *command[1:])
        assert status == 2 and "'b' of nested graph 'a'" in one_line(err) and "both named 'a.b'" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.nir"]


# -- inputs out of range, NaN and Inf ----------------------------------------------------------
@pytest.fixture(scope="module")
def chips():
    """The digital twin, the ideal memristive and the (noise-free, ideal-device) analog simulator
    of one network whose host inputs are whole numbers (input scale 1)."""
    rng = np.random.default_rng(3)
    net = network(rng.normal(0.02, 0.05, (10, 6)))
    digital = compile_network(net, CompileOptions(target="digital", rows=8, cols=8)).image
    memristive = compile_network(net, CompileOptions(target="memristive", rows=8, cols=8)).image
    return net, [DigitalSimulator(digital), IdealMemristiveSimulator(memristive),
                 AnalogSimulator(memristive, device="ideal", noise=False)]


HOSTILE = np.array([1e30, -1e30, 300.0, -300.0, 127.4, -128.6, 3.0, 0.0])
SATURATED = np.array([127, -128, 127, -128, 127, -128, 3, 0])


def test_every_simulator_saturates_host_values_to_the_signed_8_bit_payload(chips):
    """docs/architecture.md, "Host inputs": clip to [-128, 127] first, so +1e30 is 127, not -128."""
    _, sims = chips
    x = np.tile(HOSTILE[:6], (1, 1, 1))
    for sim in sims:
        np.testing.assert_array_equal(sim.encode_inputs(x), SATURATED[:6][None, None, :], err_msg=type(sim).__name__)
    huge = np.array([[[2**64 - 1, 2**63, 5, 0, 200, 1]]], dtype=np.uint64)
    tiny = np.array([[[-2**63, 2**63 - 1, -5, 0, -129, 128]]], dtype=np.int64)
    for sim in sims:
        np.testing.assert_array_equal(sim.encode_inputs(huge), [[[127, 127, 5, 0, 127, 1]]])
        np.testing.assert_array_equal(sim.encode_inputs(tiny), [[[-128, 127, -5, 0, -128, 127]]])


def test_saturated_runs_equal_runs_of_the_saturated_values_on_every_simulator(chips):
    _, sims = chips
    rng = np.random.default_rng(4)
    x = rng.choice(HOSTILE, size=(30, 3, 6))
    clipped = np.clip(x, -128, 127)
    for sim in sims:
        got, want = sim.run(x).output_array(), sim.run(clipped).output_array()
        np.testing.assert_array_equal(got, want, err_msg=type(sim).__name__)
        assert got.any(), "the inputs must make the network spike for the comparison to mean something"


def test_a_value_beyond_float_range_after_the_input_scale_saturates_without_a_warning(chips):
    net, _ = chips
    image = compile_network(net, CompileOptions(target="memristive", rows=8, cols=8), input_scales={"x": 1e-10}).image
    sim = IdealMemristiveSimulator(image)
    x = np.full((2, 1, 6), 1e300)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xs, _, _ = sim.prepare_inputs(np.concatenate([x, -x]))
    np.testing.assert_array_equal(sim.encode_inputs(xs)[:, 0, 0], [127, 127, -128, -128])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_refused_by_every_simulator_alike(chips, bad):
    net, sims = chips
    x = np.zeros((4, 2, 6))
    x[2, 1, 3] = bad
    for sim in [ReferenceSimulator(net), *sims]:
        with pytest.raises(SimulationError, match="input 'x' contains NaN or Inf"):
            sim.run(x)


def test_simulate_saturates_on_the_command_line_and_refuses_nan(chips, tmp_path, cli):
    net, _ = chips
    save_network(net, tmp_path / "net.small")
    assert cli("compile", tmp_path / "net.small", "--tile", "8x8", "-o", tmp_path / "build")[0] == 0
    rng = np.random.default_rng(5)
    x = rng.choice(HOSTILE, size=(10, 2, 6))
    for name, values in (("x", x), ("clipped", np.clip(x, -128, 127))):
        np.save(tmp_path / f"{name}.npy", values)
        status, _, err = cli("simulate", tmp_path / "build", "--input", tmp_path / f"{name}.npy",
                             "--output", tmp_path / f"{name}_y.npy")
        assert status == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "x_y.npy"), np.load(tmp_path / "clipped_y.npy"))
    x[3, 1, 2] = np.nan
    np.save(tmp_path / "nan.npy", x)
    status, _, err = cli("simulate", tmp_path / "build", "--input", tmp_path / "nan.npy", "--output", tmp_path / "n.npy")
    assert status == 2 and "contains NaN or Inf" in one_line(err) and not (tmp_path / "n.npy").exists()


# -- a weight outlier that zeroes its tile -------------------------------------------------------
def outlier_network() -> Network:
    w = np.random.default_rng(0).normal(0, 1, (20, 30))
    w[3, 7] = 1e30
    return network(w, "outlier")


def test_a_weight_outlier_is_named_with_the_fraction_it_zeroes_and_the_error_is_honest():
    with pytest.warns(SmallWarning) as record:
        report = compile_network(outlier_network(), CompileOptions()).report
    assert len(record) == 1
    message = str(record[0].message)
    assert "weight [3, 7] = 1e+30 of projection 'x' -> 'h'" in message
    assert "99.8 % of that tile group's weights quantise to zero at 16 levels" in message
    # every other weight is lost: the error is their whole size, not 0 % of an RMS the outlier inflates
    assert report.quantisation_rmse_relative == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("levels,scale", [(2, "tile"), (2, "column"), (3, "column"), (16, "tile")])
def test_ordinary_weights_on_a_coarse_grid_give_no_warning(levels, scale):
    net = network(np.random.default_rng(2).normal(0, 1, (20, 30)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SmallWarning)
        compile_network(net, CompileOptions(levels=levels, scale=scale))


def test_the_command_line_prints_the_outlier_warning_as_one_line(tmp_path, cli):
    save_network(outlier_network(), tmp_path / "outlier.small")
    status, out, err = cli("compile", tmp_path / "outlier.small", "-o", tmp_path / "build")
    assert status == 0
    assert err.startswith("warning: weight [3, 7] = 1e+30 of projection 'x' -> 'h'") and err.count("\n") == 1, err
    assert "(100.0 % of the RMS weight)" in out


# -- a scheduler that accepts and never answers, or speaks another protocol ----------------------
class Server:
    """A loopback TCP server in a thread: ``silent`` accepts and says nothing; ``http`` greets
    every connection with an HTTP response. Closed (and its thread ended) on exit."""

    def __init__(self, kind: str):
        self.kind, self.conns = kind, []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.address = f"tcp://127.0.0.1:{self.sock.getsockname()[1]}"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)

    def serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(conn)
            if self.kind == "http":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nhello")

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=5)
        for conn in self.conns:
            conn.close()
        self.sock.close()


@pytest.mark.slow
@pytest.mark.parametrize("kind,message", [
    ("silent", "accepts connections but did not answer as a Dask scheduler within 3 s"),
    ("http", "does not speak Dask's protocol (it answered b'HTTP/1.1'...)"),
])
@pytest.mark.parametrize("command", ["l2l run", "sweep"])
def test_a_scheduler_that_does_not_answer_is_one_line_and_exit_2_within_10_seconds(tmp_path, kind, message, command):
    (tmp_path / "config.toml").write_text(test_cli_l2l.CONFIG)
    out = tmp_path / "out"
    args = (["l2l", "run", tmp_path / "config.toml"] if command == "l2l run"
            else ["sweep", Path(__file__).parents[1] / "examples" / "digits" / "digits.nir"])
    with Server(kind) as server:
        t0 = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "small", *map(str, args), "-o", str(out), "--scheduler",
                                 server.address], capture_output=True, text=True, timeout=60)
        elapsed = time.monotonic() - t0
    assert elapsed < 10, elapsed
    assert result.returncode == 2 and f"{server.address} {message}" in one_line(result.stderr)
    assert result.stderr.startswith(f"small {command.split()[0]}: error: ")
    assert not out.exists()
