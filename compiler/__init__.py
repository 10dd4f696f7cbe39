"""SMALL compiler: the network IR and its file format, NIR import and export, and the passes that
map a network onto crossbar tiles (quantise, partition, place around faults, route) into a
versioned :class:`~compiler.image.HardwareImage`.

Pure data lives here: nothing in this package imports Amaranth, PySpice, torch, ``sim`` or
``hdl``. Its errors are the base tree in :mod:`small.errors`.
"""

from .ir import ALIF, IF, LI, LIF, CubaLIF, Input, Network, NeuronModel, Population, Projection

__all__ = ["ALIF", "IF", "LI", "LIF", "CubaLIF", "Input", "Network", "NeuronModel", "Population", "Projection"]
