"""Float reference simulator of the network IR: the software ground truth.

It executes ``docs/semantics.md`` step by step, batched and vectorised with numpy. Synaptic
input is event-driven when spikes are sparse (only the weight rows of active sources are
touched) and a matrix product when they are dense. Weights are stored source-major (one row
per presynaptic source), dense when the matrix is small enough and CSR otherwise.

Example
-------
>>> sim = ReferenceSimulator(net)                       # doctest: +SKIP
>>> result = sim.run(x)                                 # x: [T, batch, n_in]
>>> result.output_array().shape                         # [T, batch, n_out]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from small.errors import SimulationError
from compiler.ir import ALIF, IF, LI, CubaLI, CubaLIF, Network, Population, Projection

# Above this many entries (per projection) the transposed weights stay sparse in memory.
DENSE_LIMIT_ENTRIES = 8_000_000
# Fraction of active sources above which a matrix product beats gathering rows.
EVENT_FRACTION = 0.1


@dataclass
class SimulationResult:
    """What a run produced. Arrays are ``[T, batch, n]``.

    ``outputs`` holds the network outputs in order (0/1 float32 for spiking populations, the
    membrane for LI); ``spikes`` and ``membrane`` hold the populations asked for with
    ``record_spikes`` / ``record_membrane``. The membrane is the value compared with the
    threshold in that step (before any reset).
    """

    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    spikes: dict[str, np.ndarray] = field(default_factory=dict)
    membrane: dict[str, np.ndarray] = field(default_factory=dict)

    def output_array(self) -> np.ndarray:
        """All outputs concatenated along the last axis, as float32 ``[T, batch, n_out]``."""
        return np.concatenate([v.astype(np.float32, copy=False) for v in self.outputs.values()], axis=-1)


class _Synapses:
    """One projection prepared for fast accumulation into its target's input current."""

    def __init__(self, proj: Projection, src_size: int, dtype: np.dtype):
        self.source, self.target, self.delay = proj.source, proj.target, proj.delay
        self.n_src, self.n_tgt = src_size, proj.weight.shape[0]
        if proj.is_sparse and self.n_src * self.n_tgt > DENSE_LIMIT_ENTRIES:
            self.dense = None
            self.w_csr = sp.csr_array(proj.weight, dtype=dtype)  # target-major, for products
            wt = sp.csr_array(proj.weight.T, dtype=dtype)  # source-major, for gathering rows
            wt.sort_indices()
            self.indptr, self.indices, self.data = wt.indptr, wt.indices, wt.data
        else:
            self.dense = np.ascontiguousarray(proj.dense_weight().T, dtype=dtype)  # [n_src, n_tgt]

    def accumulate(self, current: np.ndarray, values: np.ndarray, binary: bool) -> None:
        """``current += values @ W.T`` for ``values`` of shape [batch, n_src]."""
        batch = values.shape[0]
        if batch == 1 and self.dense is not None:
            # Batch 1, dense weights: sum the active rows directly (the cheapest path per step).
            row = values[0]
            s_idx = row.nonzero()[0]
            n_events = s_idx.size
            if n_events == 0:
                return
            if n_events > EVENT_FRACTION * values.size:
                current += values.astype(current.dtype, copy=False) @ self.dense
                return
            rows = self.dense.take(s_idx, axis=0)
            if not binary:
                rows *= row[s_idx].astype(current.dtype, copy=False)[:, None]
            current[0] += rows.sum(axis=0)
            return
        n_events = int(np.count_nonzero(values))  # counted first: the matrix path needs no event list
        if n_events == 0:
            return
        if n_events > EVENT_FRACTION * values.size:
            v = values.astype(current.dtype, copy=False)
            if self.dense is not None:
                current += v @ self.dense
            else:
                current += (self.w_csr @ v.T).T
            return
        b_idx, s_idx = np.divmod(np.flatnonzero(values), values.shape[1])  # row-major: sorted by batch row
        scale = None if binary else values[b_idx, s_idx].astype(current.dtype, copy=False)
        if self.dense is not None:  # batch > 1 (batch 1 is handled above)
            # A sparse [batch, n_src] event matrix times the dense weights: one compiled loop
            # over the events, each adding its weight row to its batch row.
            data = np.ones(n_events, dtype=current.dtype) if scale is None else scale
            indptr = np.searchsorted(b_idx, np.arange(batch + 1))  # events come sorted by batch row
            current += sp.csr_array((data, s_idx, indptr), shape=(batch, self.n_src)) @ self.dense
            return
        starts = self.indptr[s_idx]
        counts = self.indptr[s_idx + 1] - starts
        total = int(counts.sum())
        if total == 0:
            return
        offsets = np.cumsum(counts) - counts
        pos = np.arange(total) + np.repeat(starts - offsets, counts)
        cols = self.indices[pos]
        w = self.data[pos]
        if scale is not None:
            w = w * np.repeat(scale, counts)
        if batch == 1:
            current[0] += np.bincount(cols, weights=w, minlength=self.n_tgt)
        else:
            flat = np.repeat(b_idx, counts) * self.n_tgt + cols
            current += np.bincount(flat, weights=w, minlength=batch * self.n_tgt).reshape(batch, self.n_tgt)


