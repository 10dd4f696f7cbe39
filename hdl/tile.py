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
    row's words; the next row event is read with a row's last word): ``(C / lanes + 1)``
    cycles per active row, plus three.
``export``
    sends every partial-sum column's ``acc`` on ``psum_out`` to its neuron column (tile, col),
    lowest column first; the tile keeps a flag per column (set by the column's configuration
    word), so only partial-sum columns cost cycles: 3 each, plus one, plus back-pressure.
    ``psum_in`` takes an incoming partial sum whenever the tile is idle or exporting and adds it
    to its column's ``acc`` lane: one every 2 cycles, so all tiles can export at once.
``update`` (with ``step``, the chip step, saturating)
    the columns enter the neuron pipeline (:data:`UPDATE_STAGES` register stages, so the tile
    meets 24 MHz on an iCE40) one a cycle; each leaves it with its new state, written back, its
    spike on ``spikes`` (and, for an LI column with the host flag, its membrane on ``values``);
    each ``acc`` word is zeroed once its last lane has left. A column whose ``start`` exceeds
    ``step`` keeps its state. A stalled output stops the whole pipeline.
    ``C + UPDATE_STAGES + 2`` cycles plus back-pressure.
``clear``
    restarts the tile from its network's initial state: empties every slot, zeroes the column
    sums and sets each column's state to ``v = v_init``, ``i = b = c = s = 0``: ``2 C`` cycles.
    (The domain reset restarts only the control logic; memories keep their contents.)

``rows`` accepts events whenever the tile is not integrating, during ``update`` too, so the
spikes routed in an update are delivered while the tiles update.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Array, Cat, Const, EnableInserter, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from compiler.capacity import MEM_COLUMNS, MEM_STATE, MEM_WEIGHTS, PARAM_BEAT_BITS, STEP_BITS, Capacity, CapacityError, \
    addr_bits, column_fields, config_words, data_bits, memory_beats, memory_init, param_beats, state_fields, state_init, \
    weight_bits
from compiler.events import unpack
from compiler.image import COL_NEURON, COL_PARTIAL, CUBA_MODELS, NON_SPIKING_MODELS, HardwareImage

from .events import Geometry, spike_layout, struct, value_layout
from .spram import SinglePortRAM

FLAG_BITS = 16  # partial-sum flags a serial tile reads at once in the export
UPDATE_STAGES = 6  # pipeline registers in the neuron update (one column enters it per cycle)
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


