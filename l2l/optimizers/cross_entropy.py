"""The cross-entropy method with a diagonal Gaussian."""

from __future__ import annotations

import math

import numpy as np

from .base import Optimizer, _positive_float, _unit_float

__all__ = ["CrossEntropy"]


class CrossEntropy(Optimizer):
    r"""Cross-entropy method: refit a diagonal Gaussian to the elite of each generation.

    Samples :math:`x_k = m + \sigma \odot z_k`, :math:`z_k \sim \mathcal N(0, I)`, keeps the
    :math:`k = \max(1, \lceil \rho\,\lambda \rceil)` best (finite) candidates :math:`E` and moves

    .. math::
        m &\leftarrow \alpha\, \bar x_E + (1 - \alpha)\, m \\
        \sigma &\leftarrow \max\big(\alpha\, s_E + (1 - \alpha)\, \sigma,\ \sigma_{\min}\big)

    with :math:`\bar x_E, s_E` the elite's per-coordinate mean and standard deviation.

    Parameters
    ----------
    x0, sigma0, popsize, seed
        See `Optimizer`; the default ``popsize`` is :math:`\max(20, 4 (4 + \lfloor 3 \ln n \rfloor))`:
        the elite must be large enough to estimate a spread.
    elite_fraction : float
        :math:`\rho \in (0, 1]`, the share of each generation that refits the Gaussian.
    smoothing : float
        :math:`\alpha \in (0, 1]`; below 1 it slows the collapse of :math:`\sigma`.
    sigma_min : float
        :math:`\sigma_{\min} \ge 0`, keeps some exploration alive (the method's usual failure
        is to shrink :math:`\sigma` before reaching the optimum).
    """

    name = "cross-entropy"

    def __init__(self, x0, sigma0, popsize=None, seed=None, *, elite_fraction=0.2, smoothing=0.7, sigma_min=0.0):
        super().__init__(x0, sigma0, popsize, seed)
        self._elite_fraction = _unit_float("elite_fraction", elite_fraction, low_open=True)
        self._smoothing = _unit_float("smoothing", smoothing, low_open=True)
        self._sigma_min = _positive_float("sigma_min", sigma_min, allow_zero=True)
        self._mean = self._x0.copy()
        self._sigma = np.full(self.n, self._sigma0)

    @property
    def n_elite(self) -> int:
        """Elite size :math:`k`."""
        return max(1, math.ceil(self._elite_fraction * self._popsize))

    @property
    def mean(self) -> np.ndarray:
        """Centre :math:`m` of the search distribution."""
        return self._mean.copy()

    @property
    def sigma(self) -> np.ndarray:
        r"""Per-coordinate standard deviation :math:`\sigma`."""
        return self._sigma.copy()

    def _default_popsize(self, n):
        return max(20, 4 * super()._default_popsize(n))

    def _sample(self):
        z = self._rng.standard_normal((self._popsize, self.n))
        return self._mean + self._sigma * z

    def _update(self, X, f):
        # Stable sort: ties (failures included) resolve by index, deterministically.
        order = np.argsort(f, kind="stable")
        k = min(self.n_elite, int(np.count_nonzero(np.isfinite(f))))
        elite = X[order[:k]]
        a = self._smoothing
        self._mean = a * elite.mean(axis=0) + (1 - a) * self._mean
        self._sigma = np.maximum(a * elite.std(axis=0) + (1 - a) * self._sigma, self._sigma_min)

    def _config(self):
        return {**super()._config(), "elite_fraction": self._elite_fraction,
                "smoothing": self._smoothing, "sigma_min": self._sigma_min}

    def _internal(self):
        return {"mean": self._mean, "sigma": self._sigma}

    def _load_internal(self, internal):
        self._mean, self._sigma = internal["mean"], internal["sigma"]
