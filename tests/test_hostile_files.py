"""Hostile files, arrays and option strings, drawn by hypothesis (issue 21, point 6).

Every command meets damaged NIR (HDF5) files, damaged ``.small`` archives, damaged and hand-edited
images (``image.json``, ``image.npz``), fault maps, input arrays of any shape and dtype, and random
option strings. The contract, for every one of them: the command succeeds (the change was
harmless), or it fails as a user error: exit status 2, one line on stderr, no traceback, and
nothing written or changed in the folder it was given. ``bench/hostile.py`` runs many more cases
of the same families and measures their time and memory.

The CLI runs in this process (``small.cli.main``). Examples are few and derandomized, so CI runs
the same cases every time.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import tempfile
from pathlib import Path

import nir
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as npst

from compiler.faults import random_faults, save_faults
from compiler.image import json_checksum
from small.cli import main
from small.fileio import write_npz
from test_build_folders import snapshot
from test_cli import lif_graph

# few, reproducible examples: the suite's budget is seconds, bench/hostile.py runs the many
HOSTILE = settings(max_examples=40, derandomize=True, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# values a hostile file or user puts where a number, a list or a name belongs
JSON_VALUES = st.sampled_from([0, -1, 1, 2, 255, 256, 2**31, 2**63, 2**64, 10**12, -10**12, 10**100, 0.5, -0.0,
                               1e308, "", "x", "0", None, True, [], [0], [-1, -1], [[1]], {}, {"a": 1}])
OPTION_TEXT = st.one_of(
    st.sampled_from(["0", "-1", "1.5", "nan", "inf", "-inf", "1e309", "", " ", "0x10", "1_000", "\u0663", "9" * 5000,
                     str(2**64), "0x0", "1x1", "99999x99999", "4x", "x4", "4x4x4", ",", "-", "--", "4096", "100000"]),
    st.integers(-10**20, 10**20).map(str), st.floats().map(str), st.text(max_size=8))


@pytest.fixture(scope="module")
def fx(tmp_path_factory) -> dict[str, Path]:
    """A NIR model with its test set, its .small network, a digital build, an input and a fault map."""
    folder = tmp_path_factory.mktemp("hostile")
    nir.write(folder / "model.nir", lif_graph())
    rng = np.random.default_rng(0)
    write_npz(folder / "test_set.npz", {"x": (rng.random((12, 6, 4)) < 0.4).astype(np.float32),
                                       "labels": rng.integers(0, 3, 6)})
    np.save(folder / "x.npy", (rng.random((12, 2, 4)) < 0.4).astype(np.float32))
    for argv in (("import", folder / "model.nir", "--dt", "1e-3", "-o", folder / "net.small"),
                 ("compile", folder / "model.nir", "--dt", "1e-3", "--tile", "8x8", "-o", folder / "build")):
        status, _, err = small(*argv)
        assert status == 0, err
    save_faults(random_faults(2, 8, 8, 0.05, seed=0), folder / "chip.json")
    return {"model": folder / "model.nir", "small": folder / "net.small", "build": folder / "build",
            "x": folder / "x.npy", "test_set": folder / "test_set.npz", "faults": folder / "chip.json"}


def small(*argv) -> tuple[int, str, str]:
    """``small`` in this process: (exit status, stdout, stderr). An exception escapes as it is: the
    traceback a user would see fails the test."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse
            status = exc.code
    return status, out.getvalue(), err.getvalue()


def holds_the_contract(folder: Path, *argv) -> tuple[int, str]:
    """Run ``small *argv`` on files in ``folder``; assert it succeeded or failed as a user error
    (exit 2, one line, no traceback, ``folder`` as it was). Its exit status and stdout."""
    before = snapshot(folder)
    status, out, err = small(*argv)
    assert status in (0, 2), (status, err)
    if status == 2:
        errors = [line for line in err.splitlines() if not line.startswith("warning: ")]
        assert len(errors) == 1 and errors[0].startswith("small") and "Traceback" not in err, err
        assert snapshot(folder) == before, f"a failed run changed {folder}: {err}"
    return status, out


