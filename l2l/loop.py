"""The outer loop of learning to learn: ask, evaluate on a Runner, tell, checkpoint; and resume.

A run lives in one folder::

    config.toml       the configuration as given: `resume` needs nothing else
    checkpoint.json   rewritten after every generation (atomically): the optimiser's state, the
                      history and the best candidate so far
    run.json          written at the end: the summary (best loss and candidate, counts, time)
    best.npz          written at the end: ``x`` (the best candidate) and ``fitness``

Each generation asks the optimiser for its candidates, evaluates candidate ``i`` of generation
``g`` with the seed :func:`evaluation_seeds` derives from ``(seed, g, i)``, tells the losses
(``inf`` for a failed evaluation, whose traceback goes into the history) and writes the
checkpoint. Since an evaluation is a pure function of its candidate and seed, and the
optimiser's checkpoint holds its random generator, the run's results depend neither on the
number of workers nor on the order evaluations finish, and a run killed at any moment (even
while writing) resumes from its last checkpoint to the same final result, bit for bit.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
import tomllib
from pathlib import Path
from typing import Callable

import numpy as np

from small.errors import FileFormatError
from small.fileio import atomic_output, remove_stale_temporaries, write_json, write_npz
from l2l.config import Config, load_config
from l2l.optimizers import Optimizer
from l2l.runner import ClusterError, Evaluation, Runner

__all__ = ["BEST_FILE", "CHECKPOINT_FILE", "CHECKPOINT_FORMAT", "CONFIG_FILE", "RunDirError", "SUMMARY_FILE",
           "check_run_dir", "evaluation_seeds", "load_checkpoint", "meta_train", "resume"]

CONFIG_FILE = "config.toml"
CHECKPOINT_FILE = "checkpoint.json"
SUMMARY_FILE = "run.json"
BEST_FILE = "best.npz"
#: Version of checkpoint.json and run.json; bumped when their layout changes.
CHECKPOINT_FORMAT = 1
_RUN_FILES = (CONFIG_FILE, CHECKPOINT_FILE, SUMMARY_FILE, BEST_FILE)
_TRACEBACK_CHARS = 4000  # of each failure's traceback kept in the history (its end, where the error is)

Progress = Callable[[str], None]


class RunDirError(FileFormatError):
    """A run folder that cannot be used: not a run, already holding one, or a damaged checkpoint."""


def evaluation_seeds(seed: int, generation: int, popsize: int, shared: bool = False) -> list[int]:
    """Seeds of one generation's evaluations: 63-bit integers from ``SeedSequence(seed, spawn_key=(generation, i))``.

    With ``shared`` every candidate gets the seed of ``i = 0`` (common random numbers: the
    candidates of a generation are compared on the same draw of the task).
    """
    def one(i: int) -> int:
        state = np.random.SeedSequence(seed, spawn_key=(generation, i)).generate_state(1, np.uint64)[0]
        return int(state >> np.uint64(1))

    return [one(0)] * popsize if shared else [one(i) for i in range(popsize)]


def meta_train(config: Config | str | Path, run_dir: str | Path, runner: Runner, progress: Progress = print, *,
               force: bool = False) -> dict:
    """Meta-train as ``config`` says, evaluating on ``runner``; checkpoint every generation in ``run_dir``.

    Parameters
    ----------
    config : Config or path
        A checked configuration (:func:`l2l.config.load_config`) or its file.
    run_dir : path
        The run folder (created); it must be empty unless ``force``, which removes a previous
        run's files from it.
    runner : Runner
        A started runner (inside its ``with`` block).
    progress : callable
        Receives one line per generation (and a line at the start and the end).

    Returns
    -------
    dict
        The summary written to ``run.json``: ``best_fitness`` (``None`` if every evaluation
        failed), ``best_x``, where it was found, counts and times.
    """
    if not isinstance(config, Config):
        config = load_config(config)
    run_dir = Path(run_dir)
    if check_run_dir(run_dir, force):
        for name in _RUN_FILES:
            with contextlib.suppress(FileNotFoundError):
                (run_dir / name).unlink()
        remove_stale_temporaries(run_dir, _RUN_FILES)
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_output(run_dir / CONFIG_FILE) as tmp:
        tmp.write_text(config.text, encoding="utf-8")
    opt = config.make_optimizer()
    state = _fresh_state(config)
    progress(f"meta-training {config.task.describe()} with {opt.name} (popsize {opt.popsize}) for "
             f"{config.run.generations} generations, evaluated {runner.describe()}; checkpoints in {run_dir}/")
    return _train(config, run_dir, runner, opt, state, progress)


def check_run_dir(run_dir: str | Path, force: bool = False) -> bool:
    """Check that a new run may start in ``run_dir``; whether it holds files (that ``force`` lets it replace).

    Raises :class:`RunDirError` if ``run_dir`` is a file, or a non-empty folder and not ``force``.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"run folder {str(run_dir)!r} is a file: choose another -o")
    if not (run_dir.is_dir() and any(run_dir.iterdir())):
        return False
    if not force:
        hint = (f"continue it with `small l2l resume {run_dir}`" if (run_dir / CONFIG_FILE).exists()
                else "choose another -o")
        raise RunDirError(f"run folder {str(run_dir)!r} is not empty: {hint}, or pass --force to start over in it")
    return True


