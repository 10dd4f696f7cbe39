"""Device and circuit models of the analog side (memristors, crossbars, analog neurons).

Empty until the analog-models stage lands; PySpice is imported only inside it.
"""
