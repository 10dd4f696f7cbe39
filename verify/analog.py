"""The analog side of a memristive chip's tiles, for simulation: models and their cocotb driver.

A memristive chip (:class:`hdl.chip.Chip` of a memristive image) leaves the crossbar arrays and
the analog neurons outside the RTL: every tile's :class:`~hdl.memristive_tile.MemristiveTileController`
ports (``row_drive``, ``pulse``, ``evaluate``, ``hold``, ``settled``, ``fired``, ``adc_*``,
``neuron_clear``) are top-level ports ``tile<t>__<name>``, and ``hdl/memristive_tile.py``'s
docstring is the contract that whatever drives them obeys.

Models (:data:`MODELS`, by name; a factory ``image -> model``) hold the array and the neurons of
*all* tiles, because partial-sum currents of a tile group merge across tiles. A model has

``pulse_cycle(drive, pulse_cycles)``
    one clock cycle of a read pulse; ``drive`` is every tile's ``row_drive`` payloads, ``[T * R]``
    (tile-major), ``pulse_cycles`` the pulse's length: integrate the column charge;
``evaluate(hold_words) -> fired_words``
    one neuron update of every tile with the charge of the step (``hold_words[t]``: tile ``t``'s
    ``hold``); returns each tile's ``fired`` word;
``adc(tile, col) -> int``
    a column's membrane as the ADC reports it (``2**-frac_bits`` levels, saturated to ``v_bits``;
    the controller then applies its column's digital scale);
``clear()``
    every neuron to its initial state, no charge.

:class:`IdealAnalog` (``"ideal"``) has ideal devices and neurons: the arithmetic of
``sim/memristive.py`` itself, so the chip must equal :class:`~sim.memristive.IdealMemristiveSimulator`
spike for spike. ``"pcm"`` and ``"tiox"`` hold the conductances :class:`sim.analog.AnalogSimulator`
draws for those devices (its seed 0), so the chip must equal that simulator. Any
``DEVICE@T_READ+MODE`` (:func:`sim.analog.analog_spec`, e.g. ``"pcm@86400+column"``) is a
device model read ``T_READ`` seconds after programming with drift compensation as the chip does
it: the simulator's ``column_scale`` words (:func:`column_scales`) are the chip's per-column
digital scale, which the host (the testbench, or ``Chip`` preloads) gives the controllers, and
the array's analog side compensates only the columns no controller converts.

:func:`attach` plays a model on a cocotb DUT (``verify/testbench.py``); the Amaranth-simulator
tests (``tests/test_hdl_memristive.py``) drive :class:`IdealAnalog` themselves. Nothing here
imports cocotb at module level, so the models can be imported anywhere.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from compiler.image import COL_NEURON, NON_SPIKING_MODELS, HardwareImage

from hdl.events import Geometry


def decode_drive(word: int, rows: int, bits: int) -> np.ndarray:
    """A ``row_drive`` word (``rows`` packed signed ``bits``-bit payloads, row 0 lowest) to ints."""
    mask, half = (1 << bits) - 1, 1 << (bits - 1)
    out = np.empty(rows, dtype=np.int64)
    for r in range(rows):
        v = (word >> (r * bits)) & mask
        out[r] = v - (1 << bits) if v & half else v
    return out


def adc_code(v: float, frac_bits: int, v_bits: int) -> int:
    """The ADC's reading of a membrane ``v`` (weight levels): ``rint(v * 2**frac_bits)``, saturated
    to ``v_bits`` signed bits (the digital tile's state units)."""
    lim = 1 << (v_bits - 1)
    return max(-lim, min(lim - 1, int(np.rint(float(v) * (1 << frac_bits)))))


class IdealAnalog:
    """The analog side of all tiles with ideal devices and neurons (sim/memristive.py's arithmetic).

    ``drop_row=(tile, row)`` wires the model with one row disconnected; ``ignore_hold`` makes
    the neurons ignore the controller's ``hold`` (mutations that the comparison must catch).
    """

    def __init__(self, image: HardwareImage, *, drop_row=None, ignore_hold=False, sim=None):
        from sim.memristive import IdealMemristiveSimulator

        self.sim = sim or IdealMemristiveSimulator(image)
        self.state = self.sim.initial_state(1)
        self.R, self.C = image.rows, image.cols
        self.charge = np.zeros(self.sim.addr.size)
        self.drop = None if drop_row is None else drop_row[0] * self.R + drop_row[1]
        self.ignore_hold = ignore_hold
        self.tile_of, self.col_of = self.sim.addr // self.C, self.sim.addr % self.C
        self.frac = Geometry.of(image).arithmetic.frac_bits
        self.v_bits = Geometry.of(image).arithmetic.v_bits

    def pulse_cycle(self, drive, pulse_cycles):
        """One cycle of a read pulse; ``drive`` is every tile's rows, ``[T * R]``: integrate charge."""
        d = np.asarray(drive, dtype=np.float64)
        if self.drop is not None:
            d = d.copy()
            d[self.drop] = 0
        self.charge += np.asarray(d[None, :] @ self.sim.w)[0] / pulse_cycles  # the simulator's weights (IR drop too)

    def evaluate(self, hold_words):
        """One neuron update with the charge of the step; ``hold_words[tile]`` is the tile's ``hold``.

        Returns the fired bit mask of every tile.
        """
        hold = np.array([(hold_words[t] >> c) & 1 for t, c in zip(self.tile_of, self.col_of)], dtype=bool)
        if self.ignore_hold:
            hold[:] = False
        spikes = self.sim.step(self.state, self.charge[None, :], hold)[0]
        self.charge[:] = 0
        fired = [0] * len(hold_words)
        for k in np.flatnonzero(spikes):
            fired[self.tile_of[k]] |= 1 << int(self.col_of[k])
        return fired

    def adc(self, tile, col):
        k = int(self.sim.index[tile * self.C + col])
        return adc_code(self.state["v"][0, k], self.frac, self.v_bits)

    def clear(self):
        """``neuron_clear``: every neuron to its initial state, the integrated charge discarded."""
        self.state = self.sim.initial_state(1)
        self.charge[:] = 0


def device_model(kind: str):
    """A factory of models whose arrays hold the conductances of analog model ``kind``
    (``sim/analog.py``, seed 0; ``"pcm"``: programming noise, drift and read noise at 1 s;
    ``"pcm@86400+column"``: a day later, drift-compensated as the chip does), as
    :func:`sim.chip_simulator` draws them, so the chip must equal that simulator."""
    def factory(image: HardwareImage):
        from sim import chip_simulator

        return IdealAnalog(image, sim=chip_simulator(image, kind))
    return factory


def column_scales(image: HardwareImage, kind: str = "ideal") -> np.ndarray:
    """The per-column digital scale words, ``[tiles, cols]``, the host writes into a memristive
    chip's tile controllers for analog model ``kind`` (computed from the array's reference
    reads, ``compiler.column_scale.quantise_scale`` of ``sim/analog.py``'s factors;
    ``SCALE_ONE`` everywhere without drift compensation)."""
    from sim import chip_simulator

    return chip_simulator(image, kind).column_scale


MODELS: dict[str, Callable[[HardwareImage], object]] = {
    "ideal": IdealAnalog,
    "pcm": device_model("pcm"),
    "tiox": device_model("tiox"),
}
"""Analog models by name: a factory taking the image (``attach``'s ``kind``)."""


def preload_column_scales(chip, scale) -> None:
    """Give a memristive :class:`hdl.chip.Chip`'s tile controllers the scale words ``scale``
    (``[tiles, cols]``, :func:`column_scales`) as their initial contents, before it is elaborated:
    what the host would write over the controllers' ``cfg_*`` ports, for a chip whose top level
    does not expose them."""
    if not getattr(chip, "analog", False):
        raise ValueError("column scales are a memristive chip's: this chip has digital tiles")
    if len(scale) != len(chip.tiles):
        raise ValueError(f"scale words for {len(scale)} tiles, but the chip has {len(chip.tiles)}")
    for tile, words in zip(chip.tiles, scale):
        tile.preload(words)


def make_model(image: HardwareImage, kind: str):
    """The model ``kind`` of :data:`MODELS` (or ``DEVICE@T_READ+MODE`` of a device in it) for
    ``image``; ValueError naming the known ones."""
    if kind in MODELS:
        return MODELS[kind](image)
    from small.errors import SimulationError
    from sim.analog import analog_spec

    known = f"use one of {', '.join(sorted(MODELS))} (devices also as DEVICE@T_READ+tile|+column)"
    try:
        device = analog_spec(kind)["device"]
    except SimulationError as exc:
        raise ValueError(f"{exc}; {known}") from None
    if device not in MODELS or device == "ideal":
        raise ValueError(f"unknown analog model {kind!r}: {known}")
    try:
        return device_model(kind)(image)
    except SimulationError as exc:
        raise ValueError(str(exc)) from None


def attach(dut, image: HardwareImage, kind: str = "ideal", rng: np.random.Generator | None = None, *,
           pulse_cycles: int | None = None) -> "AnalogSide":
    """The analog side of every tile of ``dut`` (a memristive chip under cocotb), model ``kind``.

    Call it before reset (it drives the model's ports to 0 at once), :meth:`AnalogSide.start`
    after reset and :meth:`AnalogSide.check` at the end. ``rng`` (a numpy Generator): random
    latencies of 0-2 cycles on ``settled`` and ``adc_ack`` and random ``fired`` bits on the
    columns the controller must ignore; ``None``: the model answers as soon as it can (one
    cycle after the request). ``pulse_cycles``: the chip's (``Chip(pulse_cycles=)``); ``None``
    takes the first pulse's length and checks that every pulse has it.
    """
    return AnalogSide(dut, image, make_model(image, kind), rng, pulse_cycles=pulse_cycles)


class _Ports:
    """The handles of one tile's analog ports on the DUT (``tile<t>__<name>``)."""

    NAMES = ("row_drive", "pulse", "evaluate", "hold", "settled", "fired", "adc_req", "adc_col", "adc_ack",
             "adc_value", "neuron_clear")

    def __init__(self, dut, t: int):
        for name in self.NAMES:
            setattr(self, name, getattr(dut, f"tile{t}__{name}"))


class AnalogSide:
    """Plays ``model`` on every tile's analog ports (see :func:`attach`).

    Coroutines sleep on rising edges of ``pulse``, ``evaluate``, ``adc_req`` and
    ``neuron_clear`` (any tile's) and wake on the clock only while one of those is being
    served, so the idle cycles of a step cost no Python. Protocol facts seen along the way are
    collected in :attr:`errors`, and :meth:`check` raises them.
    """

    def __init__(self, dut, image: HardwareImage, model, rng=None, *, pulse_cycles: int | None = None):
        g = Geometry.of(image)
        self.dut, self.clk, self.model = dut, dut.clk, model
        self.T, self.R, self.C = image.n_tiles, g.rows, g.cols
        self.bits = g.arithmetic.input_bits
        self.v_mask = (1 << g.arithmetic.v_bits) - 1
        self.pulse_cycles = pulse_cycles
        # a private stream of the testbench's generator: the same seed gives the same run
        self.rng = None if rng is None else np.random.default_rng(int(rng.integers(1 << 62)))
        self.ports = [_Ports(dut, t) for t in range(self.T)]
        a = image.arrays
        spiking = (a["col_kind"] == COL_NEURON) & ~np.isin(a["col_model"], NON_SPIKING_MODELS)
        # fired bits the controller must ignore (partial-sum, unused and LI columns)
        self.ignored = [sum(1 << c for c in range(self.C) if not spiking[t, c]) for t in range(self.T)]
        self.errors: list[str] = []
        self.pulses: list[int] = []   # length of each pulse
        self.evaluations = 0
        self.conversions = 0
        self.clears = 0
        for p in self.ports:
            p.settled.value = 0
            p.fired.value = 0
            p.adc_ack.value = 0
            p.adc_value.value = 0

    # -- helpers -----------------------------------------------------------------------------
    def error(self, message: str) -> None:
        if len(self.errors) < 20:
            from cocotb.utils import get_sim_time

            self.errors.append(f"at {get_sim_time('ns')} ns: {message}")

    def _latency(self) -> int:
        return 0 if self.rng is None else int(self.rng.integers(0, 3))

    def _garbage(self, t: int) -> int:
        return 0 if self.rng is None else int(self.rng.integers(1 << self.C)) & self.ignored[t]

    @staticmethod
    def _any_rise(handles):
        from cocotb.triggers import First, RisingEdge

        return RisingEdge(handles[0]) if len(handles) == 1 else First(*(RisingEdge(h) for h in handles))

    # -- coroutines --------------------------------------------------------------------------
    def start(self) -> None:
        """Start the coroutines (after reset)."""
        import cocotb

        cocotb.start_soon(self._pulses())
        cocotb.start_soon(self._evaluations())
        cocotb.start_soon(self._clears())
        for t in range(self.T):
            cocotb.start_soon(self._adc(t))

    async def _pulses(self) -> None:
        from cocotb.triggers import ReadOnly, RisingEdge

        ports = self.ports
        while True:
            await self._any_rise([p.pulse for p in ports])
            await ReadOnly()
            high = [bool(p.pulse.value) for p in ports]
            if not any(high):
                continue  # a glitch
            drives: list[list[int]] = []
            while True:
                high = [bool(p.pulse.value) for p in ports]
                words = [int(p.row_drive.value) for p in ports]
                if len(set(high)) != 1:
                    self.error(f"tiles pulse in different cycles (pulse {high})")
                if not any(high):
                    if words != drives[0]:
                        self.error("row_drive changed in the cycle after the pulse")
                    break
                if drives and words != drives[0]:
                    self.error("row_drive changed during the pulse")
                drives.append(words)
                await RisingEdge(self.clk)
                await ReadOnly()
            n = len(drives)
            self.pulses.append(n)
            if self.pulse_cycles is None:
                self.pulse_cycles = n
            elif n != self.pulse_cycles:
                self.error(f"a pulse of {n} cycles, not {self.pulse_cycles}")
            decoded = {}
            for words in drives:
                key = tuple(words)
                if key not in decoded:
                    decoded[key] = np.concatenate([decode_drive(w, self.R, self.bits) for w in words])
                self.model.pulse_cycle(decoded[key], self.pulse_cycles)

    async def _evaluations(self) -> None:
        from cocotb.triggers import ReadOnly, RisingEdge

        ports = self.ports
        while True:
            await self._any_rise([p.evaluate for p in ports])
            await ReadOnly()
            ev = [bool(p.evaluate.value) for p in ports]
            if not any(ev):
                continue  # a glitch
            if not all(ev):
                self.error(f"tiles evaluate in different cycles (evaluate {ev})")
            fired = self.model.evaluate([int(p.hold.value) for p in ports])
            self.evaluations += 1
            wait = [self._latency() for _ in ports]  # cycles before settled rises, per tile
            acked: list[int] = []
            todo = set(range(self.T))
            while todo or acked:
                await RisingEdge(self.clk)
                for t in acked:  # sampled at this edge: lower settled (the controller left EVAL)
                    ports[t].settled.value = 0
                    ports[t].fired.value = self._garbage(t)
                acked = []
                for t in sorted(todo):
                    if wait[t] == 0:
                        ports[t].fired.value = fired[t] | self._garbage(t)
                        ports[t].settled.value = 1
                        acked.append(t)
                        todo.discard(t)
                    else:
                        wait[t] -= 1
                if acked:  # evaluate must still be high at the edge that samples settled
                    await ReadOnly()
                    for t in acked:
                        if not ports[t].evaluate.value:
                            self.error(f"tile {t}: evaluate fell before settled")

    async def _adc(self, t: int) -> None:
        from cocotb.triggers import ReadOnly, RisingEdge

        p = self.ports[t]
        while True:
            await RisingEdge(p.adc_req)
            await ReadOnly()
            if not p.adc_req.value:
                continue
            col = int(p.adc_col.value)
            for _ in range(self._latency()):
                await RisingEdge(self.clk)
            await RisingEdge(self.clk)
            p.adc_value.value = self.model.adc(t, col) & self.v_mask
            p.adc_ack.value = 1
            await ReadOnly()
            if not p.adc_req.value:
                self.error(f"tile {t}: adc_req fell before adc_ack")
            elif int(p.adc_col.value) != col:
                self.error(f"tile {t}: adc_col changed during a conversion ({col} -> {int(p.adc_col.value)})")
            await RisingEdge(self.clk)  # the controller samples adc_value here
            p.adc_ack.value = 0
            p.adc_value.value = 0
            self.conversions += 1

    async def _clears(self) -> None:
        from cocotb.triggers import ReadOnly

        ports = self.ports
        while True:
            await self._any_rise([p.neuron_clear for p in ports])
            await ReadOnly()
            on = [bool(p.neuron_clear.value) for p in ports]
            if not any(on):
                continue
            if not all(on):
                self.error(f"tiles clear in different cycles (neuron_clear {on})")
            self.model.clear()
            self.clears += 1

    # -- the end -----------------------------------------------------------------------------
    def check(self) -> None:
        """Raise AssertionError listing the protocol violations seen (none: return)."""
        errors = list(self.errors)
        if len(set(self.pulses)) > 1:
            errors.append(f"pulses of different lengths: {sorted(set(self.pulses))}")
        if len(self.pulses) != self.evaluations:
            errors.append(f"{len(self.pulses)} pulses but {self.evaluations} evaluations (one each per chip step)")
        if errors:
            raise AssertionError("analog protocol: " + "; ".join(errors))

    def summary(self) -> dict:
        return {"pulses": len(self.pulses), "pulse_cycles": self.pulse_cycles, "evaluations": self.evaluations,
                "conversions": self.conversions, "clears": self.clears, "errors": list(self.errors)}
