"""DigitalTile alone under Amaranth's simulator: one tile of a feed-forward network, driven
through its command interface by a Python sequencer, against sim/digital.py.

The chip tests (test_hdl_chip.py) cover tiles with routing, partial sums and recurrence; this
one pins the tile's own protocol: row events into slots, integrate, update, clear, back-pressure
on ``spikes``.
"""

from dataclasses import replace

import numpy as np
import pytest
from amaranth.sim import Simulator

from compiler.capacity import Capacity, CapacityError
from compiler.ir import IF, LIF, Input, Network, Population, Projection
from compiler.mapper import CompileOptions, compile_network
from hdl.tile import DigitalTile
from sim.digital import DigitalSimulator

pytestmark = pytest.mark.rtl


def one_tile_image(seed):
    rng = np.random.default_rng(seed)
    pops = [Population("a", 6, LIF(alpha=0.8, v_threshold=1.5, refractory=1, reset="zero")),
            Population("b", 5, IF(v_threshold=2.0, reset="subtract"))]
    projs = [Projection("x", "a", rng.uniform(-0.5, 1.0, (6, 10))), Projection("x", "b", rng.uniform(-0.5, 1.0, (5, 10)))]
    net = Network("one", 1e-3, [Input("x", (10,))], pops, projs, {"a": "a", "b": "b"}).validate()
    image = compile_network(net, CompileOptions(target="digital", rows=16, cols=16, levels=8, seed=seed)).image
    assert image.n_tiles == 1
    return image


def run_tile(image, x, lanes, stall):
    """Spikes [T, K] of the tile for one sample x [T, n_in] (integer payloads)."""
    a = image.arrays
    tile = DigitalTile(Capacity.of(image, lanes=lanes), 0, image=image)
    index = {int(addr): k for k, addr in enumerate(DigitalSimulator(image).addr)}
    S = image.delay_slots + 1
    spikes = np.zeros((x.shape[0], len(index)), dtype=bool)
    rng = np.random.default_rng(0)

    async def strobe(ctx, name, **values):
        for k, v in values.items():
            ctx.set(getattr(tile, k), v)
        ctx.set(getattr(tile, name), 1)
        await ctx.tick()
        ctx.set(getattr(tile, name), 0)

    async def bench(ctx):
        await strobe(ctx, "clear")
        await ctx.tick().until(~tile.busy)
        for t in range(x.shape[0]):
            for e in np.flatnonzero(x[t]):
                for k in range(a["input_ptr"][e], a["input_ptr"][e + 1]):
                    ctx.set(tile.rows.payload, {"row": int(a["input_row"][k]),
                                                "slot": (t + int(a["input_delay"][k])) % S, "payload": int(x[t, e])})
                    ctx.set(tile.rows.valid, 1)
                    await ctx.tick().until(tile.rows.ready)
                    ctx.set(tile.rows.valid, 0)
            await strobe(ctx, "integrate", slot=t % S)
            await ctx.tick().until(~tile.busy)
            await strobe(ctx, "update", step=min(t, 255))
            while True:
                ready = int(rng.random() >= stall)
                ctx.set(tile.spikes.ready, ready)
                ctx.set(tile.values.ready, 1)
                _, _, busy, valid, col = await ctx.tick().sample(tile.busy, tile.spikes.valid, tile.spikes.payload.col)
                if valid and ready:
                    spikes[t, index[col]] = True
                if not busy:
                    break

    sim = Simulator(tile)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return spikes


@pytest.mark.parametrize("seed,lanes,stall", [(0, 1, 0.0), (1, 4, 0.5), (2, 16, 0.3)])
def test_one_tile_matches_the_digital_twin(seed, lanes, stall):
    image = one_tile_image(seed)
    rng = np.random.default_rng(seed)
    x = np.where(rng.random((15, 1, 10)) < 0.5, rng.integers(-3, 5, (15, 1, 10)), 0)
    ref = DigitalSimulator(image).run(x, record_spikes=True).spikes["chip"][:, 0]
    got = run_tile(image, x[:, 0], lanes, stall)
    assert ref.sum() > 10
    for t in range(ref.shape[0]):
        np.testing.assert_array_equal(got[t], ref[t], err_msg=f"step {t}")


def test_tile_arguments_are_checked():
    image = one_tile_image(0)
    with pytest.raises(CapacityError, match="lanes must be a power of two"):
        Capacity.of(image, lanes=3)
    with pytest.raises(ValueError, match="tile must be in"):
        DigitalTile(Capacity.of(image), 1)
    with pytest.raises(ValueError, match="needs a Capacity"):
        DigitalTile(image, 0)
    with pytest.raises(CapacityError, match="weight levels"):
        DigitalTile(replace(Capacity.of(image), levels=4), 0, image=image)
