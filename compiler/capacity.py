"""What a programmable SMALL chip can hold, and a compiled network as that chip's memory contents.

A chip is generated once for a :class:`Capacity` (tiles, crossbar rows x columns, weight levels,
delay slots, inputs, routing-table depths, neuron arithmetic, MAC lanes) and then loaded with any
network that fits, over its configuration port (``hdl/chip.py``; over the UART with host
protocol v2, ``docs/host-protocol.md``). This module is pure data, shared by the generator, the
host library, the testbenches and the compiler:

- :class:`Capacity` and :data:`PRESETS`, the chip's ``chip.json`` (with a 32-bit chip ID the chip
  reports, so a host never loads an image compiled for another chip);
- the memory map (:data:`MEMORIES`): each configurable memory's word fields, packed first field
  at bit 0 as Amaranth's ``StructLayout`` packs them, its depth and where it lives;
- :meth:`Capacity.problems`, what of an image does not fit (each with its fix);
- :func:`config_words`, the image as ``(memory, tile, address) -> word`` writes, the same words
  a ROM chip (``small chip --rom``) holds as initial values.

Nothing here imports Amaranth.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

import numpy as np

from small.errors import SmallError

from .events import Field, Geometry, bits_for, pack, row_fields, width
from .image import COL_NEURON, COL_PARTIAL, NEURON_PARAMS, Arithmetic, HardwareImage

STEP_BITS = 8
"""Chip step as a tile sees it (saturating): a population may start at any step up to 255."""

PROTOCOL_VERSION = 2


NEURON_UNITS = ("pipelined", "serial")
PARAM_BEAT_BITS = 32
"""Width of a column word's beats in a ``serial`` tile's parameter memory."""


class CapacityError(SmallError):
    """A network that does not fit a chip, or an image compiled for another chip."""


def weight_bits(levels: int) -> int:
    """Width of a cell's signed weight ``l+ - l-`` in ``[-(L-1), L-1]``."""
    return bits_for(levels) + 1


