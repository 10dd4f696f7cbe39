"""Hostile input at scale (issue 21): many malformed files, arrays and option strings per family,
each run through the ``small`` command line, checked against its contract.

Run from the repository root with the project's environment::

    .venv/bin/python bench/hostile.py                       # every family, 120 cases each, 2 workers
    .venv/bin/python bench/hostile.py --cases 20 --families nir-bytes options
    .venv/bin/python bench/hostile.py --show 5              # also print 5 unclean cases per family

The families
------------
Every case starts from the same fixtures (made once per worker in a temporary folder): a NIR
model (Input -> Affine -> LIF -> Output, 4 -> 3), its ``test_set.npz``, the ``.small`` network of
it, a digital build (``small compile --tile 8x8``), a fault map and a calibration file. A case
changes one of them (seeded by the family and the case's number) and runs one command on it:

* ``nir-bytes``: 1-8 random bytes of the ``.nir`` (HDF5) file flipped, or the file truncated;
  ``import``, ``simulate``, ``compile`` or ``to-nir`` on it.
* ``small-bytes``: the same for the ``.small`` archive; ``import``, ``simulate``, ``compile``.
* ``image-bytes``: bytes of ``image.json`` or ``image.npz`` flipped or the file truncated;
  ``simulate BUILD``, ``report BUILD``, ``hdl BUILD``.
* ``image-fields``: one field of ``image.json`` (any depth) replaced by a hostile value (huge,
  negative, fractional, another type), removed, or a field added; the checksum recomputed (or
  removed, as the refusal of a hand edit suggests), so the schema and the checks behind it are
  what stand in the way. The same commands.
* ``image-arrays``: one array of ``image.npz`` replaced by one of another shape or dtype (or
  removed, or an extra one added), with both checksums recomputed.
* ``faults``: a fault map with bytes flipped, or a field replaced; ``compile --target memristive
  --faults``.
* ``calibration``: the same for a calibration file; ``compile --target memristive --calibration``.
* ``inputs``: a ``.npy`` input of random shape (0-4 axes, sizes 0-70) and dtype (bool, ints,
  floats, complex, strings, structured, datetime), sometimes holding NaN, Inf or extremes;
  ``simulate`` on the model or on the build.
* ``test-set``: a ``test_set.npz`` with random ``x``/``labels`` arrays (or missing, extra, pickled
  members); ``compile --test-set``.
* ``options``: one to three random options (from the command's own option list, or unknown
  ones) with random values (empty, huge, negative, NaN, non-ASCII digits, 5,000 digits, ...)
  added to a working command line: ``compile``, ``simulate``, ``import``, ``to-nir``, ``faults
  random``, ``hdl``, ``report``, ``analog crossbar``.
* ``wrong-files``: every command (``flow``, ``finetune``, ``chip``, ``load``, ``run``, ``verify``,
  ``export``, ``sweep``, ``l2l run/resume/eval`` and the others) given, where a file or folder
  belongs, one of another kind: missing, empty, a folder, text, random bytes, a symlink loop, or
  another of SMALL's files.

What is measured
----------------
A case is *clean* when the command either succeeds (exit 0: the change was harmless) or fails as
a user error: exit status 2, exactly one line on stderr that is not a warning, no traceback, and
the case's folder (inputs, outputs and anything beside them) byte for byte as it was. It is
unclean on a traceback, another exit status, a changed folder, more than 30 s or more than 2 GiB.

Cases run in worker processes (``--jobs``) that call ``small.cli.main`` in-process; before each
case the worker resets its memory high-water mark (``/proc/self/clear_refs``), so ``peak RSS`` is
the case's own (the worker's resident fixtures and imports included). A case still running after
``--timeout`` seconds has its worker killed and counts as unclean. Workers run with an address
space limit (``--address-limit``, 8 GiB), so an allocation a size check missed shows up as a
traceback (``MemoryError``) instead of exhausting the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from test_hostile_files import COMMANDS  # noqa: E402  (the option lists of the tests' commands)
from test_build_folders import snapshot  # noqa: E402

GIB = 2**30
FAMILIES = ("nir-bytes", "small-bytes", "image-bytes", "image-fields", "image-arrays", "faults", "calibration",
            "inputs", "test-set", "options", "wrong-files")
CALIBRATION = {"schema": 1, "device": "pcm", "levels": 5, "g_min_uS": 0.0, "g_max_uS": 25.0}

# values a hostile file or user puts where a number, a list or a name belongs
HOSTILE_JSON = [0, -1, 1, 2, 3, 255, 256, 2**31, 2**63, 2**64, 10**12, -10**12, 10**100, 0.5, -0.0, 1e308, -1e308,
                "", "x", "0", "NaN", None, True, False, [], [0], [1, 2, 3], [-1, -1], [[1]], {}, {"a": 1}]
HOSTILE_TEXT = ["0", "-1", "1", "2", "3", "1.5", "-0", "1e309", "nan", "inf", "-inf", "", " ", "x", "0x10", "1_000",
                "\u0663", "\uff11\uff12", "9" * 5000, str(2**64), str(2**63), "1e-320", "0x0", "1x1", "8x8",
                "99999x99999", "100000000x1", "4096", "100000", "1000000000", "4x", "x4", "-4x4", "4x4x4", "64X64", "4,8", ",", "4,,8", "-", "--",
                "none", "icebreaker", "digital", "memristive", "metis", "\u00e9\u00e8", "a\tb", "../../etc/passwd"]


# -- the fixtures ------------------------------------------------------------------------------------
def make_fixtures(folder: Path) -> dict[str, Path]:
    """The files every case starts from (see the module's docstring)."""
    import nir

    from compiler.faults import random_faults, save_faults
    from small.cli import main
    from small.fileio import write_npz

    w = np.full((3, 4), 0.6, dtype=np.float32)
    graph = nir.NIRGraph(nodes={
        "input": nir.Input(input_type={"input": np.array([4])}),
        "fc": nir.Affine(weight=w, bias=np.zeros(3, dtype=np.float32)),
        "lif": nir.LIF(tau=np.full(3, 2e-3), r=np.full(3, 2.0), v_leak=np.zeros(3), v_threshold=np.ones(3)),
        "output": nir.Output(output_type={"output": np.array([3])}),
    }, edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")], type_check=False)
    model = folder / "model.nir"
    nir.write(model, graph)
    rng = np.random.default_rng(0)
    write_npz(folder / "test_set.npz", {"x": (rng.random((12, 6, 4)) < 0.4).astype(np.float32),
                                       "labels": rng.integers(0, 3, 6)})
    np.save(folder / "x.npy", (rng.random((12, 2, 4)) < 0.4).astype(np.float32))
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        for argv in (["import", model, "--dt", "1e-3", "-o", folder / "net.small"],
                     ["compile", model, "--dt", "1e-3", "--tile", "8x8", "-o", folder / "build"]):
            status = main([str(a) for a in argv])
            assert status == 0, quiet.getvalue()
    save_faults(random_faults(4, 8, 8, 0.05, seed=0), folder / "chip.json")
    (folder / "calib.json").write_text(json.dumps(CALIBRATION))
    return {"model": model, "small": folder / "net.small", "build": folder / "build", "faults": folder / "chip.json",
            "calibration": folder / "calib.json", "test_set": folder / "test_set.npz", "x": folder / "x.npy"}


# -- mutations ------------------------------------------------------------------------------------------
def flip_bytes(data: bytes, rng: np.random.Generator) -> bytes:
    """1-8 random bytes of ``data`` replaced by random values, or ``data`` truncated (a third of the time)."""
    if not data or rng.random() < 1 / 3:
        return data[: int(rng.integers(0, max(len(data), 1)))]
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 9))):
        out[int(rng.integers(len(out)))] = int(rng.integers(256))
    return bytes(out)


