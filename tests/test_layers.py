"""The package layers (``docs/code-map.md``) hold, and `lint-imports` catches an upward import.

``make test`` runs ``lint-imports`` on the tree before pytest; these tests check that the
contract in ``pyproject.toml`` is one that can fail: a copy of the packages with one upward
import planted (function-local, the kind that is easiest to miss) must be refused.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("small", "compiler", "analog_models", "sim", "hdl", "verify", "l2l", "train")
LINT = Path(sys.executable).with_name("lint-imports")


def _copy(tmp_path: Path) -> Path:
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint(folder: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(folder)}  # the copy's packages, not the editable install's
    return subprocess.run([str(LINT), "--no-cache"], cwd=folder, env=env, capture_output=True, text=True, timeout=300)


def _plant(path: Path, line: str) -> None:
    path.write_text(path.read_text() + f"\n\ndef _planted():\n    {line}\n")


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return _copy(tmp_path_factory.mktemp("tree"))


def test_the_tree_keeps_every_contract(tree):
    result = _lint(tree)
    assert result.returncode == 0, result.stdout[-3000:]
    assert " 0 broken" in result.stdout


@pytest.mark.parametrize("module, line, message", [
    ("compiler/mapper.py", "import hdl.chip", "compiler is not allowed to import hdl"),
    ("analog_models/crossbar.py", "from compiler.image import HardwareImage", "analog_models is not allowed to import compiler"),
    ("hdl/tile.py", "from sim.digital import DigitalSimulator", "hdl is not allowed to import sim"),
    ("hdl/router.py", "import analog_models.crossbar", "hdl is not allowed to import analog_models"),
    ("sim/reference.py", "from verify.runner import verify", "sim is not allowed to import verify"),
    ("l2l/loop.py", "from small.cli import main", "l2l is not allowed to import small.cli"),
    ("small/fileio.py", "import compiler.ir", "small.fileio is not allowed to import compiler"),
    ("compiler/ir.py", "import amaranth.hdl", "compiler is not allowed to import amaranth"),
    ("l2l/loop.py", "import train.finetune", "l2l is not allowed to import train"),
    ("train/chip.py", "from small.flow import load_model", "train is not allowed to import small.flow"),
    ("sim/analog.py", "import torch", "sim is not allowed to import torch"),
])
def test_an_upward_import_is_refused(tmp_path, module, line, message):
    tree = _copy(tmp_path)
    _plant(tree / module, line)
    result = _lint(tree)
    assert result.returncode != 0, f"lint-imports accepted {line!r} in {module}"
    assert message in result.stdout, result.stdout[-2000:]
