"""``small l2l eval``: what a meta-trained network learns, on trajectories it never saw, on each kind of hardware.

The evaluated candidate is the search distribution's centre when the optimiser has one (ES,
CMA-ES, cross-entropy: their mean is what the outer loop converged to, while the best single
evaluation is the luckiest draw of a noisy loss), else the best candidate evaluated.
A *model folder* holds ``config.toml`` and either a run's ``checkpoint.json`` (a run folder of
``small l2l run``) or ``model.npz`` (written by ``--save-model``: the candidate ``x`` and the
fitness history, small enough to commit: ``examples/arm/``).

For the ``arm`` task the report holds, on ``n`` trajectories (a file given with
``--trajectories``, else :data:`TEST_SEED`'s draw, which meta-training never uses):

* ``loss_before``, ``loss_after``, ``ratio``: mean arm loss before and after the one-shot
  update, and their quotient, on the chosen hardware;
* ``float``: the same for the candidate's exact weights with exact updates, and
  ``hardware_vs_float`` = hardware ``loss_after`` / float ``loss_after``;
* ``devices_written_fraction``: devices (two per learnable synapse) the update wrote, averaged
  over trajectories; ``max_writes_per_device``;
* ``baseline``: the same for the starting network, not meta-trained, with its learning rates
  tuned (:func:`tuned_baseline`): what learning to learn adds;

and three plots: the fitness over generations, target vs produced trajectory before and after
the update, and float vs hardware losses per trajectory.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from small.errors import FileFormatError
from small.fileio import atomic_output, read_npz, write_npz

__all__ = ["TEST_SEED", "load_meta_trained", "main", "evaluate_arm"]

#: Seed of the default evaluation trajectories (meta-training draws its own from SeedSequence).
TEST_SEED = 20261124
MODEL_FILE = "model.npz"


def load_meta_trained(folder: str | Path):
    """``(config, x, history)`` of a run folder or a model folder (see the module docstring)."""
    from l2l.config import load_config
    from l2l.loop import CHECKPOINT_FILE, CONFIG_FILE, load_checkpoint

    folder = Path(folder)
    if not (folder / CONFIG_FILE).is_file():
        raise FileFormatError(f"{str(folder)!r} holds no run or model (no {CONFIG_FILE}): give the folder of "
                              "`small l2l run -o FOLDER` or a model folder such as examples/arm")
    config = load_config(folder / CONFIG_FILE)
    if (folder / MODEL_FILE).is_file():
        data = read_npz(folder / MODEL_FILE, what="model")
        if "x" not in data:
            raise FileFormatError(f"{str(folder / MODEL_FILE)!r} has no array 'x': write it with `small l2l eval RUN "
                                  "--save-model FOLDER`")
        history = {k: data[k].tolist() for k in ("best", "mean") if k in data}
        return config, np.asarray(data["x"], dtype=float), history
    if not (folder / CHECKPOINT_FILE).is_file():
        raise FileFormatError(f"{str(folder)!r} has no {CHECKPOINT_FILE} or {MODEL_FILE}: the run has not finished a "
                              f"generation yet (`small l2l resume {folder}`)")
    opt, state = load_checkpoint(folder, config)
    mean = getattr(opt, "mean", None)
    if mean is not None:
        x = np.asarray(mean, dtype=float)
    elif state["best"]:
        x = np.asarray(state["best"]["x"], dtype=float)
    else:
        raise FileFormatError(f"every evaluation of the run in {str(folder)!r} failed: there is nothing to evaluate")
    history = {"best": [h["best"] for h in state["history"]], "mean": [h["mean"] for h in state["history"]]}
    return config, x, history


def save_model(folder: str | Path, config_file: Path, x: np.ndarray, history: dict) -> None:
    """Write a model folder: the run's ``config.toml`` and ``model.npz``.

    A ``config.toml`` already there is replaced only in a model folder SMALL wrote (one with
    ``model.npz``): a user's own file, or a run folder's, is refused before anything is written.
    ``model.npz`` is written first, so that a kill between the two files leaves no ``config.toml``
    that a next ``--save-model`` would take for a user's.
    """
    from l2l.loop import CONFIG_FILE

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FileFormatError(f"--save-model {str(folder)!r} exists and is not a folder: give a folder")
    if (folder / CONFIG_FILE).exists() and not (folder / MODEL_FILE).is_file():
        raise FileFormatError(f"--save-model: {str(folder / CONFIG_FILE)!r} is not part of a model SMALL wrote (no "
                              f"{MODEL_FILE} beside it): give a new folder, or one that --save-model wrote")
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"x": np.asarray(x, dtype=float)}
    arrays.update({k: np.asarray([np.nan if v is None else v for v in history.get(k, [])], dtype=float)
                   for k in ("best", "mean")})
    write_npz(folder / MODEL_FILE, arrays)
    with atomic_output(folder / CONFIG_FILE) as tmp:
        Path(tmp).write_text(Path(config_file).read_text(encoding="utf-8"), encoding="utf-8")


def evaluate_arm(task, x: np.ndarray, trajectories, hardware: str, *, seed: int = 0) -> tuple[dict, dict]:
    """The report of the module docstring, and the raw results ``{"hardware": ..., "float": ...}``."""
    from l2l.learner import one_shot

    results = {"hardware": one_shot(task.spec, x, trajectories, hardware, seed=seed, t_learn=task.t_learn,
                                    t_test=task.t_test)}
    results["float"] = results["hardware"] if hardware == "float" else one_shot(
        task.spec, x, trajectories, "float", seed=seed)
    hw, fl = results["hardware"], results["float"]
    report = {
        "hardware": hardware,
        "n_trajectories": int(trajectories.n),
        "loss_before": float(np.mean(hw.loss_before)),
        "loss_after": float(np.mean(hw.loss_after)),
        "ratio": hw.ratio,
        "devices_written_fraction": hw.written_fraction,
        "max_writes_per_device": int(hw.writes.max(initial=0)),
        "float": {"loss_before": float(np.mean(fl.loss_before)), "loss_after": float(np.mean(fl.loss_after)),
                  "ratio": fl.ratio},
        "hardware_vs_float": float(np.mean(hw.loss_after) / np.mean(fl.loss_after)),
        "parameters": int(np.size(x)),
        "learnable_synapses": hw.n_devices // 2,
    }
    return report, results


#: Learning rates (log10) the baseline tries: input and recurrent (one rate for both; -9 is off) x readout.
BASELINE_GRID = ([-9.0, -3.0, -2.5, -2.0], np.arange(-0.5, 2.01, 0.25))


def tuned_baseline(task, trajectories, hardware: str, *, seed: int = 0) -> dict:
    """What learning to learn adds: the starting network (``task.x0()``, not meta-trained) with its
    learning rates tuned on 32 other trajectories (seed ``TEST_SEED + 1``) over
    :data:`BASELINE_GRID`, evaluated like the meta-trained one."""
    from l2l.learner import one_shot
    from l2l.tasks import arm

    spec = task.spec
    tune = arm.random_trajectories(32, spec.arm, rng=np.random.default_rng(TEST_SEED + 1))
    parts = spec.unpack(task.x0())
    best = None
    for hidden in BASELINE_GRID[0]:
        for readout in BASELINE_GRID[1]:
            parts["log10_lr"][:] = [hidden, hidden, readout]
            x = spec.pack(parts)
            loss = float(np.mean(one_shot(spec, x, tune, hardware, seed=seed, t_learn=task.t_learn,
                                          t_test=task.t_test).loss_after))
            if best is None or loss < best[0]:
                best = (loss, x, (hidden, float(readout)))
    r = one_shot(spec, best[1], trajectories, hardware, seed=seed, t_learn=task.t_learn, t_test=task.t_test)
    return {"loss_before": float(np.mean(r.loss_before)), "loss_after": float(np.mean(r.loss_after)),
            "ratio": r.ratio, "devices_written_fraction": r.written_fraction,
            "log10_lr_hidden": best[2][0], "log10_lr_readout": best[2][1]}


def _plots(folder: Path, task, trajectories, results: dict, history: dict, hardware: str) -> list[str]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from l2l.tasks import arm

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    hw, fl = results["hardware"], results["float"]
    path = folder / "trajectory.png"
    arm.plot(trajectories, hw.before, hw.after, path, index=0,
             title=f"one-shot learning on {hardware} hardware: trajectory 0 (loss {hw.loss_before[0]:.2f} -> "
                   f"{hw.loss_after[0]:.2f} (rad/s)^2)")
    written.append(str(path))

    def figure(path: Path, draw) -> None:
        fig = Figure(figsize=(6.4, 4.4), layout="constrained")
        FigureCanvasAgg(fig)
        draw(fig.add_subplot())
        with atomic_output(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        written.append(str(path))

    if history.get("best"):
        def fitness(ax):
            g = np.arange(1, len(history["best"]) + 1)
            ax.plot(g, history["mean"], label="generation mean", color="C0", lw=1)
            ax.plot(g, history["best"], label="generation best", color="C1", lw=1)
            ax.set(xlabel="generation", ylabel="loss after the one-shot update ((rad/s)^2)",
                   title="meta-training: fitness over generations", yscale="log")
            ax.grid(alpha=0.3)
            ax.legend()
        figure(folder / "fitness.png", fitness)

    def versus(ax):
        top = float(max(fl.loss_before.max(), hw.loss_before.max()))
        ax.plot([0, top], [0, top], color="0.6", lw=0.8, ls=":")
        ax.scatter(fl.loss_after, hw.loss_after, s=12, label="after the update", color="C0")
        ax.scatter(fl.loss_before, hw.loss_before, s=12, label="before", color="C3", marker="x")
        ax.set(xlabel="float weights: loss ((rad/s)^2)", ylabel=f"{hardware} hardware: loss ((rad/s)^2)",
               title=f"float vs {hardware}, per trajectory ({hw.loss_after.size})", xscale="log", yscale="log")
        ax.grid(alpha=0.3)
        ax.legend()
    figure(folder / "float_vs_hardware.png", versus)
    return written


def main(args: argparse.Namespace) -> int:
    """Entry point of ``small l2l eval``; returns the exit status."""
    from l2l.loop import CONFIG_FILE
    from l2l.tasks import arm
    from l2l.tasks.oneshot import ArmTask

    config, x, history = load_meta_trained(args.run_dir)
    task = config.task
    if args.save_model:
        save_model(args.save_model, Path(args.run_dir) / CONFIG_FILE, x, history)
    if not isinstance(task, ArmTask):
        loss, info = task.evaluate(x, args.seed)
        report = {"task": config.run.task, "loss": loss, **info}
        print(json.dumps(report) if args.json else "\n".join(f"{k}: {v}" for k, v in report.items()))
        return 0
    hardware = args.hardware or task.hardware
    if args.trajectories:
        trajectories = arm.load_trajectories(args.trajectories, task.spec.arm)
    else:
        trajectories = arm.random_trajectories(args.n, task.spec.arm, rng=np.random.default_rng(TEST_SEED))
    report, results = evaluate_arm(task, x, trajectories, hardware, seed=args.seed)
    if not args.no_baseline:
        report["baseline"] = tuned_baseline(task, trajectories, hardware, seed=args.seed)
    plots = Path(args.plots) if args.plots else Path(args.run_dir) / "eval"
    report["plots"] = _plots(plots, task, trajectories, results, history, hardware)
    if args.json:
        print(json.dumps(report))
        return 0
    f = report["float"]
    print(f"{report['n_trajectories']} trajectories, {hardware} hardware, {report['parameters']} meta-learned "
          f"parameters, {report['learnable_synapses']} learnable synapses")
    print(f"  loss before {report['loss_before']:.3f}, after one update {report['loss_after']:.3f} (rad/s)^2: "
          f"ratio {report['ratio']:.3f}")
    print(f"  float weights: before {f['loss_before']:.3f}, after {f['loss_after']:.3f}: ratio {f['ratio']:.3f}; "
          f"hardware / float after the update {report['hardware_vs_float']:.3f}")
    if "baseline" in report:
        b = report["baseline"]
        print(f"  not meta-trained, learning rates tuned: before {b['loss_before']:.3f}, after {b['loss_after']:.3f}: "
              f"ratio {b['ratio']:.3f}")
    print(f"  devices written by the update: {100 * report['devices_written_fraction']:.1f} % "
          f"(at most {report['max_writes_per_device']} write per device)")
    print(f"  plots: {', '.join(report['plots'])}")
    return 0