@dataclass(frozen=True)
class Capacity:
    """The fixed sizes of a generated chip (``chip.json``)."""

    tiles: int
    """Crossbar tiles."""
    rows: int
    """Rows (presynaptic inputs) per tile."""
    cols: int
    """Columns (neurons or partial sums) per tile."""
    levels: int = 16
    """Conductance levels per device: weights ``l+ - l-`` in ``[-(levels-1), levels-1]``."""
    delay_slots: int = 4
    """Routed delays ``0 .. delay_slots-1`` steps."""
    n_inputs: int = 256
    """Host input elements (the input map's sources)."""
    route_entries: int = 2048
    """Routing-table entries (neuron -> row destinations), whole chip."""
    input_entries: int = 1024
    """Input-map entries (input element -> row destinations)."""
    lanes: int = 8
    """Columns a tile's crossbar accumulates per cycle (a power of two)."""
    neuron: str = "pipelined"
    """The tiles' neuron unit: ``pipelined`` (one column a cycle through a pipeline with three
    multipliers; the column words in a memory as wide as a word) or ``serial`` (a column in
    ``beats + 8`` cycles with one multiplier, its word stored as :func:`param_beats` beats of
    :data:`PARAM_BEAT_BITS` bits; weights and words in single-port memories, SPRAM on an iCE40
    UltraPlus: the area a small FPGA such as the UP5K can hold)."""
    arithmetic: Arithmetic = field(default_factory=Arithmetic)
    """The neurons' fixed-point format (``docs/architecture.md``)."""
    acc_bits: int = 0
    """Width of a column sum; 0: the worst case of the capacity (every row at full payload and weight)."""
    name: str = "custom"

    def __post_init__(self):
        for key in ("tiles", "rows", "cols", "levels", "delay_slots", "n_inputs", "route_entries", "input_entries",
                    "lanes"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise CapacityError(f"chip capacity: {key} must be an integer >= 1, not {value!r}")
        if self.levels < 2:
            raise CapacityError(f"chip capacity: levels must be >= 2, not {self.levels}")
        if self.lanes & (self.lanes - 1):
            raise CapacityError(f"chip capacity: lanes must be a power of two, not {self.lanes}")
        if self.neuron not in NEURON_UNITS:
            raise CapacityError(f"chip capacity: neuron must be one of {', '.join(NEURON_UNITS)}, not {self.neuron!r}")
        if self.acc_bits == 0:
            ar = self.arithmetic
            worst = self.tiles * self.rows * (self.levels - 1) * (1 << (ar.input_bits - 1))
            object.__setattr__(self, "acc_bits", worst.bit_length() + 1)

    # -- derived sizes ----------------------------------------------------------------------
    @property
    def geometry(self) -> Geometry:
        return Geometry(tiles=self.tiles, rows=self.rows, cols=self.cols, delay_slots=self.delay_slots,
                        n_inputs=self.n_inputs, arithmetic=self.arithmetic, acc_bits=self.acc_bits)

    @property
    def tile_lanes(self) -> int:
        """Lanes a tile really has: no more than its columns rounded up to a power of two."""
        return min(self.lanes, 1 << (self.cols - 1).bit_length())

    @property
    def words(self) -> int:
        """Weight words per crossbar row (``lanes`` weights each)."""
        return -(-self.cols // self.tile_lanes)

    @property
    def synapses(self) -> int:
        return self.tiles * self.rows * self.cols

    @property
    def neurons(self) -> int:
        return self.tiles * self.cols

    # -- files ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        out = asdict(self)
        out["arithmetic"] = self.arithmetic.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: dict, what: str = "chip capacity") -> "Capacity":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise CapacityError(f"{what}: unknown field {unknown[0]!r}; the fields are {', '.join(sorted(known))}")
        d = dict(d)
        ar = d.pop("arithmetic", {})
        if not isinstance(ar, dict) or set(ar) - set(Arithmetic.__dataclass_fields__):
            raise CapacityError(f"{what}: arithmetic must be a table of {', '.join(Arithmetic.__dataclass_fields__)}")
        if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 64 for v in ar.values()):
            raise CapacityError(f"{what}: arithmetic widths must be integers in [1, 64]")
        try:
            return cls(**d, arithmetic=Arithmetic(**ar))
        except TypeError as e:
            raise CapacityError(f"{what}: {e}") from None

    @property
    def chip_id(self) -> int:
        """32-bit ID of the capacity (not its name) and of its memories' word layouts: the chip
        reports it, the host checks it, so a chip generated before a layout changed refuses the
        words of the new one."""
        body = {k: v for k, v in self.to_dict().items() if k != "name"} | {"protocol": PROTOCOL_VERSION}
        body["layout"] = {name: memory_fields(self, mem) for mem, name in MEMORY_NAMES.items()}
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")

    @classmethod
    def of(cls, image: HardwareImage, *, lanes: int = 8) -> "Capacity":
        """The smallest capacity that holds ``image`` (the chip ``small hdl`` generates for a build)."""
        g = Geometry.of(image)
        a = image.arrays
        return cls(tiles=image.n_tiles, rows=image.rows, cols=image.cols, levels=image.levels,
                   delay_slots=image.delay_slots, n_inputs=g.n_inputs, route_entries=max(1, len(a["route_tile"])),
                   input_entries=max(1, len(a["input_tile"])), lanes=lanes, arithmetic=image.arithmetic,
                   acc_bits=g.acc_bits, name="fit")

    # -- fit ------------------------------------------------------------------------------------
    def problems(self, image: HardwareImage) -> list[str]:
        """What of ``image`` does not fit this chip, each with its fix (empty: it fits)."""
        if image.target != "digital":
            return [f"the image is for the {image.target} target; a programmable chip runs digital images: "
                    "compile with --target digital"]
        g = Geometry.of(image)
        a = image.arrays
        need = [("tiles", image.n_tiles, self.tiles, "a chip with more tiles (or a bigger preset)"),
                ("rows per tile", image.rows, self.rows, f"compile with --tile {self.rows}x{self.cols}"),
                ("columns per tile", image.cols, self.cols, f"compile with --tile {self.rows}x{self.cols}"),
                ("weight levels", image.levels, self.levels, f"compile with --levels {self.levels} or fewer"),
                ("delay slots", image.delay_slots, self.delay_slots, "a chip with more delay slots"),
                ("input elements", g.n_inputs, self.n_inputs, "a chip with more inputs"),
                ("routing-table entries", len(a["route_tile"]), self.route_entries,
                 "a chip with a deeper routing table (route_entries)"),
                ("input-map entries", len(a["input_tile"]), self.input_entries,
                 "a chip with a deeper input map (input_entries)"),
                ("bits of a column sum", g.acc_bits, self.acc_bits, "a chip with a wider acc_bits")]
        out = [f"the network needs {n} {what} but the chip has {have}: use {fix}"
               for what, n, have, fix in need if n > have]
        if image.arithmetic != self.arithmetic:
            out.append(f"the image's arithmetic {image.arithmetic.to_dict()} differs from the chip's "
                       f"{self.arithmetic.to_dict()}: compile with --chip")
        start = int(a["param/start"].max(initial=0))
        if start >= 1 << STEP_BITS:
            out.append(f"a population starts at chip step {start}; tiles count steps in {STEP_BITS} bits: "
                       "use a network with fewer layers")
        return out

    def check(self, image: HardwareImage) -> None:
        """Raise :class:`CapacityError` naming the first thing of ``image`` that does not fit."""
        problems = self.problems(image)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise CapacityError(f"{problems[0]}{more}")