class _Neurons:
    """State and parameters of one population, updated in place once per step."""

    def __init__(self, pop: Population, dtype: np.dtype):
        n = pop.size
        self.name, self.size = pop.name, n
        neuron = pop.neuron
        p = {k: np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)) for k, v in neuron.params().items()}

        def arr(values: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(values, dtype=dtype)

        self.spiking = neuron.spiking
        self.bias = arr(np.broadcast_to(np.asarray(pop.bias, dtype=np.float64), (n,)))
        self.alpha = None if isinstance(neuron, IF) else arr(p["alpha"])
        if self.alpha is not None and np.all(self.alpha == 1):
            self.alpha = None
        leak = np.zeros(n) if isinstance(neuron, IF) else (1.0 - p["alpha"]) * p["v_leak"]
        self.leak = arr(leak) if np.any(leak) else None
        self.v_init = arr(np.zeros(n) if isinstance(neuron, IF) else p["v_leak"])
        self.gain = None if np.all(p["gain"] == 1) else arr(p["gain"])
        self.cuba = isinstance(neuron, (CubaLIF, CubaLI))
        if self.cuba:
            self.alpha_syn = arr(p["alpha_syn"])
            self.syn_gain = None if np.all(p["syn_gain"] == 1) else arr(p["syn_gain"])
        if self.spiking:
            self.threshold = arr(p["v_threshold"])
            self.v_reset = arr(p["v_reset"])
            self.subtract = neuron.reset == "subtract"  # type: ignore[attr-defined]
            self.fires = np.greater_equal if neuron.fire_at_threshold else np.greater  # type: ignore[attr-defined]
            ref = p["refractory"].astype(np.int64)
            self.refractory = ref if np.any(ref) else None
            self.adaptive = isinstance(neuron, ALIF)
            if self.adaptive:
                self.alpha_adapt = arr(p["alpha_adapt"])
                self.adapt = arr(p["adapt"])

    def reset_state(self, batch: int, dtype: np.dtype) -> None:
        n = self.size
        self.v = np.tile(self.v_init, (batch, 1))
        self.current = np.empty((batch, n), dtype=dtype)
        if self.cuba:
            self.i = np.zeros((batch, n), dtype=dtype)
        if self.spiking:
            self.s = np.zeros((batch, n), dtype=bool)
            if self.refractory is not None:
                self.count = np.zeros((batch, n), dtype=np.int64)
            if self.adaptive:
                self.b = np.zeros((batch, n), dtype=dtype)

    def step(self) -> None:
        """Advance one step; ``self.current`` holds this step's summed input ``I_t``."""
        drive = self.current
        if self.cuba:
            self.i *= self.alpha_syn
            if self.syn_gain is not None:
                drive *= self.syn_gain
            self.i += drive
            drive = self.i
        if self.gain is not None:
            drive = drive * self.gain
        v = self.v
        if not self.spiking:
            if self.alpha is not None:
                v *= self.alpha
            if self.leak is not None:
                v += self.leak
            v += drive
            return
        s_prev = self.s
        if not self.subtract:
            np.copyto(v, self.v_reset, where=s_prev)
        if self.alpha is not None:
            v *= self.alpha
        if self.leak is not None:
            v += self.leak
        if self.subtract:
            np.subtract(v, self.threshold, out=v, where=s_prev)
        if self.refractory is not None:
            blocked = self.count > 0
            np.subtract(self.count, 1, out=self.count, where=blocked)
            np.add(v, drive, out=v, where=~blocked)
        else:
            v += drive
        if self.adaptive:
            self.b *= self.alpha_adapt
            np.add(self.b, self.adapt, out=self.b, where=s_prev)
            self.s = self.fires(v, self.threshold + self.b)
        else:
            self.s = self.fires(v, self.threshold)
        if self.refractory is not None:
            self.s &= ~blocked
            np.copyto(self.count, self.refractory, where=self.s)

    @property
    def output(self) -> np.ndarray:
        return self.s if self.spiking else self.v


def image_inputs(image) -> list[tuple[str, tuple[int, ...]]]:
    """``(name, shape)`` of a HardwareImage's inputs, for :func:`flatten_inputs` (an image without
    recorded shapes: ``(size,)``)."""
    return [(str(i["name"]), tuple(int(n) for n in i.get("shape") or [i["size"]])) for i in image.meta["inputs"]]


def flatten_inputs(inputs: np.ndarray | Mapping[str, np.ndarray],
                   specs: Sequence[tuple[str, tuple[int, ...]]]) -> tuple[dict[str, np.ndarray], int, int]:
    """Check ``inputs`` against a network's inputs ``specs`` (``(name, shape)``, in order) and flatten
    each to ``[T, batch, size]``; return them with T and batch.

    An input is ``[T, batch, *shape]`` or ``[T, batch, size]`` (``size = prod(shape)``), of numbers,
    finite; one array stands for a network with one input, a dict by name for any. Every simulator
    (reference, digital, memristive, analog) checks its inputs here, so they accept the same arrays
    and refuse the others with the same message.
    """
    if not isinstance(inputs, Mapping):
        if len(specs) != 1:
            raise SimulationError(
                f"the network has {len(specs)} inputs ({', '.join(name for name, _ in specs) or 'none'}): "
                "pass a dict of arrays keyed by input name"
            )
        inputs = {specs[0][0]: inputs}
    missing = [name for name, _ in specs if name not in inputs]
    extra = sorted(set(inputs) - {name for name, _ in specs})
    if missing or extra:
        raise SimulationError(f"inputs do not match the network: missing {missing}, unknown {extra}")
    flat: dict[str, np.ndarray] = {}
    shapes = set()
    for name, shape in specs:
        size = int(np.prod(shape, dtype=np.int64))
        x = np.asarray(inputs[name])
        if x.dtype.kind not in "biuf":
            raise SimulationError(f"input {name!r} has dtype {x.dtype}: expected numbers")
        if x.ndim < 3 or (x.shape[2:] != tuple(shape) and x.shape[2:] != (size,)):
            raise SimulationError(
                f"input {name!r} has shape {list(x.shape)}: expected [T, batch, {', '.join(map(str, shape))}]"
                + (f" or [T, batch, {size}]" if len(shape) > 1 else "")
            )
        x = x.reshape(x.shape[0], x.shape[1], size)  # not -1: T or batch may be 0
        if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
            raise SimulationError(f"input {name!r} contains NaN or Inf")
        flat[name] = x
        shapes.add(x.shape[:2])
    if len(shapes) > 1:
        raise SimulationError(f"inputs disagree on [T, batch]: {sorted(shapes)}")
    steps, batch = shapes.pop() if shapes else (0, 0)
    return flat, steps, batch


class ReferenceSimulator:
    """Float simulation of a :class:`~compiler.ir.Network` (``docs/semantics.md``).

    Parameters
    ----------
    net : Network
        The network; validated here.
    dtype : numpy dtype
        Arithmetic precision of state and weights: float32 (default, as the training
        frameworks compute) or float64.
    """

    def __init__(self, net: Network, dtype: np.dtype | type = np.float32):
        net.validate()
        self.net = net
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != "f":
            raise SimulationError(f"dtype must be a floating-point type, not {self.dtype}")
        self.order = net.update_order()
        self.neurons = {p.name: _Neurons(p, self.dtype) for p in net.populations}
        self.incoming: dict[str, list[_Synapses]] = {name: [] for name in self.neurons}
        for proj in net.projections:
            self.incoming[proj.target].append(_Synapses(proj, net.source_size(proj.source), self.dtype))
        self.max_delay: dict[str, int] = {}
        for proj in net.projections:
            self.max_delay[proj.source] = max(self.max_delay.get(proj.source, 0), proj.delay)

    # ------------------------------------------------------------------------------------
    def prepare_inputs(self, inputs: np.ndarray | Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int, int]:
        """Check and flatten inputs to ``{name: [T, batch, size]}``; return them with T and batch."""
        return flatten_inputs(inputs, [(i.name, tuple(i.shape)) for i in self.net.inputs])

    def run(
        self,
        inputs: np.ndarray | Mapping[str, np.ndarray],
        *,
        steps: int | None = None,
        record_spikes: Iterable[str] | bool = (),
        record_membrane: Iterable[str] | bool = (),
    ) -> SimulationResult:
        """Simulate from the initial state for the length of ``inputs``.

        ``inputs`` is ``[T, batch, *input_shape]`` (or ``[T, batch, n_in]``) for a network with one
        input, or a dict of such arrays by input name. ``steps`` and a batch of one are used
        for a network without inputs. ``record_spikes`` / ``record_membrane`` name populations
        to record (``True`` for all).
        """
        x, n_steps, batch = self.prepare_inputs(inputs)
        if not self.net.inputs:
            n_steps, batch = int(steps or 0), 1
        names = [p.name for p in self.net.populations]
        spiking = [p.name for p in self.net.populations if p.neuron.spiking]
        rec_s = spiking if record_spikes is True else list(record_spikes or [])
        rec_v = names if record_membrane is True else list(record_membrane or [])
        for name in (*rec_s, *rec_v):
            if name not in self.neurons:
                raise SimulationError(f"cannot record {name!r}: no such population (the network has {', '.join(names)})")
        for name in rec_s:
            if name not in spiking:
                raise SimulationError(f"cannot record spikes of {name!r}: it is a non-spiking (LI) population")
        binary = {name: bool(np.all((arr == 0) | (arr == 1))) for name, arr in x.items()}
        x = {name: arr.astype(self.dtype, copy=False) for name, arr in x.items()}

        for neurons in self.neurons.values():
            neurons.reset_state(batch, self.dtype)
        history = {
            name: np.zeros((self.max_delay[name] + 1, batch, self.neurons[name].size), dtype=bool)
            for name in self.neurons
            if self.max_delay.get(name, 0) > 0
        }
        outputs = {
            out: np.zeros((n_steps, batch, self.neurons[pop].size), dtype=np.float32)
            for out, pop in self.net.outputs.items()
        }
        spikes = {name: np.zeros((n_steps, batch, self.neurons[name].size), dtype=bool) for name in rec_s}
        membrane = {name: np.zeros((n_steps, batch, self.neurons[name].size), dtype=self.dtype) for name in rec_v}

        for t in range(n_steps):
            for name in self.order:
                neurons = self.neurons[name]
                current = neurons.current
                current[...] = neurons.bias
                for syn in self.incoming[name]:
                    src_t = t - syn.delay
                    if src_t < 0:
                        continue
                    if syn.source in x:
                        syn.accumulate(current, x[syn.source][src_t], binary[syn.source])
                    elif syn.delay == 0:
                        syn.accumulate(current, self.neurons[syn.source].output, True)
                    else:
                        hist = history[syn.source]
                        syn.accumulate(current, hist[src_t % hist.shape[0]], True)
                neurons.step()
                if name in history:
                    hist = history[name]
                    hist[t % hist.shape[0]] = neurons.s
                if name in spikes:
                    spikes[name][t] = neurons.s
                if name in membrane:
                    membrane[name][t] = neurons.v
            for out, pop in self.net.outputs.items():
                outputs[out][t] = self.neurons[pop].output
        return SimulationResult(outputs=outputs, spikes=spikes, membrane=membrane)


def simulate(net: Network, inputs: np.ndarray | Mapping[str, np.ndarray], **kwargs) -> SimulationResult:
    """Shorthand for ``ReferenceSimulator(net, dtype=...).run(inputs, ...)``."""
    dtype = kwargs.pop("dtype", np.float32)
    return ReferenceSimulator(net, dtype=dtype).run(inputs, **kwargs)
