"""The programmable chip: one chip of a fixed capacity, networks written into it at run time over
its configuration port, against sim/digital.py spike for spike.

Several networks are loaded one after another into the same simulated chip (A, B, A again), so
anything that leaks from one network into the next (weights, tables, neuron state, pending row
events) fails the comparison.
"""

import dataclasses

import pytest

from compiler.capacity import MEM_COLUMNS, MEM_ROUTE_ENTRIES, MEM_STATE, MEM_WEIGHTS, Capacity, CapacityError, \
    column_fields, config_words, state_fields
from compiler.events import pack, unpack
from compiler.mapper import CompileOptions, compile_network
from hdl.chip import Chip
from test_compile import random_input, random_network
from test_hdl_chip import compiled, signed_input
from verify.simulate import compare_with_twin, run_sessions

pytestmark = pytest.mark.rtl

CAPACITY = Capacity(tiles=9, rows=16, cols=16, levels=8, delay_slots=4, n_inputs=16, route_entries=512,
                    input_entries=256, lanes=4)
SERIAL = dataclasses.replace(CAPACITY, neuron="serial")  # one multiplier a tile, column words in beats


@pytest.mark.parametrize("capacity", [CAPACITY, SERIAL], ids=["pipelined", "serial"])
def test_networks_loaded_one_after_another_each_match_the_digital_twin(capacity):
    """A, B, A again in one chip: every neuron model, fan-in splits, multicast, recurrence, delays;
    every word read back equals the word written."""
    a, b = compiled(0, 16, 16), compiled(3, 16, 12)  # B's tiles have fewer columns than the chip's
    assert (a.arrays["col_kind"] == 2).any() or (b.arrays["col_kind"] == 2).any()
    xa, xb = random_input(0, steps=8, batch=1), signed_input(3, steps=8, batch=1)
    runs = run_sessions(Chip(capacity), [(a, xa), (b, xb), (a, xa)], readback=True)
    spikes = [compare_with_twin(image, x, r) for (image, x), r in zip([(a, xa), (b, xb), (a, xa)], runs)]
    assert min(spikes) > 10
    assert spikes[0] == spikes[2]


@pytest.mark.parametrize("seed,capacity", [(5, CAPACITY), (6, CAPACITY), (7, SERIAL)])
def test_random_networks_load_into_a_rom_chip_of_another_network(seed, capacity):
    """A ROM chip (contents as initial values) is the same generator: it takes a new network too."""
    first, other = compiled(seed, 16, 16), compiled(seed + 10, 16, 16)
    x = random_input(seed, steps=8, batch=2)
    chip = Chip(capacity, image=first)
    runs = run_sessions(chip, [(first, x), (other, x)])
    assert compare_with_twin(first, x, runs[0]) > 10
    assert compare_with_twin(other, x, runs[1]) > 10


def test_a_rom_chip_without_partial_sums_runs_a_network_with_them():
    """A ROM chip's partial-sum paths do not depend on the image it was built from: a network
    that splits fan-in on other tiles loads into it and keeps every partial sum."""
    import copy

    from compiler.image import COL_PARTIAL, COL_UNUSED

    split = compiled(0, 16, 16)
    assert (split.arrays["col_kind"] == COL_PARTIAL).any()
    plain = copy.deepcopy(split)
    plain.arrays["col_kind"][plain.arrays["col_kind"] == COL_PARTIAL] = COL_UNUSED
    x = random_input(0, steps=8, batch=1)
    [run] = run_sessions(Chip(plain), [(split, x)])
    assert compare_with_twin(split, x, run) > 10


def test_accesses_outside_the_memory_map_are_refused():
    from amaranth.sim import Simulator

    chip = Chip(CAPACITY)
    answers = []

    async def bench(ctx):
        ctx.set(chip.readback.ready, 1)
        for request in [{"mem": 7}, {"mem": MEM_WEIGHTS, "tile": 9}, {"mem": MEM_COLUMNS, "addr": 16},
                        {"mem": MEM_ROUTE_ENTRIES, "tile": 1}, {"mem": MEM_STATE, "addr": 3},
                        {"write": 1, "mem": MEM_COLUMNS, "tile": 2, "addr": 5, "data": 12345},
                        {"mem": MEM_COLUMNS, "tile": 2, "addr": 5}]:
            ctx.set(chip.config.payload, {"write": 0, "tile": 0, "addr": 0, "data": 0} | request)
            ctx.set(chip.config.valid, 1)
            await ctx.tick().until(chip.config.ready)
            ctx.set(chip.config.valid, 0)
            (answer,) = await ctx.tick().sample(chip.readback.payload).until(chip.readback.valid)
            answers.append((answer.error, answer.data))

    sim = Simulator(chip)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert [e for e, _ in answers] == [1, 1, 1, 1, 0, 0, 0]
    assert answers[-1][1] == 12345


