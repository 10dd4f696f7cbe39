"""`small sweep`: the grid's figures, the Pareto front, resuming, Dask, and refusals.

The network is a small two-layer LIF classifier (30 inputs, 24 hidden, 4 outputs) whose
accuracy moves with the levels, so the sweep has something to find; it runs in milliseconds
per point.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from compiler.ir import LIF, Input, Network, Population, Projection
from compiler.netfile import save_network
from sim.evaluate import TestSet
from small.cli import main
from small.sweep import CSV_COLUMNS, PLOTS, Grid, Point, run_sweep

GRID = ("--tile", "8x8,16x16", "--levels", "2,16", "--stuck", "0,0.2")  # 2 x 2 x 2 points
ENERGY = {"v_read_V": 0.2, "t_pulse_s": 1e-8, "read_J_per_S": 4e-10, "spike_J": 2e-13, "assumptions": []}


def toy(seed: int = 0, samples: int = 48) -> tuple[Network, TestSet]:
    """Four classes of noisy spike patterns; hidden neurons tuned to a class, outputs summing them."""
    rng = np.random.default_rng(seed)
    n_in, n_hidden, n_out, steps = 30, 24, 4, 20
    proto = (rng.random((n_out, n_in)) < 0.3).astype(float)
    cls = np.arange(n_hidden) % n_out
    w1 = 0.35 * (proto[cls] - 0.3) + rng.normal(0, 0.1, (n_hidden, n_in))
    w2 = np.where(cls[None, :] == np.arange(n_out)[:, None], 0.6, -0.2) + rng.normal(0, 0.1, (n_out, n_hidden))
    net = Network(name="toy", dt=1e-3, inputs=[Input("x", (n_in,))],
                  populations=[Population("hidden", n_hidden, LIF(alpha=0.9, v_threshold=1.0)),
                               Population("out", n_out, LIF(alpha=0.9, v_threshold=1.0))],
                  projections=[Projection("x", "hidden", w1), Projection("hidden", "out", w2)], outputs={"out": "out"})
    labels = np.arange(samples) % n_out
    x = (rng.random((steps, samples, n_in)) < np.where(proto[labels] > 0, 0.4, 0.15)).astype(np.uint8)
    return net, TestSet(x, labels)


def write_model(folder: Path, seed: int = 0, samples: int = 48) -> Path:
    folder.mkdir(parents=True)
    net, test = toy(seed, samples)
    save_network(net, folder / "toy.small")
    np.savez(folder / "test_set.npz", x=test.x, labels=test.labels)
    return folder / "toy.small"


def sweep(*args) -> tuple[int, str, str]:
    """`small sweep ARGS` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["sweep", *map(str, args)])
        except SystemExit as exc:  # argparse
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def point_files(out: Path) -> list[Path]:
    return sorted(p for p in (out / "points").glob("*.json") if not p.name.startswith("."))


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_model(tmp_path_factory.mktemp("models") / "toy")


@pytest.fixture(scope="module")
def swept(model, tmp_path_factory):
    """The 2 x 2 x 2 sweep, serial: its folder and stdout."""
    out = tmp_path_factory.mktemp("sweeps") / "toy"
    code, stdout, stderr = sweep(model, *GRID, "-o", out, "--workers", "0")
    assert code == 0, stderr
    return out, stdout


@pytest.mark.spice
def test_sweep_writes_one_row_per_point_plots_and_the_pareto_front(swept):
    out, stdout = swept
    rows = read_csv(out / "sweep.csv")
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(r["rows"], r["cols"], r["levels"], r["stuck"]) for r in rows] == [
        (t, t, lv, s) for t in ("8", "16") for lv in ("2", "16") for s in ("0", "0.2")]
    assert all(r["status"] == "ok" for r in rows)
    for r in rows:
        assert int(r["tiles"]) >= int(r["tiles_lower_bound"]) >= 1
        assert (int(r["stuck_cells"]) > 0) == (r["stuck"] != "0")
        assert 0 < float(r["row_utilisation"]) <= 1 and 0 < float(r["col_utilisation"]) <= 1
        assert float(r["energy_pj_per_inference"]) > 0 and float(r["inter_tile_events_per_step"]) > 0
    assert len({r["reference_accuracy"] for r in rows}) == 1
    # Two levels cost accuracy against sixteen, on every tile size (the network is built so).
    acc = {(r["rows"], r["levels"], r["stuck"]): float(r["accuracy"]) for r in rows}
    assert all(acc[t, "2", "0"] < acc[t, "16", "0"] for t in ("8", "16"))
    # Brute force: a point is on the front unless another is as good in all three and better in one.
    figures = [(float(r["accuracy"]), -int(r["tiles"]), -float(r["energy_pj_per_inference"])) for r in rows]
    for r, f in zip(rows, figures):
        dominated = any(all(a >= b for a, b in zip(g, f)) and g != f for g in figures)
        assert r["pareto"] == ("false" if dominated else "true")
    assert any(r["pareto"] == "true" for r in rows)
    for name in PLOTS:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", data[16:24])
        assert width > 300 and height > 200
    lines = stdout.splitlines()
    assert sum(line.startswith("*") and "ok" in line for line in lines) == sum(r["pareto"] == "true" for r in rows)
    assert "points/s" in stdout and "sweep.csv" in stdout
    assert len(point_files(out)) == 8 and not list(out.rglob(".*"))


