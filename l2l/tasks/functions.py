"""Cheap test functions as a task family, for the outer loop's tests and benchmarks.

``[run] task = "function"``; the ``[task]`` section:

========== ======= ========== ==========================================================
field      type    default    meaning
========== ======= ========== ==========================================================
function   string  "sphere"   ``"sphere"`` or ``"rosenbrock"``
n          integer 10         number of parameters
start      number  1.0        every coordinate of the starting point
sigma0     number  0.5        default initial step size of the optimiser
noise      number  0.0        standard deviation of Gaussian noise added to the loss (seeded)
fail_every integer 0          raise in the evaluations whose seed is a multiple (0: never)
sleep      number  0.0        seconds to sleep per evaluation (kill tests)
work       integer 0          rounds of CPU-bound numpy work per evaluation (benchmarks)
========== ======= ========== ==========================================================

The loss is a pure function of ``x`` and the seed::

    sphere(x)     = sum_i x_i^2
    rosenbrock(x) = sum_i 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2
    loss          = f(x) + noise * N(0, 1),   N drawn from numpy.random.default_rng(seed)

``sleep`` and ``work`` only cost time. ``work`` runs a fixed amount of element-wise numpy
arithmetic (never BLAS, whose threads would blur a parallel speed-up), so its cost is work
done, not wall time waited: on a busy machine it takes longer, as a real evaluation would.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from small.limits import check_memory

from . import Task, register

__all__ = ["FUNCTIONS", "FunctionTask", "busy_work"]

FUNCTIONS = ("sphere", "rosenbrock")

_WORK_SIZE = 1 << 15  # doubles: 256 KiB, in cache


@register
@dataclass(frozen=True)
class FunctionTask(Task):
    """A test function (see the module) with optional noise, injected failures and artificial cost."""

    name = "function"

    function: str = "sphere"
    n: int = 10
    start: float = 1.0
    sigma0: float = 0.5
    noise: float = 0.0
    fail_every: int = 0
    sleep: float = 0.0
    work: int = 0

    def __post_init__(self):
        if self.function not in FUNCTIONS:
            raise ValueError(f"function must be one of {', '.join(map(repr, FUNCTIONS))}, not {self.function!r}")
        if self.function == "rosenbrock" and self.n < 2:
            raise ValueError(f"n must be >= 2 for rosenbrock, not {self.n!r}")
        if not self.sigma0 > 0:
            raise ValueError(f"sigma0 must be > 0, not {self.sigma0!r}")
        # before x0 allocates n numbers: an optimiser such as CMA-ES keeps n x n matrices
        check_memory(self.n * self.n * 32, f"n {self.n}: an optimiser's {self.n} x {self.n} matrices", error=ValueError)

    @classmethod
    def from_config(cls, section: Mapping[str, Any], where: str) -> FunctionTask:
        from l2l.fields import Field, fields

        values = fields(section, where, {
            "function": Field(str, default="sphere", choices=FUNCTIONS),
            "n": Field(int, default=10, minimum=1, doc="number of parameters"),
            "start": Field(float, default=1.0),
            "sigma0": Field(float, default=0.5),
            "noise": Field(float, default=0.0, minimum=0),
            "fail_every": Field(int, default=0, minimum=0),
            "sleep": Field(float, default=0.0, minimum=0),
            "work": Field(int, default=0, minimum=0),
        })
        return cls(**values)

    def x0(self) -> np.ndarray:
        return np.full(self.n, self.start, dtype=float)

    def evaluate(self, x: np.ndarray, seed: int) -> tuple[float, dict]:
        x = np.asarray(x, dtype=float)
        if x.shape != (self.n,):
            raise ValueError(f"x must have shape ({self.n},), not {x.shape!r}")
        if self.sleep:
            time.sleep(self.sleep)
        if self.work:
            busy_work(self.work)
        if self.fail_every and seed % self.fail_every == 0:
            raise RuntimeError(f"injected failure (the seed is a multiple of fail_every={self.fail_every})")
        if self.function == "sphere":
            clean = float(np.sum(x**2))
        else:
            clean = float(np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2))
        loss = clean + (self.noise * float(np.random.default_rng(seed).standard_normal()) if self.noise else 0.0)
        return loss, {"clean": clean}

    def describe(self) -> str:
        return f"task 'function' ({self.function}, {self.n} parameters)"


def busy_work(rounds: int) -> float:
    """``rounds`` passes of element-wise arithmetic over a fixed in-cache array (about 0.1 ms each)."""
    a = np.linspace(0.0, 1.0, _WORK_SIZE)
    b = np.empty_like(a)
    for _ in range(rounds):
        np.sin(a, out=b)
        np.multiply(b, 0.5, out=b)
        np.add(a, b, out=a)
    return float(a[0])