@contextlib.contextmanager
def scratch():
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        yield Path(tmp)


# -- damaged bytes ---------------------------------------------------------------------------------
def damage(size: int):
    """A change to a file of ``size`` bytes: a truncation, or 1-8 bytes overwritten."""
    return st.one_of(st.integers(0, size - 1).map(lambda n: ("truncate", n)),
                     st.lists(st.tuples(st.integers(0, size - 1), st.integers(0, 255)), min_size=1, max_size=8)
                     .map(lambda flips: ("flip", flips)))


def damaged(data: bytes, change) -> bytes:
    kind, how = change
    if kind == "truncate":
        return data[:how]
    out = bytearray(data)
    for at, value in how:
        out[at] = value
    return bytes(out)


def model_command(command: str, model: Path, fx, work: Path) -> list:
    dt = ["--dt", "1e-3"] if model.suffix == ".nir" else []
    return {"import": ["import", model, *dt, "-o", work / "out.small"],
            "simulate": ["simulate", model, *dt, "--input", fx["x"], "--output", work / "y.npy"],
            "compile": ["compile", model, *dt, "--tile", "8x8", "-o", work / "out"]}[command]


@HOSTILE
@given(data=st.data(), command=st.sampled_from(["import", "simulate", "compile"]),
       which=st.sampled_from(["model", "small"]))
def test_damaged_nir_and_small_files(fx, data, command, which):
    original = fx[which].read_bytes()
    with scratch() as work:
        model = work / fx[which].name
        model.write_bytes(damaged(original, data.draw(damage(len(original)), label="damage")))
        holds_the_contract(work, *model_command(command, model, fx, work))


@HOSTILE
@given(data=st.data(), member=st.sampled_from(["image.json", "image.npz"]), command=st.sampled_from(["simulate", "report"]))
def test_damaged_images(fx, data, member, command):
    with scratch() as work:
        build = work / "build"
        shutil.copytree(fx["build"], build)
        original = (build / member).read_bytes()
        (build / member).write_bytes(damaged(original, data.draw(damage(len(original)), label="damage")))
        argv = ["simulate", build, "--input", fx["x"], "--output", work / "y.npy"] if command == "simulate" \
            else ["report", build]
        holds_the_contract(work, *argv)


# -- hand-edited files whose checksums were made to match ----------------------------------------------
def paths(doc, prefix=()) -> list[tuple]:
    """Every path (keys and indices) into the JSON value ``doc``."""
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    return [p for key, value in items for p in [(*prefix, key), *paths(value, (*prefix, key))]]


def edit(doc, path: tuple, value):
    """A copy of ``doc`` with the field at ``path`` set to ``value`` (removed where ``value`` is ...)."""
    doc = json.loads(json.dumps(doc))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if value is ...:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


@HOSTILE
@given(data=st.data(), value=st.one_of(JSON_VALUES, st.just(...)), keep_checksum=st.booleans())
def test_hand_edited_image_fields_with_a_matching_checksum(fx, data, value, keep_checksum):
    """The schema and the checks behind it, not the checksum, stand in the way: the edit's author
    recomputed the checksum (or removed it, as the refusal of an edit suggests)."""
    meta = json.loads((fx["build"] / "image.json").read_text())
    path = data.draw(st.sampled_from(sorted(paths(meta), key=str)), label="field")
    meta = edit(meta, path, value)
    assume(meta.get("outputs") != [])  # test_simulate_of_a_build_without_outputs_is_one_line
    meta.pop("json_sha256", None)
    if keep_checksum:
        meta["json_sha256"] = json_checksum(meta)
    with scratch() as work:
        build = work / "build"
        shutil.copytree(fx["build"], build)
        (build / "image.json").write_text(json.dumps(meta, indent=1))
        status, out = holds_the_contract(work, "simulate", build, "--input", fx["x"], "--output", work / "y.npy")
        if status == 0:
            assert np.load(work / "y.npy").shape[:2] == (12, 2), out


