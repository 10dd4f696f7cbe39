"""Build folders under kills and races: the atomic swap, the per-folder lock, the user's files in a
build, `-o .` and symlinks, `l2l eval --save-model`, and simulators that die with `small verify`."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from compiler.image import load_image
from small import fileio
from test_cli import model  # noqa: F401  (fixtures: a small NIR model; `small` in this process)
from test_cli_l2l import cli  # noqa: F401

OWNED = ("image.json", "image.npz", "hdl")  # a build's files in the swap tests below, like flow.BUILD_FILES


def compile_args(model, out, *more):
    return ("compile", model, "--dt", "1e-3", "--tile", "8x8", "-o", out, *more)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) with its bytes: what "nothing written" compares."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"" for p in sorted(folder.rglob("*"))}


def assert_user_error(status, err, text):
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert text in err, err


def leftovers(folder: Path) -> list[str]:
    """What a writer of ``folder`` left beside it, its lock aside."""
    return sorted(p.name for p in folder.parent.glob(f".{folder.name}.*") if p.name != f".{folder.name}.lock")


# -- the swap, killed at every step ----------------------------------------------------------------
# A writer of `b` (a fake build: image.json names it, image.npz repeats the name) that dies with
# os._exit at the k-th rename, exchange or removal of the swap (k = 0: never), then prints how many
# there were. write_json renames too, so the kills also fall inside the block.
WRITER = """
import os, sys
from pathlib import Path
import small.fileio as fileio
folder, k, exchange, tag = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
steps = 0
def dying(step):
    def run(*args, **kw):
        global steps
        steps += 1
        if steps == k:
            os._exit(9)
        return step(*args, **kw)
    return run
os.rename, os.replace = dying(os.rename), dying(os.replace)
fileio.shutil.rmtree = dying(fileio.shutil.rmtree)
fileio._exchange = dying(fileio._exchange if exchange else lambda a, b: False)
with fileio.atomic_directory(folder, marker="image.json", owned=%r) as tmp:
    (tmp / "image.npz").write_text(tag * 1000)
    fileio.write_json(tmp / "image.json", {"build": tag})
