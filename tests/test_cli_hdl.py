"""`small hdl` and `small export`: the files a user gets, and the errors for bad builds."""

import json

import pytest

from compiler.mapper import CompileOptions, compile_network
from test_cli import run
from test_compile import random_network

pytestmark = pytest.mark.rtl


def build(path, target="digital", rows=16, cols=16):
    image = compile_network(random_network(0), CompileOptions(target=target, rows=rows, cols=cols, levels=8)).image
    path.mkdir()
    image.save(path)
    return path


def test_hdl_writes_verilog_rtlil_and_a_summary(tmp_path):
    b = build(tmp_path / "net")
    r = run("hdl", b, "--lanes", "4")
    assert r.returncode == 0, r.stderr
    assert "digital tiles of 16x16, 4 lanes a tile" in r.stdout and "step latency" in r.stdout
    hdl = b / "hdl"
    assert sorted(p.name for p in hdl.iterdir()) == ["small_chip.il", "small_chip.v", "summary.json"]
    verilog = (hdl / "small_chip.v").read_text()
    assert "module small_chip(" in verilog and str(tmp_path) not in verilog and "/work" not in verilog
    summary = json.loads((hdl / "summary.json").read_text())
    assert summary["tiles"] > 1 and summary["lanes"] == 4
    assert {"commands__payload", "outputs__payload"} <= {p["name"] for p in summary["ports"]}
    assert any(m["name"].endswith("tile0.weights") for m in summary["memories"])
    # the same build generates the same files
    first = (hdl / "small_chip.v").read_bytes()
    assert run("hdl", b, "--lanes", "4").returncode == 0
    assert (hdl / "small_chip.v").read_bytes() == first


def test_a_memristive_build_generates_controllers_but_no_bitstream(tmp_path):
    b = build(tmp_path / "net", target="memristive")
    r = run("hdl", b)
    assert r.returncode == 0, r.stderr
    assert "memristive tiles of 16x16" in r.stdout and "analog ports" in r.stdout
    ports = {p["name"] for p in json.loads((b / "hdl" / "summary.json").read_text())["ports"]}
    assert {"tile0__row_drive", "tile0__fired", "tile0__settled", "commands__payload"} <= ports
    for args in (["export", b, "--bitstream", "icebreaker"], ["export", b, "--netlist"]):
        r = run(*args)
        assert r.returncode == 2 and "--target digital" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in (b / "hdl").iterdir()) == ["small_chip.il", "small_chip.v", "summary.json"]


def test_the_cli_knows_every_board():
    from hdl.export import BOARDS
    from small.cli import BOARDS as CLI_BOARDS

    assert set(CLI_BOARDS) == set(BOARDS)


def test_an_image_from_a_newer_schema_is_refused(tmp_path):
    b = build(tmp_path / "net")
    meta = json.loads((b / "image.json").read_text())
    meta["version"] += 1
    (b / "image.json").write_text(json.dumps(meta))
    r = run("hdl", b)
    assert r.returncode == 2 and "schema version" in r.stderr and "Traceback" not in r.stderr
    assert not (b / "hdl").exists()


def test_bad_lanes_and_missing_build_are_user_errors(tmp_path):
    b = build(tmp_path / "net")
    r = run("hdl", b, "--lanes", "3")
    assert r.returncode == 2 and "not a power of two" in r.stderr
    r = run("hdl", tmp_path / "nothing")
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = run("export", b)
    assert r.returncode == 2 and "--bitstream" in r.stderr


@pytest.mark.long
def test_a_design_too_large_for_the_device_says_what_overflowed(tmp_path):
    """Seven 16x16 tiles do not fit the UP5K: the error names the resources and nothing is written.

    Two minutes of yosys; tests/test_hdl_export.py checks the same error on a design that
    synthesises in seconds."""
    b = build(tmp_path / "net")
    r = run("export", b, "--bitstream", "icebreaker", "--lanes", "1")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "does not fit the iCE40 UP5K" in r.stderr and "logic cells" in r.stderr and "%" in r.stderr
    assert not (b / "hdl" / "small_chip.bin").exists()
