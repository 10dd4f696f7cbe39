"""MemristiveTileController RTL + an ideal analog model against sim/memristive.py, spike for spike.

The testbench plays the chip's sequencer and router in Python (from the image's tables), as
``tests/test_hdl_tile.py`` does, and :class:`~verify.analog.IdealAnalog` (shared with the
cocotb testbench of the whole chip, ``verify/analog.py``) plays the analog side of every
tile: it reads each tile's ``row_drive`` during ``pulse``, sums the column currents with the image's
device levels (partial-sum columns merged onto their neuron, ``ChipSimulator.w``), and on
``evaluate`` updates the ideal neurons with ``IdealMemristiveSimulator.step`` (the
simulator's own arithmetic, not a copy), keeping the columns the controller ``hold``s, then
presents ``fired`` and ``settled`` after a random latency; LI membranes are served on the ADC
port. The spikes the controllers emit must equal ``IdealMemristiveSimulator(image).run(...)``'s
chip spikes at every step, and the LI values its outputs.

Along the way it checks the controller's analog protocol: all tiles pulse in the same cycles,
``pulse`` lasts ``pulse_cycles``, the drive is stable during the pulse, equals exactly the rows
due in the step (rows of other slots are not driven) and is zero outside ``integrate``;
``adc_col`` is stable during a conversion. Row events are delivered during the pulse and
during ``update`` too, with random back-pressure on ``spikes`` and ``values``.

The per-column digital scale (drift compensation, ``compiler/column_scale.py``): the testbench
writes scale words into every controller over its ``cfg_*`` ports before the first step, as the
host would, and the values must equal the twin's (``sim.memristive.scale_codes`` of the ADC
code) exactly; mutant controllers that ignore the scale or truncate must be caught.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.sim import Simulator

from compiler.image import COL_NEURON, COL_PARTIAL, NON_SPIKING_MODELS
from compiler.mapper import CompileOptions, compile_network
from compiler.column_scale import SCALE_BITS, SCALE_FRAC, SCALE_ONE, quantise_scale
from hdl.events import Geometry
from hdl.memristive_tile import MemristiveTileController
from verify.analog import IdealAnalog, adc_code, decode_drive, make_model
from sim import chip_simulator
from sim.memristive import IdealMemristiveSimulator, scale_codes, value_columns
from test_compile import random_input, random_network

pytestmark = pytest.mark.rtl

_IMAGES = {}


def memristive_image(seed, rows, cols):
    key = (seed, rows, cols)
    if key not in _IMAGES:
        net = random_network(seed)
        for proj in net.projections:
            proj.weight = proj.weight * 1.37  # off the level grid: real quantisation
        _IMAGES[key] = compile_network(
            net, CompileOptions(target="memristive", rows=rows, cols=cols, levels=8, seed=seed)).image
    return _IMAGES[key]


class Tiles(Elaboratable):
    """All tiles' controllers side by side (the testbench wires them)."""

    def __init__(self, image, pulse_cycles=4, controller=MemristiveTileController):
        self.tiles = [controller(image, t, pulse_cycles=pulse_cycles) for t in range(image.n_tiles)]

    def elaborate(self, platform):
        m = Module()
        for t, tile in enumerate(self.tiles):
            m.submodules[f"tile{t}"] = tile
        return m


