"""The host library: load a network into a SMALL chip over its serial port and run it (host protocol v2).

``HostLink(port, capacity)`` talks to a board on ``port`` with pyserial (a device such as
``/dev/ttyUSB1``, or the pseudo-terminal of a :class:`~verify.serial_sim.SimulatedBoard`: the
code cannot tell them apart). It checks the chip's ID before anything else, writes an image as
``T_WRITE`` frames (:func:`compiler.capacity.config_words`), ends the load with ``T_IDENT`` so
that every error the load caused has arrived, and runs samples step by step, collecting the
output events. Every read has a timeout: a board that does not answer is a :class:`BoardError`
with one line, never a hang; a frame corrupted on the line is named by its checksum.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from compiler.capacity import Capacity, config_writes
from compiler.image import HardwareImage
from compiler.protocol import (ERRORS, T_DATA, T_ERROR, T_ID, T_OUTPUT, VERSION, Codec, FrameReader,
                               ProtocolError)
from compiler.events import OP_RESET, OP_STEP, OUT_SPIKE, OUT_STEP, OUT_VALUE
from small.errors import SmallError

DEFAULT_TIMEOUT = 5.0


class BoardError(SmallError):
    """The board did not answer, answered with an error, or is not the chip the build was made for."""


@dataclass
class LoadStats:
    frames: int
    bytes: int
    seconds: float


@dataclass
class SampleEvents:
    """What the chip sent for one sample, per chip step."""

    spikes: list[set[int]] = field(default_factory=list)
    """Column addresses ``tile * C + col`` (the image's ``C``) of the ``OUT_SPIKE`` events."""
    values: list[dict[int, int]] = field(default_factory=list)
    """``OUT_VALUE`` events: column address -> membrane (state units)."""


class HostLink:
    """A chip of ``capacity`` behind the serial port ``port`` (see the module docstring)."""

    def __init__(self, port: str, capacity: Capacity, *, baud: int = 3_000_000, timeout: float = DEFAULT_TIMEOUT):
        try:
            import serial
        except ImportError:
            raise BoardError("talking to a board needs pyserial: pip install pyserial==3.5 (make install does it)") \
                from None
        self.capacity, self.codec, self.timeout, self.port_name = capacity, Codec.of(capacity), timeout, port
        try:
            self.port = serial.Serial(port, baudrate=baud, timeout=0.05)
        except (serial.SerialException, OSError) as exc:
            raise BoardError(f"cannot open the serial port {port!r} ({exc}): check the board is plugged in and the "
                             "path (e.g. /dev/ttyUSB1 for the iCEBreaker), or use --port sim") from None
        self.reader = FrameReader()
        self.pending: list[tuple[int, bytes]] = []

    def close(self) -> None:
        self.port.close()

    def __enter__(self) -> "HostLink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- frames -------------------------------------------------------------------------------
    def _next(self, what: str) -> tuple[int, bytes]:
        deadline = time.monotonic() + self.timeout
        while not self.pending:
            data = self.port.read(4096)
            if data:
                try:
                    self.pending += self.reader.feed(data)
                except ProtocolError as exc:
                    raise BoardError(f"{self.port_name}: {exc}") from None
                deadline = time.monotonic() + self.timeout
            elif time.monotonic() > deadline:
                raise BoardError(f"the board on {self.port_name} did not answer within {self.timeout:g} s while "
                                 f"waiting for {what}: check it is programmed with this chip's bitstream and powered")
        return self.pending.pop(0)

    def _error(self, payload: bytes) -> BoardError:
        return BoardError(f"the chip on {self.port_name} reported: {ERRORS.get(payload[0], f'error {payload[0]}')}")

    def ident(self) -> tuple[int, int]:
        """The chip's ID and protocol version; errors queued before it are raised."""
        self.port.write(Codec.ident())
        while True:
            kind, payload = self._next("the chip's ID")
            if kind == T_ID:
                return int.from_bytes(payload[:4], "little"), payload[4]
            if kind == T_ERROR:
                raise self._error(payload)

    def check(self) -> None:
        """Refuse a chip of another capacity (its ID names the capacity)."""
        chip_id, version = self.ident()
        if version != VERSION or chip_id != self.capacity.chip_id:
            raise BoardError(f"the chip on {self.port_name} answered ID 0x{chip_id:08x} (protocol {version}), not "
                             f"0x{self.capacity.chip_id:08x} of the chip the build is for: program the board with "
                             "that chip's bitstream (`small chip ... --bitstream`) or compile for the board's chip")

    def load(self, image: HardwareImage) -> LoadStats:
        """Check the chip, write ``image`` into it, confirm that no write was refused; then reset it."""
        self.check()
        t0 = time.perf_counter()
        frames = [self.codec.write(*write) for write in config_writes(image, self.capacity)]
        data = b"".join(frames) + self.codec.command({"op": OP_RESET})
        self.port.write(data)
        self.ident()  # raises the first error the load caused
        return LoadStats(len(frames), len(data), time.perf_counter() - t0)

    def read(self, mem: int, tile: int, addr: int) -> int:
        self.port.write(self.codec.read(mem, tile, addr))
        kind, payload = self._next("a read's answer")
        if kind == T_ERROR:
            raise self._error(payload)
        if kind != T_DATA:
            raise BoardError(f"{self.port_name}: expected the answer of a read, got a frame of type 0x{kind:02x}")
        return int.from_bytes(payload, "little")

    def run(self, image: HardwareImage, steps: list[list[dict]]) -> SampleEvents:
        """Run one sample from reset: ``steps`` are each chip step's ``OP_INPUT`` commands."""
        C, out = image.cols, SampleEvents()
        self.port.write(self.codec.command({"op": OP_RESET}))
        for t, commands in enumerate(steps):
            self.port.write(self.codec.commands(list(commands) + [{"op": OP_STEP}]))
            spikes, values = set(), {}
            while True:
                kind, payload = self._next(f"the end of step {t}")
                if kind == T_ERROR:
                    raise self._error(payload)
                if kind != T_OUTPUT:
                    continue
                try:
                    event = self.codec.output(payload)
                except ProtocolError as exc:
                    raise BoardError(f"{self.port_name}: {exc}") from None
                if event["kind"] == OUT_STEP:
                    break
                addr = event["tile"] * C + event["col"]
                if event["kind"] == OUT_SPIKE:
                    spikes.add(addr)
                elif event["kind"] == OUT_VALUE:
                    values[addr] = event["value"]
            out.spikes.append(spikes)
            out.values.append(values)
        return out


def run_samples(link: HostLink, image: HardwareImage, xs: np.ndarray) -> list[SampleEvents]:
    """Every sample of ``xs`` (``[T, batch, n_in]`` in host units) through the chip."""
    from .model import ReferenceModel

    model = ReferenceModel(image)
    return [link.run(image, model.commands(xs[:, b])) for b in range(xs.shape[1])]
