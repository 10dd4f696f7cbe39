"""hdl/host_bridge.py (host protocol v2) under Amaranth's simulator, and compiler/protocol.py.

A Python model of the host's UART drives ``rx`` (bit periods that need not be whole clock
cycles, random phase, per-edge jitter, random idle gaps) with frames from
:class:`compiler.protocol.Codec`; the ``commands`` stream must carry exactly those commands, in
order, under random back-pressure, and configuration frames must come out on ``config``, each
after the commands sent before it. Output events and configuration answers must come back out
of a strict Python UART receiver on ``tx`` as frames :class:`~compiler.protocol.FrameReader`
accepts. Corrupted frames are answered with an error and dropped; noise is skipped and counted.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from amaranth.sim import Simulator

from compiler.capacity import MEM_COLUMNS, MEM_ROUTE_HEADS, MEM_WEIGHTS, Capacity
from compiler.protocol import (E_ACCESS, E_CHECKSUM, E_FRAME, E_OVERFLOW, SYNC_HOST, T_COMMAND, T_DATA,
                               T_ERROR, T_ID, T_OUTPUT, VERSION, Codec, FrameReader, ProtocolError, crc8, frame)
from hdl.events import OP_INPUT, OP_RESET, OP_STEP, OUT_SPIKE, OUT_STEP, OUT_VALUE, command_layout
from hdl.host_bridge import HostBridge, uart_divisor

pytestmark = pytest.mark.rtl

CAP = Capacity(tiles=5, rows=64, cols=64, delay_slots=3, n_inputs=64, route_entries=300, input_entries=200)
DIGITS = Capacity(tiles=4, rows=64, cols=64, delay_slots=1, n_inputs=64, route_entries=96, input_entries=128,
                  levels=16, lanes=8)
G = CAP.geometry
CODEC = Codec.of(CAP)
CLK = 1_000_000


# -- Python models ------------------------------------------------------------------------------

def random_commands(g, rng, n):
    """All three opcodes, negative and extreme payloads, input 0 and the last input."""
    lo, hi = -(1 << (g.arithmetic.input_bits - 1)), (1 << (g.arithmetic.input_bits - 1)) - 1
    cmds = []
    for _ in range(n):
        r = rng.random()
        if r < 0.75:
            cmds.append({"op": OP_INPUT, "input": int(rng.choice([0, g.n_inputs - 1, rng.integers(g.n_inputs)])),
                         "payload": int(rng.choice([lo, hi, -1, rng.integers(lo, hi + 1)]))})
        elif r < 0.92:
            cmds.append({"op": OP_STEP, "input": 0, "payload": 0})
        else:
            cmds.append({"op": OP_RESET, "input": 0, "payload": 0})
    return cmds


def random_outputs(g, rng, n):
    lo, hi = -(1 << (g.arithmetic.v_bits - 1)), (1 << (g.arithmetic.v_bits - 1)) - 1
    events = []
    for _ in range(n):
        kind = int(rng.choice([OUT_SPIKE, OUT_SPIKE, OUT_VALUE, OUT_STEP]))
        tile, col = int(rng.integers(g.tiles)), int(rng.choice([0, g.cols - 1, rng.integers(g.cols)]))
        value = int(rng.choice([lo, hi, -1, rng.integers(lo, hi + 1)])) if kind == OUT_VALUE else 0
        if kind == OUT_STEP:
            tile = col = 0
        events.append({"kind": kind, "tile": tile, "col": col, "value": value})
    return events


def uart_line(chars, period, rng, *, jitter=0.0, max_gap=0.0, lead=5.0, ends=None):
    """The host's ``rx`` line, one level per clock cycle, for ``chars``: (start, 8 data bits LSB
    first, stop bit) tuples or plain bytes. ``period`` in cycles (any float); every edge moves by
    up to ``jitter`` cycles; characters are ``[0, max_gap]`` bits apart; random phase. The cycle
    each character's stop bit ends is appended to ``ends``."""
    edges = []  # (time, level) at each bit's start
    t = lead + rng.random()
    for ch in chars:
        if isinstance(ch, int):
            ch = (0, *((ch >> i) & 1 for i in range(8)), 1)
        for i, bit in enumerate(ch):
            edges.append((t + i * period + rng.uniform(-jitter, jitter), bit))
        if ends is not None:
            ends.append(t + len(ch) * period)
        t += len(ch) * period + rng.uniform(0, max_gap) * period
    n = int(t + 4 * period) + 1
    times = np.array([e[0] for e in edges])
    levels = np.array([e[1] for e in edges])
    idx = np.searchsorted(times, np.arange(n), side="right") - 1  # last edge at or before each cycle
    return [1 if i < 0 else int(levels[i]) for i in idx]


