"""SMALL — Spiking Memristive Architectures for Learning to Learn: the command line and flow."""

__version__ = "0.1.0"
