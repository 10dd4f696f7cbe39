"""Train a small recurrent LIF+ALIF network (an LSNN, Bellec et al.) on a
scaled-down evidence-accumulation ("cue accumulation") task, plus a control
without adaptation, and write the trained parameters and a test set to disk.

Task (all times in steps, dt = 1 ms)
------------------------------------
* 40 input channels: 0-9 "left cue", 10-19 "right cue", 20-29 "recall",
  30-39 background noise.  Input spikes are Bernoulli per step and channel.
* T = 210 steps.  7 cues; cue k (k = 0..6) occupies steps
  [10 + 20k, 20 + 20k): 10 ms at p = 0.4/step on the 10 channels of its side,
  then a 10 ms gap.  Steps [0, 10) are cue-free; the last cue ends at step 140.
* Cue sides (as in the e-prop reference task, p_group = 0.3): each trial
  leans left or right with probability 1/2; each of its 7 cues is then
  independently on the leaning side with probability 0.7, otherwise on the
  other side.  (About a third of the trials are 4:3 splits.)
* Delay: steps [140, 190) (50 ms, no cue, no recall input).
* Recall window: steps [190, 210) (20 ms), recall channels at p = 0.4/step.
* Background channels: p = 0.01/step (10 Hz) during all T steps.
* Label = the side that had more cues: 0 = left, 1 = right (7 cues: no ties).
* Decision: argmax over the 2 LI readout neurons of their membrane potential
  averaged over the recall window, steps [recall_start, recall_end) =
  [190, 210) (half-open).

Network
-------
populations (all per-neuron parameter vectors, float32):
  lif  : 50 LIF neurons,  alpha = exp(-1/20) (tau_mem = 20 ms),
         gain = 1 - alpha, v_leak = 0, v_threshold = 1, refractory = 2 steps,
         reset "subtract", bias = 0 (not trained)
  alif : 50 ALIF neurons, same as lif plus alpha_adapt = exp(-1/1000)
         (tau_a = 1000 ms) and adapt = 0.1 (threshold increase per spike,
         i.e. 10 % of v_threshold)
  out  : 2 LI neurons, alpha = exp(-1/20) (tau = 20 ms), gain = 1,
         v_leak = 0, bias trained
projections W[n_target, n_source] (delay d), all trained:
  input->lif, input->alif (d=0); lif->lif, alif->lif, lif->alif, alif->alif
  (d=1, all to all, self connections included); lif->out, alif->out (d=0).
  There is no input->out projection.
Control: identical in every respect (same init, data, budget), except
alif.adapt = 0, i.e. 100 LIF neurons.

Exact discrete-time equations (per step t; v = v_leak = 0, b = 0,
s_{-1} = 0, c = 0 at start)
    I_t = bias + sum_p W_p @ s_src(t - d_p)      (s_src(t') = 0 for t' < 0)
  LIF / ALIF:
    v = alpha * v + (1 - alpha) * v_leak
    v = v - v_threshold * s_prev
    blocked = c > 0 ; c = max(c - 1, 0)
    if not blocked: v = v + gain * I_t
    b = alpha_adapt * b + adapt * s_prev          (LIF: b = 0)
    s = (v > v_threshold + b) and not blocked     (strict >)
    if s: c = refractory
  LI:
    v = alpha * v + (1 - alpha) * v_leak + gain * I_t ; output = v
Populations update in the order lif, alif, out within a step (lif/alif only
see each other through delay-1 projections; out sees lif and alif at d = 0).

Float32 exactness: after training, all weights and biases are rounded to
multiples of 2**-16 (the rounded values are what is saved and evaluated).
Because spikes are 0/1 and all partial sums stay below 2**8 in magnitude,
every I_t is then exact in float32 whatever the summation order, so any
implementation that evaluates the elementwise float32 operations above in the
order written (no fused multiply-add) reproduces the spikes bit for bit.
`simulate_numpy` below is such a reference implementation (per population,
per projection, with the refractory counter); the script runs it on the
saved trained.npz and compares it with the torch model on the test set.

Training
--------
BPTT through all 210 steps, surrogate gradient (pseudo-derivative)
0.3 * max(0, 1 - |v - (v_threshold + b)| / v_threshold); the gradient of the
reset term is detached, the gradient through b is kept.  Loss = cross-entropy
on the recall-window mean readout + 300 * sum_neurons (rate - 15 Hz)^2 (rate
in spikes/step, averaged over batch and time).  Adam, lr 3e-3 with cosine
decay to 5e-4, gradient-norm clip 1.0, batch 64, 2500 iterations; input
weights init N(0, 1.5^2), recurrent N(0, 0.1^2), readout N(0, 0.1^2).
Training batches are generated on the fly from a fixed seed; every 100
iterations the model is scored on a 256-trial validation set (own seed) and
the best-scoring parameters are kept.  The test set (256 trials) has a third
seed.  ALIF model and control are trained in two parallel processes with one
torch thread each (2 cores in all); everything is seeded and deterministic.

Rerun (from the repository root):
    /opt/trainvenv/bin/python examples/alif_memory/train.py          # full, ~5-6 min on 2 cores
    /opt/trainvenv/bin/python examples/alif_memory/train.py --quick --out /tmp/alif_quick  # smoke run (~30 s)
    options: --out DIR (default: this folder), --iters N, --batch B
Outputs (in --out): trained.npz, trained_no_adaptation.npz (control),
test_set.npz, torch_result.json.
"""
import argparse
import json
import math
import multiprocessing as mp
import os
import time

