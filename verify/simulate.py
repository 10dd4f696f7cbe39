"""Run a generated :class:`~hdl.chip.Chip` in Amaranth's simulator, as a host would drive it.

:func:`run_chip` sends each step's input events (from :class:`~verify.model.ReferenceModel`)
and ``OP_STEP`` over the ``commands`` port,
collects the ``outputs`` events of every step, and (for the tests) also watches every spike that
enters the router, so the whole chip can be compared with ``sim/digital.py``, not only what
reaches the host. It is the driver of the tests and of ``bench/hdl.py`` (with
:func:`saturate_router`, the router under full load); the protocol it speaks
is the one in ``hdl/chip.py`` and ``docs/host-protocol.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from amaranth.sim import Simulator

from compiler.capacity import config_writes
from compiler.image import HardwareImage

from hdl.chip import Chip
from hdl.events import OP_RESET, OP_STEP, OUT_SPIKE, OUT_STEP, OUT_VALUE
from .model import ReferenceModel


@dataclass
class ChipRun:
    """What the chip did over a run (one sample), in chip steps."""

    spikes: np.ndarray
    """``[steps, K]`` bool: every neuron column's spikes (K as in ``ChipSimulator.addr``)."""
    host_spikes: list[set[int]] = field(default_factory=list)
    """Per step, the column addresses ``tile * C + col`` of the ``OUT_SPIKE`` events."""
    host_values: list[dict[int, int]] = field(default_factory=list)
    """Per step, ``OUT_VALUE`` events: column address -> value (state units)."""
    step_cycles: list[int] = field(default_factory=list)
    """Clock cycles from ``OP_STEP`` accepted to ``OUT_STEP`` taken, per step."""


def configuration(image: HardwareImage, chip: Chip) -> list[dict]:
    """The ``config`` accesses that write ``image`` into ``chip`` (``compiler.capacity.config_words``)."""
    return [{"write": 1, "mem": mem, "tile": tile, "addr": addr, "data": word}
            for mem, tile, addr, word in config_writes(image, chip.capacity)]


def run_chip(image: HardwareImage, xs: np.ndarray, *, chip: Chip | None = None, reset_at: int | None = None,
             vcd: str | None = None, load: bool | None = None) -> list[ChipRun]:
    """Run samples ``xs`` (``[T, batch, n_in]``, scaled as by ``ChipSimulator.prepare_inputs``).

    The samples run one after another in one simulation, each after ``OP_RESET``, as a host
    runs a test set. With ``reset_at = k``, the first sample is also interrupted after its step
    ``k`` by a reset (its partial run is discarded): what follows must not depend on it. A
    programmable chip without ``image`` as its contents is first loaded over its ``config`` port
    (``load=False``: never; the tests run a corrupted ROM chip as it is).
    """
    return run_sessions(chip or Chip(image), [(image, xs)], reset_at=reset_at, vcd=vcd, load=load)[0]


