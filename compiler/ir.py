"""SMALL's network IR: populations of discrete-time neurons joined by weighted projections.

The IR is discrete-time: every parameter is per step, exactly as the chip and the simulators
execute it. ``docs/semantics.md`` is the normative description; the equations are repeated in
each neuron model's docstring. Continuous-time NIR parameters are discretised by the NIR
frontend (``compiler/nir_frontend.py``) at a stated ``dt``, which the network records.

Parameters are scalars (shared by all neurons of a population) or per-neuron arrays of shape
``[size]``. Weights follow the torch/NIR convention ``[n_target, n_source]`` and may be dense
numpy arrays or ``scipy.sparse`` matrices.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Mapping, Union

import numpy as np
import scipy.sparse as sp

from small.errors import NetworkError

Param = Union[float, np.ndarray]
Weight = Union[np.ndarray, sp.sparray, sp.spmatrix]

RESET_MODES = ("zero", "subtract")
# Fields of a neuron model that are not numeric parameters.
_MODE_FIELDS = ("reset", "fire_at_threshold")


def _as_param(value: Any, *, integer: bool = False) -> Param:
    """Normalise a parameter to a Python scalar or a 1-D float64 (int64) array."""
    arr = np.asarray(value)
    if arr.dtype == bool or arr.dtype.kind not in "iuf":
        raise NetworkError(f"parameter value {value!r} is not numeric")
    if integer and not np.all(np.isfinite(arr) & (arr == np.round(arr))):
        raise NetworkError(f"parameter value {value!r} must be a whole number of steps")
    if arr.ndim == 0:
        return int(arr) if integer else float(arr)
    return arr.astype(np.int64 if integer else np.float64)


@dataclass(eq=False)
class NeuronModel:
    """Base of the neuron models. Subclasses list their parameters as dataclass fields.

    ``reset`` and ``refractory`` belong to the spiking models only; ``kind`` is the name used in
    files and on the command line.
    """

    kind: ClassVar[str] = ""
    spiking: ClassVar[bool] = True
    # Inclusive bounds per parameter, checked by validate(); None means unbounded.
    bounds: ClassVar[Mapping[str, tuple[float | None, float | None]]] = {}
    integer_params: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        for f in self.param_names():
            setattr(self, f, _as_param(getattr(self, f), integer=f in self.integer_params))

    @classmethod
    def param_names(cls) -> tuple[str, ...]:
        """Names of the numeric parameters (everything but ``reset`` and ``fire_at_threshold``)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name not in _MODE_FIELDS)

    def params(self) -> dict[str, Param]:
        return {name: getattr(self, name) for name in self.param_names()}

    def validate(self, size: int, where: str) -> None:
        """Check shapes, finiteness and ranges for a population of ``size`` neurons."""
        for name, value in self.params().items():
            arr = np.asarray(value)
            if arr.ndim not in (0, 1) or (arr.ndim == 1 and arr.shape[0] != size):
                raise NetworkError(
                    f"{where}: parameter {name!r} has shape {list(arr.shape)}, but the population has "
                    f"{size} neurons: give a scalar or an array of shape [{size}]"
                )
            if not np.all(np.isfinite(arr)):
                raise NetworkError(f"{where}: parameter {name!r} contains NaN or Inf: every parameter must be finite")
            lo, hi = self.bounds.get(name, (None, None))
            if lo is not None and np.any(arr < lo):
                raise NetworkError(
                    f"{where}: parameter {name!r} = {float(arr.min())!r} is below {lo}: {_bound_hint(name)}"
                )
            if hi is not None and np.any(arr > hi):
                raise NetworkError(
                    f"{where}: parameter {name!r} = {float(arr.max())!r} is above {hi}: {_bound_hint(name)}"
                )
        reset = getattr(self, "reset", None)
        if self.spiking and reset not in RESET_MODES:
            raise NetworkError(f"{where}: reset must be one of {', '.join(RESET_MODES)}, not {reset!r}")
        if self.spiking and not isinstance(getattr(self, "fire_at_threshold", False), (bool, np.bool_)):
            raise NetworkError(f"{where}: fire_at_threshold must be true or false, not {self.fire_at_threshold!r}")  # type: ignore[attr-defined]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.kind}
        out.update(self.params())
        if self.spiking:
            out["reset"] = self.reset  # type: ignore[attr-defined]
            if self.fire_at_threshold:  # type: ignore[attr-defined]
                out["fire_at_threshold"] = True  # written only when set: older files stay byte-identical
        return out

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> "NeuronModel":
        data = dict(data)
        kind = data.pop("model", None)
        cls = NEURON_MODELS.get(kind)  # type: ignore[arg-type]
        if cls is None:
            raise NetworkError(f"unknown neuron model {kind!r}: expected one of {', '.join(NEURON_MODELS)}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise NetworkError(f"neuron model {kind!r} has no parameter(s) {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise NetworkError(f"neuron model {kind!r}: {exc}") from None

    def equals(self, other: "NeuronModel") -> bool:
        """Exact equality of kind, reset mode and every parameter value."""
        if type(self) is not type(other) or any(getattr(self, f, None) != getattr(other, f, None) for f in _MODE_FIELDS):
            return False
        return all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(self.params().values(), other.params().values()))


def _bound_hint(name: str) -> str:
    if name.startswith("alpha"):
        return "decay factors per step lie in [0, 1] (a negative time constant, or dt longer than tau)"
    if name == "refractory":
        return "the refractory period is a number of steps >= 0"
    return "check the value"


_DECAY = (0.0, 1.0)


@dataclass(eq=False)
class LIF(NeuronModel):
    r"""Leaky integrate-and-fire neuron, per step t (``docs/semantics.md``):

    .. math::
        v &\leftarrow v_{reset} \text{ if } s_{t-1} \text{ and reset = zero} \\
        v &\leftarrow \alpha v + (1 - \alpha) v_{leak} \\
        v &\leftarrow v - v_{th} s_{t-1} \text{ if reset = subtract} \\
        v &\leftarrow v + g I_t \text{ unless refractory} \\
        s_t &= [v > v_{th}] \text{ unless refractory} \quad (v \ge v_{th} \text{ with fire\_at\_threshold})

    NIR's LIF at step dt (forward Euler): ``alpha = 1 - dt/tau``, ``gain = dt*r/tau``.
    """

    kind: ClassVar[str] = "lif"
    bounds: ClassVar[Mapping[str, tuple[float | None, float | None]]] = {"alpha": _DECAY, "refractory": (0, None)}
    integer_params: ClassVar[tuple[str, ...]] = ("refractory",)

    alpha: Param = 0.9
    """Membrane decay factor per step, in [0, 1]."""
    gain: Param = 1.0
    """Factor from input current to membrane increment."""
    v_leak: Param = 0.0
    """Resting potential the membrane decays towards."""
    v_threshold: Param = 1.0
    """Firing threshold (strict: fires when v > v_threshold)."""
    v_reset: Param = 0.0
    """Potential after a spike with reset = zero."""
    refractory: Param = 0
    """Steps after a spike during which input is ignored and the neuron cannot fire."""
    reset: str = "zero"
    """``"zero"`` (to v_reset) or ``"subtract"`` (v_threshold is subtracted)."""
    fire_at_threshold: bool = False
    """Fire when ``v >= v_threshold`` rather than ``v > v_threshold`` (Sinabs, Rockpool)."""


@dataclass(eq=False)
class CubaLIF(NeuronModel):
    r"""Current-based LIF: a synaptic current filters the input before the membrane.

    .. math::
        i_t &= \alpha_{syn} i_{t-1} + g_{syn} I_t \\
        v &\text{ as LIF, with } i_t \text{ in place of } I_t

    NIR's CubaLIF at dt (Euler): ``alpha_syn = 1 - dt/tau_syn``, ``syn_gain = dt*w_in/tau_syn``,
    ``alpha = 1 - dt/tau_mem``, ``gain = dt*r/tau_mem``.
    """

    kind: ClassVar[str] = "cuba_lif"
    bounds: ClassVar[Mapping[str, tuple[float | None, float | None]]] = {
        "alpha": _DECAY, "alpha_syn": _DECAY, "refractory": (0, None)}
    integer_params: ClassVar[tuple[str, ...]] = ("refractory",)

    alpha: Param = 0.9
    """Membrane decay factor per step, in [0, 1]."""
    alpha_syn: Param = 0.8
    """Synaptic current decay factor per step, in [0, 1]."""
    gain: Param = 1.0
    """Factor from synaptic current to membrane increment."""
    syn_gain: Param = 1.0
    """Factor from input to synaptic current increment."""
    v_leak: Param = 0.0
    v_threshold: Param = 1.0
    v_reset: Param = 0.0
    refractory: Param = 0
    reset: str = "zero"
    fire_at_threshold: bool = False


@dataclass(eq=False)
class IF(NeuronModel):
    r"""Integrate-and-fire neuron: LIF without leak (``alpha = 1``).

    .. math:: v \leftarrow v + g I_t, \quad s_t = [v > v_{th}]

    NIR's IF at dt: ``gain = dt*r``.
    """

    kind: ClassVar[str] = "if"
    bounds: ClassVar[Mapping[str, tuple[float | None, float | None]]] = {"refractory": (0, None)}
    integer_params: ClassVar[tuple[str, ...]] = ("refractory",)

    gain: Param = 1.0
    v_threshold: Param = 1.0
    v_reset: Param = 0.0
    refractory: Param = 0
    reset: str = "zero"
    fire_at_threshold: bool = False


@dataclass(eq=False)
class LI(NeuronModel):
    r"""Leaky integrator (non-spiking readout); its output is the membrane potential.

    .. math:: v \leftarrow \alpha v + (1 - \alpha) v_{leak} + g I_t

    NIR's LI at dt: ``alpha = 1 - dt/tau``, ``gain = dt*r/tau``; NIR's Integrator (I) is
    ``alpha = 1``, ``v_leak = 0``, ``gain = dt*r``.
    """

    kind: ClassVar[str] = "li"
    spiking: ClassVar[bool] = False
    bounds: ClassVar[Mapping[str, tuple[float | None, float | None]]] = {"alpha": _DECAY}

    alpha: Param = 0.9
    gain: Param = 1.0
    v_leak: Param = 0.0


@dataclass(eq=False)
class CubaLI(NeuronModel):
    r"""Current-based leaky integrator (non-spiking readout); its output is the membrane potential.

    .. math::
        i_t &= \alpha_{syn} i_{t-1} + g_{syn} I_t \\
        v &\leftarrow \alpha v + (1 - \alpha) v_{leak} + g\, i_t

    NIR's CubaLI at dt (Euler): ``alpha_syn = 1 - dt/tau_syn``, ``syn_gain = dt*w_in/tau_syn``,
    ``alpha = 1 - dt/tau_mem``, ``gain = dt*r/tau_mem``.
    """

    kind: ClassVar[str] = "cuba_li"
    spiking: ClassVar[bool] = False
    bounds: ClassVar[Mapping[str, tuple[float | None, float | None]]] = {"alpha": _DECAY, "alpha_syn": _DECAY}

    alpha: Param = 0.9
    """Membrane decay factor per step, in [0, 1]."""
    alpha_syn: Param = 0.8
    """Synaptic current decay factor per step, in [0, 1]."""
    gain: Param = 1.0
    """Factor from synaptic current to membrane increment."""
    syn_gain: Param = 1.0
    """Factor from input to synaptic current increment."""
    v_leak: Param = 0.0


@dataclass(eq=False)
class ALIF(NeuronModel):
    r"""Adaptive LIF (LSNN-style threshold adaptation). LIF plus an adaptation variable b:

    .. math::
        b_t &= \alpha_{adapt} b_{t-1} + a\, s_{t-1} \\
        s_t &= [v > v_{th} + b_t]

    The subtract reset removes the base threshold ``v_threshold``. An LSNN with adaptation
    strength beta and time constant tau_a has ``alpha_adapt = exp(-dt/tau_a)`` and
    ``adapt = beta * (1 - alpha_adapt)``. NIR has no adaptive neuron: SMALL's NIR export writes
    ALIF as a LIF node carrying these parameters in its metadata (``docs/semantics.md``).
    """

    kind: ClassVar[str] = "alif"
    bounds: ClassVar[Mapping[str, tuple[float | None, float | None]]] = {
        "alpha": _DECAY, "alpha_adapt": _DECAY, "refractory": (0, None)}
    integer_params: ClassVar[tuple[str, ...]] = ("refractory",)

    alpha: Param = 0.9
    gain: Param = 1.0
    v_leak: Param = 0.0
    v_threshold: Param = 1.0
    v_reset: Param = 0.0
    refractory: Param = 0
    alpha_adapt: Param = 0.99
    """Decay factor per step of the threshold adaptation, in [0, 1]."""
    adapt: Param = 0.05
    """Threshold increase per spike."""
    reset: str = "zero"
    fire_at_threshold: bool = False


NEURON_MODELS: dict[str, type[NeuronModel]] = {m.kind: m for m in (LIF, CubaLIF, IF, LI, ALIF, CubaLI)}


@dataclass(eq=False)
class Input:
    """A named network input: a vector of ``size`` values per step (spikes or currents).

    ``shape`` keeps the original tensor shape (e.g. channels, height, width) so that inputs
    given as ``[T, batch, *shape]`` can be flattened in C order.
    """

    name: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        self.shape = tuple(int(s) for s in np.atleast_1d(self.shape))

    @property
    def size(self) -> int:
        return int(math.prod(self.shape))


@dataclass(eq=False)
class Population:
    """``size`` neurons of one model. ``bias`` is a constant input current added every step."""

    name: str
    size: int
    neuron: NeuronModel
    bias: Param = 0.0

    def __post_init__(self) -> None:
        self.size = int(self.size)
        self.bias = _as_param(self.bias)


@dataclass(eq=False)
class Projection:
    """Weighted connections from a source (input or population) to a target population.

    A spike (or input value) of the source at step ``t`` contributes ``weight @ s`` to the
    target's input current at step ``t + delay``. ``delay = 0`` means the target sees it in the
    same step (the source is updated first); a zero-delay cycle is not allowed.
    """

    source: str
    target: str
    weight: Weight
    delay: int = 0
    name: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            self.name = f"{self.source}->{self.target}" + (f"@{self.delay}" if self.delay else "")
        if sp.issparse(self.weight):
            self.weight = sp.csr_array(self.weight, dtype=np.float64)
        else:
            self.weight = np.asarray(self.weight, dtype=np.float64)
        if isinstance(self.delay, (bool, np.bool_)) or int(self.delay) != self.delay:
            raise NetworkError(f"projection {self.name!r}: delay must be a whole number of steps, not {self.delay!r}")
        self.delay = int(self.delay)

    @property
    def is_sparse(self) -> bool:
        return sp.issparse(self.weight)

    def dense_weight(self) -> np.ndarray:
        return self.weight.toarray() if sp.issparse(self.weight) else self.weight

    @property
    def nnz(self) -> int:
        return int(self.weight.nnz) if sp.issparse(self.weight) else int(np.count_nonzero(self.weight))


@dataclass(eq=False)
class Network:
    """A spiking network: inputs, populations, projections and named outputs.

    ``outputs`` maps an output name to the population whose spikes (or, for LI, membrane
    values) it reports; outputs are reported in this order. ``dt`` (seconds per step) is the
    step at which the parameters were discretised; ``metadata`` holds provenance (source file,
    its SHA-256, the framework convention) and never changes the semantics.
    """

    name: str = "network"
    dt: float = 1e-3
    inputs: list[Input] = field(default_factory=list)
    populations: list[Population] = field(default_factory=list)
    projections: list[Projection] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    # -- lookup -----------------------------------------------------------------------------
    def population(self, name: str) -> Population:
        for pop in self.populations:
            if pop.name == name:
                return pop
        raise NetworkError(f"no population named {name!r}; the network has {_names(self.populations)}")

    def input(self, name: str) -> Input:
        for inp in self.inputs:
            if inp.name == name:
                return inp
        raise NetworkError(f"no input named {name!r}; the network has {_names(self.inputs)}")

    def source_size(self, name: str) -> int:
        for node in (*self.inputs, *self.populations):
            if node.name == name:
                return node.size
        raise NetworkError(f"no input or population named {name!r}")

    @property
    def n_neurons(self) -> int:
        return sum(p.size for p in self.populations)

    @property
    def n_synapses(self) -> int:
        return sum(p.nnz for p in self.projections)

    # -- validation -------------------------------------------------------------------------
    def validate(self) -> "Network":
        """Check the whole network; raise :class:`NetworkError` naming the first problem."""
        if not (isinstance(self.dt, (int, float)) and math.isfinite(self.dt) and self.dt > 0):
            raise NetworkError(f"network dt must be a positive number of seconds, not {self.dt!r}")
        seen: dict[str, str] = {}
        for kind, nodes in (("input", self.inputs), ("population", self.populations)):
            for node in nodes:
                if not isinstance(node.name, str) or not node.name or "/" in node.name:
                    raise NetworkError(f"{kind} name {node.name!r} is invalid: use a non-empty name without '/'")
                if node.name in seen:
                    raise NetworkError(f"name {node.name!r} is used by two nodes ({seen[node.name]} and {kind})")
                seen[node.name] = kind
                if node.size <= 0:
                    raise NetworkError(f"{kind} {node.name!r} has size {node.size}: sizes must be positive")
        for pop in self.populations:
            where = f"population {pop.name!r}"
            if not isinstance(pop.neuron, NeuronModel):
                raise NetworkError(f"{where}: neuron must be one of {', '.join(NEURON_MODELS)}")
            pop.neuron.validate(pop.size, where)
            bias = np.asarray(pop.bias)
            if bias.ndim not in (0, 1) or (bias.ndim == 1 and bias.shape[0] != pop.size):
                raise NetworkError(f"{where}: bias has shape {list(bias.shape)}, expected a scalar or [{pop.size}]")
            if not np.all(np.isfinite(bias)):
                raise NetworkError(f"{where}: bias contains NaN or Inf")
        pop_names = {p.name for p in self.populations}
        proj_names: set[str] = set()
        for proj in self.projections:
            where = f"projection {proj.name!r}"
            if proj.name in proj_names:
                raise NetworkError(f"two projections are named {proj.name!r}: projection names must be unique")
            proj_names.add(proj.name)
            if proj.source not in seen:
                raise NetworkError(f"{where}: source {proj.source!r} is not an input or population of the network")
            if proj.source in pop_names and not self.population(proj.source).neuron.spiking:
                raise NetworkError(
                    f"{where}: source {proj.source!r} is a non-spiking (LI) population, which sends no events: "
                    "project from a spiking population instead"
                )
            if proj.target not in pop_names:
                hint = " (inputs cannot be targets)" if proj.target in seen else ""
                raise NetworkError(f"{where}: target {proj.target!r} is not a population of the network{hint}")
            expected = (self.population(proj.target).size, self.source_size(proj.source))
            if tuple(proj.weight.shape) != expected:
                raise NetworkError(
                    f"{where}: weight has shape {list(proj.weight.shape)}, expected [target size, source size] = "
                    f"{list(expected)}"
                )
            data = proj.weight.data if proj.is_sparse else proj.weight
            if not np.all(np.isfinite(data)):
                raise NetworkError(f"{where}: weights contain NaN or Inf")
            if proj.delay < 0:
                raise NetworkError(f"{where}: delay {proj.delay} is negative: delays are whole steps >= 0")
        for out, pop in self.outputs.items():
            if pop not in pop_names:
                raise NetworkError(f"output {out!r} refers to {pop!r}, which is not a population of the network")
        self.update_order()  # raises on zero-delay cycles
        return self

    def update_order(self) -> list[str]:
        """Population names in the order they are updated within a step.

        A topological order of the zero-delay projections, ties broken by the order of
        ``populations``. Raises :class:`NetworkError` if zero-delay projections form a cycle.
        """
        names = [p.name for p in self.populations]
        preds: dict[str, set[str]] = {n: set() for n in names}
        for proj in self.projections:
            if proj.delay == 0 and proj.source in preds and proj.target in preds:
                preds[proj.target].add(proj.source)
        order: list[str] = []
        done: set[str] = set()
        while len(order) < len(names):
            ready = [n for n in names if n not in done and preds[n] <= done]
            if not ready:
                cycle = [n for n in names if n not in done]
                raise NetworkError(
                    f"projections with delay 0 form a cycle through {', '.join(map(repr, cycle))}: "
                    "every cycle needs at least one projection with delay >= 1"
                )
            order.append(ready[0])
            done.add(ready[0])
        return order

    # -- dict form --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A nested dict of plain values and numpy arrays (sparse weights as CSR parts)."""
        projections = []
        for proj in self.projections:
            entry: dict[str, Any] = {"name": proj.name, "source": proj.source, "target": proj.target, "delay": proj.delay}
            if proj.is_sparse:
                w = proj.weight
                entry["weight"] = {"format": "csr", "shape": list(w.shape), "data": w.data,
                                   "indices": w.indices.astype(np.int64), "indptr": w.indptr.astype(np.int64)}
            else:
                entry["weight"] = proj.weight
            projections.append(entry)
        return {
            "name": self.name,
            "dt": self.dt,
            "inputs": [{"name": i.name, "shape": list(i.shape)} for i in self.inputs],
            "populations": [
                {"name": p.name, "size": p.size, "neuron": p.neuron.to_dict(), "bias": p.bias} for p in self.populations
            ],
            "projections": projections,
            "outputs": [[name, pop] for name, pop in self.outputs.items()],  # a list: their order is the output order
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Network":
        """Inverse of :meth:`to_dict`; raises :class:`NetworkError` on missing or wrong fields."""
        try:
            projections = []
            for entry in data.get("projections", []):
                w = entry["weight"]
                if isinstance(w, Mapping):
                    if w.get("format") != "csr":
                        raise NetworkError(f"projection {entry.get('name')!r}: unknown weight format {w.get('format')!r}")
                    w = sp.csr_array((np.asarray(w["data"]), np.asarray(w["indices"]), np.asarray(w["indptr"])),
                                     shape=tuple(w["shape"]))
                projections.append(Projection(source=entry["source"], target=entry["target"], weight=w,
                                              delay=entry.get("delay", 0), name=entry.get("name", "")))
            return cls(
                name=data.get("name", "network"),
                dt=float(data["dt"]),
                inputs=[Input(i["name"], tuple(i["shape"])) for i in data.get("inputs", [])],
                populations=[
                    Population(p["name"], int(p["size"]), NeuronModel.from_dict(p["neuron"]), p.get("bias", 0.0))
                    for p in data.get("populations", [])
                ],
                projections=projections,
                outputs=dict(data.get("outputs", {})),
                metadata=dict(data.get("metadata", {})),
            )
        except KeyError as exc:
            raise NetworkError(f"network description lacks the field {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise NetworkError(f"network description is malformed: {exc}") from None

    # -- comparison -------------------------------------------------------------------------
    def equals(self, other: "Network") -> bool:
        """Exact equality of structure and every value (dense vs sparse storage is ignored)."""
        return not self.differences(other)

    def differences(self, other: "Network") -> list[str]:
        """Human-readable list of what differs from ``other`` (empty when equal)."""
        diffs: list[str] = []
        if self.dt != other.dt:
            diffs.append(f"dt {self.dt!r} != {other.dt!r}")
        if [(i.name, i.shape) for i in self.inputs] != [(i.name, i.shape) for i in other.inputs]:
            diffs.append("inputs differ")
        if list(self.outputs.items()) != list(other.outputs.items()):  # order matters: it is the column order
            diffs.append(f"outputs {self.outputs} != {other.outputs}")
        mine = {p.name: p for p in self.populations}
        theirs = {p.name: p for p in other.populations}
        if set(mine) != set(theirs):
            diffs.append(f"populations {sorted(mine)} != {sorted(theirs)}")
        for name in sorted(set(mine) & set(theirs)):
            a, b = mine[name], theirs[name]
            if a.size != b.size or not a.neuron.equals(b.neuron):
                diffs.append(f"population {name!r}: neuron differs ({a.neuron.to_dict()} vs {b.neuron.to_dict()})")
            if not np.array_equal(np.broadcast_to(a.bias, (a.size,)), np.broadcast_to(b.bias, (b.size,))):
                diffs.append(f"population {name!r}: bias differs")

        def key(p: Projection) -> tuple[str, str, int]:
            return (p.source, p.target, p.delay)

        mine_p = {key(p): p for p in self.projections}
        theirs_p = {key(p): p for p in other.projections}
        if set(mine_p) != set(theirs_p):
            diffs.append(f"projections {sorted(mine_p)} != {sorted(theirs_p)}")
        for k in sorted(set(mine_p) & set(theirs_p)):
            if not np.array_equal(mine_p[k].dense_weight(), theirs_p[k].dense_weight()):
                diffs.append(f"projection {k}: weights differ")
        return diffs

    def summary(self) -> str:
        """A few lines a user reads at a glance."""
        lines = [f"network {self.name!r}: {self.n_neurons} neurons, {self.n_synapses} synapses, dt = {self.dt:g} s"]
        for i in self.inputs:
            lines.append(f"  input      {i.name:<16} shape {list(i.shape)}")
        for p in self.populations:
            extra = f", reset {p.neuron.reset}" if p.neuron.spiking else ""  # type: ignore[attr-defined]
            if p.neuron.spiking and p.neuron.fire_at_threshold:  # type: ignore[attr-defined]
                extra += ", fires at v >= threshold"
            lines.append(f"  population {p.name:<16} {p.size:>6} x {p.neuron.kind}{extra}")
        for proj in self.projections:
            kind = "sparse" if proj.is_sparse else "dense"
            lines.append(
                f"  projection {proj.source} -> {proj.target}: {proj.nnz} synapses ({kind}), delay {proj.delay}"
            )
        for out, pop in self.outputs.items():
            lines.append(f"  output     {out:<16} <- {pop}")
        return "\n".join(lines)


def _names(nodes: Iterable[Any]) -> str:
    names = [repr(n.name) for n in nodes]
    return ", ".join(names) if names else "none"
