"""Task families for learning to learn: each draws tasks, gives the network's input and scores its output.

* :mod:`l2l.tasks.arm` -- a planar two-joint arm following smooth random trajectories.
* :mod:`l2l.tasks.functions` -- cheap test functions (sphere, Rosenbrock) for tests and benchmarks.

The outer loop (:mod:`l2l.loop`) sees a task family through :class:`Task`: a starting point in
parameter space, a default step size, and ``evaluate(x, seed) -> (loss, info)``. A task class
registers under a name with :func:`register`; ``[run] task = "<name>"`` in the configuration
file picks it, and its ``[task]`` section goes to ``from_config``.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar, Mapping

import numpy as np

__all__ = ["TASKS", "Task", "register"]


class Task(abc.ABC):
    """What the outer loop evaluates: a pure function of a parameter vector and a seed.

    A task object is pickled and shipped to the Dask workers, so it must be picklable (a
    frozen dataclass of plain values, say) and ``evaluate`` must depend on nothing but its
    arguments and the object's fields: the same ``(x, seed)`` gives the same loss on any
    worker, which makes runs reproducible whatever the number of workers and lets a killed
    run resume exactly.
    """

    #: Registry key, ``[run] task`` in the configuration file.
    name: ClassVar[str]
    #: Initial step size of the optimiser unless ``[optimizer] sigma0`` is given.
    sigma0: float = 0.1

    @classmethod
    @abc.abstractmethod
    def from_config(cls, section: Mapping[str, Any], where: str) -> Task:
        """Build the task from its ``[task]`` section, checked with :func:`l2l.config.fields`.

        ``where`` names the section in messages (``"config.toml: [task]"``); raise
        :class:`l2l.config.ConfigError` (or ``ValueError``, which the caller prefixes with
        ``where``) for bad values.
        """

    @abc.abstractmethod
    def x0(self) -> np.ndarray:
        """Starting point of the search, a finite 1-D array (its size is the number of parameters)."""

    @abc.abstractmethod
    def evaluate(self, x: np.ndarray, seed: int) -> tuple[float, dict]:
        """Loss of parameters ``x`` (lower is better) on the task drawn with ``seed``, and a dict of extras.

        An exception marks the evaluation as failed: the loop records its traceback and gives
        the candidate the worst loss. The dict should hold small JSON-friendly values (the
        best candidate's is saved with the run).
        """

    def describe(self) -> str:
        """One line for the start of a run."""
        return f"task {self.name!r} ({self.x0().size} parameters)"


#: Name -> task class.
TASKS: dict[str, type[Task]] = {}


def register(cls: type[Task]) -> type[Task]:
    """Class decorator: add a :class:`Task` subclass to :data:`TASKS` under its ``name``."""
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise TypeError(f"register() takes a Task subclass, not {cls!r}")
    name = cls.__dict__.get("name")
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} must set a class attribute name (a non-empty string) to be registered")
    if name in TASKS and TASKS[name] is not cls:
        raise ValueError(f"task name {name!r} is taken by {TASKS[name].__module__}.{TASKS[name].__qualname__}")
    TASKS[name] = cls
    return cls


# The task modules register their classes on import; add new task modules here. (At the end:
# they import `Task` and `register` from this package.)
from . import alif_tuning, functions, oneshot  # noqa: E402, F401
