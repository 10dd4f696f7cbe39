"""Evaluation backends of the outer loop: in this process, a local Dask cluster, or a Dask scheduler.

>>> from l2l.tasks.functions import FunctionTask
>>> with Runner(workers=0) as runner:           # serial, in this process
...     evals = runner.map(FunctionTask(n=2), [[1.0, 2.0], [0.0, 0.0]], [0, 1])
>>> [e.fitness for e in evals]
[5.0, 0.0]

:meth:`Runner.map` evaluates one generation and returns one :class:`Evaluation` per candidate,
in order. What it guarantees on Dask:

* **No evaluation is lost with a worker.** A worker that dies (killed, out of memory, lost
  with its node) takes its running evaluations with it; the scheduler runs them again on
  another worker (``pure=False`` tasks with no dependencies are always recomputable). An
  evaluation that kills every worker it runs on (``distributed.scheduler.allowed-failures``
  + 1 of them) is recorded as failed, like one that raises.
* **An exception inside ``Task.evaluate`` is a result, not a retry.** The worker-side wrapper
  catches it and returns ``Evaluation(fitness=inf, ok=False, traceback=...)``; the scheduler
  never sees it. ``retries`` only covers failures outside the task (a worker that cannot
  unpickle it, say); if those persist, :class:`ClusterError` stops the run.
* **No hang when the cluster goes away.** Losing the scheduler cancels the pending
  evaluations and raises :class:`ClusterError` (the loop's checkpoint is intact: resume).
* **No hang on a wrong address.** A ``--scheduler`` that refuses, accepts and stays silent, or
  answers in another protocol (the dashboard's HTTP port) is a :class:`SchedulerError` within
  the connect timeout (:func:`_greeting`).

The task object goes with each evaluation as an argument of ``client.submit``: Dask serialises
it (cloudpickle, so a task class defined in a script travels by value). Tasks are small frozen
dataclasses; the ones that load data (``alif``) read it inside ``evaluate``.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import socket
import time
import traceback
import warnings
from concurrent.futures import CancelledError
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from small.errors import SmallError

__all__ = ["ClusterError", "Evaluation", "Runner", "SchedulerError", "evaluate", "local_cluster"]

#: Seconds to wait for a scheduler to answer before giving up.
CONNECT_TIMEOUT = 3.0
#: Seconds without any worker before warning that the run is waiting for them.
NO_WORKERS_WARNING = 60.0


class ClusterError(SmallError):
    """The Dask cluster failed the run (lost scheduler, workers that cannot run the task)."""


class SchedulerError(ClusterError):
    """The Dask scheduler given with ``--scheduler`` cannot be reached."""


@dataclass(frozen=True)
class Evaluation:
    """The outcome of one candidate's evaluation."""

    fitness: float
    """Loss (lower is better); ``inf`` when the evaluation failed."""
    ok: bool
    """False when the evaluation raised, returned a non-finite loss, or killed its workers."""
    info: dict = field(default_factory=dict)
    """What ``Task.evaluate`` returned beside the loss (empty on failure)."""
    traceback: str | None = None
    """The formatted traceback (or the reason) of a failure."""
    seconds: float = 0.0
    """Wall time of the evaluation where it ran (for evaluations per second, never for results)."""
    worker: str = ""
    """``host:pid`` of the process that ran it."""


def _where() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def evaluate(task, x, seed: int) -> Evaluation:
    """Run ``task.evaluate(x, seed)`` and turn any exception into a failed :class:`Evaluation`."""
    t0 = time.perf_counter()
    try:
        result = task.evaluate(np.array(x, dtype=float), int(seed))
        if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)):
            raise TypeError(f"{type(task).__name__}.evaluate must return (loss, info dict), not {result!r:.200}")
        fitness, info = float(result[0]), result[1]
        if not math.isfinite(fitness):
            raise ValueError(f"{type(task).__name__}.evaluate returned a non-finite loss {fitness!r}")
        pickle.dumps(info)  # here, where the traceback says which evaluation, not in Dask's transfer
    except Exception:
        return Evaluation(math.inf, False, {}, traceback.format_exc(), time.perf_counter() - t0, _where())
    return Evaluation(fitness, True, info, None, time.perf_counter() - t0, _where())


