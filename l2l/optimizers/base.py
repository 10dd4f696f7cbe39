"""The ask/tell interface shared by the outer-loop optimisers, and their checkpoint format.

An optimiser proposes a generation of candidate parameter vectors (`Optimizer.ask`), the caller
evaluates them (on the simulator or the chip) and reports one loss per candidate
(`Optimizer.tell`). Losses are minimised. A failed evaluation is reported as ``np.inf`` (``nan``
is read as ``inf``): it ranks below every finite loss, and a generation in which every
evaluation failed leaves the search distribution as it was.

`Optimizer.state` returns a plain JSON document (dicts, lists, strings, ints and finite floats;
no pickle) holding everything the optimiser will ever read again, the random generator
included, so that ``Optimizer.from_state(json.loads(json.dumps(opt.state())))`` continues
bit-identically to ``opt``.
"""

from __future__ import annotations

import abc
import math
from typing import Any, ClassVar

import numpy as np

__all__ = ["Optimizer", "STATE_FORMAT"]

#: Version of the document written by `Optimizer.state`; bumped when its layout changes.
STATE_FORMAT = 1


class Optimizer(abc.ABC):
    """Population-based minimiser driven by ``ask``/``tell``.

    Parameters
    ----------
    x0 : array_like, shape (n,)
        Starting point (centre of the first search distribution), finite, ``n >= 1``.
    sigma0 : float
        Initial step size (standard deviation of the first search distribution), ``> 0``.
    popsize : int or None
        Candidates per generation; ``None`` picks the method's default.
    seed : int or None
        Seed of the `numpy.random.Generator` (PCG64) behind every random draw; ``None`` draws
        fresh entropy (the run can still be resumed from `state`, it just cannot be replayed).

    Notes
    -----
    Subclasses set `name`, implement `_sample` (the next generation), `_update` (learn from a
    told generation with at least one finite loss), `_config` (their constructor arguments)
    and, if they keep state beyond the base class, `_internal`/`_load_internal`.
    """

    #: Registry key, also written into `state`.
    name: ClassVar[str]
    #: Smallest population the method can work with.
    min_popsize: ClassVar[int] = 2

    _classes: ClassVar[dict[str, type[Optimizer]]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            Optimizer._classes[cls.name] = cls

    def __init__(self, x0, sigma0, popsize, seed):
        x0 = np.array(x0, dtype=float)
        if x0.ndim != 1 or x0.size == 0:
            raise ValueError(f"x0 must be a non-empty 1-D array, not one of shape {x0.shape!r}")
        if not np.all(np.isfinite(x0)):
            raise ValueError(f"x0 must be finite, not {x0!r}")
        self._x0 = x0
        self._sigma0 = _positive_float("sigma0", sigma0)
        if popsize is None:
            popsize = self._default_popsize(x0.size)
        if isinstance(popsize, bool) or not isinstance(popsize, (int, np.integer)) or popsize < self.min_popsize:
            raise ValueError(f"popsize must be an integer >= {self.min_popsize} (or None for the default), not {popsize!r}")
        self._popsize = int(popsize)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ValueError(f"seed must be a non-negative integer or None, not {seed!r}")
        self._seed = None if seed is None else int(seed)
        self._rng = np.random.default_rng(self._seed)
        self._generation = 0
        self._best_x: np.ndarray | None = None
        self._best_f = math.inf
        self._asked: np.ndarray | None = None

    # -- the interface ------------------------------------------------------------------------

    @property
    def n(self) -> int:
        """Number of parameters."""
        return self._x0.size

    @property
    def popsize(self) -> int:
        """Candidates per generation."""
        return self._popsize

    @property
    def generation(self) -> int:
        """Generations told so far."""
        return self._generation

    @property
    def best(self) -> tuple[np.ndarray | None, float]:
        """Best ``(x, loss)`` told so far; ``(None, inf)`` until a finite loss has been told."""
        return (None if self._best_x is None else self._best_x.copy()), self._best_f

    def ask(self) -> np.ndarray:
        """Candidates of the current generation, shape ``(popsize, n)``.

        Until they are told, asking again returns the same candidates, so a run restored from a
        checkpoint taken between ``ask`` and ``tell`` re-evaluates exactly what was pending.
        """
        if self._asked is None:
            self._asked = np.asarray(self._sample(), dtype=float)
        return self._asked.copy()

    def tell(self, candidates, fitness) -> None:
        """Report the losses of the candidates from the last `ask` and move to the next generation.

        Parameters
        ----------
        candidates : array_like, shape (popsize, n)
            The evaluated candidates: usually what `ask` returned, possibly repaired (clipped
            to the hardware's range, say); the update uses these.
        fitness : array_like, shape (popsize,)
            Loss per candidate, lower is better; ``inf`` (or ``nan``) marks a failed evaluation.
        """
        if self._asked is None:
            raise RuntimeError("tell() must follow ask(): there are no pending candidates")
        X = np.array(candidates, dtype=float)
        if X.shape != (self._popsize, self.n):
            raise ValueError(f"candidates must have shape {(self._popsize, self.n)!r}, not {X.shape!r}")
        if not np.all(np.isfinite(X)):
            raise ValueError("candidates must be finite")
        f = np.array(fitness, dtype=float)
        if f.shape != (self._popsize,):
            raise ValueError(f"fitness must have shape {(self._popsize,)!r}, not {f.shape!r}")
        if np.any(f == -np.inf):
            raise ValueError("fitness must not be -inf: report a failed evaluation as +inf")
        f[np.isnan(f)] = np.inf
        i = int(np.argmin(f))
        if f[i] < self._best_f:
            self._best_x, self._best_f = X[i].copy(), float(f[i])
        if np.any(np.isfinite(f)):
            self._update(X, f)
        self._generation += 1
        self._asked = None

    # -- checkpoints --------------------------------------------------------------------------

    def state(self) -> dict:
        """Everything needed to continue this run, as a JSON-serialisable dict (no pickle).

        Non-finite floats and numpy arrays are tagged (``{"__float__": "inf"}``,
        ``{"__ndarray__": "<f8", ...}``), so the document is strict JSON and round-trips
        exactly: Python writes floats with enough digits to read back the same bits.
        """
        return _encode({
            "optimizer": self.name,
            "format": STATE_FORMAT,
            "config": self._config(),
            "rng": self._rng.bit_generator.state,
            "generation": self._generation,
            "best_x": self._best_x,
            "best_f": self._best_f,
            "asked": self._asked,
            "internal": self._internal(),
        })

    @classmethod
    def from_state(cls, state: dict) -> Optimizer:
        """Rebuild an optimiser from `state`; on `Optimizer` itself, of whichever kind wrote it."""
        if not isinstance(state, dict) or "optimizer" not in state:
            raise ValueError(f"state must be a dict written by Optimizer.state(), not {type(state).__name__}")
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"state format must be {STATE_FORMAT}, not {state.get('format')!r}")
        klass = Optimizer._classes.get(state["optimizer"])
        if klass is None or not issubclass(klass, cls):
            raise ValueError(f"state was written by optimizer {state['optimizer']!r}, which is not a {cls.__name__}")
        s = _decode(state)
        opt = klass(**s["config"])
        # After construction: building the optimiser may itself draw from the generator.
        opt._rng.bit_generator.state = s["rng"]
        opt._generation = s["generation"]
        opt._best_x, opt._best_f = s["best_x"], s["best_f"]
        opt._asked = s["asked"]
        opt._load_internal(s["internal"])
        return opt

    # -- for subclasses -----------------------------------------------------------------------

    def _default_popsize(self, n: int) -> int:
        r"""Default population, :math:`4 + \lfloor 3 \ln n \rfloor` (Hansen's CMA-ES default)."""
        return max(self.min_popsize, 4 + int(3 * math.log(n)))

    @abc.abstractmethod
    def _sample(self) -> np.ndarray:
        """Draw the next generation, shape ``(popsize, n)``."""

    @abc.abstractmethod
    def _update(self, X: np.ndarray, f: np.ndarray) -> None:
        """Learn from a told generation; ``f`` has ``inf`` for failures and at least one finite value."""

    def _config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this optimiser (before its state is loaded)."""
        return {"x0": self._x0, "sigma0": self._sigma0, "popsize": self._popsize, "seed": self._seed}

    def _internal(self) -> dict[str, Any]:
        """Method-specific mutable state."""
        return {}

    def _load_internal(self, internal: dict[str, Any]) -> None:
        """Inverse of `_internal`."""


def _positive_float(what: str, value, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{what} must be a number, not {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{what} must be {'>= 0' if allow_zero else '> 0'} and finite, not {value!r}")
    return value


def _unit_float(what: str, value, *, low_open: bool = False, high_open: bool = False) -> float:
    """Check ``value`` lies in [0, 1] (ends excluded as asked)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{what} must be a number, not {value!r}")
    value = float(value)
    if not (0 <= value <= 1) or (low_open and value == 0) or (high_open and value == 1):
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{what} must be in {lo}0, 1{hi}, not {value!r}")
    return value


