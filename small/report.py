"""``small report BUILD``: one self-contained HTML page about a build, and its figures as PNG files.

The page (``BUILD/report.html``) embeds every figure as a ``data:`` URI and its style sheet
inline, so it opens offline and can be mailed as one file; the same figures lie beside it in
``BUILD/report/``. What it shows, and where each figure comes from:

* the network (``network.small``, the network as compiled) as a graph;
* the tile map: which population each column holds, and each tile's utilisation on the chip;
* per tile, the programmed weights and conductances with the stuck devices, and level histograms;
* the routing table as inter-tile traffic: table entries and events per inference between tiles;
* spike rasters for one test input: reference (``sim/reference.py``), digital twin
  (``sim/digital.py``) and memristive simulation (``sim/analog.py``: the image's calibrated
  device, else PCM, read an hour after programming);
* accuracy on the build's test set under each of them, and the ideal memristive tiles;
* FPGA resources and fmax (``hdl/small_chip_fpga.json``, from ``small export --bitstream``);
* the analog energy estimate (``analog_models/energy.py``);
* the verification runs (``verify/<simulator>/<run>/result.json``, from ``small verify``).

A build of one target is compared with the other target compiled from the same network with
the same options, so a digital build's report still shows what memristive tiles would do, and
the reverse. Figures are drawn with matplotlib's Agg backend.
"""

from __future__ import annotations

import base64
import html
import io
import json
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from small.errors import SmallError
from compiler.image import COL_PARTIAL, COL_UNUSED

REPORT_FILE = "report.html"
FIGURES_DIR = "report"  # the PNGs, beside report.html
T_READ = 3600.0  # seconds between programming and reading the memristive chip (drift, read noise)
RASTER_SAMPLE = 0  # the test input whose spikes the rasters show
DPI = 110


@dataclass
class Figure:
    name: str  # file name stem
    title: str
    caption: str
    png: bytes = b""


@dataclass
class Section:
    title: str
    body: str = ""  # HTML (tables, notes)
    figures: list[Figure] = field(default_factory=list)


# -- the build and its counterparts ------------------------------------------------------------
@dataclass
class Build:
    path: Path
    image: object  # HardwareImage
    net: object  # Network
    test: object | None  # TestSet
    report: object | None  # CompileReport (report.json), None if the build has none it can read
    digital: object | None  # the digital image (this build's, or compiled from the same network; None if it does not compile)
    memristive: object | None  # the memristive image (likewise)
    other_error: str = ""  # why the other target did not compile


def load_build(path: str | Path) -> Build:
    from compiler.image import load_image
    from compiler.mapper import CompileReport
    from compiler.netfile import load_network
    from sim.evaluate import load_test_set
    from small.flow import NETWORK_FILE, REPORT_JSON, TEST_SET_FILE

    path = Path(path)
    if not (path / "image.json").is_file():
        raise SmallError(f"{str(path)!r} is not a build folder (no image.json): run `small compile MODEL -o {path}` "
                         "or `small flow MODEL` first")
    image = load_image(path)
    if not (path / NETWORK_FILE).is_file():
        raise SmallError(f"{str(path)!r} has no {NETWORK_FILE} (it was compiled by an older SMALL): compile it again "
                         "with `small compile` or `small flow`")
    net = load_network(path / NETWORK_FILE)
    test = load_test_set(path / TEST_SET_FILE) if (path / TEST_SET_FILE).is_file() else None
    report = None
    if (path / REPORT_JSON).is_file():
        try:
            report = CompileReport.from_dict(json.loads((path / REPORT_JSON).read_text()))
        except (ValueError, KeyError, TypeError, AttributeError):  # damaged, or of another SMALL: figures left out
            report = None
    try:
        other, why = _counterpart(image, net), ""
    except SmallError as exc:  # e.g. parameters the digital twin's integers cannot hold
        other, why = None, str(exc)
    digital, memristive = (image, other) if image.target == "digital" else (other, image)
    return Build(path, image, net, test, report, digital, memristive, why)


def _counterpart(image, net):
    """The same network compiled for the other target with the image's own options."""
    from small.flow import BuildOptions, compile_model

    meta = image.meta
    target = "memristive" if image.target == "digital" else "digital"
    scales = {i["name"]: float(i["scale"]) for i in meta["inputs"] if float(i["scale"]) != 1.0}
    return compile_model(net, BuildOptions.of_image(image, target), input_scales=scales,
                         source_name=meta["network"].get("source", ""),
                         source_sha256=meta["network"].get("sha256", "")).image


