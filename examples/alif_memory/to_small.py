"""Convert the trained ALIF network (trained.npz, written by train.py) into SMALL's network file.

NIR has no adaptive neuron, so this example ships in SMALL's own format: ``network.small``.
It also marks ``test_set.npz`` with how SMALL scores it (mean LI readout over the recall
window). Runs with SMALL's environment (no torch)::

    .venv/bin/python examples/alif_memory/to_small.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from small.fileio import read_npz, write_npz
from compiler.ir import ALIF, LI, LIF, Input, Network, Population, Projection
from compiler.netfile import save_network

HERE = Path(__file__).resolve().parent
SOURCES = ("input", "lif", "alif")
TARGETS = ("lif", "alif", "out")


def build_network(params: dict[str, np.ndarray]) -> Network:
    """The IR network for the arrays of trained.npz (naming documented in train.py)."""

    def p(pop: str, name: str) -> np.ndarray:
        return params[f"{pop}__{name}"].astype(np.float64)

    spiking = dict(reset="subtract")
    lif = LIF(alpha=p("lif", "alpha"), gain=p("lif", "gain"), v_leak=p("lif", "v_leak"),
              v_threshold=p("lif", "v_threshold"), refractory=int(params["lif__refractory"]), **spiking)
    alif = ALIF(alpha=p("alif", "alpha"), gain=p("alif", "gain"), v_leak=p("alif", "v_leak"),
                v_threshold=p("alif", "v_threshold"), refractory=int(params["alif__refractory"]),
                alpha_adapt=p("alif", "alpha_adapt"), adapt=p("alif", "adapt"), **spiking)
    out = LI(alpha=p("out", "alpha"), gain=p("out", "gain"), v_leak=p("out", "v_leak"))
    pops = [
        Population("lif", lif.alpha.size, lif, bias=p("lif", "bias")),
        Population("alif", alif.alpha.size, alif, bias=p("alif", "bias")),
        Population("out", out.alpha.size, out, bias=p("out", "bias")),
    ]
    projections = [
        Projection(src, tgt, params[f"W__{src}__{tgt}"].astype(np.float64), delay=int(params[f"D__{src}__{tgt}"]))
        for src in SOURCES
        for tgt in TARGETS
        if f"W__{src}__{tgt}" in params
    ]
    n_in = params["W__input__lif"].shape[1]
    return Network(
        name="alif_memory",
        dt=float(params["dt"]),
        inputs=[Input("input", (n_in,))],
        populations=pops,
        projections=projections,
        outputs={"decision": "out"},
        metadata={"source": "examples/alif_memory/trained.npz", "task": "evidence accumulation"},
    ).validate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=HERE, help="folder with trained.npz and test_set.npz")
    args = parser.parse_args()
    net = build_network(read_npz(args.dir / "trained.npz"))
    save_network(net, args.dir / "network.small")
    test = read_npz(args.dir / "test_set.npz")
    test["readout"] = np.array("mean_value")
    test["window"] = np.array([int(test["recall_start"]), int(test["recall_end"])])
    write_npz(args.dir / "test_set.npz", test)
    print(net.summary())
    print(f"wrote {args.dir / 'network.small'}; marked test_set.npz: readout mean_value over {test['window'].tolist()}")


if __name__ == "__main__":
    main()
