"""The digital side of one memristive (analog) tile: row pulses, spike sampling, events.

``MemristiveTileController(image, tile)`` is the RTL that sits next to tile ``tile`` of a
memristive HardwareImage. The analog array itself (devices, column currents, the merging of
partial-sum column currents between the tiles of a group, the analog neurons) is **not** RTL:
a model drives the analog ports (a Python model in ``tests/test_hdl_memristive.py`` now, the
device-level models of the analog-models stage later). The controller owns

- the **pending row events** of every delay slot (``lib.memory.Memory`` ``pending``: ``S``
  words of ``R`` signed payloads, ``S = delay_slots + 1``, written one row at a time through a
  write port with one enable bit per row, read and cleared one slot at a time);
- **row-pulse sequencing**: ``integrate`` applies the slot's payloads to all ``R`` rows at once
  as one read pulse of ``pulse_cycles`` cycles;
- **column spike sampling**: ``update`` asks the analog neurons to evaluate the step and
  samples their comparators when they say they have settled;
- **event encoding**: each sampled spike of a spiking neuron column leaves on ``spikes`` as
  ``(tile, col)``; the membrane of each host-flagged LI column is converted through the ADC
  port, multiplied by the column's digital scale and leaves on ``values``;
- the **per-column digital scale** (``lib.memory.Memory`` ``scale``: ``C`` words of
  ``SCALE_BITS``, format in ``compiler/column_scale.py``), run-time configuration that the host
  writes over the ``cfg_*`` ports (drift compensation: ``docs/architecture.md``, "Memristive
  tiles").

Command interface (the same as :class:`hdl.tile.DigitalTile`, so the chip's sequencer drives
either; each command is a one-cycle strobe given while ``busy`` is low, and ``busy`` is high
from the strobe cycle until the command is done):

``integrate`` (with ``slot``)
    cycle 0 (strobe): read the slot; cycle 1 (``LOAD``): latch its payloads into ``row_drive``
    and zero the slot in ``pending``; cycle 2 (``SETUP``): drive stable, ``pulse`` low;
    cycles 3 .. 2 + P (``PULSE``): ``pulse`` high; cycle 3 + P (``HOLD``): drive still stable,
    ``pulse`` low; then ``row_drive`` returns to 0. **P + 4 cycles**, P = ``pulse_cycles``,
    whatever R, C or the number of active rows (the whole slot is pulsed in parallel; an empty
    slot gives an all-zero pulse). Because this timing is data-independent, tiles whose
    ``integrate`` is strobed in the same cycle pulse in exactly the same cycles, which is what
    lets the partial-sum currents of a tile group merge in the analog domain: **the sequencer
    must strobe ``integrate`` on all tiles of a group in the same cycle** (the chip strobes all
    tiles at once).
``export``
    a no-op that completes in its strobe cycle (1 cycle). Partial sums of an analog tile merge
    as currents during the pulse, so there is nothing to send: ``psum_out`` never carries an
    event, and ``psum_in`` (present only so the port list matches ``DigitalTile``) is always
    ready and discards what it receives (a memristive chip never sends partial sums).
``update`` (with ``step``, the chip step, saturating at ``2**STEP_BITS - 1``)
    cycle 0 (strobe): latch ``step``; ``EVAL``: ``evaluate`` high, with ``hold`` valid, until
    ``settled`` is sampled high, when ``fired`` is sampled; then one event per cycle: a spike
    for every sampled spike of a spiking neuron column that is not held, and for every
    host-flagged LI column that is not held an ADC conversion (``adc_req`` until ``adc_ack``)
    followed by its ``values`` event, lowest column first. With a model that answers at once
    and no back-pressure: **2 + n_spikes + 2 n_values cycles** (+ the model's ``settled`` and
    ``adc_ack`` latencies, + back-pressure on ``spikes``/``values``).
``clear``
    restart from reset: zeroes every pending row (one slot per cycle) while ``neuron_clear`` is
    high, during which the analog side returns every neuron to its initial state: **1 + max(S, P)
    cycles**. (The domain reset restarts only the control logic; ``pending`` keeps its
    contents, as in ``DigitalTile``.)

``rows`` (:func:`hdl.tile.pending_layout`) accepts an event in every cycle except ``LOAD``
and ``clear`` (after its strobe cycle), as ``DigitalTile`` does: during the pulse and during
``update`` too, so the spikes routed in an update can be delivered while the tiles update. An
event for the integrated slot is in the step's pulse if it is accepted at the latest in the
``integrate`` strobe cycle (the slot's read is transparent to the row write); one accepted in
the ``clear`` strobe cycle is cleared.

So one chip step (integrate, export, update) costs a tile **P + 7 + n_spikes + 2 n_values**
cycles plus the analog model's latencies and back-pressure: no term in R, C or the number of
active rows (a DigitalTile's integrate alone scans all R rows and spends cycles on every
column of every active row).

Analog ports and the contract the analog model must obey
--------------------------------------------------------

``row_drive: Out(ArrayLayout(signed(input_bits), R))``, ``pulse: Out(1)``
    ``row_drive[r]`` is the payload of row ``r`` in the current step (0: the row is not
    driven); the row driver applies a read voltage proportional to it. ``row_drive`` is stable
    from the cycle before ``pulse`` rises to the cycle after it falls, and 0 at every other
    time. ``pulse`` is high for exactly ``pulse_cycles`` consecutive cycles per ``integrate``.
    The analog side integrates, per column, the charge of the column current over the pulse;
    a partial-sum column's current flows into the neuron column it merges into (``merge_to``),
    in the same pulse. With ideal devices the charge is ``acc * dG * V_read * pulse time`` with
    ``acc = sum_r row_drive[r] * (l+_rc - l-_rc)`` over the group's tiles
    (``docs/architecture.md``, "Memristive tiles"). The charge waits in the neuron's input
    until the next evaluation.
``evaluate: Out(1)``, ``hold: Out(C)``, ``settled: In(1)``, ``fired: In(C)``
    A request/acknowledge pair with ``lib.stream`` rules: ``evaluate`` rises once per
    ``update`` and stays high until the clock edge at which ``settled`` is high; the
    controller samples ``fired`` at that edge. The model performs **exactly one** neuron
    update per such transfer: every neuron column consumes the charge integrated since the
    previous evaluation (``acc``) and updates as ``docs/architecture.md`` ("Integer neuron
    arithmetic", in level units, float), **refractory period included**, then presents its
    spike (comparator output) on ``fired[c]`` and raises ``settled``. ``settled`` may be high
    in the first cycle of ``evaluate`` (a combinational model) or any number of cycles later
    (a slow one). It is ignored while ``evaluate`` is low, but a ``settled`` still high when
    the next ``evaluate`` rises acknowledges that evaluation at once, so the model must lower
    it after each transfer. ``fired`` bits of partial-sum, unused and LI columns are ignored.

    ``hold[c]`` (valid while ``evaluate`` is high, 0 otherwise) is high for a neuron column
    whose ``start`` (``param/start``, its population's latency) exceeds the chip step (the
    ``step`` given with ``update``, as in ``DigitalTile``): the analog neuron must
    keep its state through this evaluation (discard the step's charge, no leak, no spike). The
    **controller owns the start logic** (it is a sequencing property, the same for every
    neuron technology, and needs the chip step, which only the digital side knows); it also
    masks ``fired`` with ``~hold``, so a held column never emits. Since a held column has never
    been updated since reset, an implementation may equally clamp it to its initial state.
    The **analog neuron owns the refractory logic** (``param/refractory`` is a neuron parameter
    like the threshold: a blocked neuron still leaks, adds no input and does not fire).
``adc_req: Out(1)``, ``adc_col: Out(col_bits)``, ``adc_ack: In(1)``, ``adc_value: In(signed(v_bits))``
    After an evaluation, for each host-flagged LI column that is not held, the controller
    raises ``adc_req`` with ``adc_col`` stable until the edge at which ``adc_ack`` is high,
    and samples ``adc_value`` at that edge (``lib.stream`` rules again; ``adc_ack`` may be
    combinational). ``adc_value`` is the column's membrane after the evaluation, in units of
    ``2**-frac_bits`` weight levels, rounded and saturated to ``v_bits`` (``frac_bits`` and
    ``v_bits`` from :class:`hdl.events.Geometry`'s arithmetic, 8 and 24 for a memristive image),
    i.e. the same units as a digital tile's LI values: the host reads
    ``value * value_scale / 2**frac_bits``. The membranes must hold their values from
    ``settled`` until the conversions are done (the next ``evaluate``).
``neuron_clear: Out(1)``
    High during ``clear`` (at least ``max(S, pulse_cycles)`` cycles): the analog side returns
    every neuron to ``v = v_init``, ``i = b = 0``, no refractory count, no last spike, and
    discards any integrated charge, before ``neuron_clear`` falls.

Per-column digital scale
------------------------

Every ADC conversion is multiplied by its column's scale word ``s`` (unsigned Q3.13,
``compiler.column_scale``) before it leaves on ``values``::

    value = clamp((adc_value * s + 2**12) >> 13, -2**(v_bits - 1), 2**(v_bits - 1) - 1)

(``>>`` arithmetic: rounded half up, saturated to ``v_bits``). The host computes the words from
reference reads of the array (``sim.analog.AnalogSimulator(drift_compensation=...,
digital_scale=True)`` is its model, ``compiler.column_scale.quantise_scale`` the
quantisation) and writes them at run time; ``SCALE_ONE`` (1.0, the reset contents unless
``scale=`` / :meth:`MemristiveTileController.preload` give others, the ROM pattern of
:meth:`hdl.router.Router.preload`) leaves every value exactly as converted. The product is
formed in the ``VALUE`` cycle, combinationally from the sampled conversion and the word read
in the cycle before, so the scale costs no cycle.

``cfg_en: In(1)``, ``cfg_write: In(1)``, ``cfg_addr: In(col_bits)``, ``cfg_wdata: In(16)``, ``cfg_rdata: Out(16)``
    The same access as :func:`hdl.tile.config_members`' (one memory, so no ``cfg_mem``):
    ``cfg_en`` for one cycle while the controller is idle (``busy`` low; an access while a
    command runs is ignored), ``cfg_write`` and ``cfg_wdata`` for a write of column
    ``cfg_addr``'s scale; a read's word is on ``cfg_rdata`` in the next cycle. A column
    address ``>= C`` writes nothing (and reads an unspecified word). A write takes effect from the next
    ``update``. A chip that leaves these ports unconnected keeps the initial contents.

The controller holds none of the weights or neuron parameters (they are programmed into the
analog array and neurons by the configuration path, outside this RTL); from the image it takes
the geometry, each column's kind, model, host flag and ``start``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from compiler.capacity import STEP_BITS
from compiler.column_scale import SCALE_BITS, SCALE_FRAC, SCALE_ONE, check_scale_words
from compiler.image import COL_NEURON, NON_SPIKING_MODELS, HardwareImage

from .events import Geometry
from .tile import command_members


class MemristiveTileController(wiring.Component):
    """Controller of tile ``tile`` of a memristive HardwareImage (see the module docstring).

    ``pulse_cycles`` is the length of the read pulse in clock cycles (at least 1); ``scale``
    the initial contents of the per-column scale memory, ``C`` words (default: ``SCALE_ONE``
    in every column, values unchanged).
    """

    def __init__(self, image: HardwareImage, tile: int, *, pulse_cycles: int = 4, scale=None):
        try:
            self._check(image, tile, pulse_cycles)
            self._scale_init = [SCALE_ONE] * image.cols
            if scale is not None:
                self.preload(scale)
        except ValueError:
            self._MustUse__used = True  # refused, not forgotten: no "created but never used" warning
            raise
        self.image, self.tile, self.pulse_cycles = image, tile, pulse_cycles
        self.geometry = g = Geometry.of(image)
        ar = g.arithmetic
        R, C = g.rows, g.cols
        super().__init__({
            **command_members(g),  # the command interface, as DigitalTile's
            # -- analog ports --
            "row_drive": Out(data.ArrayLayout(signed(ar.input_bits), R)),
            "pulse": Out(1),
            "evaluate": Out(1),
            "hold": Out(C),
            "settled": In(1),
            "fired": In(C),
            "adc_req": Out(1),
            "adc_col": Out(g.col_bits),
            "adc_ack": In(1),
            "adc_value": In(signed(ar.v_bits)),
            "neuron_clear": Out(1),
            # -- configuration: the per-column scale --
            "cfg_en": In(1),
            "cfg_write": In(1),
            "cfg_addr": In(g.col_bits),
            "cfg_wdata": In(SCALE_BITS),
            "cfg_rdata": Out(SCALE_BITS),
        })

    def preload(self, scale) -> None:
        """Initial contents of the scale memory: ``C`` words (``compiler.column_scale``), as a
        ROM chip's tables are preloaded (a host write replaces them at run time)."""
        self._scale_init = check_scale_words(scale, (len(self._scale_init),)).tolist()

    @staticmethod
    def _check(image: HardwareImage, tile: int, pulse_cycles: int) -> None:
        if image.target != "memristive":
            raise ValueError(f"a MemristiveTileController needs a memristive image, not a {image.target!r} one: "
                             "use hdl.tile.DigitalTile for a digital image")
        if not 0 <= tile < image.n_tiles:
            raise ValueError(f"tile must be in [0, {image.n_tiles}), not {tile!r}")
        if not isinstance(pulse_cycles, int) or pulse_cycles < 1:
            raise ValueError(f"pulse_cycles must be an integer >= 1, not {pulse_cycles!r}")
        start_max = int(image.arrays["param/start"].max(initial=0))
        if start_max >= 1 << STEP_BITS:
            raise ValueError(f"a column starts at step {start_max}; tiles count steps in {STEP_BITS} bits")

    # -- what the controller takes from the image ---------------------------------------------
    def column_masks(self) -> tuple[int, int, list[int]]:
        """``(spike_mask, value_mask, start)``: spiking neuron columns, host-flagged LI columns, starts."""
        a, t, C = self.image.arrays, self.tile, self.image.cols
        spike_mask = value_mask = 0
        start = []
        for c in range(C):
            neuron = int(a["col_kind"][t, c]) == COL_NEURON
            li = int(a["col_model"][t, c]) in NON_SPIKING_MODELS
            if neuron and not li:
                spike_mask |= 1 << c
            if neuron and li and bool(a["host_out"][t, c]):
                value_mask |= 1 << c
            start.append(int(a["param/start"][t, c]) if neuron else 0)
        return spike_mask, value_mask, start

    def scaled(self, m: Module, code, scale):
        """``code`` (signed ``v_bits``) times ``scale`` (Q3.13), rounded half up and saturated to ``v_bits``."""
        v_bits = self.geometry.arithmetic.v_bits
        lo, hi = -(1 << (v_bits - 1)), (1 << (v_bits - 1)) - 1
        product = Signal(signed(v_bits + SCALE_BITS + 1))
        m.d.comb += product.eq((code * scale + (1 << (SCALE_FRAC - 1))) >> SCALE_FRAC)
        return Mux(product > hi, hi, Mux(product < lo, lo, product))

    def elaborate(self, platform):
        m = Module()
        g, t, P = self.geometry, self.tile, self.pulse_cycles
        R, C, S = g.rows, g.cols, g.slots
        ar = g.arithmetic
        spike_mask, value_mask, start = self.column_masks()
        spike_mask_c, value_mask_c = Const(spike_mask, C), Const(value_mask, C)

        m.submodules.pending = pending = memory.Memory(
            shape=data.ArrayLayout(signed(ar.input_bits), R), depth=S, init=[])
        pend_wr = pending.write_port(granularity=1)  # one enable bit per row
        # transparent: a row written in the integrate strobe cycle is in this step's pulse
        pend_rd = pending.read_port(transparent_for=(pend_wr,))

        m.submodules.scale = scale_mem = memory.Memory(shape=SCALE_BITS, depth=C, init=self._scale_init)
        scale_wr, scale_rd = scale_mem.write_port(), scale_mem.read_port()

        slot = Signal(g.slot_bits)
        step = Signal(STEP_BITS)
        count = Signal(range(max(2, S, P) + 1))
        todo = Signal(C)      # columns still to report this update (lowest first)
        value = Signal(signed(ar.v_bits))

        # hold[c]: a neuron column whose network step 0 has not come yet keeps its state.
        hold = Signal(C)
        m.d.comb += hold.eq(Cat(*[(step < s) if s > 0 else Const(0, 1) for s in start]))

        # The lowest column still to report, and whether it is a value (LI) column.
        idx = Signal(range(max(2, C)))
        for c in reversed(range(C)):
            with m.If(todo[c]):
                m.d.comb += idx.eq(c)
        is_value = Signal()
        m.d.comb += is_value.eq(value_mask_c.bit_select(idx, 1))
        rest = Signal(C)
        m.d.comb += rest.eq(todo & (todo - 1))  # todo without its lowest column

        # Row events: one row of one slot per cycle, whenever the pending memory is free.
        rows_open = Signal()
        with m.If(rows_open):
            m.d.comb += [self.rows.ready.eq(1), pend_wr.addr.eq(self.rows.payload.slot)]
            m.d.comb += [pend_wr.data[r].eq(self.rows.payload.payload) for r in range(R)]
            with m.If(self.rows.valid):
                m.d.comb += pend_wr.en.eq(Const(1, 1) << self.rows.payload.row)

        # Partial sums merge in the analog domain: psum_out never sends, psum_in is a sink.
        m.d.comb += [self.psum_in.ready.eq(1), self.psum_out.valid.eq(0)]

        # The scale of the column being reported: read while EMIT waits for the conversion, used in
        # VALUE (idx holds through both). A configuration access reads instead while idle.
        cfg_access = Signal()
        m.d.comb += [scale_rd.addr.eq(Mux(cfg_access, self.cfg_addr, idx)), self.cfg_rdata.eq(scale_rd.data),
                     scale_wr.addr.eq(self.cfg_addr), scale_wr.data.eq(self.cfg_wdata),
                     scale_wr.en.eq(cfg_access & self.cfg_write & (self.cfg_addr < C))]

        m.d.comb += [self.spikes.payload.tile.eq(t), self.spikes.payload.col.eq(idx),
                     self.values.payload.tile.eq(t), self.values.payload.col.eq(idx),
                     self.values.payload.value.eq(self.scaled(m, value, scale_rd.data)), self.adc_col.eq(idx)]

        with m.FSM(name="phase") as fsm:
            with m.State("IDLE"):
                m.d.comb += self.busy.eq(self.integrate | self.export | self.update | self.clear)
                m.d.comb += [rows_open.eq(1), cfg_access.eq(self.cfg_en & ~self.busy)]
                with m.If(self.clear):
                    m.d.sync += count.eq(0)
                    m.next = "CLEAR"
                with m.Elif(self.integrate):
                    m.d.comb += pend_rd.addr.eq(self.slot)
                    m.d.sync += slot.eq(self.slot)
                    m.next = "LOAD"
                with m.Elif(self.update):
                    m.d.sync += step.eq(self.step)
                    m.next = "EVAL"
                # export: nothing to do, done in its strobe cycle

            # -- integrate: one parallel read pulse of the slot's rows -----------------------
            with m.State("LOAD"):
                m.d.comb += [self.busy.eq(1), pend_wr.addr.eq(slot), pend_wr.en.eq((1 << R) - 1)]  # data 0
                m.d.sync += [self.row_drive.eq(pend_rd.data), count.eq(0)]
                m.next = "SETUP"
            with m.State("SETUP"):
                m.d.comb += [self.busy.eq(1), rows_open.eq(1)]
                m.next = "PULSE"
            with m.State("PULSE"):
                m.d.comb += [self.busy.eq(1), rows_open.eq(1), self.pulse.eq(1)]
                m.d.sync += count.eq(count + 1)
                with m.If(count == P - 1):
                    m.next = "HOLD"
            with m.State("HOLD"):
                m.d.comb += [self.busy.eq(1), rows_open.eq(1)]
                m.d.sync += self.row_drive.eq(0)
                m.next = "IDLE"

            # -- update: evaluate, sample the comparators, report ----------------------------
            with m.State("EVAL"):
                m.d.comb += [self.busy.eq(1), rows_open.eq(1), self.evaluate.eq(1), self.hold.eq(hold)]
                with m.If(self.settled):
                    report = ((self.fired & spike_mask_c) | value_mask_c) & ~hold
                    m.d.sync += todo.eq(report)
                    with m.If(report == 0):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "EMIT"
            with m.State("EMIT"):
                m.d.comb += [self.busy.eq(1), rows_open.eq(1)]
                with m.If(is_value):
                    m.d.comb += self.adc_req.eq(1)
                    with m.If(self.adc_ack):
                        m.d.sync += value.eq(self.adc_value)
                        m.next = "VALUE"
                with m.Else():
                    m.d.comb += self.spikes.valid.eq(1)
                    with m.If(self.spikes.ready):
                        m.d.sync += todo.eq(rest)
                        with m.If(rest == 0):
                            m.next = "IDLE"
            with m.State("VALUE"):
                m.d.comb += [self.busy.eq(1), rows_open.eq(1), self.values.valid.eq(1)]
                with m.If(self.values.ready):
                    m.d.sync += todo.eq(rest)
                    with m.If(rest == 0):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "EMIT"

            # -- clear: zero every slot, the analog neurons return to their initial state ----
            with m.State("CLEAR"):
                m.d.comb += [self.busy.eq(1), self.neuron_clear.eq(1),
                             pend_wr.addr.eq(count), pend_wr.en.eq((count < S).replicate(R))]
                m.d.sync += [count.eq(count + 1), self.row_drive.eq(0)]
                with m.If(count == max(S, P) - 1):
                    m.next = "IDLE"
        return m

