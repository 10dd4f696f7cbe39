"""UART bridge between a host PC and a SMALL chip on an FPGA board (``docs/host-protocol.md``).

A board such as the iCEBreaker (12 MHz clock, FTDI UART) has two serial pins. The bridge turns
the bytes the host sends on ``rx`` into chip commands (:func:`~hdl.events.command_layout`) and
the chip's output events (:func:`~hdl.events.output_layout`) into bytes on ``tx``.

Frames (both directions: one sync byte, then the event's bit pattern as laid out by its
``StructLayout``, first field at bit 0, little-endian, zero-padded to whole bytes):

- host → board: ``0xA5`` (:data:`SYNC_COMMAND`), ``ceil(width(command_layout) / 8)`` bytes;
- board → host: ``0x5A`` (:data:`SYNC_OUTPUT`), ``ceil(width(output_layout) / 8)`` bytes.

:func:`frame_bytes`, :func:`encode_commands` and :func:`decode_outputs` are the host's side, in
pure Python, built on the same layouts (no bit position is written by hand); their mirrors
:func:`decode_commands` and :func:`encode_outputs` serve tests and models of the board.

Hardware (everything in the ``sync`` domain, one clock):

- **UART**, 8N1, LSB first, idle high, ``divisor = round(clk_freq / baud)`` clock cycles per bit
  (at least 4, and within 3 % of the exact ratio). The receiver passes ``rx`` through a 2-flop
  synchroniser, takes a low level while idle as a start bit, checks it again half a bit later
  (shorter pulses are ignored) and samples every bit in its middle, ``divisor`` cycles apart.
  A character whose stop bit is low is a framing error; the receiver then waits for the line to
  return high (a held-low line, a "break", counts once). The transmitter shifts out a whole
  frame (sync byte and data bytes, back to back) from one register; ``tx`` is that register's
  low bit, high after reset and between frames.
- **Frame receiver**: hunts for ``0xA5``, then collects the frame's data bytes. Every byte that
  does not end up in a delivered command is counted in ``skipped``: bytes before a sync byte,
  a character with a bad stop bit together with the partial frame it cuts short, and whole
  frames whose opcode is not one of ``OP_INPUT, OP_STEP, OP_RESET`` or whose padding bits are not
  zero. A data byte is never taken for a sync byte: after a misaligned start the receiver
  resynchronises at the first sync byte it sees while hunting.
- **Receive FIFO** (``lib.fifo.SyncFIFOBuffered``, ``fifo_depth`` commands, by default
  ``n_inputs + 2``: a reset, one input event per input, a step): complete frames wait here
  while the chip holds ``commands.ready`` low. A frame that completes while the FIFO is full is
  dropped and sets ``overflow``. Flow control is by steps: a host that never has more than
  ``fifo_depth`` frames sent after the last ``OP_STEP`` whose ``OUT_STEP`` it has received never
  overflows the FIFO, however slowly the chip takes commands.
- **Output serialiser**: takes one event from ``outputs`` when the transmitter is idle and holds
  ``outputs.ready`` low while it sends it (``10 * output frame bytes * divisor`` cycles). The chip
  waits; nothing is lost. There is no flow control towards the host: it must keep reading.

Streams follow ``lib.stream``'s rules: ``commands.valid`` is the FIFO's registered ``r_rdy`` and
does not depend on ``commands.ready``; its payload holds while it waits. ``outputs.ready`` is a
function of the transmitter's registers only.

Status ports (sticky until the domain reset; also meant for LEDs): ``overflow`` (a command
frame was lost), ``framing_error`` (``skipped != 0``), ``skipped`` (16-bit saturating count).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from .events import (OP_INPUT, OP_RESET, OP_STEP, OUT_SPIKE, OUT_STEP, OUT_VALUE, Geometry, command_layout,
                     output_layout)

SYNC_COMMAND = 0xA5
"""First byte of every host → board frame."""
SYNC_OUTPUT = 0x5A
"""First byte of every board → host frame."""

OPS = (OP_INPUT, OP_STEP, OP_RESET)
KINDS = (OUT_SPIKE, OUT_VALUE, OUT_STEP)

MIN_DIVISOR = 4
"""Fewest clock cycles per UART bit: the receiver needs a start-bit check half a bit in."""
MAX_RATE_ERROR = 0.03
"""Largest relative difference between ``divisor`` and ``clk_freq / baud``: beyond it the
receiver's sample point drifts out of the stop bit of a character (10 bits) sent at ``baud``."""

SKIPPED_BITS = 16


# -- frames in pure Python ---------------------------------------------------------------------

def _data_bytes(layout: data.StructLayout) -> int:
    return (layout.size + 7) // 8


