"""Device and circuit models of the analog side, in numpy and in ngspice through PySpice.

``devices`` (memristor models: HP linear ion drift, VTEAM, PCM, TiOx RRAM), ``crossbar`` (a
crossbar with wire resistance: ngspice deck and the nodal model), ``neuron`` (the analog LIF
circuit and its fit), ``spice`` (the shared-library ngspice backend), ``calibration`` (figures
the compiler and ``sim/analog.py`` consume) and ``energy`` (pJ per read pulse and spike).

Device physics knows no networks: this package imports no other SMALL package but the base
(:mod:`small.errors`, :mod:`small.fileio`). PySpice is imported only inside the functions that
run ngspice. SPICE decks of compiled tiles are written by :mod:`sim.tile_netlist`.
"""