def _encode(value):
    """Turn numpy arrays/scalars, tuples and non-finite floats into strict-JSON values."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"cannot checkpoint an array of dtype {value.dtype}")
        # The memory order is kept: BLAS may round a product of an F-ordered matrix (numpy's
        # eigenvectors, say) differently from the same numbers in C order.
        order = "F" if value.ndim > 1 and value.flags.f_contiguous and not value.flags.c_contiguous else "C"
        return {"__ndarray__": value.dtype.str, "shape": list(value.shape), "order": order,
                "data": [_encode(v) for v in value.ravel(order=order).tolist()]}
    if isinstance(value, np.generic):
        return {"__npscalar__": value.dtype.str, "value": _encode(value.item())}
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"cannot checkpoint a dict with non-string keys: {list(value)!r}")
        return {k: _encode(v) for k, v in value.items()}
    raise TypeError(f"cannot checkpoint a {type(value).__name__}")


def _decode(value):
    """Inverse of `_encode`."""
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__ndarray__" in value:
        data = [_decode(v) for v in value["data"]]
        array = np.array(data, dtype=np.dtype(value["__ndarray__"]))
        return array.reshape(value["shape"], order=value.get("order", "C")).copy(order="K")
    if "__npscalar__" in value:
        return np.dtype(value["__npscalar__"]).type(_decode(value["value"]))
    if "__float__" in value:
        return float(value["__float__"])
    if "__tuple__" in value:
        return tuple(_decode(v) for v in value["__tuple__"])
    return {k: _decode(v) for k, v in value.items()}