def run_rtl(image, x, *, pulse_cycles=4, seed=0, model=None, slot_offset=0, check_drive=True, scale=None,
            controller=MemristiveTileController):
    """Chip spikes ``[steps, K]`` and LI values ``{(step, column address): code}`` of the RTL + model.

    ``x`` is ``[steps, n_in]`` integer payloads. ``slot_offset`` corrupts the sequencer's
    ``integrate`` slot (a mutation). ``scale``: ``[tiles, cols]`` scale words the host writes
    over the ``cfg_*`` ports before the first step (and reads back); ``controller``: the
    controller class (a mutant).
    """
    a, R, C = image.arrays, image.rows, image.cols
    S = image.delay_slots + 1
    g = Geometry.of(image)
    bits = g.arithmetic.input_bits
    T = image.n_tiles
    dut = Tiles(image, pulse_cycles, controller)
    tiles = dut.tiles
    model = model or IdealAnalog(image)
    rng = np.random.default_rng(seed + 7)
    garbage = [0] * T  # fired bits of columns the controller must ignore (partial, unused, LI)
    for t in range(T):
        for c in range(C):
            spiking = a["col_kind"][t, c] == COL_NEURON and a["col_model"][t, c] not in NON_SPIKING_MODELS
            if not spiking and rng.random() < 0.5:
                garbage[t] |= 1 << c
    index = {int(addr): k for k, addr in enumerate(model.sim.addr)}
    extra = max(o["latency"] for o in image.meta["outputs"])
    steps = x.shape[0] + extra
    spikes = np.zeros((steps, len(index)), dtype=bool)
    values = {}
    stats = {"integrate_cycles": set(), "pulse_len": set()}

    async def bench(ctx):
        queues = [deque() for _ in tiles]  # row events (row, slot, payload) to deliver
        due = [dict() for _ in range(steps + S + 1)]  # due[t][(tile, row)] = payload

        def route_spike(t, addr):
            for dt_, drow, delay in image.routes(addr):
                due[t + 1 + delay][(dt_, drow)] = 1
                queues[dt_].append((drow, (t + 1 + delay) % S, 1))

        async def cycle(t, phase, strobe=None, **values_in):
            """Service every port for one cycle, then tick. Returns the number of busy tiles."""
            for tile in tiles:
                for name in ("integrate", "update", "export", "clear"):
                    ctx.set(getattr(tile, name), int(name == strobe))
                for k, v in values_in.items():
                    ctx.set(getattr(tile, k), v)
            takes = []
            for ti, tile in enumerate(tiles):
                q = queues[ti]
                ctx.set(tile.rows.valid, int(bool(q)))
                if q:
                    ctx.set(tile.rows.payload, {"row": q[0][0], "slot": q[0][1], "payload": q[0][2]})
                    if ctx.get(tile.rows.ready):
                        takes.append(q)
            # -- integrate: the analog array sees the row pulses --
            pulses = [ctx.get(tile.pulse) for tile in tiles]
            assert len(set(pulses)) == 1, f"step {t}: tiles pulse in different cycles"
            drive_words = [ctx.get(tile.row_drive.as_value()) for tile in tiles]
            if pulses[0]:
                pulse_state["len"] += 1
                if pulse_state["drive"] is None:
                    pulse_state["drive"] = drive_words
                assert drive_words == pulse_state["drive"], f"step {t}: row drive changed during the pulse"
                drive = np.concatenate([decode_drive(w, R, bits) for w in drive_words])
                model.pulse_cycle(drive, pulse_cycles)
            elif phase != "integrate":
                assert not any(drive_words), f"step {t}: rows driven outside integrate ({phase})"
            # -- update: evaluation handshake, ADC, events --
            settle_now = []
            for ti, tile in enumerate(tiles):
                ev = ctx.get(tile.evaluate)
                if ev and eval_state[ti] is None:
                    if eval_state["fired"] is None:
                        assert all(ctx.get(tl.evaluate) for tl in tiles), "tiles evaluate in different cycles"
                        eval_state["fired"] = model.evaluate([ctx.get(tl.hold) for tl in tiles])
                    eval_state[ti] = int(rng.integers(0, 3))
                if ev and eval_state[ti] == 0:
                    ctx.set(tile.fired, eval_state["fired"][ti] | garbage[ti])
                    ctx.set(tile.settled, 1)
                    settle_now.append(ti)
                else:
                    ctx.set(tile.settled, 0)
                    ctx.set(tile.fired, garbage[ti])
                    if ev:
                        eval_state[ti] -= 1
                if ctx.get(tile.adc_req):
                    col = ctx.get(tile.adc_col)
                    if adc_state[ti] is None:
                        adc_state[ti] = [int(rng.integers(0, 3)), col]
                    assert adc_state[ti][1] == col, "adc_col changed during a conversion"
                    if adc_state[ti][0] == 0:
                        ctx.set(tile.adc_value, model.adc(ti, col))
                        ctx.set(tile.adc_ack, 1)
                        adc_state[ti] = None
                    else:
                        adc_state[ti][0] -= 1
                        ctx.set(tile.adc_ack, 0)
                else:
                    ctx.set(tile.adc_ack, 0)
                    ctx.set(tile.adc_value, 0)
                    assert adc_state[ti] is None, "adc_req fell before adc_ack"
                s_ready, v_ready = int(rng.random() < 0.7), int(rng.random() < 0.7)
                ctx.set(tile.spikes.ready, s_ready)
                ctx.set(tile.values.ready, v_ready)
                if s_ready and ctx.get(tile.spikes.valid):
                    addr = ti * C + ctx.get(tile.spikes.payload.col)
                    assert ctx.get(tile.spikes.payload.tile) == ti
                    assert not spikes[t, index[addr]], "a spike was sent twice"
                    spikes[t, index[addr]] = True
                    route_spike(t, addr)
                if v_ready and ctx.get(tile.values.valid):
                    key = (t, ti * C + ctx.get(tile.values.payload.col))
                    assert key not in values, "a value was sent twice"
                    values[key] = ctx.get(tile.values.payload.value)
            busy = sum(ctx.get(tile.busy) for tile in tiles)
            await ctx.tick()
            for q in takes:
                q.popleft()
            for ti in settle_now:
                eval_state[ti] = None
            return busy

        if scale is not None:  # the host configures every column's scale, then reads it back
            for write in (1, 0):
                for c in range(C):
                    for ti, tile in enumerate(tiles):
                        ctx.set(tile.cfg_en, 1)
                        ctx.set(tile.cfg_write, write)
                        ctx.set(tile.cfg_addr, c)
                        ctx.set(tile.cfg_wdata, int(scale[ti, c]) if write else 0)
                    await ctx.tick()
                    for ti, tile in enumerate(tiles):
                        ctx.set(tile.cfg_en, 0)
                        if not write:
                            assert ctx.get(tile.cfg_rdata) == scale[ti, c], f"tile {ti} column {c}: scale read back"
        pulse_state = {"len": 0, "drive": None}
        eval_state = {"fired": None, **{ti: None for ti in range(T)}}
        adc_state = [None] * T
        for t in range(steps):
            later = []
            if t < x.shape[0]:  # host inputs: delay 0 before integrate, the others during the pulse
                for e in np.flatnonzero(x[t]):
                    for k in range(a["input_ptr"][e], a["input_ptr"][e + 1]):
                        tile, row, d = int(a["input_tile"][k]), int(a["input_row"][k]), int(a["input_delay"][k])
                        due[t + d][(tile, row)] = int(x[t, e])
                        event = (row, (t + d) % S, int(x[t, e]))
                        if d == 0:
                            queues[tile].append(event)
                        else:
                            later.append((tile, event))
            while any(queues):
                await cycle(t, "rows")
            for tile, ev in later:
                queues[tile].append(ev)
            # integrate: every tile in the same cycle
            pulse_state.update(len=0, drive=None)
            n = 1
            assert await cycle(t, "integrate", "integrate", slot=(t + slot_offset) % S) == T
            while await cycle(t, "integrate"):
                n += 1
            stats["integrate_cycles"].add(n)
            stats["pulse_len"].add(pulse_state["len"])
            if check_drive:
                expect = np.zeros(T * R, dtype=np.int64)
                for (tile, row), p in due[t].items():
                    expect[tile * R + row] = p
                got = np.concatenate([decode_drive(w, R, bits) for w in pulse_state["drive"]])
                np.testing.assert_array_equal(got, expect, err_msg=f"step {t}: row drive is not the step's rows")
            assert await cycle(t, "export", "export") == T  # export: done in its strobe cycle
            assert await cycle(t, "rows") == 0
            eval_state["fired"] = None
            await cycle(t, "update", "update", step=min(t, 255))
            while await cycle(t, "update"):
                pass
            assert all(v is None for k, v in eval_state.items() if k != "fired")
        while any(queues):
            await cycle(steps, "rows")

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert stats["integrate_cycles"] == {pulse_cycles + 4}, stats
    assert stats["pulse_len"] == {pulse_cycles}, stats
    return spikes, values


