"""verify/serial_sim.py: a design's UART pins under Verilator behind a pseudo-terminal, opened with pyserial.

The board moves bytes and knows no frames, so most of it is tested with a design that knows
none either: :class:`UartEcho`, written here, sends back the complement of every byte it
receives. The chip behind its bridge is tested through the host library and raw frames in
``tests/test_host.py``, on one Verilator build of a programmable chip.
"""

from __future__ import annotations

import os
import select
import termios
import time
import tty
from pathlib import Path

import pytest
from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from hdl.export import write_hdl
from verify.runner import VerifyError
from verify.serial_sim import SimulatedBoard

DIVISOR = 4  # 3 Mbaud at 12 MHz, as `small verify --uart` simulates the board
BAUD = 3_000_000


def pyserial():
    return pytest.importorskip("serial", reason="pyserial is not installed (it belongs in requirements.lock)")


class UartEcho(wiring.Component):
    """Receives 8N1 characters on ``rx`` and sends back the complement of each on ``tx``.

    ``divisor`` clock cycles a bit; the receiver samples each bit in its middle, as
    ``hdl.host_bridge`` does; a 16-byte FIFO between receiver and transmitter.
    """

    def __init__(self, divisor: int):
        self.divisor = divisor
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        rx = Signal(init=1)
        m.submodules.rx_sync = FFSynchronizer(self.rx, rx, init=1)
        m.submodules.fifo = queue = fifo.SyncFIFOBuffered(width=8, depth=16)

        busy, timer, bit, shift = Signal(), Signal(range(d)), Signal(range(10)), Signal(8)
        with m.If(~busy):
            with m.If(~rx):
                m.d.sync += [busy.eq(1), timer.eq(d // 2 - 1), bit.eq(0)]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Else():
            m.d.sync += [timer.eq(d - 1), bit.eq(bit + 1)]
            with m.If(bit == 0):
                with m.If(rx):
                    m.d.sync += busy.eq(0)
            with m.Elif(bit != 9):
                m.d.sync += shift.eq(Cat(shift[1:], rx))
            with m.Else():
                m.d.sync += busy.eq(0)
                m.d.comb += [queue.w_data.eq(~shift), queue.w_en.eq(rx)]

        out, left, tx_timer = Signal(10, init=0x3FF), Signal(range(11)), Signal(range(d))
        m.d.comb += self.tx.eq(out[0])
        # the next character starts as the last one's stop bit ends: 10 bits a character, as
        # the receiver takes them (one more cycle each would overflow the FIFO in a long burst)
        with m.If(((left == 0) | ((left == 1) & (tx_timer == 0))) & queue.r_rdy):
            m.d.comb += queue.r_en.eq(1)
            m.d.sync += [out.eq(Cat(Const(0, 1), queue.r_data, Const(1, 1))), left.eq(10), tx_timer.eq(d - 1)]
        with m.Elif(left == 0):
            pass
        with m.Elif(tx_timer == 0):
            m.d.sync += [out.eq(Cat(out[1:], Const(1, 1))), left.eq(left - 1), tx_timer.eq(d - 1)]
        with m.Else():
            m.d.sync += tx_timer.eq(tx_timer - 1)
        return m


@pytest.fixture(scope="module")
def echo(tmp_path_factory) -> dict:
    """The echo's Verilog and one build folder for the module (Verilator builds it once)."""
    folder = tmp_path_factory.mktemp("echo")
    write_hdl(UartEcho(DIVISOR), None, folder, name="uart_echo")
    return {"verilog": folder / "uart_echo.v", "top": "uart_echo", "divisor": DIVISOR, "build_dir": folder / "board"}


def complement(data: bytes) -> bytes:
    return bytes(b ^ 0xFF for b in data)


@pytest.mark.rtl
def test_bytes_reach_the_design_and_its_answers_come_back(echo):
    """Every byte value, in a burst of 1 KiB, through rx, the design and tx, in order."""
    serial = pyserial()
    data = bytes(range(256)) * 4
    with SimulatedBoard(**echo) as board, serial.Serial(board.port, baudrate=BAUD, timeout=10) as port:
        port.write(b"\x00")
        assert port.read(1) == b"\xff"
        port.write(data)
        assert port.read(len(data)) == complement(data)
        port.timeout = 0.3
        assert port.read(1) == b"", "nothing more than the answers"
    assert board.stats["bytes_to_design"] == board.stats["bytes_from_design"] == len(data) + 1
    assert board.stats["tx_framing_errors"] == 0


@pytest.mark.rtl
def test_the_port_is_a_plain_terminal(echo):
    """Without pyserial: a raw tty opened by path, written in pieces, read with select."""
    with SimulatedBoard(**echo) as board:
        fd = os.open(board.port, os.O_RDWR | os.O_NOCTTY)
        try:
            tty.setraw(fd, termios.TCSANOW)
            got = bytearray()
            for piece in (b"\n\r", b"\x03\x04\x11\x13", b"\x1a\x7f+++"):  # bytes a cooked tty would act on
                os.write(fd, piece)
            deadline = time.monotonic() + 10
            while len(got) < 11 and time.monotonic() < deadline:
                if select.select([fd], [], [], 0.5)[0]:
                    got += os.read(fd, 64)
            assert bytes(got) == complement(b"\n\r\x03\x04\x11\x13\x1a\x7f+++")
        finally:
            os.close(fd)


@pytest.mark.rtl
def test_a_stopped_board_is_dead_and_starts_again(echo):
    """Stopped: reads time out and writes are swallowed; started again: a fresh board answers."""
    serial = pyserial()
    with SimulatedBoard(**echo) as board, serial.Serial(board.port, baudrate=BAUD, timeout=5) as port:
        port.write(b"ab")
        assert port.read(2) == complement(b"ab")
        board.stop()
        assert not board.alive
        port.timeout = 0.5
        t0 = time.monotonic()
        port.write(b"x" * 100_000)  # more than a pty holds: a dead board's line must not block the host
        assert port.read(1) == b""
        assert 0.4 < time.monotonic() - t0 < 5
        board.start()
        port.timeout = 5
        port.write(b"cd")
        assert port.read(2) == complement(b"cd")


@pytest.mark.rtl
def test_the_simulation_dies_with_its_owner(echo, tmp_path):
    """A host program killed with SIGKILL leaves no simulator behind."""
    import signal
    import subprocess
    import sys

    script = f"""
import sys, time
from pathlib import Path
from verify.serial_sim import SimulatedBoard
with SimulatedBoard(Path({str(echo["verilog"])!r}), top="uart_echo", divisor={DIVISOR},
                    build_dir=Path({str(echo["build_dir"])!r})) as board:
    print(board._proc.pid, flush=True)
    time.sleep(600)
"""
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).parent.parent)
    try:
        group = int(owner.stdout.readline())
    finally:
        owner.kill()
        owner.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.killpg(group, signal.SIGKILL)
    pytest.fail("the simulation outlived its owner by 10 s")


def test_a_board_never_started_is_dead(tmp_path):
    """No simulator runs (none is needed): the host's reads time out, its writes do not block."""
    serial = pyserial()
    board = SimulatedBoard(tmp_path / "absent.v", top="x", divisor=4, build_dir=tmp_path / "b", start=False)
    with board, serial.Serial(board.port, baudrate=BAUD, timeout=0.3) as port:
        port.write(b"\xa5" * 10_000)
        t0 = time.monotonic()
        assert port.read(16) == b""
        assert time.monotonic() - t0 >= 0.25
    assert not Path(board.port).exists() or not board.alive


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="divisor must be"):
        SimulatedBoard(tmp_path / "x.v", top="x", divisor=1, build_dir=tmp_path)
    with pytest.raises(VerifyError, match="does not exist"):
        with SimulatedBoard(tmp_path / "x.v", top="x", divisor=4, build_dir=tmp_path):
            pass
    (tmp_path / "x.v").write_text("module x(); endmodule\n")
    with pytest.raises(VerifyError, match="unknown simulator 'spice'"):
        with SimulatedBoard(tmp_path / "x.v", top="x", divisor=4, build_dir=tmp_path, simulator="spice"):
            pass

