"""UART bridge between a host PC and a SMALL chip on an FPGA board: host protocol v2.

``docs/host-protocol.md`` is the specification and :mod:`compiler.protocol` the host's side in
pure Python (frame types, CRC-8, encoders and decoders). The bridge turns frames the host sends
on ``rx`` into chip commands (``commands``) and configuration accesses (``config``), and the
chip's output events (``outputs``) and configuration answers (``readback``) into frames on ``tx``.

Hardware (everything in the ``sync`` domain, one clock):

- **UART**, 8N1, LSB first, idle high, ``divisor = round(clk_freq / baud)`` clock cycles per bit
  (at least 4, and within 3 % of the exact ratio). The receiver passes ``rx`` through a 2-flop
  synchroniser, takes a low level while idle as a start bit, checks it again half a bit later
  (shorter pulses are ignored) and samples every bit in its middle, ``divisor`` cycles apart.
  A character whose stop bit is low is a framing error; the receiver then waits for the line to
  return high (a held-low line, a "break", counts once).
- **Frame receiver**: hunts for ``0xA5``, then takes type, length, payload and CRC, updating the
  CRC-8 a byte at a time. A frame with a wrong CRC is dropped and answered with ``T_ERROR
  E_CHECKSUM``; one of an unknown type or length with ``E_FRAME``. A broken character drops the
  frame it is in. Bytes outside frames and dropped frames count in ``skipped``.
- **Commands** (``T_COMMAND``) wait in a FIFO (``fifo_depth`` commands, by default
  ``n_inputs + 2``) while the chip holds ``commands.ready`` low; a command that finds it full is
  dropped (``E_OVERFLOW``, sticky ``overflow``).
- **Configuration** (``T_WRITE``, ``T_READ``): one access is held in a register and offered on
  ``config`` once every command before it has gone to the chip (the chip takes it between
  steps). A configuration frame that arrives while the previous access waits, or a command
  that arrives then, is dropped with ``E_OVERFLOW``: a host loads networks between steps.
  Answers: ``T_DATA`` for a read, nothing for a write, ``T_ERROR E_ACCESS`` for an access
  outside the memory map.
- **Transmitter**: one frame at a time, chosen in this order: a pending error, the ID
  (``T_IDENT`` is answered with ``T_ID``: the chip ID and the protocol version), a configuration
  answer, an output event. It holds ``outputs.ready`` low while it sends; the chip waits.

Streams follow ``lib.stream``'s rules: ``commands.valid`` is the FIFO's registered ``r_rdy``,
``config.valid`` a register's; neither depends on ``ready``.

Status ports (sticky until the domain reset; also meant for LEDs): ``overflow`` (a frame was
lost for lack of room), ``framing_error`` (``skipped != 0``), ``skipped`` (16-bit saturating).
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from compiler.capacity import Capacity, config_fields, readback_fields
from compiler.events import OPS
from compiler.protocol import (ADDRESS_BYTES, E_ACCESS, E_CHECKSUM, E_FRAME, E_OVERFLOW, SYNC_BOARD, SYNC_HOST,
                               T_COMMAND, T_DATA, T_ERROR, T_ID, T_IDENT, T_OUTPUT, T_READ, T_WRITE, VERSION, Codec)

from .events import command_layout, output_layout, struct

MIN_DIVISOR = 4
"""Fewest clock cycles per UART bit: the receiver needs a start-bit check half a bit in."""
MAX_RATE_ERROR = 0.03
"""Largest relative difference between ``divisor`` and ``clk_freq / baud``: beyond it the
receiver's sample point drifts out of the stop bit of a character (10 bits) sent at ``baud``."""

SKIPPED_BITS = 16


