"""Host protocol v2: the frames between a host and a SMALL chip's UART bridge, in pure Python.

``docs/host-protocol.md`` is the specification; ``hdl/host_bridge.py`` implements the board's
side in hardware, and this module is the one implementation of the framing that everything else
uses: the host library (``host/``), the cocotb drivers and the tests.

Every frame, both directions::

    sync (1) | type (1) | length n (1) | payload (n bytes) | crc (1)

``sync`` is ``0xA5`` host -> board and ``0x5A`` board -> host; ``crc`` is the CRC-8 (polynomial
``x^8 + x^2 + x + 1``, 0x07, initial value 0, no reflection: CRC-8/SMBUS) of ``type``, ``length``
and the payload. Multi-byte numbers are little-endian; an event is its ``StructLayout``'s bit
pattern (first field at bit 0) in whole bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from small.errors import SmallError

from .capacity import MEMORY_NAMES, TILE_MEMORIES, Capacity, data_bits, memory_depth, word_bits
from .events import KINDS_OUT, OPS, Geometry, command_fields, output_fields, pack, unpack, width

SYNC_HOST, SYNC_BOARD = 0xA5, 0x5A

# host -> board
T_COMMAND = 0x01
"""An ``OP_INPUT``/``OP_STEP``/``OP_RESET`` command (``command_fields``); no answer."""
T_WRITE = 0x02
"""Write one word: ``mem, tile, addr (2 bytes), word`` (the word's bytes; fewer are zero-extended); no answer."""
T_READ = 0x03
"""Read one word: ``mem, tile, addr (2 bytes)``; answered by ``T_DATA``."""
T_IDENT = 0x04
"""Ask for the chip's ID; answered by ``T_ID``. Answers come in order, so it also ends a load."""
# board -> host
T_OUTPUT = 0x81
"""An output event (``output_fields``)."""
T_DATA = 0x82
"""The word of a ``T_READ`` (``data_bytes`` bytes)."""
T_ID = 0x83
"""``chip_id`` (4 bytes) and the protocol version (1 byte)."""
T_ERROR = 0x84
"""One byte, the error code (:data:`ERRORS`)."""

E_CHECKSUM, E_FRAME, E_ACCESS, E_OVERFLOW = 1, 2, 3, 4
ERRORS = {E_CHECKSUM: "a frame arrived with a wrong checksum and was dropped",
          E_FRAME: "a frame of an unknown type or length was dropped",
          E_ACCESS: "a read or write named a memory, tile or address the chip does not have",
          E_OVERFLOW: "a frame arrived while the chip could not take it (a full command FIFO, or a configuration "
                      "frame during a step) and was dropped"}
VERSION = 2
ADDRESS_BYTES = 4  # mem, tile, addr (2)
MAX_PAYLOAD = 255


class ProtocolError(SmallError):
    """A frame that cannot be what the chip sent: bad checksum, truncated, unknown type."""


def crc8(data: bytes) -> int:
    """CRC-8/SMBUS of ``data`` (polynomial 0x07, initial 0)."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def frame(sync: int, kind: int, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"a frame carries at most {MAX_PAYLOAD} payload bytes, not {len(payload)}")
    body = bytes([kind, len(payload)]) + bytes(payload)
    return bytes([sync]) + body + bytes([crc8(body)])


def _bytes(bits: int) -> int:
    return (bits + 7) // 8


@dataclass(frozen=True)
class Codec:
    """Frames of one chip: its command, output and configuration words (sizes from its geometry)."""

    geometry: Geometry
    capacity: Capacity | None = None
    """The programmable chip's capacity (configuration frames need it)."""

    @classmethod
    def of(cls, capacity: Capacity) -> "Codec":
        return cls(capacity.geometry, capacity)

    @property
    def command_bytes(self) -> int:
        return _bytes(width(command_fields(self.geometry)))

    @property
    def output_bytes(self) -> int:
        return _bytes(width(output_fields(self.geometry)))

    @property
    def data_bytes(self) -> int:
        return _bytes(data_bits(self.capacity))

    # -- host -> board ----------------------------------------------------------------------
    def command(self, command: dict) -> bytes:
        """``{"op": OP_INPUT, "input": 3, "payload": -2}`` (missing fields 0) as a frame."""
        g = self.geometry
        if int(command.get("op", 0)) not in OPS:
            raise ValueError(f"command: op = {command.get('op')} is not one of {', '.join(map(str, OPS))}")
        if not 0 <= int(command.get("input", 0)) < g.n_inputs:
            raise ValueError(f"command: input = {command.get('input')} is outside [0, {g.n_inputs - 1}]")
        word = pack(command_fields(g), command, "command")
        return frame(SYNC_HOST, T_COMMAND, word.to_bytes(self.command_bytes, "little"))

    def commands(self, commands) -> bytes:
        return b"".join(self.command(c) for c in commands)

    def _access(self, mem: int, tile: int, addr: int) -> bytes:
        cap = self.capacity
        if mem not in MEMORY_NAMES:
            raise ValueError(f"memory {mem} is not one of {', '.join(f'{k} ({v})' for k, v in MEMORY_NAMES.items())}")
        tiles = cap.tiles if mem in TILE_MEMORIES else 1
        if not (0 <= tile < tiles and 0 <= addr < memory_depth(cap, mem)):
            raise ValueError(f"{MEMORY_NAMES[mem]}: tile {tile}, address {addr} is outside the chip "
                             f"({tiles} tile(s), {memory_depth(cap, mem)} words)")
        return bytes([mem, tile]) + addr.to_bytes(2, "little")

    def write(self, mem: int, tile: int, addr: int, word: int) -> bytes:
        """Write ``word`` at ``addr`` of memory ``mem`` (of ``tile``), in as few bytes as the memory's word needs."""
        access = self._access(mem, tile, addr)
        n = _bytes(word_bits(self.capacity, mem))
        if not 0 <= word < 1 << (8 * n):
            raise ValueError(f"{MEMORY_NAMES.get(mem, mem)}: word {word} is wider than the memory's {n} bytes")
        return frame(SYNC_HOST, T_WRITE, access + word.to_bytes(n, "little"))

    def read(self, mem: int, tile: int, addr: int) -> bytes:
        return frame(SYNC_HOST, T_READ, self._access(mem, tile, addr))

    @staticmethod
    def ident() -> bytes:
        return frame(SYNC_HOST, T_IDENT)

    # -- board -> host ----------------------------------------------------------------------
    def output(self, payload: bytes) -> dict[str, int]:
        """An output event's fields; ``ProtocolError`` for a kind, tile or column the chip cannot send."""
        g = self.geometry
        if len(payload) != self.output_bytes:
            raise ProtocolError(f"an output event has {self.output_bytes} bytes, this one {len(payload)}")
        word = int.from_bytes(payload, "little")
        fields = output_fields(g)
        if word >> width(fields):
            raise ProtocolError("an output event has padding bits set")
        event = unpack(fields, word)
        if event["kind"] not in KINDS_OUT or event["tile"] >= g.tiles or event["col"] >= g.cols:
            raise ProtocolError(f"the output event {event} names no event of this chip")
        return event

    def encode_output(self, event: dict) -> bytes:
        """The board's frame of an output event (for models of the board and tests)."""
        word = pack(output_fields(self.geometry), event, "output event")
        return frame(SYNC_BOARD, T_OUTPUT, word.to_bytes(self.output_bytes, "little"))


class FrameReader:
    """Splits a byte stream into frames ``(type, payload)``.

    ``feed(data)`` returns the frames completed by ``data``. Bytes outside a frame (before a sync
    byte) are counted in ``skipped``; a frame with a wrong checksum raises :class:`ProtocolError`
    naming it (the reader then hunts for the next sync byte).
    """

    def __init__(self, sync: int = SYNC_BOARD):
        self.sync = sync
        self.buffer = bytearray()
        self.skipped = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self.buffer += data
        out = []
        while True:
            start = self.buffer.find(self.sync)
            if start < 0:
                self.skipped += len(self.buffer)
                self.buffer.clear()
                return out
            self.skipped += start
            del self.buffer[:start]
            if len(self.buffer) < 3 or len(self.buffer) < 4 + self.buffer[2]:
                return out
            n = self.buffer[2]
            body, crc = bytes(self.buffer[1:3 + n]), self.buffer[3 + n]
            if crc8(body) != crc:
                del self.buffer[:1]
                raise ProtocolError(f"a frame from the chip failed its checksum (type 0x{body[0]:02X}, {n} payload "
                                    f"bytes, crc 0x{crc:02X}, expected 0x{crc8(body):02X}): the serial line corrupted "
                                    "it; check the cable and the baud rate")
            del self.buffer[:4 + n]
            out.append((body[0], body[2:]))