def test_a_serial_chip_takes_wide_words_in_beats():
    """A serial chip's configuration port is PARAM_BEAT_BITS wide: a column word and a neuron's
    state are several words; writing one beat of a state word keeps its other beats."""
    from amaranth.sim import Simulator

    from compiler.capacity import PARAM_BEAT_BITS, data_bits, memory_beats, memory_depth

    chip = Chip(SERIAL)
    NB, SB = memory_beats(SERIAL, MEM_COLUMNS), memory_beats(SERIAL, MEM_STATE)
    assert data_bits(SERIAL) == PARAM_BEAT_BITS and NB > 1 and SB > 1
    assert memory_depth(SERIAL, MEM_COLUMNS) == SERIAL.cols * NB
    col, beat = 5, 1
    writes = [(MEM_STATE, col * SB + k, 0x1111_1111 * (k + 1)) for k in range(SB - 1)]  # the top beat is padding
    writes += [(MEM_STATE, col * SB + beat, 0xDEAD_BEEF), (MEM_COLUMNS, col * NB + 2, 0x1234_5678)]
    reads = [(MEM_STATE, col * SB + k) for k in range(SB)]
    reads += [(MEM_COLUMNS, col * NB + 2), (MEM_STATE, SERIAL.cols * SB)]
    answers = []

    async def bench(ctx):
        ctx.set(chip.readback.ready, 1)
        requests = [{"write": 1, "mem": m, "addr": a, "data": d} for m, a, d in writes]
        requests += [{"write": 0, "mem": m, "addr": a, "data": 0} for m, a in reads]
        for request in requests:
            ctx.set(chip.config.payload, {"tile": 1} | request)
            ctx.set(chip.config.valid, 1)
            await ctx.tick().until(chip.config.ready)
            ctx.set(chip.config.valid, 0)
            (answer,) = await ctx.tick().sample(chip.readback.payload).until(chip.readback.valid)
            answers.append((answer.error, answer.data))

    sim = Simulator(chip)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    got = answers[len(writes):]
    state = sum(w for _, w, _ in state_fields(SERIAL.geometry))
    written = sum(d << (PARAM_BEAT_BITS * k) for k, d in enumerate([0x1111_1111, 0xDEAD_BEEF, 0x3333_3333]))
    kept = written & ((1 << state) - 1)  # the word holds its state's bits, the rest reads as 0
    assert 2 * PARAM_BEAT_BITS < state <= 3 * PARAM_BEAT_BITS and SB == 4
    assert [e for e, _ in got[:SB]] == [0] * SB
    assert sum(d << (PARAM_BEAT_BITS * k) for k, (_, d) in enumerate(got[:SB])) == kept
    assert got[SB] == (0, 0x1234_5678)
    assert got[SB + 1][0] == 1  # beyond the last state word


def test_what_does_not_fit_is_named_with_the_fix():
    big = compile_network(random_network(1), CompileOptions(target="digital", rows=8, cols=8, levels=8)).image
    small = Capacity(tiles=2, rows=8, cols=8, levels=4, delay_slots=1, n_inputs=4, route_entries=8,
                     input_entries=8)
    problems = small.problems(big)
    text = "\n".join(problems)
    for what in ("tiles", "weight levels", "delay slots", "input elements", "routing-table entries",
                 "input-map entries"):
        assert f"{what} but the chip has" in text
    with pytest.raises(CapacityError, match=r"^the network needs \d+ tiles but the chip has 2: use a chip with more"):
        config_words(big, small)


def test_capacity_round_trips_and_its_id_names_the_capacity():
    d = CAPACITY.to_dict()
    assert Capacity.from_dict(d) == CAPACITY
    assert Capacity.from_dict(d | {"name": "renamed"}).chip_id == CAPACITY.chip_id
    assert Capacity.from_dict(d | {"rows": 32}).chip_id != CAPACITY.chip_id
    with pytest.raises(CapacityError, match="unknown field 'colums'"):
        Capacity.from_dict(d | {"colums": 3})
    with pytest.raises(CapacityError, match="tiles must be an integer >= 1"):
        Capacity.from_dict(d | {"tiles": 0})
    fields = column_fields(CAPACITY.geometry)
    values = {"kind": 1, "model": 5, "threshold": -1234, "alpha": 65536, "merge_col": 15}
    assert {k: v for k, v in unpack(fields, pack(fields, values)).items() if k in values} == values