def run_sessions(chip: Chip, sessions: list[tuple[HardwareImage, np.ndarray]], *, reset_at: int | None = None,
                 vcd: str | None = None, readback: bool = False, load: bool | None = None) -> list[list[ChipRun]]:
    """Load and run several networks on one chip, in one simulation: for each ``(image, xs)``,
    write ``image`` over the ``config`` port (unless it is the chip's initial contents and the
    first session), optionally read every written word back (``readback``: an
    ``AssertionError`` names the first that differs), then run the samples as
    :func:`run_chip` does. Returns each session's runs."""
    results = []
    plan = []
    for k, (image, xs) in enumerate(sessions):
        model = ReferenceModel(image)
        xs = np.asarray(xs)
        samples = [model.commands(xs[:, b]) for b in range(xs.shape[1])]
        runs = [ChipRun(spikes=np.zeros((len(steps), len(model.sim.addr)), dtype=bool)) for steps in samples]
        writes = [] if load is False or (load is None and k == 0 and chip.image is image) else \
            configuration(image, chip)
        plan.append((image, {int(a): i for i, a in enumerate(model.sim.addr)}, samples, runs, writes))
        results.append(runs)
    now = {"run": None, "step": 0, "cycle": 0, "index": None, "cols": 1}  # what the probe attributes spikes to

    async def send(ctx, command):
        ctx.set(chip.commands.payload, {"op": 0, "input": 0, "payload": 0} | command)
        ctx.set(chip.commands.valid, 1)
        await ctx.tick().until(chip.commands.ready)
        ctx.set(chip.commands.valid, 0)

    async def access(ctx, request) -> dict:
        ctx.set(chip.config.payload, request)
        ctx.set(chip.config.valid, 1)
        await ctx.tick().until(chip.config.ready)
        ctx.set(chip.config.valid, 0)
        (answer,) = await ctx.tick().sample(chip.readback.payload).until(chip.readback.valid)
        return {"data": answer.data, "error": answer.error}

    async def run_step(ctx, commands, run, C):
        for command in commands:
            await send(ctx, command)
        await send(ctx, {"op": OP_STEP})
        start, host_spikes, host_values = now["cycle"], set(), {}
        while True:
            _, _, valid, payload = await ctx.tick().sample(chip.outputs.valid, chip.outputs.payload)
            if not valid:
                continue
            if payload.kind == OUT_STEP:
                break
            addr = payload.tile * C + payload.col
            if payload.kind == OUT_SPIKE:
                host_spikes.add(addr)
            elif payload.kind == OUT_VALUE:
                host_values[addr] = payload.value
        if run is not None:
            run.host_spikes.append(host_spikes)
            run.host_values.append(host_values)
            run.step_cycles.append(now["cycle"] - start)

    async def host(ctx):
        ctx.set(chip.outputs.ready, 1)
        if not chip.analog:
            ctx.set(chip.readback.ready, 1)
        for image, index, samples, runs, load in plan:
            C = image.cols
            now["index"], now["cols"] = index, C
            for request in load:
                answer = await access(ctx, request)
                assert not answer["error"], f"the chip refused the configuration write {request}"
            if readback:
                for request in load:
                    answer = await access(ctx, request | {"write": 0, "data": 0})
                    assert answer == {"data": request["data"], "error": 0}, \
                        f"read back {answer} for the write {request}"
            if reset_at is not None:
                await send(ctx, {"op": OP_RESET})
                for commands in samples[0][:reset_at + 1]:
                    await run_step(ctx, commands, None, C)
            for steps, run in zip(samples, runs):
                await send(ctx, {"op": OP_RESET})
                now["run"] = run
                for t, commands in enumerate(steps):
                    now["step"] = t
                    await run_step(ctx, commands, run, C)
                now["run"] = None

    async def probe(ctx):
        """Every spike the router accepts, in the step the host is running; counts cycles."""
        port = chip.router.spikes
        async for _, _, valid, ready, payload in ctx.tick().sample(port.valid, port.ready, port.payload):
            now["cycle"] += 1
            if valid and ready and now["run"] is not None:
                now["run"].spikes[now["step"], now["index"][payload.tile * now["cols"] + payload.col]] = True

    sim = Simulator(chip)
    sim.add_clock(1e-6)
    sim.add_testbench(host)
    sim.add_process(probe)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return results


def compare_with_twin(image: HardwareImage, x: np.ndarray, runs: list[ChipRun]) -> int:
    """Assert that ``runs`` (of :func:`run_chip` on ``x`` ``[T, batch, n_in]``) equal the digital
    twin: every neuron's spikes, host spikes and LI values at every step. Returns the spike count."""
    from sim.digital import DigitalSimulator

    ref = DigitalSimulator(image)
    result = ref.run(x, record_spikes=True)
    chip = result.spikes["chip"]
    host = image.arrays["host_out"].reshape(-1)[ref.addr]
    frac = image.arithmetic.frac_bits
    for b, run in enumerate(runs):
        for t in range(chip.shape[0]):
            np.testing.assert_array_equal(run.spikes[t], chip[t, b], err_msg=f"sample {b}, chip step {t}: spikes")
            if run.host_spikes[t] != set(ref.addr[chip[t, b] & host].tolist()):
                raise AssertionError(f"sample {b}, step {t}: host spikes differ")
        for o in image.meta["outputs"]:
            if o["kind"] != "value":
                continue
            pop, lat = o["population"], int(o["latency"])
            addrs = image.addresses(pop)
            scale = image.arrays[f"output/{o['name']}/value_scale"]
            for tt in range(result.outputs[o["name"]].shape[0]):
                got = np.array([run.host_values[tt + lat][int(a)] for a in addrs], dtype=np.float64)
                np.testing.assert_array_equal((got / float(1 << frac) * scale).astype(np.float32),
                                              result.outputs[o["name"]][tt, b], err_msg=f"{o['name']} step {tt}")
    return int(chip.sum())


def saturate_router(router, spikes: list[tuple[int, int]], cycles: int) -> tuple[list[tuple[int, int, int]], int]:
    """Drive a :class:`~hdl.router.Router` at full load for ``cycles`` clock edges: a spike
    always valid (the next of ``spikes``, which must hold more than can be taken), both outputs
    always ready. Returns the row events ``(tile, row, delay)`` taken and the number of spikes taken."""
    rows, taken_spikes = [], [0]

    async def bench(ctx):
        ctx.set(router.rows.ready, 1)
        ctx.set(router.host.ready, 1)
        ctx.set(router.spikes.valid, 1)
        i = 0
        ctx.set(router.spikes.payload, {"tile": spikes[0][0], "col": spikes[0][1]})
        for _ in range(cycles):
            _, _, taken, valid, payload = await ctx.tick().sample(router.spikes.ready, router.rows.valid,
                                                                 router.rows.payload)
            if valid:
                rows.append((payload.tile, payload.row, payload.delay))
            if taken:
                i += 1
                taken_spikes[0] = i
                ctx.set(router.spikes.payload, {"tile": spikes[i][0], "col": spikes[i][1]})

    sim = Simulator(router)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return rows, taken_spikes[0]
