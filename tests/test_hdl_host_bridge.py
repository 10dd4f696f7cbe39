"""hdl/host_bridge.py: the frame helpers in pure Python, the bridge under Amaranth's simulator.

A Python model of the host's UART drives ``rx`` (bit periods that need not be whole clock
cycles, random phase, per-edge jitter, random idle gaps) with :func:`encode_commands` bytes; the
``commands`` stream must carry exactly those commands, in order, under random back-pressure up to
the FIFO's capacity. Output events pushed into ``outputs`` must come back out of a strict Python
UART receiver on ``tx`` (every bit exactly ``divisor`` cycles, idle high) and through
:func:`decode_outputs`. Noise, broken characters and bad frames are skipped and counted; one
frame more than the FIFO holds sets ``overflow``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from amaranth.sim import Simulator

from hdl.events import (OP_INPUT, OP_RESET, OP_STEP, OUT_SPIKE, OUT_STEP, OUT_VALUE, Geometry, command_layout,
                        output_layout)
from hdl.host_bridge import (SYNC_COMMAND, SYNC_OUTPUT, HostBridge, decode_commands, decode_outputs,
                             encode_commands, encode_outputs, frame_bytes, uart_divisor)

pytestmark = pytest.mark.rtl

G = Geometry(tiles=5, rows=64, cols=64, delay_slots=3, n_inputs=64)
DIGITS = Geometry(tiles=4, rows=64, cols=64, delay_slots=1, n_inputs=64)  # examples/digits, default options
CLK = 1_000_000
GEOMETRIES = [G, DIGITS, Geometry(tiles=1, rows=8, cols=8, delay_slots=1, n_inputs=1),
              Geometry(tiles=17, rows=128, cols=100, delay_slots=6, n_inputs=784)]


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


def run_rx(bridge, line, *, stall_plan=None, tail=400):
    """Drive ``rx`` with ``line``; take ``commands`` with ``ready = stall_plan(cycle, taken)``
    (default always ready) and check the stream rules. Returns (commands, final status)."""
    g = bridge.geometry
    got, status = [], {}

    async def drive(ctx):
        for level in line:
            ctx.set(bridge.rx, level)
            await ctx.tick()
        for _ in range(tail):
            await ctx.tick()
        status.update(overflow=ctx.get(bridge.overflow), framing_error=ctx.get(bridge.framing_error),
                      skipped=ctx.get(bridge.skipped))

    async def take(ctx):
        pending = None
        for cycle in range(len(line) + tail - 1):
            ready = stall_plan(cycle, len(got)) if stall_plan else 1
            ctx.set(bridge.commands.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(bridge.commands.valid, bridge.commands.payload)
            value = fields(payload, command_layout(g)) if valid else None
            if pending is not None:
                assert valid, "commands: valid dropped before the command was taken"
                assert value == pending, "commands: payload changed while waiting for ready"
            pending = value if valid and not ready else None
            if valid and ready:
                got.append(value)

    sim = Simulator(bridge)
    sim.add_clock(1 / CLK)
    sim.add_testbench(drive)
    sim.add_testbench(take)
    sim.run()
    return got, status


class StepFlowControl:
    """A chip that takes no commands for a while, as long as the host obeys the flow-control rule.

    It stalls until ``fill`` frames (random in ``[1, depth]``, often ``depth``) wait in the FIFO
    (it knows from the line model when each frame's stop bit ends), then takes commands with
    random ``ready`` for a while, and stalls again. ``full`` counts the stalls that filled the
    FIFO to ``depth``. The next frame always ends a frame time later than the stall does.
    """

    def __init__(self, rng, depth, frame_ends, divisor):
        self.rng, self.depth, self.divisor = rng, depth, divisor
        self.ends = frame_ends
        self.until = None  # stall while cycle < until
        self.drain = 0     # cycles of random ready left
        self.full = 0

    def __call__(self, cycle, taken):
        if self.until is None and self.drain == 0:
            fill = int(self.rng.choice([self.depth, self.rng.integers(1, self.depth + 1)]))
            last = min(taken + fill, len(self.ends)) - 1  # the last frame to wait for
            self.until = self.ends[last] + 2 * self.divisor  # its stop bit checked and the frame in the FIFO
            self.full += last - taken + 1 == self.depth
        if self.until is not None:
            if cycle < self.until:
                return 0
            self.until = None
            self.drain = int(self.rng.integers(1, 6 * self.depth))
        self.drain -= 1
        return int(self.rng.random() < 0.6)


def run_tx(bridge, events, *, seed=0, p_valid=0.5, tail=None):
    """Offer ``events`` on ``outputs`` with random valid gaps; record ``tx`` every cycle."""
    rng = np.random.default_rng(seed)
    d = bridge.divisor
    frame_cycles = 10 * bridge.output_bytes * d
    tail = tail if tail is not None else 3 * frame_cycles
    levels, taken, done = [], [], []

    async def produce(ctx):
        for ev in events:
            while rng.random() >= p_valid:
                await ctx.tick()
            ctx.set(bridge.outputs.payload, ev)
            ctx.set(bridge.outputs.valid, 1)
            await ctx.tick().until(bridge.outputs.ready)
            taken.append(ev)
            ctx.set(bridge.outputs.valid, 0)
            ctx.set(bridge.outputs.payload, {"kind": 3, "tile": 0, "col": 0, "value": 0})  # junk between events
        done.append(True)

    async def watch(ctx):
        while not done:
            levels.append(ctx.get(bridge.tx))
            await ctx.tick()
        for _ in range(frame_cycles + tail):  # the last frame, then idle
            levels.append(ctx.get(bridge.tx))
            await ctx.tick()

    sim = Simulator(bridge)
    sim.add_clock(1 / CLK)
    sim.add_testbench(produce)
    sim.add_testbench(watch)
    sim.run()
    return levels, taken


# -- 1. commands: bit-level UART model → commands stream ---------------------------------------

@pytest.mark.parametrize("period,jitter,seed", [(4.0, 0.4, 0),     # 250 kbaud at 1 MHz: divisor 4
                                                (6.15, 0.5, 1),    # divisor 6 for 6.15 cycles/bit (-2.4 %)
                                                (5.87, 0.5, 2)])   # divisor 6 for 5.87 cycles/bit (+2.2 %)
def test_commands_arrive_exactly_in_order_under_back_pressure(period, jitter, seed):
    rng = np.random.default_rng(seed)
    bridge = HostBridge(G, clk_freq=CLK, baud=round(CLK / period), fifo_depth=6)
    assert bridge.divisor == round(period)
    cmds = random_commands(G, rng, 60)
    assert {c["op"] for c in cmds} == {OP_INPUT, OP_STEP, OP_RESET}
    assert any(c["input"] == G.n_inputs - 1 for c in cmds) and any(c["payload"] < 0 for c in cmds)
    ends = []
    line = uart_line(encode_commands(G, cmds), period, rng, jitter=jitter, max_gap=1.5, ends=ends)
    chip = StepFlowControl(rng, bridge.fifo_depth, ends[bridge.command_bytes - 1::bridge.command_bytes],
                           bridge.divisor)
    got, status = run_rx(bridge, line, stall_plan=chip)
    assert chip.full >= 3  # the FIFO was filled to its depth, and then nothing was lost
    assert got == cmds
    assert status == {"overflow": 0, "framing_error": 0, "skipped": 0}


def test_the_fifo_holds_fifo_depth_frames_and_the_next_one_overflows():
    rng = np.random.default_rng(5)
    depth = 5
    bridge = HostBridge(G, clk_freq=CLK, baud=CLK // 4, fifo_depth=depth)
    cmds = random_commands(G, rng, depth + 1)
    head = uart_line(encode_commands(G, cmds[:depth]), 4.0, rng)
    tail = uart_line(encode_commands(G, cmds[depth:]), 4.0, rng)
    seen = {}

    async def bench(ctx):
        ctx.set(bridge.commands.ready, 0)
        for level in head:
            ctx.set(bridge.rx, level)
            await ctx.tick()
        seen["after depth"] = ctx.get(bridge.overflow)
        for level in tail:
            ctx.set(bridge.rx, level)
            await ctx.tick()
        seen["after depth + 1"] = ctx.get(bridge.overflow)
        got = []
        ctx.set(bridge.commands.ready, 1)
        for _ in range(3 * depth):
            _, _, valid, payload = await ctx.tick().sample(bridge.commands.valid, bridge.commands.payload)
            if valid:
                got.append(fields(payload, command_layout(G)))
        seen["got"] = got
        seen["still"] = ctx.get(bridge.overflow)

    sim = Simulator(bridge)
    sim.add_clock(1 / CLK)
    sim.add_testbench(bench)
    sim.run()
    assert seen["after depth"] == 0
    assert seen["after depth + 1"] == 1 and seen["still"] == 1  # sticky
    assert seen["got"] == cmds[:depth]  # the frame that did not fit is the one lost


# -- 2. outputs stream → tx --------------------------------------------------------------------

@pytest.mark.parametrize("baud,seed,p_valid", [(CLK // 4, 0, 0.5), (CLK // 6, 1, 1.0), (CLK // 5, 2, 0.1)])
def test_output_events_come_back_through_the_uart_and_decode_outputs(baud, seed, p_valid):
    rng = np.random.default_rng(seed)
    bridge = HostBridge(G, clk_freq=CLK, baud=baud)
    events = random_outputs(G, rng, 40)
    assert {e["kind"] for e in events} == {OUT_SPIKE, OUT_VALUE, OUT_STEP}
    levels, taken = run_tx(bridge, events, seed=seed, p_valid=p_valid)
    assert taken == events
    assert levels[0] == 1 and levels[-3 * 10 * bridge.output_bytes * bridge.divisor:] == [1] * (
        3 * 10 * bridge.output_bytes * bridge.divisor)  # idle high after reset and after the last frame
    data = uart_decode(levels, bridge.divisor)
    assert data == encode_outputs(G, events)
    assert decode_outputs(G, data) == events


def test_back_to_back_events_keep_the_line_busy():
    """With ``outputs`` always valid the frames follow each other with at most one idle cycle."""
    bridge = HostBridge(G, clk_freq=CLK, baud=CLK // 4)
    events = random_outputs(G, np.random.default_rng(9), 10)
    levels, _ = run_tx(bridge, events, p_valid=1.0, tail=0)
    busy = 10 * bridge.output_bytes * bridge.divisor
    first = levels.index(0)
    assert len(uart_decode(levels, bridge.divisor)) == len(events) * bridge.output_bytes
    assert first <= 3
    span = len(levels) - levels[::-1].index(0) - first  # from the first start bit to the last data 0
    assert span <= len(events) * (busy + 1)


# -- 3. noise, broken characters, bad frames ---------------------------------------------------

def test_noise_before_a_sync_byte_is_skipped_and_counted():
    rng = np.random.default_rng(3)
    bridge = HostBridge(G, clk_freq=CLK, baud=CLK // 4)
    cmds = random_commands(G, rng, 12)
    frames = encode_commands(G, cmds)
    n = bridge.command_bytes
    noise = [int(b) for b in rng.integers(0, 256, 7) if b != SYNC_COMMAND]
    bad = command_layout(G).const({"op": 3, "input": 1, "payload": 1}).as_bits().to_bytes(n - 1, "little")
    broken = (0, 1, 0, 1, 1, 0, 0, 1, 0, 0, 1)  # a character whose stop bit is low, then a bit of idle
    chars = (noise + list(frames[:2 * n])              # noise, then two good frames
             + [SYNC_COMMAND, *bad]                    # a frame with opcode 3: dropped, n bytes
             + list(frames[2 * n:2 * n + 2]) + [broken]  # a frame cut short by a broken character: 3 bytes
             + list(frames[2 * n:]))                   # the rest, including that frame again
    rx_line = uart_line(chars[:len(noise)], 4.0, rng)
    rx_line += glitch(1) + uart_line(chars[len(noise):], 4.0, rng)  # a short low pulse: not a character
    got, status = run_rx(bridge, rx_line)
    assert got == cmds
    assert status == {"overflow": 0, "framing_error": 1, "skipped": len(noise) + n + 3}


def test_a_misaligned_receiver_resynchronises_at_the_next_sync_byte():
    """Starting in the middle of a frame (the board reset while the host was sending)."""
    rng = np.random.default_rng(4)
    bridge = HostBridge(G, clk_freq=CLK, baud=CLK // 4)
    cmds = [{"op": OP_INPUT, "input": 7, "payload": 0x25}, {"op": OP_STEP, "input": 0, "payload": 0}]
    data = encode_commands(G, cmds)
    assert SYNC_COMMAND not in data[1:3]
    got, status = run_rx(bridge, uart_line(data[1:], 4.0, rng))
    assert got == cmds[1:]
    assert status["skipped"] == 2 and status["framing_error"] == 1


def test_a_held_low_line_counts_once():
    rng = np.random.default_rng(6)
    bridge = HostBridge(G, clk_freq=CLK, baud=CLK // 4)
    cmds = random_commands(G, rng, 3)
    line = [0] * 200 + uart_line(encode_commands(G, cmds), 4.0, rng)
    got, status = run_rx(bridge, line)
    assert got == cmds
    assert status["skipped"] == 1


# -- 4. pure Python frames ---------------------------------------------------------------------

@pytest.mark.parametrize("g", GEOMETRIES, ids=lambda g: f"T{g.tiles}C{g.cols}I{g.n_inputs}")
def test_encode_decode_round_trip(g):
    rng = np.random.default_rng(g.tiles)
    cmds = random_commands(g, rng, 50)
    outs = random_outputs(g, rng, 50)
    cf, of = frame_bytes(g)
    assert cf == 1 + -(-command_layout(g).size // 8) and of == 1 + -(-output_layout(g).size // 8)
    data = encode_commands(g, cmds)
    assert len(data) == cf * len(cmds) and data[::cf] == bytes([SYNC_COMMAND]) * len(cmds)
    assert decode_commands(g, data) == cmds
    data = encode_outputs(g, outs)
    assert len(data) == of * len(outs) and data[::of] == bytes([SYNC_OUTPUT]) * len(outs)
    assert decode_outputs(g, data) == outs


def test_missing_fields_are_zero_and_the_layout_decides_the_bits():
    cmd = {"op": OP_INPUT, "input": 3, "payload": -2}
    layout = command_layout(G)
    want = layout.const(cmd).as_bits()  # whatever order and widths the layout has
    assert encode_commands(G, [cmd]) == bytes([SYNC_COMMAND]) + want.to_bytes(frame_bytes(G)[0] - 1, "little")
    assert encode_commands(G, [{"op": OP_STEP}]) == encode_commands(G, [{"op": OP_STEP, "input": 0, "payload": 0}])


@pytest.mark.parametrize("cmd,match", [({"op": 3}, "op = 3"), ({"op": OP_INPUT, "input": 64}, "input = 64"),
                                       ({"op": OP_INPUT, "payload": 128}, "payload = 128"),
                                       ({"op": OP_INPUT, "payload": -129}, "payload = -129"),
                                       ({"op": OP_INPUT, "pay": 1}, "unknown field")])
def test_encode_commands_refuses_what_the_layout_cannot_carry(cmd, match):
    with pytest.raises(ValueError, match=match):
        encode_commands(G, [cmd])


def test_decode_outputs_rejects_truncated_and_garbled_streams():
    events = random_outputs(G, np.random.default_rng(1), 4)
    data = encode_outputs(G, events)
    with pytest.raises(ValueError, match="truncated"):
        decode_outputs(G, data[:-1])
    with pytest.raises(ValueError, match="truncated"):
        decode_outputs(G, data + bytes([SYNC_OUTPUT]))
    with pytest.raises(ValueError, match=r"frame 0 .* not the sync byte 0x5A"):
        decode_outputs(G, data[1:] + data[:1])
    assert decode_outputs(G, b"") == []


# -- 5. the checks catch corruption -----------------------------------------------------------

def test_every_single_bit_flip_in_an_output_stream_is_caught():
    events = random_outputs(G, np.random.default_rng(2), 6)
    data = encode_outputs(G, events)
    for bit in range(8 * len(data)):
        bad = bytearray(data)
        bad[bit // 8] ^= 1 << (bit % 8)
        try:
            assert decode_outputs(G, bytes(bad)) != events, f"flipping bit {bit} went unnoticed"
        except ValueError:
            pass


def test_the_rx_check_catches_a_bit_flipped_on_the_wire():
    rng = np.random.default_rng(8)
    bridge = HostBridge(G, clk_freq=CLK, baud=CLK // 4)
    cmds = [{"op": OP_INPUT, "input": 5, "payload": 9}, {"op": OP_INPUT, "input": 6, "payload": -9},
            {"op": OP_STEP, "input": 0, "payload": 0}]
    data = bytearray(encode_commands(G, cmds))
    data[bridge.command_bytes + 2] ^= 0x10  # a payload bit of the second command
    got, status = run_rx(bridge, uart_line(bytes(data), 4.0, rng))
    assert got != cmds
    assert got[0] == cmds[0] and got[2] == cmds[2] and got[1]["payload"] == -9 ^ 0x10


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
    cmds = [{"op": OP_RESET}, {"op": OP_INPUT, "input": 3, "payload": -2}, {"op": OP_INPUT, "input": 63, "payload": 5},
            {"op": OP_STEP}]
    outs = [{"kind": OUT_SPIKE, "tile": 3, "col": 9}, {"kind": OUT_VALUE, "tile": 1, "col": 2, "value": -300},
            {"kind": OUT_STEP}]
    assert encode_commands(DIGITS, cmds).hex(" ") in doc
    assert encode_outputs(DIGITS, outs).hex(" ") in doc
    cf, of = frame_bytes(DIGITS)
    assert f"{cf} bytes" in doc and f"{of} bytes" in doc
    assert f"fifo_depth = n_inputs + 2 = {DIGITS.n_inputs + 2}" in doc
    for name, field in command_layout(DIGITS):
        assert re.search(rf"\| `{name}` \| {field.offset}\.\.{field.offset + field.width - 1} \|", doc), name
    for name, field in output_layout(DIGITS):
        assert re.search(rf"\| `{name}` \| {field.offset}\.\.{field.offset + field.width - 1} \|", doc), name
