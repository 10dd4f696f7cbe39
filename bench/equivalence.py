"""Accuracy of the bundled examples under the reference, the digital twin and the ideal
memristive image, at 4, 8 and 16 levels (64x64 tiles), with one weight scale per tile group
(the default) and per neuron column, plus compile time.

Run: .venv/bin/python bench/equivalence.py   (about a minute on 2 cores)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compiler.mapper import CompileOptions, compile_network  # noqa: E402
from sim.digital import DigitalSimulator  # noqa: E402
from sim.evaluate import accuracy, load_test_set  # noqa: E402
from sim.memristive import IdealMemristiveSimulator  # noqa: E402
from small.flow import load_model  # noqa: E402

EXAMPLES = [("digits", ROOT / "examples/digits/digits.nir"), ("alif_memory", ROOT / "examples/alif_memory/network.small")]
LEVELS = (4, 8, 16)


def main() -> None:
    print(f"{'example':<12} {'scale':>6} {'levels':>6} {'reference':>10} {'digital':>8} {'memristive':>10} {'tiles':>5} "
          f"{'q-rmse %':>8} {'compile s':>9}")
    for name, path in EXAMPLES:
        test = load_test_set(path.with_name("test_set.npz"))
        nir = path.suffix == ".nir"
        net = load_model(path, test.dt if nir else None, test.framework if nir else None)
        ref = accuracy(net, test)
        for scale, levels in [(s, lv) for s in ("tile", "column") for lv in LEVELS]:
            row = {}
            for target, sim in (("digital", DigitalSimulator), ("memristive", IdealMemristiveSimulator)):
                t0 = time.perf_counter()
                result = compile_network(net, CompileOptions(target=target, levels=levels, scale=scale))
                row["seconds"] = time.perf_counter() - t0
                row[target] = accuracy(sim(result.image), test)
                row["report"] = result.report
            rep = row["report"]
            print(f"{name:<12} {scale:>6} {levels:>6} {ref * 100:>9.2f}% {row['digital'] * 100:>7.2f}% {row['memristive'] * 100:>9.2f}% "
                  f"{rep.tiles_used:>5} {rep.quantisation_rmse_relative * 100:>8.1f} {row['seconds']:>9.2f}")


if __name__ == "__main__":
    main()
