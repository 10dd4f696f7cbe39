"""A natural-evolution-style strategy for many parameters (OpenAI-ES)."""

from __future__ import annotations

import math

import numpy as np

from .base import Optimizer, _positive_float, _unit_float

__all__ = ["EvolutionStrategy"]

_STEPS = ("adam", "sgd")


class EvolutionStrategy(Optimizer):
    r"""Isotropic evolution strategy with antithetic sampling and rank-shaped fitness.

    Samples :math:`\lambda/2` directions :math:`\varepsilon_j \sim \mathcal N(0, I)` and
    evaluates the mirrored pairs :math:`m \pm \sigma \varepsilon_j`. The losses are replaced by
    centred ranks :math:`r_k \in [-\tfrac12, \tfrac12]` (ties share their mean rank, so a pair
    that failed twice cancels), and the gradient of the smoothed loss is estimated as

    .. math:: g = \frac{1}{\lambda \sigma} \sum_k r_k\, \varepsilon_k,
              \qquad \varepsilon_k = (x_k - m) / \sigma .

    The mean then takes an Adam step (bias-corrected moments :math:`\hat a, \hat v`)

    .. math:: m \leftarrow m - \eta_g\, \hat a / (\sqrt{\hat v} + \epsilon)

    or a plain one, :math:`m \leftarrow m - \eta_g\, g`, with
    :math:`\eta_g = \eta\, \delta_\eta^g` and :math:`\sigma_g = \max(\sigma_0 \delta_\sigma^g, \sigma_{\min})`.
    Memory and time per generation are :math:`O(\lambda n)`: no covariance is kept.

    Parameters
    ----------
    x0, sigma0, popsize, seed
        See `Optimizer`; ``popsize`` must be even, the default is
        :math:`2 \lceil (4 + \lfloor 3 \ln n \rfloor) / 2 \rceil`.
    learning_rate : float
        :math:`\eta > 0`; with Adam roughly the largest step per coordinate.
    step : {"adam", "sgd"}
    learning_rate_decay, sigma_decay : float
        :math:`\delta_\eta, \delta_\sigma \in (0, 1]` per generation; 1 keeps them fixed.
    sigma_min : float
        :math:`\sigma_{\min} \ge 0`.
    beta1, beta2, epsilon : float
        Adam's moment decays, in [0, 1), and its denominator guard, > 0.
    """

    name = "es"

    def __init__(self, x0, sigma0, popsize=None, seed=None, *, learning_rate=0.05, step="adam",
                 learning_rate_decay=1.0, sigma_decay=1.0, sigma_min=0.0, beta1=0.9, beta2=0.999, epsilon=1e-8):
        super().__init__(x0, sigma0, popsize, seed)
        if self._popsize % 2:
            raise ValueError(f"popsize must be even for mirrored sampling, not {self._popsize!r}")
        if step not in _STEPS:
            raise ValueError(f"step must be one of {', '.join(map(repr, _STEPS))}, not {step!r}")
        self._step = step
        self._learning_rate = _positive_float("learning_rate", learning_rate)
        self._learning_rate_decay = _unit_float("learning_rate_decay", learning_rate_decay, low_open=True)
        self._sigma_decay = _unit_float("sigma_decay", sigma_decay, low_open=True)
        self._sigma_min = _positive_float("sigma_min", sigma_min, allow_zero=True)
        self._beta1 = _unit_float("beta1", beta1, high_open=True)
        self._beta2 = _unit_float("beta2", beta2, high_open=True)
        self._epsilon = _positive_float("epsilon", epsilon)
        self._mean = self._x0.copy()
        self._sigma = self._sigma0
        self._moment1 = np.zeros(self.n)
        self._moment2 = np.zeros(self.n)
        self._steps = 0

    @property
    def mean(self) -> np.ndarray:
        """Current parameters :math:`m`."""
        return self._mean.copy()

    @property
    def sigma(self) -> float:
        r"""Sampling step :math:`\sigma` of the next generation."""
        return self._sigma

    def _default_popsize(self, n):
        return 2 * math.ceil((4 + int(3 * math.log(n))) / 2)

    def _sample(self):
        half = self._rng.standard_normal((self._popsize // 2, self.n))
        return self._mean + self._sigma * np.concatenate([half, -half])

    def _update(self, X, f):
        eps = (X - self._mean) / self._sigma
        g = centred_ranks(f) @ eps / (self._popsize * self._sigma)
        lr = self._learning_rate * self._learning_rate_decay ** self._steps
        self._steps += 1
        if self._step == "adam":
            b1, b2, t = self._beta1, self._beta2, self._steps
            self._moment1 = b1 * self._moment1 + (1 - b1) * g
            self._moment2 = b2 * self._moment2 + (1 - b2) * g * g
            a_hat = self._moment1 / (1 - b1 ** t)
            v_hat = self._moment2 / (1 - b2 ** t)
            self._mean = self._mean - lr * a_hat / (np.sqrt(v_hat) + self._epsilon)
        else:
            self._mean = self._mean - lr * g
        self._sigma = max(self._sigma * self._sigma_decay, self._sigma_min)

    def _config(self):
        return {**super()._config(), "learning_rate": self._learning_rate, "step": self._step,
                "learning_rate_decay": self._learning_rate_decay, "sigma_decay": self._sigma_decay,
                "sigma_min": self._sigma_min, "beta1": self._beta1, "beta2": self._beta2, "epsilon": self._epsilon}

    def _internal(self):
        return {"mean": self._mean, "sigma": self._sigma, "moment1": self._moment1,
                "moment2": self._moment2, "steps": self._steps}

    def _load_internal(self, internal):
        self._mean, self._sigma = internal["mean"], internal["sigma"]
        self._moment1, self._moment2, self._steps = internal["moment1"], internal["moment2"], internal["steps"]


def centred_ranks(f: np.ndarray) -> np.ndarray:
    r"""Ranks of ``f`` scaled to :math:`[-\tfrac12, \tfrac12]` (lowest loss :math:`-\tfrac12`); ties share their mean rank.

    .. math:: r_k = \frac{\operatorname{rank}(f_k)}{\lambda - 1} - \frac12
    """
    values, inverse, counts = np.unique(f, return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts
    mean_rank = first + (counts - 1) / 2
    return mean_rank[inverse] / (f.size - 1) - 0.5
