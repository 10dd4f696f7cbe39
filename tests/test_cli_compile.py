"""`small compile`, `small faults random` and `small simulate BUILD`: results and refusals."""

import json
from pathlib import Path

import numpy as np
import pytest

from test_cli import run

DIGITS = Path(__file__).resolve().parents[1] / "examples" / "digits" / "digits.nir"
FIXTURES = Path(__file__).parent / "fixtures"


def assert_report_json_unchanged(build: Path, fixture: str) -> None:
    """``report.json`` has the keys and values SMALL wrote before the report was typed (the
    fixture, written by the untyped compiler; the compile time aside), and reads back unchanged."""
    from compiler.mapper import CompileReport

    new, old = (json.loads(p.read_text()) for p in (build / "report.json", FIXTURES / fixture))
    assert CompileReport.from_dict(new).to_dict() == new
    new.pop("compile_seconds"), old.pop("compile_seconds")
    assert new == old


@pytest.fixture(scope="module")
def digits_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("build") / "digits"
    proc = run("compile", DIGITS, "--target", "digital", "--tile", "64x64", "--levels", "16", "-o", out)
    assert proc.returncode == 0, proc.stderr
    return out, proc.stdout


def test_compile_prints_the_summary_and_writes_the_report(digits_build):
    out, stdout = digits_build
    for text in ("tiles", "lower bound", "rows per tile", "fan-in splits", "routing", "quantisation", "traffic",
                 "accuracy"):
        assert text in stdout
    report = json.loads((out / "report.json").read_text())
    for key in ("tiles_used", "tiles_lower_bound", "rows_used_per_tile", "routing_entries", "inter_tile_events_per_step",
                "quantisation_rmse", "accuracy"):
        assert key in report
    assert report["tiles_used"] >= report["tiles_lower_bound"]
    assert len(report["rows_used_per_tile"]) == report["tiles_used"]
    assert abs(report["accuracy"]["reference"] - report["accuracy"]["digital"]) <= 0.01
    # the event bit layouts of this chip, as hdl/events.py defines them (4 tiles, 64x64, 64 inputs)
    events = report["events"]
    assert events["spike"] == {"bits": 8, "fields": {"tile": [0, 2, False], "col": [2, 6, False]}}
    assert events["command"]["fields"]["payload"] == [8, 8, True] and events["output"]["bits"] == 34
    assert_report_json_unchanged(out, "report_digits_digital16.json")
    meta = json.loads((out / "image.json").read_text())
    assert meta["network"]["sha256"] == __import__("hashlib").sha256(DIGITS.read_bytes()).hexdigest()
    assert meta["toolchain"].startswith("small ") and meta["seed"] == 0


