"""`small finetune`: the torch network equals the reference, the chip model equals the image, the
command writes its files, and bad input is refused in one line with nothing written."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from small.cli import main

torch = pytest.importorskip("torch")

DIGITS = Path(__file__).resolve().parent.parent / "examples" / "digits"


@pytest.fixture(scope="module")
def digits():
    from sim.evaluate import load_test_set
    from train.finetune import load_network

    test = load_test_set(DIGITS / "test_set.npz")
    return load_network(DIGITS / "digits.nir", test.dt, test.framework), test


@pytest.fixture
def small_sets(tmp_path):
    """The digits' first training and test samples (a run of seconds)."""
    train = np.load(DIGITS / "train_set.npz")
    test = np.load(DIGITS / "test_set.npz")
    for name, data, n in (("train.npz", train, 128), ("test.npz", test, 100)):
        np.savez(tmp_path / name, x=data["x"][:, :n], labels=data["labels"][:n], dt=data["dt"],
                 framework=data["framework"], readout=data["readout"])
    return tmp_path / "train.npz", tmp_path / "test.npz"


def test_the_torch_network_spikes_as_the_reference_simulator(digits):
    from sim.reference import ReferenceSimulator
    from train.torchnet import SpikingNetwork

    net, test = digits
    x = test.x[:, :64]
    ref = ReferenceSimulator(net, dtype=np.float64).run(x).output_array()
    with torch.no_grad():
        out = SpikingNetwork(net, dtype=torch.float64)(torch.as_tensor(x.astype(np.float64))).numpy()
    assert np.array_equal(out, ref)


def test_the_chip_model_holds_what_the_image_and_the_analog_simulator_hold(digits):
    from compiler.faults import random_faults
    from compiler.mapper import CompileOptions, compile_network
    from sim.analog import AnalogSimulator
    from train.chip import check_realise, locate

    net, _ = digits
    fmap = random_faults(4, 64, 64, 0.2, seed=2, reversed_rate=0.2)
    image = compile_network(net, CompileOptions(target="memristive", levels=8, faults=fmap, fault_aware=False)).image
    cells = locate(image, net, fmap)
    check_realise(cells, image, net)  # stuck devices and levels: exactly the image's
    analog = AnalogSimulator(image, device="ideal", faults=fmap, noise=False)
    for c, proj in zip(cells, net.projections):
        q = np.clip(np.rint(proj.dense_weight()[c.i, c.j] / c.scale), -7, 7)
        held = (analog.g_pos - analog.g_neg)[c.tile, c.row, c.col] / analog.dG
        assert np.allclose(c.realise(q), held)  # reversed devices too
        assert np.allclose(c.realise(torch.as_tensor(q), xp=torch).numpy(), c.realise(q))


