"""A thin Verilog harness around a generated chip, so that cocotb exchanges whole batches of steps.

Driving the chip's host ports from Python costs a co-simulation round trip per clock cycle (a
clock edge awaited in Python, the stream handshakes written and read through VPI): most of the
time of a verification under Verilator went there, not into the design. The harness moves the
per-cycle work into the simulator: :func:`harness_verilog` writes a module ``small_harness`` that
instantiates the chip's Verilog unchanged (module ``small_chip``, from ``small hdl``) and

- streams configuration words from ``cfg_mem`` into the ``config`` port (a programmable chip),
  one access at a time, counting the answers on ``readback`` that have an error bit set;
- streams host command words from ``cmd_mem`` into ``commands`` (``lib.stream`` rules: ``valid``
  held until ``ready``), optionally with pseudo-random gaps (back-pressure);
- takes every ``outputs`` event into ``out_mem`` (``outputs.ready`` high, or pseudo-random);
- takes every spike the router accepts (``chip.router.spikes``, a hierarchical reference: the
  probe of :mod:`verify.testbench`) into ``spk_mem``, tagged with the step of the batch;
- counts clock cycles, and the cycles of each step (``OP_STEP`` taken to ``OUT_STEP`` taken).

The testbench fills the memories, sets the counts and toggles ``req``; the harness answers by
copying ``req`` into ``ack`` when every command has been taken and every ``OP_STEP`` has had its
``OUT_STEP`` (or when nothing moved for ``timeout`` cycles: ``hung``). Python wakes once per batch
(``await Edge(ack)``), not once per cycle. What the harness knows of the event layouts comes from
the testbench at run time (which command is ``OP_STEP``, which output is ``OUT_STEP``, which
readback bit is the error), so the harness depends only on the chip's port widths, read from its
Verilog.

The clock is generated in the harness (``always #5 clk = ~clk``; Verilator builds with
``--timing``), or, with ``clock="cocotb"``, is a port for cocotb's ``Clock``. Every other port of
the chip (a memristive chip's analog ports ``tile<t>__*``) is a port of the harness of the same
name and direction, for :mod:`verify.analog` to drive.

Plain Verilog-2005, for Icarus (``-g2005``) and Verilator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

HARNESS = "small_harness"
CMD_DEPTH = 1 << 15
CFG_DEPTH = 1 << 12
OUT_DEPTH = 1 << 15
SPK_DEPTH = 1 << 16
TAG_BITS = 16
"""Bits of the step tag of a probed spike: a batch holds fewer than 2**16 steps (CMD_DEPTH)."""
HOST_PORTS = ("clk", "rst", "commands__valid", "commands__ready", "commands__payload", "outputs__valid",
              "outputs__ready", "outputs__payload", "config__valid", "config__ready", "config__payload",
              "readback__valid", "readback__ready", "readback__payload")


WRITTEN = ("cmd_mem", "cfg_mem", "n_cmd", "n_cfg", "timeout", "bp_seed", "bp_on", "req", "step_mask", "step_word",
           "done_mask", "done_word", "error_mask")
"""The harness's signals the testbench writes (Verilator: ``public_flat_rw``)."""
READ = ("clk", "out_mem", "spk_mem", "ack", "hung", "n_out", "n_spk", "n_sent", "n_steps", "cfg_errors",
        "cfg_first_error", "cycles", "step_cycles")
"""The harness's signals the testbench reads (Verilator: ``public_flat_rd``)."""


class HarnessError(ValueError):
    pass


@dataclass(frozen=True)
class Port:
    name: str
    direction: str  # "input" or "output"
    width: int


def _module_body(text: str, module: str) -> str:
    m = re.search(rf"^module \\?{re.escape(module)}\s*\(.*?\);(.*?)^endmodule", text, re.M | re.S)
    if not m:
        raise HarnessError(f"the Verilog has no module {module!r}: generate it with `small hdl`")
    return m.group(1)


_DECL = re.compile(r"^\s*(input|output|inout)\s+(?:wire\s+|reg\s+|signed\s+)*(?:\[(\d+):(\d+)\]\s*)?(\S+?)\s*;", re.M)


