"""The two learning-to-learn cases end to end through the command line, and their bad input.

* ``alif``: the cheap case CI runs in full: tuning the ALIF example's hyper-parameters with
  its readout learned on the memristive chip must reach the fitness docs/l2l.md states.
* ``arm``: the shipped meta-trained model (examples/arm) must learn trajectories it never saw
  from one demonstration, better than where meta-training started, on PCM devices.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from l2l.evaluate import TEST_SEED, load_meta_trained
from l2l.learner import one_shot
from l2l.tasks import arm

ROOT = Path(__file__).resolve().parents[1]
ARM_MODEL = ROOT / "examples" / "arm"


def small(*args):
    return subprocess.run([sys.executable, "-m", "small", *map(str, args)], capture_output=True, text=True, cwd=ROOT)


def user_error(proc, *words):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


@pytest.mark.slow
def test_alif_hyperparameters_reach_the_stated_fitness_end_to_end(tmp_path):
    run = small("l2l", "run", ROOT / "examples" / "alif_memory" / "tune.toml", "-o", tmp_path / "alif")
    assert run.returncode == 0, run.stderr
    assert "gen 6/6" in run.stdout
    summary = json.loads((tmp_path / "alif" / "run.json").read_text())
    # docs/l2l.md: from 0.32 at the example's values (68.8 % held-out accuracy) to <= 0.2 (>= 80 %)
    assert summary["best_fitness"] <= 0.2 and summary["best_info"]["accuracy"] >= 0.8
    assert summary["failed_evaluations"] == 0
    report = small("l2l", "eval", tmp_path / "alif", "--json")
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["accuracy"] >= 0.75  # the search distribution's centre


def test_the_shipped_arm_model_learns_unseen_trajectories_from_one_demonstration(tmp_path):
    proc = small("l2l", "eval", ARM_MODEL, "--json", "--n", 20, "--plots", tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    for key in ("loss_before", "loss_after", "ratio", "devices_written_fraction", "n_trajectories"):
        assert key in report
    assert report["n_trajectories"] == 20 and report["hardware"] == "pcm"
    assert report["ratio"] <= 0.5
    assert report["devices_written_fraction"] < 0.2
    assert report["hardware_vs_float"] <= 1.15
    assert report["baseline"]["ratio"] > report["ratio"]  # what learning to learn adds
    for name in ("trajectory.png", "fitness.png", "float_vs_hardware.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_meta_training_beats_its_starting_point():
    config, x, _ = load_meta_trained(ARM_MODEL)
    task = config.task
    targets = arm.random_trajectories(20, task.spec.arm, rng=np.random.default_rng(TEST_SEED + 1))
    trained = one_shot(task.spec, x, targets, "pcm")
    start = one_shot(task.spec, task.x0(), targets, "pcm")
    assert np.mean(trained.loss_after) < 0.8 * np.mean(start.loss_after)


def test_user_trajectories_are_learned_and_bad_files_rejected(tmp_path):
    good = arm.random_trajectories(3, rng=np.random.default_rng(9))
    arm.save_trajectories(tmp_path / "mine.npz", good)
    proc = small("l2l", "eval", ARM_MODEL, "--json", "--trajectories", tmp_path / "mine.npz", "--hardware", "ideal",
                 "--plots", tmp_path / "plots", "--no-baseline")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["n_trajectories"] == 3
    np.savez(tmp_path / "short.npz", angles=good.angles[:, :100])
    user_error(small("l2l", "eval", ARM_MODEL, "--trajectories", tmp_path / "short.npz"), "shape")
    bad = good.angles.copy()
    bad[0, 5, 1] = np.nan
    np.savez(tmp_path / "nan.npz", angles=bad)
    user_error(small("l2l", "eval", ARM_MODEL, "--trajectories", tmp_path / "nan.npz"), "NaN")
    user_error(small("l2l", "eval", tmp_path / "nowhere"), "no run or model")


def test_arm_task_fields_are_checked(tmp_path):
    text = (ARM_MODEL / "config.toml").read_text()
    for wrong, words in (('hardware = "pcm"', ('hardware = "gold"', "[task] hardware")),
                         ("batch = 16", ('batch = "many"', "[task] batch must be an integer"))):
        bad = tmp_path / f"{words[1].split()[1]}.toml"
        bad.write_text(text.replace(wrong, words[0]))
        user_error(small("l2l", "run", bad, "-o", tmp_path / "run"), words[1])