# -- figures -----------------------------------------------------------------------------------
def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def network_figure(net) -> Figure:
    """Inputs and populations as nodes (kind, size), projections as edges (synapses, delay)."""
    import networkx as nx

    plt = _plt()
    g = nx.MultiDiGraph()
    for i in net.inputs:
        g.add_node(i.name, label=f"{i.name}\ninput {'x'.join(map(str, i.shape))}", kind="input")
    for p in net.populations:
        outs = [k for k, v in net.outputs.items() if v == p.name]
        g.add_node(p.name, label=f"{p.name}\n{p.neuron.kind.upper()} x {p.size}" + ("\n-> " + ", ".join(outs) if outs else ""),
                   kind="output" if outs else "population")
    for proj in net.projections:
        g.add_edge(proj.source, proj.target, label=f"{proj.nnz:,}" + (f" d{proj.delay}" if proj.delay else ""))
    # layers: longest distance from an input along non-recurrent edges
    depth = {i.name: 0 for i in net.inputs}
    for name in net.update_order():
        preds = [p.source for p in net.projections if p.target == name and p.source != name and p.source in depth]
        depth[name] = 1 + max((depth[s] for s in preds), default=0)
    layers: dict[int, list[str]] = {}
    for name in g.nodes:
        layers.setdefault(depth.get(name, 0), []).append(name)
    pos = {n: (d, -k + (len(ns) - 1) / 2) for d, ns in layers.items() for k, n in enumerate(ns)}
    width = max(6.0, 2.6 * len(layers))
    fig, ax = plt.subplots(figsize=(width, max(3.2, 1.6 * max(len(v) for v in layers.values()))))
    colours = {"input": "#cfe3f7", "population": "#f7e3c0", "output": "#cdeccd"}
    nx.draw_networkx_nodes(g, pos, ax=ax, node_shape="s", node_size=4200,
                           node_color=[colours[g.nodes[n]["kind"]] for n in g.nodes], edgecolors="#444")
    nx.draw_networkx_labels(g, pos, labels={n: g.nodes[n]["label"] for n in g.nodes}, ax=ax, font_size=8)
    straight = [(u, v) for u, v in g.edges() if u != v]
    nx.draw_networkx_edges(g, pos, edgelist=straight, ax=ax, node_size=4200, node_shape="s", arrows=True,
                           arrowsize=16, connectionstyle="arc3,rad=0.08", edge_color="#555")
    labels: dict[tuple[str, str], str] = {}
    for u, v, data in g.edges(data=True):
        labels[(u, v)] = (labels[(u, v)] + ", " if (u, v) in labels else "") + data["label"]
    nx.draw_networkx_edge_labels(g, pos, edge_labels={k: v for k, v in labels.items() if k[0] != k[1]}, ax=ax,
                                 font_size=7, connectionstyle="arc3,rad=0.08")
    for (u, v), text in labels.items():  # recurrent projections: a small loop over the node
        if u == v:
            x, y = pos[u]
            ax.annotate("", xy=(x + 0.14, y + 0.36), xytext=(x - 0.14, y + 0.36),
                        arrowprops=dict(arrowstyle="->", color="#a33", connectionstyle="arc3,rad=-0.9", lw=1.3))
            ax.annotate(f"recurrent: {text}", (x, y + 0.6), ha="center", fontsize=7, color="#a33")
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
    ax.set_ylim(min(ys) - 0.7, max(ys) + 0.8)
    ax.set_title(f"Network {net.name!r}: {net.n_neurons:,} neurons, {net.n_synapses:,} synapses, dt {net.dt:g} s "
                 "(edge labels: synapses, d = delay in steps)", fontsize=10)
    ax.axis("off")
    return Figure("network", "Network", "Inputs (blue), populations (orange) and output populations (green); each "
                  "arrow is a projection labelled with its synapse count.", _png(fig))


def _tile_grid(n: int) -> tuple[int, int]:
    cols = int(np.ceil(np.sqrt(n)))
    return int(np.ceil(n / cols)), cols


