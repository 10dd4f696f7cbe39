"""Hostile input for the commands and files ``test_hostile_files.py`` leaves out (issue 21, point 6):
``small l2l run`` configurations, chip specs (``small chip``, ``compile --chip``), trajectory files
(``small l2l eval --trajectories``), hand-edited ``.small`` networks, and ``to-nir``, ``hdl``,
``verify``, ``export``, ``load``, ``run`` and ``sweep`` given damaged builds, wrong files, hostile
arrays and random option strings. Then the input shapes every simulator takes.

The contract is ``test_hostile_files.py``'s: exit 0, or exit 2 with one line on stderr, no
traceback and nothing written or changed in the case's folder.

The expensive stages (writing Verilog, synthesis, the HDL simulation, meta-training, a sweep's
points, the arm's evaluation) are replaced by :func:`reached`, which stops the command where an
input got through every check: what is exercised is the checking, in milliseconds, and a case
that gets there counts as accepted. Meta-training and sweeps still run for real when they are as
small as the base case.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from pathlib import Path
from unittest import mock

import nir
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as npst

from compiler.capacity import Capacity
from compiler.ir import LIF, Input, Network, Population, Projection
from compiler.mapper import CompileOptions, compile_network
from compiler.netfile import save_network
from l2l.tasks.arm import random_trajectories, save_trajectories
from sim.analog import AnalogSimulator
from sim.digital import DigitalSimulator
from sim.memristive import IdealMemristiveSimulator
from sim.reference import ReferenceSimulator
from small.errors import SimulationError
from small.fileio import write_npz
from test_build_folders import snapshot
from test_hostile_files import (DTYPES, HOSTILE, JSON_VALUES, OPTION_TEXT, damage, damaged, edit, fx,  # noqa: F401
                                holds_the_contract, paths, scratch, small)

ROOT = Path(__file__).resolve().parents[1]
# the commands below are many: fewer examples each (SMALL_HOSTILE_EXAMPLES=500 to explore)
FEW = HOSTILE.__class__(HOSTILE, max_examples=int(os.environ.get("SMALL_HOSTILE_EXAMPLES", 12)))


class Reached(Exception):
    """An input got through every check to the stage :func:`reached` replaced."""


@contextlib.contextmanager
def reached(*targets: str, unless=None):
    """Replace each ``module.function`` of ``targets`` by one that raises :class:`Reached` (or, where
    ``unless(*args, **kwargs)`` is true, calls the original: a run as small as the base case)."""
    with contextlib.ExitStack() as stack:
        for target in targets:
            module, name = target.rsplit(".", 1)
            original = getattr(__import__(module, fromlist=[name]), name)

            def stop(*args, _original=original, **kwargs):
                if unless is not None and unless(*args, **kwargs):
                    return _original(*args, **kwargs)
                raise Reached(target)

            stack.enter_context(mock.patch(target, stop))
        yield


def contract_or_reached(folder: Path, *argv) -> str:
    """:func:`holds_the_contract`, where getting to a replaced stage counts as accepted: "ok",
    "refused" or "reached"."""
    try:
        status, _ = holds_the_contract(folder, *argv)
    except Reached:
        return "reached"
    return "ok" if status == 0 else "refused"


# -- TOML, written by hand (tomllib reads only) ----------------------------------------------------------
class Raw(str):
    """TOML text as it is (dates and times)."""


def toml_value(value) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(toml_value, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def toml(doc: dict) -> str:
    """``doc``'s tables as ``[sections]``, its other values (and tables inside sections) inline."""
    head = [f"{json.dumps(k)} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    body = [f"[{json.dumps(k)}]\n" + "".join(f"{json.dumps(kk)} = {toml_value(vv)}\n" for kk, vv in v.items())
            for k, v in doc.items() if isinstance(v, dict)]
    return "\n".join(head) + "\n" + "\n".join(body)


TOML_VALUES = st.one_of(
    st.sampled_from([0, -1, 1, 2, 3, 7, 255, 256, 2**31, 2**63 - 1, -2**63, 10**12, 0.0, 0.5, -0.0, 1e308, math.nan,
                     math.inf, -math.inf, "", "x", "0", "sphere", "cmaes", "ideal", "pcm", "tcp://127.0.0.1:9",
                     True, False, [], [0], [1, "x"], {}, {"a": 1},
                     Raw("1979-05-27"), Raw("07:32:00"), Raw("1979-05-27T07:32:00Z")]),
    st.integers(-2**63, 2**63 - 1), st.floats(), st.text(max_size=6))


