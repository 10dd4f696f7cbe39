"""The meta-training configuration file (TOML): its schema, and the validation helper tasks share.

A configuration names the task family, the outer-loop optimiser and where to evaluate::

    [run]
    task = "function"          # a name in l2l.tasks.TASKS
    generations = 50
    seed = 0

    [optimizer]
    name = "cmaes"             # a name in l2l.optimizers.OPTIMIZERS
    popsize = 16
    sigma0 = 0.5
    active = true              # any other field is an option of that optimiser

    [task]                     # validated by the task itself (Task.from_config)
    function = "rosenbrock"
    n = 4

    [dask]
    workers = 2                # or: scheduler = "tcp://host:8786"

Every section is checked field by field with :func:`fields`: a missing field, a value of the
wrong type and a field the schema does not know (a typo) are :class:`ConfigError`\\ s naming
the file, the section, the field and what was expected::

    config.toml: [optimizer] popsize must be an integer, not "ten"

Tasks validate their own ``[task]`` section with the same helper, so their messages read alike.
"""

from __future__ import annotations

import inspect
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from l2l.fields import REQUIRED, ConfigError, Field, show, fields
from l2l.optimizers import OPTIMIZERS, Optimizer, make
from l2l.tasks import TASKS
from small.limits import check_memory

__all__ = ["REQUIRED", "Config", "ConfigError", "DaskConfig", "Field", "OptimizerConfig", "RunConfig", "fields",
           "load_config", "parse_config"]


# -- the schema --------------------------------------------------------------------------------

RUN_FIELDS = {
    "task": Field(str, doc="the task family, a name in l2l.tasks.TASKS"),
    "generations": Field(int, minimum=1, doc="generations of the outer loop"),
    "seed": Field(int, default=0, minimum=0, doc="seed of the optimiser and of every evaluation"),
    "shared_seed": Field(bool, default=False, doc="evaluate all candidates of a generation with one seed"),
}
OPTIMIZER_FIELDS = {
    "name": Field(str, doc="the optimiser, a name in l2l.optimizers.OPTIMIZERS"),
    "popsize": Field(int, default=None, minimum=2, doc="candidates per generation (default: the optimiser's)"),
    "sigma0": Field(float, default=None, doc="initial step size (default: the task's)"),
}
DASK_FIELDS = {
    "workers": Field(int, default=None, minimum=0, doc="local Dask workers (default: one per CPU core; 0: no Dask)"),
    "scheduler": Field(str, default=None, doc="address of a running Dask scheduler, e.g. tcp://host:8786"),
    "retries": Field(int, default=2, minimum=0, doc="resubmissions of an evaluation that failed outside the task"),
}
SECTIONS = {"run": True, "optimizer": True, "task": False, "dask": False}  # name -> required


@dataclass(frozen=True)
class RunConfig:
    """``[run]``: what to meta-train and for how long."""

    task: str
    """Name of the task family (``l2l.tasks.TASKS``)."""
    generations: int
    """Generations of the outer loop."""
    seed: int = 0
    """Seed of the optimiser and, through ``SeedSequence(seed, spawn_key=(generation, index))``, of every evaluation."""
    shared_seed: bool = False
    """Evaluate every candidate of a generation with the seed of index 0 (common random numbers)."""


@dataclass(frozen=True)
class OptimizerConfig:
    """``[optimizer]``: the outer-loop optimiser and its options."""

    name: str
    """Name in ``l2l.optimizers.OPTIMIZERS``."""
    popsize: int | None = None
    """Candidates per generation (``None``: the optimiser's default)."""
    sigma0: float | None = None
    """Initial step size (``None``: the task's ``sigma0``)."""
    options: Mapping[str, Any] | None = None
    """Keyword options of the optimiser's constructor (``active``, ``elite_fraction``, ...)."""


@dataclass(frozen=True)
class DaskConfig:
    """``[dask]``: where to evaluate (the command line's ``--workers``/``--scheduler`` take precedence)."""

    workers: int | None = None
    """Local Dask workers (``None``: one per CPU core; 0: evaluate in the calling process)."""
    scheduler: str | None = None
    """Address of a running scheduler; excludes ``workers``."""
    retries: int = 2
    """Resubmissions of an evaluation whose task failed outside ``Task.evaluate`` (not its own exceptions)."""