def reference(image, x):
    res = IdealMemristiveSimulator(image).run(x[:, None], record_spikes=True)
    return res.spikes["chip"][:, 0], res


def check_values(image, x, values, res):
    """LI host values: sent exactly for host-flagged LI columns from their start, equal to the membrane."""
    a, C = image.arrays, image.cols
    frac = Geometry.of(image).arithmetic.frac_bits
    expected_keys = set()
    for o in image.meta["outputs"]:
        if o["kind"] != "value":
            continue
        addrs = a[f"pop/{o['population']}/tile"].astype(np.int64) * C + a[f"pop/{o['population']}/col"]
        scale = a[f"output/{o['name']}/value_scale"]
        for j, addr in enumerate(addrs.tolist()):
            for tt in range(x.shape[0]):
                t = tt + int(o["latency"])
                expected_keys.add((t, addr))
                got = values[(t, addr)] * scale[j] / 2 ** frac
                np.testing.assert_allclose(got, res.outputs[o["name"]][tt, 0, j], rtol=1e-5,
                                           atol=scale[j] / 2 ** frac, err_msg=f"value of {addr} at chip step {t}")
    # the run's last steps (t >= steps) may carry values too; every value sent is a host LI column
    host_li = {int(t * C + c) for t, c in zip(*np.nonzero(a["host_out"] & np.isin(a["col_model"], NON_SPIKING_MODELS)))}
    assert {addr for _, addr in values} <= host_li
    assert expected_keys <= set(values)
    return len(expected_keys)