def tile_map_figure(image, net) -> Figure:
    """Which population each column of each tile holds, and every tile's utilisation on the chip."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    plt = _plt()
    a, T, R, C = image.arrays, image.n_tiles, image.rows, image.cols
    owner = np.full((T, C), -1.0)
    names = [p.name for p in net.populations]
    for k, name in enumerate(names):
        addr = image.addresses(name)
        owner.reshape(-1)[addr] = k
    kind = a["col_kind"]
    owner[kind == COL_PARTIAL] = len(names)
    base = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    colours = ["#eeeeee"] + [base(k % base.N) for k in range(len(names))] + ["#777777"]
    cmap = ListedColormap(colours)
    rows_used = np.asarray(np.any(a["g_pos"] != a["g_neg"], axis=2).sum(axis=1))
    cells_used = np.count_nonzero(a["g_pos"] != a["g_neg"], axis=(1, 2))
    cols_used = np.count_nonzero(kind != COL_UNUSED, axis=1)
    chip = int(image.meta.get("chip_tiles", T))
    gr, gc = _tile_grid(chip)
    util = np.full(gr * gc, np.nan)
    phys = a["tile_phys"]
    util[phys] = cells_used / (R * C) * 100
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(13, max(3.0, 0.45 * T + 1.6)),
                                   gridspec_kw={"width_ratios": [2.2, 1]})
    ax0.imshow(owner + 1, cmap=cmap, vmin=0, vmax=len(colours) - 1, aspect="auto", interpolation="nearest",
               extent=(-0.5, C - 0.5, T - 0.5, -0.5))
    ax0.set_xlabel(f"column (of {C})")
    ax0.set_ylabel("tile")
    ax0.set_yticks(range(T))
    ax0.set_yticklabels([f"{t} ({rows_used[t]}x{cols_used[t]})" for t in range(T)], fontsize=8)
    ax0.set_title("Column assignment (tile: rows x columns used)")
    handles = [Patch(color=colours[k + 1], label=f"{n} ({net.population(n).neuron.kind})") for k, n in enumerate(names)]
    if np.any(kind == COL_PARTIAL):
        handles.append(Patch(color=colours[-1], label="partial sum (split fan-in)"))
    handles.append(Patch(color=colours[0], label="unused"))
    ax0.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.14 if T > 3 else -0.25),
               ncol=min(4, len(handles)), fontsize=8, frameon=False)
    im = ax1.imshow(util.reshape(gr, gc), cmap="viridis", vmin=0, vmax=100)
    for t in range(T):
        y, x = divmod(int(phys[t]), gc)
        v = util[phys[t]]
        ax1.text(x, y, f"tile {t}\n{v:.0f} %", ha="center", va="center", fontsize=8,
                 color="white" if v < 60 else "black")
    ax1.set_xticks([])
    ax1.set_yticks([])
    ax1.set_title(f"Cells used per tile, as placed on the chip ({chip} tiles)")
    fig.colorbar(im, ax=ax1, fraction=0.046, pad=0.04, label="cells holding a weight (%)")
    return Figure("tiles", "Tile map", f"{T} tiles of {R}x{C}. Left: the population of every column; right: each "
                  "tile's share of cells that hold a weight, at its physical position (grey: tiles the chip has but "
                  "the network does not use).", _png(fig))


def tile_figures(image) -> list[Figure]:
    """Per tile: signed weight levels, G+ and G- (memristive: microsiemens) with stuck devices, histograms."""
    plt = _plt()
    a, T, R, C, L = image.arrays, image.n_tiles, image.rows, image.cols, image.levels
    memristive = image.target == "memristive"
    pos, neg = image.effective_levels()
    if memristive:
        gp, gn = (g * 1e6 for g in image.conductances())
        unit, vmax = "µS", image.conductance_range()[1] * 1e6
    else:
        gp, gn, unit, vmax = pos, neg, "level", L - 1
    stuck = {d: a[f"stuck_{d}"] if f"stuck_{d}" in a else None for d in ("pos", "neg")}
    w = pos - neg
    out = []
    for t in range(T):
        fig, axes = plt.subplots(1, 4, figsize=(17, 3.8), gridspec_kw={"width_ratios": [1, 1, 1, 1.1]},
                                 layout="constrained")
        im = axes[0].imshow(w[t], cmap="RdBu_r", vmin=-(L - 1), vmax=L - 1, aspect="auto", interpolation="nearest")
        fig.colorbar(im, ax=axes[0], label="weight (levels)")
        axes[0].set_title(f"Tile {t}: weight = G+ - G-")
        for ax, g, d in ((axes[1], gp, "pos"), (axes[2], gn, "neg")):
            im = ax.imshow(g[t], cmap="magma", vmin=0, vmax=vmax, aspect="auto", interpolation="nearest")
            fig.colorbar(im, ax=ax, label=f"{'conductance' if memristive else 'programmed level'} ({unit})")
            ax.set_title(f"G{'+' if d == 'pos' else '-'} devices")
            s = stuck[d]
            if s is not None:
                for level, marker, colour, label in ((0, "x", "#00e5ff", "stuck low"), (L - 1, "+", "#7CFC00", "stuck high")):
                    r, c = np.nonzero(s[t] == level)
                    if r.size:
                        ax.scatter(c, r, marker=marker, s=14, c=colour, linewidths=0.8, label=f"{label} ({r.size})")
                if np.any(s[t] >= 0):
                    ax.legend(loc="upper right", fontsize=7, framealpha=0.8)
        for ax in axes[:3]:
            ax.set_xlabel("column")
            ax.set_ylabel("row")
        used = a["g_pos"][t] != a["g_neg"][t]
        bins = np.arange(L + 1) - 0.5
        axes[3].hist([pos[t][used], neg[t][used]], bins=bins, label=["G+", "G-"], color=["#c0392b", "#2471a3"])
        axes[3].set_yscale("log")
        axes[3].set_xlabel("device level")
        axes[3].set_ylabel("devices (cells holding a weight)")
        axes[3].set_title(f"Level histogram ({int(used.sum()):,} cells)")
        axes[3].legend(fontsize=8)
        out.append(Figure(f"tile{t}", f"Tile {t}", "", _png(fig)))
    return out


def traffic(image, spike_counts: np.ndarray, input_events: np.ndarray, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Routing table entries and events per inference between tiles: ``[T + 1, T]``, row 0 the host.

    ``spike_counts``: each neuron's spikes over the run (``ChipSimulator.spike_counts``);
    ``input_events``: each input element's nonzero values over the run.
    """
    a, T, C = image.arrays, image.n_tiles, image.cols
    entries = np.zeros((T + 1, T))
    events = np.zeros((T + 1, T))
    src = image.route_sources("route")
    dst = a["route_tile"].astype(np.int64)
    spikes = np.zeros(T * C)  # by column address
    spikes[image.neuron_addresses()] = spike_counts
    np.add.at(entries, (1 + src // C, dst), 1)
    np.add.at(events, (1 + src // C, dst), spikes[src] / samples)
    isrc = image.route_sources("input")
    idst = a["input_tile"].astype(np.int64)
    np.add.at(entries, (np.zeros_like(idst), idst), 1)
    np.add.at(events, (np.zeros_like(idst), idst), input_events[isrc] / samples)
    return entries, events


def traffic_figure(entries: np.ndarray, events: np.ndarray, what: str) -> Figure:
    from matplotlib.colors import LogNorm

    plt = _plt()
    T = entries.shape[1]
    fig, axes = plt.subplots(1, 2, figsize=(12, max(3.4, 0.42 * T + 2)))
    labels = ["host"] + [f"tile {t}" for t in range(T)]
    for ax, m, title, unit in ((axes[0], entries, "Routing table entries", "entries"),
                               (axes[1], events, f"Events per inference ({what})", "events per inference")):
        shown = np.where(m > 0, m, np.nan)
        top = np.nanmax(shown) if np.any(m > 0) else 1.0
        bottom = max(float(np.nanmin(shown)) / 3, 1e-3) if np.any(m > 0) else 1e-3  # the smallest flow stays visible
        im = ax.imshow(shown, cmap="Blues", norm=LogNorm(vmin=bottom, vmax=max(top, bottom * 10)),
                       aspect="auto", interpolation="nearest")
        fig.colorbar(im, ax=ax, label=f"{unit} (log scale)")
        for (i, j), v in np.ndenumerate(m):
            if v > 0 and m.size <= 400:
                ax.text(j, i, f"{v:,.0f}" if v >= 10 else f"{v:.2g}", ha="center", va="center", fontsize=7,
                        color="white" if np.log(v / bottom) > 0.6 * np.log(max(top, bottom * 10) / bottom) else "black")
        ax.set_yticks(range(T + 1))
        ax.set_yticklabels(labels, fontsize=8)
        ax.set_xticks(range(T))
        ax.set_xticklabels([str(t) for t in range(T)], fontsize=8)
        ax.set_xlabel("destination tile")
        ax.set_ylabel("source")
        ax.set_title(title)
    diag = float(np.trace(events[1:])) if T else 0.0
    total = float(events[1:].sum())
    return Figure("traffic", "Inter-tile traffic", f"Where each source's events go: the host's input map (top row) "
                  f"and every tile's routes. Of the neuron events {total - diag:,.1f} per inference cross tiles and "
                  f"{diag:,.1f} stay on their own tile.", _png(fig))


@dataclass
class Run:
    """One simulator's spikes for the raster sample, per population, in network time ``[T, n]``."""

    label: str
    spikes: dict[str, np.ndarray]
    values: dict[str, np.ndarray]  # LI outputs [T, n]


def reference_run(net, x: np.ndarray) -> Run:
    from sim.reference import ReferenceSimulator

    spiking = [p.name for p in net.populations if p.neuron.spiking]
    r = ReferenceSimulator(net).run(x, record_spikes=spiking)
    values = {net.outputs[k]: v[:, 0] for k, v in r.outputs.items() if not net.population(net.outputs[k]).neuron.spiking}
    return Run("reference (float)", {k: v[:, 0] for k, v in r.spikes.items()}, values)


def chip_run(sim, net, x: np.ndarray, label: str) -> Run:
    r = sim.run(x, record_spikes=True)
    T = x.shape[0]
    lat = {p["name"]: int(p["latency"]) for p in sim.image.meta["populations"]}
    spikes = {p.name: r.spikes["chip"][lat[p.name]:lat[p.name] + T, 0][:, sim.neurons(p.name)]
              for p in net.populations if p.neuron.spiking}
    values = {o["population"]: r.outputs[o["name"]][:, 0] for o in sim.image.meta["outputs"] if o["kind"] == "value"}
    return Run(label, spikes, values)


def raster_figure(net, runs: list[Run], dt: float) -> Figure:
    plt = _plt()
    pops = [p for p in net.populations if p.neuron.spiking]
    li = [p for p in net.populations if not p.neuron.spiking and p.name in runs[0].values]
    rows = pops + li
    fig, axes = plt.subplots(len(rows), len(runs), figsize=(4.6 * len(runs), 1.2 + 1.9 * len(rows)),
                             squeeze=False, sharex=True, sharey="row")
    ref = runs[0]
    for j, run in enumerate(runs):
        for i, p in enumerate(rows):
            ax = axes[i, j]
            if p in pops:
                s = run.spikes[p.name]
                t, n = np.nonzero(s)
                ax.scatter(t, n, s=max(6.0, 160.0 / p.size), marker="|", c="#222", linewidths=1.2)
                diff = int(np.count_nonzero(s != ref.spikes[p.name])) if j else 0
                ax.set_ylim(-0.5, p.size - 0.5)
                note = f", {diff} differ from reference" if j else ""
                ax.set_title(f"{p.name}: {int(s.sum())} spikes{note}", fontsize=9)
                if j == 0:
                    ax.set_ylabel(f"{p.name}\nneuron")
            else:
                v = run.values[p.name]
                ax.plot(v, lw=0.8)
                ax.set_title(f"{p.name}: LI membrane", fontsize=9)
                if j == 0:
                    ax.set_ylabel(f"{p.name}\nvalue")
            if i == 0:
                ax.annotate(run.label, (0.5, 1.28), xycoords="axes fraction", ha="center", fontsize=11,
                            fontweight="bold")
            if i == len(rows) - 1:
                ax.set_xlabel(f"network step ({dt * 1e3:g} ms)")
    fig.tight_layout()
    return Figure("raster", "Spikes for one input", f"Test sample {RASTER_SAMPLE}: every spike of every spiking "
                  "population under each simulator; the titles count the (neuron, step) pairs that differ from "
                  "the reference.", _png(fig))


def accuracy_figure(acc: dict[str, float], samples: int) -> Figure:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.4))
    names = list(acc)
    vals = [acc[k] * 100 for k in names]
    bars = ax.barh(names[::-1], vals[::-1], color=["#7f8c8d", "#2e86c1", "#28b463", "#af7ac5", "#e67e22"][:len(names)][::-1])
    for b, v in zip(bars, vals[::-1]):
        ax.text(v + 0.5, b.get_y() + b.get_height() / 2, f"{v:.2f} %", va="center", fontsize=9)
    lo = max(0.0, min(vals) - 10)
    ax.set_xlim(lo, 100 + (100 - lo) * 0.12)
    ax.set_xlabel("test accuracy (%)")
    ax.set_title(f"Accuracy on the test set ({samples:,} samples)")
    return Figure("accuracy", "Accuracy", "The same test set under the float reference, the digital twin and "
                  "memristive tiles (ideal devices, and device-level noise and drift).", _png(fig))


def energy_figure(per_tile_pJ: np.ndarray, neuron_pJ: float) -> Figure:
    plt = _plt()
    T = per_tile_pJ.size
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * T + 3), 3.4))
    ax.bar([str(t) for t in range(T)], per_tile_pJ, color="#2e86c1", label="crossbar reads")
    ax.set_xlabel("tile")
    ax.set_ylabel("energy per inference (pJ)")
    ax.set_title(f"Crossbar read energy per tile (neurons: {neuron_pJ:,.1f} pJ in all)")
    ax.legend(fontsize=8)
    return Figure("energy", "Energy per tile", "Analog energy of one inference's row read pulses, by tile.", _png(fig))