def frame_bytes(g: Geometry) -> tuple[int, int]:
    """Bytes per frame, sync byte included: ``(command frame, output frame)``."""
    return 1 + _data_bytes(command_layout(g)), 1 + _data_bytes(output_layout(g))


def _field_range(layout: data.StructLayout, name: str) -> range:
    shape = Shape.cast(layout[name].shape)
    if shape.signed:
        return range(-(1 << (shape.width - 1)), 1 << (shape.width - 1))
    return range(1 << shape.width)


def _encode(layout: data.StructLayout, sync: int, events: Iterable[Mapping], limits: dict[str, range],
            what: str) -> bytes:
    """Frames of ``events`` (dicts of field values, missing fields 0): sync byte + bit pattern."""
    names = [name for name, _ in layout]
    n = _data_bytes(layout)
    out = bytearray()
    for i, event in enumerate(events):
        unknown = sorted(set(event) - set(names))
        if unknown:
            raise ValueError(f"{what} {i}: unknown field(s) {', '.join(unknown)}; the fields are {', '.join(names)}")
        values = {name: int(event.get(name, 0)) for name in names}
        for name, value in values.items():
            allowed = limits.get(name, _field_range(layout, name))
            if value not in allowed:
                raise ValueError(f"{what} {i}: {name} = {value} is outside [{allowed.start}, {allowed.stop - 1}]")
        out.append(sync)
        out += layout.const(values).as_bits().to_bytes(n, "little")
    return bytes(out)


def _decode(layout: data.StructLayout, sync: int, data_: bytes, check, what: str) -> list[dict[str, int]]:
    """Inverse of :func:`_encode`; every frame must be complete, start with ``sync``, have zero
    padding bits and pass ``check(fields) -> error message or None``."""
    data_ = bytes(data_)
    n = _data_bytes(layout)
    size = n + 1
    if len(data_) % size:
        whole = len(data_) // size
        raise ValueError(f"{what} stream truncated: {len(data_)} bytes are {whole} frame(s) of {size} bytes "
                         f"and {len(data_) % size} byte(s) of an incomplete frame")
    events = []
    for i in range(0, len(data_), size):
        frame = i // size
        if data_[i] != sync:
            raise ValueError(f"{what} stream garbled: frame {frame} (byte offset {i}) starts with 0x{data_[i]:02X}, "
                             f"not the sync byte 0x{sync:02X}")
        bits = int.from_bytes(data_[i + 1:i + size], "little")
        if bits >> layout.size:
            raise ValueError(f"{what} stream garbled: frame {frame} (byte offset {i}) has padding bits above bit "
                             f"{layout.size - 1} set")
        const = layout.from_bits(bits)
        fields = {name: int(const[name]) for name, _ in layout}
        error = check(fields)
        if error:
            raise ValueError(f"{what} stream garbled: frame {frame} (byte offset {i}) {error}")
        events.append(fields)
    return events


def encode_commands(g: Geometry, commands: Iterable[Mapping]) -> bytes:
    """Host → board bytes for ``commands``, dicts such as ``{"op": OP_INPUT, "input": 3,
    "payload": -2}`` (missing fields 0). Raises ``ValueError`` on an unknown field, an unknown
    opcode, an input index ``>= g.n_inputs`` or a payload its field cannot hold."""
    layout = command_layout(g)
    return _encode(layout, SYNC_COMMAND, commands, {"op": range(len(OPS)), "input": range(g.n_inputs)}, "command")


def decode_outputs(g: Geometry, data: bytes) -> list[dict[str, int]]:
    """Board → host bytes to output events ``{"kind", "tile", "col", "value"}`` (ints, ``value``
    signed). Raises ``ValueError`` on a truncated stream, a frame without its sync byte, set
    padding bits, an unknown kind, or a tile / column outside the geometry."""
    def check(f):
        if f["kind"] not in KINDS:
            return f"has the unknown kind {f['kind']}"
        if f["tile"] >= g.tiles or f["col"] >= g.cols:
            return f"names neuron (tile {f['tile']}, col {f['col']}) outside {g.tiles} tiles of {g.cols} columns"
        return None
    return _decode(output_layout(g), SYNC_OUTPUT, data, check, "output")


def encode_outputs(g: Geometry, events: Iterable[Mapping]) -> bytes:
    """Board → host bytes for output events (what the bridge sends; for tests and models)."""
    return _encode(output_layout(g), SYNC_OUTPUT, events,
                   {"kind": range(len(KINDS)), "tile": range(g.tiles), "col": range(g.cols)}, "output event")