def json_paths(doc, prefix=()) -> list[tuple]:
    """Every path (tuple of keys and indices) into ``doc``, the root excluded."""
    paths = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        paths.append((*prefix, key))
        if len(paths) < 2000:
            paths.extend(json_paths(value, (*prefix, key)))
    return paths


def mutate_json(doc, rng: np.random.Generator):
    """``doc`` (a JSON value) with one field replaced by a hostile value, removed, or one added."""
    doc = json.loads(json.dumps(doc))
    paths = json_paths(doc)
    if not paths:
        return HOSTILE_JSON[int(rng.integers(len(HOSTILE_JSON)))]
    path = paths[int(rng.integers(len(paths)))]
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    action = rng.random()
    if action < 0.15:
        del parent[path[-1]]
    elif action < 0.25 and isinstance(parent, dict):
        parent["extra_" + str(int(rng.integers(100)))] = 1
    elif action < 0.35 and isinstance(parent[path[-1]], (int, float)) and not isinstance(parent[path[-1]], bool):
        parent[path[-1]] = parent[path[-1]] + int(rng.choice([-2, -1, 1, 2, 1000]))  # near miss
    else:
        parent[path[-1]] = HOSTILE_JSON[int(rng.integers(len(HOSTILE_JSON)))]
    return doc