def glitch(width):
    """A low pulse of ``width`` cycles (shorter than half a bit: not a start bit)."""
    return [0] * width + [1] * 20


def uart_decode(levels, divisor):
    """Strict receiver for ``tx``: idle high, every bit exactly ``divisor`` cycles, stop bit high."""
    out, k = bytearray(), 0
    while k < len(levels):
        if levels[k]:
            k += 1
            continue
        bits = []
        for i in range(10):
            cell = levels[k + i * divisor:k + (i + 1) * divisor]
            assert len(cell) == divisor, f"tx: character at cycle {k} cut off by the end of the simulation"
            assert len(set(cell)) == 1, f"tx: bit {i} of the character at cycle {k} is not {divisor} cycles long"
            bits.append(cell[0])
        assert bits[9] == 1, f"tx: stop bit of the character at cycle {k} is low"
        out.append(sum(b << i for i, b in enumerate(bits[1:9])))
        k += 10 * divisor
    return bytes(out)


# -- simulation ---------------------------------------------------------------------------------

def fields(payload, layout):
    return {name: int(getattr(payload, name)) for name, _ in layout}


def run_bridge(bridge, line, *, outputs=(), answer=None, ready=None, tail=3000, hold_config=0):
    """Drive ``rx`` with ``line``, take ``commands`` (``ready(cycle, taken)``, default 1) and
    ``config`` accesses (held ``hold_config`` cycles; answered with ``answer(access) -> (data,
    error)``), offer ``outputs`` events, record ``tx``. Returns what came out: commands and
    accesses in arrival order as ``("command", fields)`` / ``("config", fields)``, the tx bytes,
    the final status."""
    layout = command_layout(bridge.geometry)
    got, levels, status, answers = [], [], {}, []
    n = len(line) + tail

    async def drive(ctx):
        for level in line:
            ctx.set(bridge.rx, level)
            await ctx.tick()
        for _ in range(tail):
            await ctx.tick()
        status.update(overflow=ctx.get(bridge.overflow), framing_error=ctx.get(bridge.framing_error),
                      skipped=ctx.get(bridge.skipped))

    async def take(ctx):
        pending, wait = None, 0
        for cycle in range(n - 1):
            r = ready(cycle, len(got)) if ready else 1
            ctx.set(bridge.commands.ready, r)
            ctx.set(bridge.config.ready, int(wait >= hold_config))
            _, _, valid, payload, cvalid, cpayload = await ctx.tick().sample(
                bridge.commands.valid, bridge.commands.payload, bridge.config.valid, bridge.config.payload)
            value = fields(payload, layout) if valid else None
            if pending is not None:
                assert valid and value == pending, "commands: valid dropped or payload changed while waiting"
            pending = value if valid and not r else None
            if valid and r:
                got.append(("command", value))
            if cvalid:
                assert not valid, "config offered while a command waits"
                if wait >= hold_config:
                    access = {k: int(getattr(cpayload, k)) for k in ("write", "mem", "tile", "addr", "data")}
                    got.append(("config", access))
                    answers.append(answer(access) if answer else (0, 0))
                    wait = 0
                else:
                    wait += 1

    async def respond(ctx):
        done = 0
        for _ in range(n - 1):
            if done < len(answers):
                data, error = answers[done]
                ctx.set(bridge.readback.payload, {"data": data, "error": error})
                ctx.set(bridge.readback.valid, 1)
                await ctx.tick().until(bridge.readback.ready)
                ctx.set(bridge.readback.valid, 0)
                done += 1
            else:
                await ctx.tick()

    async def produce(ctx):
        for ev in outputs:
            ctx.set(bridge.outputs.payload, ev)
            ctx.set(bridge.outputs.valid, 1)
            await ctx.tick().until(bridge.outputs.ready)
            ctx.set(bridge.outputs.valid, 0)

    async def watch(ctx):
        for _ in range(n - 1):
            levels.append(ctx.get(bridge.tx))
            await ctx.tick()

    sim = Simulator(bridge)
    sim.add_clock(1 / CLK)
    for bench in (drive, take, respond, produce, watch):
        sim.add_testbench(bench)
    sim.run()
    return got, FrameReader().feed(uart_decode(levels, bridge.divisor)), status


