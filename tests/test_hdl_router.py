"""hdl/router.py under Amaranth's simulator, against the image's routing table read in Python.

For each spike ``(tile, col)`` the router must emit exactly ``image.routes(tile * C + col)`` on
``rows``, in order, and the spike on ``host`` when ``host_out[tile, col]`` is set; with random
back-pressure on both outputs nothing may be lost, duplicated or reordered, and the outputs must
obey the stream rules. With a saturating load it must sustain one row event per cycle.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from compiler.mapper import CompileOptions, compile_network
from hdl.events import Geometry
from hdl.router import Router
from verify.simulate import saturate_router
from test_compile import random_network

pytestmark = pytest.mark.rtl

TABLES = ("route_ptr", "route_tile", "route_row", "route_delay", "host_out")
_IMAGES = {}


def small_image(seed):
    """A random network on 8x8 tiles: many tiles, multicast routes, host-flagged columns."""
    if seed not in _IMAGES:
        _IMAGES[seed] = compile_network(random_network(seed), CompileOptions(rows=8, cols=8, levels=8, seed=seed)).image
    return _IMAGES[seed]


def expected(image, spikes):
    """Row events and host events the router must emit, from image.arrays / image.routes."""
    T, C = image.n_tiles, image.cols
    rows, host = [], []
    for t, c in spikes:
        if t < T and c < C:
            rows += image.routes(t * C + c)
            if image.arrays["host_out"][t, c]:
                host.append((t, c))
    return rows, host


def random_spikes(image, rng, n):
    """Spikes from routed, unrouted, host-flagged, unused and out-of-image columns, with repeats."""
    g = Geometry.of(image)
    C = image.cols
    counts = np.diff(image.arrays["route_ptr"])
    host = image.arrays["host_out"].reshape(-1)
    pools = [np.flatnonzero(counts > 1), np.flatnonzero(counts == 1), np.flatnonzero(counts == 0),
             np.flatnonzero(host)]
    assert all(p.size for p in pools), "the image lacks a kind of source the test needs"
    spikes = []
    while len(spikes) < n:
        kind = rng.integers(0, 6)
        if kind < 4:
            s = int(rng.choice(pools[kind]))
            spike = (s // C, s % C)
        elif kind == 4:  # outside the image: a tile index the spike's field can carry but T lacks
            spike = (int(rng.integers(image.n_tiles, 1 << g.tile_bits)), int(rng.integers(0, C))) \
                if image.n_tiles < (1 << g.tile_bits) else (0, 0)
        else:  # repeat the last spike a few times
            spike = spikes[-1] if spikes else (0, 0)
        spikes += [spike] * int(rng.integers(1, 3))
    return spikes[:n]


def simulate(router, spikes, *, n_rows, n_host, seed=0, p_valid=1.0, p_rows=1.0, p_host=1.0, drain=12):
    """Feed ``spikes``; collect ``rows`` and ``host`` events under random valid/ready.

    Stops each consumer ``drain`` cycles after it has ``n_rows`` / ``n_host`` events (so extra
    events are caught) or after a cycle limit. Asserts the stream rules on both outputs.
    """
    rng = np.random.default_rng(seed)
    got = {"rows": [], "host": []}
    limit = 40 * (len(spikes) + n_rows + n_host) + 200

    async def producer(ctx):
        for t, c in spikes:
            while rng.random() >= p_valid:
                await ctx.tick()
            ctx.set(router.spikes.payload, {"tile": t, "col": c})
            ctx.set(router.spikes.valid, 1)
            await ctx.tick().until(router.spikes.ready)
            ctx.set(router.spikes.valid, 0)

    def consumer(name, port, n, p_ready, fields):
        async def run(ctx):
            pending = None  # payload offered but not taken in the previous cycle
            extra = 0
            for _ in range(limit):
                ready = 1 if len(got[name]) >= n else int(rng.random() < p_ready)
                ctx.set(port.ready, ready)
                _, _, valid, payload = await ctx.tick().sample(port.valid, port.payload)
                value = tuple(getattr(payload, f) for f in fields)
                if pending is not None:
                    assert valid, f"{name}: valid dropped before the event was taken"
                    assert value == pending, f"{name}: payload changed while waiting for ready"
                pending = value if valid and not ready else None
                if valid and ready:
                    got[name].append(value)
                if len(got[name]) >= n:
                    extra += 1
                    if extra > drain:
                        return
        return run

    sim = Simulator(router)
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(consumer("rows", router.rows, n_rows, p_rows, ("tile", "row", "delay")))
    sim.add_testbench(consumer("host", router.host, n_host, p_host, ("tile", "col")))
    sim.run()
    return got["rows"], got["host"]


def check(image, router, spikes, **kw):
    want_rows, want_host = expected(image, spikes)
    rows, host = simulate(router, spikes, n_rows=len(want_rows), n_host=len(want_host), **kw)
    assert rows == want_rows
    assert host == want_host
    return rows, host


@pytest.mark.parametrize("seed", range(3))
def test_row_and_host_events_follow_the_table(seed):
    image = small_image(seed)
    spikes = random_spikes(image, np.random.default_rng(seed), 120)
    rows, host = check(image, Router(image), spikes, seed=seed)
    assert len(rows) > 100 and len(host) > 5  # the check had events of both kinds to compare


@pytest.mark.parametrize("seed,p_valid,p_rows,p_host", [(0, 0.7, 0.5, 0.5), (1, 1.0, 0.3, 0.9),
                                                        (2, 0.8, 0.9, 0.2), (3, 1.0, 0.6, 0.6)])
def test_random_back_pressure_loses_duplicates_and_reorders_nothing(seed, p_valid, p_rows, p_host):
    image = small_image(seed % 3)
    spikes = random_spikes(image, np.random.default_rng(100 + seed), 120)
    check(image, Router(image), spikes, seed=seed, p_valid=p_valid, p_rows=p_rows, p_host=p_host)


@pytest.mark.parametrize("fanout", ["multi", "single"])
def test_one_row_event_per_cycle_under_saturating_load(fanout):
    image = small_image(0)
    C = image.cols
    counts = np.diff(image.arrays["route_ptr"])
    pool = np.flatnonzero(counts > 1 if fanout == "multi" else counts == 1)
    rng = np.random.default_rng(7)
    cycles = 1500
    spikes = [(int(s) // C, int(s) % C) for s in rng.choice(pool, cycles + 1)]  # more than can be taken
    rows, _ = saturate_router(Router(image), spikes, cycles)
    rate = len(rows) / cycles
    print(f"{fanout}-destination spikes: {len(rows)} row events in {cycles} cycles = {rate:.4f} per cycle")
    assert len(rows) == cycles - Router.LATENCY
    assert rate >= 0.95
    want, _ = expected(image, spikes)
    assert rows == want[:len(rows)]


def test_a_source_without_routes_costs_at_most_one_cycle():
    image = small_image(1)
    C = image.cols
    counts = np.diff(image.arrays["route_ptr"])
    rng = np.random.default_rng(3)
    cycles = 600
    spikes = [(int(s) // C, int(s) % C) for s in rng.choice(np.arange(counts.size), cycles + 1)]
    rows, taken = saturate_router(Router(image), spikes, cycles)
    want, _ = expected(image, spikes)
    assert rows == want[:len(rows)]
    zeros = sum(counts[t * C + c] == 0 for t, c in spikes[:taken])
    lost = cycles - Router.LATENCY - len(rows)
    print(f"{taken} spikes ({zeros} without routes): {len(rows)} row events in {cycles} cycles, {lost} idle")
    assert 0 < lost <= zeros


def test_latency_from_spike_to_first_row_and_host_event():
    image = small_image(0)
    C = image.cols
    counts = np.diff(image.arrays["route_ptr"])
    s = int(np.flatnonzero((counts > 0) & image.arrays["host_out"].reshape(-1))[0])
    router = Router(image)
    seen = {}

    async def bench(ctx):
        ctx.set(router.rows.ready, 1)
        ctx.set(router.host.ready, 1)
        for _ in range(3):
            await ctx.tick()
        ctx.set(router.spikes.payload, {"tile": s // C, "col": s % C})
        ctx.set(router.spikes.valid, 1)
        for edge in range(10):
            _, _, accepted, rv, hv = await ctx.tick().sample(router.spikes.ready, router.rows.valid, router.host.valid)
            if accepted and "accept" not in seen:
                seen["accept"] = edge
                ctx.set(router.spikes.valid, 0)
            if rv and "rows" not in seen:
                seen["rows"] = edge
            if hv and "host" not in seen:
                seen["host"] = edge

    sim = Simulator(router)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    print(f"latency: {seen['rows'] - seen['accept']} cycles to the first row event, "
          f"{seen['host'] - seen['accept']} to the host copy")
    assert seen["rows"] - seen["accept"] == Router.LATENCY == 2
    assert seen["host"] - seen["accept"] == Router.LATENCY


def tables_of(image):
    return {name: image.arrays[name].copy() for name in TABLES}


def test_the_check_catches_a_corrupted_table():
    """The comparison is against the image, not the router: one wrong entry or flag fails it."""
    image = small_image(0)
    spikes = random_spikes(image, np.random.default_rng(5), 120)
    want_rows, want_host = expected(image, spikes)
    used = sorted({image.arrays["route_ptr"][t * image.cols + c] for t, c in spikes
                   if t < image.n_tiles and len(image.routes(t * image.cols + c))})

    bad = tables_of(image)
    bad["route_row"][used[0]] = (bad["route_row"][used[0]] + 1) % image.rows
    rows, host = simulate(Router(Geometry.of(image), **bad), spikes, n_rows=len(want_rows), n_host=len(want_host))
    assert rows != want_rows and host == want_host

    bad = tables_of(image)
    t, c = next(sp for sp in spikes if sp[0] < image.n_tiles and image.arrays["host_out"][sp])
    bad["host_out"][t, c] = False
    rows, host = simulate(Router(Geometry.of(image), **bad), spikes, n_rows=len(want_rows), n_host=len(want_host))
    assert rows == want_rows and host != want_host


def test_router_from_geometry_and_tables_matches_router_from_image():
    image = small_image(2)
    spikes = random_spikes(image, np.random.default_rng(9), 60)
    check(image, Router(Geometry.of(image), **tables_of(image)), spikes, seed=9, p_rows=0.7)


def test_a_table_without_entries():
    image = small_image(0)
    g = Geometry.of(image)
    empty = tables_of(image)
    empty["route_ptr"][:] = 0
    for name in ("route_tile", "route_row", "route_delay"):
        empty[name] = empty[name][:0]
    spikes = [(0, 1), (1, 2), (0, 1)]
    host = [sp for sp in spikes if empty["host_out"][sp]]
    rows, got_host = simulate(Router(g, **empty), spikes, n_rows=0, n_host=len(host))
    assert rows == [] and got_host == host


def test_bad_arguments_are_refused_with_a_reason():
    image = small_image(0)
    g = Geometry.of(image)
    with pytest.raises(ValueError, match="takes its tables from the image"):
        Router(image, route_ptr=image.arrays["route_ptr"])
    with pytest.raises(ValueError, match="host_out missing"):
        Router(g, **{k: v for k, v in tables_of(image).items() if k != "host_out"})
    with pytest.raises(ValueError, match="HardwareImage or a Geometry"):
        Router("image")
    bad = tables_of(image)
    bad["route_ptr"] = bad["route_ptr"][:-1]
    with pytest.raises(ValueError, match="route_ptr has shape"):
        Router(g, **bad)
    bad = tables_of(image)
    bad["route_ptr"][5] = bad["route_ptr"][6] + 1
    with pytest.raises(ValueError, match="never decrease"):
        Router(g, **bad)
    bad = tables_of(image)
    bad["route_tile"][0] = image.n_tiles
    with pytest.raises(ValueError, match="route_tile holds"):
        Router(g, **bad)
    bad = tables_of(image)
    bad["route_delay"][0] = image.delay_slots
    with pytest.raises(ValueError, match="route_delay holds"):
        Router(g, **bad)
    bad = tables_of(image)
    bad["route_row"] = bad["route_row"][:-1]
    with pytest.raises(ValueError, match="route_row has shape"):
        Router(g, **bad)
    bad = tables_of(image)
    bad["host_out"] = bad["host_out"].astype(np.int8)
    with pytest.raises(ValueError, match="host_out must be a bool array"):
        Router(g, **bad)


def test_input_map_sends_each_input_to_its_rows_with_its_payload():
    """Router(image, source="inputs"): the input_* tables, payload carried, under back-pressure."""
    image = small_image(1)
    a = image.arrays
    n_in = a["input_ptr"].size - 1
    rng = np.random.default_rng(11)
    events = [(int(rng.integers(0, n_in + 2)), int(rng.integers(-128, 128))) for _ in range(80)]  # some out of range
    want = [(int(a["input_tile"][k]), int(a["input_row"][k]), int(a["input_delay"][k]), p)
            for e, p in events if e < n_in for k in range(a["input_ptr"][e], a["input_ptr"][e + 1])]
    router = Router(image, source="inputs")
    got = []

    async def producer(ctx):
        for e, p in events:
            ctx.set(router.inputs.payload, {"input": e, "payload": p})
            ctx.set(router.inputs.valid, 1)
            await ctx.tick().until(router.inputs.ready)
        ctx.set(router.inputs.valid, 0)

    async def consumer(ctx):
        for _ in range(40 * len(events)):
            ready = int(rng.random() < 0.6)
            ctx.set(router.rows.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(router.rows.valid, router.rows.payload)
            if valid and ready:
                got.append((payload.tile, payload.row, payload.delay, payload.payload))

    sim = Simulator(router)
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    assert len(want) > 50 and got == want
    assert not hasattr(router, "host")