CASES = [  # seed, rows, cols, pulse_cycles, steps, integer payloads
    (0, 8, 8, 4, 12, False),   # many tiles: fan-in splits, multicast routes
    (1, 16, 12, 1, 12, True),  # signed multi-level payloads, shortest pulse
    (2, 64, 64, 3, 12, False),  # one big tile
]


@pytest.mark.parametrize("seed,rows,cols,pulse,steps,levels_in", CASES)
def test_controllers_with_ideal_model_match_the_memristive_simulator(seed, rows, cols, pulse, steps, levels_in):
    image = memristive_image(seed, rows, cols)
    if rows == 8:
        assert np.any(image.arrays["col_kind"] == COL_PARTIAL), "expected a split fan-in"
    x = random_input(seed, steps=steps, batch=1)[:, 0].astype(np.int64)
    if levels_in:  # signed payloads: the drive carries the value, not just 0/1
        x = x * np.random.default_rng(seed).integers(-3, 5, size=x.shape)
    ref, res = reference(image, x)
    t0 = time.perf_counter()
    rtl, values = run_rtl(image, x, pulse_cycles=pulse, seed=seed)
    assert ref.sum() > 10
    for t in range(ref.shape[0]):
        np.testing.assert_array_equal(rtl[t], ref[t], err_msg=f"chip step {t}")
    assert check_values(image, x, values, res) > 0
    print(f"{image.n_tiles} tiles, {ref.shape[0]} steps, {int(ref.sum())} spikes, {len(values)} values: "
          f"{time.perf_counter() - t0:.1f} s")


def _mutant_mismatch(image, x, **kwargs):
    ref, _ = reference(image, x)
    rtl, _ = run_rtl(image, x, **kwargs)
    return not np.array_equal(rtl, ref)


