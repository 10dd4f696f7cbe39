"""The memory budget: how much one SMALL run may allocate for what a file or an option declares.

Sizes read from a file (NIR shapes, ``.npy``/``.npz`` headers) or an option (``--tile``) are
checked against :func:`memory_budget` *before* anything of that size is allocated, so a 200-byte
file that declares terabytes is refused in one line instead of exhausting the machine. The budget
is half of the machine's memory unless ``SMALL_MAX_MEMORY_GIB`` says otherwise. Base module:
standard library and :mod:`small.errors` only.
"""

from __future__ import annotations

import os

from .errors import SmallError

#: The environment variable that sets the budget, in GiB (a positive number, e.g. ``12`` or ``0.5``).
MEMORY_ENV = "SMALL_MAX_MEMORY_GIB"
#: The default budget as a fraction of the machine's memory: room for the run's other arrays.
DEFAULT_FRACTION = 0.5
#: Bytes one cell (row x column of a tile) of a HardwareImage costs while it is compiled and
#: simulated: the int16 levels and their physical copy, used-flags and a float64 conductance.
CELL_BYTES = 16
#: Bytes one neuron costs from import to image: its parameters, bias and per-neuron columns.
NEURON_BYTES = 256
#: Bytes one synapse costs while a network is imported and compiled (sparse entry, target, key, level).
SYNAPSE_BYTES = 64
#: Bytes one kernel tap at one output position costs while a convolution is unrolled (its index grids).
TAP_BYTES = 96
_GIB = 2**30


def machine_memory() -> int:
    """The machine's physical memory in bytes (``os.sysconf``; 8 GiB where it cannot be read)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 * _GIB


def memory_budget() -> int:
    """The bytes one run may allocate for a declared size: ``SMALL_MAX_MEMORY_GIB`` GiB if set,
    else :data:`DEFAULT_FRACTION` of :func:`machine_memory`."""
    text = os.environ.get(MEMORY_ENV, "").strip()
    if not text:
        return int(machine_memory() * DEFAULT_FRACTION)
    try:
        gib = float(text)
    except ValueError:
        gib = float("nan")
    if not gib > 0 or gib == float("inf"):
        raise SmallError(f"{MEMORY_ENV}={text!r} is not a positive number of GiB (e.g. {MEMORY_ENV}=8)")
    return int(gib * _GIB)


def size_text(nbytes: float) -> str:
    """``nbytes`` for a reader: ``'3.1 GiB'``, ``'2.0e+09 GiB'``."""
    for unit, scale in (("GiB", _GIB), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            value = nbytes / scale
            return f"{value:.3g} {unit}" if value < 1e6 else f"{value:.1e} {unit}"
    return f"{int(nbytes)} bytes"


def check_memory(nbytes: float, what: str, *, error: type[Exception] = SmallError) -> None:
    """Raise ``error`` if ``what`` (e.g. ``"array 'x' of shape [64, 1000000000] float64"``) would
    need more than :func:`memory_budget` bytes; the message names both sizes and how to raise the
    budget where the machine could hold it."""
    budget = memory_budget()
    if nbytes <= budget:
        return
    total = machine_memory()
    if nbytes > total:
        raise error(f"{what} needs {size_text(nbytes)}, more than this machine's {size_text(total)} of memory")
    raise error(f"{what} needs {size_text(nbytes)}, more than SMALL's memory limit of {size_text(budget)}: "
                f"set {MEMORY_ENV}={-(-nbytes // _GIB):.0f} (GiB) to allow it")
