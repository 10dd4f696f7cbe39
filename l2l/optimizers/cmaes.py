"""CMA-ES through the `cma` package, with a pickle-free checkpoint."""

from __future__ import annotations

import cma
from cma.utilities import utils as cma_utils
import numpy as np

from .base import Optimizer

__all__ = ["CMAES"]

# The parts of `cma.CMAEvolutionStrategy` that change while it runs, as attribute paths from the
# strategy object. Their plain-data attributes (numbers, strings, arrays, lists of these) are
# checkpointed; objects built from the options (parameters, weights, loggers) are rebuilt by
# the constructor instead. The checkpoint test catches an attribute a future `cma` adds.
_CMA_PARTS = ("", "sm", "adapt_sigma", "best", "best.last", "fit", "_stoptolxstagnation", "sigma_vec",
              "sent_solutions")


class CMAES(Optimizer):
    r"""Covariance matrix adaptation evolution strategy (Hansen's `cma`, version 4.5).

    Samples :math:`x_k = m + \sigma\, B D z_k` with :math:`z_k \sim \mathcal N(0, I)` and
    :math:`C = B D^2 B^\top`; after each generation moves :math:`m` to the weighted mean of
    the best :math:`\mu` candidates, updates the evolution paths :math:`p_c, p_\sigma`,
    the covariance (rank-one, rank-:math:`\mu` and, if ``active``, negative updates) and
    :math:`\sigma` by cumulative step-size adaptation:

    .. math:: \sigma \leftarrow \sigma \exp\!\Big(\tfrac{c_\sigma}{d_\sigma}
              \big(\tfrac{\lVert p_\sigma\rVert}{\mathbb E\lVert\mathcal N(0,I)\rVert} - 1\big)\Big)

    Parameters
    ----------
    x0, sigma0, popsize, seed
        See `Optimizer`; the default ``popsize`` is :math:`4 + \lfloor 3\ln n\rfloor`.
    active : bool
        Active CMA (negative weights for the worst candidates in the covariance update).

    Notes
    -----
    The normal deviates come from this optimiser's own `numpy.random.Generator` (passed to
    `cma` as its ``randn`` option), never from numpy's global random state. Mirrored
    sampling is switched off (its selective mirrors would add state); `cma`'s termination
    criteria are not consulted: the caller decides when to stop.

    The checkpoint stores the strategy's mutable arrays and counters (:math:`m`, :math:`\sigma`,
    :math:`C`, :math:`B`, :math:`D`, the paths, the eigendecomposition bookkeeping, the
    fitness history behind the stopping tests) as JSON, not `cma`'s pickle, and restores them
    into a strategy freshly built with the same options.
    """

    name = "cmaes"

    def __init__(self, x0, sigma0, popsize=None, seed=None, *, active=True):
        super().__init__(x0, sigma0, popsize, seed)
        if not isinstance(active, bool):
            raise ValueError(f"active must be True or False, not {active!r}")
        self._active = active
        rng = self._rng
        options = {
            "popsize": self._popsize,
            "randn": lambda *shape: rng.standard_normal(shape),
            "CMA_mirrors": 0,
            "CMA_active": active,
            "verbose": -9,
            "verb_log": 0,
            "verb_disp": 0,
        }
        self._es = cma.CMAEvolutionStrategy(self._x0.tolist(), self._sigma0, options)

    @property
    def mean(self) -> np.ndarray:
        """Centre :math:`m` of the search distribution."""
        return np.array(self._es.mean, dtype=float)

    @property
    def sigma(self) -> float:
        r"""Overall step size :math:`\sigma`."""
        return float(self._es.sigma)

    def _sample(self):
        return np.array(self._es.ask(), dtype=float)

    def _update(self, X, f):
        # cma ranks the losses; +inf sorts last, which is what a failed evaluation deserves.
        self._es.tell(list(X), f.tolist())

    def _config(self):
        return {**super()._config(), "active": self._active}

    def _internal(self):
        parts, seen = {}, {}
        for path in _CMA_PARTS:
            obj = _resolve(self._es, path)
            attrs = {}
            for key, value in vars(obj).items():
                if isinstance(value, np.ndarray) and id(value) in seen:
                    # `es.C is es.sm.C`: keep the sharing, or updates to one miss the other.
                    attrs[key] = {"alias": seen[id(value)]}
                elif _is_data(value):
                    attrs[key] = {"value": value}
                    if isinstance(value, np.ndarray):
                        seen[id(value)] = [path, key]
            parts[path] = attrs
        # Candidates asked but not yet told: `tell` repairs (shortens) candidates it does not
        # find here, so a resumed run must know them to take the same step.
        sent = self._es.sent_solutions
        pending = [{"x": sent._unhashed_keys[h], "geno": entry["geno"], "iteration": entry["iteration"]}
                   for h, entry in sent.data.items()]
        return {"cma_version": cma.__version__, "parts": parts, "pending": pending}

    def _load_internal(self, internal):
        if internal["cma_version"] != cma.__version__:
            raise ValueError(f"checkpoint was written with cma {internal['cma_version']}, "
                             f"but cma {cma.__version__} is installed: resume with the same version")
        for entry in internal["pending"]:
            self._es.sent_solutions.insert(entry["x"], geno=entry["geno"], iteration=entry["iteration"])
        parts = internal["parts"]
        for path in _CMA_PARTS:  # in order, so an alias always points at something restored
            obj = _resolve(self._es, path)
            for key, entry in parts[path].items():
                if "alias" in entry:
                    src_path, src_key = entry["alias"]
                    setattr(obj, key, getattr(_resolve(self._es, src_path), src_key))
                else:
                    setattr(obj, key, entry["value"])
        if not hasattr(self._es, "timer"):
            # Made by `ask`; a checkpoint taken between ask and tell has none. Timing only.
            self._es.timer = cma_utils.ElapsedWCTime()


def _resolve(obj, path):
    for part in filter(None, path.split(".")):
        obj = getattr(obj, part)
    return obj


def _is_data(value) -> bool:
    # Exact types: `cma` subclasses list (`MoreToWrite`) and dict for objects with behaviour.
    if value is None or type(value) in (bool, int, float, str) or isinstance(value, (np.bool_, np.integer, np.floating)):
        return True
    if type(value) is np.ndarray:
        return value.dtype.kind in "biuf"
    if type(value) in (list, tuple):
        return all(_is_data(v) for v in value)
    return False