@HOSTILE
@given(data=st.data(), array=npst.arrays(npst.scalar_dtypes(), npst.array_shapes(min_dims=0, max_dims=3, max_side=5)))
def test_image_arrays_of_another_shape_or_dtype(fx, data, array):
    with np.load(fx["build"] / "image.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays[data.draw(st.sampled_from(sorted(arrays)), label="array")] = array
    with scratch() as work:
        build = work / "build"
        shutil.copytree(fx["build"], build)
        write_npz(build / "image.npz", arrays)
        meta = json.loads((build / "image.json").read_text())
        meta["arrays_sha256"] = hashlib.sha256((build / "image.npz").read_bytes()).hexdigest()
        meta["json_sha256"] = json_checksum(meta)
        (build / "image.json").write_text(json.dumps(meta))
        holds_the_contract(work, "simulate", build, "--input", fx["x"], "--output", work / "y.npy")


@HOSTILE
@given(data=st.data(), value=st.one_of(JSON_VALUES, st.just(...)))
def test_hand_edited_fault_maps(fx, data, value):
    doc = json.loads(fx["faults"].read_text())
    doc = edit(doc, data.draw(st.sampled_from(sorted(paths(doc), key=str)), label="field"), value)
    with scratch() as work:
        (work / "chip.json").write_text(json.dumps(doc))
        holds_the_contract(work, "compile", fx["model"], "--dt", "1e-3", "--tile", "8x8", "--target", "memristive",
                           "--faults", work / "chip.json", "-o", work / "out")


# -- arrays of any shape and dtype --------------------------------------------------------------------
DTYPES = st.one_of(npst.scalar_dtypes(), npst.byte_string_dtypes(max_len=3), npst.unicode_string_dtypes(max_len=3),
                   npst.array_dtypes(allow_subarrays=True, max_size=2))


@HOSTILE
@given(x=npst.arrays(DTYPES, npst.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=6)),
       on=st.sampled_from(["model", "build"]))
def test_simulate_inputs_of_any_shape_and_dtype(fx, x, on):
    with scratch() as work:
        np.save(work / "x.npy", x, allow_pickle=False)
        dt = ["--dt", "1e-3"] if on == "model" else []
        status, out = holds_the_contract(work, "simulate", fx[on], *dt, "--input", work / "x.npy",
                                         "--output", work / "y.npy")
        if status == 0:  # numbers [T, batch, 4] (or [T, batch, 2, 2]...): outputs [T, batch, 3]
            assert np.load(work / "y.npy").shape == (*x.shape[:2], 3), out


# -- option strings ------------------------------------------------------------------------------------
COMMANDS = {
    "compile": (lambda fx, w: ["compile", fx["model"], "--dt", "1e-3", "--tile", "8x8", "-o", w / "out"],
                ["--dt", "--tile", "--levels", "--seed", "--max-tiles", "--max-split", "--target", "--partitioner",
                 "--scale", "--framework", "--reset", "--test-set", "--faults", "--calibration", "--chip"]),
    "simulate": (lambda fx, w: ["simulate", fx["model"], "--input", fx["x"], "--output", w / "y.npy"],
                 ["--dt", "--framework", "--reset", "--membrane", "--input"]),
    "import": (lambda fx, w: ["import", fx["small"], "-o", w / "net.small"], ["--dt", "--framework", "--reset"]),
    "faults": (lambda fx, w: ["faults", "random", "--rate", "0.1", "--tiles", "2", "--tile", "8x8", "-o", w / "c.json"],
               ["--rate", "--reversed", "--tiles", "--tile", "--high-fraction", "--seed"]),
    "crossbar": (lambda fx, w: ["analog", "crossbar", "--rows", "4", "--cols", "4"],
                 ["--rows", "--cols", "--r-wire", "--v-read", "--seed", "--conductances", "--v-rows"]),
}