def resume(run_dir: str | Path, runner: Runner, progress: Progress = print) -> dict:
    """Continue the run in ``run_dir`` from its last checkpoint (or from the start if it has none).

    The configuration is read from ``run_dir/config.toml``; ``[run] generations`` may have been
    raised there to extend a run, and ``[dask]`` may differ, but any other change is refused
    (it would not continue the same run). A finished run is summarised again, not rerun.
    Returns the summary, as :func:`meta_train`.
    """
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise RunDirError(f"{str(run_dir)!r} holds no run (no {CONFIG_FILE}): start one with `small l2l run CONFIG -o "
                          f"{run_dir}`")
    config = load_config(run_dir / CONFIG_FILE)
    remove_stale_temporaries(run_dir, _RUN_FILES)
    if (run_dir / CHECKPOINT_FILE).exists():
        opt, state = load_checkpoint(run_dir, config)
    else:
        opt, state = config.make_optimizer(), _fresh_state(config)
    G = config.run.generations
    if state["generation"] > G:
        raise RunDirError(f"{run_dir / CHECKPOINT_FILE} is at generation {state['generation']}, past [run] generations "
                          f"= {G} in {run_dir / CONFIG_FILE}: raise generations to continue")
    if state["generation"] < G:
        progress(f"resuming {run_dir}/ at generation {state['generation']}/{G}: {config.task.describe()} with "
                 f"{opt.name} (popsize {opt.popsize}), evaluated {runner.describe()}")
    return _train(config, run_dir, runner, opt, state, progress)


def load_checkpoint(run_dir: str | Path, config: Config | None = None) -> tuple[Optimizer, dict]:
    """The optimiser and the loop's state (generation, history, best, counts) saved in ``run_dir``.

    With ``config``, check that the checkpoint belongs to it.
    """
    path = Path(run_dir) / CHECKPOINT_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"format {doc.get('format')!r}, expected {CHECKPOINT_FORMAT}")
        opt = Optimizer.from_state(doc["optimizer"])
        state = {k: doc[k] for k in ("generation", "history", "best", "evaluations", "failures", "seconds",
                                     "fingerprint")}
    except FileNotFoundError:
        raise RunDirError(f"{str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RunDirError(f"{str(path)!r} is damaged ({type(exc).__name__}: {exc}): start the run again with "
                          "`small l2l run ... --force`") from None
    if opt.generation != state["generation"]:
        raise RunDirError(f"{str(path)!r} is damaged: the optimiser is at generation {opt.generation}, the loop at "
                          f"{state['generation']}")
    if config is not None and state["fingerprint"] != _fingerprint(config):
        raise RunDirError(f"{Path(run_dir) / CONFIG_FILE} changed since the run started (only [run] generations and "
                          "[dask] may change): restore it, or start a new run")
    return opt, state


# -- the loop ------------------------------------------------------------------------------

def _fresh_state(config: Config) -> dict:
    return {"generation": 0, "history": [], "best": None, "evaluations": 0, "failures": 0, "seconds": 0.0,
            "fingerprint": _fingerprint(config)}