def toml_edit(doc: dict, data) -> dict:
    """``doc`` with one field changed, removed or added, or a section removed or added."""
    fields = [(s, k) for s, section in doc.items() if isinstance(section, dict) for k in section]
    kind = data.draw(st.sampled_from(["set", "set", "set", "remove", "add", "section"]), label="edit")
    doc = json.loads(json.dumps(doc))
    if kind == "section":
        name = data.draw(st.sampled_from([*doc, "extra", "dask"]), label="section")
        if name in doc:
            del doc[name]
        else:
            doc[name] = {"workers": 1}
        return doc
    section, key = data.draw(st.sampled_from(fields), label="field")
    if kind == "remove":
        del doc[section][key]
    elif kind == "add":
        doc[section][data.draw(st.sampled_from(["typo", "seeds", "activ", "n_", "workers"]), label="name")] = 1
    else:
        doc[section][key] = data.draw(TOML_VALUES, label="value")
    return doc


# -- fixtures ------------------------------------------------------------------------------------------
CONFIG = {"run": {"task": "function", "generations": 2, "seed": 1},
          "optimizer": {"name": "cmaes", "popsize": 4, "sigma0": 0.3},
          "task": {"function": "rosenbrock", "n": 3},
          "dask": {"workers": 0, "retries": 1}}
SPEC = {"tiles": 2, "rows": 8, "cols": 8, "levels": 16, "delay_slots": 2, "n_inputs": 8, "route_entries": 16,
        "input_entries": 16, "lanes": 1, "acc_bits": 16, "name": "tiny",
        "arithmetic": {"v_bits": 24, "frac_bits": 8, "decay_bits": 16, "input_bits": 8, "refractory_bits": 8}}


@pytest.fixture(scope="module")
def more(fx, tmp_path_factory) -> dict[str, Path]:
    """Beside ``fx``: a chip spec and a build compiled for it, a memristive build, the generated Verilog
    of the digital build, an l2l configuration and a trajectory file."""
    folder = tmp_path_factory.mktemp("hostile-more")
    (folder / "spec.toml").write_text(toml(SPEC))
    Capacity.from_dict(SPEC)
    hdl_build = folder / "hdl-build"
    shutil.copytree(fx["build"], hdl_build)
    for argv in (("compile", fx["model"], "--dt", "1e-3", "--chip", folder / "spec.toml", "-o", folder / "chip-build"),
                 ("compile", fx["model"], "--dt", "1e-3", "--tile", "8x8", "--target", "memristive",
                  "-o", folder / "mem-build"),
                 ("hdl", hdl_build)):
        status, _, err = small(*argv)
        assert status == 0, err
    (folder / "config.toml").write_text(toml(CONFIG))
    save_trajectories(folder / "traj.npz", random_trajectories(2, rng=np.random.default_rng(0)))
    return {"spec": folder / "spec.toml", "chip_build": folder / "chip-build", "mem_build": folder / "mem-build",
            "hdl_build": hdl_build, "config": folder / "config.toml", "trajectories": folder / "traj.npz"}


def copy(path: Path, work: Path) -> Path:
    """A copy of the file or folder ``path`` in ``work``; of a build, with the lock file its compile left
    beside it (which ``small verify`` takes)."""
    if path.is_dir():
        (work / f".{path.name}.lock").touch()
        return Path(shutil.copytree(path, work / path.name))
    return Path(shutil.copyfile(path, work / path.name))


# -- l2l configurations ----------------------------------------------------------------------------------
def small_run(config, *args, **kwargs) -> bool:
    """A configuration as cheap as the base one: meta-train it for real."""
    task = config.task
    return (config.run.generations <= 2 and (config.optimizer.popsize or 8) <= 8 and task.x0().size <= 8
            and getattr(task, "sleep", 0) == 0 and getattr(task, "work", 0) <= 1000)


@FEW
@given(data=st.data(), bytes_=st.booleans())
def test_hand_edited_and_damaged_l2l_configs(more, data, bytes_):
    text = toml(CONFIG)
    if bytes_:
        raw = text.encode()
        text = damaged(raw, data.draw(damage(len(raw)), label="damage")).decode("utf-8", "replace")
    else:
        text = toml(toml_edit(CONFIG, data))
    with scratch() as work:
        (work / "config.toml").write_text(text)
        with reached("l2l.loop.meta_train", unless=small_run):
            contract_or_reached(work, "l2l", "run", work / "config.toml", "-o", work / "run", "--workers", "0")


