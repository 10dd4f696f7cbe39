"""SMALL compiler: the network IR, its file format, NIR import/export and (later) the passes
that map a network onto memristive crossbar tiles.

Pure data lives here: nothing in this package imports Amaranth, PySpice or torch.
"""

from .errors import FileFormatError, NetworkError, SimulationError, SmallError, SmallWarning, UnsupportedError
from .ir import ALIF, IF, LI, LIF, CubaLIF, Input, Network, NeuronModel, Population, Projection

__all__ = [
    "ALIF", "IF", "LI", "LIF", "CubaLIF", "Input", "Network", "NeuronModel", "Population",
    "Projection", "SmallError", "NetworkError", "FileFormatError", "UnsupportedError",
    "SimulationError", "SmallWarning",
]
