"""The host library (verify/host.py) against a programmable chip's Verilog behind a pseudo-terminal.

The host code opens the port with pyserial as it would a board: it checks the chip's ID, loads
network A, runs it, loads B, runs it, loads A again; every host event of every step equals
sim/digital.py's. A chip of another capacity, a board that never answers and a port that does
not exist each give one error line.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from compiler.capacity import MEM_COLUMNS, Capacity, config_words
from hdl.board import BridgedChip
from hdl.export import write_hdl
from test_compile import random_input
from test_hdl_chip import compiled, signed_input
from verify.host import BoardError, HostLink, run_samples
from verify.model import ReferenceModel
from verify.serial_sim import SimulatedBoard

pytestmark = [pytest.mark.rtl, pytest.mark.slow]

CAPACITY = Capacity(tiles=8, rows=16, cols=16, levels=8, delay_slots=4, n_inputs=16, route_entries=512,
                    input_entries=256, lanes=4)


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    out = tmp_path_factory.mktemp("chip")
    write_hdl(BridgedChip(CAPACITY, clk_freq=12_000_000, baud=3_000_000), None, out, name="small_chip_uart")
    with SimulatedBoard(out / "small_chip_uart.v", top="small_chip_uart", divisor=4, build_dir=out / "sim") as b:
        yield b


def expect_equal(image, xs, got):
    want = ReferenceModel(image).expect(xs)
    assert len(got) == len(want)
    for b, (g, w) in enumerate(zip(got, want)):
        for t, step in enumerate(w):
            assert g.spikes[t] == step.spikes, f"sample {b}, step {t}: host spikes"
            assert g.values[t] == step.values, f"sample {b}, step {t}: values"
    return sum(len(s) for g in got for s in g.spikes) + sum(len(v) for g in got for v in g.values)


def test_networks_loaded_over_the_serial_port_run_as_the_digital_twin(board):
    a, b = compiled(0, 16, 16), compiled(5, 16, 16)
    xa, xb = random_input(0, steps=6, batch=1), signed_input(5, steps=6, batch=1)
    with HostLink(board.port, CAPACITY, timeout=10) as link:
        stats = link.load(a)
        assert stats.frames == sum(len(w) for w in config_words(a, CAPACITY).values())
        first = expect_equal(a, xa, run_samples(link, a, xa))
        word = config_words(a, CAPACITY)[(MEM_COLUMNS, 2)][3]
        assert link.read(MEM_COLUMNS, 2, 3) == word  # read back over the line
        link.load(b)
        assert expect_equal(b, xb, run_samples(link, b, xb)) > 0
        link.load(a)
        assert expect_equal(a, xa, run_samples(link, a, xa)) == first > 0


def test_a_chip_of_another_capacity_is_refused(board):
    other = replace(CAPACITY, rows=32)
    with HostLink(board.port, other, timeout=10) as link:
        with pytest.raises(BoardError, match=r"answered ID 0x[0-9a-f]{8} \(protocol 2\), not 0x"):
            link.load(compiled(0, 16, 16))


def test_a_board_that_never_answers_is_named_within_the_timeout(tmp_path):
    with SimulatedBoard(tmp_path / "none.v", top="none", divisor=4, build_dir=tmp_path, start=False) as dead:
        with HostLink(dead.port, CAPACITY, timeout=1.0) as link:
            t0 = time.monotonic()
            with pytest.raises(BoardError, match="did not answer within 1 s"):
                link.check()
            assert time.monotonic() - t0 < 5


def test_a_port_that_does_not_exist_is_named():
    with pytest.raises(BoardError, match="cannot open the serial port '/dev/ttyUSB99'"):
        HostLink("/dev/ttyUSB99", CAPACITY)
