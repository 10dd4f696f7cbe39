"""The network IR as a torch module: ``docs/semantics.md`` step by step, differentiable.

:class:`SpikingNetwork` runs a :class:`~compiler.ir.Network` exactly as
``sim/reference.py`` does (same update order, resets, refractory counters, ALIF thresholds,
delays), batched over samples, so that its spikes equal the reference simulator's for the same
weights (float64 bit for bit on the bundled examples; float32 up to rounding of sums). The
spike's derivative is a surrogate (SuperSpike's fast sigmoid)::

    s = H(v - theta)                         forward
    ds/dv = 1 / (1 + k |v - theta| / theta)^2 backward, k = :data:`SURROGATE_SLOPE`

The trainable parameters are the projections' weights (``weight[p]``, ``[n_target,
n_source]``) and the populations' biases; neuron parameters stay as compiled. ``forward`` takes
the weights to use (the chip's realisation of them, :mod:`train.chip`), so the same module runs
the float network and the network as the chip holds it. This module imports torch at the top:
only :mod:`train.finetune` imports it, inside its functions.
"""

from __future__ import annotations

import numpy as np
import torch

from compiler.ir import ALIF, IF, LI, CubaLIF, Network

SURROGATE_SLOPE = 5.0


class _Spike(torch.autograd.Function):
    """Heaviside forward (strict: ``x > 0``), fast-sigmoid surrogate backward; ``x`` is ``(v - theta) / theta``."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad / (1.0 + SURROGATE_SLOPE * x.abs()) ** 2


def spike(v: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """``H(v - threshold)`` with the surrogate gradient, normalised by the threshold's size."""
    return _Spike.apply((v - threshold) / threshold.abs().clamp_min(1e-6))


def _vec(value, n: int, dtype) -> torch.Tensor:
    return torch.as_tensor(np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)).copy(), dtype=dtype)


class _Population:
    """Fixed parameters of one population, as tensors."""

    def __init__(self, pop, dtype):
        n, nr = pop.size, pop.neuron
        self.name, self.size, self.spiking = pop.name, n, nr.spiking
        self.alpha = torch.ones(n, dtype=dtype) if isinstance(nr, IF) else _vec(nr.alpha, n, dtype)
        v_leak = np.zeros(n) if isinstance(nr, IF) else np.broadcast_to(np.asarray(nr.v_leak, dtype=np.float64), (n,))
        self.leak = torch.as_tensor((1.0 - self.alpha.double().numpy()) * v_leak, dtype=dtype)
        self.v_init = torch.as_tensor(np.array(v_leak), dtype=dtype)
        self.gain = _vec(getattr(nr, "gain", 1.0), n, dtype)
        self.cuba = isinstance(nr, CubaLIF)
        if self.cuba:
            self.alpha_syn, self.syn_gain = _vec(nr.alpha_syn, n, dtype), _vec(nr.syn_gain, n, dtype)
        if self.spiking:
            self.threshold, self.v_reset = _vec(nr.v_threshold, n, dtype), _vec(nr.v_reset, n, dtype)
            self.subtract = nr.reset == "subtract"
            self.refractory = torch.as_tensor(np.broadcast_to(np.asarray(nr.refractory), (n,)).astype(np.int64))
            self.has_refractory = bool(self.refractory.any())
            self.adaptive = isinstance(nr, ALIF)
            if self.adaptive:
                self.alpha_adapt, self.adapt = _vec(nr.alpha_adapt, n, dtype), _vec(nr.adapt, n, dtype)
        assert not isinstance(nr, LI) or not self.spiking


