"""The chip's multicast spike router (``docs/architecture.md``, "Blocks" and "Events").

A neuron's spike ``(tile, col)`` comes in on ``spikes``; the router looks up its column address
``tile * C + col`` in the routing table and sends one row event ``(tile, row, delay)`` on ``rows``
per destination, in table order, and a copy of the spike on ``host`` when the column's
``host_out`` flag is set.

``Router(image, source="inputs")`` is the chip's **input map**, the same multicast lookup over
the image's ``input_ptr``, ``input_tile``, ``input_row``, ``input_delay``: a host input event
``(input, payload)`` comes in on ``inputs`` and each destination leaves on ``rows`` as
``(tile, row, delay, payload)`` (:func:`~hdl.events.input_row_layout`); it has no ``host`` port.
``busy`` is high while an accepted event still has outputs to deliver.

Tables (``lib.memory.Memory``, read-only, initialised from the image's ``route_ptr``,
``route_tile``, ``route_row``, ``route_delay`` and ``host_out``):

- ``heads``: ``T*C + 1`` words of :func:`head_layout` (``first`` entry index, entry ``count``,
  ``host`` flag) indexed by column address. The spare last word (no routes, no host flag) is
  where a spike from outside the image (``tile >= T`` or ``col >= C``) is looked up: it is
  dropped.
- ``entries``: one :func:`~hdl.events.row_layout` word per routing entry (at least one word).

Pipeline (three stages, each a register or a synchronous memory port):

1. **accept**: a spike is taken when the head stage is empty or is being emptied in the same
   cycle; its column address goes to the ``heads`` read port.
2. **head**: holds the looked-up head word and the spike. It leaves when the *walker* is idle
   and the host copy (if any) can be placed in the ``host`` register.
3. **walker → entries → rows**: each cycle the output can move (``~rows.valid | rows.ready``),
   the ``entries`` read port loads one entry, and its data register *is* ``rows.payload`` (its
   enable, low while the receiver stalls, holds the payload). A busy walker issues its next
   entry; an idle one issues the head's first entry directly and keeps the rest, so the next
   spike's entries follow the previous spike's last entry without a gap while the head stage
   looks up the spike after it.

Latency: **2 cycles**: a spike accepted at clock edge ``t`` has its first row event (and its host
copy) valid in the cycle after edge ``t + 1``, i.e. it can be taken at edge ``t + 2``
(:attr:`Router.LATENCY`).

Throughput: with ``rows.ready`` and ``host.ready`` high, **one row event per cycle**, across
consecutive spikes too, whether they have one destination or many; a source with no destination
costs one idle cycle on ``rows``. A spike with ``d > 1`` destinations holds ``spikes.ready`` low
for ``d - 1`` cycles.

Streams follow ``lib.stream``'s rules: ``rows.valid`` and ``host.valid`` are registers that do
not depend on ``ready``; payloads hold while ``valid`` is high and ``ready`` low. ``spikes.ready``
depends combinationally on ``host.ready`` only (not on ``rows.ready``). A host copy waits for
``host.ready`` without stopping the row events of spikes already handed to the walker; while
``rows`` stalls, an idle walker still takes the next head (so host copies and sources without
destinations keep moving).
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from compiler.capacity import head_fields
from compiler.events import pack, row_fields
from compiler.image import HardwareImage

from .events import Geometry, bits_for, input_layout, input_row_layout, row_layout, spike_layout, struct

SOURCES = ("neurons", "inputs")


def head_layout(entries: int) -> data.StructLayout:
    """A ``heads`` word of a table of ``entries`` entries: the source's first entry index, its entry
    count, its host-output flag (:func:`compiler.capacity.head_fields`)."""
    return struct(head_fields(entries))


class Router(wiring.Component):
    """Multicast spike router built from a compiled image.

    ``Router(image)`` or ``Router(geometry, route_ptr=..., route_tile=..., route_row=...,
    route_delay=..., host_out=...)`` with the arrays of ``docs/hardware-image.md``
    (``host_out`` of shape ``[T, C]`` or ``[T*C]``), or ``Router(geometry, entries=E)`` with
    empty tables of ``E`` entries (a programmable chip's; ``entries`` also sizes a table given).
    The tables are read and written over the ``cfg_*`` ports (``cfg_mem`` 0: heads, 1:
    entries; only while the router is idle and no event comes in); a read's word is on
    ``cfg_rdata`` in the next cycle.

    Ports: ``spikes`` (in, :func:`~hdl.events.spike_layout`), ``rows`` (out,
    :func:`~hdl.events.row_layout`), ``host`` (out, :func:`~hdl.events.spike_layout`).
    """

    LATENCY = 2
    """Cycles from the edge that accepts a spike to the edge that can take its first row event."""

    def __init__(self, image: HardwareImage | Geometry, *, source: str = "neurons", entries: int | None = None,
                 route_ptr=None, route_tile=None, route_row=None, route_delay=None, host_out=None):
        if source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
        self.source = source
        tables = {"route_ptr": route_ptr, "route_tile": route_tile, "route_row": route_row,
                  "route_delay": route_delay, "host_out": host_out}
        try:
            self._load(image, tables, entries)
        except ValueError:
            self._MustUse__silence = True  # a refused Router is not an "unused elaboratable"
            raise
        g = self.geometry
        if source == "neurons":
            ports = {"spikes": In(stream.Signature(spike_layout(g))),
                     "rows": Out(stream.Signature(row_layout(g))),
                     "host": Out(stream.Signature(spike_layout(g)))}
        else:
            ports = {"inputs": In(stream.Signature(input_layout(g))),
                     "rows": Out(stream.Signature(input_row_layout(g)))}
        self.addr_bits = bits_for(max(self.n_sources + 1, self.n_entries))
        self.data_bits = max(self.head_layout.size, self.entry_layout.size)
        ports |= {"cfg_en": In(1), "cfg_write": In(1), "cfg_mem": In(1), "cfg_addr": In(self.addr_bits),
                  "cfg_wdata": In(self.data_bits), "cfg_rdata": Out(self.data_bits)}
        super().__init__(ports | {"busy": Out(1)})

    def _load(self, image, tables, entries) -> None:
        """Check the arguments and build the memories' initial contents."""
        if isinstance(image, HardwareImage):
            given = [name for name, value in tables.items() if value is not None]
            if given:
                raise ValueError(f"Router(image) takes its tables from the image; do not also pass {', '.join(given)}")
            g = Geometry.of(image)
            a = image.arrays
            if self.source == "neurons":
                tables = {name: a[name] for name in tables}
            else:
                tables = {"route_ptr": a["input_ptr"], "route_tile": a["input_tile"], "route_row": a["input_row"],
                          "route_delay": a["input_delay"], "host_out": np.zeros(g.n_inputs, dtype=bool)}
        elif isinstance(image, Geometry) and entries is not None and all(v is None for v in tables.values()):
            g = image
            N = g.tiles * g.cols if self.source == "neurons" else g.n_inputs
            tables = {"route_ptr": np.zeros(N + 1, dtype=np.int64), "route_tile": np.zeros(0, dtype=np.int64),
                      "route_row": np.zeros(0, dtype=np.int64), "route_delay": np.zeros(0, dtype=np.int64),
                      "host_out": np.zeros(N, dtype=bool)}
        elif isinstance(image, Geometry):
            g = image
            missing = [name for name, value in tables.items() if value is None]
            if missing:
                raise ValueError(f"Router(geometry, ...) needs the routing tables: {', '.join(missing)} missing")
        else:
            raise ValueError(f"Router needs a HardwareImage or a Geometry, not {type(image).__name__}")
        self.geometry = g
        T, R, C, D = g.tiles, g.rows, g.cols, g.delay_slots
        if min(T, R, C, D) < 1:
            raise ValueError(f"geometry {T} tiles of {R}x{C} with {D} delay slots: every size must be >= 1")
        self.n_sources = N = T * C if self.source == "neurons" else g.n_inputs
        host_shapes = ((T, C), (N,)) if self.source == "neurons" else ((N,),)

        ptr = self._int_array("route_ptr", tables["route_ptr"])
        tile = self._int_array("route_tile", tables["route_tile"])
        row = self._int_array("route_row", tables["route_row"])
        delay = self._int_array("route_delay", tables["route_delay"])
        host = np.asarray(tables["host_out"])
        if ptr.shape != (N + 1,):
            what = "tiles * cols" if self.source == "neurons" else "inputs"
            raise ValueError(f"route_ptr has shape {list(ptr.shape)}; expected [{N + 1}] ({what} + 1)")
        if ptr[0] != 0 or np.any(np.diff(ptr) < 0):
            raise ValueError("route_ptr must start at 0 and never decrease")
        n = int(ptr[-1])
        for name, arr in (("route_tile", tile), ("route_row", row), ("route_delay", delay)):
            if arr.shape != (n,):
                raise ValueError(f"{name} has shape {list(arr.shape)}; route_ptr[-1] says {n} entries")
        for name, arr, hi in (("route_tile", tile, T), ("route_row", row, R), ("route_delay", delay, D)):
            if n and (arr.min() < 0 or arr.max() >= hi):
                raise ValueError(f"{name} holds {int(arr.min() if arr.min() < 0 else arr.max())}, outside [0, {hi})")
        if host.dtype.kind != "b" or host.shape not in host_shapes:
            raise ValueError(f"host_out must be a bool array of shape {' or '.join(str(list(s)) for s in host_shapes)}, "
                             f"not {host.dtype} {list(host.shape)}")
        host = host.reshape(-1)

        if entries is not None and not (isinstance(entries, int) and entries >= max(n, 1)):
            raise ValueError(f"entries must be an integer >= {max(n, 1)} (the table's entries), not {entries!r}")
        counts = np.diff(ptr)
        self.n_entries = E = entries if entries is not None else max(n, 1)
        self.head_layout = head_layout(E)
        self.entry_layout = row_layout(g)
        hf, ef = head_fields(E), row_fields(g)
        heads = [pack(hf, {"first": int(ptr[s]) if counts[s] else 0, "count": int(counts[s]), "host": int(host[s])})
                 for s in range(N)] + [0]  # the spare word: no routes, no host copy
        table = [pack(ef, {"tile": int(tile[e]), "row": int(row[e]), "delay": int(delay[e])}) for e in range(n)]
        self._head_init = [data.Const(self.head_layout, w) for w in heads]
        self._entry_init = [data.Const(self.entry_layout, w) for w in table + [0] * (E - n)]

    def preload(self, heads: dict[int, int], table: dict[int, int]) -> None:
        """Initial contents as words (``compiler.capacity.config_words``): the ROM chip's tables."""
        for addr, word in heads.items():
            self._head_init[addr] = data.Const(self.head_layout, word)
        for addr, word in table.items():
            self._entry_init[addr] = data.Const(self.entry_layout, word)

    @staticmethod
    def _int_array(name, value) -> np.ndarray:
        arr = np.asarray(value)
        if arr.dtype.kind not in "iu":
            raise ValueError(f"{name} must be an integer array, not {arr.dtype}")
        return arr.astype(np.int64)

    def elaborate(self, platform):
        m = Module()
        g = self.geometry
        C, N = g.cols, self.n_sources
        neurons = self.source == "neurons"

        m.submodules.heads = heads = memory.Memory(shape=self.head_layout, depth=N + 1, init=self._head_init)
        m.submodules.entries = entries = memory.Memory(shape=self.entry_layout, depth=self.n_entries,
                                                       init=self._entry_init)
        head_rd, head_wr = heads.read_port(), heads.write_port()
        entry_rd, entry_wr = entries.read_port(), entries.write_port()
        src = self.spikes if neurons else self.inputs

        # -- stage 2 state: the looked-up head (head_rd.data holds it while its enable is low) --
        h_valid = Signal()
        h_event = Signal(src.payload.shape())
        h = head_rd.data

        # -- walker: the next entry to issue and how many are left (0: idle) ------------------
        w_ptr = Signal(bits_for(self.n_entries + 1))
        w_left = Signal(self.head_layout["count"].shape)

        # -- outputs --------------------------------------------------------------------------
        # The row event is the entries read port's data register; an input event's payload
        # travels beside it, in a register loaded in the same cycle.
        for name in ("tile", "row", "delay"):
            m.d.comb += getattr(self.rows.payload, name).eq(getattr(entry_rd.data, name))
        if not neurons:
            w_payload = Signal(signed(g.arithmetic.input_bits))
            out_payload = Signal(signed(g.arithmetic.input_bits))
            m.d.comb += self.rows.payload.payload.eq(out_payload)
        advance = Signal()  # the rows output register (the entries read port) may load this cycle
        m.d.comb += advance.eq(~self.rows.valid | self.rows.ready)

        host_ok = Signal()  # the head's host copy (if any) can be placed in the host register
        if neurons:
            m.d.comb += host_ok.eq(~h.host | ~self.host.valid | self.host.ready)
        else:
            m.d.comb += host_ok.eq(1)
        idle = Signal()
        m.d.comb += idle.eq(w_left == 0)
        take_h = Signal()  # the head moves on (to the walker, or its first entry straight to the port)
        m.d.comb += take_h.eq(h_valid & host_ok & idle)
        m.d.comb += self.busy.eq(h_valid | ~idle | self.rows.valid | (self.host.valid if neurons else 0))

        # -- stage 1: accept an event when the head stage is free next cycle --------------------
        m.d.comb += src.ready.eq(~h_valid | take_h)
        accept = src.valid & src.ready
        ev = src.payload
        if neurons:
            in_range, address = (ev.tile < g.tiles) & (ev.col < C), ev.tile * C + ev.col
        else:
            in_range, address = ev.input < N, ev.input
        m.d.comb += [
            head_rd.en.eq(accept),
            head_rd.addr.eq(Mux(in_range, address, N)),
        ]
        with m.If(accept):
            m.d.sync += [h_valid.eq(1), h_event.eq(ev)]
        with m.Elif(take_h):
            m.d.sync += h_valid.eq(0)

        # -- host copy --------------------------------------------------------------------------
        if neurons:
            with m.If(take_h & h.host):
                m.d.sync += [self.host.valid.eq(1), self.host.payload.eq(h_event)]
            with m.Elif(self.host.ready):
                m.d.sync += self.host.valid.eq(0)

        # -- walker and rows output -------------------------------------------------------------
        m.d.comb += entry_rd.en.eq(advance)
        self._config(m, head_rd, head_wr, entry_rd, entry_wr)
        with m.If(advance):
            with m.If(~idle):
                # issue the walker's next entry
                m.d.comb += entry_rd.addr.eq(w_ptr)
                m.d.sync += [self.rows.valid.eq(1), w_ptr.eq(w_ptr + 1), w_left.eq(w_left - 1)]
                if not neurons:
                    m.d.sync += out_payload.eq(w_payload)
            with m.Elif(take_h):
                # idle walker: issue the head's first entry now, keep the rest
                m.d.comb += entry_rd.addr.eq(h.first)
                m.d.sync += self.rows.valid.eq(h.count != 0)
                with m.If(h.count != 0):
                    m.d.sync += [w_ptr.eq(h.first + 1), w_left.eq(h.count - 1)]
                if not neurons:
                    m.d.sync += [out_payload.eq(h_event.payload), w_payload.eq(h_event.payload)]
            with m.Else():
                m.d.sync += self.rows.valid.eq(0)
        with m.Elif(take_h):
            # output stalled, walker idle: load the head so the next event can be looked up
            m.d.sync += [w_ptr.eq(h.first), w_left.eq(h.count)]
            if not neurons:
                m.d.sync += w_payload.eq(h_event.payload)
        return m

    def _config(self, m, head_rd, head_wr, entry_rd, entry_wr) -> None:
        """Configuration accesses (after the datapath's assignments: they win while ``cfg_en``).

        The spare head word (address ``n_sources``) is never written: it stays empty."""
        addr, read_mem = self.cfg_addr, Signal()
        with m.If(self.cfg_en & self.cfg_write & ~self.cfg_mem & (addr < self.n_sources)):
            m.d.comb += [head_wr.addr.eq(addr), head_wr.en.eq(1), head_wr.data.eq(self.cfg_wdata)]
        with m.If(self.cfg_en & self.cfg_write & self.cfg_mem & (addr < self.n_entries)):
            m.d.comb += [entry_wr.addr.eq(addr), entry_wr.en.eq(1), entry_wr.data.eq(self.cfg_wdata)]
        with m.If(self.cfg_en & ~self.cfg_write):
            m.d.comb += [head_rd.en.eq(1), head_rd.addr.eq(addr), entry_rd.en.eq(1), entry_rd.addr.eq(addr)]
            m.d.sync += read_mem.eq(self.cfg_mem)
        m.d.comb += self.cfg_rdata.eq(Mux(read_mem, entry_rd.data.as_value(), head_rd.data.as_value()))