def random_array(rng: np.random.Generator, *, max_axes: int = 4, max_size: int = 70) -> np.ndarray:
    """An array of random shape and dtype, sometimes holding NaN, Inf or extreme values."""
    shape = tuple(int(rng.choice([0, 1, 2, 3, 4, 5, 12, rng.integers(0, max_size + 1)]))
                  for _ in range(int(rng.integers(0, max_axes + 1))))
    kind = rng.choice(["bool", "int8", "uint8", "int16", "int32", "int64", "uint64", "float16", "float32", "float64",
                       "complex64", "U3", "S2", "datetime64[s]", "structured", "float32>"])
    n = int(np.prod(shape))
    if kind == "structured":
        return np.zeros(shape, dtype=[("a", "f4"), ("b", "i2")])
    if kind == "float32>":
        return (rng.random(shape) < 0.4).astype(">f4")
    if kind in ("U3", "S2"):
        return np.full(shape, "1", dtype=kind)
    if kind == "datetime64[s]":
        return np.zeros(shape, dtype=kind)
    dtype = np.dtype(str(kind))
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = rng.choice([0, 1, info.min, info.max], size=n)
    elif dtype.kind == "b":
        values = rng.random(n) < 0.5
    else:
        values = rng.choice([0.0, 1.0, 0.5, -1.0, 1e30, -1e30, np.nan, np.inf, -np.inf, 1e-40], size=n,
                            p=[0.4, 0.3, 0.1, 0.05, 0.03, 0.03, 0.03, 0.03, 0.02, 0.01])
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(values).astype(dtype).reshape(shape)


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def rehash_image(build: Path, meta: dict, *, drop_json_sum: bool) -> None:
    """Write ``meta`` as ``build``'s image.json with checksums that match what is now on disk."""
    import hashlib

    from compiler.image import json_checksum

    if isinstance(meta, dict):
        if (build / "image.npz").is_file() and "arrays_sha256" in meta:
            meta["arrays_sha256"] = hashlib.sha256((build / "image.npz").read_bytes()).hexdigest()
        meta.pop("json_sha256", None)
        if not drop_json_sum:
            with contextlib.suppress(ValueError, TypeError):
                meta["json_sha256"] = json_checksum(meta)
    (build / "image.json").write_text(json.dumps(meta, indent=1))


def build_commands(rng: np.random.Generator, fx: dict, work: Path, build: Path) -> list:
    """A command on the (changed) build ``build``."""
    cmd = rng.choice(["simulate", "simulate", "report", "hdl"], p=[0.45, 0.2, 0.2, 0.15])
    if cmd == "simulate":
        return ["simulate", build, "--input", fx["x"], "--output", work / "y.npy"]
    return [str(cmd), build]


def model_command(rng: np.random.Generator, model: Path, fx: dict, work: Path, *, nir: bool) -> list:
    dt = ["--dt", "1e-3"] if nir else []
    cmd = rng.choice(["import", "simulate", "compile", "to-nir"] if nir else ["import", "simulate", "compile"])
    if cmd == "import":
        return ["import", model, *dt, "-o", work / "out.small"]
    if cmd == "to-nir":
        return ["to-nir", model, *dt, "-o", work / "out.nir"]
    if cmd == "simulate":
        return ["simulate", model, *dt, "--input", fx["x"], "--output", work / "y.npy", "--membrane", work / "m.npz"]
    return ["compile", model, *dt, "--tile", "8x8", "--test-set", fx["test_set"], "-o", work / "out"]


def case_nir_bytes(rng, fx, work):
    model = write_bytes(work / "model.nir", flip_bytes(fx["model"].read_bytes(), rng))
    return model_command(rng, model, fx, work, nir=True)


def case_small_bytes(rng, fx, work):
    model = write_bytes(work / "net.small", flip_bytes(fx["small"].read_bytes(), rng))
    return model_command(rng, model, fx, work, nir=False)


