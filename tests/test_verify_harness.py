"""The verification harness (verify/harness.py): the chip's Verilog inside a wrapper that plays whole
batches of steps, so that cocotb exchanges a batch at a time instead of every clock cycle.

The pure-Python half (cutting the command stream into batches, splitting a batch's events into
steps and comparing them) is tested here without a simulator, against events made from the
reference as a correct chip would send them, and against corrupted ones; the simulator-backed tests
run the same chip with one batch, with many small batches (steps straddling two batches) and with
the per-cycle testbench, and require the same comparison from all three.
"""

from __future__ import annotations

import numpy as np
import pytest

from compiler.events import OUT_STEP
from sim.digital import DigitalSimulator
from test_hdl_chip import compiled, signed_input
from verify.harness import HarnessError, harness_verilog
from verify.model import ReferenceModel, StepEvents, codecs
from verify.testbench import Mismatch, Scoreboard, _batches, _compare_batch

INFO = {"cmd_depth": 8, "out_depth": 8, "spk_depth": 16, "out_size": 8, "spk_size": 16, "tag_bits": 16}


def test_batches_keep_every_command_in_order_and_fit_the_memories():
    rng = np.random.default_rng(0)
    units = []
    word = 0
    for k in range(60):
        n = int(rng.integers(1, 20)) if k != 7 else 30  # some steps need more words than a batch holds
        units.append((list(range(word, word + n)), ("step", k), int(rng.integers(1, 4)), int(rng.integers(0, 9))))
        word += n
    batches = list(_batches(units, INFO))
    assert [w for words, _ in batches for w in words] == list(range(word)), "every word once, in order"
    assert all(len(words) <= INFO["cmd_depth"] for words, _ in batches)
    # a step's label goes with the batch that holds its last word (its OP_STEP): its OUT_STEP comes there
    last_word = {u[1]: u[0][-1] for u in units}
    for words, labels in batches:
        assert all(last_word[label] in words for label in labels)
        if len(labels) > 1:  # several steps share a batch only if their expected events fit half the memories
            n_out = sum(u[2] for u in units if u[1] in labels)
            n_spk = sum(u[3] for u in units if u[1] in labels)
            assert n_out <= INFO["out_depth"] // 2 and n_spk <= INFO["spk_depth"] // 2
    assert [lab for _, labels in batches for lab in labels] == [u[1] for u in units]


@pytest.fixture(scope="module")
def reference():
    """A small network's expected events per step, and the codecs of its chip's ports."""
    image = compiled(1, 16, 12)
    x = signed_input(1, steps=6, batch=2)
    xs, _, _ = DigitalSimulator(image).prepare_inputs(x)
    model = ReferenceModel(image)
    expected = model.expect(xs)
    assert sum(len(e.internal) for s in expected for e in s) > 10, "the test needs spikes"
    assert sum(len(e.spikes) for s in expected for e in s) > 0, "and host spikes"
    return image, expected, codecs(model.geometry)