def test_the_comparison_catches_a_model_with_a_dropped_row():
    image = memristive_image(0, 8, 8)
    x = random_input(0, steps=8, batch=1)[:, 0].astype(np.int64)
    # the busiest input row: fed by the input element sent most often
    e = int(np.argmax(x.sum(axis=0) * np.diff(image.arrays["input_ptr"])))
    k = int(image.arrays["input_ptr"][e])
    row = (int(image.arrays["input_tile"][k]), int(image.arrays["input_row"][k]))
    assert _mutant_mismatch(image, x, model=IdealAnalog(image, drop_row=row))


def test_the_comparison_catches_neurons_that_ignore_hold():
    # seed 3: a population with latency 1 has a bias, so holding it in chip step 0 matters
    image = memristive_image(3, 8, 8)
    assert image.arrays["param/start"].max() > 0
    x = random_input(3, steps=8, batch=1)[:, 0].astype(np.int64)
    assert _mutant_mismatch(image, x, model=IdealAnalog(image, ignore_hold=True))


def test_the_comparison_catches_a_wrong_slot():
    image = memristive_image(0, 8, 8)
    x = random_input(0, steps=8, batch=1)[:, 0].astype(np.int64)
    assert _mutant_mismatch(image, x, slot_offset=1, check_drive=False)
    with pytest.raises(AssertionError, match="row drive is not the step's rows"):
        run_rtl(image, x[:3], slot_offset=1)


def test_a_digital_image_is_refused():
    opts = CompileOptions(target="digital", rows=16, cols=16, levels=8, seed=0)
    image = compile_network(random_network(0), opts).image
    with pytest.raises(ValueError, match="memristive image"):
        MemristiveTileController(image, 0)
    mem = memristive_image(0, 8, 8)
    with pytest.raises(ValueError, match="tile must be"):
        MemristiveTileController(mem, mem.n_tiles)
    with pytest.raises(ValueError, match="pulse_cycles"):
        MemristiveTileController(mem, 0, pulse_cycles=0)


