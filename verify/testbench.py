"""The cocotb testbench of a generated chip: driver, monitors, reference model, scoreboard.

cocotb imports this module inside the HDL simulator (Icarus or Verilator); :mod:`verify.runner`
launches it and passes a JSON configuration in ``SMALL_VERIFY_CONFIG``:

``image``     the build folder of the compiled image;
``inputs``    an ``.npy`` of inputs ``[T, batch, n_in]`` in host units;
``result``    where the scoreboard writes its JSON summary;
``top``       ``"chip"`` (:class:`hdl.chip.Chip`'s host ports) or ``"uart"``
              (:class:`hdl.board.BridgedChip`: serial frames on ``rx``/``tx``, ``divisor`` cycles a bit);
``backpressure``  a seed: random gaps between commands and random ``outputs.ready`` (or null);
``reset_at``  interrupt the first sample after this chip step with ``OP_RESET`` (or null);
``analog``    for a memristive chip, the analog model attached to its tiles (``"ideal"``).

Components (the structure of cocotb's examples):

- :class:`CommandDriver` / :class:`UartDriver` send host commands (``lib.stream`` rules, or
  framed bytes on ``rx``);
- :class:`OutputMonitor` / :class:`UartMonitor` collect output events into the step the host is
  running; :class:`SpikeProbe` watches every spike where it enters the router, so a mismatch is
  located at the neuron that caused it, not where it reaches the host;
- :class:`~verify.model.ReferenceModel` gives the commands and the expected events
  (``sim/digital.py`` or ``sim/memristive.py``);
- :class:`Scoreboard` compares step by step and records the first mismatch with its sample,
  step, address and both values.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Event, FallingEdge, ReadOnly, RisingEdge, SimTimeoutError, with_timeout
from cocotb.utils import get_sim_time

from small.fileio import write_json
from compiler.image import load_image

from hdl.events import OP_RESET, OP_STEP, OUT_SPIKE, OUT_STEP, OUT_VALUE
from hdl.host_bridge import decode_outputs, encode_commands, frame_bytes
from .model import ReferenceModel, StepEvents, codecs

PERIOD_NS = 10
STEP_TIMEOUT_CYCLES = 2_000_000
"""A step that has not ended after this many cycles is reported as a hang."""


class Mismatch(Exception):
    """The chip differs from the reference (raised by the scoreboard to end the run)."""


# -- host side over the chip's stream ports -------------------------------------------------------
class CommandDriver:
    """Drives ``commands`` (valid/ready/payload); with ``rng``, idles 0-3 cycles before each command."""

    def __init__(self, dut, codec, rng=None):
        self.clk, self.codec, self.rng = dut.clk, codec, rng
        self.valid, self.ready, self.payload = dut.commands__valid, dut.commands__ready, dut.commands__payload
        self.valid.value = 0
        self.sent = 0

    async def send(self, command: dict) -> None:
        if self.rng is not None and (gap := int(self.rng.integers(0, 4))):
            await ClockCycles(self.clk, gap)
        self.payload.value = self.codec.pack(command)
        self.valid.value = 1
        while True:
            await ReadOnly()
            if self.ready.value:
                break
            await RisingEdge(self.ready)
        await RisingEdge(self.clk)  # taken at this edge
        self.valid.value = 0
        self.sent += 1


class OutputMonitor:
    """Collects ``outputs`` into :attr:`current` (the host's step) and signals each ``OUT_STEP``.

    Without back-pressure ``ready`` stays high and the monitor sleeps until ``valid`` rises, so
    idle cycles cost no Python; with ``rng`` it lowers ``ready`` at random (30 % of cycles).
    """

    def __init__(self, dut, codec, C: int, rng=None):
        self.clk, self.codec, self.C, self.rng = dut.clk, codec, C, rng
        self.valid, self.ready, self.payload = dut.outputs__valid, dut.outputs__ready, dut.outputs__payload
        self.ready.value = 1
        self.current = StepEvents()
        self.duplicates: list[tuple[str, int]] = []
        self.step_done = Event()

    def take(self, event: dict) -> None:
        if event["kind"] == OUT_STEP:
            self.step_done.set()
            return
        addr = event["tile"] * self.C + event["col"]
        if event["kind"] == OUT_SPIKE:
            if addr in self.current.spikes:
                self.duplicates.append(("host spike", addr))
            self.current.spikes.add(addr)
        elif event["kind"] == OUT_VALUE:
            if addr in self.current.values:
                self.duplicates.append(("value", addr))
            self.current.values[addr] = event["value"]

    async def run(self) -> None:
        while True:
            if self.rng is not None:
                self.ready.value = int(self.rng.random() < 0.7)
            await ReadOnly()
            if not self.valid.value:
                if self.rng is None:
                    await RisingEdge(self.valid)
                    continue
            elif self.ready.value:
                self.take(self.codec.unpack(int(self.payload.value)))
            await RisingEdge(self.clk)


class SpikeProbe:
    """Every spike the router accepts (``router.spikes``), into :attr:`current`'s ``internal``."""

    def __init__(self, router, clk, codec, C: int):
        self.clk, self.codec, self.C = clk, codec, C
        self.valid, self.ready, self.payload = router.spikes__valid, router.spikes__ready, router.spikes__payload
        self.current = StepEvents()
        self.duplicates: list[tuple[str, int]] = []

    async def run(self) -> None:
        while True:
            await ReadOnly()
            if not self.valid.value:
                await RisingEdge(self.valid)
                continue
            if self.ready.value:
                s = self.codec.unpack(int(self.payload.value))
                addr = s["tile"] * self.C + s["col"]
                if addr in self.current.internal:
                    self.duplicates.append(("spike", addr))
                self.current.internal.add(addr)
            await RisingEdge(self.clk)


# -- host side over the UART bridge ---------------------------------------------------------------
class UartDriver:
    """Sends commands as frames (``docs/host-protocol.md``) on ``rx``, 8N1, ``divisor`` cycles a bit."""

    def __init__(self, dut, geometry, divisor: int, rng=None):
        self.clk, self.rx, self.g, self.divisor, self.rng = dut.clk, dut.rx, geometry, divisor, rng
        self.rx.value = 1
        self.sent = 0

    async def send(self, command: dict) -> None:
        for byte in encode_commands(self.g, [command]):
            if self.rng is not None and (gap := int(self.rng.integers(0, 2 * self.divisor))):
                await ClockCycles(self.clk, gap)  # idle line between characters
            for bit in [0, *((byte >> i) & 1 for i in range(8)), 1]:
                self.rx.value = bit
                await ClockCycles(self.clk, self.divisor)
        self.sent += 1


class UartMonitor(OutputMonitor):
    """Receives output frames on ``tx`` and hands their events to :meth:`OutputMonitor.take`."""

    def __init__(self, dut, geometry, divisor: int, C: int):
        self.clk, self.tx, self.g, self.divisor, self.C = dut.clk, dut.tx, geometry, divisor, C
        self.frame = frame_bytes(geometry)[1]
        self.current = StepEvents()
        self.duplicates = []
        self.step_done = Event()
        self.framing_errors = 0

    async def run(self) -> None:
        data = bytearray()
        while True:
            await FallingEdge(self.tx)  # start bit
            await ClockCycles(self.clk, self.divisor // 2)
            byte = 0
            for i in range(8):
                await ClockCycles(self.clk, self.divisor)
                await ReadOnly()
                byte |= int(self.tx.value) << i
            await ClockCycles(self.clk, self.divisor)
            await ReadOnly()
            if not self.tx.value:
                self.framing_errors += 1
            data.append(byte)
            if len(data) == self.frame:
                for event in decode_outputs(self.g, bytes(data)):
                    self.take(event)
                data.clear()


# -- comparison -----------------------------------------------------------------------------------
class Scoreboard:
    """Compares each step's events with the reference; keeps counts and the first mismatch."""

    def __init__(self, C: int):
        self.C = C
        self.counts = {"spikes": 0, "host_spikes": 0, "values": 0, "steps": 0}
        self.mismatch: dict | None = None

    def fail(self, sample: int, step: int, what: str, addr: int | None, expected, got) -> None:
        where = {} if addr is None else {"tile": addr // self.C, "col": addr % self.C}
        self.mismatch = {"sample": sample, "step": step, "what": what, **where, "expected": expected, "got": got}
        raise Mismatch(self.describe())

    def describe(self) -> str:
        m = self.mismatch
        where = f" at tile {m['tile']} column {m['col']}" if "tile" in m else ""
        return f"sample {m['sample']}, chip step {m['step']}: {m['what']}{where}: expected {m['expected']}, got {m['got']}"

    def compare(self, sample: int, step: int, expected: StepEvents, got: StepEvents, *, internal: bool) -> None:
        if internal:
            for addr in sorted(expected.internal ^ got.internal):
                self.fail(sample, step, "spike", addr, int(addr in expected.internal), int(addr in got.internal))
            self.counts["spikes"] += len(got.internal)
        for addr in sorted(expected.spikes ^ got.spikes):
            self.fail(sample, step, "host spike", addr, int(addr in expected.spikes), int(addr in got.spikes))
        self.counts["host_spikes"] += len(got.spikes)
        for addr in sorted(set(expected.values) | set(got.values)):
            if expected.values.get(addr) != got.values.get(addr):
                self.fail(sample, step, "value", addr, expected.values.get(addr), got.values.get(addr))
        self.counts["values"] += len(got.values)
        self.counts["steps"] += 1


def _router(dut, top: str):
    """The router instance of the chip (for the spike probe), or None if the simulator hides it."""
    try:
        chip = dut.chip if top == "uart" else dut
        router = chip.router
        router.spikes__valid  # noqa: B018 - resolve the handle now
        return router
    except AttributeError:
        return None


@cocotb.test()
async def verify_chip(dut):
    """Run every input sample through the chip and compare each step with the reference."""
    config = json.loads(Path(os.environ["SMALL_VERIFY_CONFIG"]).read_text())
    image = load_image(config["image"])
    model = ReferenceModel(image, config.get("analog", "ideal"))
    g, C = model.geometry, image.cols
    cmd_codec, out_codec, spike_codec = codecs(g)
    xs = np.load(config["inputs"])
    seed = config.get("backpressure")
    rng = None if seed is None else np.random.default_rng(seed)
    top = config.get("top", "chip")

    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    if top == "uart":
        driver = UartDriver(dut, g, config["divisor"], rng)
        monitor = UartMonitor(dut, g, config["divisor"], C)
    else:
        driver = CommandDriver(dut, cmd_codec, rng)
        monitor = OutputMonitor(dut, out_codec, C, rng)
    analog = None
    if image.target == "memristive":
        from .analog import attach

        analog = attach(dut, image, config.get("analog", "ideal"), rng)
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)

    router = _router(dut, top)
    probe = SpikeProbe(router, dut.clk, spike_codec, C) if router is not None else None
    cocotb.start_soon(monitor.run())
    if probe is not None:
        cocotb.start_soon(probe.run())
    if analog is not None:
        analog.start()

    scoreboard = Scoreboard(C)
    samples = [model.commands(xs[:, b]) for b in range(xs.shape[1])]
    t0 = time.perf_counter()
    cycles_at = lambda: int(get_sim_time("ns")) // PERIOD_NS  # noqa: E731
    step_cycles: list[int] = []

    async def run_step(commands) -> StepEvents:
        got = StepEvents()
        monitor.current = got
        if probe is not None:
            probe.current = got
        monitor.step_done.clear()
        for command in commands:
            await driver.send(command)
        await driver.send({"op": OP_STEP})
        start = cycles_at()
        await with_timeout(monitor.step_done.wait(), STEP_TIMEOUT_CYCLES * PERIOD_NS, "ns")
        await RisingEdge(dut.clk)  # the monitor saw OUT_STEP in the read-only phase: taken at this edge
        step_cycles.append(cycles_at() - start)
        return got

    expected = model.expect(xs)
    b = t = 0
    try:
        if config.get("reset_at") is not None:
            await driver.send({"op": OP_RESET})
            for commands in samples[0][:config["reset_at"] + 1]:
                await run_step(commands)
        for b, steps in enumerate(samples):
            await driver.send({"op": OP_RESET})
            for t, commands in enumerate(steps):
                got = await run_step(commands)
                duplicates = monitor.duplicates + (probe.duplicates if probe is not None else [])
                if duplicates:
                    what, addr = duplicates[0]
                    scoreboard.fail(b, t, f"{what} sent twice", addr, 1, 2)
                scoreboard.compare(b, t, expected[b][t], got, internal=probe is not None)
        if top == "uart" and (monitor.framing_errors or dut.overflow.value or dut.framing_error.value):
            scoreboard.mismatch = {"sample": b, "step": t, "what": "UART errors", "expected": "none",
                                   "got": f"{monitor.framing_errors} bad stop bits from tx, bridge overflow "
                                          f"{int(dut.overflow.value)}, framing error {int(dut.framing_error.value)}"}
        if analog is not None:
            try:
                analog.check()
            except AssertionError as exc:
                scoreboard.mismatch = {"sample": b, "step": t, "what": f"analog protocol: {exc}", "expected": None,
                                       "got": None}
    except Mismatch:
        pass
    except SimTimeoutError:
        scoreboard.mismatch = {"sample": b, "step": t, "what": f"no OUT_STEP within {STEP_TIMEOUT_CYCLES} cycles",
                               "expected": "OUT_STEP", "got": None}
    result = {
        "passed": scoreboard.mismatch is None,
        "reference": type(model.sim).__module__.replace(".", "/") + ".py",
        "samples": int(xs.shape[1]), "network_steps": int(xs.shape[0]), "chip_steps": scoreboard.counts["steps"],
        "compared": scoreboard.counts, "internal_spikes_probed": probe is not None,
        "commands": driver.sent, "cycles": cycles_at(),
        "mean_cycles_per_step": float(np.mean(step_cycles)) if step_cycles else 0.0,
        "seconds": time.perf_counter() - t0,
        "first_mismatch": scoreboard.mismatch,
        **({"analog": analog.summary()} if analog is not None else {}),
        "mismatch": scoreboard.describe() if scoreboard.mismatch else None,
    }
    write_json(config["result"], result, sort_keys=False)
    if not result["passed"]:
        raise AssertionError(result["mismatch"])  # cocotb records the test as failed
