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
``analog``    for a memristive chip, the analog model attached to its tiles (``"ideal"``);
``capacity``  the chip's capacity (``chip.json``'s), and ``load``: write the image into the chip over
              its host port (``config`` stream, or ``T_WRITE`` frames through the UART) before running,
              after checking the chip's ID (a programmable chip; a ROM chip holds the image already).

``harness``   for ``top = "chip"`` (the default of :func:`verify.runner.verify`): the chip runs
              inside :mod:`verify.harness`; this dict says what that harness holds (depths of its
              memories, whether it probes the router), ``sample_offset`` the number of the first
              sample in the whole run (a shard's), ``clock`` where the harness's clock comes from.

With the harness (:func:`run_with_harness`), the testbench writes whole batches of command words
(as many steps as the harness's memories hold), waits for the harness's ``ack`` and reads back the
batch's output events and the spikes the router took, each tagged with its step: Python wakes once
per batch, not once per clock cycle, and compares exactly as the per-cycle components below do
(those drive the UART bridge, and the chip's ports with ``harness=False``).

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
from cocotb.triggers import (ClockCycles, Edge, Event, FallingEdge, ReadOnly, RisingEdge, SimTimeoutError, Timer,
                             with_timeout)
from cocotb.utils import get_sim_time

from small.fileio import write_json
from compiler.image import load_image

from compiler.capacity import Capacity, config_fields, config_writes, readback_fields
from compiler.events import pack, unpack
from compiler.protocol import ERRORS, T_DATA, T_ERROR, T_ID, T_OUTPUT, Codec, FrameReader
from hdl.events import OP_RESET, OP_STEP, OUT_SPIKE, OUT_STEP, OUT_VALUE
from .model import Codec as LayoutCodec, ReferenceModel, StepEvents, codecs

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


# -- configuration over the chip's config port --------------------------------------------------
class ConfigDriver:
    """Drives ``config`` and takes ``readback`` (one access at a time)."""

    def __init__(self, dut, capacity: Capacity):
        self.clk, self.dut, self.capacity = dut.clk, dut, capacity
        dut.config__valid.value = 0
        dut.readback__ready.value = 1

    async def access(self, **values) -> tuple[int, int]:
        dut = self.dut
        dut.config__payload.value = pack(config_fields(self.capacity), values)
        dut.config__valid.value = 1
        while True:
            await ReadOnly()
            if dut.config__ready.value:
                break
            await RisingEdge(self.clk)
        await RisingEdge(self.clk)
        dut.config__valid.value = 0
        while True:
            await ReadOnly()
            if dut.readback__valid.value:
                answer = unpack(readback_fields(self.capacity), int(dut.readback__payload.value))
                await RisingEdge(self.clk)
                return answer["data"], answer["error"]
            await RisingEdge(self.clk)


async def load_over_port(port: ConfigDriver, image, capacity: Capacity) -> str | None:
    """Write ``image`` through the ``config`` port: None, or the first access the chip refused."""
    for mem, tile, addr, word in config_writes(image, capacity):
        _, error = await port.access(write=1, mem=mem, tile=tile, addr=addr, data=word)
        if error:
            return f"the chip refused writing word {addr} of memory {mem} (tile {tile})"
    return None


# -- host side over the UART bridge ---------------------------------------------------------------
class UartDriver:
    """Sends frames (host protocol v2, ``docs/host-protocol.md``) on ``rx``, 8N1, ``divisor`` cycles a bit."""

    def __init__(self, dut, codec: Codec, divisor: int, rng=None):
        self.clk, self.rx, self.codec, self.divisor, self.rng = dut.clk, dut.rx, codec, divisor, rng
        self.rx.value = 1
        self.sent = 0

    async def send_bytes(self, data: bytes) -> None:
        for byte in data:
            if self.rng is not None and (gap := int(self.rng.integers(0, 2 * self.divisor))):
                await ClockCycles(self.clk, gap)  # idle line between characters
            for bit in [0, *((byte >> i) & 1 for i in range(8)), 1]:
                self.rx.value = bit
                await ClockCycles(self.clk, self.divisor)

    async def send(self, command: dict) -> None:
        await self.send_bytes(self.codec.command(command))
        self.sent += 1


class UartMonitor(OutputMonitor):
    """Receives frames on ``tx``: output events go to :meth:`OutputMonitor.take`, answers to
    :attr:`answers` (``(type, payload)``, signalled by :attr:`answered`)."""

    def __init__(self, dut, codec: Codec, divisor: int, C: int):
        self.clk, self.tx, self.codec, self.divisor, self.C = dut.clk, dut.tx, codec, divisor, C
        self.reader = FrameReader()
        self.current = StepEvents()
        self.duplicates = []
        self.step_done = Event()
        self.answered = Event()
        self.answers: list[tuple[int, bytes]] = []
        self.framing_errors = 0

    async def run(self) -> None:
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
            for kind, payload in self.reader.feed(bytes([byte])):
                if kind == T_OUTPUT:
                    self.take(self.codec.output(payload))
                else:
                    self.answers.append((kind, payload))
                    self.answered.set()


async def load_over_uart(driver: UartDriver, monitor: UartMonitor, image, capacity: Capacity) -> str | None:
    """Check the chip's ID, write ``image`` with ``T_WRITE`` frames, end with ``T_IDENT``: None, or what went wrong."""
    codec = driver.codec

    async def ident() -> bytes | None:
        monitor.answered.clear()
        await driver.send_bytes(codec.ident())
        while True:
            await with_timeout(monitor.answered.wait(), 200 * 10 * driver.divisor * PERIOD_NS, "ns")
            await RisingEdge(driver.clk)  # the monitor signals in the read-only phase: rx is written after it
            monitor.answered.clear()
            kinds = [k for k, _ in monitor.answers]
            if T_ID in kinds:
                return monitor.answers.pop(kinds.index(T_ID))[1]

    chip = await ident()
    if int.from_bytes(chip[:4], "little") != capacity.chip_id:
        return f"the chip answered ID 0x{int.from_bytes(chip[:4], 'little'):08x}, not 0x{capacity.chip_id:08x}"
    for mem, tile, addr, word in config_writes(image, capacity):
        await driver.send_bytes(codec.write(mem, tile, addr, word))
    await ident()
    errors = [ERRORS.get(p[0], p[0]) for k, p in monitor.answers if k == T_ERROR]
    monitor.answers = [a for a in monitor.answers if a[0] not in (T_ERROR, T_DATA)]
    return f"the chip refused the load: {errors[0]}" if errors else None


# -- comparison -----------------------------------------------------------------------------------
class Scoreboard:
    """Compares each step's events with the reference; keeps counts and the first mismatch."""

    def __init__(self, C: int, offset: int = 0):
        self.C, self.offset = C, offset  # offset: the first sample's number in the whole run (a shard's)
        self.counts = {"spikes": 0, "host_spikes": 0, "values": 0, "steps": 0}
        self.mismatch: dict | None = None

    def fail(self, sample: int, step: int, what: str, addr: int | None, expected, got) -> None:
        where = {} if addr is None else {"tile": addr // self.C, "col": addr % self.C}
        self.mismatch = {"sample": sample + self.offset, "step": step, "what": what, **where, "expected": expected,
                         "got": got}
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


# -- the harness: whole batches of steps, one wake-up of Python per batch ------------------------
class HarnessPort:
    """The memories and registers of :mod:`verify.harness` around the chip: :meth:`run` writes a
    batch of configuration and command words, lets the harness play them, and reads back what the
    chip sent (``outputs`` events, and the spikes the router took, each tagged with its step)."""

    def __init__(self, dut, info: dict, cmd_codec: LayoutCodec, out_codec: LayoutCodec, capacity: Capacity | None,
                 backpressure: int | None):
        self.dut, self.info = dut, info
        self.cmd_mem, self.cfg_mem, self.out_mem, self.spk_mem = dut.cmd_mem, dut.cfg_mem, dut.out_mem, dut.spk_mem
        self.handles: dict[str, list] = {"cmd_mem": [], "cfg_mem": [], "out_mem": [], "spk_mem": []}
        dut.step_mask.value, dut.step_word.value = _field(cmd_codec, "op", OP_STEP)
        dut.done_mask.value, dut.done_word.value = _field(out_codec, "kind", OUT_STEP)
        if capacity is not None and info["config"]:
            dut.error_mask.value = pack(readback_fields(capacity), {"error": 1})
        dut.timeout.value = STEP_TIMEOUT_CYCLES
        if backpressure is not None:
            dut.bp_seed.value = int(np.random.default_rng(backpressure).integers(1, 1 << 31))
            dut.bp_on.value = 1
        self.req = 0
        self.steps = 0
        self.batches = 0
        self.seconds = {"write": 0.0, "simulate": 0.0, "read": 0.0}

    def _handle(self, mem: str, i: int):
        handles = self.handles[mem]
        while len(handles) <= i:
            handles.append(getattr(self, mem)[len(handles)])
        return handles[i]

    async def run(self, cfg: list[int], cmd: list[int]) -> dict:
        dut = self.dut
        t0 = time.perf_counter()
        for i, word in enumerate(cfg):
            self._handle("cfg_mem", i).value = word
        for i, word in enumerate(cmd):
            self._handle("cmd_mem", i).value = word
        dut.n_cfg.value, dut.n_cmd.value = len(cfg), len(cmd)
        self.req ^= 1
        dut.req.value = self.req
        t1 = time.perf_counter()
        await Edge(dut.ack)
        t2 = time.perf_counter()
        n_out, n_spk = int(dut.n_out.value), int(dut.n_spk.value)
        self.steps += int(dut.n_steps.value)
        outs = [int(self._handle("out_mem", i).value) for i in range(min(n_out, self.info["out_size"]))]
        spk = [int(self._handle("spk_mem", i).value) for i in range(min(n_spk, self.info["spk_size"]))]
        self.seconds["write"] += t1 - t0
        self.seconds["simulate"] += t2 - t1
        self.seconds["read"] += time.perf_counter() - t2
        self.batches += 1
        return {"outputs": outs, "n_outputs": n_out, "spikes": spk, "n_spikes": n_spk, "hung": bool(dut.hung.value),
                "steps": int(dut.n_steps.value), "cfg_errors": int(dut.cfg_errors.value),
                "cfg_first_error": int(dut.cfg_first_error.value)}

    def status(self) -> dict:
        dut = self.dut
        return {"cycles": int(dut.cycles.value), "step_cycles": int(dut.step_cycles.value),
                "sent": int(dut.n_sent.value), "steps": self.steps, "batches": self.batches,
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()}}


def _field(codec: LayoutCodec, name: str, value: int) -> tuple[int, int]:
    """``(mask, word)``: the bits of field ``name`` of ``codec``'s layout, and ``value`` in them."""
    for field, offset, width, _ in codec.fields:
        if field == name:
            return ((1 << width) - 1) << offset, value << offset
    raise ValueError(f"the layout has no field {name!r}")


def _batches(units: list[tuple[list[int], object, int, int]], info: dict):
    """Cut the command stream into batches that fit the harness's memories.

    ``units``: per chip step, its command words (its ``OP_STEP`` last), its label, and how many
    output events and probed spikes the reference expects of it. Yields ``(words, labels)``; a
    batch's expected events stay within half its memories (a chip that sends more than it should
    still fits, and differs), a step's commands may straddle two batches.
    """
    depth, out_room, spk_room = info["cmd_depth"], info["out_depth"] // 2, info["spk_depth"] // 2
    max_steps = (1 << info["tag_bits"]) - 1
    words: list[int] = []
    labels: list = []
    outs = spikes = 0
    for unit, label, n_out, n_spk in units:
        if labels and (len(words) + len(unit) > depth or outs + n_out > out_room or spikes + n_spk > spk_room
                       or len(labels) == max_steps):
            yield words, labels
            words, labels, outs, spikes = [], [], 0, 0
        while len(words) + len(unit) > depth:  # a step with more input events than the memory holds
            cut = depth - len(words)
            words += unit[:cut]
            unit = unit[cut:]
            yield words, labels
            words, labels, outs, spikes = [], [], 0, 0
        words += unit
        labels.append(label)
        outs, spikes = outs + n_out, spikes + n_spk
    if words or labels:
        yield words, labels


async def run_with_harness(dut, config: dict, image, model: ReferenceModel, xs: np.ndarray, capacity,
                           scoreboard: Scoreboard) -> dict:
    """The chip inside :mod:`verify.harness`: the same commands, events and comparison as the
    per-cycle drivers of :func:`verify_chip`, exchanged with the simulator a batch at a time."""
    info = config["harness"]
    g, C = model.geometry, image.cols
    cmd_codec, out_codec, spike_codec = codecs(g)
    port = HarnessPort(dut, info, cmd_codec, out_codec, capacity, config.get("backpressure"))
    if config.get("clock") == "cocotb":
        cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    await Timer(20 * PERIOD_NS, "ns")  # out of the harness's reset
    stats = {"load_seconds": 0.0, "sent": 0}
    probed = bool(info["probe"])

    if config.get("load"):
        t_load = time.perf_counter()
        writes = config_writes(image, capacity)
        fields = config_fields(capacity)
        for k in range(0, len(writes), info["cfg_depth"]):
            chunk = writes[k:k + info["cfg_depth"]]
            got = await port.run([pack(fields, {"write": 1, "mem": m, "tile": t, "addr": a, "data": w})
                                  for m, t, a, w in chunk], [])
            if got["hung"] or got["cfg_errors"]:
                mem, tile, addr, _ = chunk[got["cfg_first_error"]] if got["cfg_errors"] else chunk[0]
                problem = (f"the chip refused writing word {addr} of memory {mem} (tile {tile})" if got["cfg_errors"]
                           else f"the chip did not answer a configuration access within {STEP_TIMEOUT_CYCLES} cycles")
                scoreboard.mismatch = {"sample": scoreboard.offset, "step": 0, "what": "loading the network",
                                       "expected": "no error", "got": problem}
                return stats
        stats["load_seconds"] = time.perf_counter() - t_load

    expected = model.expect(xs)
    step_word = cmd_codec.pack({"op": OP_STEP})
    reset_word = cmd_codec.pack({"op": OP_RESET})
    units = []
    if config.get("reset_at") is not None:  # a first sample interrupted by a reset: its events are not compared
        prelude = model.commands(xs[:, 0])[:config["reset_at"] + 1]
        for t, commands in enumerate(prelude):
            units.append(([reset_word] * (t == 0) + [cmd_codec.pack(c) for c in commands] + [step_word], None,
                          len(expected[0][t].spikes) + len(expected[0][t].values) + 1, len(expected[0][t].internal)))
    for b in range(xs.shape[1]):
        for t, commands in enumerate(model.commands(xs[:, b])):
            e = expected[b][t]
            units.append(([reset_word] * (t == 0) + [cmd_codec.pack(c) for c in commands] + [step_word], (b, t),
                          len(e.spikes) + len(e.values) + 1, len(e.internal)))

    try:
        carry = StepEvents()
        for words, labels in _batches(units, info):
            got = await port.run([], words)
            carry = _compare_batch(got, labels, expected, out_codec, spike_codec, C, info, probed, scoreboard, carry)
        if carry.spikes or carry.values or carry.internal:
            b, t = units[-1][1]
            scoreboard.mismatch = {"sample": b + scoreboard.offset, "step": t, "what": "events after the last OUT_STEP",
                                   "expected": 0, "got": len(carry.spikes) + len(carry.values) + len(carry.internal)}
            raise Mismatch(scoreboard.describe())
    finally:
        stats.update(port.status())
    return stats


def _compare_batch(got: dict, labels: list, expected, out_codec: LayoutCodec, spike_codec: LayoutCodec, C: int,
                   info: dict, probed: bool, scoreboard: Scoreboard, carry: StepEvents) -> StepEvents:
    """Split a batch's events into its steps and compare each with the reference, in order, as the
    per-cycle testbench does (duplicates first, then the scoreboard); :class:`Mismatch` at the first
    difference, or if the batch did not end as it should (a hang, a missing or extra ``OUT_STEP``,
    more events than the harness holds).

    ``carry``: events that came after the previous batch's last ``OUT_STEP``, which belong to this
    batch's first step (as the per-cycle monitor would count them). Returns those of this batch.
    """
    steps = [StepEvents() for _ in labels] + [StepEvents()]  # the last: after the batch's last OUT_STEP
    steps[0] = StepEvents(set(carry.spikes), dict(carry.values), set(carry.internal))
    dups: list[list[tuple[str, int]]] = [[] for _ in steps]
    k = 0  # the step the next output event belongs to
    for word in got["outputs"]:
        event = out_codec.unpack(word)
        if event["kind"] == OUT_STEP:
            k = min(k + 1, len(labels))
            continue
        addr = event["tile"] * C + event["col"]
        if event["kind"] == OUT_SPIKE:
            if addr in steps[k].spikes:
                dups[k].append(("host spike", addr))
            steps[k].spikes.add(addr)
        elif event["kind"] == OUT_VALUE:
            if addr in steps[k].values:
                dups[k].append(("value", addr))
            steps[k].values[addr] = event["value"]
    bits = spike_codec.size
    for word in got["spikes"]:
        tag, s = min(word >> bits, len(labels)), spike_codec.unpack(word & ((1 << bits) - 1))
        addr = s["tile"] * C + s["col"]
        if addr in steps[tag].internal:
            dups[tag].append(("spike", addr))
        steps[tag].internal.add(addr)
    complete = min(got["steps"], len(labels))  # steps whose OUT_STEP came
    overflow = got["n_outputs"] > len(got["outputs"]) or got["n_spikes"] > len(got["spikes"])
    if overflow:  # the events of the step being stored when a memory filled up are not all there
        complete = min(complete, sum(word["kind"] == OUT_STEP for word in map(out_codec.unpack, got["outputs"])),
                       (got["spikes"][-1] >> bits) if got["n_spikes"] > len(got["spikes"]) else len(labels))
    for i in range(complete):
        if labels[i] is None:
            continue
        b, t = labels[i]
        for what, addr in sorted(dups[i], key=lambda d: d[0] == "spike")[:1]:  # the host's first, as before
            scoreboard.fail(b, t, f"{what} sent twice", addr, 1, 2)
        scoreboard.compare(b, t, expected[b][t], steps[i], internal=probed)
    if complete == len(labels) and got["steps"] == len(labels) and not got["hung"] and not overflow:
        return steps[-1]
    b, t = next((lab for lab in labels[complete:] if lab is not None), (labels or [None])[-1] or (0, 0))
    if overflow:
        what, exp = "events in one batch", f"at most {info['out_size']} outputs and {info['spk_size']} spikes"
        found = f"{got['n_outputs']} outputs, {got['n_spikes']} spikes"
    elif got["hung"]:
        what, exp, found = f"no OUT_STEP within {STEP_TIMEOUT_CYCLES} cycles", "OUT_STEP", None
    else:
        what, exp, found = "end-of-step events", len(labels), got["steps"]
    scoreboard.mismatch = {"sample": b + scoreboard.offset, "step": t, "what": what, "expected": exp, "got": found}
    raise Mismatch(scoreboard.describe())


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
    capacity = Capacity.from_dict(config["capacity"]) if config.get("capacity") else None
    model = ReferenceModel(image, config.get("analog", "ideal"), capacity)
    g, C = model.geometry, image.cols
    cmd_codec, out_codec, spike_codec = codecs(g)
    xs = np.load(config["inputs"])
    seed = config.get("backpressure")
    rng = None if seed is None else np.random.default_rng(seed)
    top = config.get("top", "chip")

    if config.get("harness"):
        await _verify_in_harness(dut, config, image, model, xs, capacity)
        return
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    if top == "uart":
        codec = Codec.of(capacity) if capacity is not None else Codec(g)
        driver = UartDriver(dut, codec, config["divisor"], rng)
        monitor = UartMonitor(dut, codec, config["divisor"], C)
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
    load_seconds = 0.0
    try:
        if config.get("load"):
            t_load = time.perf_counter()
            if top == "uart":
                problem = await load_over_uart(driver, monitor, image, capacity)
            else:
                problem = await load_over_port(ConfigDriver(dut, capacity), image, capacity)
            load_seconds = time.perf_counter() - t_load
            if problem:
                scoreboard.mismatch = {"sample": 0, "step": 0, "what": "loading the network", "expected": "no error",
                                       "got": problem}
                raise Mismatch(problem)
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
        "seconds": time.perf_counter() - t0, "load_seconds": load_seconds,
        "load_words": len(config_writes(image, capacity)) if config.get("load") else 0,
        "first_mismatch": scoreboard.mismatch,
        **({"analog": analog.summary()} if analog is not None else {}),
        "mismatch": scoreboard.describe() if scoreboard.mismatch else None,
    }
    write_json(config["result"], result, sort_keys=False)
    if not result["passed"]:
        raise AssertionError(result["mismatch"])  # cocotb records the test as failed


async def _verify_in_harness(dut, config: dict, image, model: ReferenceModel, xs: np.ndarray, capacity) -> None:
    """:func:`verify_chip` on the chip inside :mod:`verify.harness` (``config["harness"]``)."""
    analog = None
    if image.target == "memristive":
        from .analog import attach

        seed = config.get("backpressure")
        rng = None if seed is None else np.random.default_rng(seed)
        analog = attach(dut, image, config.get("analog", "ideal"), rng)
        analog.start()
    scoreboard = Scoreboard(image.cols, int(config.get("sample_offset") or 0))
    t0 = time.perf_counter()
    stats: dict = {}
    try:
        stats = await run_with_harness(dut, config, image, model, xs, capacity, scoreboard)
        if analog is not None:
            try:
                analog.check()
            except AssertionError as exc:
                last = scoreboard.counts["steps"]
                scoreboard.mismatch = {"sample": scoreboard.offset + xs.shape[1] - 1, "step": last,
                                       "what": f"analog protocol: {exc}",
                                       "expected": None, "got": None}
    except Mismatch:
        pass
    steps = scoreboard.counts["steps"]
    result = {
        "passed": scoreboard.mismatch is None,
        "reference": type(model.sim).__module__.replace(".", "/") + ".py",
        "samples": int(xs.shape[1]), "network_steps": int(xs.shape[0]), "chip_steps": steps,
        "compared": scoreboard.counts, "internal_spikes_probed": bool(config["harness"]["probe"]),
        "commands": stats.get("sent", 0), "cycles": stats.get("cycles", 0),
        "mean_cycles_per_step": stats.get("step_cycles", 0) / stats["steps"] if stats.get("steps") else 0.0,
        "seconds": time.perf_counter() - t0, "load_seconds": stats.get("load_seconds", 0.0),
        "load_words": len(config_writes(image, capacity)) if config.get("load") else 0,
        "first_mismatch": scoreboard.mismatch,
        **({"analog": analog.summary()} if analog is not None else {}),
        "mismatch": scoreboard.describe() if scoreboard.mismatch else None,
        "harness": {k: stats[k] for k in ("batches", "seconds") if k in stats},
    }
    write_json(config["result"], result, sort_keys=False)
    if not result["passed"]:
        raise AssertionError(result["mismatch"])
