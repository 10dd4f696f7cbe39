"""Verification of generated chips under real HDL simulators (cocotb 2.x, Icarus and Verilator).

``model`` (reference transactions from ``sim/``), ``testbench`` (the cocotb test module:
driver, monitors, scoreboard), ``runner`` (build and run through ``cocotb_tools.runner``).
"""
