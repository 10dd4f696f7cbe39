"""A real-coded genetic algorithm."""

from __future__ import annotations

import numpy as np

from .base import Optimizer, _positive_float, _unit_float

__all__ = ["GeneticAlgorithm"]

_CROSSOVERS = ("blend", "uniform")


class GeneticAlgorithm(Optimizer):
    r"""Generational GA: elitism, tournament selection, crossover and Gaussian mutation.

    The first generation is :math:`x_0` and :math:`\lambda - 1` points
    :math:`x_0 + \sigma_0 z`. Each later generation keeps the ``n_elite`` best of the last
    one unchanged (and re-evaluates them: on noisy hardware an old lucky loss should not
    survive forever) and fills the rest with children of two parents, each the best of
    ``tournament_size`` candidates drawn at random. With probability ``crossover_rate``
    the child mixes its parents :math:`a, b`:

    * ``"blend"`` (BLX-:math:`\beta`): :math:`c_i = a_i + u_i (b_i - a_i)`,
      :math:`u_i \sim \mathcal U(-\beta, 1 + \beta)`;
    * ``"uniform"``: :math:`c_i` is :math:`a_i` or :math:`b_i` with equal probability;

    otherwise it copies :math:`a`. Each gene then mutates with probability ``mutation_rate``,
    :math:`c_i \leftarrow c_i + \sigma_g z_i`, where the mutation step decays geometrically,
    :math:`\sigma_g = \max(\sigma_0\, \gamma^g, \sigma_{\min})`.

    Parameters
    ----------
    x0, sigma0, popsize, seed
        See `Optimizer`; the default ``popsize`` is :math:`\max(20, 4 (4 + \lfloor 3 \ln n \rfloor))`.
    n_elite : int
        Survivors per generation, ``0 <= n_elite < popsize``.
    tournament_size : int
        Candidates per tournament, ``>= 1`` (1 is random selection).
    crossover : {"blend", "uniform"}
    crossover_rate : float
        In [0, 1].
    blend_alpha : float
        :math:`\beta \ge 0` of blend crossover.
    mutation_rate : float
        Per-gene mutation probability, in [0, 1]; ``None`` means :math:`1/n`.
    sigma_decay : float
        :math:`\gamma \in (0, 1]`.
    sigma_min : float
        :math:`\sigma_{\min} \ge 0`.
    """

    name = "ga"

    def __init__(self, x0, sigma0, popsize=None, seed=None, *, n_elite=2, tournament_size=3, crossover="blend",
                 crossover_rate=0.9, blend_alpha=0.5, mutation_rate=None, sigma_decay=1.0, sigma_min=0.0):
        super().__init__(x0, sigma0, popsize, seed)
        if isinstance(n_elite, bool) or not isinstance(n_elite, (int, np.integer)) or not 0 <= n_elite < self._popsize:
            raise ValueError(f"n_elite must be an integer in [0, popsize={self._popsize}), not {n_elite!r}")
        if isinstance(tournament_size, bool) or not isinstance(tournament_size, (int, np.integer)) or tournament_size < 1:
            raise ValueError(f"tournament_size must be an integer >= 1, not {tournament_size!r}")
        if crossover not in _CROSSOVERS:
            raise ValueError(f"crossover must be one of {', '.join(map(repr, _CROSSOVERS))}, not {crossover!r}")
        self._n_elite, self._tournament_size, self._crossover = int(n_elite), int(tournament_size), crossover
        self._crossover_rate = _unit_float("crossover_rate", crossover_rate)
        self._blend_alpha = _positive_float("blend_alpha", blend_alpha, allow_zero=True)
        self._mutation_rate = None if mutation_rate is None else _unit_float("mutation_rate", mutation_rate)
        self._sigma_decay = _unit_float("sigma_decay", sigma_decay, low_open=True)
        self._sigma_min = _positive_float("sigma_min", sigma_min, allow_zero=True)
        self._parents: np.ndarray | None = None
        self._parent_fitness: np.ndarray | None = None

    @property
    def sigma(self) -> float:
        r"""Mutation step :math:`\sigma_g` of the next generation."""
        return max(self._sigma0 * self._sigma_decay ** self._generation, self._sigma_min)

    def _default_popsize(self, n):
        return max(20, 4 * super()._default_popsize(n))

    def _sample(self):
        rng, lam, n = self._rng, self._popsize, self.n
        if self._parents is None:
            X = self._x0 + self._sigma0 * rng.standard_normal((lam, n))
            X[0] = self._x0
            return X
        P, f = self._parents, self._parent_fitness
        order = np.argsort(f, kind="stable")
        n_child = lam - self._n_elite
        # Tournaments: the lowest index among the drawn ranks wins.
        draws = rng.integers(0, lam, size=(2, n_child, self._tournament_size))
        a, b = P[order[draws[0].min(axis=-1)]], P[order[draws[1].min(axis=-1)]]
        cross = rng.random(n_child) < self._crossover_rate
        if self._crossover == "blend":
            u = rng.uniform(-self._blend_alpha, 1 + self._blend_alpha, size=(n_child, n))
            mixed = a + u * (b - a)
        else:
            mixed = np.where(rng.random((n_child, n)) < 0.5, a, b)
        children = np.where(cross[:, None], mixed, a)
        rate = 1 / n if self._mutation_rate is None else self._mutation_rate
        mutate = rng.random((n_child, n)) < rate
        children = children + mutate * (self.sigma * rng.standard_normal((n_child, n)))
        return np.concatenate([P[order[:self._n_elite]], children])

    def _update(self, X, f):
        self._parents, self._parent_fitness = X.copy(), f.copy()

    def _config(self):
        return {**super()._config(), "n_elite": self._n_elite, "tournament_size": self._tournament_size,
                "crossover": self._crossover, "crossover_rate": self._crossover_rate,
                "blend_alpha": self._blend_alpha, "mutation_rate": self._mutation_rate,
                "sigma_decay": self._sigma_decay, "sigma_min": self._sigma_min}

    def _internal(self):
        return {"parents": self._parents, "parent_fitness": self._parent_fitness}

    def _load_internal(self, internal):
        self._parents, self._parent_fitness = internal["parents"], internal["parent_fitness"]
