"""Verification of generated chips against the simulators of ``sim/``.

Above both ``sim`` and ``hdl`` in the layers (``docs/code-map.md``), using only ``sim``'s public
API (``ChipSimulator.run``, and ``encode_inputs``, ``initial_state``, ``step`` to play neurons
one step at a time):

``model``
    the reference side: the commands of every chip step and the events each step must produce,
    from one run of the image's simulator; codecs of the ``hdl.events`` layouts;
``testbench``
    the cocotb test module (cocotb 2.x under Icarus or Verilator): driver, monitors, probe,
    scoreboard, UART frames;
``harness``
    a thin Verilog wrapper around the generated chip that plays whole batches of host commands
    from a memory and collects the events into memories, so that the testbench wakes once per
    batch instead of every clock cycle;
``runner``
    builds the generated Verilog (inside the harness) and runs the testbench through
    ``cocotb_tools.runner``, optionally sharing the samples out over several simulator processes;
``simulate``
    the Amaranth-simulator driver: a generated :class:`~hdl.chip.Chip` run as a host drives it,
    compared with the digital twin (the block-level tests and ``bench/hdl.py``);
``host``
    the host library: a chip behind a serial port (pyserial), its ID checked, an image loaded
    with host protocol v2 frames, samples run;
``serial_sim``, ``serial_tb``
    a simulated board: a design's UART pins under Verilator behind a pseudo-terminal;
``analog``
    the analog side of a memristive chip's tiles (devices and neurons from ``sim/memristive.py``
    or ``sim/analog.py``), attached to the chip's analog ports.
"""