import numpy as np
import torch

# ----------------------------------------------------------------- task ---
N_IN, N_LIF, N_ALIF, N_OUT = 40, 50, 50, 2
N_REC = N_LIF + N_ALIF
N_CUES, T_START, CUE_LEN, CUE_GAP, DELAY, RECALL_LEN = 7, 10, 10, 10, 50, 20
CUE_RATE, RECALL_RATE, BG_RATE = 0.4, 0.4, 0.01
P_GROUP = 0.3
CUE_END = T_START + N_CUES * (CUE_LEN + CUE_GAP) - CUE_GAP  # 140
RECALL_START = CUE_END + DELAY  # 190
RECALL_END = RECALL_START + RECALL_LEN  # 210
T = RECALL_END  # 210

DT = 1e-3
TAU_MEM, TAU_OUT, TAU_ADAPT = 20.0, 20.0, 1000.0
ADAPT = 0.1
V_TH = 1.0
REFRACTORY = 2
TARGET_RATE = 0.015  # spikes/step = 15 Hz
W_IN_SCALE, W_REC_SCALE = 1.5, 1.0
LR, REG = 3e-3, 300.0
VAL_EVERY = 100
OUT_GAIN = 1.0
TRAIN_REC_BIAS = 0.0  # 0: recurrent biases fixed at 0
CLIP = 1.0

SEED_TRAIN_DATA = 1234
SEED_INIT = 42
SEED_TEST = 987654
SEED_VAL = 55555
N_TEST = 256
QUANT = 2.0 ** -16


def make_batch(rng, n):
    """Return x uint8 [T, n, 40] and labels int64 [n] (0 = left, 1 = right)."""
    # as in the e-prop reference task: each trial leans to one side, whose
    # cues are drawn with probability 1 - P_GROUP (the other side P_GROUP)
    lean = rng.integers(0, 2, size=(n, 1))
    p_right = np.where(lean == 1, 1.0 - P_GROUP, P_GROUP)
    sides = (rng.random((n, N_CUES)) < p_right).astype(np.int64)
    labels = (sides.sum(1) * 2 > N_CUES).astype(np.int64)
    u = rng.random((T, n, N_IN), dtype=np.float32)
    p = np.zeros((T, n, N_IN), dtype=np.float32)
    p[:, :, 30:40] = BG_RATE
    for k in range(N_CUES):
        t0 = T_START + k * (CUE_LEN + CUE_GAP)
        for side in (0, 1):
            m = sides[:, k] == side
            p[t0:t0 + CUE_LEN, m, side * 10:side * 10 + 10] = CUE_RATE
    p[RECALL_START:RECALL_END, :, 20:30] = RECALL_RATE
    return (u < p).astype(np.uint8), labels