def commands(got):
    return [v for k, v in got if k == "command"]


# -- 1. commands and configuration in, in order ---------------------------------------------

@pytest.mark.parametrize("period,jitter,seed", [(4.0, 0.4, 0),     # 250 kbaud at 1 MHz: divisor 4
                                                (6.15, 0.5, 1),    # divisor 6 for 6.15 cycles/bit (-2.4 %)
                                                (5.87, 0.5, 2)])   # divisor 6 for 5.87 cycles/bit (+2.2 %)
def test_commands_and_accesses_arrive_exactly_in_order(period, jitter, seed):
    rng = np.random.default_rng(seed)
    bridge = HostBridge(CAP, clk_freq=CLK, baud=round(CLK / period), fifo_depth=6)
    assert bridge.divisor == round(period)
    cmds = random_commands(G, rng, 30)
    assert {c["op"] for c in cmds} == {OP_INPUT, OP_STEP, OP_RESET}
    sent, want = b"", []
    for k, c in enumerate(cmds):
        sent += CODEC.command(c)
        want.append(("command", c))
        if k % 7 == 3:  # a write and a read between commands
            word = int(rng.integers(0, 1 << 40))
            sent += CODEC.write(MEM_COLUMNS, k % 5, k, word) + CODEC.read(MEM_WEIGHTS, 4, 63 * 8 + 7)
            want += [("config", {"write": 1, "mem": MEM_COLUMNS, "tile": k % 5, "addr": k, "data": word}),
                     ("config", {"write": 0, "mem": MEM_WEIGHTS, "tile": 4, "addr": 511, "data": 0})]
    line = uart_line(sent, period, rng, jitter=jitter, max_gap=1.5)
    got, frames, status = run_bridge(bridge, line, ready=lambda c, n: int(rng.random() < 0.7),
                                     answer=lambda a: (a["addr"] * 3, 0))
    assert got == want
    assert frames == [(T_DATA, (511 * 3).to_bytes(CODEC.data_bytes, "little"))] * ((len(want) - len(cmds)) // 2)
    assert status == {"overflow": 0, "framing_error": 0, "skipped": 0}


def test_the_fifo_holds_fifo_depth_commands_and_the_next_one_is_refused():
    rng = np.random.default_rng(5)
    depth = 5
    bridge = HostBridge(CAP, clk_freq=CLK, baud=CLK // 4, fifo_depth=depth)
    cmds = random_commands(G, rng, depth + 1)
    line = uart_line(CODEC.commands(cmds), 4.0, rng)
    stalled = len(line) + 50
    got, frames, status = run_bridge(bridge, line, ready=lambda c, n: int(c > stalled))
    assert commands(got) == cmds[:depth]  # the command that did not fit is the one lost
    assert frames == [(T_ERROR, bytes([E_OVERFLOW]))]
    assert status["overflow"] == 1


# -- 2. answers out ------------------------------------------------------------------------------

@pytest.mark.parametrize("baud,seed", [(CLK // 4, 0), (CLK // 6, 1)])
def test_output_events_and_answers_come_back_as_frames(baud, seed):
    rng = np.random.default_rng(seed)
    bridge = HostBridge(CAP, clk_freq=CLK, baud=baud)
    events = random_outputs(G, rng, 25)
    assert {e["kind"] for e in events} == {OUT_SPIKE, OUT_VALUE, OUT_STEP}
    line = uart_line(Codec.ident() + CODEC.read(MEM_ROUTE_HEADS, 0, 7) + CODEC.write(MEM_WEIGHTS, 1, 2, 3)
                     + CODEC.read(MEM_COLUMNS, 4, 63), bridge.divisor, rng)
    answers = iter([(0x1234, 0), (0, 0), (0, 1)])
    got, frames, status = run_bridge(bridge, line, outputs=events, answer=lambda a: next(answers),
                                     tail=10 * bridge.divisor * (len(events) + 4) * (CODEC.data_bytes + 4))
    outs = [CODEC.output(p) for t, p in frames if t == T_OUTPUT]
    assert outs == events
    others = [(t, p) for t, p in frames if t != T_OUTPUT]
    assert others == [(T_ID, CAP.chip_id.to_bytes(4, "little") + bytes([VERSION])),
                      (T_DATA, (0x1234).to_bytes(CODEC.data_bytes, "little")),  # the write is not answered
                      (T_ERROR, bytes([E_ACCESS]))]
    assert status["skipped"] == 0


# -- 3. corruption, noise, bad frames ----------------------------------------------------------

def test_a_corrupted_frame_is_answered_with_an_error_and_dropped():
    rng = np.random.default_rng(8)
    bridge = HostBridge(CAP, clk_freq=CLK, baud=CLK // 4)
    cmds = [{"op": OP_INPUT, "input": 5, "payload": 9}, {"op": OP_INPUT, "input": 6, "payload": -9},
            {"op": OP_STEP, "input": 0, "payload": 0}]
    data = bytearray(CODEC.commands(cmds))
    size = len(CODEC.command(cmds[0]))
    data[size + 4] ^= 0x10  # a payload bit of the second command
    got, frames, status = run_bridge(bridge, uart_line(bytes(data), 4.0, rng))
    assert commands(got) == [cmds[0], cmds[2]]
    assert frames == [(T_ERROR, bytes([E_CHECKSUM]))]
    assert status["skipped"] == 1


def test_noise_broken_characters_and_unknown_frames_are_skipped():
    rng = np.random.default_rng(3)
    bridge = HostBridge(CAP, clk_freq=CLK, baud=CLK // 4)
    cmds = random_commands(G, rng, 6)
    noise = [int(b) for b in rng.integers(0, 256, 7) if b != SYNC_HOST]
    broken = (0, 1, 0, 1, 1, 0, 0, 1, 0, 0, 1)  # a character whose stop bit is low
    first, rest = CODEC.command(cmds[0]), CODEC.commands(cmds[1:])
    chars = (noise + list(first) + list(frame(SYNC_HOST, 0x7E, b"\x01"))  # unknown type
             + list(frame(SYNC_HOST, T_COMMAND, b"\x01"))                  # a command of the wrong length
             + list(rest[:3]) + [broken] + list(rest))                    # a frame cut short, then all again
    line = uart_line(chars[:len(noise)], 4.0, rng) + glitch(1) + uart_line(chars[len(noise):], 4.0, rng)
    got, frames, status = run_bridge(bridge, line)
    assert commands(got) == cmds
    assert frames == [(T_ERROR, bytes([E_FRAME]))] * 2
    assert status == {"overflow": 0, "framing_error": 1, "skipped": len(noise) + 2 + 1}


def test_a_held_low_line_counts_once():
    rng = np.random.default_rng(6)
    bridge = HostBridge(CAP, clk_freq=CLK, baud=CLK // 4)
    cmds = random_commands(G, rng, 3)
    got, _, status = run_bridge(bridge, [0] * 200 + uart_line(CODEC.commands(cmds), 4.0, rng))
    assert commands(got) == cmds
    assert status["skipped"] == 1


# -- 4. the protocol in pure Python ---------------------------------------------------------------

def test_crc8_is_crc8_smbus_and_frames_carry_it():
    assert crc8(b"123456789") == 0xF4  # the catalogue's check value of CRC-8/SMBUS
    f = frame(SYNC_HOST, T_COMMAND, b"\x01\x02")
    assert f == bytes([0xA5, 0x01, 0x02, 0x01, 0x02, crc8(b"\x01\x02\x01\x02")])


def test_every_single_bit_flip_in_a_board_frame_is_caught():
    events = random_outputs(G, np.random.default_rng(2), 3)
    data = b"".join(CODEC.encode_output(e) for e in events)
    assert [CODEC.output(p) for _, p in FrameReader().feed(data)] == events
    for bit in range(8 * len(data)):
        bad = bytearray(data)
        bad[bit // 8] ^= 1 << (bit % 8)
        reader = FrameReader()
        try:
            got = [CODEC.output(p) for _, p in reader.feed(bytes(bad))]
        except ProtocolError:
            continue
        assert got != events, f"flipping bit {bit} went unnoticed"


def test_frames_split_anywhere_are_reassembled():
    data = b"".join(CODEC.encode_output(e) for e in random_outputs(G, np.random.default_rng(4), 5))
    reader, frames = FrameReader(), []
    for k in range(len(data)):
        frames += reader.feed(data[k:k + 1])
    assert frames == FrameReader().feed(data) and len(frames) == 5


@pytest.mark.parametrize("call,match", [(lambda: CODEC.command({"op": 3}), "op = 3"),
                                        (lambda: CODEC.command({"op": OP_INPUT, "input": 64}), "input = 64"),
                                        (lambda: CODEC.command({"op": OP_INPUT, "payload": 128}), "payload = 128"),
                                        (lambda: CODEC.command({"op": OP_INPUT, "pay": 1}), "unknown field"),
                                        (lambda: CODEC.write(9, 0, 0, 0), "memory 9"),
                                        (lambda: CODEC.write(MEM_WEIGHTS, 5, 0, 0), "tile 5"),
                                        (lambda: CODEC.read(MEM_ROUTE_HEADS, 0, 320), "address 320")])
def test_the_codec_refuses_what_the_chip_cannot_take(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# -- set-up checks and the protocol document -----------------------------------------------------

def test_a_baud_rate_too_high_for_the_clock_is_refused():
    with pytest.raises(ValueError, match=r"baud rate 4000000 is too high for a 12 MHz clock"):
        HostBridge(DIGITS, clk_freq=12_000_000, baud=4_000_000)
    with pytest.raises(ValueError, match=r"baud rate 2500000 cannot be made from a 12 MHz clock"):
        HostBridge(DIGITS, clk_freq=12_000_000, baud=2_500_000)  # 4.8 cycles per bit
    for baud, divisor in [(115200, 104), (921600, 13), (3_000_000, 4)]:
        assert uart_divisor(12_000_000, baud) == divisor


def test_the_protocol_document_shows_what_the_code_computes():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "host-protocol.md").read_text()
    codec = Codec.of(DIGITS)
    cmds = [{"op": OP_RESET}, {"op": OP_INPUT, "input": 3, "payload": -2}, {"op": OP_STEP}]
    assert codec.commands(cmds).hex(" ") in doc
    outs = [{"kind": OUT_SPIKE, "tile": 3, "col": 9}, {"kind": OUT_VALUE, "tile": 1, "col": 2, "value": -300},
            {"kind": OUT_STEP}]
    assert b"".join(codec.encode_output(e) for e in outs).hex(" ") in doc
    assert codec.write(MEM_WEIGHTS, 1, 2, 0x1F).hex(" ") in doc
    assert Codec.ident().hex(" ") in doc
    assert f"fifo_depth = n_inputs + 2 = {DIGITS.n_inputs + 2}" in doc
    for name, field in command_layout(DIGITS.geometry):
        assert re.search(rf"\| `{name}` \| {field.offset}\.\.{field.offset + field.width - 1} \|", doc), name
