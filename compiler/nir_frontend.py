"""NIR -> SMALL network IR.

Reading happens in three steps:

1. :func:`read_nir` loads an HDF5 file node by node, so that every problem (truncated file,
   unknown node type, malformed parameters) is reported with the node's name.
2. The graph is flattened (nested ``NIRGraph`` nodes become dotted names) and shapes are
   inferred from the ``Input`` nodes.
3. Chains of linear nodes (Affine, Linear, Scale, Conv, Flatten, Delay) between stateful nodes
   (inputs and neurons) are composed into one (sparse) weight matrix per source, target and
   delay; biases become constant currents of the target population; continuous neuron
   parameters are discretised at ``dt`` under a framework convention (``docs/semantics.md``).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import scipy.sparse as sp

from .conv import conv_matrix, pool_matrix
from small.errors import FileFormatError, NetworkError, SmallWarning, UnsupportedError
from small.limits import NEURON_BYTES, SYNAPSE_BYTES, check_memory
from .ir import ALIF, IF, LI, LIF, RESET_MODES, CubaLI, CubaLIF, Input, Network, NeuronModel, Population, Projection

NEURON_TYPES = ("LIF", "CubaLIF", "IF", "LI", "I", "CubaLI", "Threshold")
POOL_TYPES = ("SumPool2d", "AvgPool2d")
LINEAR_TYPES = ("Affine", "Linear", "Scale", "Conv1d", "Conv2d", *POOL_TYPES, "Flatten", "Delay", "Identity")
# Every node type NIR 1.0 defines (Identity: older nirtorch files).
SUPPORTED_TYPES = ("Input", "Output", "NIRGraph", *NEURON_TYPES, *LINEAR_TYPES)
# Non-spiking neuron nodes: their output is a membrane, which sends no events.
_NON_SPIKING = ("LI", "I", "CubaLI")
# A projection is stored sparse when at most this fraction of its weights is non-zero.
SPARSE_DENSITY = 0.25
# Tolerance when checking SMALL's exact metadata against the continuous parameters.
_META_RTOL = 1e-9


@dataclass(frozen=True)
class Convention:
    """How a framework's NIR export is meant to be run in discrete time.

    Attributes
    ----------
    name : str
        ``nir``, ``snntorch`` or ``norse``.
    default_dt : float or None
        The time step the exporter wrote time constants against (None: the file must be told).
    reset : str
        Reset mode of spiking neurons (NIR itself can only say "to v_reset").
    jump_inputs : bool
        Inputs to a CubaLIF synaptic current and to an IF membrane are added as jumps of
        ``w_in * x`` (resp. ``r * x``) per step instead of being Euler-scaled by ``dt/tau``.
    fix_tau_units : bool
        Detect and undo Norse 1.1's exporter writing ``dt * tau`` instead of ``tau``.
    exact_decay : bool
        Decay factors are ``exp(-dt/tau)`` (the framework integrates exactly) instead of
        forward Euler's ``1 - dt/tau``.
    gain : str
        How the membrane's input gain is read from ``r``: ``euler`` (``dt*r/tau``), ``r``
        (``r`` itself: Sinabs), ``r/alpha`` (Spyx writes ``r = beta``), ``euler/alpha``
        (Rockpool writes ``r = tau*exp(-dt/tau)/dt``). A CubaLIF's synaptic gain follows:
        ``dt*w_in/tau_syn`` under ``euler``, ``w_in*alpha_syn`` under ``euler/alpha``.
    fire_at_threshold : bool
        Neurons fire at ``v >= v_threshold``.
    reset_before_leak : bool
        The subtract reset acts in the spike's own step, so the next step decays the
        reduced membrane (``v = alpha*(v - thr) + ...``); SMALL's subtract acts after the leak,
        so the neuron is re-parameterised (``docs/semantics.md``, Rockpool).
    spike_delay : int
        Steps between a neuron crossing its threshold and its spike leaving it (Spyx: 1).
    batched_ports : bool
        Input/Output shapes may carry batch and time axes in front (Rockpool): the last one is used.
    recurrent_input_direct : bool
        A nested graph's edge ``input -> w_rec`` (where ``w_rec`` feeds a neuron back to itself)
        means ``input -> neuron``: Spyx's recurrent layers are written that way.
    """

    name: str
    default_dt: float | None
    reset: str = "zero"
    jump_inputs: bool = False
    fix_tau_units: bool = False
    exact_decay: bool = False
    gain: str = "euler"
    fire_at_threshold: bool = False
    reset_before_leak: bool = False
    spike_delay: int = 0
    batched_ports: bool = False
    recurrent_input_direct: bool = False


CONVENTIONS: dict[str, Convention] = {
    # The literal NIR equations, forward-Euler at the given dt, reset to v_reset.
    "nir": Convention("nir", None),
    # snnTorch exports tau = dt/(1-beta), r = tau/dt, w_in = tau_syn/dt at an implicit dt of
    # 1e-4 s (snntorch/export_nir.py); its default reset subtracts the threshold.
    "snntorch": Convention("snntorch", 1e-4, reset="subtract"),
    # Norse integrates with dt = 1e-3 s; LIFCell adds input spikes to i directly and IAF adds
    # them to v directly; its 1.1 exporter writes tau as dt / tau_inv (norse/torch/utils/export_nir.py).
    "norse": Convention("norse", 1e-3, jump_inputs=True, fix_tau_units=True),
    # Sinabs steps by 1 (its exporter writes r = 1 and tau in steps); IAF/LIF add the input to
    # v (LIF: v = exp(-1/tau) v + I), fire at v >= threshold and subtract in the same step
    # (sinabs/layers/functional/lif.py, activation/spike_generation.py SingleSpike).
    "sinabs": Convention("sinabs", 1.0, reset="subtract", exact_decay=True, gain="r", fire_at_threshold=True,
                         reset_before_leak=True),
    # Rockpool's LIFTorch (exported as CubaLIF): isyn = beta*(isyn + I), v = alpha*v + isyn,
    # alpha = exp(-dt/tau) at dt = 1 ms, v >= threshold, subtract in the same step
    # (rockpool/nn/modules/torch/lif_torch.py, nir.py).
    "rockpool": Convention("rockpool", 1e-3, reset="subtract", exact_decay=True, gain="euler/alpha",
                           fire_at_threshold=True, reset_before_leak=True, batched_ports=True),
    # Spyx's LIF: spikes = H(V_prev - thr), V = beta*V + x - spikes*thr; exported with
    # tau = dt/(1 - beta), r = beta at dt = 1 (spyx/nn.py, spyx/nir.py).
    "spyx": Convention("spyx", 1.0, reset="subtract", gain="r/alpha", spike_delay=1, recurrent_input_direct=True),
}


# -----------------------------------------------------------------------------------------
# Reading the file
# -----------------------------------------------------------------------------------------
def read_nir(path: str | Path) -> Any:
    """Read a ``.nir`` (HDF5) file into a ``nir.NIRGraph`` without type checking.

    Raises :class:`FileFormatError` for unreadable files and :class:`UnsupportedError` for node
    types SMALL does not handle, naming the node.
    """
    import h5py
    import nir

    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"NIR file {str(path)!r} does not exist")
    try:
        with h5py.File(path, "r") as f:
            if "node" not in f:
                raise FileFormatError(f"{str(path)!r} is an HDF5 file but not a NIR graph (no 'node' group)")
            data = _read_group(f["node"], path)
    except FileFormatError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        reason = str(exc).split("(")[0].strip() or type(exc).__name__
        raise FileFormatError(
            f"cannot read {str(path)!r} as NIR: not a valid HDF5 file or truncated ({reason}); "
            "re-export it from the training framework"
        ) from None

    def build(node: Mapping[str, Any], name: str) -> Any:
        node = dict(node)
        kind = node.get("type")
        if kind is None:
            raise FileFormatError(f"{str(path)!r}: node {name!r} has no type")
        if kind not in SUPPORTED_TYPES:
            raise _unsupported(name, kind)
        try:
            if kind == "NIRGraph":
                nodes = {k: build(v, f"{name}.{k}" if name else k) for k, v in node.get("nodes", {}).items()}
                edges = [(_str(a), _str(b)) for a, b in np.asarray(node.get("edges", [])).reshape(-1, 2)]
                return nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(node.get("metadata", {})), type_check=False)
            return nir.dict2NIRNode(node)
        except (FileFormatError, UnsupportedError, NetworkError):
            raise
        except Exception as exc:  # nir raises AssertionError, TypeError, ValueError, KeyError
            message = str(exc) or type(exc).__name__
            raise NetworkError(f"NIR node {name!r} ({kind}) is malformed: {message}") from None

    return build(data, "")


def _read_group(group: Any, path: Path) -> dict[str, Any]:
    """An HDF5 group as nested dicts, as ``nir.serialization.hdf2dict`` reads it, but with every
    dataset's declared size (compressed or unwritten data take no room in the file) checked
    against the memory budget before it is read."""
    import h5py
    from nir.serialization import try_byte_to_str

    datasets: list[tuple[dict[str, Any], str, Any]] = []

    def walk(node: Any, into: dict[str, Any]) -> None:
        for key, item in node.items():
            key = try_byte_to_str(key)
            if isinstance(item, h5py.Group):
                into[key] = {}
                walk(item, into[key])
            elif isinstance(item, h5py.Dataset):
                datasets.append((into, key, item))

    walk(group, data := {})
    sizes = [math.prod(item.shape or ()) * item.dtype.itemsize for _, _, item in datasets]
    for nbytes, (_, _, item) in zip(sizes, datasets):
        check_memory(nbytes, f"NIR file {str(path)!r}: dataset {item.name!r} of shape {list(item.shape or ())}, which",
                     error=FileFormatError)
    check_memory(sum(sizes), f"NIR file {str(path)!r} (all its datasets)", error=FileFormatError)
    file_size = path.stat().st_size
    for into, key, item in datasets:
        _check_variable_lengths(item, path, file_size)
        into[key] = try_byte_to_str(item[()])
    return data


def _check_variable_lengths(item: Any, path: Path, file_size: int) -> None:
    """Refuse a variable-length dataset (NIR's strings and edge lists) whose elements declare more
    bytes than the whole file holds: HDF5 allocates (and fills) what an element's length field says
    before it finds the data missing, so one damaged length takes up to 4 GiB.

    Each element of such a dataset is stored as a 4-byte little-endian length and a global-heap
    reference (HDF5 file format, "Variable-length" datatype); the lengths of a contiguous dataset are
    read from the file directly. Compressed (chunked) and compact layouts keep them out of reach and
    are read as they are.
    """
    import h5py

    string = h5py.check_string_dtype(item.dtype)
    if h5py.check_vlen_dtype(item.dtype) is None and (string is None or string.length is not None):
        return
    n = math.prod(item.shape or ())
    offset = item.id.get_offset()
    storage = item.id.get_storage_size()
    if not n or item.chunks is not None or offset is None or storage < 4 * n:
        return
    with open(path, "rb") as fh:
        fh.seek(offset)
        raw = fh.read(storage)
    vlen = h5py.check_vlen_dtype(item.dtype)
    base = 1 if string is not None else np.dtype(vlen).itemsize  # a string's length counts bytes
    declared = 0 if len(raw) < storage else int(
        np.ndarray((n,), dtype="<u4", buffer=raw, strides=(storage // n,)).max()) * base
    if len(raw) < storage or declared > file_size:
        raise FileFormatError(
            f"NIR file {str(path)!r}: dataset {item.name!r} declares "
            + (f"a value of {declared} bytes in a file of {file_size}" if declared else "data past the file's end")
            + ": the file is damaged or truncated; re-export it from the training framework")


def _unsupported(name: str, kind: str) -> UnsupportedError:
    return UnsupportedError(
        f"node {name!r} has type {kind!r}, which NIR does not define: re-export the graph with NIR node types "
        f"only (supported: {', '.join(SUPPORTED_TYPES)})"
    )


def _str(value: Any) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


# -----------------------------------------------------------------------------------------
# Graph preparation: flatten nested graphs, check edges, infer shapes
# -----------------------------------------------------------------------------------------
def _flatten(graph: Any, path: tuple[str, ...] = (),
             seen: dict[str, tuple[str, ...]] | None = None) -> tuple[dict[str, Any], list[tuple[str, str]], set[str]]:
    """Return (nodes, edges, passthrough) with nested graphs inlined under dotted names.

    The Input and Output nodes of a nested graph become pass-through nodes; an edge to or from
    the nested graph's own name is redirected to its single Input or Output node. Two nodes
    whose dotted names coincide (node ``b`` of a nested graph ``a`` beside a node named ``a.b``)
    are refused: merged, they would become one population.
    """
    seen = {} if seen is None else seen  # dotted name -> the path of names it came from
    prefix = "".join(f"{p}." for p in path)
    nodes: dict[str, Any] = {}
    passthrough: set[str] = set()
    edges: list[tuple[str, str]] = []
    entry: dict[str, str] = {}
    exit_: dict[str, str] = {}
    for name, node in graph.nodes.items():
        full = prefix + name
        if full in seen:
            raise NetworkError(f"NIR nodes {_describe(seen[full])} and {_describe(path + (name,))} are both named "
                               f"{full!r} once nested graphs are flattened: rename one of them")
        seen[full] = path + (name,)
        if type(node).__name__ == "NIRGraph":
            sub_nodes, sub_edges, sub_pass = _flatten(node, path + (name,), seen)
            nodes.update(sub_nodes)
            edges.extend(sub_edges)
            passthrough |= sub_pass
            ins = [k for k, v in node.nodes.items() if type(v).__name__ == "Input"]
            outs = [k for k, v in node.nodes.items() if type(v).__name__ == "Output"]
            for k in ins + outs:
                passthrough.add(f"{full}.{k}")
            if len(ins) == 1:
                entry[full] = f"{full}.{ins[0]}"
            if len(outs) == 1:
                exit_[full] = f"{full}.{outs[0]}"
        else:
            nodes[full] = node
    for a, b in _graph_edges(graph, path):
        a, b = prefix + a, prefix + b
        edges.append((exit_.get(a, a), entry.get(b, b)))
    return nodes, edges, passthrough


def _graph_edges(graph: Any, path: tuple[str, ...]) -> list[tuple[str, str]]:
    """The edges of one (possibly nested) graph, each end checked against the graph's nodes.

    An end may also be a dotted path into a nested graph (``sub.input``, as nirtorch writes).
    Files exported by snnTorch for the NIR paper name a nested graph's neuron node after the
    graph (``lif1``) while its edges say ``lif``: when exactly one edge name is unknown and
    exactly one node is on no edge, the name is taken to mean that node, with a warning.
    """
    edges = [(_str(a), _str(b)) for a, b in graph.edges]
    names = set(graph.nodes)
    graphs = {k for k, v in graph.nodes.items() if _kind(v) == "NIRGraph"}

    def known(end: str) -> bool:
        return end in names or end.split(".", 1)[0] in graphs

    unknown = sorted({end for edge in edges for end in edge if not known(end)})
    if not unknown:
        return edges
    mentioned = {end.split(".", 1)[0] for edge in edges for end in edge}
    # Ports are never guessed: a nested graph's Input/Output must be named as its edges say.
    unused = sorted(n for n in names if n not in mentioned and _kind(graph.nodes[n]) not in ("Input", "Output"))
    where = f"nested graph {'.'.join(path)!r}" if path else "the graph"
    if len(unknown) == 1 and len(unused) == 1:
        warnings.warn(f"{where}: its edges name node {unknown[0]!r}, which it does not have; the one node on no "
                      f"edge, {unused[0]!r}, is taken for it", SmallWarning, stacklevel=3)
        rename = {unknown[0]: unused[0]}
        return [(rename.get(a, a), rename.get(b, b)) for a, b in edges]
    a, b = next(e for e in edges if not known(e[0]) or not known(e[1]))
    bad = a if not known(a) else b
    raise NetworkError(
        f"{where}: edge {a!r} -> {b!r} names node {bad!r}, which it does not have (its nodes: "
        f"{', '.join(sorted(names))}): correct the edge or the node's name"
    )


def _spyx_recurrent_inputs(nodes: dict[str, Any], edges: list[tuple[str, str]], passthrough: set[str]) -> list[tuple[str, str]]:
    """Spyx writes a recurrent layer as ``input -> w_rec -> lif -> w_rec``, ``lif -> output`` while
    its model computes ``v = beta v + x + w_rec s``: the input reaches the neuron directly."""
    out = []
    for a, b in edges:
        if a in passthrough and _kind(nodes[a]) == "Input" and _kind(nodes[b]) in ("Linear", "Affine"):
            loop = [n for n in nodes if (b, n) in edges and (n, b) in edges and _kind(nodes[n]) in NEURON_TYPES]
            if len(loop) == 1:
                out.append((a, loop[0]))
                continue
        out.append((a, b))
    return out


def _describe(path: tuple[str, ...]) -> str:
    """A node by where it sits: ``'a.b'`` at the top, ``'b' of nested graph 'a'`` inside one."""
    if len(path) == 1:
        return repr(path[0])
    return f"{path[-1]!r} of nested graph {'.'.join(path[:-1])!r}"


def _kind(node: Any) -> str:
    return type(node).__name__


def _shape_of(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    arr = np.asarray(value).reshape(-1)
    if arr.size == 0 or arr.dtype.kind not in "iuf":
        return None
    return tuple(int(v) for v in arr)


def _infer_shapes(nodes: dict[str, Any], edges: list[tuple[str, str]], passthrough: set[str],
                  port_shapes: Mapping[str, tuple[int, ...]] | None = None) -> dict[str, tuple[int, ...]]:
    """Output shape of every node reachable from the inputs; checks edges for size mismatches.

    ``port_shapes`` replaces the declared shape of some Input nodes (Rockpool's batched ones)."""
    preds: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        preds[b].append(a)
    shapes: dict[str, tuple[int, ...]] = {}
    for name, node in nodes.items():
        if _kind(node) == "Input" and name not in passthrough:
            shape = (port_shapes or {}).get(name) or _shape_of(node.input_type.get("input"))
            if shape is None:
                raise NetworkError(f"Input node {name!r} has no shape: export the graph with its input shape")
            shapes[name] = _checked_shape(name, shape)
    changed = True
    while changed:
        changed = False
        for name, node in nodes.items():
            if name in shapes:
                continue
            known = [shapes[p] for p in preds[name] if p in shapes]
            if not known:
                continue
            sizes = {math.prod(s) for s in known}
            if len(sizes) > 1:
                detail = ", ".join(f"{p} gives {math.prod(shapes[p])}" for p in preds[name] if p in shapes)
                raise NetworkError(f"node {name!r} receives inputs of different sizes ({detail}): they must match")
            shapes[name] = _checked_shape(name, _output_shape(name, node, known[0], passthrough))
            changed = True
    return shapes


def _checked_shape(name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """``shape``, if node ``name``'s neurons (or values) fit the memory budget."""
    if min(shape, default=1) < 0:
        raise NetworkError(f"node {name!r} has the negative shape {list(shape)}")
    check_memory(math.prod(shape) * NEURON_BYTES, f"node {name!r} of shape {list(shape)} ({math.prod(shape)} neurons), which",
                 error=NetworkError)
    return shape


def _output_shape(name: str, node: Any, shape: tuple[int, ...], passthrough: set[str]) -> tuple[int, ...]:
    kind = _kind(node)
    size = math.prod(shape)
    if name in passthrough or kind in ("Identity", "Output"):
        return shape
    # Checked here, naming the node: after composition a NaN can vanish (times a zero weight).
    for field in ("weight", "scale"):
        values = getattr(node, field, None) if kind in ("Affine", "Linear", "Scale", "Conv1d", "Conv2d") else None
        if values is not None and not np.all(np.isfinite(np.asarray(values, dtype=np.float64))):
            raise NetworkError(f"{kind} node {name!r}: {field} contains NaN or Inf: every weight must be finite")
    if kind in ("Affine", "Linear"):
        w = np.asarray(node.weight)
        if w.ndim != 2 or w.shape[1] != size:
            raise NetworkError(
                f"{kind} node {name!r} has weight shape {list(w.shape)} but receives {size} values: "
                f"the weight must be [n_out, {size}]"
            )
        return (int(w.shape[0]),)
    if kind in ("Conv1d", "Conv2d"):
        ndim = 1 if kind == "Conv1d" else 2
        in_shape = shape
        if len(shape) != ndim + 1:
            declared = _shape_of(getattr(node, "input_shape", None))
            c_in = int(np.asarray(node.weight).shape[1]) * int(node.groups)
            if declared is not None and c_in * math.prod(declared) == size:
                in_shape = (c_in, *declared)
            else:
                raise NetworkError(
                    f"{kind} node {name!r} receives shape {list(shape)}; it needs [channels, "
                    f"{'length' if ndim == 1 else 'height, width'}]: give the Input node that shape"
                )
        _, out = conv_matrix(node.weight, in_shape, node.stride, node.padding, node.dilation, node.groups, where=f"{kind} node {name!r}")
        node._small_in_shape = in_shape
        return out
    if kind in POOL_TYPES:
        node._small_in_shape = shape
        return _pool(name, node)[1]
    if kind == "Flatten":
        start, end = int(node.start_dim), int(node.end_dim)
        nd = len(shape)
        start = start + nd if start < 0 else start
        end = end + nd if end < 0 else end
        if not (0 <= start <= end < nd):
            return (size,)
        return (*shape[:start], math.prod(shape[start : end + 1]), *shape[end + 1 :])
    # Scale, Delay and neurons keep the shape; their parameters must fit it.
    return shape


# -----------------------------------------------------------------------------------------
# Neuron parameters
# -----------------------------------------------------------------------------------------
# Infinite time constants (no leak) are legal in NIR; so is the matching infinite r.
_MAY_BE_INFINITE = ("tau", "tau_mem", "tau_syn", "r", "w_in")


def _param(node: Any, field: str, size: int, where: str) -> np.ndarray:
    value = getattr(node, field, None)
    if value is None:
        raise NetworkError(f"{where}: parameter {field!r} is missing")
    arr = np.asarray(value, dtype=np.float64)
    if arr.size == 1:
        arr = np.full(size, float(arr.reshape(-1)[0]))
    if arr.size != size:
        raise NetworkError(f"{where}: parameter {field!r} has {arr.size} values but the layer has {size} neurons")
    arr = arr.reshape(-1)
    if np.any(np.isnan(arr)) or (field not in _MAY_BE_INFINITE and not np.all(np.isfinite(arr))):
        raise NetworkError(f"{where}: parameter {field!r} contains NaN or Inf")
    return arr


def _gain(dt: float, r: np.ndarray, tau: np.ndarray, field: str, where: str, strict: bool = True) -> np.ndarray:
    """``dt * r / tau``; with tau = inf (no leak) the gain is only defined when r is finite (then 0).

    ``strict=False`` leaves an undefined gain as NaN (SMALL's metadata then supplies the value).
    """
    with np.errstate(invalid="ignore"):
        gain = dt * r / tau
    if strict and np.any(np.isnan(gain)):
        raise NetworkError(f"{where}: {field} and r are both infinite, so the input gain is undefined: give finite values")
    return gain


def _decay(tau: np.ndarray, dt: float, field: str, where: str, convention: Convention) -> np.ndarray:
    if np.any(tau <= 0):
        raise NetworkError(f"{where}: {field} = {float(tau.min())!r} s is not positive: time constants must be > 0")
    if convention.exact_decay:
        return np.exp(-dt / tau)
    if np.any(tau < dt):
        hint = (
            " This looks like Norse 1.1's export (tau written as dt*tau): use --framework norse, which corrects it."
            if convention.name == "nir"
            else ""
        )
        raise NetworkError(
            f"{where}: {field} = {float(tau.min()):g} s is shorter than dt = {dt:g} s, so forward Euler "
            f"is unstable: pass a smaller --dt.{hint}"
        )
    return 1.0 - dt / tau


def _fix_norse_tau(node: Any, fields: Iterable[str], size: int, dt: float, where: str) -> dict[str, np.ndarray]:
    taus = {f: _param(node, f, size, where) for f in fields}
    if all(np.all(t < dt) for t in taus.values()):
        fixed = {f: t / dt for f, t in taus.items()}
        shown = ", ".join(f"{f} {float(np.median(taus[f])):g} -> {float(np.median(fixed[f])):g} s" for f in taus)
        warnings.warn(
            f"{where}: time constants shorter than dt = {dt:g} s; Norse 1.1's NIR exporter writes dt/tau_inv "
            f"(= dt*tau) instead of tau, so SMALL reads them as value/dt ({shown}, medians)",
            SmallWarning,
            stacklevel=2,
        )
        return fixed
    return taus


def _neuron(name: str, node: Any, size: int, dt: float, convention: Convention) -> NeuronModel:
    """Discretise one NIR neuron node (``docs/semantics.md``, "From NIR").

    A node written by SMALL carries its exact discrete parameters in metadata; they are used
    when the file's dt is the one asked for and they agree with the continuous parameters
    (otherwise another tool edited the node, and the continuous values win, with a warning).
    """
    where = f"{_kind(node)} node {name!r}"
    exact = _small_metadata(node)
    if exact is None:
        return _discretise(node, size, dt, convention, {}, where)
    meta_dt = exact.get("dt")
    if meta_dt is not None and float(np.asarray(meta_dt)) == dt:
        model = _neuron_from_metadata(exact, size, where)
        # SMALL writes a non-leaky neuron (alpha = 1) as tau = r = inf: its continuous gain is
        # undefined (NaN here, skipped by _agree) and only the metadata holds it.
        continuous = _discretise(node, size, dt, CONVENTIONS["nir"], exact, where, strict=False)
        if type(model) is type(continuous) and all(
            _agree(a, b) for a, b in zip(model.params().values(), continuous.params().values())
        ):
            return model
        warnings.warn(
            f"{where}: SMALL metadata disagrees with the node's continuous parameters (edited by another tool?); "
            "using the continuous parameters",
            SmallWarning,
            stacklevel=2,
        )
    return _discretise(node, size, dt, CONVENTIONS["nir"], exact, where)


def _agree(exact: Any, continuous: Any) -> bool:
    """Metadata and continuous values agree to rounding, wherever the continuous one is finite."""
    a, b = np.broadcast_arrays(np.asarray(exact, dtype=np.float64), np.asarray(continuous, dtype=np.float64))
    finite = np.isfinite(b)
    return bool(np.allclose(a[finite], b[finite], rtol=_META_RTOL, atol=1e-12))


def _discretise(
    node: Any, size: int, dt: float, convention: Convention, extras: Mapping[str, Any], where: str, strict: bool = True
) -> NeuronModel:
    """Forward-Euler discretisation of a NIR neuron under a framework convention.

    ``extras`` supplies what NIR cannot say (reset mode, refractory period, ALIF adaptation),
    from SMALL's metadata when present.
    """
    kind = _kind(node)
    reset = _str(extras.get("reset", convention.reset))
    refractory = extras.get("refractory", 0)
    p = lambda f: _param(node, f, size, where)  # noqa: E731
    tau_fields = {"LIF": ("tau",), "LI": ("tau",), "CubaLIF": ("tau_mem", "tau_syn"), "CubaLI": ("tau_mem", "tau_syn")}.get(kind, ())
    if convention.fix_tau_units and tau_fields:
        taus = _fix_norse_tau(node, tau_fields, size, dt, where)
    else:
        taus = {f: p(f) for f in tau_fields}
    fire = bool(extras.get("fire_at_threshold", convention.fire_at_threshold))
    if convention.name == "sinabs" and kind in ("IF", "LIF", "LI"):
        r = p("r")
        if not np.all(r == 1):
            raise NetworkError(
                f"{where}: r = {float(r[r != 1][0]):g}, but Sinabs writes every {kind} with r = 1: this file was not "
                "exported by Sinabs; use --framework nir with --dt (or the framework that wrote it)"
            )
    if kind in ("LIF", "LI"):
        alpha = _decay(taus["tau"], dt, "tau", where, convention)
        gain = _membrane_gain(convention, kind, dt, p("r"), taus["tau"], alpha, "tau", where, strict)
        if kind == "LI":
            return LI(alpha=alpha, gain=gain, v_leak=p("v_leak"))
        v_threshold, v_leak = _reset_in_step(convention, reset, alpha, p("v_threshold"), p("v_leak"))
        common = dict(alpha=alpha, gain=gain, v_leak=v_leak, v_threshold=v_threshold,
                      v_reset=p("v_reset"), reset=reset, refractory=refractory, fire_at_threshold=fire)
        if _str(extras.get("model", "")) == "alif":
            return ALIF(**common, alpha_adapt=extras["alpha_adapt"], adapt=extras["adapt"])
        return LIF(**common)
    if kind in ("CubaLIF", "CubaLI"):
        alpha = _decay(taus["tau_mem"], dt, "tau_mem", where, convention)
        alpha_syn = _decay(taus["tau_syn"], dt, "tau_syn", where, convention)
        w_in = p("w_in")
        if convention.jump_inputs:
            syn_gain = w_in
        elif convention.gain == "euler/alpha":
            syn_gain = w_in * alpha_syn
        else:
            syn_gain = _gain(dt, w_in, taus["tau_syn"], "tau_syn", where, strict)
        gain = _membrane_gain(convention, kind, dt, p("r"), taus["tau_mem"], alpha, "tau_mem", where, strict)
        if kind == "CubaLI":
            return CubaLI(alpha=alpha, alpha_syn=alpha_syn, gain=gain, syn_gain=syn_gain, v_leak=p("v_leak"))
        v_threshold, v_leak = _reset_in_step(convention, reset, alpha, p("v_threshold"), p("v_leak"))
        return CubaLIF(
            alpha=alpha, alpha_syn=alpha_syn, gain=gain, syn_gain=syn_gain, v_leak=v_leak, v_threshold=v_threshold,
            v_reset=p("v_reset"), reset=reset, refractory=refractory, fire_at_threshold=fire,
        )
    if kind == "IF":
        r = p("r")
        gain = r if convention.jump_inputs or convention.gain in ("r", "r/alpha") else dt * r
        return IF(gain=gain, v_threshold=p("v_threshold"), v_reset=p("v_reset"), reset=reset, refractory=refractory,
                  fire_at_threshold=fire)
    if kind == "I":
        return LI(alpha=1.0, gain=dt * p("r"), v_leak=0.0)
    if kind == "Threshold":
        # z = H(x - threshold), no state: a LIF that forgets everything each step (alpha = 0,
        # reset to 0), whatever reset the framework would give a real neuron.
        return LIF(alpha=0.0, gain=1.0, v_leak=0.0, v_threshold=p("threshold"), v_reset=0.0, reset="zero")
    raise UnsupportedError(f"{where}: not a neuron type ({', '.join(NEURON_TYPES)})")


def _membrane_gain(convention: Convention, kind: str, dt: float, r: np.ndarray, tau: np.ndarray, alpha: np.ndarray,
                   field: str, where: str, strict: bool) -> np.ndarray:
    """The input gain of a membrane, as the framework that wrote ``r`` meant it (``Convention.gain``)."""
    if convention.gain == "r" or (convention.gain == "r/alpha" and kind == "LI"):
        return r  # Spyx writes r = beta for LIF and CubaLIF only; its LI carries r = 1
    if convention.gain == "r/alpha":
        if np.any(alpha == 0):
            raise NetworkError(f"{where}: {field} = dt gives a decay of 0, so r = beta cannot be undone")
        return _expect_unit_gain(r / alpha, convention, where)
    gain = _gain(dt, r, tau, field, where, strict)
    return _expect_unit_gain(gain / alpha, convention, where) if convention.gain == "euler/alpha" else gain


def _expect_unit_gain(gain: np.ndarray, convention: Convention, where: str) -> np.ndarray:
    """Spyx and Rockpool write ``r`` so that their gain of 1 comes back; anything else is read
    as written, with a warning (the file may come from another exporter)."""
    if not np.allclose(gain, 1.0, rtol=1e-4, atol=0):
        far = float(gain.reshape(-1)[np.argmax(np.abs(gain - 1.0))])
        warnings.warn(f"{where}: its r gives an input gain of {far:g}, but {convention.name} writes r so that the gain "
                      f"is 1: was the file exported by {convention.name}? (read as written)", SmallWarning, stacklevel=4)
    return gain


def _reset_in_step(convention: Convention, reset: str, alpha: np.ndarray, v_threshold: np.ndarray,
                   v_leak: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(v_threshold, v_leak) of SMALL's subtract reset for a framework that subtracts in the spike's step.

    The framework computes ``v_t = alpha (v_{t-1} - thr s_{t-1}) + (1 - alpha) V + x_t``, spike
    ``v_t >(=) thr``. With ``u = v - (1 - alpha) thr``, SMALL's ``u_t = alpha u_{t-1} + (1 - alpha) L
    - th s_{t-1} + x_t``, spike ``u_t >(=) th``, is the same neuron for ``th = alpha thr`` and
    ``L = V - (1 - alpha) thr`` (also the start value, as ``v = V`` starts there). The reported
    membrane is ``u``, lower by ``(1 - alpha) thr``; with alpha = 1 (no leak) nothing changes.
    """
    if not (convention.reset_before_leak and reset == "subtract"):
        return v_threshold, v_leak
    return alpha * v_threshold, v_leak - (1 - alpha) * v_threshold


def _small_metadata(node: Any) -> dict[str, Any] | None:
    meta = getattr(node, "metadata", None)
    if isinstance(meta, Mapping) and isinstance(meta.get("small"), Mapping):
        return dict(meta["small"])
    return None


def _neuron_from_metadata(meta: Mapping[str, Any], size: int, where: str) -> NeuronModel:
    """The exact discrete parameters SMALL's NIR export stores beside the continuous ones."""
    fields = {k: v for k, v in meta.items() if k not in ("dt", "model", "version")}
    fields["model"] = _str(meta.get("model"))
    for key, value in list(fields.items()):
        if isinstance(value, (bytes, np.bytes_)):
            fields[key] = _str(value)
        elif isinstance(value, np.ndarray) and value.dtype.kind in "SUO":
            fields[key] = _str(value.item())
    try:
        model = NeuronModel.from_dict(fields)
        model.validate(size, where)
    except NetworkError as exc:
        raise NetworkError(f"{where}: SMALL metadata is inconsistent: {exc}") from None
    return model


# -----------------------------------------------------------------------------------------
# Composition of linear paths
# -----------------------------------------------------------------------------------------
def _compose(step: sp.csr_array, matrix: sp.csr_array, where: str) -> sp.csr_array:
    """``step @ matrix``, refused before it is formed if its synapses could exceed the memory budget:
    two small dense layers in a row can compose into a matrix of every input times every output."""
    step, matrix = sp.csr_array(step), sp.csr_array(matrix)
    # at most sum_k (entries of step's column k) x (entries of matrix's row k) nonzeros
    bound = int(np.bincount(step.indices, minlength=step.shape[1]) @ np.diff(matrix.indptr).astype(np.int64))
    bound = min(bound, step.shape[0] * matrix.shape[1])
    check_memory(bound * SYNAPSE_BYTES, f"{where}: composing its path gives up to {bound} synapses "
                 f"({step.shape[0]} x {matrix.shape[1]}), which", error=NetworkError)
    return step @ matrix


def _linear_step(name: str, node: Any, matrix: sp.csr_array, dt: float) -> list[tuple[sp.csr_array, int]]:
    """Apply one linear node to ``matrix`` (rows: the node's inputs); return (matrix, extra delay) pairs."""
    kind = _kind(node)
    if kind in ("Affine", "Linear"):
        return [(_compose(sp.csr_array(np.asarray(node.weight, dtype=np.float64)), matrix, f"{kind} node {name!r}"), 0)]
    if kind == "Scale":
        scale = _per_element(node.scale, matrix.shape[0], f"Scale node {name!r}", "factors")
        return [(sp.diags_array(scale) @ matrix, 0)]
    if kind in ("Conv1d", "Conv2d"):
        conv, _ = conv_matrix(node.weight, node._small_in_shape, node.stride, node.padding, node.dilation, node.groups,
                              where=f"{kind} node {name!r}")
        return [(_compose(conv, matrix, f"{kind} node {name!r}"), 0)]
    if kind in POOL_TYPES:
        return [(_compose(_pool(name, node)[0], matrix, f"{kind} node {name!r}"), 0)]
    if kind == "Delay":
        delay = _per_element(node.delay, matrix.shape[0], f"Delay node {name!r}", "delays")
        steps = delay / dt
        rounded = np.round(steps)
        if np.any(delay < 0) or not np.allclose(steps, rounded, rtol=0, atol=1e-6):
            raise NetworkError(
                f"Delay node {name!r}: delays {sorted(set(delay.tolist()))[:4]} s are not non-negative multiples of "
                f"dt = {dt:g} s: pass a --dt that divides them"
            )
        out = []
        for d in np.unique(rounded):
            mask = (rounded == d).astype(np.float64)
            out.append((sp.diags_array(mask) @ matrix, int(d)))
        return out
    return [(matrix, 0)]  # Flatten, Identity and pass-through nodes


def _pool(name: str, node: Any) -> tuple[sp.csr_array, tuple[int, ...]]:
    """The matrix and output shape of a SumPool2d/AvgPool2d node (its input shape already inferred)."""
    stride = getattr(node, "stride", None)
    return pool_matrix(node.kernel_size, node._small_in_shape, None if stride is None else stride,
                       getattr(node, "padding", 0), average=_kind(node) == "AvgPool2d", where=f"{_kind(node)} node {name!r}")


def _store(matrix: sp.csr_array) -> np.ndarray | sp.csr_array:
    matrix = sp.csr_array(matrix)
    matrix.eliminate_zeros()
    size = matrix.shape[0] * matrix.shape[1]
    if size and matrix.nnz <= SPARSE_DENSITY * size:
        matrix.sort_indices()
        return matrix
    return matrix.toarray()


def import_nir(
    source: str | Path | Any,
    *,
    dt: float | None = None,
    framework: str = "nir",
    reset: str | None = None,
    name: str | None = None,
) -> Network:
    """Convert a NIR graph (file path or ``nir.NIRGraph``) into a validated :class:`Network`.

    Parameters
    ----------
    dt : float, optional
        Seconds per step. Defaults to the framework's implicit step, or the step recorded in a
        SMALL-written file; required for ``framework="nir"`` otherwise.
    framework : {"nir", "snntorch", "norse", "sinabs", "rockpool", "spyx"}
        Which exporter's conventions to reproduce (``docs/semantics.md``).
    reset : {"zero", "subtract"}, optional
        Reset of every spiking neuron, overriding the framework's default (and a SMALL file's
        recorded reset): a NIR file cannot say which one a model was trained with.
    """
    if framework not in CONVENTIONS:
        raise NetworkError(f"unknown framework {framework!r}: use one of {', '.join(CONVENTIONS)}")
    if reset is not None and reset not in RESET_MODES:
        raise NetworkError(f"unknown reset {reset!r}: use one of {', '.join(RESET_MODES)}")
    convention = CONVENTIONS[framework]
    if reset is not None:
        convention = dataclasses.replace(convention, reset=reset)
    path = None
    if isinstance(source, (str, Path)):
        path = Path(source)
        graph = read_nir(path)
    else:
        graph = source
    graph_meta = graph.metadata if isinstance(getattr(graph, "metadata", None), Mapping) else {}
    small_meta = graph_meta.get("small") if isinstance(graph_meta.get("small"), Mapping) else {}
    if dt is None:
        dt = convention.default_dt
        if small_meta.get("dt") is not None:
            dt = float(np.asarray(small_meta["dt"]))
        if dt is None:
            raise NetworkError(
                "the NIR file does not say which time step to simulate at: pass --dt SECONDS, or "
                f"--framework {'|'.join(c for c in CONVENTIONS if c != 'nir')} if it was exported by one of them "
                "(they imply their step)"
            )
    if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise NetworkError(f"dt must be a positive number of seconds, not {dt!r}")
    dt = float(dt)

    nodes, edges, passthrough = _flatten(graph)
    if convention.recurrent_input_direct:
        edges = _spyx_recurrent_inputs(nodes, edges, passthrough)
    for a, b in edges:
        for end in (a, b):
            if end not in nodes:
                raise NetworkError(f"edge {a!r} -> {b!r} refers to node {end!r}, which the graph does not have")
    for nname, node in nodes.items():
        if _kind(node) not in SUPPORTED_TYPES:
            raise _unsupported(nname, _kind(node))
    port_shapes: dict[str, tuple[int, ...]] = {}
    for nname, node in nodes.items():
        if convention.batched_ports and _kind(node) == "Input" and nname not in passthrough:
            shape = _shape_of(node.input_type.get("input"))
            if shape is not None and len(shape) > 1:
                warnings.warn(f"Input node {nname!r} has shape {list(shape)}: Rockpool's exporter keeps batch and time "
                              f"axes there; SMALL reads it as [{shape[-1]}]", SmallWarning, stacklevel=2)
                port_shapes[nname] = shape[-1:]
    shapes = _infer_shapes(nodes, edges, passthrough, port_shapes)
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        if b not in succ[a]:
            succ[a].append(b)

    def is_port(n: str) -> bool:
        return n not in passthrough and _kind(nodes[n]) in ("Input", "Output")

    inputs = [n for n in nodes if is_port(n) and _kind(nodes[n]) == "Input"]
    neurons = [n for n in nodes if _kind(nodes[n]) in NEURON_TYPES]
    for n in neurons:
        if n not in shapes:
            raise NetworkError(f"neuron node {n!r} is not reachable from any Input node, so its size is unknown")
    output_nodes = [n for n in nodes if is_port(n) and _kind(nodes[n]) == "Output"]
    # An Output reached through a weighted node (Affine -> Output) is a membrane readout: a
    # population of its own that passes on this step's input (docs/semantics.md, "Outputs").
    preds: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        preds[b].append(a)
    readouts = [n for n in output_nodes if _needs_readout(n, nodes, preds, passthrough, inputs)]
    neurons += readouts

    # Compose every linear path from a stateful node (input or neuron) to the next ones.
    blocks: dict[tuple[str, str, int], sp.csr_array] = {}
    order: list[tuple[str, str, int]] = []
    outputs: dict[str, str] = {}
    bias: dict[str, np.ndarray] = {n: np.zeros(math.prod(shapes[n])) for n in neurons}

    def walk(origin: str, at: str, matrix: sp.csr_array, delay: int, path: tuple[str, ...]) -> None:
        for nxt in succ[at]:
            node = nodes[nxt]
            kind = _kind(node)
            if kind in NEURON_TYPES or nxt in readouts:
                if origin in nodes and _kind(nodes[origin]) in _NON_SPIKING:
                    raise UnsupportedError(
                        f"{_kind(nodes[origin])} node {origin!r} feeds {kind} node {nxt!r}, but a non-spiking neuron's "
                        "membrane sends no events: make it a spiking neuron (LIF, CubaLIF, IF) or end the graph there"
                    )
                key = (origin, nxt, delay)
                if key in blocks:
                    blocks[key] = blocks[key] + matrix
                else:
                    blocks[key] = matrix
                    order.append(key)
            elif is_port(nxt):  # an Output node fed by a neuron (through Flatten at most)
                outputs[nxt] = origin
            else:
                if nxt in path:
                    raise NetworkError(f"nodes {', '.join(path)} form a cycle without a neuron: a loop needs a stateful node")
                for new_matrix, extra in _linear_step(nxt, node, matrix, dt):
                    walk(origin, nxt, new_matrix, delay + extra, path + (nxt,))

    for origin in (*inputs, *neurons):
        if origin not in readouts:
            # Spyx's spike of step t is H(v_{t-1} - thr): every spike leaves one step late.
            late = convention.spike_delay if origin not in inputs and _kind(nodes[origin]) in ("LIF", "CubaLIF", "IF") else 0
            walk(origin, origin, sp.eye_array(math.prod(shapes[origin]), format="csr"), late, ())
    for n in readouts:
        outputs[n] = n
    _accumulate_biases(nodes, succ, shapes, passthrough, bias, dt, readouts)

    # A cycle of zero-delay projections gets one step of delay on its closing edge.
    keys = _break_zero_delay_cycles(order, inputs, neurons)
    merged: dict[tuple[str, str, int], sp.csr_array] = {}
    merged_order: list[tuple[str, str, int]] = []
    for old, new in zip(order, keys):
        if new in merged:
            merged[new] = merged[new] + blocks[old]
        else:
            merged[new] = blocks[old]
            merged_order.append(new)

    for out_name in output_nodes:
        if out_name not in outputs:
            raise NetworkError(f"Output node {out_name!r} has no incoming edge from a neuron")
    # Outputs are reported in order: the one SMALL's export recorded, else the graph's node order.
    outputs = {n: outputs[n] for n in _output_order(small_meta, output_nodes)}

    pop_order = _population_order(merged_order, inputs, neurons)
    populations = [
        Population(n, math.prod(shapes[n]), _readout() if n in readouts else _neuron(n, nodes[n], math.prod(shapes[n]), dt, convention),
                   bias=_compact(bias[n]))
        for n in pop_order
    ]
    if reset is not None:
        for pop in populations:
            if pop.neuron.spiking and _kind(nodes[pop.name]) != "Threshold":
                pop.neuron.reset = reset  # type: ignore[attr-defined]
    projections = [Projection(src, tgt, _store(merged[(src, tgt, d)]), delay=d) for (src, tgt, d) in merged_order]
    metadata: dict[str, Any] = {"framework": framework}
    if reset is not None:
        metadata["reset"] = reset
    if path is not None:
        import hashlib

        metadata["source"] = path.name
        metadata["source_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    net = Network(
        name=name or _str(small_meta.get("name", "")) or (path.stem if path is not None else "network"),
        dt=dt,
        inputs=[Input(n, shapes[n]) for n in inputs],
        populations=populations,
        projections=projections,
        outputs=outputs,
        metadata=metadata,
    )
    return net.validate()


def _output_order(small_meta: Mapping[str, Any], names: list[str]) -> list[str]:
    """``names`` reordered by SMALL's graph metadata ``outputs`` (``{"0": name, "1": name, ...}``)."""
    listed = small_meta.get("outputs")
    if not isinstance(listed, Mapping) or not all(str(k).isdigit() for k in listed):
        return names
    ranked = [_str(np.asarray(listed[k]).item()) for k in sorted(listed, key=lambda k: int(k))]
    return [n for n in ranked if n in names] + [n for n in names if n not in ranked]


def _compact(values: np.ndarray) -> float | np.ndarray:
    return float(values[0]) if values.size and np.all(values == values[0]) else values


def _per_element(values: Any, n: int, what: str, plural: str) -> np.ndarray:
    """A node's per-element parameter as ``n`` floats: one value is broadcast, else there must be ``n``."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size == 1:
        values = np.full(n, values[0])
    if values.size != n:
        raise NetworkError(f"{what} has {values.size} {plural} but receives {n} values")
    return values


def _node_bias(name: str, node: Any, out_shape: tuple[int, ...]) -> np.ndarray | None:
    bias = getattr(node, "bias", None)
    if bias is None:
        return None
    b = np.asarray(bias, dtype=np.float64).reshape(-1)
    if not np.any(b):
        return None
    if _kind(node) in ("Conv1d", "Conv2d"):
        if b.size != out_shape[0]:
            raise NetworkError(f"{_kind(node)} node {name!r}: bias has {b.size} values for {out_shape[0]} channels")
        b = np.repeat(b, math.prod(out_shape[1:]))
    elif b.size != math.prod(out_shape):
        raise NetworkError(f"Affine node {name!r}: bias has {b.size} values but the weight has {math.prod(out_shape)} rows")
    if not np.all(np.isfinite(b)):
        raise NetworkError(f"node {name!r}: bias contains NaN or Inf")
    return b


def _needs_readout(output: str, nodes, preds, passthrough, inputs) -> bool:
    """Whether Output node ``output`` is reached through a weighted node (or from an Input):
    then it is a readout population rather than a neuron's own spikes or membrane."""
    stack, seen = list(preds[output]), set()
    while stack:
        at = stack.pop()
        if at in seen:
            continue
        seen.add(at)
        kind = _kind(nodes[at])
        if kind in NEURON_TYPES:
            continue
        if at in inputs or (kind not in ("Flatten", "Identity") and at not in passthrough):
            return True
        stack.extend(preds[at])
    return False


def _readout() -> LI:
    """A readout passes on its input of the step: ``v = 0*v + I_t`` (docs/semantics.md, "Outputs")."""
    return LI(alpha=0.0, gain=1.0, v_leak=0.0)


def _accumulate_biases(nodes, succ, shapes, passthrough, bias, dt, readouts=()) -> None:
    """Add each Affine/Conv bias, carried through the linear nodes after it, to the neurons it reaches."""
    for name, node in nodes.items():
        if _kind(node) not in ("Affine", "Conv1d", "Conv2d") or name not in shapes:
            continue
        b = _node_bias(name, node, shapes[name])
        if b is None:
            continue
        stack = [(name, sp.csr_array(b.reshape(-1, 1)), (name,))]
        while stack:
            at, vec, path = stack.pop()
            for nxt in succ[at]:
                kind = _kind(nodes[nxt])
                if kind in NEURON_TYPES or nxt in readouts:
                    bias[nxt] += vec.toarray().reshape(-1)
                elif kind in LINEAR_TYPES or nxt in passthrough:
                    if nxt in path:
                        raise NetworkError(f"nodes {', '.join(path)} form a cycle without a neuron")
                    # A bias is a constant: a Delay does not change it (docs/semantics.md).
                    for new_vec, _ in _linear_step(nxt, nodes[nxt], vec, dt):
                        stack.append((nxt, new_vec, path + (nxt,)))


def _break_zero_delay_cycles(order: list[tuple[str, str, int]], inputs: list[str], neurons: list[str]) -> list[tuple[str, str, int]]:
    """Give the closing edge of every zero-delay cycle one step of delay.

    Depth-first search from the inputs (then from any neuron not yet reached), visiting
    successors in the order their projections were found (the file's edge order); a
    zero-delay edge that returns to a node on the current search path closes a cycle.
    """
    succ: dict[str, list[int]] = {}
    for idx, (src, tgt, d) in enumerate(order):
        if d == 0:
            succ.setdefault(src, []).append(idx)
    keys = list(order)
    state: dict[str, int] = {}  # 1 = on the path, 2 = finished

    def visit(node: str) -> None:
        state[node] = 1
        for idx in succ.get(node, []):
            tgt = order[idx][1]
            if state.get(tgt) == 1:
                keys[idx] = (order[idx][0], tgt, 1)
            elif tgt not in state:
                visit(tgt)
        state[node] = 2

    for start in (*inputs, *neurons):
        if start not in state:
            visit(start)
    return keys


def _population_order(order: list[tuple[str, str, int]], inputs: list[str], neurons: list[str]) -> list[str]:
    """Neurons in breadth-first order from the inputs (a readable, deterministic order)."""
    seen: list[str] = []
    frontier = list(inputs)
    while frontier:
        nxt = []
        for src in frontier:
            for s, t, _ in order:
                if s == src and t not in seen and t in neurons:
                    seen.append(t)
                    nxt.append(t)
        frontier = nxt
    return seen + [n for n in neurons if n not in seen]
