"""Reversed devices in fault maps, and what the analog simulator makes of them; drift compensation."""

import json
import re

import numpy as np
import pytest

from compiler.faults import FaultMap, load_faults, random_faults, save_faults
from compiler.ir import LIF, Input, Network, Population, Projection
from compiler.mapper import CompileOptions, compile_network
from small.cli import main
from small.errors import FileFormatError, SimulationError
from sim.analog import AnalogSimulator


def test_a_map_without_reversed_devices_is_the_version_1_file_it_always_was(tmp_path):
    fmap = random_faults(2, 8, 8, 0.2, seed=3)
    again = random_faults(2, 8, 8, 0.2, seed=3, reversed_rate=0.0)
    assert np.array_equal(fmap.stuck, again.stuck) and again.factor is None
    doc = fmap.to_json()
    assert doc["version"] == 1 and "reversed" not in doc
    save_faults(fmap, tmp_path / "chip.json")
    assert np.array_equal(load_faults(tmp_path / "chip.json").stuck, fmap.stuck)


def test_reversed_devices_round_trip_with_their_factors(tmp_path):
    fmap = random_faults(4, 16, 16, 0.3, seed=1, reversed_rate=0.3)
    n = fmap.stuck.size
    assert abs((fmap.stuck >= 0).sum() / n - 0.3) < 0.03 and abs(fmap.reversed.sum() / n - 0.3) < 0.03
    assert not np.any(fmap.reversed & (fmap.stuck >= 0))
    factors = fmap.factor[fmap.reversed]
    assert factors.min() >= -2 and factors.max() <= -0.1 and abs(factors.mean() + 1) < 0.05
    save_faults(fmap, tmp_path / "chip.json")
    back = load_faults(tmp_path / "chip.json")
    assert json.loads((tmp_path / "chip.json").read_text())["version"] == 2
    assert np.array_equal(back.stuck, fmap.stuck) and np.array_equal(back.factor, fmap.factor)


def doc(reversed_entries, stuck=(), version=2):
    return {"format": "small-faults", "version": version, "geometry": {"tiles": 1, "rows": 4, "cols": 4},
            "stuck": list(stuck), "reversed": reversed_entries}


@pytest.mark.parametrize("content, message", [
    (doc([[0, 1, 1, "pos", 0.5]]), "reversed[0][4] must be < 0"),
    (doc([[0, 1, 1, "pos", -1.0]], stuck=[[0, 1, 1, "pos", "high"]]), "is also listed as stuck"),
    (doc([[0, 1, 1, "pos", -1.0], [0, 1, 1, "pos", -0.5]]), "name the same device"),
    (doc([[0, 4, 1, "neg", -1.0]]), "lies outside the geometry"),
    (doc([[0, 1, 1, "neg", -1.0]], version=1), "reversed devices need version 2"),
])
def test_a_bad_reversed_entry_is_refused_in_one_line(tmp_path, content, message):
    (tmp_path / "chip.json").write_text(json.dumps(content))
    with pytest.raises(FileFormatError, match=re.escape(message)):
        load_faults(tmp_path / "chip.json")


