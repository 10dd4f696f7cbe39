"""The network IR rejects malformed networks with clear messages and survives its file format."""

import hashlib
import zipfile

import numpy as np
import pytest
import scipy.sparse as sp

from small.errors import FileFormatError, NetworkError
from compiler.ir import ALIF, LI, LIF, CubaLIF, Input, Network, Population, Projection
from compiler.netfile import load_network, save_network


def small_net(**changes):
    pops = [
        Population("h", 3, LIF(alpha=[0.9, 0.8, 0.7], v_threshold=1.0, reset="subtract", refractory=2), bias=[0.1, 0, 0]),
        Population("a", 2, ALIF(alpha=0.9, alpha_adapt=0.95, adapt=0.1)),
        Population("o", 2, LI(alpha=0.5)),
    ]
    projs = [
        Projection("x", "h", np.ones((3, 4))),
        Projection("h", "h", sp.csr_array(np.eye(3)), delay=1),
        Projection("h", "a", np.ones((2, 3)), delay=2),
        Projection("a", "o", np.ones((2, 2))),
    ]
    kw = dict(name="t", dt=1e-3, inputs=[Input("x", (4,))], populations=pops, projections=projs, outputs={"y": "o"})
    kw.update(changes)
    return Network(**kw)


def test_valid_network_and_update_order():
    net = small_net().validate()
    assert net.update_order() == ["h", "a", "o"]
    assert net.n_neurons == 7 and net.n_synapses == 12 + 3 + 6 + 4


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda n: n.projections.__setitem__(0, Projection("x", "h", np.ones((3, 5)))), r"weight has shape \[3, 5\], expected"),
        (lambda n: n.projections.__setitem__(0, Projection("x", "h", np.full((3, 4), np.nan))), "NaN or Inf"),
        (lambda n: n.projections.append(Projection("ghost", "h", np.ones((3, 1)))), "source 'ghost' is not"),
        (lambda n: n.projections.append(Projection("h", "x", np.ones((4, 3)))), "inputs cannot be targets"),
        (lambda n: n.outputs.update(z="nowhere"), "output 'z' refers to 'nowhere'"),
        (lambda n: setattr(n.populations[0].neuron, "alpha", np.array([0.9, 1.5, 0.7])), "above 1"),
        (lambda n: setattr(n.populations[0].neuron, "alpha", np.array([0.9, 0.8])), r"shape \[2\].*3 neurons"),
        (lambda n: setattr(n.populations[0].neuron, "v_threshold", np.inf), "NaN or Inf"),
        (lambda n: setattr(n.populations[0].neuron, "refractory", -1), "below 0"),
        (lambda n: setattr(n.populations[0].neuron, "reset", "bounce"), "reset must be one of"),
        (lambda n: setattr(n.populations[0], "bias", np.ones(5)), "bias has shape"),
        (lambda n: n.projections.append(Projection("a", "a", np.ones((2, 2)))), "delay 0 form a cycle"),
        (lambda n: n.projections.append(Projection("o", "a", np.ones((2, 2)), delay=1)), "non-spiking"),
        (lambda n: n.populations.append(Population("h", 1, LIF())), "used by two nodes"),
        (lambda n: setattr(n, "dt", -1.0), "dt must be a positive"),
    ],
)
def test_invalid_networks_are_rejected_with_the_reason(change, message):
    net = small_net()
    change(net)
    with pytest.raises(NetworkError, match=message):
        net.validate()


def test_negative_delay_and_fractional_delay_are_rejected():
    with pytest.raises(NetworkError, match="whole number of steps"):
        Projection("x", "h", np.ones((3, 4)), delay=1.5)
    net = small_net()
    net.projections[1].delay = -1
    with pytest.raises(NetworkError, match="negative"):
        net.validate()


def test_dict_round_trip_is_exact():
    net = small_net()
    again = Network.from_dict(net.to_dict())
    assert net.differences(again) == []
    assert again.projections[1].is_sparse


def test_file_round_trip_is_exact_and_byte_reproducible(tmp_path):
    net = small_net(populations=small_net().populations[:1] + [
        Population("a", 2, CubaLIF(alpha=0.9, alpha_syn=[0.5, 0.6])), Population("o", 2, LI(alpha=0.5))])
    a, b = tmp_path / "a.small", tmp_path / "b.small"
    save_network(net, a)
    save_network(load_network(a), b)
    assert load_network(a).differences(net) == []
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()


def test_a_file_keeps_the_order_of_the_outputs(tmp_path):
    """The outputs' order is the order of the output array (and of a classifier's classes), not alphabetical."""
    net = small_net()
    pops = [p.name for p in net.populations]
    net.outputs = {"zeta": pops[-1], "alpha": pops[0]}
    save_network(net, tmp_path / "n.small")
    assert list(load_network(tmp_path / "n.small").outputs) == ["zeta", "alpha"]


def test_saving_an_invalid_network_writes_nothing(tmp_path):
    net = small_net()
    net.projections[0].weight[0, 0] = np.nan
    with pytest.raises(NetworkError):
        save_network(net, tmp_path / "bad.small")
    assert list(tmp_path.iterdir()) == []


def test_corrupt_network_files_are_rejected(tmp_path):
    good = tmp_path / "good.small"
    save_network(small_net(), good)
    truncated = tmp_path / "truncated.small"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(FileFormatError, match="not a readable .npz"):
        load_network(truncated)
    text = tmp_path / "text.small"
    text.write_text("hello")
    with pytest.raises(FileFormatError):
        load_network(text)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    with pytest.raises(FileFormatError, match="not a SMALL network file"):
        load_network(other)
    # A well-formed archive whose content breaks the IR's rules is refused too.
    tampered = tmp_path / "tampered.small"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(tampered, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("projections/0/weight.npy"):
                arr = np.full((3, 4), np.nan)
                import io

                buf = io.BytesIO()
                np.save(buf, arr)
                data = buf.getvalue()
            dst.writestr(item, data)
    with pytest.raises(FileFormatError, match="NaN"):
        load_network(tampered)
