"""`small verify` and `small flow`: what a user sees, exit codes 0 (equal), 1 (mismatch), 2 (user error)."""

import copy
import json
import os
import shutil

import numpy as np
import pytest

from compiler.image import load_image
from hdl.chip import Chip
from hdl.export import write_hdl
from test_cli import run
from test_cli_hdl import build
from test_compile import random_input

pytestmark = pytest.mark.rtl


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    """A generated 16x16-tile chip and inputs for it."""
    b = build(tmp_path_factory.mktemp("cli") / "net")
    assert run("hdl", b).returncode == 0
    np.save(b.parent / "x.npy", random_input(0, steps=8, batch=3).astype(np.float32))
    return b


def test_verify_passes_and_says_what_it_compared(net):
    r = run("verify", net, "--simulator", "icarus", "--inputs", net.parent / "x.npy", "--samples", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 inputs x 8 steps" in r.stdout and "PASS: the RTL equals sim/digital.py on every event" in r.stdout
    assert "neuron spikes (where they enter the router)" in r.stdout


def test_verify_reports_a_mismatch_with_exit_1(net, tmp_path):
    """The Verilog of a ROM chip with one routing entry changed, checked against the build's image."""
    bad_build = tmp_path / "bad"
    shutil.copytree(net, bad_build, ignore=shutil.ignore_patterns("verify"))
    bad = copy.deepcopy(load_image(net))
    tile, row = bad.arrays["route_tile"], bad.arrays["route_row"]
    i, j = next((i, j) for i in range(tile.size) for j in range(i + 1, tile.size)
                if tile[i] == tile[j] and row[i] != row[j])
    row[[i, j]] = row[[j, i]]  # two routing entries into one tile swap their rows
    assert not np.array_equal(bad.arrays["route_row"], load_image(net).arrays["route_row"])
    write_hdl(Chip(bad, lanes=1), None, bad_build / "hdl")
    # a ROM chip (the network as initial values): run as it powers up, nothing loaded over it
    summary = json.loads((bad_build / "hdl" / "summary.json").read_text())
    del summary["capacity"]
    (bad_build / "hdl" / "summary.json").write_text(json.dumps(summary))
    r = run("verify", bad_build, "--simulator", "icarus", "--inputs", net.parent / "x.npy")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL: first mismatch: sample " in r.stdout and "at tile" in r.stdout, r.stdout


def test_verify_user_errors_exit_2_with_one_line(net, tmp_path):
    cases = [
        (["verify", tmp_path / "nowhere"], "does not exist"),
        (["verify", net, "--inputs", tmp_path / "missing.npy"], "does not exist"),
        (["verify", net, "--samples", "0"], "not a positive whole number"),
    ]
    np.save(tmp_path / "wrong.npy", np.zeros((8, 2, 5), dtype=np.float32))
    cases.append((["verify", net, "--inputs", tmp_path / "wrong.npy"], "expected [T, batch, 12]"))
    no_hdl = tmp_path / "no-hdl"
    shutil.copytree(net, no_hdl, ignore=shutil.ignore_patterns("hdl", "verify"))
    cases.append((["verify", no_hdl, "--inputs", net.parent / "x.npy"], "run `small hdl"))
    cases.append((["verify", net], "has no example_inputs.npy"))
    for args, message in cases:
        r = run(*args)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_a_missing_simulator_is_named_with_how_to_install_it(net):
    env = {**os.environ, "PATH": "/nonexistent"}
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "small", "verify", str(net), "--simulator", "icarus",
                        "--inputs", str(net.parent / "x.npy")], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "Icarus Verilog is not installed" in r.stderr and "apt install iverilog" in r.stderr


def test_waves_are_written(net):
    r = run("verify", net, "--simulator", "icarus", "--inputs", net.parent / "x.npy", "--samples", "1", "--waves")
    assert r.returncode == 0, r.stdout + r.stderr
    wave = next(line.split()[-1] for line in r.stdout.splitlines() if "waveform" in line)
    assert wave.endswith(".fst") and os.path.getsize(wave) > 1000


def test_a_memristive_chip_is_verified_with_ideal_analog_tiles(tmp_path):
    b = build(tmp_path / "mem", target="memristive")
    assert run("hdl", b).returncode == 0
    np.save(tmp_path / "x.npy", random_input(1, steps=6, batch=2).astype(np.float32))
    r = run("verify", b, "--simulator", "icarus", "--inputs", tmp_path / "x.npy")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASS: the RTL equals sim/memristive.py" in r.stdout
    r = run("verify", b, "--uart", "--inputs", tmp_path / "x.npy")
    assert r.returncode == 2 and "--target digital" in r.stderr


@pytest.mark.slow
def test_flow_runs_every_stage_on_a_memristive_network(tmp_path):
    """import -> reference -> compile -> hdl -> verify (the memristive target has no bitstream stage)."""
    r = run("flow", "examples/alif_memory/network.small", "--target", "memristive", "--scale", "column",
            "--samples", "1", "-o", tmp_path / "alif")
    assert r.returncode == 0, r.stdout + r.stderr
    for stage in ("[1/6] import", "[2/6] reference", "[3/6] compile", "[4/6] hdl", "[5/6] verify", "PASS", "[6/6] report",
                  "verified   PASS", "flow done"):
        assert stage in r.stdout, (stage, r.stdout)