def test_protocol_and_cycle_counts_of_one_tile():
    """Hand-driven: rows in the strobe cycle, blocked in LOAD; exact cycle counts; clear."""
    image = memristive_image(2, 64, 64)
    g = Geometry.of(image)
    S, R, P = g.slots, g.rows, 5
    dut = MemristiveTileController(image, 0, pulse_cycles=P)
    spike_mask, value_mask, start = dut.column_masks()
    log = {}

    async def strobe(ctx, name, **kw):
        for k, v in kw.items():
            ctx.set(getattr(dut, k), v)
        ctx.set(getattr(dut, name), 1)
        assert ctx.get(dut.busy)
        if name in ("integrate", "clear"):  # a row in the strobe cycle: in this pulse / cleared
            ctx.set(dut.rows.valid, 1)
            ctx.set(dut.rows.payload, {"row": 3, "slot": kw.get("slot", 0), "payload": 9})
            assert ctx.get(dut.rows.ready)
        await ctx.tick()
        ctx.set(getattr(dut, name), 0)
        ctx.set(dut.rows.valid, 0)

    async def bench(ctx):
        ctx.set(dut.spikes.ready, 1)
        ctx.set(dut.values.ready, 1)
        # two rows of slot 1 and one of slot 2
        for row, slot, p in [(0, 1, 1), (R - 1, 1, -7), (5, 2, 3)]:
            ctx.set(dut.rows.valid, 1)
            ctx.set(dut.rows.payload, {"row": row, "slot": slot, "payload": p})
            assert ctx.get(dut.rows.ready)
            await ctx.tick()
        ctx.set(dut.rows.valid, 0)
        await strobe(ctx, "integrate", slot=1)
        n, ready, pulse, drives = 1, [], 0, set()
        while ctx.get(dut.busy):
            ready.append(ctx.get(dut.rows.ready))
            pulse += ctx.get(dut.pulse)
            drives.add(ctx.get(dut.row_drive.as_value()))
            await ctx.tick()
            n += 1
        log["integrate"] = n
        log["ready"] = ready
        log["pulse"] = pulse
        expect = np.zeros(R, dtype=np.int64)
        expect[0], expect[3], expect[R - 1] = 1, 9, -7
        log["drive"] = [decode_drive(d, R, 8).tolist() for d in drives]
        log["expect"] = expect.tolist()
        assert ctx.get(dut.row_drive.as_value()) == 0
        # update with a combinational model: every column fires
        await strobe(ctx, "update", step=255)
        n = 1
        ctx.set(dut.settled, 1)
        ctx.set(dut.fired, (1 << g.cols) - 1)
        ctx.set(dut.adc_ack, 1)
        while ctx.get(dut.busy):
            await ctx.tick()
            n += 1
        log["update"] = n
        ctx.set(dut.settled, 0)
        # export: one cycle
        await strobe(ctx, "export")
        log["export_busy_after"] = ctx.get(dut.busy)
        # clear: zero every slot (slot 2 had a row), neuron_clear high max(S, P) cycles
        await strobe(ctx, "clear")
        n, nc = 1, 0
        while ctx.get(dut.busy):
            nc += ctx.get(dut.neuron_clear)
            await ctx.tick()
            n += 1
        log["clear"], log["neuron_clear"] = n, nc
        ctx.set(dut.rows.valid, 0)
        for slot in (2, 0):  # slot 2's row came before the clear, slot 0's in its strobe cycle
            ctx.set(dut.slot, slot)
            ctx.set(dut.integrate, 1)
            await ctx.tick()
            ctx.set(dut.integrate, 0)
            while ctx.get(dut.busy):
                assert ctx.get(dut.row_drive.as_value()) == 0, f"clear left a pending row in slot {slot}"
                await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert log["integrate"] == P + 4
    assert log["ready"] == [0] + [1] * (P + 2)  # LOAD blocks rows; SETUP, PULSE, HOLD accept
    assert log["pulse"] == P
    assert log["drive"] == [log["expect"], [0] * R] or log["drive"] == [[0] * R, log["expect"]]
    n_spikes, n_values = bin(spike_mask).count("1"), bin(value_mask).count("1")
    assert n_spikes + n_values > 0
    assert log["update"] == 2 + n_spikes + 2 * n_values
    assert log["export_busy_after"] == 0
    assert log["clear"] == 1 + max(S, P) and log["neuron_clear"] == max(S, P)