def _copy_build(fx, work) -> Path:
    build = work / "build"
    shutil.copytree(fx["build"], build)
    return build


def case_image_bytes(rng, fx, work):
    build = _copy_build(fx, work)
    target = build / ("image.json" if rng.random() < 0.5 else "image.npz")
    write_bytes(target, flip_bytes(target.read_bytes(), rng))
    return build_commands(rng, fx, work, build)


def case_image_fields(rng, fx, work):
    build = _copy_build(fx, work)
    meta = mutate_json(json.loads((build / "image.json").read_text()), rng)
    rehash_image(build, meta, drop_json_sum=rng.random() < 0.3)
    return build_commands(rng, fx, work, build)


def case_image_arrays(rng, fx, work):
    from small.fileio import write_npz

    build = _copy_build(fx, work)
    with np.load(build / "image.npz") as data:
        arrays = {k: data[k] for k in data.files}
    key = sorted(arrays)[int(rng.integers(len(arrays)))]
    action = rng.random()
    if action < 0.1:
        del arrays[key]
    elif action < 0.2:
        arrays["extra"] = np.zeros(3)
    elif action < 0.55:  # the same shape, other values or another dtype
        old = arrays[key]
        values = rng.choice([0, 1, -1, 127, -128, 255, 32767, -32768, 2**31 - 1, 2**40], size=old.shape)
        with np.errstate(over="ignore", invalid="ignore"):
            arrays[key] = values.astype(rng.choice([old.dtype, np.int64, np.float64, np.uint8, np.int8]))
    else:
        arrays[key] = random_array(rng)
    if any(a.dtype.hasobject for a in arrays.values()):
        arrays.pop(key)
    write_npz(build / "image.npz", arrays)
    rehash_image(build, json.loads((build / "image.json").read_text()), drop_json_sum=False)
    return build_commands(rng, fx, work, build)


def _json_case(rng, source: Path, work: Path) -> Path:
    target = work / source.name
    if rng.random() < 0.35:
        return write_bytes(target, flip_bytes(source.read_bytes(), rng))
    doc = json.loads(source.read_text())
    for _ in range(int(rng.integers(1, 3))):
        doc = mutate_json(doc, rng)
    target.write_text(json.dumps(doc))
    return target


def case_faults(rng, fx, work):
    faults = _json_case(rng, fx["faults"], work)
    return ["compile", fx["model"], "--dt", "1e-3", "--tile", "8x8", "--target", "memristive", "--faults", faults,
            "-o", work / "out"]


def case_calibration(rng, fx, work):
    cal = _json_case(rng, fx["calibration"], work)
    return ["compile", fx["model"], "--dt", "1e-3", "--tile", "8x8", "--target", "memristive", "--calibration", cal,
            "-o", work / "out"]


def case_inputs(rng, fx, work):
    x = work / "x.npy"
    np.save(x, random_array(rng), allow_pickle=False)
    if rng.random() < 0.5:
        return ["simulate", fx["model"], "--dt", "1e-3", "--input", x, "--output", work / "y.npy"]
    return ["simulate", fx["build"], "--input", x, "--output", work / "y.npy"]


def case_test_set(rng, fx, work):
    members = {"x": random_array(rng) if rng.random() < 0.7 else np.zeros((12, 6, 4), np.float32),
               "labels": random_array(rng, max_axes=2) if rng.random() < 0.7 else np.zeros(6, np.int64)}
    if rng.random() < 0.1:
        members.pop(str(rng.choice(["x", "labels"])))
    if rng.random() < 0.1:
        members["extra"] = np.zeros(2)
    test = work / "test.npz"
    with zipfile.ZipFile(test, "w") as zf:
        for key, value in members.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, value, allow_pickle=False)
            zf.writestr(key + ".npy", buf.getvalue())
    if rng.random() < 0.05:  # a pickled member
        with zipfile.ZipFile(test, "a") as zf:
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
            zf.writestr("obj.npy", buf.getvalue())
    return ["compile", fx["model"], "--dt", "1e-3", "--tile", "8x8", "--test-set", test, "-o", work / "out"]


