"""The digital-twin tile: an R x C integer crossbar and C fixed-point neurons.

It implements ``docs/architecture.md`` ("One timestep", "Integer neuron arithmetic") exactly;
``sim/digital.py`` is its reference and the tests compare the two spike for spike.

A tile is generated for a chip's :class:`~compiler.capacity.Capacity`; its ``weights``,
``params`` and ``state`` memories are written and read over the ``cfg_*`` ports
(:func:`config_members`; memory map in ``compiler/capacity.py``), and start empty or, for a ROM
chip, with an image's configuration words.

Storage (``lib.memory.Memory``) and registers:

- ``pending``: per slot (``slot = due step mod slots``) a list of up to ``R`` row events
  ``(row, payload)`` waiting for their step, appended by ``rows``, and a count per slot;
  integrate reads the slot's list, so it visits only the active rows;
- ``weights``: ``R x C/lanes`` words of ``lanes`` signed levels ``l+ - l-``
  (:func:`~compiler.capacity.weight_bits` wide each);
- ``acc``: ``C/lanes`` words of ``lanes`` column sums of the current step (``Geometry.acc_bits``
  wide: enough for every row of the neuron's tiles at full payload and weight);
- ``params``: per column, the hardware parameters and the column's kind, model, reset, host
  flag and merge target (:func:`~compiler.capacity.column_fields`);
- ``state``: per column ``v, i, b`` (``v_bits`` each), refractory counter ``c`` and last spike.

``lanes`` (a power of two, :data:`LANES` by default) is the generator's speed/area knob: the
crossbar accumulates that many columns per cycle, with that many multipliers of
``input_bits x weight_bits``.

The chip's sequencer drives the tile with one-cycle strobes while ``busy`` is low:

``integrate`` (with ``slot``)
    for each row event of the slot, in arrival order: load its row and payload ``p``, then
    ``acc[c] += p * w[r][c]`` for ``lanes`` columns a cycle (a two-stage pipeline over the
    row's words): ``(C / lanes + 4)`` cycles per active row, plus one.
``export``
    sends every partial-sum column's ``acc`` on ``psum_out`` to its neuron column (tile, col):
    2 cycles per column, 3 per partial-sum column, plus back-pressure. ``psum_in`` takes an incoming partial sum whenever the
    tile is idle or exporting and adds it to its column's ``acc`` lane: one every 2 cycles,
    so all tiles can export at once.
``update`` (with ``step``, the chip step, saturating)
    for each column: read, run the neuron pipeline (:data:`UPDATE_STAGES` register stages,
    so the tile meets 24 MHz on an iCE40), then write the new state and emit its spike on
    ``spikes`` (and, for an LI column with the host flag, its membrane on ``values``); each
    ``acc`` word is zeroed once its last lane is used. A column whose ``start`` exceeds
    ``step`` keeps its state. ``(UPDATE_STAGES + 2) C`` cycles plus back-pressure.
``clear``
    restarts the tile from its network's initial state: empties every slot, zeroes the column
    sums and sets each column's state to ``v = v_init``, ``i = b = c = s = 0``: ``2 C`` cycles.
    (The domain reset restarts only the control logic; memories keep their contents.)

``rows`` accepts events whenever the tile is not integrating, during ``update`` too, so the
spikes routed in an update are delivered while the tiles update.
"""

from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from compiler.capacity import MEM_COLUMNS, MEM_STATE, MEM_WEIGHTS, STEP_BITS, Capacity, CapacityError, addr_bits, \
    column_fields, config_words, data_bits, memory_init, state_fields, state_init, weight_bits
from compiler.image import COL_NEURON, COL_PARTIAL, MODEL_CODES, HardwareImage

from .events import Geometry, spike_layout, struct, value_layout

UPDATE_STAGES = 6  # pipeline registers in the neuron update (a column takes UPDATE_STAGES + 2 cycles)
LANES = 8  # columns a tile's crossbar accumulates per cycle (a generator parameter: area vs speed)


def pending_layout(g: Geometry) -> data.StructLayout:
    """A row event as a tile receives it: the row, the slot it is due in, its payload."""
    return data.StructLayout({"row": g.row_bits, "slot": g.slot_bits, "payload": signed(g.arithmetic.input_bits)})