class SpikingNetwork(torch.nn.Module):
    """A differentiable copy of ``net`` (see the module docstring).

    Parameters
    ----------
    net : the network; its weights and biases become the module's parameters (dense).
    dtype : torch.float32 (training) or torch.float64 (checks against the reference).
    """

    def __init__(self, net: Network, dtype=torch.float32):
        super().__init__()
        net.validate()
        self.net, self.dtype = net, dtype
        self.order = net.update_order()
        self.pops = {p.name: _Population(p, dtype) for p in net.populations}
        self.weight = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.as_tensor(p.dense_weight(), dtype=dtype)) for p in net.projections])
        self.bias = torch.nn.ParameterDict(
            {p.name: torch.nn.Parameter(_vec(p.bias, p.size, dtype)) for p in net.populations})
        self.incoming = {name: [k for k, p in enumerate(net.projections) if p.target == name] for name in self.pops}
        self.inputs = [i.name for i in net.inputs]

    def forward(self, x: torch.Tensor | dict, weights: list[torch.Tensor] | None = None,
                extra: list | None = None) -> torch.Tensor:
        """Outputs ``[T, batch, n_out]`` (spikes of spiking outputs, LI membranes) for inputs
        ``x`` ``[T, batch, n_in]`` (one input) or a dict by input name; ``weights`` replace the
        module's own (one per projection, same shapes); ``extra`` adds fixed projections
        (objects with ``source``, ``target``, ``delay`` and a numpy ``weight``: the chip's
        parasitic cells, :class:`train.chip.Parasitic`)."""
        net = self.net
        w = list(self.weight) if weights is None else weights
        projections = list(net.projections)
        incoming = {name: list(ks) for name, ks in self.incoming.items()}
        for e in extra or ():
            w.append(torch.as_tensor(e.weight, dtype=self.dtype))
            incoming[e.target].append(len(projections))
            projections.append(e)
        if not isinstance(x, dict):
            x = {self.inputs[0]: x}
        x = {k: v.reshape(v.shape[0], v.shape[1], -1).to(self.dtype) for k, v in x.items()}
        steps, batch = next(iter(x.values())).shape[:2]
        state = {}
        for name, p in self.pops.items():
            s = {"v": p.v_init.expand(batch, p.size).clone()}
            if p.cuba:
                s["i"] = torch.zeros(batch, p.size, dtype=self.dtype)
            if p.spiking:
                s["s"] = torch.zeros(batch, p.size, dtype=self.dtype)
                if p.has_refractory:
                    s["count"] = torch.zeros(batch, p.size, dtype=torch.int64)
                if p.adaptive:
                    s["b"] = torch.zeros(batch, p.size, dtype=self.dtype)
            state[name] = s
        history: dict[str, list[torch.Tensor]] = {name: [] for name in self.pops}
        zeros = {name: torch.zeros(batch, p.size, dtype=self.dtype) for name, p in self.pops.items()}
        outputs = []
        for t in range(steps):
            for name in self.order:
                p, s = self.pops[name], state[name]
                current = self.bias[name].expand(batch, p.size)
                for k in incoming[name]:
                    proj = projections[k]
                    src_t = t - proj.delay
                    if src_t < 0 or src_t >= steps or (proj.delay < 0 and proj.source not in x):
                        continue  # (a negative delay: a parasitic cell reads a later input, as the chip does)
                    if proj.source in x:
                        src = x[proj.source][src_t]
                    elif proj.delay == 0:
                        src = state[proj.source]["s"]
                    else:
                        src = history[proj.source][src_t] if src_t < len(history[proj.source]) else zeros[proj.source]
                    current = current + src @ w[k].T
                state[name] = self._step(p, s, current)
                if p.spiking:
                    history[name].append(state[name]["s"])
            outputs.append(torch.cat([state[pop]["s"] if self.pops[pop].spiking else state[pop]["v"]
                                      for pop in net.outputs.values()], dim=-1))
        return torch.stack(outputs)

    @staticmethod
    def _step(p: _Population, s: dict, drive: torch.Tensor) -> dict:
        out = dict(s)
        if p.cuba:
            out["i"] = p.alpha_syn * s["i"] + p.syn_gain * drive
            drive = out["i"]
        drive = p.gain * drive
        v = s["v"]
        if not p.spiking:
            out["v"] = p.alpha * v + p.leak + drive
            return out
        s_prev = s["s"]
        reset = s_prev.detach()  # the reset's gradient is dropped, as is usual for BPTT through LIFs
        if not p.subtract:
            v = v * (1 - reset) + p.v_reset * reset
        v = p.alpha * v + p.leak
        if p.subtract:
            v = v - p.threshold * reset
        blocked = None
        if p.has_refractory:
            blocked = s["count"] > 0
            out["count"] = torch.where(blocked, s["count"] - 1, s["count"])
            v = torch.where(blocked, v, v + drive)
        else:
            v = v + drive
        threshold = p.threshold
        if p.adaptive:
            out["b"] = p.alpha_adapt * s["b"] + p.adapt * reset
            threshold = threshold + out["b"]
        new = spike(v, threshold)
        if blocked is not None:
            new = new * (~blocked).to(new.dtype)
            out["count"] = torch.where(new > 0, p.refractory.expand_as(out["count"]), out["count"])
        out["v"], out["s"] = v, new
        return out


def readout_logits(outputs: torch.Tensor, readout: str, window: tuple[int, int] | None) -> torch.Tensor:
    """Class scores per sample from outputs ``[T, batch, n_out]``, as ``sim.evaluate.classify`` reads them."""
    if window is not None:
        outputs = outputs[window[0]:window[1]]
    return outputs.sum(0) if readout == "spike_count" else outputs.mean(0)