# -------------------------------------------------------------- constants --
def neuron_constants(adapt):
    f = np.float32
    alpha = f(math.exp(-DT * 1e3 / TAU_MEM))
    alpha_o = f(math.exp(-DT * 1e3 / TAU_OUT))
    alpha_a = f(math.exp(-DT * 1e3 / TAU_ADAPT))
    c = {}
    for pop, n in (("lif", N_LIF), ("alif", N_ALIF)):
        c[pop + "__alpha"] = np.full(n, alpha, f)
        c[pop + "__gain"] = np.full(n, f(1.0) - alpha, f)
        c[pop + "__v_leak"] = np.zeros(n, f)
        c[pop + "__v_threshold"] = np.full(n, V_TH, f)
        c[pop + "__refractory"] = np.int64(REFRACTORY)
    c["alif__alpha_adapt"] = np.full(N_ALIF, alpha_a, f)
    c["alif__adapt"] = np.full(N_ALIF, adapt, f)
    c["out__alpha"] = np.full(N_OUT, alpha_o, f)
    c["out__gain"] = np.full(N_OUT, OUT_GAIN, f)
    c["out__v_leak"] = np.zeros(N_OUT, f)
    return c


# ------------------------------------------------------------------ torch --
class SpikeFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v, a, th):
        ctx.save_for_backward(v, a, th)
        return (v > a).to(v.dtype)

    @staticmethod
    def backward(ctx, g):
        v, a, th = ctx.saved_tensors
        sg = g * 0.3 * torch.clamp(1.0 - torch.abs(v - a) / th, min=0.0)
        return sg, -sg, None


class LSNN(torch.nn.Module):
    """lif (rows 0..49) and alif (rows 50..99) stacked into one 100-vector."""

    def __init__(self, adapt, seed=SEED_INIT):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W_in = torch.nn.Parameter(torch.randn(N_REC, N_IN, generator=g) * W_IN_SCALE)
        self.W_rec = torch.nn.Parameter(torch.randn(N_REC, N_REC, generator=g) * (W_REC_SCALE / math.sqrt(N_REC)))
        self.b_rec = torch.nn.Parameter(torch.zeros(N_REC))
        self.W_out = torch.nn.Parameter(torch.randn(N_OUT, N_REC, generator=g) * (1.0 / math.sqrt(N_REC)))
        self.b_out = torch.nn.Parameter(torch.zeros(N_OUT))
        c = neuron_constants(adapt)
        cat = lambda k: torch.from_numpy(np.concatenate([c["lif__" + k], c["alif__" + k]]))
        self.register_buffer("alpha", cat("alpha"))
        self.register_buffer("gain", cat("gain"))
        self.register_buffer("leak", (1.0 - cat("alpha")) * cat("v_leak"))
        self.register_buffer("vth", cat("v_threshold"))
        self.register_buffer("alpha_a", torch.cat([torch.zeros(N_LIF), torch.from_numpy(c["alif__alpha_adapt"])]))
        self.register_buffer("adapt", torch.cat([torch.zeros(N_LIF), torch.from_numpy(c["alif__adapt"])]))
        self.register_buffer("alpha_o", torch.from_numpy(c["out__alpha"]))
        self.register_buffer("gain_o", torch.from_numpy(c["out__gain"]))
        self.register_buffer("leak_o", (1.0 - self.alpha_o) * torch.from_numpy(c["out__v_leak"]))
        self.refr = REFRACTORY

    def forward(self, x):
        """x float [T, B, 40] -> readout v [T, B, 2], spikes [T, B, 100].

        Implements the equations of the module docstring.  Two exact
        rewrites are used for speed: (i) with refractory = 2 and a strict
        threshold, "blocked at t" == "spiked at t-1 or t-2" (the counter is
        not needed; the two events are mutually exclusive), so
        v + gain*I*(1 - blocked) equals the masked update exactly; (ii) the
        readout current is computed for all steps after the recurrent loop
        (it only uses same-step spikes, d = 0).  Input currents for all steps
        are one matmul (exact once weights are on the 2**-16 grid).
        """
        assert self.refr == 2, "the refractory shortcut below assumes refractory == 2"
        Tn, B, _ = x.shape
        # unbind (not I_in[t]): indexing would allocate a full-size gradient per step
        I_in = (torch.matmul(x, self.W_in.t()) + self.b_rec).unbind(0)
        W_rec_t = self.W_rec.t()
        v = torch.zeros(B, N_REC)
        b = torch.zeros(B, N_REC)
        s = torch.zeros(B, N_REC)
        s2 = torch.zeros(B, N_REC)  # spikes at t-2 (detached)
        spikes = []
        for t in range(Tn):
            sd = s.detach()
            v = self.alpha * v + self.leak
            v = v - self.vth * sd
            nb = 1.0 - (sd + s2)  # 1 = not refractory
            I = I_in[t] + torch.matmul(s, W_rec_t)
            v = v + self.gain * I * nb
            b = self.alpha_a * b + self.adapt * s
            s2 = sd
            s = SpikeFn.apply(v, self.vth + b, self.vth) * nb
            spikes.append(s)
        spikes = torch.stack(spikes)
        Io = (torch.matmul(spikes, self.W_out.t()) + self.b_out).unbind(0)
        vo = torch.zeros(B, N_OUT)
        outs = []
        for t in range(Tn):
            vo = self.alpha_o * vo + self.leak_o + self.gain_o * Io[t]
            outs.append(vo)
        return torch.stack(outs), spikes

    @torch.no_grad()
    def quantise(self):
        for p in self.parameters():
            p.copy_(torch.round(p / QUANT) * QUANT)

    def export(self):
        """Parameters in the SMALL naming convention (float32 / int64)."""
        c = neuron_constants(float(self.adapt[N_LIF:].max()) if self.adapt.numel() else 0.0)
        c["alif__adapt"] = self.adapt[N_LIF:].numpy().astype(np.float32).copy()
        W_in = self.W_in.detach().numpy()
        W_rec = self.W_rec.detach().numpy()
        W_out = self.W_out.detach().numpy()
        b_rec = self.b_rec.detach().numpy()
        L, A = slice(0, N_LIF), slice(N_LIF, N_REC)
        c["lif__bias"], c["alif__bias"] = b_rec[L], b_rec[A]
        c["out__bias"] = self.b_out.detach().numpy()
        c["W__input__lif"], c["W__input__alif"] = W_in[L], W_in[A]
        c["W__lif__lif"], c["W__alif__lif"] = W_rec[L, L], W_rec[L, A]
        c["W__lif__alif"], c["W__alif__alif"] = W_rec[A, L], W_rec[A, A]
        c["W__lif__out"], c["W__alif__out"] = W_out[:, L], W_out[:, A]
        for k in ("input__lif", "input__alif", "lif__out", "alif__out"):
            c["D__" + k] = np.int64(0)
        for k in ("lif__lif", "alif__lif", "lif__alif", "alif__alif"):
            c["D__" + k] = np.int64(1)
        c["dt"] = np.float32(DT)
        out = {}
        for k, val in c.items():
            val = np.asarray(val)
            out[k] = val.astype(np.float32).copy() if val.dtype.kind == "f" else val.astype(np.int64)
        return out