# -- presets ----------------------------------------------------------------------------------
PRESETS: dict[str, Capacity] = {
    # iCEBreaker (iCE40 UP5K): ODIN's scale (64k synapses, 256 neurons) in one serial tile, its weights
    # and column words in the four SPRAMs
    "up5k": Capacity(tiles=1, rows=256, cols=256, levels=16, delay_slots=2, n_inputs=256, route_entries=1024,
                     input_entries=512, lanes=4, neuron="serial", name="up5k"),
    # iCE40-HX8K breakout: no SPRAM, 32 block RAMs
    "hx8k": Capacity(tiles=4, rows=64, cols=64, levels=16, delay_slots=4, n_inputs=128, route_entries=1024,
                     input_entries=512, lanes=4, name="hx8k"),
    # ULX3S (ECP5-85F)
    "ulx3s": Capacity(tiles=16, rows=128, cols=64, levels=16, delay_slots=8, n_inputs=1024, route_entries=8192,
                      input_entries=4096, lanes=8, name="ulx3s"),
}


# -- memory map -------------------------------------------------------------------------------
MEM_WEIGHTS, MEM_COLUMNS, MEM_STATE, MEM_ROUTE_HEADS, MEM_ROUTE_ENTRIES, MEM_INPUT_HEADS, MEM_INPUT_ENTRIES = range(7)
TILE_MEMORIES = (MEM_WEIGHTS, MEM_COLUMNS, MEM_STATE)
"""Memories of which every tile has its own (the ``tile`` field of an access picks one)."""
MEMORY_NAMES = {MEM_WEIGHTS: "weights", MEM_COLUMNS: "columns", MEM_STATE: "state",
                MEM_ROUTE_HEADS: "route_heads", MEM_ROUTE_ENTRIES: "route_entries",
                MEM_INPUT_HEADS: "input_heads", MEM_INPUT_ENTRIES: "input_entries"}


def column_fields(g: Geometry) -> list[Field]:
    """A tile's per-column word: kind, neuron model and parameters (hardware units), merge target."""
    ar = g.arithmetic
    decay, v = ar.decay_bits + 1, ar.v_bits
    return [("kind", 2, False), ("model", 3, False), ("subtract", 1, False), ("at_threshold", 1, False),
            ("host", 1, False),
            ("start", STEP_BITS, False), ("refractory", ar.refractory_bits, False),
            ("alpha", decay, False), ("alpha_syn", decay, False), ("alpha_adapt", decay, False),
            ("leak", v, True), ("v_init", v, True), ("threshold", v, True), ("v_reset", v, True),
            ("adapt", v, True), ("bias", v, True),
            ("merge_tile", g.tile_bits, False), ("merge_col", g.col_bits, False)]