def ports(text: str, module: str) -> dict[str, Port]:
    """The ports of ``module`` in ``text`` (the declarations yosys writes: ``input [15:0] name;``)."""
    out = {}
    for direction, msb, lsb, name in _DECL.findall(_module_body(text, module)):
        if direction == "inout":
            raise HarnessError(f"module {module} has an inout port {name}: the harness cannot drive it")
        out[name] = Port(name, direction, abs(int(msb) - int(lsb)) + 1 if msb else 1)
    return out


def _router_probe(text: str, top: str) -> int | None:
    """Width of the router's ``spikes__payload`` if ``top`` has an instance ``router`` with that port."""
    m = re.search(r"^\s+(\\\S+|\w+)\s+router\s*\(", _module_body(text, top), re.M)
    if not m:
        return None
    module = m.group(1).lstrip("\\")
    try:
        p = ports(text, module)
    except HarnessError:
        return None
    need = ("spikes__valid", "spikes__ready", "spikes__payload")
    return p["spikes__payload"].width if all(n in p for n in need) else None


def harness_verilog(verilog: str | Path, top: str = "small_chip", *, clock: str = "verilog") -> str:
    """The Verilog of ``small_harness`` around module ``top`` of ``verilog`` (see the module docstring)."""
    if clock not in ("verilog", "cocotb"):
        raise HarnessError(f"clock must be 'verilog' or 'cocotb', not {clock!r}")
    text = Path(verilog).read_text()
    p = ports(text, top)
    for name in ("clk", "rst", "commands__valid", "commands__ready", "commands__payload", "outputs__valid",
                 "outputs__ready", "outputs__payload"):
        if name not in p:
            raise HarnessError(f"module {top} has no port {name}: not a SMALL chip's host interface")
    cw, ow = p["commands__payload"].width, p["outputs__payload"].width
    config = "config__payload" in p
    cfgw = p["config__payload"].width if config else 1
    rbw = p["readback__payload"].width if config else 1
    sw = _router_probe(text, top)
    probe = sw is not None
    sw = sw or 1
    extra = [q for q in p.values() if q.name not in HOST_PORTS]

    def decl(q: Port) -> str:
        return f"  {q.direction} {'' if q.width == 1 else f'[{q.width - 1}:0] '}{q.name};"

    header = ([] if clock == "verilog" else ["clk"]) + [q.name for q in extra]
    L = [f"// generated by verify/harness.py around module {top}: not a part of the chip",
         f"module {HARNESS}({', '.join(header)});"]
    L += [decl(q) for q in extra]
    if clock == "verilog":
        L += ["  reg clk = 1'b0;", "  always #5 clk = ~clk;"]
    else:
        L += ["  input clk;"]
    L += [
        "  reg [2:0] rst_count = 3'd0;",
        "  wire rst = rst_count != 3'd7;  // 7 cycles of reset after time 0",
        "  always @(posedge clk) if (rst) rst_count <= rst_count + 3'd1;",
        "",
        "  // written by the testbench before it toggles req; read only at a batch's start (into the",
        "  // private copies below) and by the sequential logic, so that no combinational logic",
        "  // depends on a signal the testbench can write (Verilator would evaluate it every time step)",
        f"  reg [{cw - 1}:0] cmd_mem [0:{CMD_DEPTH - 1}];",
        f"  reg [{cfgw - 1}:0] cfg_mem [0:{CFG_DEPTH - 1}];",
        "  reg [31:0] n_cmd = 0, n_cfg = 0, timeout = 32'd2000000, bp_seed = 0;",
        "  reg bp_on = 1'b0, req = 1'b0;",
        f"  reg [{cw - 1}:0] step_mask = 0, step_word = 0;  // (command & step_mask) == step_word: OP_STEP",
        f"  reg [{ow - 1}:0] done_mask = 0, done_word = 0;  // (output & done_mask) == done_word: OUT_STEP",
        f"  reg [{rbw - 1}:0] error_mask = 0;  // readback & error_mask != 0: the access was refused",
        "  // read by the testbench once ack equals req",
        f"  reg [{ow - 1}:0] out_mem [0:{OUT_DEPTH - 1}];",
        f"  reg [{sw + TAG_BITS - 1}:0] spk_mem [0:{SPK_DEPTH - 1}];",
        "  reg ack = 1'b0, hung = 1'b0;",
        "  reg [31:0] n_out = 0, n_spk = 0, n_sent = 0, n_steps = 0, cfg_errors = 0, cfg_first_error = 0;",
        "  reg [47:0] cycles = 0, step_cycles = 0;",
        "",
        "  reg [31:0] b_cmd = 0, b_cfg = 0, b_timeout = 0;  // this batch's copies",
        f"  reg [{cw - 1}:0] b_step_mask = 0, b_step_word = 0;",
        f"  reg [{ow - 1}:0] b_done_mask = 0, b_done_word = 0;",
        f"  reg [{rbw - 1}:0] b_error_mask = 0;",
        "  reg running = 1'b0, bp = 1'b0, seeded = 1'b0;",
        "  reg cfg_phase = 1'b0, cfg_wait = 1'b0, cfg_valid = 1'b0, cmd_valid = 1'b0;",
        "  reg [31:0] cmd_ptr = 0, cfg_ptr = 0, pending = 0, idle = 0, step_start_lo = 0;",
        "  reg [1:0] gap = 2'd0;",
        "  reg [31:0] lfsr = 32'd1;",
        f"  reg [{cw - 1}:0] cmd_payload = 0;",
        f"  reg [{cfgw - 1}:0] cfg_payload = 0;",
        "  wire cmd_ready, out_valid;",
        f"  wire [{ow - 1}:0] out_payload;",
        "  wire out_ready = running & (~bp | (lfsr[9:0] < 10'd717));  // about 70 % of cycles under back-pressure",
        "  wire out_taken = out_valid & out_ready;",
        "  wire out_done = out_taken & ((out_payload & b_done_mask) == b_done_word);",
        "  wire cmd_taken = cmd_valid & cmd_ready;",
        "  wire cmd_is_step = (cmd_payload & b_step_mask) == b_step_word;",
    ]
    if config:
        L += ["  wire cfg_ready, rb_valid;", f"  wire [{rbw - 1}:0] rb_payload;",
              "  wire cfg_taken = cfg_valid & cfg_ready;", "  wire rb_taken = cfg_wait & rb_valid;"]
    else:
        L += ["  wire cfg_taken = 1'b0, rb_taken = 1'b0;", f"  wire [{rbw - 1}:0] rb_payload = 0;"]
    if probe:
        L += ["  // every spike the router accepts (the chip's own instance, read in place)",
              "  wire probe_taken = chip.router.spikes__valid & chip.router.spikes__ready;",
              f"  wire [{sw - 1}:0] probe_payload = chip.router.spikes__payload;",
              "  wire probed = 1'b1;"]
    else:
        L += ["  wire probe_taken = 1'b0;", "  wire [0:0] probe_payload = 1'b0;", "  wire probed = 1'b0;"]
    conns = [".clk(clk)", ".rst(rst)", ".commands__valid(cmd_valid)", ".commands__ready(cmd_ready)",
             ".commands__payload(cmd_payload)", ".outputs__valid(out_valid)", ".outputs__ready(out_ready)",
             ".outputs__payload(out_payload)"]
    if config:
        conns += [".config__valid(cfg_valid)", ".config__ready(cfg_ready)", ".config__payload(cfg_payload)",
                  ".readback__valid(rb_valid)", ".readback__ready(cfg_wait)", ".readback__payload(rb_payload)"]
    conns += [f".{q.name}({q.name})" for q in extra]
    L += [f"  {top} chip (", "    " + ",\n    ".join(conns), "  );", ""]
    L += [
        "  always @(posedge clk) begin",
        "    cycles <= cycles + 48'd1;",
        "    lfsr <= {lfsr[30:0], lfsr[31] ^ lfsr[21] ^ lfsr[1] ^ lfsr[0]};",
        "    if (!running) begin",
        "      if (!rst && req != ack) begin  // a new batch",
        "        running <= 1'b1; cfg_phase <= n_cfg != 0; cmd_ptr <= 0; cfg_ptr <= 0; pending <= 0; idle <= 0;",
        "        n_out <= 0; n_spk <= 0; n_steps <= 0; hung <= 1'b0; gap <= 2'd0;",
        "        b_cmd <= n_cmd; b_cfg <= n_cfg; b_timeout <= timeout; bp <= bp_on;",
        "        b_step_mask <= step_mask; b_step_word <= step_word; b_done_mask <= done_mask;",
        "        b_done_word <= done_word; b_error_mask <= error_mask;",
        "        if (bp_on && !seeded) begin lfsr <= bp_seed | 32'd1; seeded <= 1'b1; end",
        "      end",
        "    end else begin",
        "      idle <= idle + 1;",
        "      if (cfg_phase) begin",
        "        if (!cfg_valid && !cfg_wait) begin",
        "          if (cfg_ptr == b_cfg) cfg_phase <= 1'b0;",
        "          else begin cfg_payload <= cfg_mem[cfg_ptr]; cfg_valid <= 1'b1; end",
        "        end",
        "        if (cfg_taken) begin cfg_valid <= 1'b0; cfg_wait <= 1'b1; end",
        "        if (rb_taken) begin",
        "          cfg_wait <= 1'b0; cfg_ptr <= cfg_ptr + 1; idle <= 0;",
        "          if ((rb_payload & b_error_mask) != 0) begin",
        "            if (cfg_errors == 0) cfg_first_error <= cfg_ptr;",
        "            cfg_errors <= cfg_errors + 1;",
        "          end",
        "        end",
        "      end else begin",
        "        if (gap != 2'd0) gap <= gap - 2'd1;",
        "        else if (!cmd_valid && cmd_ptr != b_cmd) begin",
        "          cmd_payload <= cmd_mem[cmd_ptr]; cmd_valid <= 1'b1; cmd_ptr <= cmd_ptr + 1;",
        "        end",
        "        if (cmd_taken) begin",
        "          cmd_valid <= 1'b0; n_sent <= n_sent + 1; idle <= 0;",
        "          if (bp) gap <= lfsr[5:4];",
        "          if (cmd_is_step) step_start_lo <= cycles[31:0];",
        "        end",
        "      end",
        "      if (out_taken) begin",
        f"        if (n_out < {OUT_DEPTH}) out_mem[n_out[{OUT_DEPTH.bit_length() - 2}:0]] <= out_payload;",
        "        n_out <= n_out + 1;",
        "      end",
        "      if (out_done) begin",
        "        n_steps <= n_steps + 1; idle <= 0;",
        "        step_cycles <= step_cycles + (cycles[31:0] - step_start_lo);",
        "      end",
        "      pending <= pending + (cmd_taken && cmd_is_step) - out_done;",
        "      if (probe_taken) begin",
        f"        if (n_spk < {SPK_DEPTH}) spk_mem[n_spk[{SPK_DEPTH.bit_length() - 2}:0]] <= "
        f"{{n_steps[{TAG_BITS - 1}:0], probe_payload}};",
        "        n_spk <= n_spk + 1;",
        "      end",
        "      if (!cfg_phase && cmd_ptr == b_cmd && !cmd_valid && pending == 0) begin",
        "        running <= 1'b0; ack <= req;  // the batch is done",
        "      end else if (idle >= b_timeout) begin",
        "        running <= 1'b0; hung <= 1'b1; ack <= req;",
        "      end",
        "    end",
        "  end",
        "endmodule",
        "",
    ]
    return "\n".join(L)


