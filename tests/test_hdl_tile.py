"""DigitalTile RTL against sim/digital.py, spike for spike, under Amaranth's simulator.

The testbench plays the chip's sequencer and router in Python (from the image's tables):
host inputs and routed spikes become row events in the slot of the step they are due,
partial sums travel from ``psum_out`` to the neuron column's tile, and every tile runs
integrate, export and update each step. The spikes the RTL tiles emit must equal the
digital twin's chip spikes at every step; LI values must equal its membranes.
"""

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.sim import Simulator

from compiler.mapper import CompileOptions, compile_network
from hdl.tile import DigitalTile
from sim.digital import DigitalSimulator
from test_compile import random_input, random_network


class Tiles(Elaboratable):
    """All tiles of an image side by side (the testbench wires them)."""

    def __init__(self, image):
        self.tiles = [DigitalTile(image, t) for t in range(image.n_tiles)]

    def elaborate(self, platform):
        m = Module()
        for t, tile in enumerate(self.tiles):
            m.submodules[f"tile{t}"] = tile
        return m


async def wait_idle(ctx, tiles):
    while any(ctx.get(t.busy) for t in tiles):
        await ctx.tick()


async def send_rows(ctx, tile, events):
    """Row events one per cycle (the tile is idle and always ready then)."""
    for row, slot, payload in events:
        ctx.set(tile.rows.valid, 1)
        ctx.set(tile.rows.payload, {"row": row, "slot": slot, "payload": payload})
        await ctx.tick()
        assert ctx.get(tile.rows.ready)
    ctx.set(tile.rows.valid, 0)


async def command(ctx, tiles, name, **values):
    for tile in tiles:
        for k, v in values.items():
            ctx.set(getattr(tile, k), v)
        ctx.set(getattr(tile, name), 1)
    await ctx.tick()
    for tile in tiles:
        ctx.set(getattr(tile, name), 0)


def run_rtl(image, x):
    """Chip spikes [steps, K] (neuron index as in ChipSimulator.addr) for batch element 0."""
    a, C = image.arrays, image.cols
    S = image.delay_slots + 1
    dut = Tiles(image)
    tiles = dut.tiles
    sim_ref = DigitalSimulator(image)
    index = {int(addr): k for k, addr in enumerate(sim_ref.addr)}
    extra = max(o["latency"] for o in image.meta["outputs"])
    steps = x.shape[0] + extra
    spikes = np.zeros((steps, len(index)), dtype=bool)
    values = {}

    async def bench(ctx):
        for tile in tiles:
            ctx.set(tile.spikes.ready, 1)
            ctx.set(tile.values.ready, 1)
        routed = []  # (tile, row, slot, payload) due later
        for t in range(steps):
            # host inputs of step t
            if t < x.shape[0]:
                for e in np.flatnonzero(x[t]):
                    for k in range(a["input_ptr"][e], a["input_ptr"][e + 1]):
                        routed.append((int(a["input_tile"][k]), int(a["input_row"][k]),
                                       (t + int(a["input_delay"][k])) % S, int(x[t, e])))
            for tile_idx, tile in enumerate(tiles):
                await send_rows(ctx, tile, [(r, s, p) for (tt, r, s, p) in routed if tt == tile_idx])
            routed = []
            await command(ctx, tiles, "integrate", slot=t % S)
            await wait_idle(ctx, tiles)
            # export: one tile at a time, partial sums delivered to their neuron's tile
            for tile in tiles:
                await command(ctx, [tile], "export")
                while ctx.get(tile.busy):
                    if ctx.get(tile.psum_out.valid):
                        psum = ctx.get(tile.psum_out.payload)
                        dest = tiles[psum.tile]
                        ctx.set(tile.psum_out.ready, 1)
                        await ctx.tick()
                        ctx.set(tile.psum_out.ready, 0)
                        ctx.set(dest.psum_in.valid, 1)
                        ctx.set(dest.psum_in.payload, {"tile": psum.tile, "col": psum.col, "value": psum.value})
                        await ctx.tick()
                        while not ctx.get(dest.psum_in.ready):
                            await ctx.tick()
                        await ctx.tick()
                        ctx.set(dest.psum_in.valid, 0)
                        await ctx.tick()
                    else:
                        await ctx.tick()
            await command(ctx, tiles, "update", step=min(t, 255))
            while any(ctx.get(tile.busy) for tile in tiles):
                for tile_idx, tile in enumerate(tiles):
                    if ctx.get(tile.spikes.valid):
                        col = ctx.get(tile.spikes.payload.col)
                        addr = tile_idx * C + col
                        spikes[t, index[addr]] = True
                        for dt_, drow, delay in image.routes(addr):
                            routed.append((dt_, drow, (t + 1 + delay) % S, 1))
                    if ctx.get(tile.values.valid):
                        values[(t, tile_idx * C + ctx.get(tile.values.payload.col))] = ctx.get(tile.values.payload.value)
                await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return spikes, values


@pytest.mark.parametrize("seed,rows,cols", [(0, 8, 8), (1, 16, 12), (2, 64, 64)])
def test_rtl_tiles_match_the_digital_twin(seed, rows, cols):
    net = random_network(seed)
    for proj in net.projections:
        proj.weight = proj.weight * 1.37  # off the level grid: real quantisation
    image = compile_network(net, CompileOptions(target="digital", rows=rows, cols=cols, levels=8, seed=seed)).image
    x = random_input(seed, steps=12, batch=1)
    ref = DigitalSimulator(image).run(x, record_spikes=True).spikes["chip"][:, 0]
    rtl, _ = run_rtl(image, x[:, 0])
    assert ref.sum() > 10
    for t in range(ref.shape[0]):
        np.testing.assert_array_equal(rtl[t], ref[t], err_msg=f"chip step {t}")