ALIF = {"run": {"task": "alif", "generations": 1}, "optimizer": {"name": "cmaes", "popsize": 4},
        "task": {"hardware": "ideal", "demos": 2, "updates": 1, "tests": 2}}


@FEW
@given(data=st.data(), field=st.sampled_from(["network", "test_set"]),
       kind=st.sampled_from(["missing", "empty", "folder", "text", "model", "small", "npy", "npz", "json", "toml"]))
def test_alif_configs_naming_files_of_another_kind(fx, more, data, field, kind):
    """The alif task reads two files named in its [task]: each given a file of another kind."""
    with scratch() as work:
        pool = {"missing": work / "missing.small", "empty": work / "empty.small", "folder": work,
                "text": work / "notes.txt", "model": fx["model"], "small": fx["small"], "npy": fx["x"],
                "npz": fx["test_set"], "json": fx["faults"], "toml": more["config"]}
        (work / "empty.small").write_bytes(b"")
        (work / "notes.txt").write_text("hello\n")
        doc = json.loads(json.dumps(ALIF))
        doc["task"][field] = str(pool[kind])
        (work / "config.toml").write_text(toml(doc))
        with reached("l2l.loop.meta_train"):
            contract_or_reached(work, "l2l", "run", work / "config.toml", "-o", work / "run", "--workers", "0")


# -- chip specs --------------------------------------------------------------------------------------------
HDL_WRITERS = ("hdl.export.write_hdl", "hdl.export.write_netlist", "hdl.export.build_bitstream")


@FEW
@given(data=st.data(), bytes_=st.booleans(), wrapped=st.booleans(), command=st.sampled_from(["chip", "compile"]))
def test_hand_edited_and_damaged_chip_specs(fx, more, data, bytes_, wrapped, command):
    doc = {"chip": SPEC} if wrapped else SPEC
    if bytes_:
        raw = toml(doc).encode()
        text = damaged(raw, data.draw(damage(len(raw)), label="damage")).decode("utf-8", "replace")
    elif wrapped:
        text = toml(toml_edit(doc, data))
    else:  # the spec's own fields, at the top level
        key = data.draw(st.sampled_from(sorted(SPEC)), label="field")
        edited = dict(SPEC)
        if data.draw(st.booleans(), label="remove"):
            del edited[key]
        else:
            edited[key] = data.draw(TOML_VALUES, label="value")
        text = toml(edited)
    with scratch() as work:
        (work / "spec.toml").write_text(text)
        argv = ["chip", work / "spec.toml", "-o", work / "chip"] if command == "chip" else \
            ["compile", fx["model"], "--dt", "1e-3", "--chip", work / "spec.toml", "-o", work / "out"]
        with reached(*HDL_WRITERS):
            contract_or_reached(work, *argv)


# -- trajectory files ---------------------------------------------------------------------------------------
@FEW
@given(data=st.data(), kind=st.sampled_from(["bytes", "angles", "values", "dt", "members"]))
def test_damaged_and_odd_trajectory_files(more, data, kind):
    with np.load(more["trajectories"]) as npz:
        arrays = {k: npz[k] for k in npz.files}
    with scratch() as work:
        path = work / "traj.npz"
        if kind == "bytes":
            raw = more["trajectories"].read_bytes()
            path.write_bytes(damaged(raw, data.draw(damage(len(raw)), label="damage")))
        else:
            if kind == "angles":
                arrays["angles"] = data.draw(npst.arrays(DTYPES, npst.array_shapes(min_dims=0, max_dims=4, min_side=0,
                                                                                    max_side=5)), label="angles")
            elif kind == "values":
                at = tuple(data.draw(st.integers(0, n - 1), label="at") for n in arrays["angles"].shape)
                arrays["angles"][at] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e300, 10.0, -10.0]),
                                                 label="value")
            elif kind == "dt":
                arrays["dt"] = data.draw(npst.arrays(npst.scalar_dtypes(), npst.array_shapes(min_dims=0, max_dims=2,
                                                                                               max_side=3)), label="dt")
            else:
                arrays.pop(data.draw(st.sampled_from(sorted(arrays)), label="removed"))
                arrays["extra"] = np.zeros(3)
            write_npz(path, arrays)
        with reached("l2l.evaluate.evaluate_arm"):
            contract_or_reached(work, "l2l", "eval", ROOT / "examples" / "arm", "--trajectories", path,
                                "--no-baseline", "--hardware", "float", "--plots", work / "plots")


