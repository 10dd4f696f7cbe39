"""Train a small feedforward spiking classifier on scikit-learn's handwritten digits with
snnTorch, export it to NIR, and store the encoded test set with snnTorch's own outputs.

Data
    ``sklearn.datasets.load_digits()``: 1797 images of 8x8 pixels, integer pixel values
    0..16, labels 0..9.  Split with
    ``train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)`` (540 test images).

Spike encoding (deterministic)
    T = 25 time steps, Bernoulli rate coding with spike probability p = pixel / 16.
    Test set: ``rng = numpy.random.default_rng(0)`` and
    ``x = (rng.random((T, N_test, 64)) < X_test / 16.0).astype(numpy.uint8)``,
    i.e. one ``rng.random`` call of shape [T, N_test, 64] compared elementwise
    (pixel order = ``load_digits().data`` column order, row-major 8x8).
    Training: a fresh draw every epoch from ``numpy.random.default_rng(1)``, same rule.

Network
    Linear(64, H) -> snn.Leaky -> Linear(H, 10) -> snn.Leaky, H = 96, per-neuron beta and
    threshold vectors (learned, clamped to beta in [0.5, 0.98] and threshold in [0.5, 2.0]
    after every optimiser step so that the NIR time constants stay positive), default
    reset (subtract, snnTorch's default reset_delay=True), ATan surrogate gradient, Adam,
    cross-entropy on the output spike counts.  CPU only, torch.manual_seed(0).

Readout
    class = ``numpy.argmax(counts, axis=1)`` where counts[n, k] is the number of spikes of
    output neuron k over the T steps (ties -> lowest index, numpy's rule).

Outputs (in --out-dir, default: this script's folder)
    digits.nir            snntorch.export_nir.export_to_nir(net, sample, ignore_dims=[0])
    test_set.npz          x uint8 [T, N_test, 64], labels int64 [N_test], T, dt (=1e-4, the
                          dt implicit in snnTorch's exporter), p_scale (=16), encoding_seed
                          (=0), snntorch_output_counts int64 [N_test, 10], snntorch_pred
    snntorch_result.json  accuracy of the snnTorch model on exactly those inputs, etc.

Run::

    /opt/trainvenv/bin/python examples/digits/train.py
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import numpy as np
import torch

T = 25
HIDDEN = 96
N_CLASSES = 10
SEED = 0
TEST_ENCODING_SEED = 0
TRAIN_ENCODING_SEED = 1
EPOCHS = 40
BATCH = 64
LR = 5e-3
DT = 1e-4  # the time step implicit in snntorch/export_nir.py

BETA_RANGE = (0.5, 0.98)
THRESHOLD_RANGE = (0.5, 2.0)


def load_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X = digits.data.astype(np.float64)  # [1797, 64], values 0..16
    y = digits.target.astype(np.int64)
    return train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)


def encode(X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bernoulli rate code: uint8 spikes [T, N, 64] with p = pixel / 16."""
    return (rng.random((T, X.shape[0], X.shape[1])) < X / 16.0).astype(np.uint8)


def build_net():
    import snntorch as snn

    gen = torch.Generator().manual_seed(SEED)
    beta1 = 0.8 + 0.15 * torch.rand(HIDDEN, generator=gen)
    beta2 = 0.8 + 0.15 * torch.rand(N_CLASSES, generator=gen)
    thr1 = 0.9 + 0.2 * torch.rand(HIDDEN, generator=gen)
    thr2 = 0.9 + 0.2 * torch.rand(N_CLASSES, generator=gen)
    net = torch.nn.Sequential(
        torch.nn.Linear(64, HIDDEN),
        snn.Leaky(beta=beta1, threshold=thr1, learn_beta=True, learn_threshold=True, init_hidden=True),
        torch.nn.Linear(HIDDEN, N_CLASSES),
        snn.Leaky(beta=beta2, threshold=thr2, learn_beta=True, learn_threshold=True, init_hidden=True,
                  output=True),
    )
    return net


def reset_states(net) -> None:
    import snntorch as snn

    for m in net.modules():
        if isinstance(m, snn.Leaky):
            m.reset_mem()


def run(net, x: torch.Tensor) -> torch.Tensor:
    """x: float [T, B, 64] -> output spikes [T, B, 10] (fresh zero state)."""
    reset_states(net)
    spikes = []
    for t in range(x.shape[0]):
        spk, _mem = net(x[t])
        spikes.append(spk)
    return torch.stack(spikes)


