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
import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from small.errors import FileFormatError
from l2l.optimizers import OPTIMIZERS, Optimizer, make

__all__ = ["REQUIRED", "Config", "ConfigError", "DaskConfig", "Field", "OptimizerConfig", "RunConfig", "fields",
           "load_config", "parse_config"]


class ConfigError(FileFormatError, ValueError):
    """A configuration that cannot be used: bad TOML, a missing or unknown field, a wrong type or value.

    A :class:`~small.errors.FileFormatError`, so the command line reports it as one line and
    exits with status 2.
    """


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: Default of a `Field` that must be given.
REQUIRED: Any = _Required()

_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a table",
               list: "an array"}


@dataclass(frozen=True)
class Field:
    """One field of a configuration section.

    Parameters
    ----------
    type : type
        ``bool``, ``int``, ``float`` (an integer is accepted and converted), ``str``, ``list``
        or ``dict`` (a TOML table).
    default : object
        Value when the field is absent; `REQUIRED` makes it mandatory, ``None`` optional.
    minimum : float or None
        Smallest allowed value of a number (inclusive).
    choices : tuple or None
        Allowed values.
    items : type or None
        For ``list``: the type of every element (checked like a field of that type).
    doc : str
        One line for the documentation and for "missing field" messages.
    """

    type: type
    default: Any = REQUIRED
    minimum: float | None = None
    choices: tuple | None = None
    items: type | None = None
    doc: str = ""

    def __post_init__(self):
        if self.type not in _TYPE_NAMES:
            raise TypeError(f"Field type must be one of {', '.join(t.__name__ for t in _TYPE_NAMES)}, not {self.type!r}")
        if self.items is not None and (self.type is not list or self.items not in _TYPE_NAMES):
            raise TypeError(f"Field items applies to list fields, with an element type of {list(_TYPE_NAMES)!r}")

    @property
    def expected(self) -> str:
        """What the field must be, in words ("an integer >= 1")."""
        text = _TYPE_NAMES[self.type]
        if self.items is not None:
            text += f" of {_plural(self.items)}"
        if self.minimum is not None:
            text += f" >= {self.minimum:g}"
        if self.choices is not None:
            text = "one of " + ", ".join(map(_show, self.choices))
        return text


def _plural(kind: type) -> str:
    return {bool: "booleans", int: "integers", float: "numbers", str: "strings", dict: "tables", list: "arrays"}[kind]


def _show(value) -> str:
    """A value as it would be written in TOML (strings in double quotes, true/false)."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _check(value, kind: type, what: str, expected: str):
    """``value`` as ``kind``, or a ConfigError saying ``what must be <expected>, not <value>``."""
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise ConfigError(f"{what} must be {expected}, not {_show(value)}")
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"{what} must be a finite number, not {value!r}")
    return value


def fields(section: Mapping[str, Any], where: str, spec: Mapping[str, Field], *, extra: bool = False) -> dict[str, Any]:
    """Check a configuration section against ``spec``; its values, with the defaults filled in.

    Parameters
    ----------
    section : mapping
        The section as read from TOML.
    where : str
        How messages name the section, e.g. ``"config.toml: [task]"``.
    spec : mapping of str to Field
        The known fields.
    extra : bool
        Pass fields that ``spec`` does not name through unchecked (the caller checks them)
        instead of refusing them.

    Raises
    ------
    ConfigError
        A missing field, an unknown field (unless ``extra``), a wrong type, a value below the
        minimum or outside the choices; the message names ``where``, the field and what it
        must be.
    """
    if not isinstance(section, Mapping):
        raise ConfigError(f"{where} must be a table, not {_show(section)}")
    unknown = [k for k in section if k not in spec]
    if unknown and not extra:
        raise ConfigError(f"{where} has no field {_show(unknown[0])}: its fields are {', '.join(spec) or 'none'}")
    values: dict[str, Any] = {}
    for name, field in spec.items():
        if name not in section:
            if field.default is REQUIRED:
                doc = f" ({field.doc})" if field.doc else ""
                raise ConfigError(f"{where} is missing {name}{doc}: give {field.expected}")
            values[name] = field.default
            continue
        what = f"{where} {name}"
        value = _check(section[name], field.type, what, field.expected if field.choices is None
                       else _TYPE_NAMES[field.type])
        if field.items is not None:
            value = [_check(v, field.items, f"{what}[{i}]", _TYPE_NAMES[field.items]) for i, v in enumerate(value)]
        if field.minimum is not None and value < field.minimum:
            raise ConfigError(f"{what} must be {field.expected}, not {_show(value)}")
        if field.choices is not None and value not in field.choices:
            raise ConfigError(f"{what} must be {field.expected}, not {_show(value)}")
        values[name] = value
    for name in unknown:
        values[name] = section[name]
    return values


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
    from l2l.tasks import TASKS  # here: task modules import this one for `fields`

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
        raise ConfigError(f"{name}: [run] task must be one of {', '.join(map(_show, TASKS))}, not {_show(run.task)}")
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
        raise ConfigError(f"{where} name must be one of {', '.join(map(_show, OPTIMIZERS))}, not {_show(values['name'])}")
    allowed = _options(OPTIMIZERS[values["name"]])
    for key in options:
        if key not in allowed:
            raise ConfigError(f"{where} {values['name']} has no option {_show(key)}: its options are "
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
    try:
        config.make_optimizer()  # the optimiser checks its own options; its messages name them
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where} {exc}") from None
    return config


def _options(cls: type[Optimizer]) -> list[str]:
    """The keyword-only constructor options of an optimiser class."""
    params = inspect.signature(cls.__init__).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
