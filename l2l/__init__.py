"""Learning to learn with the simulated hardware in the loop (outer-loop optimisers, e-prop).

Empty until the learning-to-learn stage lands.
"""
