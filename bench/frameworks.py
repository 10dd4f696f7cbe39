"""Every framework's NIR fixture and the NIR paper's graphs: import, reference simulation, compile.

Run from the repository root with the project's environment::

    .venv/bin/python bench/frameworks.py                              # SMALL's side only
    .venv/bin/python bench/frameworks.py --framework-times /tmp/fw/times_*.json

For each fixture in ``tests/fixtures`` made by a framework (``make_fixtures.py``,
``make_framework_fixtures.py``) and each of the NIR paper's graphs (``paper_*.nir``) it measures

* ``import ms``: ``import_nir`` with the fixture's ``--framework`` (best of ``--repeat``);
* ``exact``: the reference simulation's spikes against the framework's own, every recorded
  layer, step and sample (fixtures only; the paper's graphs have no framework output here);
* ``ref samples/s``: the reference simulator (float32) on the fixture's input, ``T`` = 100 steps
  at batch 4 (the paper's graphs: random spikes, p = 0.05 for the CNN, 0.3 for braille), best of
  ``--repeat``; ``fw samples/s``: the framework's own simulation of the same network, input and
  batch, from ``make_framework_fixtures.py --timing`` run in the framework's venv (Spyx jitted);
* ``compile s``, tiles, ``bound`` (``compiler.partition.tiles_lower_bound``), the partitioner
  that won, rows used and inter-tile events per step (the digital twin on the same input):
  digital target, 64x64 tiles (``--tile``), 16 levels.

The framework timings come from separate environments (their pins conflict)::

    /tmp/fw/sinabs/bin/python tests/fixtures/make_framework_fixtures.py sinabs \\
        --out-dir /tmp/fx --timing /tmp/fw/times_sinabs.json
    (likewise rockpool, spyx, snntorch)
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FIXTURES = ROOT / "tests" / "fixtures"
PAPER = {  # name: (import options, input spike probability)
    "paper_cnn_sinabs": ({"framework": "sinabs"}, 0.05),
    "paper_braille_noDelay_bias_zero": ({"framework": "snntorch", "reset": "zero"}, 0.3),
    "paper_braille_noDelay_bias_zero_subgraph": ({"framework": "snntorch", "reset": "zero"}, 0.3),
    "paper_braille_noDelay_noBias_subtract": ({"framework": "snntorch"}, 0.3),
    "paper_braille_noDelay_noBias_subtract_subgraph": ({"framework": "snntorch"}, 0.3),
}


def best_of(repeat: int, fn):
    """(result of the first run, best seconds over ``repeat`` runs)."""
    result, best = None, float("inf")
    for i in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
        if i == 0:
            result = out
    return result, best


def measure(name: str, kwargs: dict, x: np.ndarray, data, args) -> dict:
    from compiler.mapper import CompileOptions, compile_network, inter_tile_events_per_step
    from compiler import mapper, partition
    from compiler.nir_frontend import import_nir
    from sim.digital import DigitalSimulator
    from sim.reference import ReferenceSimulator

    path = FIXTURES / f"{name}.nir"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net, t_import = best_of(args.repeat, lambda: import_nir(path, **kwargs))
    out = {"name": name, "framework": kwargs.get("framework"), "neurons": net.n_neurons, "synapses": net.n_synapses,
           "import_ms": 1e3 * t_import}
    x = x.reshape(*x.shape[:2], -1).astype(np.float32)
    layers = [k[5:] for k in data] if data is not None else []
    layers = [k for k in layers if k in {p.name for p in net.populations}]
    sim = ReferenceSimulator(net)
    result, t_sim = best_of(args.repeat, lambda: sim.run(x, record_spikes=layers))
    out["ref_samples_s"] = x.shape[1] / t_sim
    if data is not None:
        shift = 1 if out["framework"] == "spyx" else 0
        wrong = 0
        for layer in layers:
            want = data[f"spk__{layer}"]
            got = result.spikes[layer].reshape(want.shape)
            wrong += int(np.sum(got[: len(got) - shift] != want[shift:]))
        out["mismatches"] = wrong
    seen = {}
    original = mapper.group_neurons

    def spy(syn, rows, cols, **kw):
        seen["bound"] = partition.tiles_lower_bound(syn, rows, cols)
        return original(syn, rows, cols, **kw)

    mapper.group_neurons = spy
    try:
        start = time.perf_counter()
        compiled = compile_network(net, CompileOptions(rows=args.tile, cols=args.tile))
        out["compile_s"] = time.perf_counter() - start
    finally:
        mapper.group_neurons = original
    report, image = compiled.report, compiled.image
    out.update(tiles=report.tiles_used, bound=seen["bound"], partitioner=report.partitioner,
               rows_used=int(sum(report.rows_used_per_tile)), row_utilisation=report.row_utilisation)
    twin = DigitalSimulator(image)
    twin.run(x)
    out["inter_tile_events_per_step"] = inter_tile_events_per_step(image, twin.spike_counts, x.shape[0], x.shape[1])
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework-times", nargs="*", default=[], metavar="TIMES.json",
                        help="make_framework_fixtures.py --timing outputs")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tile", type=int, default=64, help="square tile size (default 64)")
    parser.add_argument("--json", metavar="OUT.json", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    fw_times = {}
    for pattern in args.framework_times:
        for f in glob.glob(pattern):
            doc = json.load(open(f))
            for name, seconds in doc["seconds"].items():
                fw_times[name] = (doc["framework"], doc["version"], doc["batch"] / seconds)

    rows = []
    for npz in sorted(FIXTURES.glob("*.npz")):
        data = np.load(npz)
        if "framework" not in data:
            continue
        framework = str(data["framework"])
        rows.append(measure(npz.stem, {"framework": framework}, data["x"], data, args))
    rng = np.random.default_rng(0)
    for name, (kwargs, p) in PAPER.items():
        from compiler.nir_frontend import import_nir

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            shape = import_nir(FIXTURES / f"{name}.nir", **kwargs).inputs[0].shape
        x = (rng.random((100, 4, int(np.prod(shape)))) < p).astype(np.float32)
        rows.append(measure(name, kwargs, x, None, args))
    header = (f"| fixture | framework | neurons | import ms | exact | ref samples/s | fw samples/s | compile s | "
              f"tiles ({args.tile}x{args.tile}) | bound | partitioner | rows used | inter-tile events/step |")
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for r in rows:
        fw = fw_times.get(r["name"])
        r["fw_samples_s"] = fw[2] if fw else None
        exact = "—" if "mismatches" not in r else ("yes" if r["mismatches"] == 0 else f"{r['mismatches']} wrong")
        print(f"| {r['name']} | {r['framework']} | {r['neurons']:,} | {r['import_ms']:.1f} | {exact} | "
              f"{r['ref_samples_s']:,.0f} | {'—' if fw is None else f'{fw[2]:,.0f}'} | {r['compile_s']:.2f} | "
              f"{r['tiles']:,} | {r['bound']:,} | {r['partitioner']} | {r['rows_used']:,} | "
              f"{r['inter_tile_events_per_step']:,.1f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