# -- hand-edited .small networks ------------------------------------------------------------------------
@FEW
@given(data=st.data(), value=st.one_of(JSON_VALUES, st.just(...)),
       command=st.sampled_from(["import", "simulate", "compile", "to-nir"]))
def test_hand_edited_small_network_fields(fx, data, value, command):
    with np.load(fx["small"]) as npz:
        arrays = {k: npz[k] for k in npz.files}
    doc = json.loads(str(arrays["network.json"]))
    doc = edit(doc, data.draw(st.sampled_from(sorted(paths(doc), key=str)), label="field"), value)
    arrays["network.json"] = np.array(json.dumps(doc))
    with scratch() as work:
        net = work / "net.small"
        write_npz(net, arrays)
        argv = {"import": ["import", net, "-o", work / "out.small"],
                "simulate": ["simulate", net, "--input", fx["x"], "--output", work / "y.npy"],
                "compile": ["compile", net, "--tile", "8x8", "-o", work / "out"],
                "to-nir": ["to-nir", net, "-o", work / "out.nir"]}[command]
        holds_the_contract(work, *argv)


@FEW
@given(data=st.data(), which=st.sampled_from(["model", "small"]))
def test_to_nir_of_damaged_models(fx, data, which):
    original = fx[which].read_bytes()
    with scratch() as work:
        model = work / fx[which].name
        model.write_bytes(damaged(original, data.draw(damage(len(original)), label="damage")))
        dt = ["--dt", "1e-3"] if which == "model" else []
        holds_the_contract(work, "to-nir", model, *dt, "-o", work / "out.nir")


# -- hdl, verify, export: damaged builds -------------------------------------------------------------------
HARDWARE_COMMANDS = {
    "hdl": lambda build, work: ["hdl", build],
    "verify": lambda build, work: ["verify", build, "--simulator", "icarus"],
    "export": lambda build, work: ["export", build, "--netlist"],
    "bitstream": lambda build, work: ["export", build, "--bitstream", "icebreaker"],
    "spice": lambda build, work: ["export", build, "--spice"],
}
HARDWARE_STAGES = (*HDL_WRITERS, "verify.runner.verify", "sim.tile_netlist.tile_deck")


@FEW
@given(data=st.data(), member=st.sampled_from(["image.json", "image.npz", "hdl/summary.json"]),
       command=st.sampled_from(sorted(HARDWARE_COMMANDS)))
def test_damaged_builds_on_the_hardware_commands(more, data, member, command):
    with scratch() as work:
        build = copy(more["hdl_build"], work)
        original = (build / member).read_bytes()
        (build / member).write_bytes(damaged(original, data.draw(damage(len(original)), label="damage")))
        with reached(*HARDWARE_STAGES):
            contract_or_reached(work, *HARDWARE_COMMANDS[command](build, work))


@FEW
@given(data=st.data(), value=st.one_of(JSON_VALUES, st.just(...)), command=st.sampled_from(sorted(HARDWARE_COMMANDS)),
       which=st.sampled_from(["hdl_build", "mem_build"]))
def test_hand_edited_images_on_the_hardware_commands(more, data, value, command, which):
    from compiler.image import json_checksum

    meta = json.loads((more[which] / "image.json").read_text())
    meta = edit(meta, data.draw(st.sampled_from(sorted(paths(meta), key=str)), label="field"), value)
    meta.pop("json_sha256", None)
    meta["json_sha256"] = json_checksum(meta)
    with scratch() as work:
        build = copy(more[which], work)
        (build / "image.json").write_text(json.dumps(meta, indent=1))
        with reached(*HARDWARE_STAGES):
            contract_or_reached(work, *HARDWARE_COMMANDS[command](build, work))