# the working command lines the options family adds to, and the options each one takes: the tests'
# (tests/test_hostile_files.py) and slower ones
OPTION_COMMANDS = {
    **COMMANDS,
    "simulate-build": (lambda fx, w: ["simulate", fx["build"], "--input", fx["x"], "--output", w / "y.npy"],
                       ["--dt", "--membrane", "--input"]),
    "to-nir": (lambda fx, w: ["to-nir", fx["small"], "-o", w / "out.nir"], ["--dt", "--framework", "--reset"]),
    "hdl": (lambda fx, w: ["hdl", _copy_build(fx, w)], ["--lanes"]),
    "report": (lambda fx, w: ["report", _copy_build(fx, w)], ["--screenshot-size"]),
}


def case_options(rng, fx, work):
    name = sorted(OPTION_COMMANDS)[int(rng.integers(len(OPTION_COMMANDS)))]
    base, flags = OPTION_COMMANDS[name]
    argv = base(fx, work)
    for _ in range(int(rng.integers(1, 4))):
        flag = flags[int(rng.integers(len(flags)))] if rng.random() < 0.9 else "--no-such-option"
        value = HOSTILE_TEXT[int(rng.integers(len(HOSTILE_TEXT)))]
        if rng.random() < 0.15:  # a value where a file belongs, or a file where a value belongs
            value = str(rng.choice([fx["x"], fx["model"], fx["build"], work / "missing", work]))
        argv += [flag, value] if rng.random() < 0.95 else [flag]
    return argv


# every command with one file argument to fill: (the argument's kind, the command line around it)
FILE_SLOTS = [
    ("model", lambda f, fx, w: ["import", f, "-o", w / "out.small"]),
    ("model", lambda f, fx, w: ["to-nir", f, "-o", w / "out.nir"]),
    ("model", lambda f, fx, w: ["simulate", f, "--input", fx["x"], "--output", w / "y.npy"]),
    ("npy", lambda f, fx, w: ["simulate", fx["model"], "--dt", "1e-3", "--input", f, "--output", w / "y.npy"]),
    ("model", lambda f, fx, w: ["flow", f, "-o", w / "out", "--board", "none"]),
    ("model", lambda f, fx, w: ["compile", f, "-o", w / "out"]),
    ("json", lambda f, fx, w: ["compile", fx["model"], "--dt", "1e-3", "--target", "memristive", "--faults", f,
                               "-o", w / "out"]),
    ("json", lambda f, fx, w: ["compile", fx["model"], "--dt", "1e-3", "--target", "memristive", "--calibration", f,
                               "-o", w / "out"]),
    ("npz", lambda f, fx, w: ["compile", fx["model"], "--dt", "1e-3", "--test-set", f, "-o", w / "out"]),
    ("folder", lambda f, fx, w: ["compile", fx["model"], "--dt", "1e-3", "--chip", f, "-o", w / "out"]),
    ("model", lambda f, fx, w: ["finetune", f, "--data", fx["test_set"], "--test", fx["test_set"], "-o", w / "out"]),
    ("npz", lambda f, fx, w: ["finetune", fx["model"], "--data", f, "--test", fx["test_set"], "-o", w / "out"]),
    ("toml", lambda f, fx, w: ["chip", f, "-o", w / "chip"]),
    ("folder", lambda f, fx, w: ["load", f, "--chip", w / "chip", "--port", "sim"]),
    ("folder", lambda f, fx, w: ["run", f, "--chip", w / "chip", "--port", "sim", "--output", w / "y.npz"]),
    ("folder", lambda f, fx, w: ["hdl", f]),
    ("folder", lambda f, fx, w: ["verify", f, "--simulator", "icarus"]),
    ("npy", lambda f, fx, w: ["verify", fx["build"], "--simulator", "icarus", "--inputs", f]),
    ("folder", lambda f, fx, w: ["export", f, "--netlist"]),
    ("folder", lambda f, fx, w: ["report", f]),
    ("model", lambda f, fx, w: ["sweep", f, "--workers", "0", "-o", w / "sweep"]),
    ("npz", lambda f, fx, w: ["sweep", fx["model"], "--dt", "1e-3", "--test-set", f, "--workers", "0", "-o", w / "sweep"]),
    ("toml", lambda f, fx, w: ["l2l", "run", f, "--workers", "0", "-o", w / "run"]),
    ("folder", lambda f, fx, w: ["l2l", "resume", f, "--workers", "0"]),
    ("folder", lambda f, fx, w: ["l2l", "eval", f, "--n", "1", "--no-baseline"]),
    ("npz", lambda f, fx, w: ["l2l", "eval", ROOT / "examples" / "arm", "--trajectories", f, "--no-baseline",
                              "--hardware", "float", "--plots", w / "plots"]),
    ("npy", lambda f, fx, w: ["analog", "crossbar", "--rows", "4", "--cols", "4", "--conductances", f]),
    ("npy", lambda f, fx, w: ["analog", "crossbar", "--rows", "4", "--cols", "4", "--v-rows", f]),
]