def test_finetune_writes_the_tuned_network_and_its_figures(small_sets, tmp_path, capsys):
    train, test = small_sets
    out = tmp_path / "tuned"
    assert main(["finetune", str(DIGITS / "digits.nir"), "--data", str(train), "--test", str(test), "--levels", "8",
                 "--epochs", "1", "--rewire", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "epoch   1/1" in printed and "accuracy on the chip" in printed
    doc = json.loads((out / "finetune.json").read_text())
    assert 0 <= doc["accuracy_before"] <= 1 and 0 <= doc["accuracy_after"] <= 1
    assert doc["options"]["rewire"] and doc["options"]["levels"] == 8
    assert doc["fan_in_splits_after"] == 0 and doc["tiles_after"] < doc["tiles_before"]
    for name in ("model.nir", "network.small", "curves.png", "log.txt", "checkpoint.npz"):
        assert (out / name).is_file()
    # the tuned network goes through the flow as any other
    assert main(["compile", str(out / "network.small"), "--levels", "8", "--test-set", str(test),
                 "-o", str(tmp_path / "build")]) == 0
    report = json.loads((tmp_path / "build" / "report.json").read_text())
    assert report["fan_in_splits"] == 0 and report["tiles_used"] == doc["tiles_after"]
    # small report of that build finds the run beside it and shows before and after; the original's does not
    from small.report import finetune_section, load_build

    section = finetune_section(load_build(tmp_path / "build"))
    assert section is not None and "Fine-tuning" in section.title
    assert f"{doc['accuracy_before'] * 100:.2f} %" in section.body and f"{doc['accuracy_after'] * 100:.2f} %" in section.body
    assert main(["compile", str(DIGITS / "digits.nir"), "--levels", "8", "--test-set", str(test),
                 "-o", str(tmp_path / "original")]) == 0
    assert finetune_section(load_build(tmp_path / "original")) is None


def bad_labels(path):
    data = dict(np.load(path))
    data["labels"] = data["labels"].copy()
    data["labels"][3] = 10
    return data


@pytest.mark.parametrize("case, message", [
    ("shape", "the network's input 'input' takes [T, N, 64]"),
    ("labels", "label 10 of sample 3 is not an output of the network (0 to 9)"),
    ("geometry", "is for 32x32 tiles but --tile is 64x64"),
    ("fan-in", "--fan-in must be a whole number >= 1"),
    ("pruning without a map", "--fault-pruning prunes the faulty devices of a chip"),
])
def test_bad_input_is_refused_in_one_line_and_nothing_is_written(small_sets, tmp_path, capsys, case, message):
    from compiler.faults import random_faults, save_faults

    train, test = small_sets
    args = ["finetune", str(DIGITS / "digits.nir"), "--data", str(train), "--test", str(test), "--epochs", "1"]
    if case == "shape":
        data = dict(np.load(train))
        data["x"] = data["x"][..., :60]
        np.savez(tmp_path / "bad.npz", **data)
        args[3] = str(tmp_path / "bad.npz")
    elif case == "labels":
        np.savez(tmp_path / "bad.npz", **bad_labels(test))
        args[5] = str(tmp_path / "bad.npz")
    elif case == "geometry":
        save_faults(random_faults(2, 32, 32, 0.1), tmp_path / "chip.json")
        args += ["--faults", str(tmp_path / "chip.json")]
    elif case == "fan-in":
        args += ["--rewire", "--fan-in", "0"]
    else:
        args += ["--fault-pruning"]
    assert main([*args, "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_without_torch_finetune_says_how_to_install_it(small_sets, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    train, test = small_sets
    assert main(["finetune", str(DIGITS / "digits.nir"), "--data", str(train), "--test", str(test),
                 "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'small-toolchain[train]'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_ctrl_c_leaves_the_last_complete_checkpoint(small_sets, tmp_path, capsys, monkeypatch):
    from train import finetune as ft

    calls = {"n": 0}
    real = ft._Trainer.chip_accuracy

    def interrupt_in_the_second_epoch(self, test):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, test)

    monkeypatch.setattr(ft._Trainer, "chip_accuracy", interrupt_in_the_second_epoch)
    train, test = small_sets
    out = tmp_path / "out"
    assert main(["finetune", str(DIGITS / "digits.nir"), "--data", str(train), "--test", str(test), "--levels", "8",
                 "--epochs", "3", "-o", str(out)]) == 130
    with np.load(out / "checkpoint.npz") as ck:
        assert int(ck["epoch"]) == 1
    assert "interrupted" in (out / "log.txt").read_text()
    assert not (out / "model.nir").exists()


def test_ctrl_c_before_the_first_epoch_ends_writes_nothing(small_sets, tmp_path, monkeypatch):
    from train import finetune as ft

    def interrupt(self, test):
        raise KeyboardInterrupt

    monkeypatch.setattr(ft._Trainer, "chip_accuracy", interrupt)
    train, test = small_sets
    assert main(["finetune", str(DIGITS / "digits.nir"), "--data", str(train), "--test", str(test),
                 "-o", str(tmp_path / "out")]) == 130
    assert not (tmp_path / "out").exists()


def test_the_relabelled_map_keeps_the_compilers_fault_aware_placement(digits):
    from compiler.faults import random_faults
    from compiler.mapper import CompileOptions, compile_network
    from sim.analog import AnalogSimulator
    from train.finetune import FinetuneOptions, placed_map

    net, test = digits
    fmap = random_faults(4, 64, 64, 0.2, seed=5, reversed_rate=0.2)
    options = FinetuneOptions(levels=8, faults="chip.json")
    aware = compile_network(net, CompileOptions(target="memristive", levels=8, faults=fmap)).image
    fixed = compile_network(net, options.compile_options(placed_map(net, options, fmap))).image
    x = test.x[:, :40]
    out = [AnalogSimulator(img, device="ideal", noise=False).run(x).output_array() for img in (aware, fixed)]
    assert np.array_equal(*out)
    assert np.sum(aware.arrays["stuck_pos"] >= 0) == np.sum(fixed.arrays["stuck_pos"] >= 0)


def test_finetune_against_a_fault_map_reports_both_placements(small_sets, tmp_path):
    from compiler.faults import random_faults, save_faults

    train, test = small_sets
    save_faults(random_faults(4, 64, 64, 0.1, seed=1, reversed_rate=0.1), tmp_path / "chip.json")
    out = tmp_path / "tuned"
    assert main(["finetune", str(DIGITS / "digits.nir"), "--data", str(train), "--test", str(test), "--levels", "8",
                 "--epochs", "1", "--faults", str(tmp_path / "chip.json"), "--device", "tiox", "--fault-pruning",
                 "-o", str(out)]) == 0
    doc = json.loads((out / "finetune.json").read_text())
    assert doc["options"]["target"] == "memristive" and doc["options"]["fault_pruning"]
    assert 0 <= doc["accuracy_before_identity_placement"] <= 1 and doc["pruned_synapses"] > 0
    assert doc["epochs"][0]["chip_accuracy"] == doc["accuracy_after"]  # the last epoch's score is the final one


def test_fault_pruning_discovers_faulty_devices_from_their_responses(small_sets, tmp_path):
    """As the paper does: a synapse whose devices do not follow the requested changes is pruned,
    and the ones pruned are cells with a faulty device."""
    from compiler.faults import random_faults, save_faults
    from train import finetune as ft

    train, test = small_sets
    save_faults(random_faults(4, 64, 64, 0.3, seed=0, reversed_rate=0.3), tmp_path / "chip.json")
    seen = {}
    real = ft._Trainer.export

    def keep(self):
        seen["trainer"] = self
        return real(self)

    options = ft.FinetuneOptions(levels=8, faults=str(tmp_path / "chip.json"), device="tiox", fault_pruning=True,
                                 prune_by="response", epochs=3, lr=0.02, augment="redraw", schedule="cosine")
    import unittest.mock

    with unittest.mock.patch.object(ft._Trainer, "export", keep):
        result = ft.finetune(DIGITS / "digits.nir", train, test, options, tmp_path / "out", progress=lambda _: None)
    assert result.pruned_synapses > 0
    assert result.accuracy_before_compiler_placement is not None
    trainer = seen["trainer"]
    pruned_faulty = sum(int((p & c.faulty).sum()) for p, c in zip(trainer.pruned, trainer.cells))
    assert pruned_faulty == result.pruned_synapses  # a healthy cell follows its requests: never pruned


@pytest.mark.parametrize("field, value, message", [
    ("schedule", "step", "--schedule must be one of constant, cosine"),
    ("placement", "random", "--placement must be one of activity, weights"),
    ("augment", "flip", "--augment must be one of shuffle-time, redraw"),
])
def test_unknown_training_options_are_named(field, value, message):
    from small.errors import UnsupportedError
    from train.finetune import FinetuneOptions

    with pytest.raises(UnsupportedError, match=message):
        FinetuneOptions(**{field: value}).validate()