def psum_layout(g: Geometry) -> data.StructLayout:
    """A partial sum on its way to its neuron column."""
    return data.StructLayout({"tile": g.tile_bits, "col": g.col_bits, "value": signed(g.acc_bits)})


def command_members(g: Geometry) -> dict:
    """The ports through which the chip drives a tile (``DigitalTile``, ``MemristiveTileController``)."""
    return {
        "rows": In(stream.Signature(pending_layout(g))),
        "psum_in": In(stream.Signature(psum_layout(g))),
        "psum_out": Out(stream.Signature(psum_layout(g))),
        "spikes": Out(stream.Signature(spike_layout(g))),
        "values": Out(stream.Signature(value_layout(g))),
        "integrate": In(1),
        "export": In(1),
        "update": In(1),
        "clear": In(1),
        "slot": In(g.slot_bits),
        "step": In(STEP_BITS),
        "busy": Out(1),
    }


def config_members(cap: Capacity) -> dict:
    """The ports through which the chip reads and writes a tile's memories (``MEM_WEIGHTS``,
    ``MEM_COLUMNS``, ``MEM_STATE``): ``cfg_en`` for one cycle while the tile is idle, with
    ``cfg_write``, ``cfg_mem``, ``cfg_addr`` and ``cfg_wdata``; a read's word is on ``cfg_rdata``
    in the next cycle."""
    return {"cfg_en": In(1), "cfg_write": In(1), "cfg_mem": In(2), "cfg_addr": In(addr_bits(cap)),
            "cfg_wdata": In(data_bits(cap)), "cfg_rdata": Out(data_bits(cap))}