def clamp_params(net) -> None:
    import snntorch as snn

    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, snn.Leaky):
                m.beta.clamp_(*BETA_RANGE)
                m.threshold.clamp_(*THRESHOLD_RANGE)


def readout(counts: np.ndarray) -> np.ndarray:
    return np.argmax(counts, axis=1)  # ties -> lowest index


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Train the snnTorch digits classifier and export it to NIR.")
    parser.add_argument("--out-dir", default=os.path.dirname(os.path.abspath(__file__)),
                        help="output folder (default: this script's folder)")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)

    import nir
    import snntorch
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(SEED)
    np.random.seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # bit-reproducible CPU reductions

    X_train, X_test, y_train, y_test = load_split()
    x_test = encode(X_test, np.random.default_rng(TEST_ENCODING_SEED))
    train_rng = np.random.default_rng(TRAIN_ENCODING_SEED)
    order_rng = np.random.default_rng(SEED)

    net = build_net()
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    t0 = time.time()
    for epoch in range(args.epochs):
        x_tr = torch.from_numpy(encode(X_train, train_rng).astype(np.float32))
        perm = order_rng.permutation(len(y_train))
        net.train()
        total, correct, loss_sum = 0, 0, 0.0
        for i in range(0, len(perm), BATCH):
            idx = perm[i:i + BATCH]
            spk = run(net, x_tr[:, idx])
            counts = spk.sum(0)
            target = torch.from_numpy(y_train[idx])
            loss = loss_fn(counts, target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            clamp_params(net)
            loss_sum += loss.item() * len(idx)
            correct += int((counts.argmax(1) == target).sum())
            total += len(idx)
        if epoch % 5 == 4 or epoch == args.epochs - 1:
            print(f"epoch {epoch + 1:3d}: loss {loss_sum / total:.4f}, train acc {correct / total:.4f} "
                  f"({time.time() - t0:.0f} s)")

    net.eval()
    with torch.no_grad():
        out = run(net, torch.from_numpy(x_test.astype(np.float32)))
    counts = out.sum(0).numpy().round().astype(np.int64)
    pred = readout(counts)
    acc = float((pred == y_test).mean())
    top = np.sort(counts, axis=1)
    n_ties = int((top[:, -1] == top[:, -2]).sum())
    print(f"test accuracy (snnTorch, stored inputs, argmax of counts): {acc:.4f} on {len(y_test)} samples; "
          f"{n_ties} samples have a tied maximum count")

    reset_states(net)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        graph = export_to_nir(net, torch.zeros(1, 64), ignore_dims=[0])
    graph.edges = sorted(graph.edges)  # nirtorch emits edges in set() order; sort for reproducibility
    nir_path = os.path.join(args.out_dir, "digits.nir")
    nir.write(nir_path, graph)
    g = nir.read(nir_path)
    for name in ("1", "3"):
        node = g.nodes[name]
        assert np.all(np.asarray(node.tau) > 0) and np.asarray(node.tau).ndim == 1, "bad tau vector"

    np.savez_compressed(
        os.path.join(args.out_dir, "test_set.npz"),
        x=x_test,
        labels=y_test.astype(np.int64),
        T=np.array(T),
        dt=np.array(DT, dtype=np.float64),
        # How SMALL reads digits.nir and scores the outputs (sim/evaluate.py).
        framework=np.array("snntorch"),
        readout=np.array("spike_count"),
        p_scale=np.array(16.0),
        encoding_seed=np.array(TEST_ENCODING_SEED),
        snntorch_output_counts=counts,
        snntorch_pred=pred.astype(np.int64),
    )
    result = {
        "accuracy": acc,
        "n_test": int(len(y_test)),
        "n_correct": int((pred == y_test).sum()),
        "T": T,
        "readout": "argmax of output spike counts over T steps, ties to lowest index",
        "n_test_with_tied_max_count": n_ties,
        "hidden": HIDDEN,
        "epochs": args.epochs,
        "snntorch_version": snntorch.__version__,
        "torch_version": torch.__version__,
        "seed": SEED,
        "test_encoding_seed": TEST_ENCODING_SEED,
    }
    with open(os.path.join(args.out_dir, "snntorch_result.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
