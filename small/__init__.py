"""SMALL — Spiking Memristive Architectures for Learning to Learn.

This package is both ends of the layers (``docs/code-map.md``): at the bottom the base modules
every package may import (:mod:`small.errors`, the exception tree; :mod:`small.fileio`, atomic
file output; ``__version__``), at the top the flow (:mod:`small.flow`), the report and sweep,
and the command line (:mod:`small.cli`). Importing it imports nothing else.
"""

__version__ = "0.1.0"