def fpga_figure(fpga: dict) -> Figure:
    plt = _plt()
    res = fpga["resources"]
    names = list(res)
    pct = [res[k]["used"] / max(1, res[k]["available"]) * 100 for k in names]
    fig, ax = plt.subplots(figsize=(7, 0.42 * len(names) + 1.4))
    bars = ax.barh(names[::-1], pct[::-1], color=["#c0392b" if p > 90 else "#2e86c1" for p in pct[::-1]])
    for b, k in zip(bars, names[::-1]):
        ax.text(b.get_width() + 1, b.get_y() + b.get_height() / 2, f"{res[k]['used']} / {res[k]['available']}",
                va="center", fontsize=8)
    ax.set_xlim(0, 125)
    ax.set_xlabel("used (% of the device)")
    ax.set_title(f"FPGA resources: {fpga.get('device', '?')} on {fpga.get('board', '?')}")
    return Figure("fpga", "FPGA resources", "Utilisation after place and route (nextpnr).", _png(fig))


# -- gathering ---------------------------------------------------------------------------------
def _table(header: list[str], rows: list[list[str]]) -> str:
    h = "".join(f"<th>{html.escape(c)}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def _energy_params(b: Build) -> tuple[dict, str]:
    """The energy figures: the calibration's (report.json) when the build has them, else measured now."""
    calibrated = (b.report.energy if b.report is not None else None) or {}
    if calibrated.get("read_J_per_S") is not None:
        return calibrated, "the build's calibration"
    from analog_models.energy import measure

    return measure(), "ngspice now, default devices (no calibration: `small compile --calibration`)"


def _verification(b: Build) -> tuple[str, list[list[str]], str]:
    """Overall status word, table rows, note."""
    import hashlib

    results = sorted(b.path.glob("verify/*/*/result.json"))
    verilog = b.path / "hdl" / "small_chip.v"
    v_sha = hashlib.sha256(verilog.read_bytes()).hexdigest() if verilog.is_file() else None
    image_sha = b.image.meta.get("arrays_sha256")
    rows, status = [], []
    for f in results:
        try:
            s = json.loads(f.read_text())
        except ValueError:
            continue
        # a run of the chip's own Verilog must have checked the current one; the UART bridge's is regenerated
        current = s.get("image_sha256") == image_sha and (s.get("top") != "small_chip" or s.get("verilog_sha256") == v_sha)
        c = s.get("compared", {})
        ok = bool(s.get("passed"))
        status.append((ok, current))
        what = f"{c.get('spikes', 0):,} neuron spikes, {c.get('host_spikes', 0):,} host spikes, {c.get('values', 0):,} LI values"
        rows.append([html.escape(f.parent.parent.name), html.escape(f.parent.name),
                     '<span class="pass">PASS</span>' if ok else '<span class="fail">FAIL</span>',
                     f"{s.get('samples', '?')} x {s.get('network_steps', '?')}", what,
                     html.escape(str(s.get("reference", ""))), html.escape(s.get("finished", "") or
                                                                        time.strftime("%Y-%m-%d %H:%M", time.localtime(f.stat().st_mtime))),
                     "yes" if current else '<span class="warn">stale: older image or Verilog</span>',
                     html.escape(str(s.get("mismatch") or ""))])
    if not rows:
        return "not verified", rows, f"no `small verify {b.path}` run yet"
    if any(not ok and cur for ok, cur in status):
        return "FAIL", rows, ""
    if any(ok and cur for ok, cur in status):
        return "PASS", rows, ""
    return "stale", rows, "every recorded run is of an older image or Verilog: run `small verify` again"


def build_sections(b: Build) -> tuple[list[Section], dict]:
    """Simulate, measure and draw; the sections of the page and the headline figures."""
    from sim.analog import AnalogSimulator
    from sim.digital import DigitalSimulator
    from sim.evaluate import T_READ, analog_key, measure
    from small.flow import EXAMPLE_INPUTS

    image, net, test = b.image, b.net, b.test
    head: dict = {}
    sections = []

    # network
    sections.append(Section("Network", "<pre>" + html.escape(net.summary()) + "</pre>", [network_figure(net)]))

    # tiles
    r = b.report
    util = ""
    if r is not None:
        util = (f"<p>{r.tiles_used} tiles used (lower bound {r.tiles_lower_bound}), rows {r.row_utilisation * 100:.0f} % "
                f"and columns {r.col_utilisation * 100:.0f} % used; {r.fan_in_splits} neurons split across tiles; "
                f"partitioner {html.escape(str(r.partitioner))}.</p>")
    sections.append(Section("Tile map", util, [tile_map_figure(image, net)]))
    faults = r.faults if r is not None else None
    note = (f"<p>{image.levels} levels a device. " + (
        f"{faults.used_cells_with_stuck_device} used cells have a stuck device (weight RMSE "
        f"{faults.stuck_error_rmse_naive:.4g} placed naively, {faults.stuck_error_rmse_placed:.4g} fault-aware).</p>"
        if faults else "No fault map: no stuck devices.</p>"))
    if image.target == "digital":
        note += "<p>The digital tiles hold each weight as two unsigned levels, shown here as G+ and G- levels.</p>"
    sections.append(Section("Conductances", note, tile_figures(image)))

    # simulations: the test set (else the example inputs) for accuracy, traffic, energy; one input for the rasters
    if test is None:
        x = np.load(b.path / EXAMPLE_INPUTS) if (b.path / EXAMPLE_INPUTS).is_file() else None
    else:
        x = test.x
    device = ((b.memristive.meta.get("device") if b.memristive else None) or {}).get("model", "pcm")
    mem_label = f"memristive ({device.upper() if device in ('pcm', 'tiox') else device}, read after 1 h)"
    other = "digital" if b.digital is None else "memristive"
    missing = (f"<p class='warn'>No {other} counterpart: the network does not compile for the {other} target "
               f"with this build's options ({html.escape(b.other_error)}).</p>" if b.other_error else "")
    # Each image measured once, its accuracies from report.json where the build has them: the
    # build's own for the traffic, the memristive one (this build's or the counterpart) for the energy.
    measured = {}
    energy_source = ""
    if x is not None:
        energy, energy_source = _energy_params(b) if b.memristive else (None, "")
        known = (r.accuracy if r is not None else None) or {}
        for im in (b.digital, b.memristive):
            if im is not None:
                measured[im.target] = measure(im, net, test, inputs=x, reference=im is image, analog=True,
                                              energy=energy, known=known)
        own = measured[image.target]
        runs = [reference_run(net, x[:, RASTER_SAMPLE:RASTER_SAMPLE + 1])]
        for im, make, label in ((b.digital, DigitalSimulator, "digital twin"),
                                (b.memristive, lambda m: AnalogSimulator(m, t_read=T_READ, seed=0), mem_label)):
            if im is not None:
                runs.append(chip_run(make(im), net, x[:, RASTER_SAMPLE:RASTER_SAMPLE + 1], label))
        entries, events = traffic(image, own.spike_counts, own.input_events, own.counted_samples)
        sections.append(Section("Routing and traffic", f"<p>{int(image.arrays['route_ptr'][-1]):,} routing entries, "
                                f"{int(image.arrays['input_ptr'][-1]):,} input-map entries, {image.delay_slots} delay "
                                f"slot(s); events measured on {own.counted_samples} test inputs.</p>",
                                [traffic_figure(entries, events, f"{own.counted_samples} test inputs")]))
        sections.append(Section("Spike rasters", missing, [raster_figure(net, runs, net.dt)]))
    else:
        entries, events = traffic(image, np.zeros(image.neuron_addresses().size),
                                  np.zeros(int(image.arrays["input_ptr"].size - 1)), 1)
        sections.append(Section("Routing and traffic", "<p>No test inputs in the build: table entries only.</p>",
                                [traffic_figure(entries, events, "no inputs")]))
        sections.append(Section("Spike rasters", "<p>No test inputs in the build (compile with a test set).</p>"))

    # accuracy
    if test is not None:
        shown = {"reference (float)": measured[image.target].accuracy["reference"]}
        if "digital" in measured:
            shown["digital twin"] = measured["digital"].accuracy["digital"]
        if "memristive" in measured:
            shown["memristive, ideal devices"] = measured["memristive"].accuracy["memristive_ideal"]
            shown[mem_label] = measured["memristive"].accuracy[analog_key(b.memristive)]
        head["accuracy"] = shown
        rows = [[html.escape(k), f"{v * 100:.2f} %"] for k, v in shown.items()]
        sections.append(Section("Accuracy", _table(["simulation", "accuracy"], rows) + missing,
                                [accuracy_figure(shown, int(test.labels.size))]))
    else:
        sections.append(Section("Accuracy", "<p>No labelled test set in the build.</p>"))

    # FPGA
    fpga_file = b.path / "hdl" / "small_chip_fpga.json"
    hdl_summary = b.path / "hdl" / "summary.json"
    if image.target != "digital":
        sections.append(Section("FPGA", "<p>A memristive build has analog tiles: no FPGA design (compile with "
                                "<code>--target digital</code> for an all-digital chip).</p>"))
    elif fpga_file.is_file():
        fpga = json.loads(fpga_file.read_text())
        rows = [[html.escape(k), f"{v['used']:,}", f"{v['available']:,}", f"{v['used'] / max(1, v['available']) * 100:.0f} %"]
                for k, v in fpga["resources"].items()]
        clocks = ", ".join(f"{k}: {v:.1f} MHz" for k, v in fpga.get("fmax_mhz", {}).items())
        meets = fpga.get("meets_required")
        head["fmax"] = clocks
        body = (_table(["resource", "used", "available", "share"], rows)
                + f"<p>fmax {html.escape(clocks)} (required {fpga.get('required_mhz', 0):.0f} MHz: "
                + ("<span class='pass'>met</span>" if meets else "<span class='fail'>missed</span>") + ")</p>")
        sections.append(Section("FPGA", body, [fpga_figure(fpga)]))
    else:
        sections.append(Section("FPGA", f"<p>No bitstream yet: <code>small export {html.escape(str(b.path))} "
                                "--bitstream icebreaker</code>.</p>"))
    if hdl_summary.is_file():
        hs = json.loads(hdl_summary.read_text())
        stale = hs.get("image_sha256") not in (None, image.meta.get("arrays_sha256"))
        sections[-1].body += (f"<p>RTL: {len(hs.get('memories', []))} memories, {hs.get('memory_bits', 0) / 8192:.1f} KiB"
                              + (f", {hs['cycles_per_step_idle']} cycles a step with no activity" if "cycles_per_step_idle" in hs else "")
                              + (" <span class='warn'>(generated from another image: run small hdl)</span>" if stale else "")
                              + ".</p>")

    # energy
    e = measured["memristive"].energy if "memristive" in measured else None
    if e is not None:
        head["energy_pJ"] = e["pJ_per_inference"]
        which = "this build's tiles" if image.target == "memristive" else (
            f"the same network compiled for memristive tiles ({b.memristive.n_tiles} tiles of {image.rows}x{image.cols}, "
            f"{image.levels} levels); the digital chip's own power is not modelled")
        rows = [["per inference", f"{e['pJ_per_inference']:,.1f} pJ"], ["crossbar reads", f"{e['read_pJ']:,.1f} pJ"],
                ["neurons", f"{e['neuron_pJ']:,.1f} pJ"], ["row events per inference", f"{e['row_events_per_inference']:,.0f}"],
                ["spikes per inference", f"{e['spikes_per_inference']:,.0f}"],
                ["per synaptic event", f"{e['pJ_per_synaptic_event']:.3g} pJ"], ["per spike", f"{e['pJ_per_spike']:.3g} pJ"]]
        body = (f"<p>Analog energy of {html.escape(which)}, on {measured['memristive'].counted_samples} test inputs; "
                f"energy figures from {html.escape(energy_source)}.</p>" + _table(["figure", "value"], rows)
                + "<p>Assumptions:</p><ul>" + "".join(f"<li>{html.escape(a)}</li>" for a in e["assumptions"]) + "</ul>")
        sections.append(Section("Energy estimate", body, [energy_figure(np.array(e["read_pJ_per_tile"]), e["neuron_pJ"])]))
    else:
        sections.append(Section("Energy estimate", missing or "<p>No test inputs in the build to count events on.</p>"))

    tuned = finetune_section(b)
    if tuned is not None:
        sections.append(tuned)

    # verification
    status, rows, note = _verification(b)
    head["verification"] = status
    body = (_table(["simulator", "run", "result", "inputs x steps", "compared", "reference", "finished", "current",
                    "first mismatch"], rows) if rows else "") + (f"<p>{html.escape(note)}</p>" if note else "")
    sections.append(Section("Verification", body))
    return sections, head


def find_finetune(b: Build) -> tuple[Path, dict] | None:
    """The ``finetune.json`` of the run that wrote this build's network (``small finetune``): in the
    build folder, beside it, or in a folder beside it, matched by the network file's SHA-256."""
    sha = b.image.meta.get("network", {}).get("sha256")
    if not sha:
        return None
    parent = b.path.resolve().parent
    for path in [b.path / "finetune.json", parent / "finetune.json", *sorted(parent.glob("*/finetune.json"))]:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and sha in (doc.get("tuned_sha256") or {}).values():
            return path, doc
    return None


def finetune_section(b: Build) -> Section | None:
    """Before/after of a fine-tuned network beside its original (``finetune.json``), or None."""
    found = find_finetune(b)
    if found is None:
        return None
    path, d = found

    def pct(v):
        return "—" if v is None else f"{float(v) * 100:.2f} %"

    rows = [["accuracy on the chip", pct(d.get("accuracy_before")), pct(d.get("accuracy_after"))],
            ["float accuracy", pct(d.get("reference_before")), pct(d.get("reference_after"))],
            ["tiles", str(d.get("tiles_before", "—")), str(d.get("tiles_after", "—"))],
            ["fan-in splits", str(d.get("fan_in_splits_before", "—")), str(d.get("fan_in_splits_after", "—"))],
            ["synapses", str(d.get("synapses_before", "—")), str(d.get("synapses_after", "—"))]]
    o = d.get("options", {})
    used = ", ".join(f"{k}={v}" for k, v in o.items() if k not in ("model", "data", "test") and v not in (None, False))
    body = (f"<p>This network was fine-tuned by <code>small finetune</code> from "
            f"<code>{html.escape(str(o.get('model', '?')))}</code> for {html.escape(str(d.get('chip', '')))} "
            f"(<code>{html.escape(str(path))}</code>); both accuracies on the same chip and "
            f"{d.get('test_samples', '?')} test samples, as the run measured them.</p>"
            + _table(["", "original", "fine-tuned"], [[html.escape(c) for c in r] for r in rows])
            + (f"<p>{d['pruned_synapses']} synapses pruned as faulty.</p>" if d.get("pruned_synapses") else "")
            + f"<p>Options: {html.escape(used)}.</p>")
    return Section("Fine-tuning: before and after", body)


# -- the page ----------------------------------------------------------------------------------
CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1c2833;background:#f4f6f7}
header{background:#1b2631;color:#fff;padding:18px 32px}header h1{margin:0 0 6px;font-size:22px}
header p{margin:2px 0;color:#d5d8dc;font-size:14px}
nav{padding:8px 32px;background:#d6eaf8;font-size:14px}nav a{margin-right:14px;color:#1b4f72}
main{padding:8px 32px 40px}section{background:#fff;margin:18px 0;padding:14px 22px;border-radius:6px;
box-shadow:0 1px 3px rgba(0,0,0,.12)}h2{font-size:18px;margin:6px 0 10px}
figure{margin:12px 0}figure img{max-width:100%;height:auto;border:1px solid #e5e8e8}
figcaption{font-size:13px;color:#566573;margin-top:4px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}th,td{border:1px solid #d5d8dc;padding:4px 9px;text-align:left}
th{background:#eaf2f8}.pass{color:#1e8449;font-weight:bold}.fail{color:#c0392b;font-weight:bold}
.warn{color:#b9770e}.cards{display:flex;flex-wrap:wrap;gap:12px;margin:14px 0}
.card{background:#fff;border-radius:6px;padding:10px 16px;box-shadow:0 1px 3px rgba(0,0,0,.12);min-width:150px}
.card b{display:block;font-size:18px}.card .label{font-size:12px;color:#566573}pre{font-size:12px;background:#f8f9f9;padding:8px}
"""


def _slug(title: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in title.lower())


def render(b: Build, sections: list[Section], head: dict, seconds: float) -> str:
    image, meta = b.image, b.image.meta
    title = f"SMALL report: {meta['network']['name']} ({image.target}, {image.n_tiles} tiles of {image.rows}x{image.cols})"
    cards = [("target", image.target), ("tiles", f"{image.n_tiles} of {image.rows}x{image.cols}"),
             ("levels", str(image.levels))]
    for k, v in (head.get("accuracy") or {}).items():
        if k in ("reference (float)", "digital twin"):
            cards.append((f"accuracy, {k}", f"{v * 100:.2f} %"))
    if "fmax" in head:
        cards.append(("fmax", head["fmax"]))
    if "energy_pJ" in head:
        cards.append(("energy per inference", f"{head['energy_pJ']:,.1f} pJ"))
    v = head.get("verification", "not verified")
    cls = {"PASS": "pass", "FAIL": "fail"}.get(v, "warn")
    cards.append(("RTL verification", f"<span class='{cls}'>{html.escape(v)}</span>"))
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<header><h1>{html.escape(title)}</h1>",
        f"<p>source {html.escape(meta['network'].get('source', ''))} (sha256 {html.escape(meta['network'].get('sha256', '')[:12])}), "
        f"image {html.escape(str(meta.get('arrays_sha256', ''))[:12])}, {html.escape(meta.get('toolchain', ''))}</p>",
        f"<p>build {html.escape(str(b.path))}, report made {time.strftime('%Y-%m-%d %H:%M')} in {seconds:.1f} s</p></header>",
        "<nav>" + "".join(f"<a href='#{_slug(s.title)}'>{html.escape(s.title)}</a>" for s in sections) + "</nav><main>",
        "<div class='cards'>" + "".join(f"<div class='card'><b>{val if '<span' in val else html.escape(val)}</b>"
                                        f"<span class='label'>{html.escape(k)}</span></div>" for k, val in cards) + "</div>",
    ]
    for s in sections:
        parts.append(f"<section id='{_slug(s.title)}'><h2>{html.escape(s.title)}</h2>{s.body}")
        for f in s.figures:
            data = base64.b64encode(f.png).decode("ascii")
            parts.append(f"<figure><img alt='{html.escape(f.title)}' src='data:image/png;base64,{data}'>"
                         + (f"<figcaption>{html.escape(f.caption)} (<code>{FIGURES_DIR}/{f.name}.png</code>)</figcaption>"
                            if f.caption else f"<figcaption><code>{FIGURES_DIR}/{f.name}.png</code></figcaption>")
                         + "</figure>")
        parts.append("</section>")
    parts.append("</main></body></html>\n")
    return "".join(parts)


@dataclass
class WrittenReport:
    """What :func:`write_report` wrote, and the page's headline figures."""

    build: Path
    page: Path
    figures_dir: Path
    figures: int
    megabytes: float
    seconds: float
    accuracy: dict[str, float]
    """Test-set accuracy per simulation, labelled as on the page (empty: no test set)."""
    energy_pJ: float | None
    fmax: str | None
    verification: str

    def summary(self) -> str:
        lines = [f"report of {self.build}: {self.figures} figures in {self.seconds:.1f} s"]
        lines += [f"  accuracy   {k}: {v * 100:.2f} %" for k, v in self.accuracy.items()]
        if self.energy_pJ is not None:
            lines.append(f"  energy     {self.energy_pJ:,.1f} pJ per inference (analog estimate)")
        if self.fmax is not None:
            lines.append(f"  fmax       {self.fmax}")
        lines.append(f"  verified   {self.verification}")
        lines.append(f"wrote {self.page} ({self.megabytes:.1f} MB, self-contained) and {self.figures_dir}/*.png")
        return "\n".join(lines)


def write_report(build: str | Path) -> WrittenReport:
    """Write ``BUILD/report.html`` and ``BUILD/report/*.png``."""
    from small.fileio import atomic_directory, atomic_output

    t0 = time.perf_counter()
    b = load_build(build)
    sections, head = build_sections(b)
    figures = [f for s in sections for f in s.figures]
    page = render(b, sections, head, time.perf_counter() - t0)
    out = b.path / FIGURES_DIR
    with atomic_directory(out, marker="network.png") as tmp:
        for f in figures:
            (tmp / f"{f.name}.png").write_bytes(f.png)
    with atomic_output(b.path / REPORT_FILE) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return WrittenReport(b.path, b.path / REPORT_FILE, out, len(figures), len(page) / 1e6, time.perf_counter() - t0,
                         dict(head.get("accuracy") or {}), head.get("energy_pJ"), head.get("fmax"),
                         str(head.get("verification")))


def screenshot(page: str | Path, png: str | Path, width: int = 1400, height: int = 2000) -> str:
    """A PNG of the top ``width x height`` pixels of ``page`` as headless Chromium renders it."""
    from small.fileio import atomic_output

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SmallError("Chromium is not installed, so no screenshot: `make install` (or `apt install chromium`)")
    png = Path(png)
    if png.suffix.lower() != ".png":
        raise SmallError(f"--screenshot {str(png)!r}: give a .png file name")
    with atomic_output(png) as tmp:
        r = subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                            f"--window-size={width},{height}", f"--screenshot={tmp}", Path(page).resolve().as_uri()],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
            raise SmallError(f"Chromium could not render {page}: {(r.stderr.strip().splitlines() or ['no output'])[-1]}")
    return f"wrote {png} ({width}x{height} pixels, headless Chromium)"