def test_a_points_figures_do_not_depend_on_the_rest_of_the_grid(tmp_path):
    net, test = toy()
    alone = run_sweep(net, test, Grid([(8, 8)], [16], [0.2]), tmp_path / "one", energy=ENERGY, plots=False,
                      progress=lambda line: None)
    grid = run_sweep(net, test, Grid([(8, 8), (16, 16)], [2, 16], [0, 0.2]), tmp_path / "all", energy=ENERGY,
                     plots=False, progress=lambda line: None)
    point = Point(8, 8, 16, 0.2)
    [a] = alone.points
    [b] = [r for r in grid.points if r.point == point]
    assert a.ok and a.figures["stuck_cells"] > 0
    assert a.figures == b.figures
    one, many = (json.loads((tmp_path / d / "points" / f"{point.name}.json").read_text()) for d in ("one", "all"))
    del one["timing"], many["timing"]
    assert one == many


@pytest.mark.spice
def test_a_rerun_computes_only_the_missing_points(swept, model, tmp_path):
    out = tmp_path / "toy"
    shutil.copytree(swept[0], out)
    files = point_files(out)
    lost, kept = files[3], files[:3] + files[4:]
    lost.unlink()
    stamps = {p: p.stat().st_mtime_ns for p in kept}
    code, stdout, stderr = sweep(model, *GRID, "-o", out, "--workers", "0")
    assert code == 0, stderr
    assert "7 of 8 points already done" in stdout and "1 points computed" in stdout
    assert lost.is_file() and {p: p.stat().st_mtime_ns for p in kept} == stamps
    assert (out / "sweep.csv").read_bytes() == (swept[0] / "sweep.csv").read_bytes()
    # A grid extended with another level count keeps the points it has.
    code, stdout, stderr = sweep(model, *GRID[:3], "2,4,16", *GRID[4:], "-o", out, "--workers", "0")
    assert code == 0, stderr
    assert "8 of 12 points already done" in stdout
    old = {tuple(r.values())[:-1] for r in read_csv(swept[0] / "sweep.csv")}  # the Pareto column may change
    new = read_csv(out / "sweep.csv")
    assert len(new) == 12 and old <= {tuple(r.values())[:-1] for r in new}