def crc8_step(crc, byte):
    """The CRC-8/SMBUS after one more byte (:func:`compiler.protocol.crc8`), as logic."""
    c = crc ^ byte
    for _ in range(8):
        shifted = Cat(Const(0, 1), c[:7])
        c = Mux(c[7], shifted ^ 0x07, shifted)
    return c


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
    """UART <-> chip ports, see the module documentation and ``docs/host-protocol.md``.

    ``HostBridge(capacity, clk_freq=12_000_000, baud=115200, fifo_depth=None)``.

    Ports: ``rx`` (in), ``tx`` (out): the UART pins; ``commands`` (out), ``config`` (out):
    to the chip; ``outputs`` (in), ``readback`` (in): from the chip; ``overflow``,
    ``framing_error`` (out, 1 bit, sticky), ``skipped`` (out, 16 bits, saturating).
    """

    def __init__(self, capacity: Capacity, *, clk_freq: int, baud: int, fifo_depth: int | None = None):
        try:
            if not isinstance(capacity, Capacity):
                raise ValueError(f"HostBridge needs the chip's Capacity, not {type(capacity).__name__}")
            self.divisor = uart_divisor(clk_freq, baud)
            depth = capacity.n_inputs + 2 if fifo_depth is None else fifo_depth
            if depth < 2:
                raise ValueError(f"fifo_depth must be at least 2, not {depth}")
        except ValueError:
            self._MustUse__silence = True  # a refused bridge is not an "unused elaboratable"
            raise
        self.capacity = capacity
        self.geometry = g = capacity.geometry
        self.clk_freq, self.baud = clk_freq, baud
        self.fifo_depth = depth
        self.codec = Codec.of(capacity)
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "commands": Out(stream.Signature(command_layout(g))),
            "outputs": In(stream.Signature(output_layout(g))),
            "config": Out(stream.Signature(struct(config_fields(capacity)))),
            "readback": In(stream.Signature(struct(readback_fields(capacity)))),
            "overflow": Out(1),
            "framing_error": Out(1),
            "skipped": Out(SKIPPED_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        cap, codec, d = self.capacity, self.codec, self.divisor
        n_cmd, n_data, n_out = codec.command_bytes, codec.data_bytes, codec.output_bytes
        cmd_bits = command_layout(self.geometry).size

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

        # -- status ----------------------------------------------------------------------------
        skipped = Signal(SKIPPED_BITS)
        overflow = Signal()
        skip = Signal()  # count one more skipped byte or frame this cycle
        m.d.comb += [self.skipped.eq(skipped), self.framing_error.eq(skipped != 0), self.overflow.eq(overflow)]
        with m.If(skip & (skipped != (1 << SKIPPED_BITS) - 1)):
            m.d.sync += skipped.eq(skipped + 1)
        error = Signal(8)  # an error code to send (0: none); a newer error replaces an unsent one
        raise_error = Signal(8)
        with m.If(raise_error != 0):
            m.d.sync += error.eq(raise_error)

        # -- frame receiver ------------------------------------------------------------------
        size = max(n_cmd, ADDRESS_BYTES + n_data)  # payload bytes kept
        kind, length, crc = Signal(8), Signal(8), Signal(8)
        index = Signal(8)
        payload = Signal(8 * size)
        done = Signal()  # a frame with a good CRC ended this cycle

        def broken():  # a broken character: the frame it is in is lost
            with m.If(rx_err):
                m.d.comb += skip.eq(1)
                m.next = "HUNT"

        with m.FSM(name="rx_frame"):
            with m.State("HUNT"):
                broken()
                with m.If(rx_stb):
                    with m.If(rx_byte == SYNC_HOST):
                        m.next = "TYPE"
                    with m.Else():
                        m.d.comb += skip.eq(1)
            with m.State("TYPE"):
                broken()
                with m.If(rx_stb):
                    m.d.sync += [kind.eq(rx_byte), crc.eq(crc8_step(Const(0, 8), rx_byte))]
                    m.next = "LENGTH"
            with m.State("LENGTH"):
                broken()
                with m.If(rx_stb):
                    m.d.sync += [length.eq(rx_byte), crc.eq(crc8_step(crc, rx_byte)), index.eq(0), payload.eq(0)]
                    m.next = "PAYLOAD"
                    with m.If(rx_byte == 0):
                        m.next = "CHECK"
            with m.State("PAYLOAD"):
                broken()
                with m.If(rx_stb):
                    m.d.sync += [crc.eq(crc8_step(crc, rx_byte)), index.eq(index + 1)]
                    with m.Switch(index):
                        for k in range(size):
                            with m.Case(k):
                                m.d.sync += payload[8 * k:8 * (k + 1)].eq(rx_byte)
                    with m.If(index == length - 1):
                        m.next = "CHECK"
            with m.State("CHECK"):
                broken()
                with m.If(rx_stb):
                    with m.If(rx_byte == crc):
                        m.d.comb += done.eq(1)
                    with m.Else():
                        m.d.comb += [raise_error.eq(E_CHECKSUM), skip.eq(1)]
                    m.next = "HUNT"

        # -- commands into the FIFO; configuration accesses into a register ------------------
        m.submodules.fifo = rx_fifo = fifo.SyncFIFOBuffered(width=cmd_bits, depth=self.fifo_depth)
        command = command_layout(self.geometry)(payload[:cmd_bits])
        access = self.config.payload
        pending = Signal()  # an access waits for the chip
        ident = Signal()  # a T_IDENT waits for its answer
        answer_write = Signal()  # the access the chip took last was a write (its answer is not sent)
        answering = Signal()  # the chip took an access and has not answered yet
        mem, tile, addr = payload[0:8], payload[8:16], payload[16:32]
        fits = Signal()  # the access can be expressed on the config port (the chip checks the rest)
        m.d.comb += fits.eq((mem < 8) & (tile < (1 << len(access.tile))) & (addr < (1 << len(access.addr))))
        m.d.comb += rx_fifo.w_data.eq(payload[:cmd_bits])
        with m.If(done):
            with m.If((kind == T_COMMAND) & (length == n_cmd)):
                with m.If((command.op >= len(OPS)) | (payload[cmd_bits:] != 0)):
                    m.d.comb += [raise_error.eq(E_FRAME), skip.eq(1)]
                with m.Elif(pending | ~rx_fifo.w_rdy):
                    m.d.comb += raise_error.eq(E_OVERFLOW)
                    m.d.sync += overflow.eq(1)
                with m.Else():
                    m.d.comb += rx_fifo.w_en.eq(1)
            with m.Elif(((kind == T_WRITE) & (length > ADDRESS_BYTES) & (length <= ADDRESS_BYTES + n_data))
                        | ((kind == T_READ) & (length == ADDRESS_BYTES))):
                with m.If(pending):
                    m.d.comb += raise_error.eq(E_OVERFLOW)
                    m.d.sync += overflow.eq(1)
                with m.Elif(~fits):
                    m.d.comb += raise_error.eq(E_ACCESS)
                with m.Else():
                    m.d.sync += [pending.eq(1), access.write.eq(kind == T_WRITE), access.mem.eq(mem),
                                 access.tile.eq(tile), access.addr.eq(addr),
                                 access.data.eq(payload[8 * ADDRESS_BYTES:])]
            with m.Elif((kind == T_IDENT) & (length == 0)):
                m.d.sync += ident.eq(1)
            with m.Else():
                m.d.comb += [raise_error.eq(E_FRAME), skip.eq(1)]
        m.d.comb += [
            self.commands.valid.eq(rx_fifo.r_rdy),
            self.commands.payload.eq(rx_fifo.r_data),
            rx_fifo.r_en.eq(self.commands.ready),
            self.config.valid.eq(pending & ~rx_fifo.r_rdy & ~answering),  # after every command received before it
        ]
        with m.If(self.config.valid & self.config.ready):
            m.d.sync += [pending.eq(0), answer_write.eq(access.write), answering.eq(1)]
        with m.If(self.readback.valid & self.readback.ready):
            m.d.sync += answering.eq(0)

        # -- transmitter: one frame at a time --------------------------------------------------
        tx_size = max(n_out, n_data, 5)
        tx_kind, tx_len = Signal(8), Signal(8)
        tx_payload = Signal(8 * tx_size)
        tx_pos = Signal(range(tx_size + 5))  # the frame byte being sent: sync, type, length, payload, crc
        tx_crc = Signal(8)
        sending = Signal()
        bits = Signal(10, init=(1 << 10) - 1)  # the character being sent, LSB first (start, data, stop)
        bits_left = Signal(range(11))
        tx_timer = Signal(range(d))
        m.d.comb += self.tx.eq(bits[0])

        def start(kind_, length_, value):
            return [sending.eq(1), tx_kind.eq(kind_), tx_len.eq(length_), tx_payload.eq(value), tx_pos.eq(0),
                    tx_crc.eq(0)]

        free = ~sending
        with m.If(free & (error != 0)):
            m.d.sync += start(T_ERROR, 1, error)
            with m.If(raise_error == 0):
                m.d.sync += error.eq(0)
        with m.Elif(free & ident):
            m.d.sync += start(T_ID, 5, cap.chip_id | (VERSION << 32))
            m.d.sync += ident.eq(0)
        with m.Elif(free):
            m.d.comb += self.readback.ready.eq(1)
            with m.If(self.readback.valid):
                with m.If(self.readback.payload.error):
                    m.d.sync += start(T_ERROR, 1, E_ACCESS)
                with m.Elif(~answer_write):
                    m.d.sync += start(T_DATA, n_data, self.readback.payload.data)
            with m.Else():
                m.d.comb += self.outputs.ready.eq(1)
                with m.If(self.outputs.valid):
                    m.d.sync += start(T_OUTPUT, n_out, self.outputs.payload.as_value())

        # the next byte of the frame: sync, type, length, payload bytes, crc
        byte = Signal(8)
        payload_bytes = Array(tx_payload[8 * k:8 * (k + 1)] for k in range(tx_size))
        with m.If(tx_pos == 0):
            m.d.comb += byte.eq(SYNC_BOARD)
        with m.Elif(tx_pos == 1):
            m.d.comb += byte.eq(tx_kind)
        with m.Elif(tx_pos == 2):
            m.d.comb += byte.eq(tx_len)
        with m.Elif(tx_pos < tx_len + 3):
            m.d.comb += byte.eq(payload_bytes[tx_pos - 3])
        with m.Else():
            m.d.comb += byte.eq(tx_crc)
        with m.If(bits_left != 0):
            with m.If(tx_timer == 0):
                m.d.sync += [bits.eq(Cat(bits[1:], Const(1, 1))), bits_left.eq(bits_left - 1), tx_timer.eq(d - 1)]
            with m.Else():
                m.d.sync += tx_timer.eq(tx_timer - 1)
        with m.Elif(sending):  # the line is free: the frame's next character
            m.d.sync += [bits.eq(Cat(Const(0, 1), byte, Const(1, 1))), bits_left.eq(10), tx_timer.eq(d - 1),
                         tx_pos.eq(tx_pos + 1)]
            with m.If((tx_pos != 0) & (tx_pos < tx_len + 3)):
                m.d.sync += tx_crc.eq(crc8_step(tx_crc, byte))
            with m.If(tx_pos == tx_len + 3):
                m.d.sync += sending.eq(0)
        return m
