"""SMALL reproduces what snnTorch and Norse compute, through their own NIR exports.

Each fixture in tests/fixtures/ was exported by the real framework together with an input and
the framework's own spikes and membranes for every spiking layer (tests/fixtures/README.md,
made by tests/fixtures/make_fixtures.py, which needs torch and is not run here). The reference
simulation, reading the .nir file under the framework's convention, must give the same spikes.
Float32 rounding may flip a comparison where the membrane sits within rounding of the
threshold; the test allows exactly those steps, and reports which and how many.
"""

from pathlib import Path

import numpy as np
import pytest

from small.errors import SmallWarning
from compiler.nir_frontend import import_nir
from sim.reference import ReferenceSimulator

FIXTURES = Path(__file__).parent / "fixtures"
CASES = {
    "snntorch_leaky": "snntorch",
    "snntorch_rleaky": "snntorch",
    "snntorch_synaptic": "snntorch",
    "norse_lif": "norse",
    "norse_cubalif": "norse",
}
# |v - threshold| below which float32 rounding (frameworks) vs SMALL's arithmetic may disagree.
ROUNDING = 1e-5


def load_case(name):
    data = dict(np.load(FIXTURES / f"{name}.npz", allow_pickle=False))
    return data, FIXTURES / f"{name}.nir"


@pytest.mark.parametrize("name", sorted(CASES))
def test_reference_reproduces_the_framework(name, capsys):
    framework = CASES[name]
    data, path = load_case(name)
    if framework == "norse":
        with pytest.warns(SmallWarning, match="Norse 1.1's NIR exporter"):
            net = import_nir(path, framework=framework)
    else:
        net = import_nir(path, framework=framework)
    assert net.dt == float(data["dt"])
    result = ReferenceSimulator(net).run(data["x"], record_spikes=True, record_membrane=True)

    near_threshold = 0
    layers = [k[len("spk__"):] for k in data if k.startswith("spk__")]
    assert layers, "fixture has no recorded layers"
    for layer in layers:
        ours = result.spikes[layer]
        theirs = data[f"spk__{layer}"].astype(bool)
        differ = ours != theirs
        if differ.any():
            pop = net.population(layer)
            thr = np.broadcast_to(np.asarray(pop.neuron.v_threshold), (pop.size,))
            v = result.membrane[layer]
            gap = np.abs(v - thr)[differ]
            assert np.all(gap <= ROUNDING * np.maximum(1, np.abs(thr)[np.nonzero(differ)[2]])), (
                f"{name}/{layer}: {int(differ.sum())} spikes differ, some far from threshold (max gap {gap.max():.3g})"
            )
            near_threshold += int(differ.sum())
            where = [tuple(map(int, idx)) for idx in zip(*np.nonzero(differ))][:5]
            print(f"{name}/{layer}: {int(differ.sum())} spikes differ, all within {ROUNDING} of threshold: {where}")
    n_spikes = int(data["y"].sum())
    assert n_spikes > 0, "the fixture's output layer is silent: the comparison would prove nothing"
    if near_threshold == 0:
        np.testing.assert_array_equal(result.output_array(), data["y"])
    print(f"{name}: {n_spikes} output spikes, {near_threshold} near-threshold differences")
