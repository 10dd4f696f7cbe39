"""The digital-twin tile: an R x C integer crossbar and C fixed-point neurons.

It implements ``docs/architecture.md`` ("One timestep", "Integer neuron arithmetic") exactly;
``sim/digital.py`` is its reference and the tests compare the two spike for spike.

Storage (``lib.memory.Memory``, initialised from the image) and registers:

- ``pending``: per slot (``slot = due step mod slots``) a list of up to ``R`` row events
  ``(row, payload)`` waiting for their step, appended by ``rows``, and a count per slot;
  integrate reads the slot's list, so it visits only the active rows;
- ``weights``: ``R' x C/lanes`` words of ``lanes`` signed levels ``l+ - l-`` (``R'``: up to the
  last row an event can reach)
  (:func:`weight_bits` wide each);
- ``acc``: ``C/lanes`` words of ``lanes`` column sums of the current step (``Geometry.acc_bits``
  wide: enough for every row of the neuron's tiles at full payload and weight);
- ``params``: per column, the hardware parameters and the column's kind, model, reset, host
  flag and merge target (``column_layout``);
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
    restarts the tile from the image's initial state: empties every slot, zeroes the column
    sums and sets each column's state to ``v = v_init``, ``i = b = c = s = 0``: ``2 C`` cycles.
    (The domain reset restarts only the control logic; memories keep their contents.)

``rows`` accepts events whenever the tile is not integrating, during ``update`` too, so the
spikes routed in an update are delivered while the tiles update.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Array, Const, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from compiler.image import COL_NEURON, COL_PARTIAL, MODEL_CODES, HardwareImage

from .events import Geometry, bits_for, spike_layout, value_layout

PARAM_SETS = 8  # up to this many neuron parameter combinations per tile come from a table in logic
STEP_BITS = 8  # chip step as the tile sees it (saturating): enough for any latency up to 255
UPDATE_STAGES = 6  # pipeline registers in the neuron update (a column takes UPDATE_STAGES + 2 cycles)
LANES = 8  # columns a tile's crossbar accumulates per cycle (a generator parameter: area vs speed)


def weight_bits(levels: int) -> int:
    """Width of a cell's signed weight ``l+ - l-`` in ``[-(L-1), L-1]``."""
    return bits_for(levels) + 1


def pending_layout(g: Geometry) -> data.StructLayout:
    """A row event as a tile receives it: the row, the slot it is due in, its payload."""
    return data.StructLayout({"row": g.row_bits, "slot": g.slot_bits, "payload": signed(g.arithmetic.input_bits)})


def psum_layout(g: Geometry) -> data.StructLayout:
    """A partial sum on its way to its neuron column."""
    return data.StructLayout({"tile": g.tile_bits, "col": g.col_bits, "value": signed(g.acc_bits)})


def column_layout(g: Geometry) -> data.StructLayout:
    ar = g.arithmetic
    v, decay = signed(ar.v_bits), unsigned(ar.decay_bits + 1)
    return data.StructLayout({
        "kind": 2, "model": 3, "subtract": 1, "host": 1, "start": STEP_BITS, "refractory": ar.refractory_bits,
        "alpha": decay, "alpha_syn": decay, "alpha_adapt": decay,
        "leak": v, "v_init": v, "threshold": v, "v_reset": v, "adapt": v, "bias": v,
        "merge_tile": g.tile_bits, "merge_col": g.col_bits,
    })


def state_layout(g: Geometry, fields=("v", "i", "b", "c", "s")) -> data.StructLayout:
    """A neuron column's state; a tile stores only the fields its neurons can change."""
    ar = g.arithmetic
    v = signed(ar.v_bits)
    shapes = {"v": v, "i": v, "b": v, "c": ar.refractory_bits, "s": 1}
    return data.StructLayout({name: shapes[name] for name in fields})


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


class _Fields:
    """Read a record's fields from a memory word, or a constant for the fields it does not store."""

    def __init__(self, word, constants: dict):
        self._word, self._constants = word, constants

    def __getattr__(self, name):
        if name in self._constants:
            return self._constants[name]
        return getattr(self._word, name)