def test_simulate_runs_a_build_folder_on_its_target(digits_build, tmp_path):
    out, _ = digits_build
    x = np.load(DIGITS.with_name("test_set.npz"))["x"][:, :8]
    np.save(tmp_path / "x.npy", x)
    proc = run("simulate", out, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    assert proc.returncode == 0, proc.stderr
    assert "digital image" in proc.stdout
    assert np.load(tmp_path / "y.npy").shape == (x.shape[0], 8, 10)


def test_memristive_compile_with_a_fault_map(tmp_path):
    chip = tmp_path / "chip.json"
    proc = run("faults", "random", "--rate", "0.1", "--seed", "1", "--tiles", "6", "-o", chip)
    assert proc.returncode == 0, proc.stderr
    proc = run("compile", DIGITS, "--target", "memristive", "--faults", chip, "-o", tmp_path / "m")
    assert proc.returncode == 0, proc.stderr
    assert "fault-aware" in proc.stdout and "memristive_ideal" in proc.stdout
    faults = json.loads((tmp_path / "m" / "report.json").read_text())["faults"]
    assert faults["stuck_error_rmse_placed"] < faults["stuck_error_rmse_naive"]
    assert_report_json_unchanged(tmp_path / "m", "report_digits_memristive_faults.json")


def test_traffic_and_energy_are_counted_on_the_first_256_test_samples():
    """`measure` counts on the example input (the first 256 of digits' 540 samples), whether the
    counts come from the accuracy run or from a run of their own."""
    from compiler.mapper import CompileOptions, compile_network, input_scales_for
    from sim import chip_simulator
    from sim.evaluate import measure
    from small.flow import load_model_and_test_set

    model = load_model_and_test_set(DIGITS)
    net, test = model.network, model.test
    image = compile_network(net, CompileOptions(target="memristive", levels=5),
                            input_scales=input_scales_for(net, test.x)).image
    energy = {"read_J_per_S": 4e-10, "spike_J": 2e-13, "v_read_V": 0.2, "t_pulse_s": 1e-8, "assumptions": []}
    sim = chip_simulator(image)
    sim.run(test.x[:, :256])
    measured = measure(image, net, test, energy=energy)
    again = measure(image, net, test, energy=energy, known=measured.accuracy)  # no accuracy run
    for m in (measured, again):
        assert m.counted_samples == 256 and m.test_samples == 540
        np.testing.assert_array_equal(m.row_events, sim.row_events)
        np.testing.assert_array_equal(m.spike_counts, sim.spike_counts)
        assert m.energy["row_events_per_inference"] == sim.row_events.sum() / 256
    assert again.accuracy == measured.accuracy


def test_recompiling_gives_byte_identical_images(digits_build, tmp_path):
    out, _ = digits_build
    proc = run("compile", DIGITS, "-o", tmp_path / "again")
    assert proc.returncode == 0
    for name in ("image.json", "image.npz"):
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes()


def corrupt_npz(build):
    data = bytearray((build / "image.npz").read_bytes())
    data[-100] ^= 0x55
    (build / "image.npz").write_bytes(bytes(data))


def newer_version(build):
    meta = json.loads((build / "image.json").read_text())
    meta["version"] = 99
    (build / "image.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("damage,expected", [(corrupt_npz, "corrupt"), (newer_version, "newer SMALL")])
def test_a_damaged_image_is_refused(digits_build, tmp_path, damage, expected):
    import shutil

    out, _ = digits_build
    build = tmp_path / "copy"
    shutil.copytree(out, build)
    damage(build)
    np.save(tmp_path / "x.npy", np.zeros((3, 1, 64), dtype=np.uint8))
    proc = run("simulate", build, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    assert proc.returncode == 2
    assert expected in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "y.npy").exists()


def geometry_mismatch(tmp_path):
    chip = tmp_path / "chip.json"
    assert run("faults", "random", "--rate", "0.1", "--tile", "32x32", "-o", chip).returncode == 0
    return ["--target", "memristive", "--faults", chip]


@pytest.mark.parametrize("make_args,expected", [
    (lambda p: ["--tile", "0x64"], "at least 1 row"),
    (lambda p: ["--tile", "64by64"], "ROWSxCOLS"),
    (lambda p: ["--levels", "1"], "is not a number of conductance levels from 2 to 256"),
    (lambda p: ["--max-tiles", "2"], "--max-tiles is 2"),
    (lambda p: ["--tile", "4x64", "--max-split", "2"], "even when its inputs are split"),
    (geometry_mismatch, "fault map is for 32x32 tiles"),
    (lambda p: ["--faults", p / "missing.json", "--target", "memristive"], "does not exist"),
    (lambda p: ["--target", "digital", "--faults", p / "missing.json"], "does not exist"),
])
def test_bad_compile_requests_fail_cleanly_and_write_nothing(tmp_path, make_args, expected):
    out = tmp_path / "build" / "net"
    proc = run("compile", DIGITS, *make_args(tmp_path), "-o", out)
    assert proc.returncode == 2, proc.stdout
    assert expected in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2 and "Traceback" not in proc.stderr
    assert not out.exists()
    assert not list((tmp_path / "build").glob(".net.*"))  # no temporary folder left behind


def test_compile_refuses_to_replace_a_foreign_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    proc = run("compile", DIGITS, "-o", tmp_path / "mine")
    assert proc.returncode == 2 and "not a SMALL output folder" in proc.stderr
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_faults_random_rejects_a_bad_rate(tmp_path):
    proc = run("faults", "random", "--rate", "1.5", "-o", tmp_path / "c.json")
    assert proc.returncode == 2 and "must lie in [0, 1]" in proc.stderr
    assert not (tmp_path / "c.json").exists()
