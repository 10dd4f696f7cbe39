"""What every SMALL chip does between its neurons: rows, crossbars, partial sums and routing.

:class:`ChipSimulator` executes a :class:`~compiler.image.HardwareImage` step by step as the
chip does (``docs/architecture.md``), batched and vectorised with numpy:

1. rows active in step t: host inputs routed with delay d from step t - d, and neuron spikes
   of step t - 1 - d routed with delay d (a hop between neurons takes one step);
2. every tile's crossbar sums its active rows into column currents; partial-sum columns are
   added to the neuron column they merge into (same step);
3. every neuron column updates and may spike (the subclass defines the arithmetic).

Outputs are reported in network time: a population with latency L produces the spikes of
network step t in chip step t + L, so the simulator runs L extra steps and shifts them back.
The neuron update is shared; subclasses say how numbers are represented (integer, saturating
fixed point in ``sim/digital.py``; float in ``sim/memristive.py``).
"""

from __future__ import annotations

import functools

from typing import Mapping

import numpy as np
import scipy.sparse as sp

from small.errors import SimulationError
from compiler.image import CUBA_MODELS, NEURON_PARAMS, NON_SPIKING_MODELS, Arithmetic, HardwareImage

from .reference import SimulationResult, flatten_inputs, image_inputs


class ChipSimulator:
    """Base of the chip-level simulators. ``weights`` are per-device levels ``(pos, neg)``.

    :meth:`run` executes a whole run from reset. Verification, which plays the chip's
    surroundings one step at a time, drives the same arithmetic through
    :meth:`encode_inputs` (host values to row payloads), :meth:`initial_state` and
    :meth:`step` (one neuron update of every column), with the public attributes below:

    ``addr``
        column address ``tile * C + col`` of each neuron index ``k`` (``[K]``);
    ``index``
        the inverse: neuron index of each column address, -1 for a column without a neuron;
    ``w``
        the folded crossbars, sparse ``[T * R, K]``: ``rows @ w`` is the current of a step
        (``rows`` the payload each crossbar row carries; partial sums merged onto their neuron);
    ``start``
        each column's first chip step (its population's latency); before it, :meth:`run`
        holds the column.
    """

    value_dtype: type = np.int64

    def __init__(self, image: HardwareImage, weights: tuple[np.ndarray, np.ndarray] | None = None):
        image.validate()
        self.image = image
        a, T, R, C = image.arrays, image.n_tiles, image.rows, image.cols
        self.addr = image.neuron_addresses()  # column address of each neuron index k
        index = np.full(T * C, -1, dtype=np.int64)
        index[self.addr] = np.arange(self.addr.size)
        self.index = index
        home = image.home_columns()
        # Crossbar of every tile, with partial-sum columns folded onto their neuron: [T*R, K].
        pos, neg = weights if weights is not None else (a["g_pos"], a["g_neg"])
        t_idx, r_idx, c_idx = np.nonzero(pos != neg)  # only the cells that hold a weight
        w = pos[t_idx, r_idx, c_idx].astype(self.value_dtype) - neg[t_idx, r_idx, c_idx]
        cols = index[home[t_idx * C + c_idx]]
        keep = cols >= 0  # weights in unused columns never reach a neuron
        self.n_rows = T * R
        self.w = sp.csr_array(
            (w[keep].astype(self.value_dtype), (t_idx[keep] * R + r_idx[keep], cols[keep])), shape=(T * R, self.addr.size)
        )
        # Row feeds: from neurons (index k) and from host input elements.
        self.nrow = a["route_tile"].astype(np.int64) * R + a["route_row"]
        self.nrow_src = index[image.route_sources("route")]
        self.nrow_delay = a["route_delay"].astype(np.int64)
        self.irow = a["input_tile"].astype(np.int64) * R + a["input_row"]
        self.irow_src = image.route_sources("input")
        self.irow_delay = a["input_delay"].astype(np.int64)
        self.depth = image.delay_slots + 1
        model = a["col_model"].reshape(-1)[self.addr]
        self.spiking = ~np.isin(model, NON_SPIKING_MODELS)
        self.cuba = np.isin(model, CUBA_MODELS)
        self.subtract = a["col_reset"].reshape(-1)[self.addr] == 1
        self.at_threshold = a["col_fire"].reshape(-1)[self.addr] == 1  # fires at v >= threshold + b
        self.params = {name: a[f"param/{name}"].reshape(-1)[self.addr] for name in NEURON_PARAMS}
        self.refractory = a["param/refractory"].reshape(-1)[self.addr].astype(np.int64)
        self.start = a["param/start"].reshape(-1)[self.addr].astype(np.int64)
        self.inputs = image.meta["inputs"]
        self.n_in = sum(int(i["size"]) for i in self.inputs)
        # every chip's host events carry a signed input_bits payload (a memristive chip's are the
        # default width, as compiler.events.Geometry.of says)
        bits = (image.arithmetic if image.target == "digital" else Arithmetic()).input_bits
        self.in_lo, self.in_hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1

    # -- arithmetic: the subclass says how numbers are represented ------------------------
    def encode_inputs(self, x: np.ndarray) -> np.ndarray:
        """Host input values ``[T, batch, n_in]`` (already divided by the input scale, as
        :meth:`prepare_inputs` returns them) to the payloads the crossbar rows carry, same shape.

        Every simulator saturates them alike (:meth:`saturate_inputs`); the memristive ones drive
        their rows with the saturated value as it is, the digital twin rounds it."""
        return self.saturate_inputs(x).astype(self.value_dtype)

    def saturate_inputs(self, x: np.ndarray) -> np.ndarray:
        """Host values clipped to the signed ``input_bits`` payload, ``[-2^(b-1), 2^(b-1) - 1]``
        (``docs/architecture.md``, "Host inputs"): whole numbers stay int64, real ones float.

        The clip comes before any conversion to integers: ``1e30`` saturates to the top, never
        wraps (NaN and Inf never get here, :meth:`prepare_inputs` refuses them).
        """
        if x.dtype.kind in "biu":
            x = x.astype(np.int64) if x.dtype.kind == "b" else x
            info = np.iinfo(x.dtype)  # bounds in x's own type: a uint64 above 2^63 must not wrap
            return np.clip(x, max(self.in_lo, info.min), min(self.in_hi, info.max)).astype(np.int64)
        return np.clip(x, self.in_lo, self.in_hi)

    def _drive(self, current: np.ndarray, bias: np.ndarray) -> np.ndarray:
        """Crossbar sum (in weight levels) plus bias, in state units."""
        raise NotImplementedError

    def _sat(self, x: np.ndarray) -> np.ndarray:
        """Saturate to the state width (identity for exact arithmetic)."""
        return x

    def _mulr(self, x: np.ndarray, a: np.ndarray) -> np.ndarray:
        """Multiply by a decay factor (rounded in fixed point)."""
        return x * a

    def _values(self, state: dict[str, np.ndarray]) -> np.ndarray:
        """Membrane of every neuron as a float in level units (LI outputs)."""
        return state["v"]

    # -- neurons ---------------------------------------------------------------------------
    def initial_state(self, batch: int = 1) -> dict[str, np.ndarray]:
        """Every neuron column's state after reset, for ``batch`` samples: ``[batch, K]`` arrays
        ``v`` (membrane), ``i`` (CubaLIF synaptic current), ``b`` (ALIF threshold adaptation),
        ``c`` (refractory steps left) and ``s`` (spiked in the previous step)."""
        k, dtype = self.addr.size, self.value_dtype
        return {"v": np.tile(self.params["v_init"].astype(dtype), (batch, 1)), "i": np.zeros((batch, k), dtype=dtype),
                "b": np.zeros((batch, k), dtype=dtype), "c": np.zeros((batch, k), dtype=np.int64),
                "s": np.zeros((batch, k), dtype=bool)}

    def step(self, state: dict[str, np.ndarray], current: np.ndarray, hold: np.ndarray | None = None) -> np.ndarray:
        """One update of every neuron column, in the order of docs/architecture.md; returns the spikes.

        ``state`` (of :meth:`initial_state`) is updated in place; ``current`` ``[batch, K]`` is
        the step's column sums in weight levels (``rows @ w``). Columns where ``hold`` (``[K]``
        or ``[batch, K]`` bool) is set keep their state and do not spike: :meth:`run` holds a
        column before its ``start`` step (its network step 0 is chip step ``start``), a
        memristive tile's controller holds the columns it names.
        """
        if hold is None:
            return self._update(state, current)
        old = {k: v.copy() for k, v in state.items()}
        spikes = self._update(state, current)
        for k, v in old.items():
            state[k] = np.where(hold, v, state[k])
        return spikes & ~hold

    def _update(self, state: dict[str, np.ndarray], current: np.ndarray) -> np.ndarray:
        """The neuron arithmetic of :meth:`step`, every column updated (no hold)."""
        p, sat, mulr = self.params, self._sat, self._mulr
        drive = self._drive(current, p["bias"])
        i = sat(mulr(state["i"], p["alpha_syn"]) + drive)  # CubaLIF/CubaLI synaptic current
        state["i"] = np.where(self.cuba, i, 0)
        drive = np.where(self.cuba, i, drive)
        s_prev, v = state["s"], state["v"]
        v = np.where(s_prev & ~self.subtract, p["v_reset"], v)  # s_prev is never set for LI columns
        v = sat(mulr(v, p["alpha"]) + p["leak"])
        v = np.where(s_prev & self.subtract, sat(v - p["threshold"]), v)
        blocked = state["c"] > 0
        state["c"] = state["c"] - blocked
        v = np.where(blocked, v, sat(v + drive))
        b = sat(mulr(state["b"], p["alpha_adapt"]) + p["adapt"] * s_prev)  # ALIF; 0 for the others
        level = p["threshold"] + b
        spikes = np.where(self.at_threshold, v >= level, v > level) & ~blocked & self.spiking
        state["c"] = np.where(spikes, self.refractory, state["c"])
        state["v"], state["b"], state["s"] = v, b, spikes
        return spikes

    # -- running --------------------------------------------------------------------------
    @functools.cached_property
    def _output_index(self) -> dict[str, np.ndarray]:
        """Each output's neuron columns (positions in :attr:`addr`)."""
        return {o["name"]: self.neurons(o["population"]) for o in self.image.meta["outputs"]}

    def _output_arrays(self, n_steps: int, batch: int) -> dict[str, np.ndarray]:
        return {name: np.zeros((n_steps, batch, idx.size), dtype=np.float32) for name, idx in self._output_index.items()}

    def _output_step(self, outputs: dict[str, np.ndarray], t: int, spikes: np.ndarray, state: dict) -> None:
        """Chip step ``t``'s spikes ``[batch, K]`` and state into ``outputs`` (network time: each
        output's latency later)."""
        for o in self.image.meta["outputs"]:
            tt = t - int(o["latency"])
            if 0 <= tt < len(outputs[o["name"]]):
                idx = self._output_index[o["name"]]
                if o["kind"] == "value":
                    scale = self.image.arrays[f"output/{o['name']}/value_scale"]
                    outputs[o["name"]][tt] = self._values(state)[:, idx] * scale
                else:
                    outputs[o["name"]][tt] = spikes[:, idx]

    def host_outputs(self, spikes: np.ndarray, values: np.ndarray, n_steps: int) -> SimulationResult:
        """The outputs :meth:`run` returns, from what a chip sends its host: ``spikes`` and
        ``values`` (membranes in state units, 0 where none was sent) ``[chip steps, batch, K]``."""
        outputs = self._output_arrays(n_steps, spikes.shape[1])
        for t in range(spikes.shape[0]):
            self._output_step(outputs, t, spikes[t], {"v": values[t]})
        return SimulationResult(outputs=outputs)

    def prepare_inputs(self, inputs: np.ndarray | Mapping[str, np.ndarray]) -> tuple[np.ndarray, int, int]:
        """Flatten inputs to ``[T, batch, n_in]`` in the image's input order: the shapes the reference
        takes (``[T, batch, *input_shape]`` or ``[T, batch, n]``), refused with its messages."""
        inputs = flatten_inputs(inputs, image_inputs(self.image))[0]
        if not isinstance(inputs, Mapping):
            if len(self.inputs) != 1:
                raise SimulationError(
                    f"the image has {len(self.inputs)} inputs: pass a dict of arrays keyed by input name"
                )
            inputs = {self.inputs[0]["name"]: inputs}
        names = [i["name"] for i in self.inputs]
        if sorted(inputs) != sorted(names):
            raise SimulationError(f"inputs {sorted(inputs)} do not match the image's inputs {names}")
        parts, shapes = [], set()
        for spec in self.inputs:
            x = np.asarray(inputs[spec["name"]])
            if x.ndim < 3 or int(np.prod(x.shape[2:])) != int(spec["size"]) or x.dtype.kind not in "biuf":
                raise SimulationError(
                    f"input {spec['name']!r} has shape {list(x.shape)}: expected numbers [T, batch, {spec['size']}]"
                )
            x = x.reshape(x.shape[0], x.shape[1], int(spec["size"]))  # not -1: T or batch may be 0
            if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
                raise SimulationError(f"input {spec['name']!r} contains NaN or Inf")
            with np.errstate(over="ignore"):  # a huge value over a tiny scale is +-inf, which saturates
                parts.append(x / float(spec["scale"]) if float(spec["scale"]) != 1 else x)
            shapes.add(x.shape[:2])
        if len(shapes) > 1:
            raise SimulationError(f"inputs disagree on [T, batch]: {sorted(shapes)}")
        steps, batch = shapes.pop() if shapes else (0, 1)
        x = np.concatenate(parts, axis=-1) if parts else np.zeros((steps, batch, 0))
        return x, steps, batch

    def neurons(self, population: str) -> np.ndarray:
        """Neuron index k (position in :attr:`addr`) of each neuron of ``population``."""
        return self.index[self.image.addresses(population)]

    def dense_weights(self) -> np.ndarray:
        """The folded crossbars as one dense ``[T * R, K]`` array: what row ``t * R + r`` adds to neuron ``k``.

        :meth:`run` accepts a stack of these (``weights=``), one per sample: the learning loop
        (``l2l/``) runs every task's chip, each with its own device writes, in one batch.
        """
        return self.w.toarray()

    def run(self, inputs: np.ndarray | Mapping[str, np.ndarray], *, steps: int | None = None,
            record_spikes: bool = False, weights: np.ndarray | None = None) -> SimulationResult:
        """Run from reset; outputs in network time, ``[T, batch, n]`` per output.

        With ``record_spikes``, ``result.spikes["chip"]`` holds every neuron column's spikes in
        chip time, ``[T + latency, batch, K]`` (neuron index k = position in :attr:`addr`),
        ``result.membrane["chip"]`` every column's membrane ``v`` after the step and
        ``result.membrane["adaptation"]`` its threshold adaptation ``b``, as the chip holds them
        (state units for the digital twin), and ``result.spikes["rows"]`` the payload every
        crossbar row carried, ``[T + latency, batch, T * R]``.
        ``weights`` replaces the image's crossbars: ``[T * R, K]`` (:meth:`dense_weights`) for
        every sample, or ``[batch, T * R, K]``, one chip per sample.
        ``self.spike_counts`` always holds each neuron's spikes over the run, summed over batch,
        and ``self.row_events`` each crossbar row's events (``[T * R]``, every chip step).
        """
        x, n_steps, batch = self.prepare_inputs(inputs)
        if weights is not None and np.shape(weights) not in ((self.n_rows, self.addr.size),
                                                             (batch, self.n_rows, self.addr.size)):
            raise SimulationError(f"weights have shape {list(np.shape(weights))}: expected a dense crossbar "
                                  f"[{self.n_rows}, {self.addr.size}] or one per sample, "
                                  f"[{batch}, {self.n_rows}, {self.addr.size}]")
        if not self.inputs:
            n_steps = int(steps or 0)
        meta = self.image.meta
        extra = max([int(o["latency"]) for o in meta["outputs"]] + [0])
        total = n_steps + extra
        payload = self.encode_inputs(x)
        in_hist = np.zeros((self.depth, batch, self.n_in), dtype=payload.dtype)
        s_hist = np.zeros((self.depth, batch, self.addr.size), dtype=bool)
        state = self.initial_state(batch)
        last_start = int(self.start.max(initial=0))
        rows = np.zeros((batch, self.n_rows), dtype=self.value_dtype)
        outputs = self._output_arrays(n_steps, batch)
        chip = np.zeros((total, batch, self.addr.size), dtype=bool) if record_spikes else None
        chip_v = np.zeros((total, batch, self.addr.size), dtype=self.value_dtype) if record_spikes else None
        chip_b = np.zeros_like(chip_v) if record_spikes else None
        chip_rows = np.zeros((total, batch, self.n_rows), dtype=self.value_dtype) if record_spikes else None
        self.spike_counts = np.zeros(self.addr.size, dtype=np.int64)
        self.row_events = np.zeros(self.n_rows, dtype=np.int64)
        for t in range(total):
            in_hist[t % self.depth] = payload[t] if t < n_steps else 0
            rows[...] = 0
            if self.irow.size:
                rows[:, self.irow] = in_hist[(t - self.irow_delay) % self.depth, :, self.irow_src].T
            if self.nrow.size:
                rows[:, self.nrow] = s_hist[(t - 1 - self.nrow_delay) % self.depth, :, self.nrow_src].T
            if weights is None:
                current = np.asarray(rows @ self.w)
            elif weights.ndim == 2:
                current = rows @ weights
            else:
                current = np.matmul(rows[:, None, :], weights)[:, 0]
            self.row_events += np.count_nonzero(rows, axis=0)
            spikes = self.step(state, current, t < self.start if t < last_start else None)
            s_hist[t % self.depth] = spikes
            if chip is not None:
                chip[t], chip_v[t], chip_b[t], chip_rows[t] = spikes, state["v"], state["b"], rows
            if t < n_steps:
                self.spike_counts += spikes.sum(axis=0)
            self._output_step(outputs, t, spikes, state)
        result = SimulationResult(outputs=outputs)
        if chip is not None:
            result.spikes["chip"], result.membrane["chip"] = chip, chip_v
            result.spikes["rows"], result.membrane["adaptation"] = chip_rows, chip_b
        return result