# ------------------------------------------------------------------ numpy --
def simulate_numpy(params, x):
    """Pure-numpy float32 reference of the exact equations in the docstring.

    params: dict as stored in trained.npz; x: [T, N, 40] (0/1).
    Returns (out_v [T, N, 2] float32, spikes dict pop -> [T, N, n] uint8).
    """
    f32 = np.float32
    P = {k: np.asarray(v) for k, v in params.items()}
    Tn, N, _ = x.shape
    srcs = {"input": None, "lif": None, "alif": None}
    pops = ("lif", "alif", "out")
    n = {p: P[p + "__alpha"].shape[0] for p in pops}
    proj = {tgt: [(src, P["W__%s__%s" % (src, tgt)].astype(f32), int(P["D__%s__%s" % (src, tgt)]))
                  for src in srcs if "W__%s__%s" % (src, tgt) in P] for tgt in pops}
    v = {p: np.zeros((N, n[p]), f32) for p in pops}
    b = {p: np.zeros((N, n[p]), f32) for p in ("lif", "alif")}
    c = {p: np.zeros((N, n[p]), np.int64) for p in ("lif", "alif")}
    hist = {p: [] for p in ("input", "lif", "alif")}  # spike history (float32 0/1)
    zero = {p: np.zeros((N, n[p] if p != "input" else x.shape[2]), f32) for p in ("input", "lif", "alif")}
    out_v = np.zeros((Tn, N, n["out"]), f32)
    spikes = {p: np.zeros((Tn, N, n[p]), np.uint8) for p in ("lif", "alif")}

    def src_at(src, tt):
        return hist[src][tt] if tt >= 0 else zero[src]

    for t in range(Tn):
        hist["input"].append(x[t].astype(f32))
        for p in pops:
            I = np.broadcast_to(P[p + "__bias"].astype(f32), (N, n[p])).copy()
            for src, W, d in proj[p]:
                I = I + src_at(src, t - d) @ W.T
            alpha, gain = P[p + "__alpha"].astype(f32), P[p + "__gain"].astype(f32)
            leak = (f32(1.0) - alpha) * P[p + "__v_leak"].astype(f32)
            if p == "out":
                v[p] = alpha * v[p] + leak + gain * I
                out_v[t] = v[p]
                continue
            s_prev = src_at(p, t - 1)
            vth = P[p + "__v_threshold"].astype(f32)
            vv = alpha * v[p] + leak
            vv = vv - vth * s_prev
            blocked = c[p] > 0
            c[p] = np.maximum(c[p] - 1, 0)
            vv = np.where(blocked, vv, vv + gain * I)
            if p + "__adapt" in P:
                b[p] = P[p + "__alpha_adapt"].astype(f32) * b[p] + P[p + "__adapt"].astype(f32) * s_prev
            s = (vv > vth + b[p]) & ~blocked
            c[p] = np.where(s, int(P[p + "__refractory"]), c[p])
            v[p] = vv
            hist[p].append(s.astype(f32))
            spikes[p][t] = s
    return out_v, spikes


