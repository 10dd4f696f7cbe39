"""The schemas of image.json and fault maps, and image.json's checksum, as a user meets them.

A hand-edited or hostile file is refused with exit status 2 and one line naming the file, the
field and what it must be, before anything is allocated or written (docs/hardware-image.md).
"""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from compiler.image import json_checksum, load_image
from test_build_folders import snapshot
from test_cli import lif_graph, run
from test_cli_l2l import cli  # noqa: F401  (fixture: `small` in this process)


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """A digital build of a small model, compiled once; tests edit copies of it."""
    import nir

    folder = tmp_path_factory.mktemp("schemas")
    nir.write(folder / "model.nir", lif_graph())
    proc = run("compile", folder / "model.nir", "--dt", "1e-3", "--tile", "8x8", "-o", folder / "net")
    assert proc.returncode == 0, proc.stderr
    return folder / "net"


def edited(build: Path, tmp_path: Path, edit) -> Path:
    """A copy of ``build`` whose image.json ``edit(meta)`` changed (written as SMALL writes JSON)."""
    copy = tmp_path / "edited"
    shutil.copytree(build, copy)
    meta = json.loads((copy / "image.json").read_text())
    edit(meta)
    (copy / "image.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    return copy


def assert_refused(status, err, expected, folder, before):
    assert status == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert expected in err, err
    assert snapshot(folder) == before  # nothing written


# The edits of issue 21, each with the words of its refusal.
IMAGE_EDITS = {
    "extra field in arithmetic": (lambda m: m["arithmetic"].update(carry_bits=3),
                                  "arithmetic has the unknown field 'carry_bits'"),
    "negative decay_bits": (lambda m: m["arithmetic"].update(decay_bits=-2),
                            "arithmetic.decay_bits must be >= 1, not -2"),
    "v_bits 0": (lambda m: m["arithmetic"].update(v_bits=0), "arithmetic.v_bits must be >= 2, not 0"),
    "population without size": (lambda m: m["populations"][0].pop("size"), "populations[0] lacks the field 'size'"),
    "string for a list": (lambda m: m.update(populations="lif"), "populations must be a list, not 'lif'"),
    "shape as a string": (lambda m: m["inputs"][0].update(shape="4"), "inputs[0].shape must be a list"),
    "levels 10^9": (lambda m: m.update(levels=10**9), "levels must be <= 256, not 1000000000"),
    "dt -1": (lambda m: m["network"].update(dt=-1), "network.dt must be > 0, not -1"),
    "dt NaN": (lambda m: m["network"].update(dt=math.nan), "network.dt must be a finite number"),
    "latency -5": (lambda m: m["populations"][0].update(latency=-5), "populations[0].latency must be >= 0, not -5"),
    "latency 10^12": (lambda m: m["outputs"][0].update(latency=10**12), "outputs[0].latency must be <= 65535"),
    "delay_slots 10^9": (lambda m: m.update(delay_slots=10**9), "delay_slots must be <= 32768, not 1000000000"),
    "tile rows as a float": (lambda m: m["tile"].update(rows=8.0), "tile.rows must be an integer, not 8.0"),
}


@pytest.mark.parametrize("command", ["simulate", "hdl"])
@pytest.mark.parametrize("case", list(IMAGE_EDITS))
def test_an_image_json_breaking_its_schema_is_refused_in_one_line(build, tmp_path, cli, command, case):
    edit, expected = IMAGE_EDITS[case]
    folder = edited(build, tmp_path, edit)
    np.save(tmp_path / "x.npy", np.zeros((3, 1, 4)))
    before = snapshot(tmp_path)
    args = ["--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy"] if command == "simulate" else []
    status, _, err = cli(command, folder, *args)
    assert_refused(status, err, f"invalid hardware image {folder / 'image.json'}: {expected}", tmp_path, before)


def test_a_hand_edited_image_is_named_as_such_and_an_image_without_checksum_loads(build, tmp_path, cli):
    folder = edited(build, tmp_path, lambda m: m.update(levels=m["levels"] - 1))  # still valid by the schema
    before = snapshot(tmp_path)
    status, _, err = cli("hdl", folder)
    assert_refused(status, err, "image.json was edited by hand (its checksum differs): recompile it", tmp_path, before)
    # an image written before the checksum (or one whose user dropped it to run the edit) loads
    shutil.rmtree(folder)
    folder = edited(build, tmp_path, lambda m: m.pop("json_sha256"))
    assert load_image(folder).levels == load_image(build).levels
    # re-indenting the file is no edit
    meta = json.loads((build / "image.json").read_text())
    (folder / "image.json").write_text(json.dumps(meta))
    assert load_image(folder).meta == meta


def test_the_checksum_covers_the_description_without_itself(build):
    meta = json.loads((build / "image.json").read_text())
    assert meta["json_sha256"] == json_checksum(meta)
    assert json_checksum({**meta, "seed": meta["seed"] + 1}) != meta["json_sha256"]


def fault_map(stuck, tiles=4, rows=8, cols=8):
    return {"format": "small-faults", "version": 1, "geometry": {"tiles": tiles, "rows": rows, "cols": cols},
            "stuck": stuck}


FAULT_MAPS = {
    "float index": (fault_map([[0, 1.5, 2, "pos", "high"]]), "stuck[0][1] must be an integer, not 1.5"),
    "whole float index": (fault_map([[0, 1, 2.0, "neg", "low"]]), "stuck[0][2] must be an integer, not 2.0"),
    "10^12 tiles": (fault_map([], tiles=10**12), "geometry.tiles must be <= 65536, not 1000000000000"),
    "10^6 rows": (fault_map([], rows=10**6), "geometry.rows must be <= 65536, not 1000000"),
    "too many devices": (fault_map([], tiles=60000, rows=64, cols=64), "geometry 60000 tiles of 64x64 holds 491520000 devices, more than the 268435456"),
    "stuck high and low": (fault_map([[1, 2, 3, "pos", "high"], [1, 2, 3, "pos", "low"]]),
                           "stuck[0] [1, 2, 3, 'pos', 'high'] and stuck[1] [1, 2, 3, 'pos', 'low'] name the same device"),
    "listed twice": (fault_map([[1, 2, 3, "neg", "low"], [0, 0, 0, "pos", "low"], [1, 2, 3, "neg", "low"]]),
                     "stuck[0] [1, 2, 3, 'neg', 'low'] and stuck[2] [1, 2, 3, 'neg', 'low'] name the same"),
    "outside the geometry": (fault_map([[0, 8, 0, "pos", "high"]]), "stuck[0] [0, 8, 0, 'pos', 'high'] lies outside"),
    "negative index": (fault_map([[-1, 0, 0, "pos", "high"]]), "stuck[0][0] must be >= 0, not -1"),
    "unknown state": (fault_map([[0, 0, 0, "pos", "stuck"]]), "stuck[0][4] must be one of 'high', 'low'"),
    "short entry": (fault_map([[0, 0, 0, "pos"]]), "stuck[0] must have at least 5 entries"),
    "stuck not a list": (fault_map({"0": "pos"}), "stuck must be a list"),
}


@pytest.mark.parametrize("case", list(FAULT_MAPS))
def test_a_bad_fault_map_is_refused_in_one_line_before_allocation(build, tmp_path, cli, case):
    doc, expected = FAULT_MAPS[case]
    (tmp_path / "chip.json").write_text(json.dumps(doc))
    before = snapshot(tmp_path)
    status, _, err = cli("compile", build / "network.small", "--target", "memristive", "--tile", "8x8",
                         "--faults", tmp_path / "chip.json", "-o", tmp_path / "out")
    assert_refused(status, err, f"invalid fault map {tmp_path / 'chip.json'}: {expected}", tmp_path, before)


def test_a_valid_fault_map_with_both_devices_of_a_cell_stuck_compiles(build, tmp_path, cli):
    (tmp_path / "chip.json").write_text(json.dumps(fault_map([[0, 1, 2, "pos", "high"], [0, 1, 2, "neg", "low"]])))
    status, _, err = cli("compile", build / "network.small", "--target", "memristive", "--tile", "8x8",
                         "--faults", tmp_path / "chip.json", "-o", tmp_path / "out")
    assert status == 0, err
    assert "stuck_pos" in load_image(tmp_path / "out").arrays


def test_faults_random_refuses_zero_tiles_and_writes_nothing(tmp_path, cli):
    status, _, err = cli("faults", "random", "--tiles", "0", "-o", tmp_path / "chip.json")
    assert status == 2 and "--tiles" in err and "Traceback" not in err
    assert not (tmp_path / "chip.json").exists()


CALIBRATION = {"schema": 1, "device": "pcm", "levels": 5, "g_min_uS": 0.0, "g_max_uS": 25.0}
CALIBRATIONS = {
    "levels 1": ({"levels": 1}, "'levels' must be an integer in [2, 256], not 1"),
    "levels 5.0": ({"levels": 5.0}, "'levels' must be an integer in [2, 256], not 5.0"),
    "an unknown device": ({"device": "vteam"}, "'device' must be one of pcm, tiox, not 'vteam'"),
    "g_max below g_min": ({"g_min_uS": 3.0, "g_max_uS": 2.0}, "'g_max_uS' must be a number above g_min_uS, not 2.0"),
    "infinite g_max": ({"g_max_uS": math.inf}, "Infinity is not a number in JSON"),
    "an unknown field": ({"gain": 2}, "has the unknown field 'gain'"),
    "a negative wire resistance": ({"ir_drop": {"r_wire_ohm": -1}}, "'ir_drop.r_wire_ohm' must be a number of ohms >= 0"),
    "energy figures missing": ({"energy": {"spike_J": 1e-13}}, "energy lacks the field 'read_J_per_S'"),
}


@pytest.mark.parametrize("case", list(CALIBRATIONS))
def test_a_bad_calibration_file_is_refused_in_one_line(build, tmp_path, cli, case):
    change, expected = CALIBRATIONS[case]
    (tmp_path / "calib.json").write_text(json.dumps({**CALIBRATION, **change}))
    before = snapshot(tmp_path)
    status, _, err = cli("compile", build / "network.small", "--target", "memristive", "--tile", "8x8",
                         "--calibration", tmp_path / "calib.json", "-o", tmp_path / "out")
    assert_refused(status, err, expected, tmp_path, before)


def test_a_minimal_calibration_file_compiles(build, tmp_path, cli):
    (tmp_path / "calib.json").write_text(json.dumps(CALIBRATION))
    status, out, err = cli("compile", build / "network.small", "--target", "memristive", "--tile", "8x8",
                           "--calibration", tmp_path / "calib.json", "-o", tmp_path / "out")
    assert status == 0, err
    assert load_image(tmp_path / "out").levels == 5
