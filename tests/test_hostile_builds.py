"""A real ``small compile`` killed at every rename of its output, and compiles racing each other and
a reader (issue 21, point 6). ``tests/test_build_folders.py`` kills a stand-in writer at every step
of :func:`small.fileio.atomic_directory`; here the writer is the command itself, with every file
it writes, and the reader is ``small simulate`` on the build.

A killed compile leaves the previous build or the new one under the name, never neither and never
half of one, and the next compile cleans up; a reader of a build that is being replaced sees one
whole build, old or new.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import small.fileio as fileio
from compiler.image import load_image
from test_build_folders import leftovers
from test_hostile_files import fx, holds_the_contract, small  # noqa: F401  (fx: the fixture)


def compile_argv(fx, out: Path, seed: int) -> list:
    # --levels differs with the seed, so two builds differ in both image.json and image.npz
    return ["compile", fx["model"], "--dt", "1e-3", "--tile", "8x8", "--levels", str(4 + seed), "--seed", str(seed),
            "--test-set", fx["test_set"], "-o", out]


def forked(run, *, kill_at: int = 0) -> int:
    """Run ``run()`` in a forked child whose ``kill_at``-th rename, exchange or removal of a folder
    ends it at once (``os._exit``, as SIGKILL would: no clean-up runs); its exit status, and the
    number of such steps it took (printed to a pipe) when it was not killed."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest, no return
        os.close(read)
        steps = 0

        def dying(step):
            def counted(*args, **kwargs):
                nonlocal steps
                steps += 1
                if steps == kill_at:
                    os._exit(9)
                return step(*args, **kwargs)
            return counted

        os.rename, os.replace = dying(os.rename), dying(os.replace)
        fileio.shutil.rmtree, fileio._exchange = dying(fileio.shutil.rmtree), dying(fileio._exchange)
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
            status = run()
        os.write(write, str(steps).encode())
        os._exit(status)
    os.close(write)
    with os.fdopen(read) as pipe:
        steps = pipe.read()
    _, code = os.waitpid(pid, 0)
    status = os.waitstatus_to_exitcode(code)
    return status if kill_at else int(steps)


def build_of(folder: Path, builds: dict[str, bytes]) -> str:
    """Which of ``builds`` (name -> image.json bytes) ``folder`` holds, whole: its image loads and its
    image.json is that build's."""
    load_image(folder)
    text = (folder / "image.json").read_bytes()
    return next(name for name, json_bytes in builds.items() if json_bytes == text)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_compile_killed_at_every_rename_leaves_a_whole_build_and_the_next_compile_cleans_up(fx, tmp_path):
    out = tmp_path / "build"
    builds = {}
    for seed in (1, 0):  # the new build, then the old one in place
        assert small(*compile_argv(fx, out, seed))[0] == 0
        builds["new" if seed else "old"] = (out / "image.json").read_bytes()
    (out / "notes.txt").write_text("mine")
    steps = forked(lambda: small(*compile_argv(fx, out, 1))[0])
    assert small(*compile_argv(fx, out, 0))[0] == 0
    assert steps >= 6, steps  # the files' own renames, then the swap's
    for k in range(1, steps + 1):
        assert forked(lambda: small(*compile_argv(fx, out, 1))[0], kill_at=k) == 9, k
        # the exchange swaps both names in one step: the name always holds a whole build
        assert build_of(out, builds) in ("old", "new"), k
        # the next run finishes the killed one's work first (the user's file, if the kill fell between the
        # exchange and its return, is still in the folder the exchange took out)
        status, _, err = small(*compile_argv(fx, out, 0))
        assert status == 0, (k, err)
        assert build_of(out, builds) == "old" and (out / "notes.txt").read_text() == "mine", k
        assert leftovers(out) == [], (k, leftovers(out))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_concurrent_compiles_and_a_reader_see_whole_builds_only(fx, tmp_path):
    out = tmp_path / "build"
    builds = {}
    for seed in (1, 2, 0):
        assert small(*compile_argv(fx, out, seed))[0] == 0
        builds[str(seed)] = (out / "image.json").read_bytes()
    (out / "notes.txt").write_text("mine")
    writers = []
    for seed in (1, 2, 1, 2):
        pid = os.fork()
        if pid == 0:
            with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
                status = small(*compile_argv(fx, out, seed))[0]
            os._exit(status)
        writers.append(pid)
    statuses, seen = {}, set()
    deadline = time.monotonic() + 120
    while len(statuses) < len(writers) and time.monotonic() < deadline:
        status, _, err = small("simulate", out, "--input", fx["x"], "--output", tmp_path / "y.npy")
        assert status == 0, err  # never a build missing, half old and half new, or "edited"
        assert np.load(tmp_path / "y.npy").shape == (12, 2, 3)
        seen.add(build_of(out, builds))
        for pid in set(writers) - set(statuses):
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                statuses[pid] = os.waitstatus_to_exitcode(code)
    assert sorted(statuses.values()) == [0, 0, 0, 0], statuses
    assert build_of(out, builds) in ("1", "2") and (out / "notes.txt").read_text() == "mine"
    assert leftovers(out) == []