def chip_events(expected, labels, image, codecs_):
    """A batch as the harness returns it from a correct chip: outputs with OUT_STEP after each step,
    probed spikes tagged with their step in the batch."""
    _, out_codec, spike_codec = codecs_
    C, outs, spikes = image.cols, [], []
    for k, (b, t) in enumerate(labels):
        e = expected[b][t]
        outs += [out_codec.pack({"kind": 0, "tile": a // C, "col": a % C}) for a in sorted(e.spikes)]
        outs += [out_codec.pack({"kind": 1, "tile": a // C, "col": a % C, "value": v}) for a, v in e.values.items()]
        outs.append(out_codec.pack({"kind": OUT_STEP}))
        spikes += [(k << spike_codec.size) | spike_codec.pack({"tile": a // C, "col": a % C})
                   for a in sorted(e.internal)]
    return {"outputs": outs, "n_outputs": len(outs), "spikes": spikes, "n_spikes": len(spikes), "hung": False,
            "steps": len(labels)}


def compare(reference, got, labels, carry=None):
    image, expected, (_, out_codec, spike_codec) = reference
    board = Scoreboard(image.cols)
    info = INFO | {"out_size": 1 << 15, "spk_size": 1 << 16}
    try:
        carry = _compare_batch(got, labels, expected, out_codec, spike_codec, image.cols, info, True, board,
                               carry or StepEvents())
    except Mismatch:
        pass
    return board, carry


def test_a_correct_batch_passes_and_counts_every_event(reference):
    image, expected, codecs_ = reference
    labels = [(b, t) for b in range(len(expected)) for t in range(len(expected[b]))]
    board, carry = compare(reference, chip_events(expected, labels, image, codecs_), labels)
    assert board.mismatch is None and carry == StepEvents()
    assert board.counts["spikes"] == sum(len(e.internal) for s in expected for e in s)
    assert board.counts["steps"] == len(labels)


def _first_with(expected, what):
    return next((b, t) for b in range(len(expected)) for t in range(len(expected[b]))
                if getattr(expected[b][t], what))


def test_a_missing_host_spike_is_named_at_its_step_and_neuron(reference):
    image, expected, codecs_ = reference
    labels = [(b, t) for b in range(len(expected)) for t in range(len(expected[b]))]
    got = chip_events(expected, labels, image, codecs_)
    b, t = _first_with(expected, "spikes")
    addr = min(expected[b][t].spikes)
    drop = codecs_[1].pack({"kind": 0, "tile": addr // image.cols, "col": addr % image.cols})
    got["outputs"].remove(drop)
    board, _ = compare(reference, got, labels)
    m = board.mismatch
    assert (m["sample"], m["step"], m["what"], m["tile"], m["col"], m["expected"], m["got"]) == \
        (b, t, "host spike", addr // image.cols, addr % image.cols, 1, 0)


def _first_router_spike(reference):
    """The events of a correct chip, and where the first step with a neuron spike has its first
    spike word: ``(labels, got, b, t, k, bits, i)`` (sample, step, its label, the word's payload
    bits, the word's index in ``got["spikes"]``)."""
    image, expected, codecs_ = reference
    labels = [(b, t) for b in range(len(expected)) for t in range(len(expected[b]))]
    got = chip_events(expected, labels, image, codecs_)
    b, t = _first_with(expected, "internal")
    k = labels.index((b, t))
    bits = codecs_[2].size
    i = next(i for i, w in enumerate(got["spikes"]) if w >> bits == k)
    return labels, got, b, t, k, bits, i


def test_a_spike_of_the_wrong_neuron_is_named_where_it_enters_the_router(reference):
    image, expected, codecs_ = reference
    labels, got, b, t, k, bits, i = _first_router_spike(reference)
    s = codecs_[2].unpack(got["spikes"][i] & ((1 << bits) - 1))
    wrong = next(a for a in range(image.n_tiles * image.cols) if a not in expected[b][t].internal)
    got["spikes"][i] = (k << bits) | codecs_[2].pack({"tile": wrong // image.cols, "col": wrong % image.cols})
    board, _ = compare(reference, got, labels)
    m = board.mismatch
    first = min({s["tile"] * image.cols + s["col"], wrong})
    assert (m["sample"], m["step"], m["what"]) == (b, t, "spike")
    assert m["tile"] * image.cols + m["col"] == first


def test_an_event_sent_twice_is_reported(reference):
    labels, got, b, t, _, _, i = _first_router_spike(reference)
    got["spikes"].insert(i, got["spikes"][i])
    got["n_spikes"] += 1
    board, _ = compare(reference, got, labels)
    assert (board.mismatch["sample"], board.mismatch["step"], board.mismatch["what"]) == (b, t, "spike sent twice")


def test_a_step_without_its_end_of_step_event_is_a_hang_at_that_step(reference):
    image, expected, codecs_ = reference
    labels = [(0, t) for t in range(len(expected[0]))]
    got = chip_events(expected, labels, image, codecs_)
    done = codecs_[1].pack({"kind": OUT_STEP})
    cut = [i for i, w in enumerate(got["outputs"]) if w == done][2]  # the chip stops after its third step
    got["outputs"], got["steps"], got["hung"] = got["outputs"][:cut], 2, True
    got["n_outputs"] = len(got["outputs"])
    board, _ = compare(reference, got, labels)
    assert (board.mismatch["sample"], board.mismatch["step"]) == (0, 2)
    assert board.mismatch["what"].startswith("no OUT_STEP within")
    assert board.counts["steps"] == 2, "the steps before the hang were compared"


def test_events_after_a_batch_belong_to_the_next_batch(reference):
    """An event the chip sends after a step's OUT_STEP counts in the next step, also across batches."""
    image, expected, codecs_ = reference
    labels = [(0, t) for t in range(len(expected[0]))]
    first, second = labels[:3], labels[3:]
    got = chip_events(expected, first, image, codecs_)
    stray = next(a for a in range(image.n_tiles * image.cols) if a not in expected[0][3].spikes)
    got["outputs"].append(codecs_[1].pack({"kind": 0, "tile": stray // image.cols, "col": stray % image.cols}))
    board, carry = compare(reference, got, first)
    assert board.mismatch is None and carry.spikes == {stray}
    board, _ = compare(reference, chip_events(expected, second, image, codecs_), second, carry)
    m = board.mismatch
    assert (m["sample"], m["step"], m["what"], m["tile"] * image.cols + m["col"]) == (0, 3, "host spike", stray)


def test_the_harness_refuses_a_module_without_host_ports(tmp_path):
    v = tmp_path / "x.v"
    v.write_text("module small_chip(clk, rst, a);\n  input clk;\n  input rst;\n  input [3:0] a;\nendmodule\n")
    with pytest.raises(HarnessError, match="no port commands__valid"):
        harness_verilog(v)
    with pytest.raises(HarnessError, match="no module 'other'"):
        harness_verilog(v, "other")


# -- in the simulators ---------------------------------------------------------------------------
@pytest.mark.rtl
@pytest.mark.parametrize("simulator", ["icarus", pytest.param("verilator", marks=pytest.mark.long)])
def test_many_small_batches_and_the_per_cycle_testbench_agree(tmp_path, simulator):
    """One batch, batches of a few commands (steps straddle batches; the network is loaded over the
    config port in chunks), the samples shared by two simulator processes, and the per-cycle
    testbench: all pass and compare the same events. The chip is bigger than the network, as a chip
    a network is compiled for with ``--chip`` is (more inputs: wider command fields; more columns
    and tiles). (Verilator, a build of its own, with ``-m long``: the harness runs under Verilator
    in every test of test_verify.py.)"""
    import dataclasses

    from compiler.capacity import Capacity
    from hdl.chip import Chip
    from hdl.export import write_hdl
    from verify.runner import verify

    image = compiled(1, 16, 12)
    fitted = Capacity.of(image, lanes=4)
    cap = dataclasses.replace(fitted, tiles=fitted.tiles + 1, cols=16, n_inputs=4 * fitted.n_inputs)
    image.save(tmp_path)
    write_hdl(Chip(cap), None, tmp_path / "hdl")
    xs, _, _ = DigitalSimulator(image).prepare_inputs(signed_input(1, steps=6, batch=2))
    runs = {}
    for name, kw in [("one", {}), ("small", {"batch_limits": {"cmd_depth": 5, "out_depth": 4, "spk_depth": 6,
                                                              "cfg_depth": 7}}),
                     ("shared", {"jobs": 2}), ("per-cycle", {"harness": False})]:
        if simulator == "verilator" and name == "per-cycle":
            continue  # a second Verilator build; Icarus makes the comparison
        r = verify(tmp_path, tmp_path / "hdl" / "small_chip.v", xs, simulator=simulator, work_dir=tmp_path / "v",
                   name=name, capacity=cap.to_dict(), **kw)
        assert r.passed, (name, r.summary["mismatch"])
        runs[name] = r.summary
    assert runs["small"]["harness"]["batches"] > 10 and runs["one"]["harness"]["batches"] == 2  # load + run
    assert runs["shared"]["jobs"] == 2 and runs["shared"]["harness"]["batches"] == 4
    assert runs["one"]["compared"]["spikes"] > 20
    for s in runs.values():
        assert s["compared"] == runs["one"]["compared"] and s["commands"] == runs["one"]["commands"]
        assert s["load_words"] == runs["one"]["load_words"] > 0
        assert abs(s["mean_cycles_per_step"] - runs["one"]["mean_cycles_per_step"]) <= 2


def test_a_mismatch_in_a_later_shard_is_named_with_its_sample_in_the_whole_run():
    """Shards report their own first mismatch; the merged summary keeps the lowest sample's, numbered
    in the whole run, and adds up what every shard compared."""
    from verify.runner import _merge

    def shard(samples, steps, mismatch=None):
        return {"passed": mismatch is None, "samples": samples, "network_steps": 6, "chip_steps": steps,
                "compared": {"spikes": 10, "host_spikes": 2, "values": 0, "steps": steps},
                "internal_spikes_probed": True, "commands": 40, "cycles": 1000, "mean_cycles_per_step": 50.0,
                "seconds": 1.0, "load_seconds": 0.1, "load_words": 9, "first_mismatch": mismatch,
                "mismatch": mismatch and f"sample {mismatch['sample']}", "harness": {"batches": 2, "seconds": {}}}

    m = {"sample": 5, "step": 2, "what": "spike"}
    merged = _merge([shard(3, 21), shard(3, 14, m), shard(2, 14)])
    assert not merged["passed"] and merged["first_mismatch"] == m and merged["mismatch"] == "sample 5"
    assert merged["samples"] == 8 and merged["chip_steps"] == 49 and merged["compared"]["spikes"] == 30
    assert merged["jobs"] == 3 and merged["load_words"] == 9
    assert _merge([shard(3, 21), shard(3, 21)])["passed"]