def _single_port(m: Module, name: str, shape, depth: int, init: list[int]):
    """A :class:`~hdl.spram.SinglePortRAM` as a read port and a write port (``addr``, ``data``,
    ``en``) like ``Memory``'s, for a memory that is never read and written in the same cycle."""
    shape = shape if isinstance(shape, data.Layout) else Shape.cast(shape)
    size = shape.size if isinstance(shape, data.Layout) else shape.width
    m.submodules[name] = ram = SinglePortRAM(size, depth, init=init)
    rd = SimpleNamespace(addr=Signal(range(max(depth, 2)), name=f"{name}_raddr"),
                         data=shape(ram.rdata) if isinstance(shape, data.Layout) else ram.rdata, en=Signal(init=1))
    wr = SimpleNamespace(addr=Signal(range(max(depth, 2)), name=f"{name}_waddr"), en=Signal(name=f"{name}_we"),
                         data=Signal(shape, name=f"{name}_wdata"))
    m.d.comb += [ram.addr.eq(Mux(wr.en, wr.addr, rd.addr)), ram.we.eq(wr.en),
                 ram.wdata.eq(wr.data.as_value() if isinstance(shape, data.Layout) else wr.data)]
    return rd, wr


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
        self.serial = capacity.neuron == "serial"
        self.beats = param_beats(self.geometry)
        self._init = {mem: memory_init(capacity, mem, words.get((mem, tile))) for mem in (MEM_WEIGHTS, MEM_COLUMNS)}
        self._init[MEM_STATE] = state_init(capacity, image, tile)
        fields = column_fields(self.geometry)
        # a serial tile's column words are in beats, low bits (with ``kind``) first
        firsts = self._init[MEM_COLUMNS][::memory_beats(capacity, MEM_COLUMNS)]
        self._partial = sum(1 << c for c, w in enumerate(firsts) if unpack(fields, w)["kind"] == COL_PARTIAL)
        super().__init__(command_members(g) | config_members(capacity))

    def _neuron(self, m: Module, acc, p, old) -> dict:
        """The neuron update of ``docs/architecture.md`` as a pipeline of :data:`UPDATE_STAGES` registers.

        ``acc``: the column's sum; ``p``: its ``column_layout`` word; ``old``: its state, as the
        memories return them (stage 0). A column enters every cycle: each field is carried, in
        registers, to the stage that uses it, so ``m``'s registers only need one enable (the
        caller wraps ``m`` in an ``EnableInserter`` that stops the pipeline while an output is
        stalled). Stages: (1) drive and the pre-decay membrane, (2) the three decay
        multiplications, (3) the sums with leak, drive and adaptation, (4) the subtract reset and
        the firing level, (5) the input, (6) the comparison. The returned dict holds the state
        fields and the flags of the column in stage 6.
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

        def carry(name, value, stages):
            """``value`` as it was ``k`` stages ago, for k = 0 .. stages."""
            out = [value]
            for k in range(1, stages + 1):
                out.append(reg(f"{name}_{k}", out[-1], value.shape()))
            return out

        def clamp(x):
            return Mux(x > hi, hi, Mux(x < lo, lo, x))

        def sat(name, x, stage=sig):
            return stage(name, clamp(sig(f"{name}_wide", x, x.shape())))

        def mulr(name, x, a):  # x * a / 2^decay_bits, rounded half up (stage 2)
            return reg(name, (x * a + (1 << (ar.decay_bits - 1))) >> ar.decay_bits, signed(ar.v_bits + 2))

        def model_in(codes):
            return Cat(*(p.model == code for code in codes)).any()

        spiking = carry("spiking", sig("spiking", ~model_in(NON_SPIKING_MODELS), 1), 6)
        cuba = carry("cuba", sig("cuba", model_in(CUBA_MODELS), 1), 3)
        at_threshold = carry("at_threshold", p.at_threshold, 5)
        blocked = carry("blocked", sig("blocked", old.c != 0, 1), 6)
        spiked, subtract = carry("spiked", old.s, 3), carry("subtract", p.subtract, 3)
        old_i, old_b, old_c = carry("old_i", old.i, 1), carry("old_b", old.b, 1), carry("old_c", old.c, 6)
        alpha, alpha_syn, alpha_adapt = (carry(k, getattr(p, k), 1) for k in ("alpha", "alpha_syn", "alpha_adapt"))
        leak, adapt, threshold = carry("leak", p.leak, 2), carry("adapt", p.adapt, 2), carry("threshold", p.threshold, 3)
        refractory = carry("refractory", p.refractory, 6)
        # stage 1
        drive0 = sat("drive0", (acc << ar.frac_bits) + p.bias, reg)
        v0 = reg("v0", Mux(old.s & ~p.subtract, p.v_reset, old.v))
        # stage 2
        i_decay, v_decay, b_decay = mulr("i_decay", old_i[1], alpha_syn[1]), mulr("v_decay", v0, alpha[1]), \
            mulr("b_decay", old_b[1], alpha_adapt[1])
        drive0_2 = reg("drive0_2", drive0)
        # stage 3
        i_new = sat("i_new", i_decay + drive0_2, reg)
        v1 = sat("v1", v_decay + leak[2], reg)
        b1 = sat("b1", b_decay + Mux(spiked[2], adapt[2], 0), reg)
        drive0_3 = reg("drive0_3", drive0_2)
        # stage 4
        v1_sub = clamp(sig("v1_sub_wide", v1 - threshold[3], signed(ar.v_bits + 1)))
        v2 = reg("v2", Mux(spiked[3] & subtract[3], v1_sub, v1))
        drive = reg("drive", Mux(cuba[3], i_new, drive0_3))
        firing = reg("firing_level", threshold[3] + b1, signed(ar.v_bits + 1))
        i_4, b_4 = reg("i_new_4", Mux(cuba[3], i_new, 0)), reg("b1_4", b1)
        # stage 5
        v3 = reg("v3", Mux(blocked[4], v2, clamp(sig("v2_in_wide", v2 + drive, signed(ar.v_bits + 1)))))
        firing_5, i_5, b_5 = reg("firing_level_5", firing, signed(ar.v_bits + 1)), reg("i_new_5", i_4), reg("b1_5", b_4)
        # stage 6
        fire = reg("fire", Mux(at_threshold[5], v3 >= firing_5, v3 > firing_5) & ~blocked[5] & spiking[5], 1)
        v3_6, i_6, b_6 = reg("v3_6", v3), reg("i_new_6", i_5), reg("b1_6", b_5)
        c = sig("c_next", Mux(fire, refractory[6], Mux(blocked[6], old_c[6] - 1, old_c[6])), ar.refractory_bits)
        return {"v": v3_6, "i": i_6, "b": b_6, "c": c, "s": fire, "spiking": spiking[6]}

    def _serial_update(self, m: Module, p, old, next_col, step, fetch, acc_rd, st_rd, acc_wr, st_wr, lane_of) -> None:
        """The update of a ``serial`` tile (states of the caller's FSM): per column, its word's
        beats (``fetch``), then ``docs/architecture.md``'s arithmetic in six steps with one
        multiplier, the spike or value out and the state back: ``beats + 8`` cycles for a column
        whose population has started, ``beats + 3`` for any other. The same arithmetic as
        :meth:`_neuron`, operation for operation."""
        g = self.geometry
        ar, C, P = g.arithmetic, g.cols, self.lanes
        A = ar.decay_bits
        hi, lo = (1 << (ar.v_bits - 1)) - 1, -(1 << (ar.v_bits - 1))

        def clamp(x):
            return Mux(x > hi, hi, Mux(x < lo, lo, x))

        def model_in(codes):
            return Cat(*(p.model == code for code in codes)).any()

        v = signed(ar.v_bits)
        drive, v0, i_new, v1, b1, v2, v3 = (Signal(v, name=f"s_{n}") for n in ("drive", "v0", "i_new", "v1", "b1",
                                                                                 "v2", "v3"))
        firing = Signal(signed(ar.v_bits + 1), name="s_firing")
        mul_x, mul_a = Signal(v, name="s_mul_x"), Signal(A + 1, name="s_mul_a")
        prod = Signal(signed(ar.v_bits + 2), name="s_prod")  # mulr of the operands of the cycle before
        m.d.sync += prod.eq((mul_x * mul_a + (1 << (A - 1))) >> A)
        acc_lane = Signal(signed(g.acc_bits), name="s_acc")
        m.d.comb += acc_lane.eq(acc_rd.data[lane_of(next_col)])
        spiking, cuba = ~model_in(NON_SPIKING_MODELS), model_in(CUBA_MODELS)
        alive = (p.kind == COL_NEURON) & (step >= p.start)
        blocked = old.c != 0
        fire = Mux(p.at_threshold, v3 >= firing, v3 > firing) & ~blocked & spiking

        def column(then):
            """The column's memories stay addressed while it is computed."""
            m.d.comb += [self.busy.eq(1), acc_rd.addr.eq(next_col // P), st_rd.addr.eq(next_col)]
            if then:
                m.next = then

        with m.State("UPDATE"):
            column(None)
            with m.If(next_col == C):
                m.next = "IDLE"
            with m.Else():
                fetch(next_col, "N0")
        with m.State("N0"):  # drive, and the membrane before its decay
            column("N1")
            m.d.comb += [mul_x.eq(old.i), mul_a.eq(p.alpha_syn)]
            m.d.sync += [drive.eq(clamp((acc_lane << ar.frac_bits) + p.bias)),
                         v0.eq(Mux(old.s & ~p.subtract, p.v_reset, old.v))]
            with m.If(~alive):
                m.next = "N_END"
        with m.State("N1"):  # synaptic current
            column("N2")
            m.d.comb += [mul_x.eq(v0), mul_a.eq(p.alpha)]
            m.d.sync += i_new.eq(clamp(prod + drive))
        with m.State("N2"):  # membrane decay and leak
            column("N3")
            m.d.comb += [mul_x.eq(old.b), mul_a.eq(p.alpha_adapt)]
            m.d.sync += [v1.eq(clamp(prod + p.leak)), drive.eq(Mux(cuba, i_new, drive))]
        with m.State("N3"):  # adaptation; the subtract reset
            column("N4")
            m.d.sync += [b1.eq(clamp(prod + Mux(old.s, p.adapt, 0))),
                         v2.eq(Mux(old.s & p.subtract, clamp(v1 - p.threshold), v1))]
        with m.State("N4"):  # the input; the firing level
            column("N5")
            m.d.sync += [v3.eq(Mux(blocked, v2, clamp(v2 + drive))), firing.eq(p.threshold + b1)]
        with m.State("N5"):  # the spike or value out, the state back
            column(None)
            emit_spike, emit_value = fire, ~spiking & p.host
            m.d.comb += [self.spikes.payload.tile.eq(self.tile), self.spikes.payload.col.eq(next_col),
                         self.spikes.valid.eq(emit_spike),
                         self.values.payload.tile.eq(self.tile), self.values.payload.col.eq(next_col),
                         self.values.payload.value.eq(v3), self.values.valid.eq(emit_value)]
            with m.If((~emit_spike | self.spikes.ready) & (~emit_value | self.values.ready)):
                m.d.comb += [st_wr.addr.eq(next_col), st_wr.en.eq(1), st_wr.data.v.eq(v3),
                             st_wr.data.i.eq(Mux(cuba, i_new, 0)), st_wr.data.b.eq(b1), st_wr.data.s.eq(fire),
                             st_wr.data.c.eq(Mux(fire, p.refractory, Mux(blocked, old.c - 1, old.c)))]
                m.next = "N_END"
        with m.State("N_END"):  # the column's sum is used up: zero its word after its last lane
            column("UPDATE")
            with m.If((lane_of(next_col) == P - 1) | (next_col == C - 1)):
                m.d.comb += [acc_wr.addr.eq(next_col // P), acc_wr.en.eq((1 << P) - 1)]
            m.d.sync += next_col.eq(next_col + 1)

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
        m.submodules.acc = acc = memory.Memory(shape=lane_acc, depth=W, init=[])
        NB = self.beats
        if self.serial:
            # one port each (SPRAM on an iCE40 UltraPlus): the weights, and each column word as NB
            # beats of PARAM_BEAT_BITS, column c's at c * NB ..
            w_rd, w_wr = _single_port(m, "weights", lane_w, R * W, self._init[MEM_WEIGHTS])
            par_rd, par_wr = _single_port(m, "params", unsigned(PARAM_BEAT_BITS), C * NB, self._init[MEM_COLUMNS])
        else:
            weights = memory.Memory(shape=lane_w, depth=R * W, init=init(lane_w, self._init[MEM_WEIGHTS]))
            params = memory.Memory(shape=column, depth=C, init=init(column, self._init[MEM_COLUMNS]))
            m.submodules.weights, m.submodules.params = weights, params
            w_rd, w_wr = weights.read_port(), weights.write_port()
            par_rd, par_wr = params.read_port(), params.write_port()
        m.submodules.state = state = memory.Memory(shape=neuron_state, depth=C,
                                                   init=init(neuron_state, self._init[MEM_STATE]))

        pend_rd, pend_wr = pending.read_port(), pending.write_port()
        acc_rd, acc_wr = acc.read_port(), acc.write_port(granularity=1)
        st_rd, st_wr = state.read_port(), state.write_port()
        old = st_rd.data
        if self.serial:  # the column word, fetched beat by beat
            pbuf = Signal(NB * PARAM_BEAT_BITS)
            p = column(pbuf[:column.size])
        else:
            p = par_rd.data

        row = Signal(range(R))
        col = Signal(range(C + 1))
        word = Signal(range(W + 1))
        payload = Signal(signed(ar.input_bits))
        slot = Signal(g.slot_bits)
        step = Signal(STEP_BITS)
        if self.serial:
            # a flag per column, set when the column is a partial sum, in words of FLAG_BITS: the
            # export scans a word a few cycles (no logic as wide as the tile's columns)
            groups = -(-C // FLAG_BITS)
            m.submodules.flags = flags = memory.Memory(
                shape=FLAG_BITS, depth=groups, init=[(self._partial >> (FLAG_BITS * k)) & ((1 << FLAG_BITS) - 1)
                                                     for k in range(groups)])
            flag_rd, flag_wr = flags.read_port(), flags.write_port()
            group = Signal(range(groups + 1))
            todo = Signal(FLAG_BITS)  # the partial-sum columns of the group not yet exported
            cfg_partial = Signal()  # the column word being written is a partial sum's
        else:
            partial = Signal(C, init=self._partial)  # column c is a partial-sum column (beside the columns memory)
            todo = Signal(C)  # partial-sum columns not yet exported this step
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

        def lane_of(c):  # a column's lane in its acc and weight words
            return c[:(P - 1).bit_length()] if P > 1 else Const(0)

        col_word = col // P
        lane_sum = Signal(signed(g.acc_bits))  # the column's sum, from the acc word read for it
        m.d.comb += lane_sum.eq(acc_rd.data[lane_of(col)])

        # -- the neuron pipeline: the update issues one column a cycle (``next_col``); the
        # memories return it in stage 0; it leaves stage UPDATE_STAGES with its new state, its
        # spike and its value. Everything in ``pipe`` stops while an output is stalled.
        next_col = Signal(range(C + 1))  # the column the update issues next
        if not self.serial:
            pipe = Module()
            advance = Signal()  # the pipeline moves (nothing stalls its last stage)
            issue = Signal()
            valid = [Signal(name="valid_0")]
            cols = [Signal(range(C), name="col_0")]
            pipe.d.sync += [valid[0].eq(issue), cols[0].eq(next_col)]
            for k in range(1, UPDATE_STAGES + 1):
                valid.append(Signal(name=f"valid_{k}"))
                cols.append(Signal(range(C), name=f"col_{k}"))
                pipe.d.sync += [valid[k].eq(valid[k - 1]), cols[k].eq(cols[k - 1])]
            column_sum = Signal(signed(g.acc_bits))
            pipe.d.comb += column_sum.eq(acc_rd.data[lane_of(cols[0])])
            new = self._neuron(pipe, column_sum, p, old)
            late = {}
            for name in ("kind", "start", "host"):
                value = getattr(p, name)
                for k in range(1, UPDATE_STAGES + 1):
                    late[name] = Signal(value.shape(), name=f"{name}_{k}")
                    pipe.d.sync += late[name].eq(value)
                    value = late[name]
            m.submodules.neuron = EnableInserter(advance)(pipe)
            out_col, out_valid = cols[-1], valid[-1]

        # configuration: on a serial tile a column word (NB beats) and a state word (SB beats) are
        # several configuration words (``compiler.capacity.memory_beats``), word k of entry e at
        # e * beats + k
        SB = memory_beats(self.capacity, MEM_STATE)
        cfg_read = Signal(2)  # the memory a configuration read addressed in the cycle before
        cfg_beat = Signal(range(SB))  # and the beat of a state word it addressed
        def beats_of(value):  # a state word as its SB beats, zero-padded
            value = Cat(value, Const(0, SB * PARAM_BEAT_BITS - len(value))) if SB > 1 else value
            return [value.word_select(k, PARAM_BEAT_BITS) for k in range(SB)] if SB > 1 else [value]

        state_beats = Array(beats_of(st_rd.data.as_value()))
        with m.Switch(cfg_read):
            with m.Case(MEM_WEIGHTS):
                m.d.comb += self.cfg_rdata.eq(w_rd.data.as_value())
            with m.Case(MEM_COLUMNS):
                m.d.comb += self.cfg_rdata.eq(par_rd.data if self.serial else p.as_value())
            with m.Case(MEM_STATE):
                m.d.comb += self.cfg_rdata.eq(state_beats[cfg_beat])

        beat = Signal(range(NB + 1))
        cfg_col = Signal(range(C))  # the column of a serial tile's configuration access
        cfg_word = Signal(PARAM_BEAT_BITS)  # the beat a serial tile writes into a neuron's state

        def fetch(column_index, then):
            """(Serial tile, inside a state.) Read column ``column_index``'s word into ``pbuf``,
            one beat a cycle (NB + 1 cycles), then go to state ``then``."""
            with m.If(beat < NB):
                m.d.comb += par_rd.addr.eq(Cat(beat[:(NB - 1).bit_length()], column_index) if NB > 1 else column_index)
            with m.If(beat != 0):
                # a shift register: after NB beats, beat 0 is at the bottom
                m.d.sync += pbuf.eq(Cat(pbuf[PARAM_BEAT_BITS:], par_rd.data))
            m.d.sync += beat.eq(beat + 1)
            with m.If(beat == NB):
                m.d.sync += beat.eq(0)
                m.next = then

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
                    if self.serial:
                        m.d.sync += group.eq(0)
                        m.next = "EXPORT_GROUP"
                    else:
                        m.d.sync += todo.eq(partial)
                        m.next = "EXPORT_PICK"
                with m.Elif(self.update):
                    m.d.sync += [next_col.eq(0), step.eq(self.step)]
                    m.next = "UPDATE"
                with m.Elif(self.cfg_en):  # a configuration access (the chip sends none while a phase runs)
                    addr = self.cfg_addr
                    nb_bits, sb_bits = (NB - 1).bit_length(), (SB - 1).bit_length()
                    with m.If(self.cfg_write):
                        with m.Switch(self.cfg_mem):
                            with m.Case(MEM_WEIGHTS):
                                m.d.comb += [w_wr.addr.eq(addr), w_wr.en.eq(addr < R * W),
                                             w_wr.data.eq(self.cfg_wdata)]
                            with m.Case(MEM_COLUMNS):
                                if self.serial:  # a beat; with beat 0 (``kind``) the column's flag too
                                    kind = column["kind"]
                                    assert kind.offset + kind.width <= PARAM_BEAT_BITS
                                    m.d.comb += [par_wr.addr.eq(addr), par_wr.en.eq(addr < C * NB),
                                                 par_wr.data.eq(self.cfg_wdata)]
                                    with m.If((addr < C * NB) & (addr[:nb_bits] == 0 if NB > 1 else 1)):
                                        m.d.comb += flag_rd.addr.eq(addr[nb_bits:] // FLAG_BITS)
                                        m.d.sync += [cfg_col.eq(addr[nb_bits:]), cfg_partial.eq(
                                            self.cfg_wdata[kind.offset:kind.offset + kind.width] == COL_PARTIAL)]
                                        m.next = "CFG_FLAG"
                                else:
                                    cword = column(self.cfg_wdata[:column.size])
                                    m.d.comb += [par_wr.addr.eq(addr), par_wr.en.eq(addr < C), par_wr.data.eq(cword)]
                                    with m.If(addr < C):
                                        m.d.sync += partial.bit_select(addr, 1).eq(cword.kind == COL_PARTIAL)
                            with m.Case(MEM_STATE):
                                if SB > 1:  # a beat of the word: read it, then write it back with the beat
                                    with m.If(addr < C * SB):
                                        m.d.comb += st_rd.addr.eq(addr[sb_bits:])
                                        m.d.sync += [cfg_col.eq(addr[sb_bits:]), cfg_beat.eq(addr[:sb_bits]),
                                                     cfg_word.eq(self.cfg_wdata)]
                                        m.next = "CFG_STATE"
                                else:
                                    m.d.comb += [st_wr.addr.eq(addr), st_wr.en.eq(addr < C),
                                                 st_wr.data.eq(self.cfg_wdata)]
                    with m.Else():
                        m.d.comb += [w_rd.addr.eq(addr), st_rd.addr.eq(addr[sb_bits:] if SB > 1 else addr),
                                     par_rd.addr.eq(addr)]
                        m.d.sync += [cfg_read.eq(self.cfg_mem), cfg_beat.eq(addr[:sb_bits] if SB > 1 else 0)]

            if self.serial:
                with m.State("CFG_FLAG"):  # the flag word was read: write it back with this column's flag
                    flag_bit = cfg_col[:(FLAG_BITS - 1).bit_length()]
                    m.d.comb += [self.busy.eq(1), flag_wr.addr.eq(cfg_col // FLAG_BITS), flag_wr.en.eq(1),
                                 flag_wr.data.eq(flag_rd.data)]
                    m.d.comb += flag_wr.data.bit_select(flag_bit, 1).eq(cfg_partial)
                    m.next = "IDLE"
            if SB > 1:
                with m.State("CFG_STATE"):  # the state word was read: write it back with the new beat
                    old_beats = beats_of(st_rd.data.as_value())
                    new_word = Cat(*(Mux(cfg_beat == k, cfg_word, b) for k, b in enumerate(old_beats)))
                    m.d.comb += [self.busy.eq(1), st_wr.addr.eq(cfg_col), st_wr.en.eq(1),
                                 st_wr.data.eq(new_word[:neuron_state.size])]
                    m.next = "IDLE"

            # -- clear: back to the image's initial state (pending rows, sums, neuron state) ------
            with m.State("CLEAR_READ"):
                m.d.comb += self.busy.eq(1)
                if self.serial:
                    fetch(col, "CLEAR_WRITE")
                else:
                    m.d.comb += par_rd.addr.eq(col)
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
                # a two-stage pipeline: read word k of the row and of acc; write acc[k] next cycle.
                # The next row event is read with the row's last word, so the next row starts
                # right after the last write: W + 1 cycles a row.
                m.d.comb += self.busy.eq(1)
                prev = Signal(range(W + 1))
                writing = Signal()
                queued = Signal()  # the next row event is on the pending memory's read port
                m.d.sync += [prev.eq(word), writing.eq(word < W)]
                with m.If(word < W):
                    m.d.comb += [w_rd.addr.eq(row * W + word), acc_rd.addr.eq(word)]
                    m.d.sync += word.eq(word + 1)
                    with m.If((word == W - 1) & (pick < current)):
                        m.d.comb += pend_rd.addr.eq(slot * R + pick)
                        m.d.sync += [pick.eq(pick + 1), queued.eq(1)]
                with m.If(writing):  # the row's payload until this write: the next row's loads with it
                    m.d.comb += [acc_wr.addr.eq(prev), acc_wr.en.eq((1 << P) - 1)]
                    for j in range(P):
                        m.d.comb += acc_wr.data[j].eq(acc_rd.data[j] + payload * w_rd.data[j])
                with m.If(word == W):
                    with m.If(queued):
                        m.d.sync += [row.eq(pend_rd.data.row), payload.eq(pend_rd.data.payload), word.eq(0),
                                     queued.eq(0)]
                    with m.Else():
                        m.next = "ROW_PICK"

            # -- export partial sums: only the partial-sum columns, lowest first -------------------
            # The export value is latched, so acc's one read port is free for incoming partial
            # sums in every export state but the read (where an incoming one goes first).
            width = FLAG_BITS if self.serial else C
            lowest = Signal(width)  # the next partial-sum column to export (of the group), one-hot
            m.d.comb += lowest.eq(todo & (~todo + 1))
            lowest_index = Cat(*((lowest & Const(sum(1 << c for c in range(width) if c >> b & 1), width)).any()
                                 for b in range(max(1, (width - 1).bit_length()))))

            def export_next():
                """Go on with the lowest column left (3 cycles a column; a serial tile's after its
                word's beats), or with the next group of flags, or end the export."""
                m.d.sync += todo.eq(todo & ~lowest)
                if self.serial:
                    m.d.sync += col.eq(Cat(lowest_index, group))
                    with m.If(todo != 0):
                        m.next = "EXPORT_FETCH"
                    with m.Elif(group == groups - 1):
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += group.eq(group + 1)
                        m.next = "EXPORT_GROUP"
                else:
                    m.d.sync += col.eq(lowest_index)
                    with m.If(todo == 0):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "EXPORT_READ"

            with m.State("EXPORT_PICK"):
                m.d.comb += self.busy.eq(1)
                export_next()
            if self.serial:
                with m.State("EXPORT_GROUP"):  # read the group's flags
                    m.d.comb += [self.busy.eq(1), flag_rd.addr.eq(group)]
                    m.next = "EXPORT_FLAGS"
                with m.State("EXPORT_FLAGS"):
                    m.d.comb += self.busy.eq(1)
                    m.d.sync += todo.eq(flag_rd.data)
                    m.next = "EXPORT_PICK"
            if self.serial:
                with m.State("EXPORT_FETCH"):  # the column word (its merge target) first
                    m.d.comb += self.busy.eq(1)
                    fetch(col, "EXPORT_READ")
            with m.State("EXPORT_READ"):
                m.d.comb += [self.busy.eq(1), acc_rd.addr.eq(col_word)]
                if not self.serial:
                    m.d.comb += par_rd.addr.eq(col)
                with m.If(~psum_taken):
                    m.next = "EXPORT_LATCH"
            with m.State("EXPORT_LATCH"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [out.tile.eq(p.merge_tile), out.col.eq(p.merge_col), out.value.eq(lane_sum)]
                m.next = "EXPORT_SEND"
            with m.State("EXPORT_SEND"):
                m.d.comb += [self.busy.eq(1), self.psum_out.payload.eq(out), self.psum_out.valid.eq(1)]
                with m.If(self.psum_out.ready):
                    export_next()

            if self.serial:
                self._serial_update(m, p, old, next_col, step, fetch, acc_rd, st_rd, acc_wr, st_wr, lane_of)
            else:
                # -- update neurons: one column into the pipeline a cycle ------------------------------
                with m.State("UPDATE"):
                    m.d.comb += [self.busy.eq(1), issue.eq(next_col < C),
                                 acc_rd.addr.eq(next_col // P), par_rd.addr.eq(next_col), st_rd.addr.eq(next_col),
                                 acc_rd.en.eq(advance), par_rd.en.eq(advance), st_rd.en.eq(advance)]
                    with m.If(advance & issue):
                        m.d.sync += next_col.eq(next_col + 1)
                    with m.If(~issue & ~Cat(*valid).any()):
                        m.next = "IDLE"
        if not self.serial:
            # the pipeline's last stage: the column's spike and value out, its state back
            alive = out_valid & (late["kind"] == COL_NEURON) & (step >= late["start"])
            emit_spike = alive & new["s"]  # every spike goes to the router; it handles host copies
            emit_value = alive & ~new["spiking"] & late["host"]
            m.d.comb += [
                self.spikes.payload.tile.eq(t), self.spikes.payload.col.eq(out_col), self.spikes.valid.eq(emit_spike),
                self.values.payload.tile.eq(t), self.values.payload.col.eq(out_col),
                self.values.payload.value.eq(new["v"]), self.values.valid.eq(emit_value),
                advance.eq((~emit_spike | self.spikes.ready) & (~emit_value | self.values.ready)),
            ]
            with m.If(advance & alive):
                m.d.comb += [st_wr.addr.eq(out_col), st_wr.en.eq(1)]
                m.d.comb += [getattr(st_wr.data, k).eq(new[k]) for k in "vibcs"]
            with m.If(advance & out_valid & ((lane_of(out_col) == P - 1) | (out_col == C - 1))):
                m.d.comb += [acc_wr.addr.eq(out_col // P), acc_wr.en.eq((1 << P) - 1)]  # its word's sums are used up
        # -- incoming partial sums: accepted while idle or exporting (acc_wr is free then), one
        # every two cycles: take it and read its word (acc's read port), then add it to its lane.
        psum_open = fsm.ongoing("IDLE") | fsm.ongoing("EXPORT_PICK") | fsm.ongoing("EXPORT_READ") \
            | ((fsm.ongoing("EXPORT_FETCH") | fsm.ongoing("EXPORT_GROUP") | fsm.ongoing("EXPORT_FLAGS"))
               if self.serial else 0) \
            | fsm.ongoing("EXPORT_LATCH") | fsm.ongoing("EXPORT_SEND")
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