def _fingerprint(config: Config) -> str:
    """Hash of what determines the run's results: the configuration less its length and its cluster."""
    doc = tomllib.loads(config.text)
    doc.pop("dask", None)
    doc["run"] = {k: v for k, v in doc["run"].items() if k != "generations"}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def _train(config: Config, run_dir: Path, runner: Runner, opt: Optimizer, state: dict, progress: Progress) -> dict:
    G = config.run.generations
    start, t_session = state["generation"], time.perf_counter()
    width = len(str(G))
    for g in range(start, G):
        t0 = time.perf_counter()
        X = opt.ask()
        seeds = evaluation_seeds(config.run.seed, g, len(X), config.run.shared_seed)
        try:
            evals = runner.map(config.task, X, seeds)
        except ClusterError as exc:
            raise type(exc)(f"{exc}; the run is checkpointed at generation {g}/{G}: continue it with "
                            f"`small l2l resume {run_dir}`") from None
        f = np.array([e.fitness for e in evals], dtype=float)
        opt.tell(X, f)
        wall = time.perf_counter() - t0
        record = _record(g, evals, seeds, wall)
        i = int(np.argmin(f))
        best = state["best"]
        if math.isfinite(f[i]) and (best is None or f[i] < best["fitness"]):
            state["best"] = {"fitness": float(f[i]), "x": X[i].tolist(), "generation": g, "index": i,
                             "seed": seeds[i], "info": _jsonable(evals[i].info)}
        state["history"].append(record)
        state["generation"] = g + 1
        state["evaluations"] += len(evals)
        state["failures"] += record["failed"]
        state["seconds"] += wall
        _write_checkpoint(run_dir, opt, state)
        done = g + 1 - start
        eta = (time.perf_counter() - t_session) / done * (G - g - 1)
        progress(_progress_line(g, G, width, state, record, eta))
    return _finish(config, run_dir, state, progress)


def _record(g: int, evals: list[Evaluation], seeds: list[int], wall: float) -> dict:
    """One generation of the history (strict JSON: non-finite numbers as null)."""
    f = np.array([e.fitness for e in evals], dtype=float)
    ok = f[np.isfinite(f)]
    failures = [{"index": i, "seed": seeds[i], "worker": e.worker, "error": _last_line(e.traceback),
                 "traceback": (e.traceback or "")[-_TRACEBACK_CHARS:]} for i, e in enumerate(evals) if not e.ok]
    return {
        "generation": g,
        "best": float(ok.min()) if ok.size else None,
        "mean": float(ok.mean()) if ok.size else None,
        "median": float(np.median(ok)) if ok.size else None,
        "failed": len(failures),
        "failures": failures,
        "evals_per_s": len(evals) / wall if wall > 0 else None,
        "seconds": wall,
        "eval_seconds": float(sum(e.seconds for e in evals)),
    }


def _progress_line(g: int, G: int, width: int, state: dict, record: dict, eta: float) -> str:
    best = state["best"]["fitness"] if state["best"] else None
    line = (f"gen {g + 1:>{width}}/{G}  best {_number(best)}  mean {_number(record['mean'])}  "
            f"{record['evals_per_s'] or 0:.1f} eval/s  ETA {_duration(eta)}")
    if record["failed"]:
        line += f"  {record['failed']} failed ({record['failures'][0]['error'][:80]})"
    return line


def _finish(config: Config, run_dir: Path, state: dict, progress: Progress) -> dict:
    from small import __version__

    best = state["best"]
    summary = {
        "format": CHECKPOINT_FORMAT,
        "toolchain": f"small {__version__}",
        "task": config.run.task,
        "optimizer": config.optimizer.name,
        "seed": config.run.seed,
        "generations": state["generation"],
        "best_fitness": best["fitness"] if best else None,
        "best_x": best["x"] if best else None,
        "best_generation": best["generation"] if best else None,
        "best_index": best["index"] if best else None,
        "best_seed": best["seed"] if best else None,
        "best_info": best["info"] if best else None,
        "evaluations": state["evaluations"],
        "failed_evaluations": state["failures"],
        "seconds": state["seconds"],
    }
    write_json(run_dir / SUMMARY_FILE, summary, sort_keys=False)
    if best:
        write_npz(run_dir / BEST_FILE, {"x": np.array(best["x"], dtype=float), "fitness": np.array(best["fitness"])})
        progress(f"done: best loss {best['fitness']:.6g} (generation {best['generation'] + 1}, candidate "
                 f"{best['index']}) after {state['evaluations']} evaluations ({state['failures']} failed) in "
                 f"{_duration(state['seconds'])}; wrote {run_dir}/{SUMMARY_FILE}, {BEST_FILE}")
    else:
        with contextlib.suppress(FileNotFoundError):
            (run_dir / BEST_FILE).unlink()
        progress(f"done: every one of the {state['evaluations']} evaluations failed (tracebacks in "
                 f"{run_dir}/{CHECKPOINT_FILE}); wrote {run_dir}/{SUMMARY_FILE}")
    return summary


# -- files -------------------------------------------------------------------------------------

def _write_checkpoint(run_dir: Path, opt: Optimizer, state: dict) -> None:
    write_json(run_dir / CHECKPOINT_FILE, {"format": CHECKPOINT_FORMAT, "optimizer": opt.state(), **state},
               sort_keys=False)


# -- formatting --------------------------------------------------------------------------------

def _jsonable(value):
    """``value`` with numpy scalars and arrays as plain numbers and lists, non-finite floats as strings."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return repr(value)


def _last_line(text: str | None) -> str:
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "failed"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
