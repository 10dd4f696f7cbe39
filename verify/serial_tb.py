"""The cocotb side of :class:`verify.serial_sim.SimulatedBoard`: a design's UART pins on a pseudo-terminal.

cocotb imports this module inside the HDL simulator; :mod:`verify.serial_sim` starts it and
passes a JSON configuration in ``SMALL_SERIAL_BOARD``:

``socket``      the Unix socket of the board's owner, which hands over the pty's master side
                (``SCM_RIGHTS``), hears "ready" once the design is out of reset, and closes the
                connection to end the simulation;
``divisor``     clock cycles per UART bit;
``idle_cycles`` after this many cycles with nothing on ``rx`` or ``tx`` the board naps between
                chunks of simulated time, waking at once when the host writes;
``result``      where the counters are written when the simulation ends.

The bytes are moved, never interpreted. Python runs per run of equal bits and per edge, never
per clock cycle: ``rx`` is driven from a table of each byte's runs (a start bit, 8 data bits LSB
first, a stop bit), one :class:`~cocotb.triggers.Timer` per run, every write on a falling clock
edge (the design's registers change on rising ones); on ``tx`` every change is recorded with its
time, and a character is decoded at the middle of its stop bit from the levels the recorded
changes give the middles of its bits: two wake-ups per character besides its edges (a 0x00 costs
four, where sampling every bit would cost ten). ``ClockCycles`` is not used: it wakes Python on
every edge it counts. Measured under Verilator (2 shared cores), a 4-cycle-a-bit echo design
moves about 8.7 kB/s each way; the simulation alone runs about 1M cycles/s.
"""

from __future__ import annotations

import errno
import json
import os
import select
import socket
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge, Timer, ValueChange
from cocotb.utils import get_sim_time

from small.fileio import write_json

PERIOD_NS = 10
NAP_SECONDS = 0.05
"""How long an idle board sleeps in ``select`` between chunks of simulated time."""
CHUNK_CHARACTERS = 10
"""Simulated time an idle board advances between looks at the pty, in character times."""


def bit_runs(byte: int) -> list[tuple[int, int]]:
    """The 8N1 character of ``byte`` as runs ``(level, bits)``: start bit, data LSB first, stop bit."""
    runs: list[tuple[int, int]] = []
    for bit in [0, *((byte >> i) & 1 for i in range(8)), 1]:
        if runs and runs[-1][0] == bit:
            runs[-1] = (bit, runs[-1][1] + 1)
        else:
            runs.append((bit, 1))
    return runs


