"""`small l2l run/resume`: progress, checkpoints, a SIGKILLed run that resumes exactly, and bad input (exit 2, one line)."""

import json
import signal
import socket
import subprocess
import sys
import time
import warnings

import psutil
import pytest

from l2l.config import ConfigError, Field, fields, parse_config
from l2l.loop import meta_train
from l2l.runner import Runner, local_cluster
from small.cli import main

CONFIG = """\
[run]
task = "function"
generations = 6
seed = 11

[optimizer]
name = "cmaes"
popsize = 4
sigma0 = 0.3

[task]
function = "rosenbrock"
n = 3
noise = 0.05
fail_every = 5
sleep = 0.1
"""


def small(*args, **kw):
    return subprocess.run([sys.executable, "-m", "small", *map(str, args)], capture_output=True, text=True, **kw)


def start(*args):
    return subprocess.Popen([sys.executable, "-m", "small", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def results(run_dir):
    summary = json.loads((run_dir / "run.json").read_text())
    return summary["best_fitness"], summary["best_x"], summary["best_generation"], summary["evaluations"]


def checkpointed(run_dir):
    try:
        return json.loads((run_dir / "checkpoint.json").read_text())["generation"]
    except FileNotFoundError:
        return 0


def kill_after_checkpoint(proc, run_dir, past=0, timeout=60):
    """SIGKILL ``proc`` as soon as its checkpoint is past generation ``past``; the generation it had reached."""
    deadline = time.monotonic() + timeout
    while checkpointed(run_dir) <= past:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    return checkpointed(run_dir), children


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture
def cli(monkeypatch, capsys):
    """``small`` in this process: (exit status, stdout, stderr)."""
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # main() replaces it

    def call(*args):
        try:
            status = main([str(a) for a in args])
        except SystemExit as exc:  # argparse
            status = exc.code
        out, err = capsys.readouterr()
        return status, out, err

    return call


def one_line_error(err, prefix="small l2l"):
    assert err.startswith(f"{prefix}: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_run_reports_progress_writes_the_run_and_refuses_to_overwrite_it(config_file, tmp_path, cli):
    config_file.write_text(CONFIG.replace("generations = 6", "generations = 3").replace("sleep = 0.1", "sleep = 0.0"))
    run_dir = tmp_path / "run"
    status, out, err = cli("l2l", "run", config_file, "-o", run_dir, "--workers", "0")
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("meta-training task 'function' (rosenbrock, 3 parameters) with cmaes (popsize 4)")
    for g, line in enumerate(lines[1:4], 1):
        words = line.split()
        assert words[:2] == ["gen", f"{g}/3"] and words[2] == "best" and words[4] == "mean", line
        assert words[7] == "eval/s" and words[8] == "ETA", line
    assert lines[4].startswith("done: best loss") and "run.json, best.npz" in lines[4]
    assert sorted(p.name for p in run_dir.iterdir()) == ["best.npz", "checkpoint.json", "config.toml", "run.json"]
    assert (run_dir / "config.toml").read_text() == config_file.read_text()
    best = results(run_dir)

    status, _, err = cli("l2l", "run", config_file, "-o", run_dir, "--workers", "0")
    assert status == 2 and "not empty: continue it with `small l2l resume" in one_line_error(err)
    status, out, _ = cli("l2l", "resume", run_dir, "--workers", "0")  # finished: summarised again
    assert status == 0 and out.startswith("done: best loss") and results(run_dir) == best
    status, _, err = cli("l2l", "run", config_file, "-o", run_dir, "--workers", "0", "--force")
    assert status == 0, err
    assert results(run_dir) == best


def test_run_and_resume_on_a_running_scheduler(config_file, tmp_path, cli):
    config_file.write_text(CONFIG.replace("generations = 6", "generations = 2").replace("sleep = 0.1", "sleep = 0.0"))
    status, _, err = cli("l2l", "run", config_file, "-o", tmp_path / "serial", "--workers", "0")
    assert status == 0, err
    with local_cluster(1) as cluster:
        address = cluster.scheduler_address
        status, out, err = cli("l2l", "run", config_file, "-o", tmp_path / "dask", "--scheduler", address)
        assert status == 0, err
        assert f"evaluated the Dask scheduler at {address} (1 worker now)" in out.splitlines()[0]
        status, out, err = cli("l2l", "resume", tmp_path / "dask", "--scheduler", address)
        assert status == 0 and out.startswith("done: best loss"), err
    assert results(tmp_path / "dask") == results(tmp_path / "serial")


@pytest.mark.slow
def test_a_sigkilled_run_resumes_to_the_result_of_an_uninterrupted_one(config_file, tmp_path):
    with Runner(workers=0) as runner:
        expected = meta_train(parse_config(CONFIG), tmp_path / "reference", runner, progress=lambda line: None)
    run_dir = tmp_path / "run"

    # Killed on a local Dask cluster: its worker processes go too.
    proc = start("l2l", "run", config_file, "-o", run_dir, "--workers", "1")
    reached, children = kill_after_checkpoint(proc, run_dir)
    assert 1 <= reached < 6 and children
    gone, alive = psutil.wait_procs(children, timeout=15)
    assert not alive, f"stray worker processes {alive}"

    # Resumed without Dask, killed again; resumed on two workers to the end.
    proc = start("l2l", "resume", run_dir, "--workers", "0")
    again, _ = kill_after_checkpoint(proc, run_dir, past=reached)
    assert reached < again < 6
    result = small("l2l", "resume", run_dir, "--workers", "2", timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"resuming {run_dir}/ at generation {again}/6")
    assert results(run_dir) == (expected["best_fitness"], expected["best_x"], expected["best_generation"], 24)
    assert json.loads((run_dir / "checkpoint.json").read_text())["failures"] == expected["failed_evaluations"]


@pytest.mark.parametrize("change, message", [
    (('name = "cmaes"', 'name = "cmaez"'),
     'config.toml: [optimizer] name must be one of "cmaes", "cross-entropy", "ga", "es", not "cmaez"'),
    (("popsize = 4", 'popsize = "ten"'), 'config.toml: [optimizer] popsize must be an integer >= 2, not "ten"'),
    (("generations = 6\n", ""), "config.toml: [run] is missing generations (generations of the outer loop): give an "
                                "integer >= 1"),
    (("seed = 11", "sede = 11"), 'config.toml: [run] has no field "sede": its fields are task, generations, seed'),
    (("n = 3", "n = 2.5"), "config.toml: [task] n must be an integer >= 1, not 2.5"),
    (('function = "rosenbrock"', 'function = "ackley"'),
     'config.toml: [task] function must be one of "sphere", "rosenbrock", not "ackley"'),
    (("sigma0 = 0.3", "sigma0 = 0.3\nactiv = true"), 'config.toml: [optimizer] cmaes has no option "activ": its '
                                                     "options are active"),
    (('name = "cmaes"\npopsize = 4', 'name = "es"\npopsize = 5'),
     "config.toml: [optimizer] popsize must be even for mirrored sampling, not 5"),
    (('task = "function"', 'task = "arms"'), 'config.toml: [run] task must be one of'),
    (("[task]", "[tsak]"), "config.toml has no section [tsak]: its sections are [run], [optimizer], [task], [dask]"),
    (("seed = 11", "seed = "), "config.toml is not valid TOML"),
])
def test_a_bad_configuration_is_one_line_naming_the_field_and_the_fix(config_file, tmp_path, monkeypatch, cli, change,
                                                                     message):
    config_file.write_text(CONFIG.replace(*change))
    monkeypatch.chdir(tmp_path)  # messages name the file as given
    status, out, err = cli("l2l", "run", "config.toml", "-o", "run", "--workers", "0")
    assert status == 2 and out == ""
    assert message in one_line_error(err)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, message", [
    (("--workers", "two"), "argument --workers: 'two' is not a whole number >= 0"),
    (("--workers", "-1"), "argument --workers: '-1' is not a whole number >= 0"),
    (("--workers", "2", "--scheduler", "tcp://127.0.0.1:8786"), "argument --scheduler: not allowed with argument "
                                                                 "--workers"),
])
def test_bad_cluster_options_exit_2(config_file, tmp_path, cli, args, message):
    status, _, err = cli("l2l", "run", config_file, "-o", tmp_path / "run", *args)
    assert status == 2 and message in one_line_error(err, "small l2l run")


@pytest.mark.slow
def test_an_unreachable_scheduler_is_reported_within_10_seconds(config_file, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    result = small("l2l", "run", config_file, "-o", tmp_path / "run", "--scheduler", f"tcp://127.0.0.1:{port}",
                   timeout=30)
    assert time.monotonic() - t0 < 10
    assert result.returncode == 2
    err = one_line_error(result.stderr)
    assert f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in err and "`dask scheduler`" in err


def test_resume_needs_a_run_folder_with_a_readable_checkpoint(config_file, tmp_path, cli):
    status, _, err = cli("l2l", "resume", tmp_path / "nothing", "--workers", "0")
    assert status == 2 and "holds no run (no config.toml): start one with `small l2l run" in one_line_error(err)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.toml").write_text(CONFIG)
    (run_dir / "checkpoint.json").write_text('{"format": 1, "optimizer": {"optimizer": "cmaes"')
    status, _, err = cli("l2l", "resume", run_dir, "--workers", "0")
    assert status == 2 and "checkpoint.json' is damaged" in one_line_error(err)


def test_the_fields_helper_checks_types_bounds_choices_and_names():
    spec = {"n": Field(int, minimum=1), "rate": Field(float, default=0.5), "kind": Field(str, default="a",
            choices=("a", "b")), "flag": Field(bool, default=False), "xs": Field(list, default=None, items=float)}
    where = "f.toml: [task]"
    assert fields({"n": 2, "rate": 1, "xs": [1, 2.5]}, where, spec) == \
        {"n": 2, "rate": 1.0, "kind": "a", "flag": False, "xs": [1.0, 2.5]}
    for section, text in [
        ({}, "f.toml: [task] is missing n: give an integer >= 1"),
        ({"n": True}, "f.toml: [task] n must be an integer >= 1, not true"),
        ({"n": 0}, "f.toml: [task] n must be an integer >= 1, not 0"),
        ({"n": 1, "rate": "x"}, 'f.toml: [task] rate must be a number, not "x"'),
        ({"n": 1, "rate": float("nan")}, "f.toml: [task] rate must be a finite number, not nan"),
        ({"n": 1, "kind": "c"}, 'f.toml: [task] kind must be one of "a", "b", not "c"'),
        ({"n": 1, "flag": 1}, "f.toml: [task] flag must be true or false, not 1"),
        ({"n": 1, "xs": [1, "2"]}, 'f.toml: [task] xs[1] must be a number, not "2"'),
        ({"n": 1, "m": 2}, 'f.toml: [task] has no field "m": its fields are n, rate, kind, flag, xs'),
    ]:
        with pytest.raises(ConfigError) as info:
            fields(section, where, spec)
        assert str(info.value) == text
    assert fields({"n": 1, "other": {"x": 1}}, where, spec, extra=True)["other"] == {"x": 1}