def wrong_file(rng: np.random.Generator, fx: dict, work: Path, kind: str) -> Path:
    """A path where a file of ``kind`` belongs that holds something else (or nothing)."""
    pool = {"missing": work / "missing", "empty": work / "empty.nir", "folder": work / "folder",
            "text": work / "notes.txt", "bytes": work / "random.bin", "loop": work / "loop", "model": fx["model"],
            "npy": fx["x"], "npz": fx["test_set"], "json": fx["faults"], "toml": fx["faults"].with_suffix(".toml")}
    (work / "empty.nir").write_bytes(b"")
    (work / "folder").mkdir(exist_ok=True)
    (work / "notes.txt").write_text("hello\n")
    (work / "random.bin").write_bytes(rng.integers(0, 256, int(rng.integers(1, 5000)), dtype=np.uint8).tobytes())
    if not os.path.lexists(work / "loop"):
        os.symlink(work / "loop", work / "loop")
    choices = sorted(k for k in pool if k != kind and not (kind == "folder" and k == "folder"))
    return pool[choices[int(rng.integers(len(choices)))]]


def case_wrong_files(rng, fx, work):
    kind, command = FILE_SLOTS[int(rng.integers(len(FILE_SLOTS)))]
    return command(wrong_file(rng, fx, work, kind), fx, work)


CASES = {name: globals()["case_" + name.replace("-", "_")] for name in FAMILIES}


# -- running a case ------------------------------------------------------------------------------------
def verdict(status, err: str, before: dict, after: dict) -> str:
    """'' for a clean case, else what broke the contract."""
    if status == "traceback" or "Traceback" in err:
        return "traceback"
    if status == 0:
        return ""
    if status != 2:
        return f"exit {status}"
    lines = [line for line in err.splitlines() if not line.startswith("warning: ")]
    if len(lines) != 1 or not lines[0].startswith("small"):
        return f"{len(lines)} error lines"
    if before != after:
        changed = sorted(set(before) ^ set(after) | {k for k in before if k in after and before[k] != after[k]})
        return f"wrote {changed[:3]}"
    return ""


def reset_peak() -> None:
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def run_case(family: str, index: int, seed: int, fx: dict, root: Path) -> dict:
    from small.cli import main

    rng = np.random.default_rng([seed, FAMILIES.index(family), index])
    work = root / f"{family}-{index}"
    work.mkdir()
    argv = [str(a) for a in CASES[family](rng, fx, work)]
    before = snapshot(root)
    out, err = io.StringIO(), io.StringIO()
    reset_peak()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as exc:
            status = exc.code
        except BaseException:  # noqa: BLE001 - what the contract forbids, recorded
            traceback.print_exc()
            status = "traceback"
    seconds = time.perf_counter() - t0
    rss = peak_rss()
    text = err.getvalue()
    problem = verdict(status, text, before, snapshot(root) if status != 0 else before)
    shutil.rmtree(work, ignore_errors=True)
    return {"family": family, "index": index, "status": status, "clean": not problem, "problem": problem,
            "seconds": seconds, "rss": rss, "argv": argv, "stderr": text[-3000:]}


def worker(seed: int, address_limit: float) -> None:
    """Read ``family index`` lines on stdin, answer one JSON line each."""
    import warnings

    if address_limit:
        limit = int(address_limit * GIB)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    warnings.simplefilter("default")
    with tempfile.TemporaryDirectory(prefix="small-hostile-") as tmp:
        (Path(tmp) / "fixtures").mkdir()
        fx = make_fixtures(Path(tmp) / "fixtures")
        cases = Path(tmp) / "cases"
        cases.mkdir()
        print("ready", flush=True)
        for line in sys.stdin:
            family, index = line.split()
            root = cases / f"{family}-{index}"
            root.mkdir()
            result = run_case(family, int(index), seed, fx, root)
            shutil.rmtree(root, ignore_errors=True)
            print(json.dumps(result), flush=True)