# -- random option strings of the other commands ------------------------------------------------------------
PORTS = st.one_of(st.sampled_from(["/dev/nonexistent", "/dev/null", "", "sim", "x", "-", "COM1", "/"]), OPTION_TEXT)
OPTION_COMMANDS = {
    "to-nir": (lambda fx, m, w: ["to-nir", fx["small"], "-o", w / "out.nir"], ["--dt", "--framework", "--reset", "-o"]),
    "hdl": (lambda fx, m, w: ["hdl", copy(m["hdl_build"], w)], ["--lanes"]),
    "verify": (lambda fx, m, w: ["verify", copy(m["hdl_build"], w)],
               ["--simulator", "--inputs", "--samples", "--waves", "--uart", "--backpressure", "--analog"]),
    "export": (lambda fx, m, w: ["export", copy(m["hdl_build"], w)],
               ["--bitstream", "--netlist", "--spice", "--r-wire", "--lanes"]),
    "chip": (lambda fx, m, w: ["chip", m["spec"], "-o", w / "chip"], ["--force", "-o"]),
    "load": (lambda fx, m, w: ["load", m["chip_build"], "--chip", m["spec"], "--port", "/dev/nonexistent"],
             ["--chip", "--port"]),
    "run": (lambda fx, m, w: ["run", m["chip_build"], "--chip", m["spec"], "--port", "/dev/nonexistent",
                              "--input", fx["x"], "--output", w / "y.npy"],
            ["--chip", "--port", "--input", "--output", "--samples"]),
    "sweep": (lambda fx, m, w: ["sweep", fx["model"], "--dt", "1e-3", "--test-set", fx["test_set"], "--tile", "8x8",
                                "--workers", "0", "-o", w / "sweep"],
              ["--tile", "--levels", "--stuck", "--test-set", "--samples", "--scale", "--max-split", "--max-tiles",
               "--seed", "--dt", "--framework", "--reset", "--force"]),
}
FLAGS = {"--waves", "--uart", "--netlist", "--spice", "--force"}


def small_sweep(net, test, grid, *args, **kwargs) -> bool:
    """A grid as cheap as the base one: sweep it for real."""
    return len(grid) <= 2 and all(r * c <= 64 * 64 for r, c in grid.tiles)


@FEW
@given(data=st.data(), command=st.sampled_from(sorted(OPTION_COMMANDS)))
def test_random_option_strings_of_the_other_commands(fx, more, data, command):
    base, flags = OPTION_COMMANDS[command]
    with scratch() as work:
        files = st.sampled_from([fx["x"], fx["model"], fx["build"], fx["test_set"], more["spec"], work / "missing", work])
        value = st.one_of(OPTION_TEXT, PORTS, files.map(str))
        options = data.draw(st.lists(st.sampled_from([*flags, "--no-such-option"]).flatmap(
            lambda flag: st.just((flag,)) if flag in FLAGS else st.tuples(st.just(flag), value)), min_size=1, max_size=3),
            label="options")
        argv = [*base(fx, more, work), *[part for option in options for part in option]]
        with reached(*HARDWARE_STAGES), reached("small.sweep.run_sweep", unless=small_sweep):
            contract_or_reached(work, *argv)


@FEW
@given(port=PORTS, chip=st.sampled_from(["spec", "preset", "folder", "build"]), command=st.sampled_from(["load", "run"]))
def test_load_and_run_on_ports_and_chips_that_are_not_there(fx, more, port, chip, command):
    """A serial port that does not exist, is no serial port, or is `sim` without a chip folder: one line."""
    with scratch() as work:
        chips = {"spec": more["spec"], "preset": "up5k", "folder": work, "build": fx["build"]}
        argv = [command, more["chip_build"], "--chip", chips[chip], "--port", port]
        if command == "run":
            argv += ["--input", fx["x"], "--output", work / "y.npy"]
        assert contract_or_reached(work, *argv) == "refused"


@FEW
@given(x=npst.arrays(DTYPES, npst.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=6)),
       command=st.sampled_from(["run", "verify"]))
def test_run_and_verify_inputs_of_any_shape_and_dtype(fx, more, x, command):
    """Inputs are checked before a port is opened or a simulator started."""
    with scratch() as work:
        np.save(work / "x.npy", x, allow_pickle=False)
        argv = ["run", more["chip_build"], "--chip", more["spec"], "--port", "/dev/nonexistent", "--input",
                work / "x.npy", "--output", work / "y.npy"] if command == "run" else \
            ["verify", copy(more["hdl_build"], work), "--simulator", "icarus", "--inputs", work / "x.npy"]
        with reached("verify.runner.verify"):
            contract_or_reached(work, *argv)


