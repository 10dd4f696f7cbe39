"""Amaranth generators for SMALL chips (spike router, digital-twin tiles, host bridge).

Empty until the HDL stage lands; it will import Amaranth, which the rest of SMALL never does.
"""