def verilator_control(verilog: str | Path, top: str = "small_chip") -> str:
    """A Verilator control file: the harness's signals the testbench writes are ``public_flat_rw``,
    those it only reads ``public_flat_rd``, the chip's other ports (analog tiles) ``public_flat_rw``;
    nothing of the chip is public (its router is probed by the harness, inside the design)."""
    p = ports(Path(verilog).read_text(), top)
    lines = ["`verilator_config"]
    lines += [f'public_flat_rw -module "{HARNESS}" -var "{v}"' for v in WRITTEN]
    lines += [f'public_flat_rd -module "{HARNESS}" -var "{v}"' for v in READ]
    lines += [f'public_flat_rw -module "{HARNESS}" -var "{q.name}"' for q in p.values() if q.name not in HOST_PORTS]
    return "\n".join(lines) + "\n"


def harness_info(verilog: str | Path, top: str = "small_chip") -> dict:
    """What the testbench needs to know of the harness it runs: the depths of its memories (``*_depth``:
    how much the testbench puts in a batch, ``*_size``: what the harness stores) and whether it
    probes the router and has a configuration port."""
    text = Path(verilog).read_text()
    p = ports(text, top)
    return {"cmd_depth": CMD_DEPTH, "cfg_depth": CFG_DEPTH, "out_depth": OUT_DEPTH, "spk_depth": SPK_DEPTH,
            "out_size": OUT_DEPTH, "spk_size": SPK_DEPTH, "tag_bits": TAG_BITS,
            "probe": _router_probe(text, top) is not None, "config": "config__payload" in p}