def test_faults_random_makes_reversed_devices(tmp_path, capsys):
    assert main(["faults", "random", "--stuck", "0.3", "--reversed", "0.3", "--tiles", "2", "--tile", "16x16",
                 "-o", str(tmp_path / "chip.json")]) == 0
    assert "reversed" in capsys.readouterr().out
    assert load_faults(tmp_path / "chip.json").reversed.mean() > 0.25
    assert main(["faults", "random", "--stuck", "0.7", "--reversed", "0.4", "-o", str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err
    assert "plus reversed rate" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad.json").exists()


def tiny_image(fmap=None):
    rng = np.random.default_rng(0)
    net = Network(name="tiny", dt=1e-3, inputs=[Input("x", (6,))],
                  populations=[Population("h", 5, LIF(alpha=0.9, v_threshold=1.0))],
                  projections=[Projection("x", "h", rng.normal(0, 0.5, (5, 6)))], outputs={"y": "h"})
    return compile_network(net, CompileOptions(target="memristive", rows=8, cols=8, levels=8, faults=fmap,
                                               fault_aware=False)).image


def test_reversed_devices_end_programming_at_g_min_and_the_compiler_knows_it():
    stuck = np.full((1, 8, 8, 2), -1, np.int8)
    factor = np.ones((1, 8, 8, 2))
    factor[0, :, :4, 0] = -1.0  # the positive devices of columns 0-3 are reversed
    reversed_map = FaultMap(stuck, factor)
    image = tiny_image(reversed_map)
    assert np.all(image.arrays["stuck_pos"][0, :, :4] == 0) and np.all(image.arrays["stuck_pos"][0, :, 4:] == -1)
    a = AnalogSimulator(image, device="ideal", faults=reversed_map, noise=False)
    assert np.allclose(a.g_pos[0, :, :4], a.g_min)
    # an image compiled without the map: the simulator given the map still runs them into G_min
    plain_image = tiny_image(FaultMap(stuck))
    b = AnalogSimulator(plain_image, device="ideal", faults=reversed_map, noise=False)
    assert np.allclose(b.g_pos[0, :, :4], b.g_min) and np.allclose(b.g_pos[0, :, 4:], a.g_pos[0, :, 4:])
    healthy = AnalogSimulator(plain_image, device="ideal", faults=FaultMap(stuck), noise=False)
    plain = AnalogSimulator(plain_image, device="ideal", noise=False)
    assert np.array_equal(healthy.g_pos, plain.g_pos)
    # the random open-loop reversal keeps its mirror image
    mirror = AnalogSimulator(plain_image, device="ideal", reversed_fraction=1.0, noise=False)
    assert np.allclose(mirror.g_pos, mirror.g_max + mirror.g_min - plain.g_pos)


def test_a_fault_map_for_another_chip_is_refused():
    image = tiny_image()
    with pytest.raises(SimulationError, match="fault map is for 1 tiles of 4x4"):
        AnalogSimulator(image, device="ideal", faults=FaultMap(np.full((1, 4, 4, 2), -1, np.int8)))


def test_drift_compensation_brings_a_day_old_pcm_chip_back_to_its_programmed_weights():
    image = tiny_image()
    fresh = AnalogSimulator(image, device="pcm", t_read=25.0, seed=1, noise=False)
    old = AnalogSimulator(image, device="pcm", t_read=86400.0, seed=1, noise=False)
    comp = AnalogSimulator(image, device="pcm", t_read=86400.0, seed=1, noise=False, drift_compensation="column")
    tile = AnalogSimulator(image, device="pcm", t_read=86400.0, seed=1, noise=False, drift_compensation="tile")
    w0 = fresh.dense_weights()
    err = {k: np.abs(s.dense_weights() - w0).sum() for k, s in (("none", old), ("column", comp), ("tile", tile))}
    assert err["column"] < 0.5 * err["none"] and err["tile"] < 0.5 * err["none"]
    assert np.all(comp.compensation >= 1)  # PCM's conductances only fall
    off = AnalogSimulator(image, device="pcm", t_read=86400.0, seed=1, noise=False, drift_compensation=None)
    assert np.array_equal(off.dense_weights(), old.dense_weights())
    with pytest.raises(SimulationError, match="drift_compensation must be one of"):
        AnalogSimulator(image, drift_compensation="global")


def l2l_chip(**kw):
    from l2l.hardware import ChipDevices
    from l2l.learner import LearnerSpec

    spec = LearnerSpec(n_clock=5, n_lif=4, n_alif=4, levels=17, tile=8)
    x = spec.initial(0)
    src, tgt, val, _ = spec.synapses(x)
    return ChipDevices(spec.network(x), (src, tgt, val), "tiox", levels=spec.levels, rows=spec.tile, cols=spec.tile,
                       seed=0, **kw)


def test_l2l_writes_move_reversed_devices_the_wrong_way_and_leave_stuck_ones():
    plain = l2l_chip()
    tiles = int(plain.image.meta["chip_tiles"])
    stuck = np.full((tiles + 2, 8, 8, 2), -1, np.int8)
    stuck[..., 0, 0] = 1  # every tile's row 0 x column 0 positive device stuck high
    factor = np.full(stuck.shape, -1.0)
    factor[stuck >= 0] = 1.0
    chip = l2l_chip(faults=FaultMap(stuck, factor))
    chip.reset(1)
    reversed_ = chip.factor != 1
    assert reversed_.any() and np.allclose(chip.g[0][reversed_], chip.g_min, rtol=0.05)  # into G_min (1 % write noise)
    device = chip.device
    chip.device = type(device)(device.name, device.g_min, device.g_max)  # noise-free
    mid = 0.5 * (chip.g_min + chip.g_max)
    chip.g[0][reversed_] = mid  # as if in the middle of the range: a requested change shows its direction
    g_before = chip.g.copy()
    written = chip.write(np.full((1, chip.q.shape[1]), 2.0))
    target = chip.g_min + np.stack([np.maximum(chip.q, 0), np.maximum(-chip.q, 0)], axis=1) * chip.dG
    moved = written & reversed_[None] & (np.abs(target - g_before) > 0)
    inside = moved & (chip.g > chip.g_min) & (chip.g < chip.g_max)
    assert inside.any()
    assert np.allclose((chip.g - g_before)[inside], -(target - g_before)[inside])  # factor -1: the wrong way
    held = np.broadcast_to(chip.stuck[None] >= 0, chip.g.shape)
    assert held.any() and np.array_equal(chip.g[held], g_before[held])


def test_l2l_drift_compensation_restores_pcm_weights():
    from l2l.hardware import ChipDevices
    from l2l.learner import LearnerSpec

    spec = LearnerSpec(n_clock=5, n_lif=4, n_alif=4, levels=17, tile=8)
    x = spec.initial(0)
    src, tgt, val, _ = spec.synapses(x)
    chips = [ChipDevices(spec.network(x), (src, tgt, val), "pcm", levels=17, rows=8, cols=8, seed=0,
                         drift_compensation=c) for c in (False, True)]
    w = []
    for chip in chips:
        chip.reset(1)
        chip.device = type(chip.device)(chip.device.name, chip.device.g_min, chip.device.g_max,
                                        drift=chip.device.drift, exponents=chip.device.exponents)
        w0 = chip.weights(0.0)[0, chip.sites.rho, chip.sites.k]
        w.append((w0, chip.weights(86400.0)[0, chip.sites.rho, chip.sites.k]))
    err_plain = np.abs(w[0][1] - w[0][0]).sum()
    err_comp = np.abs(w[1][1] - w[1][0]).sum()
    assert err_comp < 0.5 * err_plain