class PtyLink:
    """Moves bytes between the pty (non-blocking) and the design's ``rx``/``tx`` pins."""

    def __init__(self, dut, fd: int, control: socket.socket, divisor: int, idle_cycles: int):
        self.dut, self.fd, self.control = dut, fd, control
        self.rx, self.tx = dut.rx, dut.tx
        self.divisor, self.idle_ns = divisor, idle_cycles * PERIOD_NS
        bit_ns = divisor * PERIOD_NS
        timers: dict[int, Timer] = {}
        # per byte value, (level, Timer) for each run of equal bits: a timer is reusable
        self.runs = [[(level, timers.setdefault(n, Timer(n * bit_ns, "ns"))) for level, n in bit_runs(b)]
                     for b in range(256)]
        self.chunk = Timer(CHUNK_CHARACTERS * 10 * bit_ns, "ns")
        self.char_end = Timer(95 * divisor * PERIOD_NS // 10, "ns")  # from the start edge to the stop bit's middle
        self.edges: list[tuple[float, int]] = []
        self.outbox = bytearray()
        self.last_activity = 0.0
        self.counts = {"bytes_to_design": 0, "bytes_from_design": 0, "tx_framing_errors": 0, "naps": 0,
                       "dropped_bytes": 0}

    # -- host -> design ----------------------------------------------------------------------------
    def read_host(self) -> bytes:
        try:
            return os.read(self.fd, 4096)
        except BlockingIOError:
            return b""
        except OSError as exc:
            if exc.errno == errno.EIO:  # no one has the port open: a line with nothing on it
                return b""
            raise

    def hung_up(self) -> bool:
        """True once the board's owner closed the control connection (or died)."""
        try:
            return self.control.recv(1) == b""
        except BlockingIOError:
            return False

    async def serve(self) -> None:
        """Drive every byte the host writes onto ``rx``; nap when both lines have been idle."""
        rx, runs = self.rx, self.runs
        while True:
            data = self.read_host()
            if not data and get_sim_time("ns") - self.last_activity >= self.idle_ns:
                # nothing on either line for a while: sleep in real time until the host writes
                ready, _, _ = select.select([self.fd, self.control], [], [], NAP_SECONDS)
                self.counts["naps"] += 1
                if self.control in ready and self.hung_up():
                    return
                if self.fd in ready:
                    data = self.read_host()
            elif not data and self.hung_up():
                return
            if data:
                for byte in data:
                    for level, timer in runs[byte]:
                        rx.value = level
                        await timer
                self.counts["bytes_to_design"] += len(data)
                self.last_activity = get_sim_time("ns")
                self.flush()
                continue
            self.flush()
            await self.chunk

    # -- design -> host ----------------------------------------------------------------------------
    def flush(self) -> None:
        """Write what the design sent to the pty; a host that does not read loses bytes, as on a board."""
        if not self.outbox:
            return
        try:
            n = os.write(self.fd, self.outbox)
        except BlockingIOError:
            n = 0
        del self.outbox[:n]
        if len(self.outbox) > 1 << 16:  # the host is not reading: an adapter's buffer overflows
            self.counts["dropped_bytes"] += len(self.outbox)
            self.outbox.clear()

    async def record(self) -> None:
        """The time and level of every change of ``tx``: one wake-up per edge, none per bit."""
        change, edges, tx = ValueChange(self.tx), self.edges, self.tx
        while True:
            await change
            try:
                level = int(tx.value)
            except ValueError:  # X or Z: an undriven line reads high
                level = 1
            edges.append((get_sim_time("ns"), level))

    async def receive(self) -> None:
        """Decode every character on ``tx`` and write it to the pty.

        A character costs two wake-ups besides its edges (:meth:`record`): its start bit's
        falling edge and the middle of its stop bit, where the levels in the middles of its
        bits are read back from the recorded edges."""
        tx, start, end, edges = self.tx, FallingEdge(self.tx), self.char_end, self.edges
        bit_ns = self.divisor * PERIOD_NS
        while True:
            await start
            t0 = get_sim_time("ns")
            await end
            byte, level, k = 0, 0, 0
            for i in range(1, 10):  # data bits 1..8 (LSB first), stop bit 9
                middle = t0 + (i + 0.5) * bit_ns
                while k < len(edges) and edges[k][0] <= middle:
                    level = edges[k][1]
                    k += 1
                byte |= level << (i - 1)
            del edges[:k]
            if not level:  # a low stop bit: not a character; wait for the line to recover
                self.counts["tx_framing_errors"] += 1
                await RisingEdge(tx)
                continue
            self.outbox.append(byte & 0xFF)
            self.counts["bytes_from_design"] += 1
            self.last_activity = get_sim_time("ns")
            self.flush()


@cocotb.test()
async def serial_board(dut):
    """Serve the pty until the board's owner hangs up."""
    config = json.loads(os.environ["SMALL_SERIAL_BOARD"])
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    control.connect(config["socket"])
    _, fds, _, _ = socket.recv_fds(control, 16, 1)
    if not fds:
        raise RuntimeError("the board's owner sent no pty")
    fd = fds[0]
    os.set_blocking(fd, False)

    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    # every write of this test falls on a falling clock edge, half a period away from the
    # rising edges where the design's registers change
    await Timer(PERIOD_NS // 2, "ns")
    dut.rx.value = 1
    dut.rst.value = 1
    await Timer(4 * PERIOD_NS, "ns")
    dut.rst.value = 0
    await Timer(2 * PERIOD_NS, "ns")

    link = PtyLink(dut, fd, control, int(config["divisor"]), int(config["idle_cycles"]))
    cocotb.start_soon(link.record())
    cocotb.start_soon(link.receive())
    control.sendall(b"R")
    control.setblocking(False)
    t0 = time.perf_counter()
    await link.serve()
    write_json(config["result"], {**link.counts, "cycles": int(get_sim_time("ns")) // PERIOD_NS,
                                  "seconds": time.perf_counter() - t0}, sort_keys=False)
    control.close()
    os.close(fd)
