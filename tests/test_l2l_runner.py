"""The outer loop on Dask: results independent of the workers, no lost evaluation, failures recorded, resume."""

import json
import os
import signal
import socket
import threading
import time

import numpy as np
import pytest

from l2l.config import parse_config
from l2l.loop import CHECKPOINT_FILE, CONFIG_FILE, RunDirError, evaluation_seeds, load_checkpoint, meta_train, resume
from l2l.runner import ClusterError, Runner, SchedulerError, local_cluster
from l2l.tasks.functions import FunctionTask


def config(generations=4, popsize=6, optimizer="cmaes", seed=3, **task):
    """A configuration's TOML text: a noisy 3-D Rosenbrock by default (the noise makes the seeds matter)."""
    task = {"function": "rosenbrock", "n": 3, "noise": 0.05, **task}
    lines = ["[run]", 'task = "function"', f"generations = {generations}", f"seed = {seed}", "",
             "[optimizer]", f'name = "{optimizer}"', f"popsize = {popsize}", "", "[task]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in task.items()]
    return "\n".join(lines) + "\n"


def train(text, run_dir, runner, **kw):
    lines = []
    summary = meta_train(parse_config(text), run_dir, runner, progress=lines.append, **kw)
    return summary, lines


def history(run_dir):
    return json.loads((run_dir / CHECKPOINT_FILE).read_text())["history"]


def same_run(a, b):
    """Two summaries and histories agree on every result (not on timings)."""
    keys = ("best_fitness", "best_x", "best_generation", "best_index", "best_seed", "evaluations", "failed_evaluations")
    return all(a[k] == b[k] for k in keys)


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded worker processes on loopback, shared by the module's Dask tests."""
    with local_cluster(2) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def serial_reference(tmp_path_factory):
    """The run every backend must reproduce, evaluated in this process."""
    run_dir = tmp_path_factory.mktemp("serial")
    with Runner(workers=0) as runner:
        summary, _ = train(config(fail_every=4), run_dir, runner)
    return summary, history(run_dir)


def test_seeds_depend_only_on_the_run_seed_generation_and_index():
    seeds = evaluation_seeds(3, 5, 8)
    assert seeds == evaluation_seeds(3, 5, 8) and len(set(seeds)) == 8
    assert all(0 <= s < 2**63 for s in seeds)
    assert evaluation_seeds(3, 5, 4) == seeds[:4]  # the population size does not reshuffle them
    assert not set(seeds) & set(evaluation_seeds(3, 6, 8)) and not set(seeds) & set(evaluation_seeds(4, 5, 8))
    assert evaluation_seeds(3, 5, 8, shared=True) == [seeds[0]] * 8


def test_serial_map_keeps_the_order_and_turns_exceptions_into_failed_evaluations():
    task = FunctionTask(n=2, fail_every=2)
    X = np.array([[1.0, 2.0], [0.0, 0.0], [3.0, 0.0]])
    with Runner(workers=0) as runner:
        evals = runner.map(task, X, [1, 2, 3])
    assert [e.fitness for e in evals] == [5.0, np.inf, 9.0]
    assert [e.ok for e in evals] == [True, False, True]
    assert "RuntimeError: injected failure" in evals[1].traceback and "Traceback" in evals[1].traceback
    assert evals[1].info == {} and evals[0].info == {"clean": 5.0}
    assert all(e.seconds >= 0 and e.worker.endswith(f":{os.getpid()}") for e in evals)


def test_the_runner_refuses_contradictory_settings():
    with pytest.raises(ValueError, match="workers must be an integer >= 0"):
        Runner(workers=-1)
    with pytest.raises(ValueError, match="not both"):
        Runner(workers=2, scheduler="tcp://127.0.0.1:8786")
    with pytest.raises(RuntimeError, match="started"):
        Runner(workers=1).map(FunctionTask(n=2), [[0.0, 0.0]], [0])


def test_one_and_two_workers_give_the_serial_result_bit_for_bit(cluster, serial_reference, tmp_path):
    expected, expected_history = serial_reference
    assert expected["failed_evaluations"] > 0  # failures take part in the comparison
    with Runner(workers=1) as runner:  # its own LocalCluster of one worker
        one, _ = train(config(fail_every=4), tmp_path / "one", runner)
    with Runner(scheduler=cluster.scheduler_address) as runner:  # two workers
        assert len(runner.client.scheduler_info()["workers"]) == 2
        two, _ = train(config(fail_every=4), tmp_path / "two", runner)
    assert same_run(one, expected) and same_run(two, expected)
    for got in (history(tmp_path / "one"), history(tmp_path / "two")):
        assert [(h["best"], h["mean"], h["median"], h["failed"]) for h in got] == \
               [(h["best"], h["mean"], h["median"], h["failed"]) for h in expected_history]


def test_local_workers_keep_the_default_malloc_trim_threshold(cluster):
    """Dask's MALLOC_TRIM_THRESHOLD_=65536 made every evaluation 2.5x slower (bench/RESULTS.md)."""
    import distributed

    with distributed.Client(cluster) as client:
        env = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
    assert len(env) == 2 and "65536" not in env.values()


def test_an_evaluation_that_raises_is_recorded_with_its_traceback_and_the_loop_goes_on(cluster, tmp_path):
    with Runner(scheduler=cluster.scheduler_address) as runner:
        summary, lines = train(config(generations=3, fail_every=3), tmp_path, runner)
    records = history(tmp_path)
    assert len(records) == 3 and summary["generations"] == 3
    expected = [sum(s % 3 == 0 for s in evaluation_seeds(3, g, 6)) for g in range(3)]
    assert [r["failed"] for r in records] == expected and sum(expected) > 0
    for r in records:
        for failure in r["failures"]:
            assert failure["seed"] % 3 == 0 and failure["seed"] == evaluation_seeds(3, r["generation"], 6)[failure["index"]]
            assert "Traceback" in failure["traceback"] and "in evaluate" in failure["traceback"]
            assert failure["error"].startswith("RuntimeError: injected failure")
            assert failure["worker"] and not failure["worker"].endswith(f":{os.getpid()}")  # it ran on a worker
    failed_lines = [line for line in lines if " failed (RuntimeError: injected failure" in line]
    assert len(failed_lines) == sum(1 for n in expected if n)
    assert np.isfinite(summary["best_fitness"])


def test_a_generation_where_every_evaluation_fails_leaves_the_run_going(tmp_path):
    with Runner(workers=0) as runner:
        summary, lines = train(config(generations=2, fail_every=1), tmp_path, runner)
    assert summary["best_fitness"] is None and summary["best_x"] is None and summary["failed_evaluations"] == 12
    assert all(h["best"] is None and h["mean"] is None and h["failed"] == 6 for h in history(tmp_path))
    assert "every one of the 12 evaluations failed" in lines[-1] and not (tmp_path / "best.npz").exists()
    opt, state = load_checkpoint(tmp_path)
    assert opt.generation == 2 and opt.best[0] is None and state["best"] is None


def test_a_run_interrupted_after_a_checkpoint_resumes_to_the_same_result(serial_reference, tmp_path):
    expected, _ = serial_reference

    class Killed(Exception):
        pass

    def stop_after_two(line):
        if line.startswith("gen 2/"):
            raise Killed

    with Runner(workers=0) as runner:
        with pytest.raises(Killed):
            meta_train(parse_config(config(fail_every=4)), tmp_path, runner, progress=stop_after_two)
        assert json.loads((tmp_path / CHECKPOINT_FILE).read_text())["generation"] == 2
        # What a kill during the next checkpoint's write leaves: a half-written temporary file.
        stale = tmp_path / f".{CHECKPOINT_FILE}.x1y2.tmp.json"
        stale.write_text('{"format": 1, "optim')
        lines = []
        summary = resume(tmp_path, runner, progress=lines.append)
        assert not stale.exists()
        assert lines[0].startswith(f"resuming {tmp_path}/ at generation 2/4") and lines[1].startswith("gen 3/4")
        assert same_run(summary, expected)
        again = resume(tmp_path, runner, progress=lines.append)  # a finished run is summarised, not rerun
    assert same_run(again, expected) and lines[-1].startswith("done: best loss")
    best = np.load(tmp_path / "best.npz")
    assert best["x"].tolist() == expected["best_x"] and float(best["fitness"]) == expected["best_fitness"]


def test_resume_extends_a_run_but_refuses_a_changed_configuration(tmp_path):
    with Runner(workers=0) as runner:
        train(config(generations=2), tmp_path / "short", runner)
        longer, _ = train(config(generations=4), tmp_path / "long", runner)
        (tmp_path / "short" / CONFIG_FILE).write_text(config(generations=4))
        assert same_run(resume(tmp_path / "short", runner, progress=lambda line: None), longer)
        (tmp_path / "short" / CONFIG_FILE).write_text(config(generations=4, noise=0.5))
        with pytest.raises(RunDirError, match="changed since the run started"):
            resume(tmp_path / "short", runner, progress=lambda line: None)
        with pytest.raises(RunDirError, match="not empty: continue it with `small l2l resume"):
            train(config(), tmp_path / "long", runner)
        forced, _ = train(config(generations=4), tmp_path / "long", runner, force=True)
    assert same_run(forced, longer)


def _refuse_to_load():
    raise ImportError("this task cannot be loaded here")


class UnloadableTask(FunctionTask):
    """A task the workers cannot unpickle, as when SMALL is missing on them."""

    def __reduce__(self):
        return _refuse_to_load, ()


def test_a_task_the_workers_cannot_load_stops_the_run_with_a_clear_error(cluster):
    with Runner(scheduler=cluster.scheduler_address, retries=1) as runner:
        # Dask reports the worker's failure to deserialise the task (the ImportError) as a RuntimeError
        with pytest.raises(ClusterError, match=r"could not run evaluation \d \(RuntimeError: Error during "
                                               r"deserialization[^\n]*\): install the same SMALL version"):
            runner.map(UnloadableTask(n=2), np.zeros((3, 2)), [0, 1, 2])


def test_a_worker_killed_in_the_middle_of_a_generation_loses_no_evaluation(cluster):
    task = FunctionTask(n=3, noise=0.1, sleep=0.3)
    X = np.random.default_rng(0).normal(size=(8, 3))
    seeds = evaluation_seeds(0, 0, 8)
    with Runner(workers=0) as runner:
        expected = [e.fitness for e in runner.map(task, X, seeds)]
    with Runner(scheduler=cluster.scheduler_address) as runner:
        client = runner.client
        victim, pid = sorted(client.run(os.getpid).items())[0]
        killed = threading.Event()

        def kill_when_busy():
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if client.processing(workers=[victim]).get(victim):
                    time.sleep(0.1)  # into its first 0.3 s evaluation
                    os.kill(pid, signal.SIGKILL)
                    killed.set()
                    return
                time.sleep(0.01)

        killer = threading.Thread(target=kill_when_busy)
        killer.start()
        try:
            evals = runner.map(task, X, seeds)
        finally:
            killer.join()
        assert killed.is_set()
        assert all(e.ok for e in evals) and [e.fitness for e in evals] == expected
        # The evaluation running on the killed worker was done again elsewhere.
        assert all(not e.worker.endswith(f":{pid}") for e in evals)
        client.wait_for_workers(2, timeout=30)  # the nanny restarted it: the cluster is whole again


def test_a_lost_scheduler_stops_the_generation_with_an_error_instead_of_hanging():
    cluster = local_cluster(1)
    try:
        with Runner(scheduler=cluster.scheduler_address, timeout=1.0) as runner:
            closer = threading.Timer(0.5, cluster.close)
            closer.start()
            t0 = time.monotonic()
            with pytest.raises(ClusterError, match=f"lost the Dask scheduler at {cluster.scheduler_address} during"):
                runner.map(FunctionTask(n=2, sleep=0.2), np.zeros((20, 2)), range(20))
            assert time.monotonic() - t0 < 15
            closer.join()
    finally:
        cluster.close()


def test_a_web_server_given_as_scheduler_is_a_scheduler_error_within_the_timeout():
    """An HTTP server (the dashboard's port, say) waits for a request, then answers: no hang, no EiB."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    if conn.recv(4096):
                        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    try:
        t0 = time.monotonic()
        with pytest.raises(SchedulerError, match="accepts connections but did not answer as a Dask scheduler within 1 s"):
            with Runner(scheduler=address, timeout=1.0):
                pass
        assert time.monotonic() - t0 < 5
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()
