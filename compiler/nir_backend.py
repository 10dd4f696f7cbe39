"""SMALL network IR -> NIR.

Each population becomes a NIR neuron node whose continuous parameters invert the forward-Euler
discretisation at the network's ``dt`` (``tau = dt / (1 - alpha)``, ``r = gain * tau / dt``),
so that other NIR tools read a faithful network. Each projection becomes a ``Linear`` node
(``Affine`` for the first projection into a population with a bias), followed by a ``Delay``
node when its delay is non-zero.

What NIR cannot say is written as a documented extension in node metadata under the key
``"small"`` (``docs/semantics.md``, "SMALL's NIR extension"): the exact discrete parameters,
the reset mode, the refractory period and the ALIF adaptation. SMALL's frontend reads it back,
so NIR -> IR -> NIR -> IR is lossless.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from small.errors import NetworkError
from small.fileio import atomic_output
from .ir import ALIF, IF, LI, LIF, CubaLI, CubaLIF, Network, NeuronModel

EXTENSION_VERSION = 1


def _vec(value: Any, size: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, dtype=np.float64), (size,)).copy()


def _tau(alpha: np.ndarray, dt: float) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(alpha < 1.0, dt / (1.0 - alpha), np.inf)


def _r(gain: np.ndarray, tau: np.ndarray, dt: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.where(np.isinf(tau), np.where(gain == 0, 0.0, np.inf), gain * tau / dt)


def _metadata(neuron: NeuronModel, size: int, dt: float) -> dict[str, Any]:
    meta: dict[str, Any] = {"model": neuron.kind, "dt": dt, "version": EXTENSION_VERSION}
    for name, value in neuron.params().items():
        meta[name] = value  # arrays stay arrays; scalars must not be 0-d arrays (h5py cannot compress them)
    if neuron.spiking:
        meta["reset"] = neuron.reset  # type: ignore[attr-defined]
        if neuron.fire_at_threshold:  # type: ignore[attr-defined]
            meta["fire_at_threshold"] = True  # written only when set: older files stay byte-identical
    return {"small": meta}


def neuron_node(neuron: NeuronModel, size: int, dt: float) -> Any:
    """The NIR node for one population (continuous parameters plus SMALL's metadata)."""
    import nir

    meta = _metadata(neuron, size, dt)
    p = {k: _vec(v, size) for k, v in neuron.params().items()}
    if isinstance(neuron, IF):
        return nir.IF(r=p["gain"] / dt, v_threshold=p["v_threshold"], v_reset=p["v_reset"], metadata=meta)
    if isinstance(neuron, LI):
        if np.all(p["alpha"] == 1.0) and not np.any(p["v_leak"]):
            return nir.I(r=p["gain"] / dt, metadata=meta)
        tau = _tau(p["alpha"], dt)
        return nir.LI(tau=tau, r=_r(p["gain"], tau, dt), v_leak=p["v_leak"], metadata=meta)
    if isinstance(neuron, CubaLI):
        tau_mem, tau_syn = _tau(p["alpha"], dt), _tau(p["alpha_syn"], dt)
        return nir.CubaLI(tau_mem=tau_mem, tau_syn=tau_syn, r=_r(p["gain"], tau_mem, dt),
                          w_in=_r(p["syn_gain"], tau_syn, dt), v_leak=p["v_leak"], metadata=meta)
    if isinstance(neuron, CubaLIF):
        tau_mem, tau_syn = _tau(p["alpha"], dt), _tau(p["alpha_syn"], dt)
        return nir.CubaLIF(
            tau_mem=tau_mem, tau_syn=tau_syn, r=_r(p["gain"], tau_mem, dt), w_in=_r(p["syn_gain"], tau_syn, dt),
            v_leak=p["v_leak"], v_threshold=p["v_threshold"], v_reset=p["v_reset"], metadata=meta,
        )
    if isinstance(neuron, (LIF, ALIF)):
        # NIR has no adaptive neuron: ALIF travels as a LIF whose metadata adds the adaptation.
        tau = _tau(p["alpha"], dt)
        return nir.LIF(tau=tau, r=_r(p["gain"], tau, dt), v_leak=p["v_leak"], v_threshold=p["v_threshold"],
                       v_reset=p["v_reset"], metadata=meta)
    raise NetworkError(f"no NIR node for neuron model {neuron.kind!r}")


def export_nir(net: Network) -> Any:
    """Build a ``nir.NIRGraph`` for ``net`` (see the module docstring for the mapping)."""
    import nir

    net.validate()
    dt = net.dt
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    for inp in net.inputs:
        nodes[inp.name] = nir.Input(input_type={"input": np.array(inp.shape)})
    for pop in net.populations:
        nodes[pop.name] = neuron_node(pop.neuron, pop.size, dt)
    bias_pending = {p.name for p in net.populations if np.any(np.asarray(p.bias) != 0)}
    for proj in net.projections:
        node_name = _unique(f"{proj.source}->{proj.target}" + (f"@{proj.delay}" if proj.delay else ""), nodes)
        weight = proj.dense_weight()
        if proj.target in bias_pending:
            bias = _vec(net.population(proj.target).bias, weight.shape[0])
            nodes[node_name] = nir.Affine(weight=weight, bias=bias)
            bias_pending.discard(proj.target)
        else:
            nodes[node_name] = nir.Linear(weight=weight)
        edges.append((proj.source, node_name))
        if proj.delay:
            delay_name = _unique(node_name + "__delay", nodes)
            nodes[delay_name] = nir.Delay(delay=np.full(weight.shape[0], proj.delay * dt))
            edges.append((node_name, delay_name))
            node_name = delay_name
        edges.append((node_name, proj.target))
    if bias_pending:
        raise NetworkError(
            f"population(s) {', '.join(sorted(bias_pending))} have a bias but no incoming projection: NIR can only "
            "carry a bias on an Affine node, so give them an input"
        )
    output_names = []
    for out, pop in net.outputs.items():
        name = out if out not in nodes else _unique(out + "__output", nodes)
        size = net.population(pop).size
        nodes[name] = nir.Output(output_type={"output": np.array([size])})
        edges.append((pop, name))
        output_names.append(name)
    meta = {"small": {"format": "small-nir", "version": EXTENSION_VERSION, "dt": dt, "name": net.name}}
    if output_names:
        # HDF5 keeps a group's members in name order: record the order in which outputs are reported.
        meta["small"]["outputs"] = {str(i): name for i, name in enumerate(output_names)}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False)


def write_nir(net: Network, path: str | os.PathLike) -> None:
    """Export ``net`` and write it to ``path`` atomically (HDF5, as ``nir.write`` does)."""
    import nir

    graph = export_nir(net)
    with atomic_output(path) as tmp:
        nir.write(tmp, graph)


def _unique(name: str, taken: dict[str, Any]) -> str:
    name = name.replace("/", "_")
    candidate, i = name, 1
    while candidate in taken:
        i += 1
        candidate = f"{name}_{i}"
    return candidate