def decode_commands(g: Geometry, data: bytes) -> list[dict[str, int]]:
    """Host → board bytes to commands ``{"op", "input", "payload"}`` (for tests and models)."""
    def check(f):
        return None if f["op"] in OPS else f"has the unknown opcode {f['op']}"
    return _decode(command_layout(g), SYNC_COMMAND, data, check, "command")


# -- hardware ------------------------------------------------------------------------------------

def uart_divisor(clk_freq: int, baud: int) -> int:
    """Clock cycles per UART bit; ``ValueError`` if the clock is too slow or the error too large."""
    if clk_freq <= 0 or baud <= 0:
        raise ValueError(f"clk_freq and baud must be positive, not {clk_freq} and {baud}")
    ratio = clk_freq / baud
    divisor = round(ratio)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"baud rate {baud} is too high for a {clk_freq / 1e6:g} MHz clock: "
                         f"{ratio:.3g} clock cycles per bit, the UART needs at least {MIN_DIVISOR} "
                         f"(at most {clk_freq // MIN_DIVISOR} baud)")
    error = abs(divisor - ratio) / ratio
    if error > MAX_RATE_ERROR:
        raise ValueError(f"baud rate {baud} cannot be made from a {clk_freq / 1e6:g} MHz clock: "
                         f"{divisor} cycles per bit is {error:.1%} off {ratio:.4g} (at most {MAX_RATE_ERROR:.0%})")
    return divisor


