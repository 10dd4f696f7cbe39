"""Amaranth generators for SMALL chips: event layouts, tiles, router, chip, host bridge, export.

``hdl.events`` is pure data (``amaranth.lib.data`` layouts) and is what the compiler imports
for its report; the generators elaborate only when a chip is built or simulated.
"""
