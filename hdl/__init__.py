"""Amaranth generators for SMALL chips: event layouts, tiles, router, chip, host bridge, export.

``hdl.events`` builds the Amaranth ``data.StructLayout``s of the chip's events from the
pure-data field lists of ``compiler/events.py`` (the compiler itself imports no Amaranth). The
generators elaborate only when a chip is built or simulated. ``hdl`` imports neither ``sim`` nor
``analog_models``: checking the RTL against the simulators is ``verify/``'s business.
"""