# -- what the cases above found, one test each --------------------------------------------------------
def test_a_trajectory_file_whose_dt_is_an_array_is_one_line(more, tmp_path):
    """The refusal printed the array's repr, which spans lines."""
    with np.load(more["trajectories"]) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["dt"] = np.zeros((2, 1), bool)
    write_npz(tmp_path / "traj.npz", arrays)
    with reached("l2l.evaluate.evaluate_arm"):
        status, _ = holds_the_contract(tmp_path, "l2l", "eval", ROOT / "examples" / "arm", "--trajectories",
                                       tmp_path / "traj.npz", "--no-baseline", "--hardware", "float")
    assert status == 2
    err = small("l2l", "eval", ROOT / "examples" / "arm", "--trajectories", tmp_path / "traj.npz", "--no-baseline")[2]
    assert "a 'dt' of shape [2, 1] and dtype bool, not one number of seconds" in err, err


@pytest.mark.parametrize("field,value", [("name", [0]), ("source", []), ("target", {"a": 1}), ("delay", "1")])
def test_a_small_file_with_a_list_where_a_name_belongs_is_refused_by_its_schema(fx, tmp_path, field, value):
    """``TypeError: unhashable type: 'list'`` in Network.validate: network.json had no schema."""
    with np.load(fx["small"]) as npz:
        arrays = {k: npz[k] for k in npz.files}
    doc = json.loads(str(arrays["network.json"]))
    doc["network"]["projections"][0][field] = value
    arrays["network.json"] = np.array(json.dumps(doc))
    write_npz(tmp_path / "net.small", arrays)
    status, _ = holds_the_contract(tmp_path, "import", tmp_path / "net.small")
    assert status == 2
    assert f"invalid network file {str(tmp_path / 'net.small')!r}: network.projections[0].{field} must be" in \
        small("import", tmp_path / "net.small")[2]


@pytest.mark.parametrize("text", ["", "\x80", "{", "[1]", '{"capacity": 3, "lanes": "x"}'])
def test_a_damaged_hdl_summary_is_one_line_for_verify(more, tmp_path, text):
    """json.loads of BUILD/hdl/summary.json raised JSONDecodeError (or UnicodeDecodeError)."""
    build = copy(more["hdl_build"], tmp_path)
    (build / "hdl" / "summary.json").write_bytes(text.encode("latin-1"))
    with reached("verify.runner.verify"):
        status, _ = holds_the_contract(tmp_path, "verify", build, "--simulator", "icarus")
    assert status == 2 and f"run `small hdl {build}` again" in small("verify", build)[2]


@pytest.mark.parametrize("text", ["", "{", "[]", '{"capacity": 5}', '{"capacity": {"tiles": "x"}}'])
def test_a_chip_folder_with_a_damaged_chip_json_is_one_line(fx, tmp_path, text):
    """``small compile --chip CHIP`` (and load, run) read CHIP/chip.json with json.loads(...)["capacity"]."""
    (tmp_path / "chip").mkdir()
    (tmp_path / "chip" / "chip.json").write_text(text)
    status, _ = holds_the_contract(tmp_path, "compile", fx["model"], "--dt", "1e-3", "--chip", tmp_path / "chip",
                                   "-o", tmp_path / "out")
    assert status == 2


# -- input shapes: every simulator takes the same ones (issue 21, "simulators disagree") ------------------
def shaped_network() -> Network:
    """An input of shape [2, 2] into 3 LIF neurons."""
    w = np.random.default_rng(1).normal(0.4, 0.3, (3, 4))
    return Network(name="shaped", dt=1e-3, inputs=[Input("x", (2, 2))],
                   populations=[Population("h", 3, LIF(alpha=0.9, v_threshold=1.0))],
                   projections=[Projection("x", "h", w)], outputs={"y": "h"})


@pytest.fixture(scope="module")
def shaped():
    net = shaped_network()
    digital = compile_network(net, CompileOptions(target="digital", rows=8, cols=8)).image
    memristive = compile_network(net, CompileOptions(target="memristive", rows=8, cols=8)).image
    return {"reference": ReferenceSimulator(net), "digital": DigitalSimulator(digital),
            "memristive": IdealMemristiveSimulator(memristive),
            "analog": AnalogSimulator(memristive, device="ideal", noise=False)}