class Worker:
    """A ``--worker`` process; restarted after a case it had to be killed for."""

    def __init__(self, args):
        self.args = args
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", "--seed", str(self.args.seed),
                                      "--address-limit", str(self.args.address_limit)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.proc.stdout.readline().strip() == "ready"

    def send(self, family: str, index: int) -> None:
        self.case, self.t0 = (family, index), time.monotonic()
        self.proc.stdin.write(f"{family} {index}\n")
        self.proc.stdin.flush()


def run_all(args) -> list[dict]:
    import selectors

    queue = [(f, i) for i in range(args.cases) for f in args.families]
    workers = [Worker(args) for _ in range(min(args.jobs, len(queue)))]
    results, busy, reported = [], {}, 0
    sel = selectors.DefaultSelector()
    for w in workers:
        sel.register(w.proc.stdout, selectors.EVENT_READ, w)
    while queue or busy:
        for w in workers:
            if w not in busy.values() and queue:
                w.send(*queue.pop(0))
                busy[w.proc.stdout] = w
        for key, _ in sel.select(timeout=1.0):
            w = key.data
            line = w.proc.stdout.readline()
            if not line:
                raise SystemExit(f"worker died on case {w.case}")
            results.append(json.loads(line))
            busy.pop(w.proc.stdout)
        for stream, w in list(busy.items()):
            if time.monotonic() - w.t0 > args.timeout:
                sel.unregister(stream)
                w.proc.kill()
                w.proc.wait()
                results.append({"family": w.case[0], "index": w.case[1], "status": "killed", "clean": False,
                                "problem": f"over {args.timeout:g} s", "seconds": time.monotonic() - w.t0,
                                "rss": 0, "argv": [], "stderr": ""})
                busy.pop(stream)
                w.start()
                sel.register(w.proc.stdout, selectors.EVENT_READ, w)
        if len(results) // 100 > reported:
            reported = len(results) // 100
            print(f"  {len(results)} of {len(results) + len(queue) + len(busy)} cases run", file=sys.stderr, flush=True)
    for w in workers:
        w.proc.stdin.close()
        w.proc.wait()
    return results


def machine() -> str:
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / GIB
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}"


def table(results: list[dict], args) -> str:
    rows = ["| family | cases | clean | worst peak RSS | worst time | commands |", "|---|---:|---:|---:|---:|---|"]
    for family in args.families:
        mine = [r for r in results if r["family"] == family]
        if not mine:
            continue
        commands = sorted({r["argv"][0] + (" " + r["argv"][1] if r["argv"][0] in ("analog", "faults") else "")
                           for r in mine if r["argv"]})
        rows.append(f"| {family} | {len(mine)} | {sum(r['clean'] for r in mine)} | "
                    f"{max(r['rss'] for r in mine) / GIB:.2f} GiB | {max(r['seconds'] for r in mine):.1f} s | "
                    f"{', '.join(commands)} |")
    total = len(results)
    rows.append(f"| **all** | {total} | {sum(r['clean'] for r in results)} | "
                f"{max(r['rss'] for r in results) / GIB:.2f} GiB | {max(r['seconds'] for r in results):.1f} s | |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=120, help="cases per family (default 120)")
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before a case is killed (default 30)")
    parser.add_argument("--address-limit", type=float, default=8.0, help="GiB of address space per worker (0: none)")
    parser.add_argument("--show", type=int, default=3, help="unclean cases printed per family (default 3)")
    parser.add_argument("--json", metavar="FILE", help="also write every case's result to FILE")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.seed, args.address_limit)
        return 0
    t0 = time.perf_counter()
    results = run_all(args)
    wall = time.perf_counter() - t0
    results.sort(key=lambda r: (FAMILIES.index(r["family"]), r["index"]))
    print(f"# {machine()}; {args.jobs} workers, seed {args.seed}, {args.cases} cases a family, {wall:.0f} s in all\n")
    print(table(results, args))
    for family in args.families:
        bad = [r for r in results if r["family"] == family and not r["clean"]]
        for r in bad[: args.show]:
            print(f"\n{family} #{r['index']}: {r['problem']} ({r['seconds']:.1f} s)\n  small {' '.join(r['argv'])}\n"
                  + "\n".join("  | " + line for line in r["stderr"].strip().splitlines()[-6:]))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0 if all(r["clean"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
