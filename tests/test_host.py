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


def chip_exchange(capacity, port, steps: list[dict[int, int]]) -> list[list[dict]]:
    """Reset the chip, run ``steps`` (input element -> payload, per step) and return each step's
    output events. The only part of this file that knows the host protocol (v2,
    ``compiler/protocol.py``): each answer must be whole frames with good checksums, output
    events only, the last one of a step its one end-of-step event."""
    from compiler.events import OP_INPUT, OP_RESET, OP_STEP, OUT_STEP
    from compiler.protocol import T_OUTPUT, Codec, FrameReader

    codec, reader = Codec.of(capacity), FrameReader()
    port.write(codec.command({"op": OP_RESET}))
    answers = []
    for inputs in steps:
        commands = [{"op": OP_INPUT, "input": e, "payload": p} for e, p in sorted(inputs.items()) if p]
        port.write(codec.commands(commands + [{"op": OP_STEP}]))
        events = []
        while not events or events[-1]["kind"] != OUT_STEP:
            data = port.read(max(1, port.in_waiting))
            assert data, f"step {len(answers)}: silence after {len(events)} events and {len(reader.buffer)} bytes"
            for kind, payload in reader.feed(data):  # raises on a bad checksum
                assert kind == T_OUTPUT, f"step {len(answers)}: a frame of type 0x{kind:02X}"
                events.append(codec.output(payload))
        assert sum(e["kind"] == OUT_STEP for e in events) == 1 and not reader.buffer and not reader.skipped
        answers.append(events)
    return answers


def test_the_chip_answers_each_step_with_whole_frames_and_one_end_of_step(board):
    """Raw pyserial on the port, no host library: every answer is whole frames with good
    checksums, output events only, one end-of-step event last; nothing after the last step."""
    import numpy as np
    import serial

    with HostLink(board.port, CAPACITY, timeout=10) as link:
        link.load(compiled(0, 16, 16))
    rng = np.random.default_rng(1)
    steps = [{int(e): int(rng.integers(1, 4)) for e in np.flatnonzero(rng.random(CAPACITY.n_inputs) < 0.5)}
             for _ in range(8)]
    with serial.Serial(board.port, baudrate=3_000_000, timeout=10) as port:
        answers = chip_exchange(CAPACITY, port, steps)
        port.timeout = 0.3
        assert port.read(1) == b"", "nothing after the last step's end"
    assert len(answers) == len(steps)
    assert sum(len(a) for a in answers) > len(steps), "some spikes or values besides the end-of-step events"


def test_small_run_writes_what_small_simulate_writes(board, tmp_path):
    """`small run BUILD --chip CHIP --port PORT` (the CLI, on the board's pseudo-terminal) decodes
    the chip's host events into the outputs `small simulate BUILD` computes, array for array."""
    import json

    import numpy as np

    from small.cli import main

    build, chip = tmp_path / "build", tmp_path / "chip"
    build.mkdir()
    chip.mkdir()
    compiled(0, 16, 16).save(build)
    (chip / "chip.json").write_text(json.dumps({"capacity": CAPACITY.to_dict()}))
    np.save(tmp_path / "x.npy", random_input(3, steps=6, batch=2).astype(np.float32))
    assert main(["run", str(build), "--chip", str(chip), "--port", board.port, "--input", str(tmp_path / "x.npy"),
                 "--output", str(tmp_path / "y.npy")]) == 0
    assert main(["simulate", str(build), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "ref.npy")]) == 0
    got, want = np.load(tmp_path / "y.npy"), np.load(tmp_path / "ref.npy")
    assert got.shape == want.shape and want.any()
    np.testing.assert_array_equal(got, want)


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