class DigitalTile(wiring.Component):
    """Tile ``tile`` of a digital HardwareImage (see the module docstring for the protocol)."""

    def __init__(self, image: HardwareImage, tile: int, *, lanes: int = LANES):
        start_max = int(image.arrays["param/start"].max(initial=0))
        for wrong, message in [
            (image.target != "digital", f"a DigitalTile needs a digital image, not a {image.target!r} one"),
            (not 0 <= tile < image.n_tiles, f"tile must be in [0, {image.n_tiles}), not {tile!r}"),
            (start_max >= 1 << STEP_BITS, f"a column starts at step {start_max}; tiles count steps in {STEP_BITS} bits"),
            (lanes < 1 or lanes & (lanes - 1), f"lanes must be a power of two >= 1, not {lanes!r}"),
        ]:
            if wrong:
                self._MustUse__silence = True  # a refused tile is not an "unused elaboratable"
                raise ValueError(message)
        self.image, self.tile = image, tile
        self.geometry = g = Geometry.of(image)
        self.lanes = min(lanes, 1 << (g.cols - 1).bit_length())
        self.words = -(-g.cols // self.lanes)
        super().__init__(command_members(g))

    # -- initial contents ---------------------------------------------------------------------
    NEURON_FIELDS = ("model", "subtract", "host", "start", "refractory", "alpha", "alpha_syn", "alpha_adapt",
                     "leak", "v_init", "threshold", "v_reset", "adapt", "bias")

    def _columns(self) -> list[dict]:
        """Each column's ``column_layout`` fields; fields a column does not use copy a column's that does."""
        a, t, C = self.image.arrays, self.tile, self.image.cols
        kind = a["col_kind"][t]
        merge = a["merge_to"][t]
        values = {"kind": kind.astype(np.int64), "model": a["col_model"][t], "subtract": a["col_reset"][t],
                  "host": a["host_out"][t], "merge_tile": merge // C, "merge_col": merge % C}
        for name in ("start", "refractory", "alpha", "alpha_syn", "alpha_adapt", "leak", "v_init", "threshold",
                     "v_reset", "adapt", "bias"):
            values[name] = a[f"param/{name}"][t]
        used = {name: kind == COL_NEURON for name in self.NEURON_FIELDS}
        used |= {"merge_tile": kind == COL_PARTIAL, "merge_col": kind == COL_PARTIAL, "kind": np.ones(C, bool)}
        out = [{} for _ in range(C)]
        for name, column in values.items():
            column = np.asarray(column).astype(np.int64)
            filler = int(column[used[name]][0]) if used[name].any() else 0
            for c in range(C):
                out[c][name] = int(column[c]) if used[name][c] else filler
        return out

    def _parameters(self, m: Module) -> tuple[memory.Memory, memory.ReadPort, dict]:
        """The ``params`` memory, and the fields that do not come straight from it.

        A field equal in every column that uses it is a constant, not a memory bit. The neuron
        fields that differ are stored per column when there are many distinct combinations
        (one threshold per neuron); when the tile's neurons have at most :data:`PARAM_SETS`
        combinations (a few populations), the memory holds the combination's index and the
        values come from a small table in logic.
        """
        g = self.geometry
        layout = column_layout(g)
        columns = self._columns()
        constants = {name: columns[0][name] for name, _ in layout if len({col[name] for col in columns}) == 1}
        fields = {name: Const(value, layout[name].shape) for name, value in constants.items()}
        varying = [name for name, _ in layout if name not in constants]
        shared = [name for name in varying if name in self.NEURON_FIELDS]
        sets = sorted({tuple(col[name] for name in shared) for col in columns})
        stored = {name: layout[name].shape for name in varying}
        if shared and len(sets) <= PARAM_SETS:
            for name in shared:
                del stored[name]
            stored["set"] = bits_for(len(sets))
            for col in columns:
                col["set"] = sets.index(tuple(col[name] for name in shared))
        for name in stored:  # each stored field only as wide as its values need
            if name != "set":
                values = [col[name] for col in columns]
                if Shape.cast(stored[name]).signed:
                    stored[name] = signed(1 + max((v if v >= 0 else ~v).bit_length() for v in values))
                else:
                    stored[name] = unsigned(max(1, max(values).bit_length()))
        shape = data.StructLayout(stored or {"unused": 1})
        init = [{name: col[name] for name in stored} for col in columns]
        params = memory.Memory(shape=shape, depth=g.cols, init=init)
        par_rd = params.read_port()
        if "set" in stored:  # one signal per shared field, a mux over the table's rows
            for k, name in enumerate(shared):
                fields[name] = Signal(layout[name].shape, name=f"param_{name}")
                m.d.comb += fields[name].eq(Array(Const(row[k], layout[name].shape) for row in sets)[par_rd.data.set])
        return params, par_rd, fields

    def _state_fields(self) -> tuple[str, ...]:
        """State fields the tile's neurons can change: ``i`` with CubaLIF, ``b`` with adaptation, ``c`` with refractory."""
        a, t = self.image.arrays, self.tile
        neuron = a["col_kind"][t] == COL_NEURON
        fields = ["v"]
        if (a["col_model"][t][neuron] == MODEL_CODES["cuba_lif"]).any():
            fields.append("i")
        if (a["param/adapt"][t][neuron] != 0).any():
            fields.append("b")
        if (a["param/refractory"][t][neuron] != 0).any():
            fields.append("c")
        return tuple(fields) + ("s",)

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
        g, image, t = self.geometry, self.image, self.tile
        R, C, S, P, W = g.rows, g.cols, g.slots, self.lanes, self.words
        ar = g.arithmetic
        # rows that an event can reach: the weights memory holds only those
        a = image.arrays
        fed = np.concatenate([a["route_row"][a["route_tile"] == t], a["input_row"][a["input_tile"] == t], [0]])
        used = int(fed.max()) + 1
        w = np.zeros((used, W * P), dtype=np.int64)
        w[:, :C] = image.weights()[t][:used]
        lane_w = data.ArrayLayout(signed(weight_bits(image.levels)), P)
        lane_acc = data.ArrayLayout(signed(g.acc_bits), P)

        entry = data.StructLayout({"row": g.row_bits, "payload": signed(ar.input_bits)})
        m.submodules.pending = pending = memory.Memory(shape=entry, depth=S * R, init=[])
        m.submodules.weights = weights = memory.Memory(shape=lane_w, depth=used * W,
                                                       init=[list(word) for word in w.reshape(used * W, P).tolist()])
        m.submodules.acc = acc = memory.Memory(shape=lane_acc, depth=W, init=[])
        m.submodules.params, par_rd, constants = self._parameters(m)
        # A tile of partial-sum columns only has no neurons: no state, no neuron datapath.
        neurons = bool((image.arrays["col_kind"][t] == COL_NEURON).any())
        if neurons:
            kept = self._state_fields()
            state_init = [{"v": int(image.arrays["param/v_init"][t, c])} for c in range(C)]
            m.submodules.state = state = memory.Memory(shape=state_layout(g, kept), depth=C, init=state_init)

        pend_rd, pend_wr = pending.read_port(), pending.write_port()
        w_rd = weights.read_port()
        acc_rd, acc_wr = acc.read_port(), acc.write_port(granularity=1)
        p = _Fields(par_rd.data, constants)
        if neurons:
            st_rd, st_wr = state.read_port(), state.write_port()
            old = _Fields(st_rd.data, {name: Const(0, state_layout(g)[name].shape) for name in "ibc" if name not in kept})

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
        if neurons:
            new = self._neuron(m, lane_sum, p, old)

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

            # -- clear: back to the image's initial state (pending rows, sums, neuron state) ------
            with m.State("CLEAR_READ"):
                m.d.comb += [self.busy.eq(1), par_rd.addr.eq(col)]
                m.next = "CLEAR_WRITE"
            with m.State("CLEAR_WRITE"):
                m.d.comb += [self.busy.eq(1), acc_wr.addr.eq(col_word), acc_wr.en.eq((1 << P) - 1)]
                if neurons:
                    m.d.comb += [st_wr.addr.eq(col), st_wr.en.eq(1), st_wr.data.v.eq(p.v_init)]
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
            if not neurons:  # update only zeroes the column sums, a word a cycle
                with m.State("UPDATE_READ"):
                    m.d.comb += [self.busy.eq(1), acc_wr.addr.eq(col_word), acc_wr.en.eq((1 << P) - 1)]
                    m.d.sync += col.eq(col + P)
                    with m.If(col + P >= C):
                        m.next = "IDLE"
            else:
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
                            m.d.comb += [getattr(st_wr.data, k).eq(new[k]) for k in kept]
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