@pytest.mark.spice
def test_a_killed_sweep_continues_where_it_stopped(tmp_path):
    # More samples than the other tests, so that a point takes long enough to be killed in between.
    model = write_model(tmp_path / "toy", samples=400)
    grid = ("--tile", "8x8,16x16", "--levels", "2,4,16", "--stuck", "0,0.2")
    code, _, stderr = sweep(model, *grid, "-o", tmp_path / "whole", "--workers", "0")
    assert code == 0, stderr
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "small", "sweep", str(model), *grid, "-o", str(out), "--workers", "0"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (out / "points").is_dir() or not point_files(out):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    done = len(point_files(out))
    assert 1 <= done < 12 and not (out / "sweep.csv").exists()
    rerun = subprocess.run(command, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{done} of 12 points already done" in rerun.stdout
    assert (out / "sweep.csv").read_bytes() == (tmp_path / "whole" / "sweep.csv").read_bytes()
    assert not list(out.rglob(".*"))  # no temporary left by the killed writer


@pytest.mark.spice
def test_two_dask_workers_give_the_serial_csv(swept, model, tmp_path):
    code, stdout, stderr = sweep(model, *GRID, "-o", tmp_path / "dask", "--workers", "2")
    assert code == 0, stderr
    assert "local Dask cluster of 2 workers" in stdout
    assert (tmp_path / "dask" / "sweep.csv").read_bytes() == (swept[0] / "sweep.csv").read_bytes()
    workers = {json.loads(p.read_text())["timing"]["worker"] for p in point_files(tmp_path / "dask")}
    assert workers and all(int(w.rsplit(":", 1)[1]) != os.getpid() for w in workers)  # Dask's worker processes


@pytest.mark.spice
def test_a_design_that_does_not_fit_is_a_failed_point(model, tmp_path):
    code, stdout, stderr = sweep(model, "--tile", "4x4,16x16", "--levels", "4", "--max-split", "2", "-o",
                                 tmp_path / "s", "--workers", "0")
    assert code == 0, stderr
    small, large = read_csv(tmp_path / "s" / "sweep.csv")
    assert small["status"].startswith("failed: neuron") and "reads 30 rows" in small["status"]
    assert small["accuracy"] == small["tiles"] == "" and small["pareto"] == "false"
    assert large["status"] == "ok" and large["pareto"] == "true"
    assert "failed: neuron" in stdout


@pytest.mark.parametrize("args, message", [
    (("--levels", "1"), "'1' is not a number of conductance levels from 2 to 256"),
    (("--levels", "4,x"), "'x' is not a number of conductance levels"),
    (("--levels", "300"), "'300' is not a number of conductance levels"),
    (("--levels", "4,,8"), "has an empty item"),
    (("--stuck", "1"), "'1' is not a stuck-device rate in [0, 1)"),
    (("--stuck", "-0.1"), "is not a stuck-device rate"),
    (("--stuck", "nan"), "is not a stuck-device rate"),
    (("--tile", "64by64"), "'64by64' is not ROWSxCOLS"),
    (("--tile", "0x8"), "at least 1 row and 1 column"),
    (("--workers", "-1"), "is not a whole number >= 0"),
])
def test_bad_grid_values_are_one_line_errors(model, tmp_path, args, message):
    code, stdout, stderr = sweep(model, *args, "-o", tmp_path / "s", "--workers", "0")
    assert code == 2 and message in stderr
    assert stderr.startswith("small sweep: error: argument ") and len(stderr.splitlines()) == 1
    assert not (tmp_path / "s").exists()


def test_missing_model_and_test_set_are_one_line_errors(model, tmp_path):
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    shutil.copy(model, lonely / "toy.small")
    for args, message in (
        ((tmp_path / "nothing.small",), "does not exist"),
        ((lonely / "toy.small",), "no labelled test set beside"),
        ((lonely / "toy.small", "--test-set", tmp_path / "none.npz"), "test set"),
    ):
        code, stdout, stderr = sweep(*args, "-o", tmp_path / "s", "--workers", "0")
        assert code == 2 and stderr.startswith("small sweep: error: ") and message in stderr
        assert len(stderr.splitlines()) == 1 and "Traceback" not in stderr
        assert not (tmp_path / "s").exists()
    # And from a real process: one line on stderr, no traceback.
    proc = subprocess.run([sys.executable, "-m", "small", "sweep", lonely / "toy.small", "-o", tmp_path / "s"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1 and "no labelled test set" in proc.stderr


@pytest.mark.spice
def test_a_sweep_of_another_model_is_refused_unless_forced(swept, model, tmp_path):
    out = tmp_path / "toy"
    shutil.copytree(swept[0], out)
    before = snapshot(out)
    other = write_model(tmp_path / "other", seed=1)
    for args, message in (((other,), "holds a sweep of another model"),
                          ((model, "--seed", "1"), "made with --seed 0, not 1"),
                          ((model, "--samples", "10"), "made with --samples 48, not 10")):
        code, stdout, stderr = sweep(*args, *GRID, "-o", out, "--workers", "0")
        assert code == 2 and message in stderr and "--force" in stderr
        assert len(stderr.splitlines()) == 1 and "Traceback" not in stderr
        assert snapshot(out) == before
    code, stdout, stderr = sweep(other, *GRID, "-o", out, "--workers", "0", "--force")
    assert code == 0, stderr
    assert "already done" not in stdout
    record = json.loads((out / "sweep.json").read_text())
    assert record["model"]["sha256"] == __import__("hashlib").sha256(other.read_bytes()).hexdigest()
    assert (out / "sweep.csv").read_bytes() != before["sweep.csv"]


def test_a_folder_that_is_not_a_sweep_is_never_touched(model, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    for force in ((), ("--force",)):
        code, stdout, stderr = sweep(model, "-o", out, "--workers", "0", *force)
        assert code == 2 and "holds no sweep" in stderr and len(stderr.splitlines()) == 1
        assert snapshot(out) == {"notes.txt": b"keep me"}