SIMULATORS = ["reference", "digital", "memristive", "analog"]
GOOD_SHAPES = [(6, 2, 2, 2), (6, 2, 4), (0, 2, 2, 2), (6, 0, 4)]
BAD_SHAPES = [(6, 2, 1, 4), (6, 2, 4, 1), (6, 2, 2, 2, 1), (6, 2, 1, 1, 4), (6, 2, 3), (6, 2, 8), (6, 2, 2, 3),
              (6, 2), (6,), ()]


@pytest.mark.parametrize("name", SIMULATORS)
def test_every_simulator_takes_the_input_shape_and_the_flat_shape_alike(shaped, name):
    sim = shaped[name]
    x = (np.random.default_rng(2).random((6, 2, 2, 2)) < 0.5).astype(np.float32) * 3
    y = sim.run(x).output_array()
    np.testing.assert_array_equal(sim.run(x.reshape(6, 2, 4)).output_array(), y)
    assert y.shape == (6, 2, 3) and y.any()
    for shape in GOOD_SHAPES[2:]:
        assert sim.run(np.zeros(shape, np.float32)).output_array().shape == (*shape[:2], 3)


def refusal(sim, x) -> str | None:
    try:
        sim.run(x)
    except SimulationError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("name", SIMULATORS[1:])
def test_every_simulator_refuses_the_other_shapes_as_the_reference_does(shaped, name):
    for shape in BAD_SHAPES:
        want = refusal(shaped["reference"], np.zeros(shape, np.float32))
        assert want is not None and want.startswith(f"input 'x' has shape {list(shape)}: expected [T, batch, 2, 2] "
                                                    "or [T, batch, 4]"), want
        assert refusal(shaped[name], np.zeros(shape, np.float32)) == want, shape
    for bad in (np.zeros((6, 2, 4), "U2"), np.full((6, 2, 4), np.nan), {"z": np.zeros((6, 2, 4))}):
        assert refusal(shaped[name], bad) == refusal(shaped["reference"], bad)


@pytest.fixture(scope="module")
def shaped_files(tmp_path_factory) -> dict[str, Path]:
    """The shaped network as a .small file, a NIR file, and its digital and memristive builds."""
    folder = tmp_path_factory.mktemp("shaped")
    save_network(shaped_network(), folder / "net.small")
    w = np.random.default_rng(1).normal(0.4, 0.3, (3, 4)).astype(np.float32)
    graph = nir.NIRGraph(nodes={
        "x": nir.Input(input_type={"input": np.array([2, 2])}),
        "flat": nir.Flatten(input_type={"input": np.array([2, 2])}, start_dim=0),
        "fc": nir.Affine(weight=w, bias=np.zeros(3, np.float32)),
        "lif": nir.LIF(tau=np.full(3, 2e-3), r=np.full(3, 2.0), v_leak=np.zeros(3), v_threshold=np.ones(3)),
        "y": nir.Output(output_type={"output": np.array([3])})},
        edges=[("x", "flat"), ("flat", "fc"), ("fc", "lif"), ("lif", "y")], type_check=False)
    nir.write(folder / "model.nir", graph)
    files = {"small": folder / "net.small", "nir": folder / "model.nir"}
    for target in ("digital", "memristive"):
        files[target] = folder / target
        status, _, err = small("compile", folder / "net.small", "--tile", "8x8", "--target", target, "-o", files[target])
        assert status == 0, err
    return files


@pytest.mark.parametrize("shape", GOOD_SHAPES + BAD_SHAPES)
def test_simulate_takes_and_refuses_the_same_shapes_on_every_model_and_build(shaped_files, tmp_path, shape):
    np.save(tmp_path / "x.npy", np.ones(shape, np.float32))
    answers = {}
    for name, model in shaped_files.items():
        dt = ["--dt", "1e-3"] if name == "nir" else []
        status, _, err = small("simulate", model, *dt, "--input", tmp_path / "x.npy", "--output", tmp_path / f"{name}.npy")
        answers[name] = (status, err.replace(str(model), "MODEL"))
    assert len(set(answers.values())) == 1, answers
    status, err = answers["small"]
    if shape in GOOD_SHAPES:
        assert status == 0, err
    else:
        assert status == 2 and err.count("\n") == 1 and "expected [T, batch, 2, 2] or [T, batch, 4]" in err, err