def _evaluate_on_worker(task, x: np.ndarray, seed: int) -> Evaluation:
    # Dask delivers ``task`` (it serialises arguments with cloudpickle, so a task class defined
    # in a script or notebook travels by value). A worker that cannot load it (SMALL missing,
    # another version) fails before this runs: the cluster's problem, which stops the run
    # rather than failing every candidate quietly.
    return evaluate(task, x, seed)


class Runner:
    """Maps a task's evaluation over a generation of candidates: serially or on Dask.

    Parameters
    ----------
    workers : int or None
        ``0``: evaluate in this process, one after the other (tests, debugging). ``n >= 1``: a
        Dask ``LocalCluster`` of ``n`` single-threaded worker processes on loopback. ``None``
        (and no ``scheduler``): a local cluster with one worker per CPU core.
    scheduler : str or None
        Address of a running Dask scheduler (``tcp://host:8786``); excludes ``workers``.
    processes : bool
        Local cluster only: worker processes (default) or threads of this process.
    retries : int
        Resubmissions of an evaluation whose Dask task failed outside ``Task.evaluate``.
    timeout : float
        Seconds to wait for ``scheduler`` to answer.

    Use it as a context manager: the cluster (or the connection) lives for the ``with`` block.
    """

    def __init__(self, workers: int | None = None, scheduler: str | None = None, processes: bool = True, *,
                 retries: int = 2, timeout: float = CONNECT_TIMEOUT):
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, (int, np.integer))
                                    or workers < 0):
            raise ValueError(f"workers must be an integer >= 0 (0: no Dask) or None, not {workers!r}")
        if scheduler is not None and workers is not None:
            raise ValueError("give workers (a local cluster) or scheduler (a running one), not both")
        if scheduler is not None and (not isinstance(scheduler, str) or not scheduler):
            raise ValueError(f"scheduler must be an address like 'tcp://host:8786', not {scheduler!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an integer >= 0, not {retries!r}")
        self.workers = None if workers is None else int(workers)
        self.scheduler = scheduler
        self.processes = bool(processes)
        self.retries = retries
        self.timeout = float(timeout)
        self._client = None
        self._cluster = None
        self._log_levels: dict[str, int] = {}

    @property
    def backend(self) -> str:
        """``"serial"``, ``"local"`` (a LocalCluster) or ``"scheduler"``."""
        if self.scheduler is not None:
            return "scheduler"
        return "serial" if self.workers == 0 else "local"

    @property
    def client(self):
        """The ``distributed.Client`` while running on Dask, else ``None``."""
        return self._client

    # -- life cycle ----------------------------------------------------------------------------

    def __enter__(self) -> Runner:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        """Start the local cluster or connect to the scheduler (nothing for the serial backend)."""
        if self._client is not None or self.backend == "serial":
            return
        import distributed

        try:
            if self.backend == "scheduler":
                self._quiet_logs()
                self._client = _connect(self.scheduler, self.timeout)
                if not self._workers_now():
                    warnings.warn(f"the Dask scheduler at {self.scheduler} has no workers yet: the run waits for them "
                                  f"(start some with `dask worker {self.scheduler}`)")
            else:
                self.workers = self.workers if self.workers is not None else (os.cpu_count() or 1)
                self._cluster = local_cluster(self.workers, processes=self.processes)
                self._client = distributed.Client(self._cluster)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the connection and the local cluster; safe to call twice."""
        client, cluster = self._client, self._cluster
        self._client = self._cluster = None
        try:
            if client is not None:
                client.close()
        finally:
            if cluster is not None:
                cluster.close()
            for name, level in self._log_levels.items():
                logging.getLogger(name).setLevel(level)
            self._log_levels = {}

    def _quiet_logs(self) -> None:
        """Only errors from Dask in this process, and none from the client, whose failures become ClusterErrors.

        (A lost scheduler makes the client log tracebacks while it gives up; the run reports it
        in one line.) The levels are restored by `close`.
        """
        for name, level in (("distributed", logging.ERROR), ("distributed.client", logging.CRITICAL)):
            logger = logging.getLogger(name)
            self._log_levels.setdefault(name, logger.level)
            logger.setLevel(max(level, logger.getEffectiveLevel()))

    def describe(self) -> str:
        """Where evaluations run, in words."""
        if self.backend == "serial":
            return "in this process (no Dask)"
        if self.backend == "local":
            n = self.workers if self.workers is not None else os.cpu_count()
            return f"a local Dask cluster of {n} worker{'s' * (n != 1)}"
        n = self._workers_now() if self._client is not None else 0
        return f"the Dask scheduler at {self.scheduler} ({n} worker{'s' * (n != 1)} now)"

    # -- evaluation ----------------------------------------------------------------------------

    def map(self, task, candidates, seeds: Sequence[int]) -> list[Evaluation]:
        """Evaluate ``task`` at each candidate with its seed; the evaluations in the candidates' order.

        Parameters
        ----------
        task : l2l.tasks.Task
            Picklable task object.
        candidates : array_like, shape (popsize, n)
        seeds : sequence of int, length popsize
        """
        X = np.array(candidates, dtype=float)
        seeds = [int(s) for s in seeds]
        if X.ndim != 2 or X.shape[0] != len(seeds):
            raise ValueError(f"candidates must have shape (len(seeds)={len(seeds)}, n), not {X.shape!r}")
        if self.backend == "serial":
            return [evaluate(task, x, s) for x, s in zip(X, seeds)]
        if self._client is None:
            raise RuntimeError("Runner.map() needs a started runner: use it in a `with` block")
        return self._map_dask(task, X, seeds)

    def _map_dask(self, task, X: np.ndarray, seeds: list[int]) -> list[Evaluation]:
        client = self._client
        batch = os.urandom(6).hex()
        futures = [client.submit(_evaluate_on_worker, task, x, s, key=f"l2l-evaluate-{batch}-{i}",
                                 pure=False, retries=self.retries) for i, (x, s) in enumerate(zip(X, seeds))]
        results: list[Evaluation | None] = [None] * len(futures)
        try:
            while True:
                self._wait([f for f, r in zip(futures, results) if r is None])
                if self._collect(futures, results):
                    return results
        except CancelledError:  # the connection to the scheduler was lost
            raise ClusterError(f"lost {self._cluster_name()} during a generation") from None
        finally:
            if client.status == "running":
                pending = [f for f in futures if not f.done()]
                if pending:  # interrupted: do not leave the cluster busy with a dead generation
                    client.cancel(pending)

    def _collect(self, futures, results: list[Evaluation | None]) -> bool:
        """Fill ``results`` from the done futures; whether every one is filled."""
        from distributed import KilledWorker

        todo = [i for i, r in enumerate(results) if r is None]
        finished = [i for i in todo if futures[i].status == "finished"]
        try:
            values = self._client.gather([futures[i] for i in finished])
        except (KilledWorker, OSError):
            # A result lost with its worker after it finished: it is being computed again (or
            # has now failed for good, handled below); the caller waits once more.
            values = None
        for i, value in zip(finished, values or ()):
            results[i] = value
        for i in todo:
            f = futures[i]
            if results[i] is not None or f.status in ("pending", "finished"):
                continue
            if f.status == "cancelled":
                raise ClusterError(f"lost {self._cluster_name()} during a generation")
            exc = f.exception()
            if isinstance(exc, KilledWorker):
                results[i] = Evaluation(math.inf, False, {}, f"KilledWorker: {exc}\nthe evaluation killed every "
                                        "worker it ran on (out of memory? a crash in native code?)", 0.0, "")
            else:
                why = " ".join(str(exc).split())  # one line: Dask's messages span several
                raise ClusterError(f"a Dask worker could not run evaluation {i} ({type(exc).__name__}: {why}): "
                                   "install the same SMALL version and packages on every worker")
        return all(r is not None for r in results)

    def _wait(self, futures) -> None:
        """Wait for every future; warn (once) if the cluster has no workers for a while."""
        import distributed

        no_workers_since, warned = None, False
        while True:
            try:
                distributed.wait(futures, timeout=1.0)
                return
            except TimeoutError:
                pass
            if self._client.status in ("closing", "closed"):
                raise ClusterError(f"lost {self._cluster_name()} during a generation")
            if self._workers_now():
                no_workers_since = None
            elif no_workers_since is None:
                no_workers_since = time.monotonic()
            elif not warned and time.monotonic() - no_workers_since > NO_WORKERS_WARNING:
                warnings.warn(f"{self._cluster_name()} has had no workers for {NO_WORKERS_WARNING:.0f} s: the run "
                              "waits for them")
                warned = True

    def _cluster_name(self) -> str:
        return f"the Dask scheduler at {self.scheduler}" if self.backend == "scheduler" else "the local Dask cluster"

    def _workers_now(self) -> int:
        return int(self._client.scheduler_info(n_workers=0).get("n_workers", 0))


def local_cluster(workers: int, processes: bool = True):
    """A quiet ``distributed.LocalCluster`` of ``workers`` single-threaded workers on loopback.

    No dashboard, and the scheduler's HTTP server (always started) on a free port rather than
    8787, which another cluster may hold; only errors are logged. The workers keep glibc's own
    ``malloc`` trim threshold: Dask's default (``MALLOC_TRIM_THRESHOLD_=65536``, to hand memory
    back to the system early) made SMALL's evaluations, which allocate many short-lived arrays
    of a few hundred kB, 2.5x slower (`bench/RESULTS.md`, "Reports and sweeps").
    """
    import dask
    import distributed

    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        return distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=processes, host="127.0.0.1", dashboard_address=None,
            scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"}, silence_logs=logging.ERROR)


def _connect(address: str, timeout: float):
    """A ``distributed.Client`` on ``address``, or a SchedulerError within about twice ``timeout`` seconds."""
    import distributed

    fix = (f"start one with `dask scheduler` (and workers with `dask worker {address}`), check the address, "
           "or leave out --scheduler to run on a local cluster")
    try:
        _greeting(address, timeout)
        return distributed.Client(address, timeout=timeout)
    except ValueError as exc:
        raise SchedulerError(f"{address!r} is not a Dask scheduler address like tcp://host:8786 ({exc})") from None
    except (OSError, TimeoutError):
        raise SchedulerError(f"cannot reach the Dask scheduler at {address} within {timeout:g} s: {fix}") from None
    except MemoryError:  # another protocol's bytes read as a frame length (the check above makes it unlikely)
        raise SchedulerError(f"{address} does not speak Dask's protocol: {fix}") from None


#: The largest first frame a Dask scheduler sends (its handshake is about 60 bytes).
GREETING_LIMIT = 1 << 16


def _greeting(address: str, timeout: float) -> None:
    """Check that a ``tcp://`` address answers as a Dask scheduler does, within ``timeout`` seconds.

    ``distributed`` waits for the scheduler's handshake without a time limit, and reads any 8
    bytes as the length of the frame to come: a port that accepts and stays silent (a firewall,
    a wrong service) hangs the run, and an HTTP server's ``HTTP/1.1`` asks for exabytes. A Dask
    scheduler speaks first: on connection it sends its handshake, an 8-byte little-endian
    length and a frame of about 60 bytes. That is all this reads, and then it hangs up (the
    scheduler logs the early close at INFO). Other schemes (``tls://``, ``ucx://``) are left to
    ``distributed``.
    """
    from distributed.comm import parse_address, parse_host_port

    scheme, location = parse_address(address)
    if scheme != "tcp":
        return
    host, port = parse_host_port(location)
    deadline = time.monotonic() + timeout
    while True:  # a scheduler still starting refuses connections for a moment: retry, as distributed does
        try:
            conn = socket.create_connection((host, port), timeout=max(deadline - time.monotonic(), 1e-3))
            break
        except ConnectionRefusedError:
            if time.monotonic() + 0.1 > deadline:
                raise
            time.sleep(0.1)
    with conn:

        def read(n: int) -> bytes:
            data = b""
            while len(data) < n:
                conn.settimeout(max(deadline - time.monotonic(), 1e-3))
                try:
                    chunk = conn.recv(n - len(data))
                except socket.timeout:
                    raise SchedulerError(f"{address} accepts connections but did not answer as a Dask scheduler "
                                         f"within {timeout:g} s: is it the scheduler's port (8786 by default, not "
                                         "the dashboard's 8787)?") from None
                if not chunk:
                    raise SchedulerError(f"{address} closed the connection without answering as a Dask scheduler: "
                                         "check the address")
                data += chunk
            return data

        head = read(8)
        if not 0 < int.from_bytes(head, "little") <= GREETING_LIMIT:
            raise SchedulerError(f"{address} does not speak Dask's protocol (it answered {head!r}...): is it the "
                                 "scheduler's port (8786 by default, not the dashboard's 8787)?")
        read(int.from_bytes(head, "little"))
