"""The one place SMALL talks to ngspice: PySpice's shared-library backend, started on first use.

Every SPICE simulation in SMALL goes through :func:`simulate`: it takes a netlist (the text of a
PySpice ``Circuit``, or any SPICE deck) and an analysis line (``.op``, ``.tran 1n 10u``, ``.dc
...``), runs it in ngspice (Debian's ngspice 39 through ``libngspice0-dev``'s shared library), and
returns every vector of the result as float64 numpy arrays keyed by lower-case name (``v(n1)``,
``i(vin)`` as ngspice spells branch currents: ``vin#branch``, and ``time`` for a transient).

Nothing here starts ngspice at import time. A simulation that ngspice cannot finish (no
convergence, a singular matrix, an unknown model) raises :class:`SpiceError` with ngspice's own
message; a missing shared library raises :class:`NgspiceMissingError` naming the package.
"""

from __future__ import annotations

import logging
import re
import threading

import numpy as np

from small.errors import SmallError


class SpiceError(SmallError):
    """ngspice could not simulate the circuit (convergence failure, a bad netlist)."""


class NgspiceMissingError(SpiceError):
    pass


_lock = threading.Lock()  # one ngspice instance per process, and it is not re-entrant
_instance = None


def ngspice():
    """The process's ngspice shared-library instance (created on first use)."""
    global _instance
    if _instance is None:
        # PySpice logs every ngspice line and warns that ngspice 39 is "unsupported" (it works)
        for name in ("PySpice", "PySpice.Spice.NgSpice.Shared"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        try:
            from PySpice.Spice.NgSpice.Shared import NgSpiceShared

            _instance = NgSpiceShared.new_instance()
        except (OSError, ImportError) as exc:
            raise NgspiceMissingError(f"cannot load ngspice's shared library ({exc}): `make install` "
                                      "(or `apt install ngspice libngspice0-dev`)") from None
    return _instance


_ERROR_LINES = re.compile(r"(error|singular|timestep too small|no convergence|failed|unknown)", re.I)


def simulate(netlist: str, analysis: str, *, options: str = "") -> dict[str, np.ndarray]:
    """Run ``analysis`` on ``netlist`` in ngspice; every result vector, by lower-case name.

    ``netlist`` is a deck without its analysis and ``.end`` lines (``str(circuit)`` of a PySpice
    ``Circuit`` is one); ``options`` an optional ``.options`` line's content. Node voltages are
    keyed by node name (``"out"``), source currents as ``"vin#branch"``, transient time as
    ``"time"``.
    """
    lines = [line for line in netlist.strip().splitlines() if line.strip().lower() != ".end"]
    if options:
        lines.append(f".options {options}")
    lines += [analysis, ".end"]
    with _lock:
        ng = ngspice()
        try:
            ng.destroy()  # the previous results
            ng.remove_circuit()
        except Exception:  # noqa: BLE001 - nothing loaded yet
            pass
        log = []  # PySpice clears ngspice's output before each command: keep the loader's
        try:
            ng.load_circuit("\n".join(lines))
            log += [ng.stdout, ng.stderr]
            ng.run()
        except Exception as exc:  # PySpice raises NameError subclasses for ngspice failures
            raise SpiceError(_describe(log + [ng.stdout, ng.stderr], f"ngspice failed ({exc})")) from None
        name = ng.last_plot
        if name == "const":  # no analysis ran
            raise SpiceError(_describe(log + [ng.stdout, ng.stderr], "ngspice produced no result"))
        plot = ng.plot(None, name)
        return {key.lower(): np.real(np.asarray(vector._data)).astype(np.float64) for key, vector in plot.items()}


def _describe(log: list[str], what: str) -> str:
    """``what`` plus the error lines of ngspice's output ``log``."""
    errors = [line.strip() for text in log for line in text.splitlines() if _ERROR_LINES.search(line)]
    return what + (": " + " | ".join(dict.fromkeys(errors[:4])) if errors else "")