# --------------------------------------------------------------- training --
def train(adapt, iters, batch, tag, threads=1):
    torch.set_num_threads(threads)
    torch.manual_seed(SEED_INIT)
    rng = np.random.default_rng(SEED_TRAIN_DATA)
    model = LSNN(adapt)
    if not TRAIN_REC_BIAS:
        model.b_rec.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=LR)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=iters, eta_min=5e-4)
    x_val, y_val = make_batch(np.random.default_rng(SEED_VAL), 256)
    best = (-1.0, None, -1)
    t0 = time.time()
    log = []
    for it in range(iters):
        xb, yb = make_batch(rng, batch)
        x = torch.from_numpy(xb).float()
        y = torch.from_numpy(yb)
        vo, sp = model(x)
        logits = vo[RECALL_START:RECALL_END].mean(0)
        ce = torch.nn.functional.cross_entropy(logits, y)
        rate = sp.mean((0, 1))
        reg = REG * ((rate - TARGET_RATE) ** 2).sum()
        loss = ce + reg
        opt.zero_grad()
        loss.backward()
        if CLIP:
            torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
        sched.step()
        acc = (logits.argmax(1) == y).float().mean().item()
        log.append((ce.item(), acc, rate.mean().item(), reg.item()))
        if it % 50 == 0 or it == iters - 1:
            m = np.mean(log[-50:], 0)
            print("[%s] it %4d  ce %.3f  acc %.3f  rate %.1f Hz reg %.3f (%.0fs)" % (
                tag, it, m[0], m[1], m[2] / DT, m[3], time.time() - t0), flush=True)
        if (it + 1) % VAL_EVERY == 0 or it == iters - 1:
            val_acc = evaluate(model, x_val, y_val)[0]
            print("[%s] it %4d  validation acc %.3f" % (tag, it, val_acc), flush=True)
            if val_acc >= best[0]:
                best = (val_acc, {k: v.clone() for k, v in model.state_dict().items()}, it)
    # keep the parameters with the best validation accuracy (validation set
    # has its own seed, distinct from training data and test set)
    model.load_state_dict(best[1])
    print("[%s] best validation acc %.3f at it %d" % (tag, best[0], best[2]), flush=True)
    model.quantise()
    return model, time.time() - t0


def evaluate(model, x_np, y_np):
    with torch.no_grad():
        vo, sp = model(torch.from_numpy(x_np).float())
    mean = vo[RECALL_START:RECALL_END].mean(0).numpy().astype(np.float32)
    acc = float((mean.argmax(1) == y_np).mean())
    return acc, mean, sp.numpy().astype(np.uint8)