# -- the per-column digital scale (drift compensation) -----------------------------------------
def ref_scaled(code: int, scale: int, v_bits: int = 24) -> int:
    """The controller's scale in plain Python integers (``compiler/column_scale.py``)."""
    lim = 1 << (v_bits - 1)
    return max(-lim, min(lim - 1, (code * scale + (1 << (SCALE_FRAC - 1))) // (1 << SCALE_FRAC)))


def twin_values(sim, image, x):
    """The twin's LI values ``{(chip step, column address): code}``: ADC code, then column scale."""
    ar = Geometry.of(image).arithmetic
    res = sim.run(x[:, None], record_spikes=True)
    out = {}
    shown = value_columns(image).reshape(-1)[sim.addr]
    for t in range(res.spikes["chip"].shape[0]):
        ks = np.flatnonzero(shown & (t >= sim.start))
        codes = [adc_code(v, ar.frac_bits, ar.v_bits) for v in res.membrane["chip"][t, 0, ks]]
        out.update({(t, int(sim.addr[k])): int(c) for k, c in zip(ks, sim.value_codes(codes, ks, ar.v_bits))})
    return res.spikes["chip"][:, 0], out


def odd_scales(image, seed=0):
    """Scale words of factors in [0.3, 3) (most of them off any power of two) for every column."""
    rng = np.random.default_rng(seed)
    return quantise_scale(rng.uniform(0.3, 3.0, size=(image.n_tiles, image.cols)))


def test_scale_words_round_half_up_and_saturate():
    assert quantise_scale(1.0) == SCALE_ONE and SCALE_BITS == 16
    half = 0.5 / SCALE_ONE
    np.testing.assert_array_equal(quantise_scale([1 + half, 1 + half * 0.999, 0.0, 7.9999, 8.0, 1e9]),
                                  [SCALE_ONE + 1, SCALE_ONE, 0, 65535, 65535, 65535])
    for bad in (-0.1, np.nan, np.inf):
        with pytest.raises(ValueError, match="finite factor >= 0"):
            quantise_scale([1.0, bad])
    codes = np.array([3, -3, 5, -5, 0, 2 ** 23 - 1, -2 ** 23, 12345, -777])
    for s in (SCALE_ONE, SCALE_ONE // 2, 3 * SCALE_ONE // 2, 65535, 1, 0):
        np.testing.assert_array_equal(scale_codes(codes, s, 24), [ref_scaled(int(c), s) for c in codes])
    np.testing.assert_array_equal(scale_codes(codes, SCALE_ONE, 24), codes)  # 1.0 changes nothing
    assert ref_scaled(3, SCALE_ONE // 2) == 2 and ref_scaled(-3, SCALE_ONE // 2) == -1  # 1.5 -> 2, -1.5 -> -1


def test_controllers_apply_a_per_column_scale_bit_exact_with_the_twin():
    """Scales written at run time over cfg_*: every spike and every value equal the twin's."""
    image = memristive_image(0, 8, 8)
    x = random_input(0, steps=12, batch=1)[:, 0].astype(np.int64)
    scale = odd_scales(image)
    ref, expect = twin_values(IdealMemristiveSimulator(image, column_scale=scale), image, x)
    rtl, values = run_rtl(image, x, scale=scale)
    np.testing.assert_array_equal(rtl, ref)
    assert values == expect
    plain = twin_values(IdealMemristiveSimulator(image), image, x)[1]
    changed = sum(values[k] != plain[k] for k in expect)
    assert changed > len(expect) // 2, "the scales should change most values"


def test_a_drift_compensated_pcm_chip_equals_its_twin():
    """PCM read a day after programming, compensated per column as the chip does it: the analog
    side compensates the spiking columns, the controllers the LI columns with the twin's words."""
    image = memristive_image(0, 8, 8)
    kind = "pcm@86400+column"
    x = random_input(0, steps=10, batch=1)[:, 0].astype(np.int64)
    twin = chip_simulator(image, kind)
    scale = twin.column_scale
    assert np.all(scale[value_columns(image)] > SCALE_ONE * 1.2)  # a day of drift: a real factor
    ref, expect = twin_values(twin, image, x)
    rtl, values = run_rtl(image, x, scale=scale, model=make_model(image, kind))
    np.testing.assert_array_equal(rtl, ref)
    assert values == expect and expect
    # the controllers' scale is doing the work: left at 1.0 the values differ
    assert run_rtl(image, x, model=make_model(image, kind))[1] != expect


class IgnoresTheScale(MemristiveTileController):
    def scaled(self, m, code, scale):
        return code


class Truncates(MemristiveTileController):
    def scaled(self, m, code, scale):
        return (code * scale) >> SCALE_FRAC  # rounds towards -inf instead of half up


@pytest.mark.parametrize("mutant", [IgnoresTheScale, Truncates])
def test_the_comparison_catches_a_controller_that_scales_wrongly(mutant):
    image = memristive_image(0, 8, 8)
    x = random_input(0, steps=8, batch=1)[:, 0].astype(np.int64)
    scale = odd_scales(image, seed=1)
    _, expect = twin_values(IdealMemristiveSimulator(image, column_scale=scale), image, x)
    _, values = run_rtl(image, x, scale=scale, controller=mutant)
    assert values != expect


def test_one_controller_scales_conversions_rounds_half_up_and_saturates():
    """Hand-driven: preloaded and run-time scale words, conversions at the extremes of v_bits."""
    image = memristive_image(2, 64, 64)
    g = Geometry.of(image)
    v_bits = g.arithmetic.v_bits
    cols = [int(c) for t, c in np.argwhere(value_columns(image))]
    assert len(cols) >= 3
    pre = np.full(image.cols, SCALE_ONE)
    pre[cols[0]] = 3 * SCALE_ONE // 2  # 1.5, preloaded (the ROM pattern)
    dut = MemristiveTileController(image, 0, scale=pre)
    words = {cols[1]: SCALE_ONE // 2, cols[2]: 65535}  # 0.5 and the largest scale, written at run time
    cases = [  # one update per row: the code every value column converts
        {c: 2 ** (v_bits - 1) - 1 for c in cols},       # saturates up (1.5 and ~8)
        {c: -2 ** (v_bits - 1) for c in cols},          # saturates down
        {cols[0]: 3, cols[1]: -3, cols[2]: 1},          # 4.5 -> 5, -1.5 -> -1, 7.9999 -> 8
        {cols[0]: -3, cols[1]: 3, cols[2]: -1},         # -4.5 -> -4, 1.5 -> 2, -7.9999 -> -8
    ]
    got = []

    async def bench(ctx):
        ctx.set(dut.values.ready, 1)
        ctx.set(dut.spikes.ready, 1)
        for c, w in words.items():
            ctx.set(dut.cfg_en, 1)
            ctx.set(dut.cfg_write, 1)
            ctx.set(dut.cfg_addr, c)
            ctx.set(dut.cfg_wdata, w)
            await ctx.tick()
        ctx.set(dut.cfg_write, 0)
        ctx.set(dut.cfg_addr, cols[0])
        await ctx.tick()
        ctx.set(dut.cfg_en, 0)
        assert ctx.get(dut.cfg_rdata) == pre[cols[0]]
        for codes in cases:
            ctx.set(dut.update, 1)
            ctx.set(dut.step, 255)
            await ctx.tick()
            ctx.set(dut.update, 0)
            ctx.set(dut.settled, 1)
            ctx.set(dut.fired, 0)
            row = {}
            while ctx.get(dut.busy):
                if ctx.get(dut.adc_req):
                    ctx.set(dut.adc_value, codes.get(ctx.get(dut.adc_col), 0))
                    ctx.set(dut.adc_ack, 1)
                else:
                    ctx.set(dut.adc_ack, 0)
                if ctx.get(dut.values.valid):
                    row[ctx.get(dut.values.payload.col)] = ctx.get(dut.values.payload.value)
                await ctx.tick()
            ctx.set(dut.settled, 0)
            got.append(row)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    scale = {c: int(pre[c]) for c in cols} | words
    for codes, row in zip(cases, got):
        for c in cols:
            assert row[c] == ref_scaled(codes.get(c, 0), scale[c], v_bits), (c, codes.get(c, 0), scale[c])
    assert got[0][cols[0]] == 2 ** (v_bits - 1) - 1 and got[1][cols[2]] == -2 ** (v_bits - 1)
    assert [got[2][c] for c in cols[:3]] == [5, -1, 8] and [got[3][c] for c in cols[:3]] == [-4, 2, -8]


def test_bad_scale_words_are_refused():
    image = memristive_image(2, 64, 64)
    with pytest.raises(ValueError, match="one word per column"):
        MemristiveTileController(image, 0, scale=[SCALE_ONE] * 3)
    with pytest.raises(ValueError, match=r"\[0, 65535\]"):
        MemristiveTileController(image, 0, scale=[70000] * image.cols)
    with pytest.raises(ValueError, match="quantise_scale"):
        MemristiveTileController(image, 0, scale=[1.0] * image.cols)