@HOSTILE
@given(data=st.data(), command=st.sampled_from(sorted(COMMANDS)))
def test_random_option_strings(fx, data, command):
    base, flags = COMMANDS[command]
    options = data.draw(st.lists(st.tuples(st.sampled_from([*flags, "--no-such-option"]), OPTION_TEXT),
                                 min_size=1, max_size=3), label="options")
    with scratch() as work:
        holds_the_contract(work, *base(fx, work), *[part for option in options for part in option])


# -- what bench/hostile.py found, one case each ---------------------------------------------------------
def test_a_nir_string_whose_length_field_claims_gigabytes_is_refused_before_hdf5_allocates_it(fx, tmp_path):
    """One flipped byte in a variable-length string's 4-byte length made HDF5 allocate and fill 3 GiB."""
    import h5py

    model = tmp_path / "model.nir"
    shutil.copyfile(fx["model"], model)
    with h5py.File(model, "r") as f:
        offset = f["node/type"].id.get_offset()  # contiguous: [length u32][heap reference]
    data = bytearray(model.read_bytes())
    data[offset + 3] = 0xB7  # the length's top byte: about 3 GiB
    model.write_bytes(bytes(data))
    status, _ = holds_the_contract(tmp_path, "import", model, "--dt", "1e-3")
    assert status == 2
    assert "dataset '/node/type' declares a value of 3070" in small("import", model)[2]


def zip_member_data(path: Path, name: str) -> tuple[int, int]:
    """Where the local header and the data of member ``name`` of zip ``path`` start."""
    import zipfile

    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    raw = path.read_bytes()
    header = info.header_offset
    name_len, extra_len = int.from_bytes(raw[header + 26:header + 28], "little"), int.from_bytes(raw[header + 28:header + 30], "little")
    return header, header + 30 + name_len + extra_len


@pytest.mark.parametrize("damage_at", ["deflate stream", "compression method"])
def test_a_small_file_with_a_broken_deflate_stream_or_an_unknown_method_is_one_line(fx, tmp_path, damage_at):
    """zlib.error and zipfile's NotImplementedError were tracebacks."""
    net = tmp_path / "net.small"
    shutil.copyfile(fx["small"], net)
    header, data_start = zip_member_data(net, "network.json.npy")
    raw = bytearray(net.read_bytes())
    if damage_at == "deflate stream":
        raw[data_start:data_start + 4] = b"\xff\xff\xff\xff"
    else:  # zipfile reads the method from the central directory
        at = raw.find(b"PK\x01\x02")
        while at >= 0:
            raw[at + 10:at + 12] = (99).to_bytes(2, "little")
            at = raw.find(b"PK\x01\x02", at + 4)
    net.write_bytes(bytes(raw))
    status, _ = holds_the_contract(tmp_path, "import", net, "-o", tmp_path / "out.small")
    assert status == 2 and "is not a readable .npz archive" in small("import", net)[2]