def _worker(args):
    adapt, iters, batch, tag = args
    model, wall = train(adapt, iters, batch, tag)
    return model.state_dict(), wall


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    ap.add_argument("--iters", type=int, default=None)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    iters = args.iters or (20 if args.quick else 2500)
    os.makedirs(args.out, exist_ok=True)
    t_start = time.time()

    jobs = [(ADAPT, iters, args.batch, "alif"), (0.0, iters, args.batch, "ctrl")]
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.map(_worker, jobs)
    torch.set_num_threads(2)
    models = []
    for (adapt, *_), (sd, wall) in zip(jobs, results):
        m = LSNN(adapt)
        m.load_state_dict(sd)
        models.append(m)
    train_wall = time.time() - t_start

    x_test, y_test = make_batch(np.random.default_rng(SEED_TEST), N_TEST)
    acc, out_mean, sp = evaluate(models[0], x_test, y_test)
    acc_ctrl, _, sp_ctrl = evaluate(models[1], x_test, y_test)
    rate_hz = float(sp.mean() / DT)
    rate_ctrl_hz = float(sp_ctrl.mean() / DT)
    print("test accuracy ALIF %.4f  control (no adaptation) %.4f" % (acc, acc_ctrl))
    print("firing rate ALIF %.2f Hz (lif %.2f, alif %.2f), control %.2f Hz" % (
        rate_hz, sp[..., :N_LIF].mean() / DT, sp[..., N_LIF:].mean() / DT, rate_ctrl_hz))

    params = models[0].export()
    # exactness guarantee: worst-case |I| (all sources spiking) must stay < 2**8
    cur_bound = max(float((sum(np.abs(params["W__%s__%s" % (s_, tgt)]).sum(1) for s_ in ("input", "lif", "alif")
                               if "W__%s__%s" % (s_, tgt) in params) + np.abs(params[tgt + "__bias"])).max())
                    for tgt in ("lif", "alif", "out"))
    print("worst-case |I_t| bound %.2f (< 256: float32 sums exact in any order)" % cur_bound)
    assert cur_bound < 256.0
    np.savez_compressed(os.path.join(args.out, "trained.npz"), **params)
    np.savez_compressed(os.path.join(args.out, "trained_no_adaptation.npz"), **models[1].export())
    counts = sp.sum(0).astype(np.int64)  # [N_test, 100]
    np.savez_compressed(os.path.join(args.out, "test_set.npz"), x=x_test, labels=y_test,
                        recall_start=np.int64(RECALL_START), recall_end=np.int64(RECALL_END),
                        torch_out_mean=out_mean, torch_spike_counts=counts)

    # ---- numpy cross-check (reload from disk, as the lead will)
    t0 = time.time()
    loaded = dict(np.load(os.path.join(args.out, "trained.npz")))
    out_np, sp_np = simulate_numpy(loaded, x_test)
    sp_np_all = np.concatenate([sp_np["lif"], sp_np["alif"]], axis=2)
    n_diff = int((sp_np_all != sp).sum())
    mean_np = out_np[RECALL_START:RECALL_END].mean(0)
    max_out_diff = float(np.abs(mean_np - out_mean).max())
    acc_np = float((mean_np.argmax(1) == y_test).mean())
    print("numpy vs torch: %d differing spikes of %d (%d torch spikes), max |out_mean diff| %.3g, "
          "numpy accuracy %.4f (%.1fs)" % (n_diff, sp.size, int(sp.sum()), max_out_diff, acc_np, time.time() - t0))

    res = {
        "accuracy": acc,
        "control_accuracy_no_adaptation": acc_ctrl,
        "n_test": N_TEST,
        "T": T,
        "recall_start": RECALL_START,
        "recall_end": RECALL_END,
        "decision": "argmax over the 2 LI readout neurons of the mean readout membrane v over steps "
                    "[recall_start, recall_end) = [%d, %d); class 0 = left, 1 = right" % (RECALL_START, RECALL_END),
        "firing_rate_hz": rate_hz,
        "firing_rate_hz_lif": float(sp[..., :N_LIF].mean() / DT),
        "firing_rate_hz_alif": float(sp[..., N_LIF:].mean() / DT),
        "control_firing_rate_hz": rate_ctrl_hz,
        "numpy_vs_torch_differing_spikes": n_diff,
        "numpy_vs_torch_total_spike_entries": int(sp.size),
        "numpy_vs_torch_max_out_mean_abs_diff": max_out_diff,
        "numpy_accuracy": acc_np,
        "weights_grid": "all W and bias are multiples of 2**-16",
        "worst_case_abs_current_bound": cur_bound,
        "train_iters": iters,
        "batch": args.batch,
        "train_wall_s": round(train_wall, 1),
        "quick": bool(args.quick),
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "seeds": {"train_data": SEED_TRAIN_DATA, "init": SEED_INIT, "validation": SEED_VAL, "test": SEED_TEST},
    }
    with open(os.path.join(args.out, "torch_result.json"), "w") as fh:
        json.dump(res, fh, indent=2)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