print(steps)
""" % (OWNED,)


def write_build(folder: Path, tag: str, *, kill_at: int = 0, exchange: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WRITER, str(folder), str(kill_at), str(int(exchange)), tag],
                          capture_output=True, text=True)


def build_tag(folder: Path) -> str:
    """The name of the complete build in ``folder``; fails on half of one."""
    tag = json.loads((folder / "image.json").read_text())["build"]
    assert (folder / "image.npz").read_text() == tag * 1000
    return tag


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "two-renames"])
def test_a_kill_at_any_step_of_the_swap_leaves_a_build_and_the_next_run_cleans_up(tmp_path, exchange):
    b = tmp_path / "b"
    first = write_build(b, "old", exchange=exchange)
    assert first.returncode == 0, first.stderr
    (b / "notes.txt").write_text("mine")  # the user's
    (b / "hdl").mkdir()  # a later command's output: SMALL's, goes with the build it was made from
    (b / "hdl" / "small_chip.v").write_text("module old;")
    steps = int(write_build(b, "probe", exchange=exchange).stdout)
    write_build(b, "old", exchange=exchange)  # back to the old build (hdl/ went with the probe's swap)
    (b / "hdl").mkdir()
    assert steps >= 5
    for k in range(1, steps + 1):
        killed = write_build(b, "new", kill_at=k, exchange=exchange)
        assert killed.returncode == 9, (k, killed.stderr)
        # a reader finds a whole build under the name, or (two renames, killed between them) none, which
        # the next writer restores before anything else
        if exchange or b.exists():
            assert build_tag(b) in ("old", "new"), k
        with fileio.output_lock(b):
            fileio.recover_directory(b, marker="image.json", owned=OWNED)
        tag = build_tag(b)
        assert tag in ("old", "new"), k
        assert (b / "notes.txt").read_text() == "mine", k
        assert (b / "hdl").exists() == (tag == "old"), k
        assert leftovers(b) == [], (k, leftovers(b))
        again = write_build(b, "old", exchange=exchange)
        assert again.returncode == 0 and build_tag(b) == "old", again.stderr
        assert (b / "notes.txt").read_text() == "mine" and leftovers(b) == []
        (b / "hdl").mkdir(exist_ok=True)


def test_the_leftovers_of_an_older_small_killed_between_renames_are_recovered(tmp_path):
    """The case of issue 21: the old build stranded in `.b.*.old/previous`, the new one in `.b.*.tmp`."""
    b = tmp_path / "b"
    assert write_build(b, "old").returncode == 0
    (b / "notes.txt").write_text("mine")
    holder = tmp_path / ".b.k2j4x9q1.old"
    holder.mkdir()
    os.rename(b, holder / "previous")
    (tmp_path / ".b.abcd_123.tmp").mkdir()
    assert write_build(b, "new").returncode == 0
    assert build_tag(b) == "new" and (b / "notes.txt").read_text() == "mine" and leftovers(b) == []


# -- concurrent writers ----------------------------------------------------------------------------
def test_concurrent_compiles_into_one_folder_all_succeed_and_leave_one_build(model, tmp_path, cli):
    out = tmp_path / "build"
    assert cli(*compile_args(model, out))[0] == 0
    (out / "notes.txt").write_text("mine")
    procs = [subprocess.Popen([sys.executable, "-m", "small", *map(str, compile_args(model, out, "--seed", str(s)))],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for s in range(3)]
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr
        assert "Traceback" not in stderr
    load_image(out)  # one complete build
    assert json.loads((out / "report.json").read_text())["tiles_used"] >= 1
    assert (out / "notes.txt").read_text() == "mine"
    assert leftovers(out) == []


def test_a_writer_waits_for_the_lock_and_gives_up_with_one_line(model, tmp_path, cli, monkeypatch):
    out = tmp_path / "build"
    holder = subprocess.Popen([sys.executable, "-c", "import sys\nfrom small.fileio import output_lock\n"
                               f"with output_lock({str(out)!r}):\n    print('held', flush=True)\n    sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        before = snapshot(tmp_path)
        monkeypatch.setattr(fileio, "LOCK_TIMEOUT", 0.5)
        status, _, err = cli(*compile_args(model, out))
        assert_user_error(status, err, "another SMALL run has been writing")
        assert snapshot(tmp_path) == before
    finally:
        holder.communicate("")
    assert cli(*compile_args(model, out))[0] == 0  # once it is free


# -- what a build folder may replace ---------------------------------------------------------------
def test_a_recompile_keeps_the_users_files_and_drops_what_small_wrote(model, tmp_path, cli):
    out = tmp_path / "build"
    assert cli(*compile_args(model, out))[0] == 0
    (out / "notes.txt").write_text("mine")
    (out / "plots").mkdir()
    (out / "plots" / "a.png").write_bytes(b"png")
    (out / "hdl").mkdir()  # as `small hdl` writes: of the image being replaced
    (out / "hdl" / "small_chip.v").write_text("module stale;")
    (out / "report.html").write_text("<html>stale</html>")
    status, _, err = cli(*compile_args(model, out, "--seed", "1"))
    assert status == 0, err
    assert (out / "notes.txt").read_text() == "mine" and (out / "plots" / "a.png").read_bytes() == b"png"
    assert not (out / "hdl").exists() and not (out / "report.html").exists()
    assert json.loads((out / "image.json").read_text())["seed"] == 1 and leftovers(out) == []


def test_a_folder_that_is_not_a_build_is_replaced_only_with_force_and_its_files_are_kept(model, tmp_path, cli):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    before = snapshot(tmp_path)
    status, _, err = cli(*compile_args(model, mine))
    assert_user_error(status, err, "not a SMALL output folder (no image.json)")
    assert "--force" in err and snapshot(tmp_path) == before
    (mine / "report.json").write_text("{}")  # a file of the user's with a name SMALL writes
    before = snapshot(tmp_path)
    status, _, err = cli(*compile_args(model, mine, "--force"))
    assert_user_error(status, err, "report.json' is not SMALL's")
    assert snapshot(tmp_path) == before
    (mine / "report.json").unlink()
    status, _, err = cli(*compile_args(model, mine, "--force"))
    assert status == 0, err
    assert (mine / "thesis.tex").read_text() == "precious"
    load_image(mine)


def test_the_current_folder_is_refused_with_one_line(model, tmp_path, cli, monkeypatch):
    out = tmp_path / "build"
    assert cli(*compile_args(model, out))[0] == 0
    for cwd in (out, tmp_path / "empty"):
        cwd.mkdir(exist_ok=True)
        monkeypatch.chdir(cwd)
        before = snapshot(tmp_path)
        for target in (".", cwd):
            status, _, err = cli(*compile_args(model, target))
            assert_user_error(status, err, "is the current folder or holds it")
            assert snapshot(tmp_path) == before
    (out / "hdl").mkdir()
    monkeypatch.chdir(out / "hdl")
    status, _, err = cli(*compile_args(model, ".."))
    assert_user_error(status, err, "is the current folder or holds it")


def test_a_symlink_to_a_folder_is_written_through(model, tmp_path, cli):
    target = tmp_path / "real"
    link = tmp_path / "link"
    link.symlink_to(target, target_is_directory=True)  # dangling until the first compile
    for seed in ("0", "1"):
        status, _, err = cli(*compile_args(model, link, "--seed", seed))
        assert status == 0, err
        assert link.is_symlink() and os.readlink(link) == str(target)
        assert json.loads((target / "image.json").read_text())["seed"] == int(seed)
    assert leftovers(target) == [] and leftovers(link) == []


def test_an_output_path_that_is_a_file_is_refused(model, tmp_path, cli):
    (tmp_path / "f").write_text("x")
    before = snapshot(tmp_path)
    status, _, err = cli(*compile_args(model, tmp_path / "f"))
    assert_user_error(status, err, "exists and is not a folder")
    assert snapshot(tmp_path) == before


# -- l2l eval --save-model -------------------------------------------------------------------------
def test_save_model_never_overwrites_a_config_small_did_not_write(tmp_path, cli):
    config = tmp_path / "config.toml"
    config.write_text('[run]\ntask = "function"\ngenerations = 1\nseed = 1\n\n[optimizer]\nname = "cmaes"\n'
                      'popsize = 4\nsigma0 = 0.3\n\n[task]\nfunction = "rosenbrock"\nn = 3\n')
    run = tmp_path / "run"
    assert cli("l2l", "run", config, "-o", run, "--workers", "0")[0] == 0
    users = tmp_path / "mine"
    users.mkdir()
    (users / "config.toml").write_text("# my own\n")
    for folder in (users, run):  # a user's file; a run folder's (`l2l eval` reads it there)
        before = snapshot(tmp_path)
        status, _, err = cli("l2l", "eval", run, "--save-model", folder)
        assert_user_error(status, err, "config.toml' is not part of a model SMALL wrote")
        assert snapshot(tmp_path) == before
    model_dir = tmp_path / "model"
    for _ in range(2):  # a new folder, then one --save-model wrote
        status, _, err = cli("l2l", "eval", run, "--save-model", model_dir)
        assert status == 0, err
        assert (model_dir / "config.toml").read_text() == config.read_text() and (model_dir / "model.npz").is_file()


# -- simulators die with small verify --------------------------------------------------------------
@pytest.mark.rtl
@pytest.mark.parametrize("simulator, running, sig", [
    ("icarus", "vvp", signal.SIGKILL),  # the simulation
    ("icarus", "vvp", signal.SIGTERM),
    ("verilator", "cc1plus", signal.SIGKILL),  # the build: make's compilers, grandchildren of SMALL's
], ids=["vvp-SIGKILL", "vvp-SIGTERM", "verilator-build-SIGKILL"])
def test_a_killed_verify_leaves_no_simulator_running(tmp_path, cli, simulator, running, sig):
    from test_cli_hdl import build
    from test_compile import random_input

    b = build(tmp_path / "net")
    assert cli("hdl", b)[0] == 0
    np.save(tmp_path / "x.npy", random_input(0, steps=200, batch=1).astype(np.float32))  # a minute of vvp
    proc = subprocess.Popen([sys.executable, "-m", "small", "verify", b, "--simulator", simulator, "--inputs",
                             tmp_path / "x.npy"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    children = []
    while running not in names(children):
        assert proc.poll() is None and time.monotonic() < deadline, f"{running} never started"
        time.sleep(0.1)
        with contextlib.suppress(psutil.NoSuchProcess):
            children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(sig)
    proc.wait()
    gone, alive = psutil.wait_procs(children, timeout=5)
    assert not names(alive), names(alive)


def names(processes: list[psutil.Process]) -> list[str]:
    """The names of those of ``processes`` still running (a zombie has ended)."""
    running = []
    for p in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            if p.status() != psutil.STATUS_ZOMBIE:
                running.append(p.name())
    return running
