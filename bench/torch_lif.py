"""snnTorch and Norse side of ``bench/reference_sim.py``: the same workloads, timed on request.

Runs in a separate virtual environment (torch is never installed into the project's ``.venv``;
pins in ``bench/requirements-torch.txt``)::

    python3.11 -m venv /tmp/torch-venv
    /tmp/torch-venv/bin/pip install -r bench/requirements-torch.txt
    /tmp/torch-venv/bin/python bench/torch_lif.py WORK.npz

``WORK.npz`` (written by ``bench/reference_sim.py``) holds the workloads. The script answers one
JSON request per line on standard input (``{"framework": "snntorch", "case": "digits"}``) with
one JSON line: the wall time of one simulation and the spike counts per output neuron, summed
over steps and batch. The parent sends the requests interleaved with its own timed runs, so
both sides see the same machine load.

Workloads (torch 2.13 CPU, ``torch.no_grad()``, ``--threads`` intra-op threads, float32)
-----------------------------------------------------------------------------------------
``digits``: the digits classifier from ``examples/digits/digits.nir`` (Affine 64->96, LIF,
Affine 96->10, LIF; snnTorch's export: ``beta = 1 - dt / tau``), all test samples in one batch.
snnTorch: ``nn.Sequential(Linear, Leaky, Linear, Leaky)`` with per-neuron beta and threshold,
subtract reset, ``init_hidden=True``, as ``examples/digits/train.py`` trains it. Norse:
``LIFBoxCell`` layers with ``tau_mem_inv = (1 - beta) / dt`` and the same thresholds; Norse resets
to zero, so its spikes are not the classifier's: a timing of the same sizes and operations.

``lif1000``/``lif1000_b64``: network (i) of ``bench/reference_sim.py`` (1,000 LIF neurons, 10 %
recurrent connectivity as a dense 1,000 x 1,000 ``Linear``, 100 inputs, delay 1 on both
projections, zero reset) at batch 1 and 64. snnTorch: ``Leaky(beta=a, reset_mechanism="zero")``;
Norse: ``LIFBoxCell`` with ``dt * tau_mem_inv = 1 - a`` and the input scaled by ``1 / (1 - a)``.
Both compute SMALL's recursion up to float32 rounding; the network is chaotic, so spike
trains diverge after a while and only the rates compare.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def build(work: dict, framework: str, case: str, torch):
    """A function running one whole simulation of ``case``; it returns the output spikes [T, B, n]."""
    nn = torch.nn
    if case == "digits":
        x = torch.from_numpy(work["digits_x"])
        layers = [(work["digits_w1"], work["digits_b1"], work["digits_beta1"], work["digits_thr1"]),
                  (work["digits_w2"], work["digits_b2"], work["digits_beta2"], work["digits_thr2"])]
        linears = []
        for w, b, _, _ in layers:
            lin = nn.Linear(w.shape[1], w.shape[0])
            lin.weight.data = torch.from_numpy(w)
            lin.bias.data = torch.from_numpy(b)
            linears.append(lin)
        if framework == "snntorch":
            import snntorch as snn

            net = nn.Sequential(linears[0], snn.Leaky(beta=torch.from_numpy(layers[0][2]),
                                                      threshold=torch.from_numpy(layers[0][3]), init_hidden=True),
                                linears[1], snn.Leaky(beta=torch.from_numpy(layers[1][2]),
                                                      threshold=torch.from_numpy(layers[1][3]), init_hidden=True))

            def run():
                for m in net:
                    if isinstance(m, snn.Leaky):
                        m.reset_mem()
                return torch.stack([net(x[t]) for t in range(x.shape[0])])
            return run
        from norse.torch import LIFBoxCell, LIFBoxParameters

        dt = float(work["digits_dt"])
        cells = [LIFBoxCell(LIFBoxParameters(tau_mem_inv=torch.from_numpy((1 - beta) / dt), v_th=torch.from_numpy(thr),
                                             v_leak=torch.tensor(0.0), v_reset=torch.tensor(0.0)), dt=dt)
                 for _, _, beta, thr in layers]

        def run():
            s1 = s2 = None
            out = []
            for t in range(x.shape[0]):
                z, s1 = cells[0](linears[0](x[t]) / (1 - torch.from_numpy(layers[0][2])), s1)
                z, s2 = cells[1](linears[1](z) / (1 - torch.from_numpy(layers[1][2])), s2)
                out.append(z)
            return torch.stack(out)
        return run

    batch = 64 if case.endswith("_b64") else 1
    x = torch.from_numpy(np.ascontiguousarray(work["lif_x"][:, :batch]).astype(np.float32))
    a = float(work["lif_alpha"])
    w_in, w_rec, bias = (torch.from_numpy(work[k].astype(np.float32)) for k in ("lif_w_in", "lif_w_rec", "lif_bias"))
    fc_in, fc_rec = nn.Linear(w_in.shape[1], w_in.shape[0], bias=False), nn.Linear(w_rec.shape[1], w_rec.shape[0])
    fc_in.weight.data, fc_rec.weight.data, fc_rec.bias.data = w_in, w_rec, bias
    n = w_rec.shape[0]
    steps = x.shape[0]
    if framework == "snntorch":
        import snntorch as snn

        lif = snn.Leaky(beta=a, threshold=1.0, reset_mechanism="zero")

        def run():
            mem = torch.zeros(batch, n)
            spk = torch.zeros(batch, n)
            prev_x = torch.zeros(batch, x.shape[2])
            out = torch.empty(steps, batch, n)
            for t in range(steps):  # delay 1: step t reads the input and spikes of step t - 1
                spk, mem = lif(fc_in(prev_x) + fc_rec(spk), mem)
                out[t] = spk
                prev_x = x[t]
            return out
        return run
    from norse.torch import LIFBoxCell, LIFBoxParameters

    cell = LIFBoxCell(LIFBoxParameters(tau_mem_inv=torch.tensor((1 - a) / 1e-3), v_th=torch.tensor(1.0),
                                       v_leak=torch.tensor(0.0), v_reset=torch.tensor(0.0)), dt=1e-3)
    scale = 1.0 / (1.0 - a)

    def run():
        state = None
        spk = torch.zeros(batch, n)
        prev_x = torch.zeros(batch, x.shape[2])
        out = torch.empty(steps, batch, n)
        for t in range(steps):
            spk, state = cell((fc_in(prev_x) + fc_rec(spk)) * scale, state)
            out[t] = spk
            prev_x = x[t]
        return out
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("work", help="workloads npz written by bench/reference_sim.py")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    work = dict(np.load(args.work))
    versions = {"torch": torch.__version__}
    for name in ("snntorch", "norse"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    print(json.dumps({"versions": versions, "threads": torch.get_num_threads()}), flush=True)
    runs = {}
    for line in sys.stdin:
        req = json.loads(line)
        key = (req["framework"], req["case"])
        with torch.no_grad():
            if key not in runs:
                runs[key] = build(work, *key, torch)
            start = time.perf_counter()
            out = runs[key]()
            wall = time.perf_counter() - start
        counts = out.sum(dim=(0, 1)).to(torch.int64).tolist()
        print(json.dumps({"wall": wall, "counts": counts}), flush=True)


if __name__ == "__main__":
    main()