@pytest.mark.parametrize("dtype", [[("a", "f4"), ("b", "i2")], "U3", "complex64", "datetime64[s]"])
@pytest.mark.parametrize("on", ["model", "build"])
def test_inputs_that_are_not_numbers_are_one_line_on_every_simulator(fx, tmp_path, dtype, on):
    np.save(tmp_path / "x.npy", np.zeros((3, 2, 4), dtype=dtype))
    dt = ["--dt", "1e-3"] if on == "model" else []
    status, _, err = small("simulate", fx[on], *dt, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    assert status == 2 and "values: give numbers (bool, integer or float" in err and err.count("\n") == 1, err


@pytest.mark.parametrize("shape", [(0, 42, 4), (3, 0, 4), (0, 0, 4)])
@pytest.mark.parametrize("on", ["model", "build"])
def test_empty_inputs_give_empty_outputs_on_every_simulator(fx, tmp_path, shape, on):
    np.save(tmp_path / "x.npy", np.zeros(shape, np.float32))
    dt = ["--dt", "1e-3"] if on == "model" else []
    status, _, err = small("simulate", fx[on], *dt, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    assert status == 0, err
    assert np.load(tmp_path / "y.npy").shape == (*shape[:2], 3)


@pytest.mark.parametrize("labels", [np.zeros(6, dtype=[("a", "f4")]), np.full(6, "1"), np.array([0, 1, 2, 0, 1, 0.5])])
def test_a_test_set_whose_labels_are_not_class_numbers_is_one_line(fx, tmp_path, labels):
    write_npz(tmp_path / "test.npz", {"x": np.zeros((12, 6, 4), np.float32), "labels": labels})
    status, _ = holds_the_contract(tmp_path, "compile", fx["model"], "--dt", "1e-3", "--tile", "8x8", "--test-set",
                                   tmp_path / "test.npz", "-o", tmp_path / "out")
    assert status == 2


@pytest.mark.parametrize("part", ["populations", "outputs"])
def test_an_image_without_latencies_is_refused_by_its_schema(fx, tmp_path, part):
    """`small report` read every latency (KeyError) where the schema let one be left out."""
    build = tmp_path / "build"
    shutil.copytree(fx["build"], build)
    meta = json.loads((build / "image.json").read_text())
    del meta[part][0]["latency"]
    meta.pop("json_sha256")
    (build / "image.json").write_text(json.dumps(meta))
    status, _, err = small("report", build)
    assert status == 2 and f"{part}[0] lacks the field 'latency'" in err, err


def test_simulate_of_a_build_without_outputs_is_one_line(fx, tmp_path):
    """A network without outputs compiles (``small hdl`` and ``verify`` use it); simulating its build has
    nothing to write."""
    build = tmp_path / "build"
    shutil.copytree(fx["build"], build)
    meta = json.loads((build / "image.json").read_text())
    meta["outputs"] = []
    meta.pop("json_sha256")
    (build / "image.json").write_text(json.dumps(meta))
    status, _ = holds_the_contract(tmp_path, "simulate", build, "--input", fx["x"], "--output", tmp_path / "y.npy")
    assert status == 2


@pytest.mark.parametrize("part", ["populations", "outputs"])
def test_a_latency_that_disagrees_with_the_arrays_is_refused(fx, tmp_path, part):
    """The simulators start a population's columns at param/start, the report at its latency: an edit of
    one gave a report that compared rasters of 9 and 12 steps (a traceback)."""
    build = tmp_path / "build"
    shutil.copytree(fx["build"], build)
    meta = json.loads((build / "image.json").read_text())
    meta[part][0]["latency"] = 3
    meta["json_sha256"] = json_checksum(meta)
    (build / "image.json").write_text(json.dumps(meta))
    status, _, err = small("report", build)
    assert status == 2 and "has latency 3" in err and err.count("\n") == 1, err


@pytest.mark.parametrize("command", ["import", "compile"])
def test_a_folder_given_as_the_model_is_one_line(fx, tmp_path, command):
    (tmp_path / "model").mkdir()
    argv = ["import", tmp_path / "model"] if command == "import" else ["compile", tmp_path / "model", "-o", tmp_path / "out"]
    status, _ = holds_the_contract(tmp_path, *argv)
    assert status == 2


@pytest.mark.parametrize("command", ["simulate", "compile", "report", "faults"])
def test_a_path_too_long_for_the_filesystem_is_one_line(fx, tmp_path, command):
    """pathlib's is_file() raises ENAMETOOLONG where a shorter missing name gives False."""
    long = "9" * 5000
    argv = {"simulate": ["simulate", fx["model"], "--input", long, "--output", tmp_path / "y.npy"],
            "compile": ["compile", fx["model"], "--dt", "1e-3", "-o", tmp_path / long],
            "report": ["report", long],
            "faults": ["faults", "random", "--rate", "0.1", "-o", tmp_path / long]}[command]
    status, _ = holds_the_contract(tmp_path, *argv)
    assert status == 2 and "file name too long" in small(*argv)[2]
