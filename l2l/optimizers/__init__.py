"""Outer-loop optimisers for learning to learn: ask for candidates, tell their losses, checkpoint.

>>> opt = make("cmaes", x0=[1.0, 1.0], sigma0=0.5, seed=0)
>>> for _ in range(50):
...     X = opt.ask()
...     opt.tell(X, (X**2).sum(axis=1))
>>> opt.best[1] < 1e-6
True
"""

from .base import Optimizer
from .cmaes import CMAES
from .cross_entropy import CrossEntropy
from .es import EvolutionStrategy
from .genetic import GeneticAlgorithm

__all__ = ["OPTIMIZERS", "CMAES", "CrossEntropy", "EvolutionStrategy", "GeneticAlgorithm", "Optimizer", "make"]

#: Name -> optimiser class, the names `make` and the checkpoints use.
OPTIMIZERS: dict[str, type[Optimizer]] = {
    cls.name: cls for cls in (CMAES, CrossEntropy, GeneticAlgorithm, EvolutionStrategy)
}


def make(name: str, **kwargs) -> Optimizer:
    """Build the optimiser registered as ``name`` with its constructor's keyword arguments."""
    try:
        cls = OPTIMIZERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"optimizer must be one of {', '.join(map(repr, OPTIMIZERS))}, not {name!r}") from None
    return cls(**kwargs)