class HostBridge(wiring.Component):
    """UART ↔ chip host ports, see the module documentation and ``docs/host-protocol.md``.

    ``HostBridge(geometry, clk_freq=12_000_000, baud=115200, fifo_depth=None)``.

    Ports: ``rx`` (in), ``tx`` (out): the UART pins; ``commands`` (out,
    :func:`~hdl.events.command_layout`): to the chip; ``outputs`` (in,
    :func:`~hdl.events.output_layout`): from the chip; ``overflow``, ``framing_error`` (out, 1
    bit, sticky), ``skipped`` (out, 16 bits, saturating).
    """

    def __init__(self, geometry: Geometry, *, clk_freq: int, baud: int, fifo_depth: int | None = None):
        try:
            self.divisor = uart_divisor(clk_freq, baud)
            depth = geometry.n_inputs + 2 if fifo_depth is None else fifo_depth
            if depth < 2:
                raise ValueError(f"fifo_depth must be at least 2, not {depth}")
        except ValueError:
            self._MustUse__silence = True  # a refused bridge is not an "unused elaboratable"
            raise
        self.geometry = geometry
        self.clk_freq, self.baud = clk_freq, baud
        self.fifo_depth = depth
        self.command_bytes, self.output_bytes = frame_bytes(geometry)
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "commands": Out(stream.Signature(command_layout(geometry))),
            "outputs": In(stream.Signature(output_layout(geometry))),
            "overflow": Out(1),
            "framing_error": Out(1),
            "skipped": Out(SKIPPED_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        g = self.geometry
        d = self.divisor
        cmd_layout = command_layout(g)
        n_cmd = self.command_bytes - 1  # data bytes per command frame

        # -- UART receiver -------------------------------------------------------------------
        rx = Signal(init=1)
        m.submodules.rx_sync = FFSynchronizer(self.rx, rx, init=1)
        rx_busy = Signal()         # inside a character
        rx_wait_high = Signal()    # after a bad stop bit: wait for the line to go high
        rx_timer = Signal(range(d))
        rx_bit = Signal(range(10))  # next bit to sample: 0 start, 1..8 data, 9 stop
        rx_shift = Signal(8)
        rx_byte = Signal(8)
        rx_stb = Signal()          # rx_byte holds a character with a good stop bit (one cycle)
        rx_err = Signal()          # a character with a low stop bit ended (one cycle)

        m.d.sync += [rx_stb.eq(0), rx_err.eq(0)]
        with m.If(rx_wait_high):
            with m.If(rx):
                m.d.sync += rx_wait_high.eq(0)
        with m.Elif(~rx_busy):
            with m.If(~rx):
                # start bit: look again in its middle
                m.d.sync += [rx_busy.eq(1), rx_timer.eq(d // 2 - 1), rx_bit.eq(0)]
        with m.Elif(rx_timer != 0):
            m.d.sync += rx_timer.eq(rx_timer - 1)
        with m.Else():
            # the middle of bit rx_bit
            m.d.sync += [rx_timer.eq(d - 1), rx_bit.eq(rx_bit + 1)]
            with m.If(rx_bit == 0):
                with m.If(rx):
                    m.d.sync += rx_busy.eq(0)  # a glitch, not a start bit
            with m.Elif(rx_bit != 9):
                m.d.sync += rx_shift.eq(Cat(rx_shift[1:], rx))  # LSB first
            with m.Else():
                m.d.sync += rx_busy.eq(0)
                with m.If(rx):
                    m.d.sync += [rx_byte.eq(rx_shift), rx_stb.eq(1)]
                with m.Else():
                    m.d.sync += [rx_err.eq(1), rx_wait_high.eq(1)]

        # -- frame receiver ------------------------------------------------------------------
        in_frame = Signal()                   # the sync byte was seen; collecting data bytes
        n_got = Signal(range(max(n_cmd, 2)))  # data bytes collected so far
        frame = Signal(8 * n_cmd)             # data bytes, shifted in from the top (little-endian)
        skipped = Signal(SKIPPED_BITS)
        overflow = Signal()
        m.d.comb += [self.skipped.eq(skipped), self.framing_error.eq(skipped != 0), self.overflow.eq(overflow)]

        discard = Signal(range(n_cmd + 2))  # bytes to add to `skipped` this cycle
        total = Signal(SKIPPED_BITS + 1)
        m.d.comb += total.eq(skipped + discard)
        with m.If(discard != 0):
            m.d.sync += skipped.eq(total[SKIPPED_BITS].replicate(SKIPPED_BITS) | total[:SKIPPED_BITS])  # saturating

        word = Signal(8 * n_cmd)  # the frame with this cycle's byte shifted in
        m.d.comb += word.eq(Cat(frame[8:], rx_byte))
        command = cmd_layout(word[:cmd_layout.size])
        good = Signal()  # a known opcode and zero padding
        m.d.comb += good.eq((command.op < len(OPS)) & (word[cmd_layout.size:] == 0))
        complete = Signal()  # the frame's last byte arrives this cycle
        m.d.comb += complete.eq(in_frame & rx_stb & (n_got == n_cmd - 1))

        m.submodules.fifo = rx_fifo = fifo.SyncFIFOBuffered(width=cmd_layout.size, depth=self.fifo_depth)
        m.d.comb += [
            rx_fifo.w_data.eq(word[:cmd_layout.size]),
            rx_fifo.w_en.eq(complete & good),
        ]
        with m.If(complete & good & ~rx_fifo.w_rdy):
            m.d.sync += overflow.eq(1)

        with m.If(rx_err):
            # a broken character: drop it and the frame it interrupts
            m.d.comb += discard.eq(Mux(in_frame, n_got + 2, 1))  # the sync byte, the data bytes, this one
            m.d.sync += in_frame.eq(0)
        with m.Elif(rx_stb & ~in_frame):
            with m.If(rx_byte == SYNC_COMMAND):
                m.d.sync += [in_frame.eq(1), n_got.eq(0)]
            with m.Else():
                m.d.comb += discard.eq(1)
        with m.Elif(rx_stb):
            m.d.sync += [frame.eq(word), n_got.eq(n_got + 1)]
            with m.If(complete):
                m.d.sync += in_frame.eq(0)
                with m.If(~good):
                    m.d.comb += discard.eq(n_cmd + 1)

        # -- to the chip ---------------------------------------------------------------------
        m.d.comb += [
            self.commands.valid.eq(rx_fifo.r_rdy),
            self.commands.payload.eq(rx_fifo.r_data),
            rx_fifo.r_en.eq(self.commands.ready),
        ]

        # -- output serialiser and UART transmitter -----------------------------------------
        out_layout = output_layout(g)
        n_out = self.output_bytes - 1
        n_bits = 10 * (n_out + 1)
        tx_shift = Signal(n_bits, init=(1 << n_bits) - 1)  # the frame's characters, LSB goes out first
        tx_left = Signal(range(n_bits + 1))                # bits still to send (0: idle)
        tx_timer = Signal(range(d))
        m.d.comb += [self.tx.eq(tx_shift[0]), self.outputs.ready.eq(tx_left == 0)]

        raw = Cat(self.outputs.payload.as_value(), Const(0, 8 * n_out - out_layout.size))
        chars = [Const(SYNC_OUTPUT, 8)] + [raw[8 * i:8 * (i + 1)] for i in range(n_out)]
        with m.If(self.outputs.valid & self.outputs.ready):
            m.d.sync += [
                tx_shift.eq(Cat(*(Cat(Const(0, 1), c, Const(1, 1)) for c in chars))),  # start, data, stop
                tx_left.eq(n_bits),
                tx_timer.eq(d - 1),
            ]
        with m.Elif(tx_left != 0):
            with m.If(tx_timer == 0):
                m.d.sync += [tx_shift.eq(Cat(tx_shift[1:], Const(1, 1))), tx_left.eq(tx_left - 1),
                             tx_timer.eq(d - 1)]
            with m.Else():
                m.d.sync += tx_timer.eq(tx_timer - 1)
        return m