def param_beats(g: Geometry) -> int:
    """Beats of :data:`PARAM_BEAT_BITS` a ``serial`` tile stores a column word in (a power of two)."""
    return 1 << (-(-width(column_fields(g)) // PARAM_BEAT_BITS) - 1).bit_length()


def state_fields(g: Geometry) -> list[Field]:
    """A neuron column's state: membrane, synaptic current, adaptation, refractory count, last spike."""
    ar = g.arithmetic
    return [("v", ar.v_bits, True), ("i", ar.v_bits, True), ("b", ar.v_bits, True),
            ("c", ar.refractory_bits, False), ("s", 1, False)]


def head_fields(entries: int) -> list[Field]:
    """A routing-table head: the source's first entry, its entry count, its host-output flag."""
    return [("first", bits_for(entries), False), ("count", bits_for(entries + 1), False), ("host", 1, False)]


def weight_fields(cap: Capacity) -> list[Field]:
    """A weight word: ``lanes`` signed weights, column ``word * lanes + j`` in lane ``j``."""
    return [(f"w{j}", weight_bits(cap.levels), True) for j in range(cap.tile_lanes)]


def memory_fields(cap: Capacity, mem: int) -> list[Field]:
    g = cap.geometry
    return {MEM_WEIGHTS: weight_fields(cap), MEM_COLUMNS: column_fields(g), MEM_STATE: state_fields(g),
            MEM_ROUTE_HEADS: head_fields(cap.route_entries), MEM_ROUTE_ENTRIES: row_fields(g),
            MEM_INPUT_HEADS: head_fields(cap.input_entries), MEM_INPUT_ENTRIES: row_fields(g)}[mem]


def memory_entries(cap: Capacity, mem: int) -> int:
    """Entries of a memory (a tile memory: of each tile's): weight words, columns, sources, ..."""
    return {MEM_WEIGHTS: cap.rows * cap.words, MEM_COLUMNS: cap.cols, MEM_STATE: cap.cols,
            MEM_ROUTE_HEADS: cap.neurons, MEM_ROUTE_ENTRIES: cap.route_entries,
            MEM_INPUT_HEADS: cap.n_inputs, MEM_INPUT_ENTRIES: cap.input_entries}[mem]


def memory_beats(cap: Capacity, mem: int) -> int:
    """Configuration words an entry of memory ``mem`` takes: 1, except on a ``serial`` chip, whose
    configuration port is :data:`PARAM_BEAT_BITS` wide: there an entry wider than that (a column
    word, a neuron's state) is ``memory_beats`` words, entry ``e``'s at ``e * beats ..``, its low
    bits first (a power of two; the last beats may be zero)."""
    bits = width(memory_fields(cap, mem))
    if cap.neuron != "serial" or bits <= PARAM_BEAT_BITS:
        return 1
    return 1 << (-(-bits // PARAM_BEAT_BITS) - 1).bit_length()


def memory_depth(cap: Capacity, mem: int) -> int:
    """Configuration addresses of a memory: its entries times :func:`memory_beats`."""
    return memory_entries(cap, mem) * memory_beats(cap, mem)


def word_bits(cap: Capacity, mem: int) -> int:
    """Width of one configuration word of memory ``mem`` (an entry, or a beat of one)."""
    bits = width(memory_fields(cap, mem))
    return bits if memory_beats(cap, mem) == 1 else PARAM_BEAT_BITS


def data_bits(cap: Capacity) -> int:
    """Width of the configuration port's data: the widest configuration word (at most
    :data:`PARAM_BEAT_BITS` on a ``serial`` chip)."""
    return max(word_bits(cap, mem) for mem in MEMORY_NAMES)


def addr_bits(cap: Capacity) -> int:
    return bits_for(max(memory_depth(cap, mem) for mem in MEMORY_NAMES))


def config_fields(cap: Capacity) -> list[Field]:
    """A configuration access on the chip's ``config`` port: write (1) or read (0) one word."""
    return [("write", 1, False), ("mem", 3, False), ("tile", cap.geometry.tile_bits, False),
            ("addr", addr_bits(cap), False), ("data", data_bits(cap), False)]


def readback_fields(cap: Capacity) -> list[Field]:
    """The chip's answer to a configuration access: the word read (0 for a write), and ``error``
    for an access outside the memory map (no such memory, tile or address)."""
    return [("data", data_bits(cap), False), ("error", 1, False)]


# -- an image as memory contents --------------------------------------------------------------
def config_words(image: HardwareImage, cap: Capacity) -> dict[tuple[int, int], dict[int, int]]:
    """``{(memory, tile): {address: word}}``: everything a chip of capacity ``cap`` must be written
    to run ``image`` (tile 0 for the chip-wide memories).

    Every column's word, every routing head and every input head are written (an unused column is
    ``COL_UNUSED``, an unused source has no entries), so nothing of a network loaded before is
    ever read. Weight rows and table entries are written only where the image reaches them:
    a row no event is routed to is never integrated, an entry no head points at never read.
    The state is not written: ``OP_RESET`` sets it from the columns' ``v_init``.
    """
    cap.check(image)
    a, g = image.arrays, cap.geometry
    T, R, C = image.n_tiles, image.rows, image.cols
    out: dict[tuple[int, int], dict[int, int]] = {}
    # weights: the rows an event can reach, whole words (columns beyond the image's hold 0)
    wf, P, W = weight_fields(cap), cap.tile_lanes, cap.words
    weights = image.weights()
    reached = np.zeros((T, R), dtype=bool)
    reached[a["route_tile"], a["route_row"]] = True
    reached[a["input_tile"], a["input_row"]] = True
    for t in range(cap.tiles):
        words: dict[int, int] = {}
        if t < T:
            for r in np.flatnonzero(reached[t]):
                row = np.zeros(W * P, dtype=np.int64)
                row[:C] = weights[t, r]
                for k in range(W):
                    words[int(r) * W + k] = pack(wf, {f"w{j}": row[k * P + j] for j in range(P)})
        out[(MEM_WEIGHTS, t)] = words
    # columns: every one, unused beyond the image
    cf = column_fields(g)
    merge = a["merge_to"]
    for t in range(cap.tiles):
        words = {}
        for c in range(cap.cols):
            if t >= T or c >= C or a["col_kind"][t, c] == 0:
                words[c] = 0
                continue
            kind = int(a["col_kind"][t, c])
            values = {"kind": kind, "host": int(a["host_out"][t, c])}
            if kind == COL_NEURON:
                values |= {"model": int(a["col_model"][t, c]), "subtract": int(a["col_reset"][t, c]),
                           "at_threshold": int(a["col_fire"][t, c]),
                           "start": int(a["param/start"][t, c]), "refractory": int(a["param/refractory"][t, c])}
                values |= {name: int(a[f"param/{name}"][t, c]) for name in NEURON_PARAMS}
            elif kind == COL_PARTIAL:
                values |= {"merge_tile": int(merge[t, c]) // C, "merge_col": int(merge[t, c]) % C}
            words[c] = pack(cf, values)
        out[(MEM_COLUMNS, t)] = words
    # routing: a head per chip column address (the image's address t * C + c moves to t * cap.cols + c)
    hf = head_fields(cap.route_entries)
    ptr = a["route_ptr"]
    heads = {}
    for t in range(cap.tiles):
        for c in range(cap.cols):
            if t < T and c < C:
                s = t * C + c
                n = int(ptr[s + 1] - ptr[s])
                heads[t * cap.cols + c] = pack(hf, {"first": int(ptr[s]) if n else 0, "count": n,
                                                    "host": int(a["host_out"][t, c])})
            else:
                heads[t * cap.cols + c] = 0
    out[(MEM_ROUTE_HEADS, 0)] = heads
    ef = row_fields(g)
    out[(MEM_ROUTE_ENTRIES, 0)] = {e: pack(ef, {"tile": int(a["route_tile"][e]), "row": int(a["route_row"][e]),
                                                "delay": int(a["route_delay"][e])})
                                   for e in range(len(a["route_tile"]))}
    hf = head_fields(cap.input_entries)
    ptr = a["input_ptr"]
    n_in = ptr.size - 1
    heads = {}
    for s in range(cap.n_inputs):
        n = int(ptr[s + 1] - ptr[s]) if s < n_in else 0
        heads[s] = pack(hf, {"first": int(ptr[s]) if n else 0, "count": n})
    out[(MEM_INPUT_HEADS, 0)] = heads
    out[(MEM_INPUT_ENTRIES, 0)] = {e: pack(ef, {"tile": int(a["input_tile"][e]), "row": int(a["input_row"][e]),
                                                "delay": int(a["input_delay"][e])})
                                   for e in range(len(a["input_tile"]))}
    for (mem, tile), words in out.items():  # entries wider than the configuration port: in beats
        beats = memory_beats(cap, mem)
        if beats > 1:
            mask = (1 << PARAM_BEAT_BITS) - 1
            out[(mem, tile)] = {e * beats + j: (w >> (PARAM_BEAT_BITS * j)) & mask
                                for e, w in words.items() for j in range(beats)}
    return out


def config_writes(image: HardwareImage, cap: Capacity) -> list[tuple[int, int, int, int]]:
    """:func:`config_words` as the writes a host sends, in order: ``(memory, tile, address, word)``."""
    return [(mem, tile, addr, word) for (mem, tile), words in config_words(image, cap).items()
            for addr, word in words.items()]


def memory_init(cap: Capacity, mem: int, words: dict[int, int] | None) -> list[int]:
    """A memory's full contents (0 where ``words`` has nothing): a ROM chip's initial values."""
    init = [0] * memory_depth(cap, mem)
    for addr, word in (words or {}).items():
        init[addr] = word
    return init


def state_init(cap: Capacity, image: HardwareImage | None, tile: int) -> list[int]:
    """A tile's state at power-up: ``v = v_init`` (what ``OP_RESET`` sets)."""
    sf = state_fields(cap.geometry)
    out = [0] * cap.cols
    if image is not None and tile < image.n_tiles:
        for c in range(image.cols):
            out[c] = pack(sf, {"v": int(image.arrays["param/v_init"][tile, c])})
    return out
