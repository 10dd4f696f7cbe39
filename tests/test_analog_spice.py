"""analog_models/spice.py: the one ngspice backend. Failures carry ngspice's own reason."""

import subprocess
import sys

import pytest

from analog_models.spice import SpiceError, simulate
from small.errors import SmallError

pytestmark = pytest.mark.spice


def test_an_operating_point_and_a_transient():
    op = simulate("divider\nVin a 0 2\nR1 a b 1k\nR2 b 0 3k\n", ".op")
    assert op["b"][0] == pytest.approx(1.5) and op["vin#branch"][0] == pytest.approx(-0.5e-3)
    tr = simulate("rc\nVin a 0 1\nR1 a b 1k\nC1 b 0 1n ic=0\n", ".tran 10n 5u uic")  # from rest
    assert tr["time"][-1] == pytest.approx(5e-6, rel=1e-9) and tr["b"][-1] == pytest.approx(1 - 2.718281828 ** -5, rel=1e-3)


@pytest.mark.parametrize("deck,reason", [
    ("two sources\nVx a 0 1\nVy a 0 2\n", "singular matrix"),        # no DC solution
    ("bad\nVin a 0 1\nX1 a 0 nosuch\n", "unknown subckt"),
    ("bad\nVin a 0 1\nD1 a 0 nomodel\n", "circuit not parsed"),
])
def test_failures_name_the_reason_and_are_user_errors(deck, reason):
    with pytest.raises(SpiceError, match=reason) as info:
        simulate(deck, ".op")
    assert isinstance(info.value, SmallError)  # the CLI's exit 2, one line
    # and the backend is usable again afterwards
    assert simulate("ok\nVin a 0 1\nR1 a 0 1k\n", ".op")["a"][0] == pytest.approx(1.0)


def test_importing_the_analog_models_starts_no_ngspice():
    code = ("import sys, analog_models.spice, analog_models.crossbar, analog_models.devices, analog_models.neuron, "
            "sim.analog; print(any(m.startswith('PySpice') for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