class DigitalTile(wiring.Component):
    """Tile ``tile`` of a chip of capacity ``capacity`` (see the module docstring for the protocol).

    Its memories start with ``image``'s contents for that tile when one is given (the ROM chip),
    else empty; either way they are written and read over the ``cfg_*`` ports.
    """

    def __init__(self, capacity: Capacity, tile: int = 0, *, image: HardwareImage | None = None,
                 words: dict | None = None):
        try:
            if not isinstance(capacity, Capacity):
                raise ValueError(f"DigitalTile needs a Capacity (compiler.capacity), not {type(capacity).__name__}")
            if not 0 <= tile < capacity.tiles:
                raise ValueError(f"tile must be in [0, {capacity.tiles}), not {tile!r}")
            if words is None:  # the chip passes the image's words, computed once for all tiles
                words = config_words(image, capacity) if image is not None else {}
        except (ValueError, CapacityError):
            self._MustUse__silence = True  # a refused tile is not an "unused elaboratable"
            raise
        self.capacity, self.tile = capacity, tile
        self.geometry = g = capacity.geometry
        self.lanes, self.words = capacity.tile_lanes, capacity.words
        self._init = {mem: memory_init(capacity, mem, words.get((mem, tile))) for mem in (MEM_WEIGHTS, MEM_COLUMNS)}
        self._init[MEM_STATE] = state_init(capacity, image, tile)
        super().__init__(command_members(g) | config_members(capacity))

    def _neuron(self, m: Module, acc, p, old) -> dict:
        """The neuron update of ``docs/architecture.md`` as a pipeline of :data:`UPDATE_STAGES` registers.

        ``acc``: the column's sum; ``p``: its ``column_layout`` word; ``old``: its state; all
        three must hold for the ``UPDATE_STAGES`` cycles after they are read (the FSM keeps the
        read addresses). The stage registers load every cycle, so the results are valid
        ``UPDATE_STAGES`` cycles later. Stages: (1) drive and the pre-decay membrane, (2) the
        three decay multiplications, (3) the sums with leak, drive and adaptation, (4) the
        subtract reset and the firing level, (5) the input, (6) the comparison. Every
        intermediate is a named signal, computed once.
        """
        ar = self.geometry.arithmetic
        v = signed(ar.v_bits)
        hi, lo = (1 << (ar.v_bits - 1)) - 1, -(1 << (ar.v_bits - 1))

        def sig(name, value, shape=v):
            s = Signal(shape, name=name)
            m.d.comb += s.eq(value)
            return s

        def reg(name, value, shape=v):
            s = Signal(shape, name=name)
            m.d.sync += s.eq(value)
            return s

        def clamp(x):
            return Mux(x > hi, hi, Mux(x < lo, lo, x))

        def sat(name, x, stage=sig):
            return stage(name, clamp(sig(f"{name}_wide", x, x.shape())))

        def mulr(name, x, a):  # x * a / 2^decay_bits, rounded half up (stage 2)
            return reg(name, (x * a + (1 << (ar.decay_bits - 1))) >> ar.decay_bits, signed(ar.v_bits + 2))

        spiking = sig("spiking", p.model != MODEL_CODES["li"], 1)
        cuba = sig("cuba", p.model == MODEL_CODES["cuba_lif"], 1)
        blocked = sig("blocked", old.c != 0, 1)
        # stage 1
        drive0 = sat("drive0", (acc << ar.frac_bits) + p.bias, reg)
        v0 = reg("v0", Mux(old.s & ~p.subtract, p.v_reset, old.v))
        # stage 2
        i_decay, v_decay, b_decay = mulr("i_decay", old.i, p.alpha_syn), mulr("v_decay", v0, p.alpha), \
            mulr("b_decay", old.b, p.alpha_adapt)
        drive0_2 = reg("drive0_2", drive0)
        # stage 3
        i_new = sat("i_new", i_decay + drive0_2, reg)
        v1 = sat("v1", v_decay + p.leak, reg)
        b1 = sat("b1", b_decay + Mux(old.s, p.adapt, 0), reg)
        drive0_3 = reg("drive0_3", drive0_2)
        # stage 4
        v2 = reg("v2", Mux(old.s & p.subtract, clamp(sig("v1_sub_wide", v1 - p.threshold, signed(ar.v_bits + 1))), v1))
        drive = reg("drive", Mux(cuba, i_new, drive0_3))
        firing = reg("firing_level", p.threshold + b1, signed(ar.v_bits + 1))
        i_4, b_4 = reg("i_new_4", Mux(cuba, i_new, 0)), reg("b1_4", b1)
        # stage 5
        v3 = reg("v3", Mux(blocked, v2, clamp(sig("v2_in_wide", v2 + drive, signed(ar.v_bits + 1)))))
        firing_5, i_5, b_5 = reg("firing_level_5", firing, signed(ar.v_bits + 1)), reg("i_new_5", i_4), reg("b1_5", b_4)
        # stage 6
        fire = reg("fire", (v3 > firing_5) & ~blocked & spiking, 1)
        v3_6, i_6, b_6 = reg("v3_6", v3), reg("i_new_6", i_5), reg("b1_6", b_5)
        c = sig("c_next", Mux(fire, p.refractory, Mux(blocked, old.c - 1, old.c)), ar.refractory_bits)
        return {"v": v3_6, "i": i_6, "b": b_6, "c": c, "s": fire, "spiking": spiking}

    def elaborate(self, platform):
        m = Module()
        g, cap, t = self.geometry, self.capacity, self.tile
        R, C, S, P, W = g.rows, g.cols, g.slots, self.lanes, self.words
        ar = g.arithmetic
        lane_w = data.ArrayLayout(signed(weight_bits(cap.levels)), P)
        lane_acc = data.ArrayLayout(signed(g.acc_bits), P)
        column, neuron_state = struct(column_fields(g)), struct(state_fields(g))

        def init(shape, words):
            return [data.Const(shape, w) for w in words]

        entry = data.StructLayout({"row": g.row_bits, "payload": signed(ar.input_bits)})
        m.submodules.pending = pending = memory.Memory(shape=entry, depth=S * R, init=[])
        m.submodules.weights = weights = memory.Memory(shape=lane_w, depth=R * W,
                                                       init=init(lane_w, self._init[MEM_WEIGHTS]))
        m.submodules.acc = acc = memory.Memory(shape=lane_acc, depth=W, init=[])
        m.submodules.params = params = memory.Memory(shape=column, depth=C, init=init(column, self._init[MEM_COLUMNS]))
        m.submodules.state = state = memory.Memory(shape=neuron_state, depth=C,
                                                   init=init(neuron_state, self._init[MEM_STATE]))

        pend_rd, pend_wr = pending.read_port(), pending.write_port()
        w_rd, w_wr = weights.read_port(), weights.write_port()
        acc_rd, acc_wr = acc.read_port(), acc.write_port(granularity=1)
        par_rd, par_wr = params.read_port(), params.write_port()
        st_rd, st_wr = state.read_port(), state.write_port()
        p, old = par_rd.data, st_rd.data

        row = Signal(range(R))
        col = Signal(range(C + 1))
        word = Signal(range(W + 1))
        payload = Signal(signed(ar.input_bits))
        slot = Signal(g.slot_bits)
        step = Signal(STEP_BITS)
        stage = Signal(range(UPDATE_STAGES))
        out = Signal(psum_layout(g))  # the partial sum being exported
        psum = Signal(psum_layout(g))  # the partial sum being added
        psum_loaded = Signal()
        psum_taken = Signal()
        m.d.comb += psum_taken.eq(self.psum_in.valid & self.psum_in.ready)

        # -- pending row events: each slot is a list of the row events due in it: entry k of slot s at s * R + k, and
        # how many it holds; integrate reads the slot's list, so it visits only active rows.
        count = [Signal(range(R + 1), name=f"events{s_}") for s_ in range(S)]
        pick = Signal(range(R + 1))  # the next entry integrate reads

        # Row events for later steps are written whenever the pending memory is not in use
        # (everywhere except integrate), so the router can deliver the spikes of an update while
        # the tiles are still updating. A slot holds at most R events (each row is fed once a
        # step); a host that sends one input twice in a step adds it twice.
        rows_open = Signal()
        ev = self.rows.payload
        with m.If(rows_open):
            m.d.comb += self.rows.ready.eq(1)
            for s_ in range(S):
                with m.If(self.rows.valid & (ev.slot == s_) & (count[s_] < R)):
                    m.d.comb += [pend_wr.addr.eq(s_ * R + count[s_]), pend_wr.en.eq(1),
                                 pend_wr.data.row.eq(ev.row), pend_wr.data.payload.eq(ev.payload)]
                    m.d.sync += count[s_].eq(count[s_] + 1)
        current = Signal(range(R + 1))  # events in the slot being integrated
        m.d.comb += current.eq(Array(count)[slot])

        lane = col[:(P - 1).bit_length()] if P > 1 else Const(0)  # the column's lane in its word
        col_word = col // P
        lane_sum = Signal(signed(g.acc_bits))  # the column's sum, from the acc word read for it
        m.d.comb += lane_sum.eq(acc_rd.data[lane])
        new = self._neuron(m, lane_sum, p, old)

        cfg_read = Signal(2)  # the memory a configuration read addressed in the cycle before
        with m.Switch(cfg_read):
            with m.Case(MEM_WEIGHTS):
                m.d.comb += self.cfg_rdata.eq(w_rd.data.as_value())
            with m.Case(MEM_COLUMNS):
                m.d.comb += self.cfg_rdata.eq(par_rd.data.as_value())
            with m.Case(MEM_STATE):
                m.d.comb += self.cfg_rdata.eq(st_rd.data.as_value())

        with m.FSM(name="phase") as fsm:
            with m.State("IDLE"):
                m.d.comb += self.busy.eq(self.integrate | self.export | self.update | self.clear)
                with m.If(self.clear):
                    m.d.sync += [col.eq(0)] + [c.eq(0) for c in count]
                    m.next = "CLEAR_READ"
                with m.Elif(self.integrate):
                    m.d.sync += [slot.eq(self.slot), pick.eq(0)]
                    m.next = "ROW_PICK"
                with m.Elif(self.export):
                    m.d.sync += col.eq(0)
                    m.next = "EXPORT_READ"
                with m.Elif(self.update):
                    m.d.sync += [col.eq(0), step.eq(self.step)]
                    m.next = "UPDATE_READ"
                with m.Elif(self.cfg_en):  # a configuration access (the chip sends none while a phase runs)
                    addr = self.cfg_addr
                    with m.If(self.cfg_write):
                        with m.Switch(self.cfg_mem):
                            with m.Case(MEM_WEIGHTS):
                                m.d.comb += [w_wr.addr.eq(addr), w_wr.en.eq(addr < R * W),
                                             w_wr.data.eq(self.cfg_wdata)]
                            with m.Case(MEM_COLUMNS):
                                m.d.comb += [par_wr.addr.eq(addr), par_wr.en.eq(addr < C),
                                             par_wr.data.eq(self.cfg_wdata)]
                            with m.Case(MEM_STATE):
                                m.d.comb += [st_wr.addr.eq(addr), st_wr.en.eq(addr < C),
                                             st_wr.data.eq(self.cfg_wdata)]
                    with m.Else():
                        m.d.comb += [w_rd.addr.eq(addr), par_rd.addr.eq(addr), st_rd.addr.eq(addr)]
                        m.d.sync += cfg_read.eq(self.cfg_mem)

            # -- clear: back to the image's initial state (pending rows, sums, neuron state) ------
            with m.State("CLEAR_READ"):
                m.d.comb += [self.busy.eq(1), par_rd.addr.eq(col)]
                m.next = "CLEAR_WRITE"
            with m.State("CLEAR_WRITE"):
                m.d.comb += [self.busy.eq(1), acc_wr.addr.eq(col_word), acc_wr.en.eq((1 << P) - 1),
                             st_wr.addr.eq(col), st_wr.en.eq(1), st_wr.data.v.eq(p.v_init)]
                m.d.sync += col.eq(col + 1)
                with m.If(col == C - 1):
                    m.next = "IDLE"
                with m.Else():
                    m.next = "CLEAR_READ"

            # -- integrate: for each active row of the slot, acc += payload * w, P lanes a cycle --
            with m.State("ROW_PICK"):
                m.d.comb += self.busy.eq(1)
                with m.If(pick < current):
                    m.d.comb += pend_rd.addr.eq(slot * R + pick)
                    m.d.sync += [pick.eq(pick + 1), word.eq(0)]
                    m.next = "ROW_LOAD"
                with m.Else():  # the slot's list is used up
                    for s_ in range(S):
                        with m.If(slot == s_):
                            m.d.sync += count[s_].eq(0)
                    m.next = "IDLE"
            with m.State("ROW_LOAD"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [row.eq(pend_rd.data.row), payload.eq(pend_rd.data.payload)]
                m.next = "MAC"
            with m.State("MAC"):
                # a two-stage pipeline: read word k of the row and of acc; write acc[k] next cycle
                m.d.comb += self.busy.eq(1)
                prev = Signal(range(W + 1))
                writing = Signal()
                m.d.sync += [prev.eq(word), writing.eq(word < W)]
                with m.If(word < W):
                    m.d.comb += [w_rd.addr.eq(row * W + word), acc_rd.addr.eq(word)]
                    m.d.sync += word.eq(word + 1)
                with m.If(writing):
                    m.d.comb += [acc_wr.addr.eq(prev), acc_wr.en.eq((1 << P) - 1)]
                    for j in range(P):
                        m.d.comb += acc_wr.data[j].eq(acc_rd.data[j] + payload * w_rd.data[j])
                with m.If((word == W) & ~writing):
                    m.next = "ROW_PICK"

            # -- export partial sums -------------------------------------------------------------
            # The export value is latched, so acc's one read port is free for incoming partial
            # sums in every export state but the read (where an incoming one goes first).
            with m.State("EXPORT_READ"):
                m.d.comb += [self.busy.eq(1), acc_rd.addr.eq(col_word), par_rd.addr.eq(col)]
                with m.If(~psum_taken):
                    m.next = "EXPORT_LATCH"
            with m.State("EXPORT_LATCH"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [out.tile.eq(p.merge_tile), out.col.eq(p.merge_col), out.value.eq(lane_sum)]
                with m.If(p.kind == COL_PARTIAL):
                    m.next = "EXPORT_SEND"
                with m.Else():
                    m.d.sync += col.eq(col + 1)
                    m.next = "EXPORT_READ"
                    with m.If(col == C - 1):
                        m.next = "IDLE"
            with m.State("EXPORT_SEND"):
                m.d.comb += [self.busy.eq(1), self.psum_out.payload.eq(out), self.psum_out.valid.eq(1)]
                with m.If(self.psum_out.ready):
                    m.d.sync += col.eq(col + 1)
                    m.next = "EXPORT_READ"
                    with m.If(col == C - 1):
                        m.next = "IDLE"

            # -- update neurons ------------------------------------------------------------------
            with m.State("UPDATE_READ"):
                m.d.comb += [self.busy.eq(1), acc_rd.addr.eq(col_word), par_rd.addr.eq(col), st_rd.addr.eq(col)]
                m.d.sync += stage.eq(0)
                m.next = "UPDATE_PIPE"
            with m.State("UPDATE_PIPE"):  # the read data holds while the neuron pipeline fills
                m.d.comb += [self.busy.eq(1), acc_rd.addr.eq(col_word), par_rd.addr.eq(col), st_rd.addr.eq(col)]
                m.d.sync += stage.eq(stage + 1)
                with m.If(stage == UPDATE_STAGES - 1):
                    m.next = "UPDATE_WRITE"
            with m.State("UPDATE_WRITE"):
                m.d.comb += self.busy.eq(1)
                alive = (p.kind == COL_NEURON) & (step >= p.start)
                emit_spike = alive & new["s"]  # every spike goes to the router; it handles host copies
                emit_value = alive & ~new["spiking"] & p.host
                m.d.comb += [
                    self.spikes.payload.tile.eq(t), self.spikes.payload.col.eq(col), self.spikes.valid.eq(emit_spike),
                    self.values.payload.tile.eq(t), self.values.payload.col.eq(col),
                    self.values.payload.value.eq(new["v"]), self.values.valid.eq(emit_value),
                ]
                done = (~emit_spike | self.spikes.ready) & (~emit_value | self.values.ready)
                with m.If(done):
                    with m.If(alive):
                        m.d.comb += [st_wr.addr.eq(col), st_wr.en.eq(1)]
                        m.d.comb += [getattr(st_wr.data, k).eq(new[k]) for k in "vibcs"]
                    with m.If((lane == P - 1) | (col == C - 1)):  # the word's sums are used up: zero it
                        m.d.comb += [acc_wr.addr.eq(col_word), acc_wr.en.eq((1 << P) - 1)]
                    m.d.sync += col.eq(col + 1)
                    with m.If(col == C - 1):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "UPDATE_READ"
                with m.Else():  # hold the read addresses while the outputs are stalled
                    m.d.comb += [acc_rd.addr.eq(col_word), par_rd.addr.eq(col), st_rd.addr.eq(col)]
        # -- incoming partial sums: accepted while idle or exporting (acc_wr is free then), one
        # every two cycles: take it and read its word (acc's read port), then add it to its lane.
        psum_open = fsm.ongoing("IDLE") | fsm.ongoing("EXPORT_READ") | fsm.ongoing("EXPORT_LATCH") \
            | fsm.ongoing("EXPORT_SEND")
        m.d.comb += self.psum_in.ready.eq(psum_open & ~psum_loaded)
        with m.If(psum_taken):
            m.d.comb += acc_rd.addr.eq(self.psum_in.payload.col // P)  # after the FSM's: it wins
            m.d.sync += [psum.eq(self.psum_in.payload), psum_loaded.eq(1)]
        with m.If(psum_loaded):
            m.d.sync += psum_loaded.eq(0)
            m.d.comb += acc_wr.addr.eq(psum.col // P)
            for j in range(P):
                m.d.comb += [acc_wr.data[j].eq(acc_rd.data[j] + psum.value), acc_wr.en[j].eq(psum.col % P == j)]
            m.d.comb += self.busy.eq(1)
        m.d.comb += rows_open.eq(~fsm.ongoing("ROW_PICK") & ~fsm.ongoing("ROW_LOAD") & ~fsm.ongoing("MAC"))
        return m