@dataclass(frozen=True, eq=False)
class Config:
    """A checked configuration file: the sections, the task object and the text as given."""

    path: str
    """The file as named by the user (messages start with it)."""
    text: str
    """The TOML text, saved unchanged in the run folder."""
    run: RunConfig
    optimizer: OptimizerConfig
    task: Any
    """The task object (an ``l2l.tasks.Task``) built from ``[task]``."""
    dask: DaskConfig

    def make_optimizer(self) -> Optimizer:
        """A fresh optimiser: ``[optimizer]`` from the task's ``x0`` and ``sigma0``, seeded with ``[run] seed``."""
        opt = self.optimizer
        sigma0 = opt.sigma0 if opt.sigma0 is not None else self.task.sigma0
        return make(opt.name, x0=self.task.x0(), sigma0=sigma0, popsize=opt.popsize, seed=self.run.seed,
                    **dict(opt.options or {}))


def load_config(path: str | Path) -> Config:
    """Read and check the configuration file at ``path`` (see the module for the format)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read configuration file {str(path)!r} ({exc})") from None
    return parse_config(text, str(path))


def parse_config(text: str, name: str = "config.toml") -> Config:
    """Check the TOML ``text`` of a configuration file called ``name`` (in messages)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{name} is not valid TOML: {exc}") from None
    unknown = [k for k in doc if k not in SECTIONS]
    if unknown:
        raise ConfigError(f"{name} has no section [{unknown[0]}]: its sections are "
                          + ", ".join(f"[{s}]" for s in SECTIONS))
    for section, required in SECTIONS.items():
        if required and section not in doc:
            raise ConfigError(f"{name} is missing the section [{section}]")

    run = RunConfig(**fields(doc["run"], f"{name}: [run]", RUN_FIELDS))
    if run.task not in TASKS:
        raise ConfigError(f"{name}: [run] task must be one of {', '.join(map(show, TASKS))}, not {show(run.task)}")
    where = f"{name}: [task]"
    try:
        task = TASKS[run.task].from_config(doc.get("task", {}), where)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where} {exc}") from None

    where = f"{name}: [optimizer]"
    values = fields(doc["optimizer"], where, OPTIMIZER_FIELDS, extra=True)
    options = {k: values.pop(k) for k in list(values) if k not in OPTIMIZER_FIELDS}
    if values["name"] not in OPTIMIZERS:
        raise ConfigError(f"{where} name must be one of {', '.join(map(show, OPTIMIZERS))}, not {show(values['name'])}")
    allowed = _options(OPTIMIZERS[values["name"]])
    for key in options:
        if key not in allowed:
            raise ConfigError(f"{where} {values['name']} has no option {show(key)}: its options are "
                              + (", ".join(allowed) or "none"))
    optimizer = OptimizerConfig(**values, options=options)

    dask = DaskConfig(**fields(doc.get("dask", {}), f"{name}: [dask]", DASK_FIELDS))
    if dask.workers is not None and dask.scheduler is not None:
        raise ConfigError(f"{name}: [dask] gives both workers and scheduler: keep one (workers for a local cluster)")

    config = Config(path=name, text=text, run=run, optimizer=optimizer, task=task, dask=dask)
    x0 = np.asarray(task.x0(), dtype=float)
    if x0.ndim != 1 or x0.size == 0 or not np.all(np.isfinite(x0)):
        raise ConfigError(f"{name}: [task] gives task {run.task!r} a bad starting point (x0 must be a finite, "
                          f"non-empty 1-D array, not one of shape {x0.shape})")
    popsize = optimizer.popsize or 0  # None: the optimiser's default, a few dozen
    check_memory(popsize * (x0.size * 32 + 4096), f"{where} popsize {popsize} candidates of {x0.size} parameters "
                 "(and their results)", error=ConfigError)
    try:
        config.make_optimizer()  # the optimiser checks its own options; its messages name them
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where} {exc}") from None
    return config


def _options(cls: type[Optimizer]) -> list[str]:
    """The keyword-only constructor options of an optimiser class."""
    params = inspect.signature(cls.__init__).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
