"""A whole SMALL chip: tiles, the input map, the spike router and the timestep sequencer.

``Chip(capacity)`` builds the programmable chip of ``docs/architecture.md`` for a
:class:`~compiler.capacity.Capacity`: one :class:`~hdl.tile.DigitalTile` per tile, the input
map and the spike router (:class:`~hdl.router.Router`), a sequencer that runs one timestep per
host ``OP_STEP`` command, and the ``config`` port that writes and reads every memory
(``Chip(image)``: the ROM chip of a digital image, the same design with the image as initial
values). ``sim/digital.py`` is its reference: the tests run it in Amaranth's
simulator and compare every spike of every step.

For a memristive image each tile is a :class:`~hdl.memristive_tile.MemristiveTileController`
(``pulse_cycles`` long read pulses) and the analog arrays and neurons stay outside the RTL: the
chip exposes every tile's analog ports at its top level, one sub-interface ``tile<t>`` per tile
(Verilog ports ``tile0__row_drive``, ``tile0__pulse``, ..., ``tile0__fired``; directions and
contract as in ``hdl/memristive_tile.py``), for an analog model to drive
(``verify/analog.py`` under cocotb). The sequencer strobes ``integrate`` on all tiles in
the same cycle (so the tiles pulse together and partial-sum currents merge in the analog
domain) and skips the export phase (there are no partial-sum events); the host protocol is the
same, with ``sim/memristive.py`` (ideal devices) as the reference. Step timing below is the
digital chip's; a memristive step is in ``hdl/memristive_tile.py``.

Host ports (layouts in ``hdl/events.py``):

``commands`` (in, :func:`~hdl.events.command_layout`)
    ``OP_INPUT``: a host input event ``(input, payload)`` of the current step (payload 0 is
    ignored, as on the digital twin; an index beyond the image's inputs is dropped);
    ``OP_STEP``: run the step; ``OP_RESET``: back to the image's initial state (step 0).
    ``ready`` is low while a step or a reset runs.
``outputs`` (out, :func:`~hdl.events.output_layout`)
    during each step: ``OUT_SPIKE (tile, col)`` for every spike of a host-flagged neuron
    column, ``OUT_VALUE (tile, col, value)`` for every host-flagged LI column (its membrane
    ``v`` in state units, every step); then one ``OUT_STEP`` when the step is done.

The events of a step leave in no particular order; the step they belong to is the number of
``OUT_STEP`` events before them. Chip step ``t`` runs network step ``t - L(P)`` of population
``P`` (``docs/architecture.md``, "Latency"): a host that wants ``T`` network steps sends
``T + max L`` steps.

One step, in clock cycles (``A`` active rows of the busiest tile):

1. input events go through the input map into the tiles' pending rows (one per cycle);
2. **integrate**, all tiles in parallel: ``(C / lanes + 1) A + 3`` cycles (``DigitalTile``);
3. **export**, all tiles at once: 3 cycles per partial-sum column of the tile with the most,
   plus one, plus stalls (the partial sums share one bus, and a tile adds one every 2 cycles);
4. **update**, all tiles in parallel: ``C + 8`` cycles (one column a cycle into a 6-stage
   neuron pipeline) plus stalls; spikes go through a 2-entry FIFO and the router (one row
   event per cycle) into the pending rows of the steps they are due, while the tiles update;
5. ``OUT_STEP``.

:func:`step_cycles` gives the count for a given activity; the benchmark measures it.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from compiler.capacity import MEM_INPUT_ENTRIES, MEM_INPUT_HEADS, MEM_ROUTE_ENTRIES, MEM_ROUTE_HEADS, MEMORY_NAMES, \
    STEP_BITS, TILE_MEMORIES, Capacity, CapacityError, config_fields, config_words, memory_depth, param_beats, \
    readback_fields
from compiler.image import COL_NEURON, COL_PARTIAL, HardwareImage

from .events import OP_INPUT, OP_RESET, OP_STEP, OUT_SPIKE, OUT_STEP, OUT_VALUE, Geometry, command_layout, \
    output_layout, struct
from .memristive_tile import MemristiveTileController
from .router import Router
from .tile import FLAG_BITS, LANES, UPDATE_STAGES, DigitalTile


def step_cycles(image: HardwareImage, active_rows: int, *, lanes: int = LANES, row_events: int = 0,
                capacity: Capacity | None = None, step: int | None = None) -> int:
    """Clock cycles of one chip step of a digital chip without back-pressure (see the module docstring).

    ``active_rows``: active rows of the busiest tile; ``row_events``: row events the router
    delivers after the last tile has updated (usually 0); ``capacity``: the chip's (default: the
    smallest that holds ``image``, with ``lanes``); ``step``: the chip step, which a ``serial``
    tile's update depends on (a column whose population has not started is skipped; default: every
    population has started). Stalls of partial sums converging on one tile are not counted.
    """
    if capacity is None:
        capacity = Capacity.of(image, lanes=lanes)
    C, words = capacity.cols, capacity.words
    kind = image.arrays["col_kind"]
    partial = int((kind == COL_PARTIAL).sum(axis=1).max(initial=0))
    integrate = (words + 1) * active_rows + (3 if active_rows else 1)
    if capacity.neuron == "serial":
        beats = param_beats(capacity.geometry)
        start = image.arrays["param/start"]
        alive = (kind == COL_NEURON) & (start <= (step if step is not None else start.max(initial=0)))
        export = 3 * -(-C // FLAG_BITS) + (beats + 5) * partial  # flags read 16 columns at a time
        update = int(max((beats + 8) * n + (beats + 3) * (C - n) for n in alive.sum(axis=1))) + 1
    else:
        export = 3 * partial + 1
        update = C + UPDATE_STAGES + 2
    sequencer = 7  # strobes and the state changes between phases
    return integrate + export + update + row_events + sequencer


ANALOG_PORTS = ("row_drive", "pulse", "evaluate", "hold", "settled", "fired", "adc_req", "adc_col", "adc_ack",
                "adc_value", "neuron_clear")
"""The analog ports of a MemristiveTileController that a memristive chip exposes per tile."""


class Chip(wiring.Component):
    """A SMALL chip (see the module docstring).

    ``Chip(capacity)``: the programmable chip of a :class:`~compiler.capacity.Capacity`, its
    memories empty until the host writes a network over ``config``; ``Chip(capacity,
    image=image)``: the same chip with ``image`` as its memories' initial values (a ROM chip that
    can still be reconfigured); ``Chip(image)``: a digital image's ROM chip of the smallest
    capacity that holds it (``lanes`` MAC lanes), or a memristive image's chip (tile controllers
    with ``pulse_cycles`` long read pulses; not programmable).
    """

    def __init__(self, spec: Capacity | HardwareImage, *, image: HardwareImage | None = None, lanes: int = LANES,
                 pulse_cycles: int = 4):
        try:
            if isinstance(spec, HardwareImage):
                if image is not None:
                    raise ValueError("Chip(image) takes its contents from the image; do not also pass image=")
                image = spec
                if image.target == "memristive":
                    spec = None
                elif image.target == "digital":
                    spec = Capacity.of(image, lanes=lanes)
                else:
                    raise ValueError(f"Chip needs a digital or memristive image, not a {image.target!r} one: "
                                     "compile with --target digital or --target memristive")
            elif not isinstance(spec, Capacity):
                raise ValueError(f"Chip needs a Capacity or a HardwareImage, not {type(spec).__name__}")
            self.capacity = cap = spec
            self.image = image
            self.analog = cap is None
            if self.analog:
                self.tiles = [MemristiveTileController(image, t, pulse_cycles=pulse_cycles)
                              for t in range(image.n_tiles)]
                self.geometry = g = Geometry.of(image)
                self.router = Router(image)
                self.input_map = Router(image, source="inputs")
            else:
                words = config_words(image, cap) if image is not None else {}
                self.tiles = [DigitalTile(cap, t, image=image, words=words) for t in range(cap.tiles)]
                self.geometry = g = cap.geometry
                self.router = Router(g, entries=cap.route_entries)
                self.input_map = Router(g, source="inputs", entries=cap.input_entries)
                if image is not None:
                    self.router.preload(words[(MEM_ROUTE_HEADS, 0)], words[(MEM_ROUTE_ENTRIES, 0)])
                    self.input_map.preload(words[(MEM_INPUT_HEADS, 0)], words[(MEM_INPUT_ENTRIES, 0)])
        except (ValueError, CapacityError):
            self._MustUse__silence = True  # a refused Chip is not an "unused elaboratable"
            raise
        members = {
            "commands": In(stream.Signature(command_layout(g))),
            "outputs": Out(stream.Signature(output_layout(g))),
        }
        if self.analog:  # each tile's analog ports, with the controller's directions
            for t, tile in enumerate(self.tiles):
                members[f"tile{t}"] = Out(wiring.Signature({name: tile.signature.members[name]
                                                            for name in ANALOG_PORTS}))
        else:
            members["config"] = In(stream.Signature(struct(config_fields(cap))))
            members["readback"] = Out(stream.Signature(struct(readback_fields(cap))))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        g, tiles = self.geometry, self.tiles
        S = g.slots
        for t, tile in enumerate(tiles):
            m.submodules[f"tile{t}"] = tile
            if self.analog:
                port = getattr(self, f"tile{t}")
                for name in ANALOG_PORTS:
                    if tile.signature.members[name].flow == Out:
                        m.d.comb += getattr(port, name).eq(getattr(tile, name))
                    else:
                        m.d.comb += getattr(tile, name).eq(getattr(port, name))
        m.submodules.router = router = self.router
        m.submodules.input_map = inmap = self.input_map

        slot = Signal(g.slot_bits)  # chip step mod S: the pending rows integrated this step
        step = Signal(STEP_BITS)  # chip step, saturating (columns hold their state while step < start)
        any_busy = Signal()
        m.d.comb += any_busy.eq(Cat(*(tile.busy for tile in tiles)).any())

        def due(name, delay, hop):
            """Slot of an event ``hop + delay`` steps after this one (``hop + delay < S``)."""
            x = slot + hop + delay
            due_slot = Signal(g.slot_bits, name=name)
            m.d.comb += due_slot.eq(Mux(x >= S, x - S, x))
            return due_slot

        # -- rows into the tiles: the router's spikes first, then the input map ---------------
        rows_ready = Array(tile.rows.ready for tile in tiles)
        spike_row, input_row = router.rows.payload, inmap.rows.payload
        spike_slot, input_slot = due("spike_slot", spike_row.delay, 1), due("input_slot", input_row.delay, 0)
        m.d.comb += [router.rows.ready.eq(rows_ready[spike_row.tile]),
                     inmap.rows.ready.eq(~router.rows.valid & rows_ready[input_row.tile])]
        for t, tile in enumerate(tiles):
            with m.If(router.rows.valid):
                m.d.comb += [tile.rows.valid.eq(spike_row.tile == t),
                             tile.rows.payload.row.eq(spike_row.row),
                             tile.rows.payload.slot.eq(spike_slot),
                             tile.rows.payload.payload.eq(1)]
            with m.Else():
                m.d.comb += [tile.rows.valid.eq(inmap.rows.valid & (input_row.tile == t)),
                             tile.rows.payload.row.eq(input_row.row),
                             tile.rows.payload.slot.eq(input_slot),
                             tile.rows.payload.payload.eq(input_row.payload)]

        # -- spikes of the tiles into the router, through a 2-entry FIFO: its registered ready
        # keeps the router's lookup out of the tiles' paths
        spike_fifo = m.submodules.spike_fifo = self._merge(m, [tile.spikes for tile in tiles])
        m.d.comb += [router.spikes.valid.eq(spike_fifo.r_rdy), router.spikes.payload.eq(spike_fifo.r_data),
                     spike_fifo.r_en.eq(router.spikes.ready)]

        # -- partial sums (digital tiles; analog ones merge them as currents): every tile's
        # export onto one bus, which delivers each to the tile of its neuron column: wiring
        # linear in the tiles, and any network's partial sums reach their columns, whichever
        # tiles it puts them on
        if not self.analog:
            psum_fifo = m.submodules.psum_fifo = self._merge(m, [tile.psum_out for tile in tiles])
            head = tiles[0].psum_out.payload.shape()(psum_fifo.r_data)
            m.d.comb += psum_fifo.r_en.eq(Array(tile.psum_in.ready for tile in tiles)[head.tile])
            for t, tile in enumerate(tiles):
                m.d.comb += [tile.psum_in.valid.eq(psum_fifo.r_rdy & (head.tile == t)),
                             tile.psum_in.payload.eq(head)]

        # -- host outputs: spike copies, then LI values, then the end-of-step marker ---------
        out = self.outputs
        step_done = Signal()
        sources = [(router.host, OUT_SPIKE)] + [(tile.values, OUT_VALUE) for tile in tiles]
        valids = Cat(*(port.valid for port, _ in sources))
        taken = valids.any()
        for k, (port, kind) in enumerate(sources):
            earlier = valids[:k].any() if k else Const(0)
            m.d.comb += port.ready.eq(out.ready & ~earlier)
            with m.If(port.valid & ~earlier):
                m.d.comb += [out.payload.kind.eq(kind), out.payload.tile.eq(port.payload.tile),
                             out.payload.col.eq(port.payload.col)]
                if kind == OUT_VALUE:
                    m.d.comb += out.payload.value.eq(port.payload.value)
        with m.If(step_done & ~taken):
            m.d.comb += out.payload.kind.eq(OUT_STEP)
        m.d.comb += out.valid.eq(taken | step_done)

        # -- host commands ---------------------------------------------------------------------
        cmd = self.commands
        m.d.comb += [inmap.inputs.payload.input.eq(cmd.payload.input),
                     inmap.inputs.payload.payload.eq(cmd.payload.payload)]

        def strobe(name, which=None):
            for t in (range(len(tiles)) if which is None else [which]):
                m.d.comb += getattr(tiles[t], name).eq(1)

        for tile in tiles:
            m.d.comb += [tile.slot.eq(slot), tile.step.eq(step)]

        config_states = None if self.analog else self._config(m, any_busy)
        with m.FSM(name="sequencer"):
            with m.State("HOST"):
                with m.Switch(cmd.payload.op):
                    with m.Case(OP_INPUT):
                        m.d.comb += [inmap.inputs.valid.eq(cmd.valid), cmd.ready.eq(inmap.inputs.ready)]
                    with m.Case(OP_STEP):
                        m.d.comb += cmd.ready.eq(1)
                        with m.If(cmd.valid):
                            m.next = "INPUTS"
                    with m.Case(OP_RESET):
                        m.d.comb += cmd.ready.eq(1)
                        with m.If(cmd.valid):
                            m.d.sync += [slot.eq(0), step.eq(0)]
                            m.next = "CLEAR"
                    with m.Default():  # an unknown opcode is dropped
                        m.d.comb += cmd.ready.eq(1)
                if not self.analog:  # a configuration access between steps (the bridge never sends one with a command)
                    with m.If(self.config.valid & ~cmd.valid & ~inmap.busy & ~any_busy):
                        m.next = "CONFIG"
            if not self.analog:
                config_states()
            with m.State("CLEAR"):
                with m.If(~inmap.busy):
                    strobe("clear")
                    m.next = "WAIT_CLEAR"
            with m.State("WAIT_CLEAR"):
                with m.If(~any_busy):
                    m.next = "HOST"
            with m.State("INPUTS"):
                with m.If(~inmap.busy):
                    strobe("integrate")
                    m.next = "INTEGRATE"
            with m.State("INTEGRATE"):
                with m.If(~any_busy):
                    m.next = "UPDATE" if self.analog else "EXPORT"
            if not self.analog:
                with m.State("EXPORT"):
                    strobe("export")
                    m.next = "EXPORTING"
                with m.State("EXPORTING"):  # until every partial sum has been added to its column
                    with m.If(~any_busy & ~psum_fifo.r_rdy):
                        m.next = "UPDATE"
            with m.State("UPDATE"):
                strobe("update")
                m.next = "UPDATING"
            with m.State("UPDATING"):
                with m.If(~any_busy & (spike_fifo.level == 0) & ~router.busy):
                    m.next = "STEP_DONE"
            with m.State("STEP_DONE"):
                m.d.comb += step_done.eq(1)
                with m.If(out.ready):
                    m.d.sync += [slot.eq(Mux(slot == S - 1, 0, slot + 1)),
                                 step.eq(Mux(step == (1 << STEP_BITS) - 1, step, step + 1))]
                    m.next = "HOST"
        return m

    @staticmethod
    def _merge(m: Module, sources: list) -> fifo.SyncFIFOBuffered:
        """The streams ``sources`` into a new 2-entry FIFO, one a cycle, fixed priority (lower
        index first). "An earlier source is valid" is one reduction per source, not a chain of
        ORs, which would nest as deep as there are tiles (hundreds overflow Python's recursion)."""
        queue = fifo.SyncFIFOBuffered(width=sources[0].payload.shape().size, depth=2)
        valids = Cat(*(src.valid for src in sources))
        for k, src in enumerate(sources):
            earlier = valids[:k].any() if k else Const(0)
            m.d.comb += src.ready.eq(queue.w_rdy & ~earlier)
            with m.If(src.valid & ~earlier):
                m.d.comb += queue.w_data.eq(src.payload)
        m.d.comb += queue.w_en.eq(valids.any())
        return queue

    def _config(self, m: Module, any_busy):
        """Configuration accesses: the decoding, and a function that adds the sequencer's states
        for one access (called inside its FSM): the access (one cycle), the read word into a
        register, the answer on ``readback``."""
        cap, cfg = self.capacity, self.config.payload
        blocks = [(tile, mem, mem, cfg.tile == t) for t, tile in enumerate(self.tiles) for mem in TILE_MEMORIES]
        blocks += [(self.router, MEM_ROUTE_HEADS, 0, 1), (self.router, MEM_ROUTE_ENTRIES, 1, 1),
                   (self.input_map, MEM_INPUT_HEADS, 0, 1), (self.input_map, MEM_INPUT_ENTRIES, 1, 1)]
        known = Signal()  # the access names a memory, a tile and an address that exist
        for mem in MEMORY_NAMES:
            in_tile = (cfg.tile < cap.tiles) if mem in TILE_MEMORIES else (cfg.tile == 0)
            with m.If((cfg.mem == mem) & in_tile & (cfg.addr < memory_depth(cap, mem))):
                m.d.comb += known.eq(1)
        target = Signal(range(len(blocks)))
        word = Signal(self.readback.payload.shape())
        was_write = Signal()
        for block in {id(b[0]): b[0] for b in blocks}.values():
            m.d.comb += [block.cfg_write.eq(cfg.write), block.cfg_addr.eq(cfg.addr),
                         block.cfg_wdata.eq(cfg.data[:len(block.cfg_wdata)])]
        def states():
            self._config_states(m, blocks, known, target, word, was_write, any_busy)
        return states

    def _config_states(self, m, blocks, known, target, word, was_write, any_busy) -> None:
        cfg = self.config.payload
        distinct = list({id(b[0]): b[0] for b in blocks}.values())  # a tile's three memories: one read-back mux input
        with m.State("CONFIG"):
            m.d.comb += self.config.ready.eq(1)
            m.d.sync += [word.error.eq(~known), word.data.eq(0), was_write.eq(cfg.write)]
            for block, mem, local, selected in blocks:
                with m.If(known & (cfg.mem == mem) & selected):
                    m.d.comb += [block.cfg_en.eq(1), block.cfg_mem.eq(local)]
                    m.d.sync += target.eq(distinct.index(block))
            m.next = "CONFIG_READ"
        with m.State("CONFIG_READ"):  # the word of the access, one cycle later (a serial tile's column
            with m.If(~any_busy):     # word once its beats are written or read)
                with m.If(~word.error & ~was_write):
                    m.d.sync += word.data.eq(Array(b.cfg_rdata for b in distinct)[target])
                m.next = "CONFIG_ANSWER"
        with m.State("CONFIG_ANSWER"):
            m.d.comb += [self.readback.valid.eq(1), self.readback.payload.eq(word)]
            with m.If(self.readback.ready):
                m.next = "HOST"
