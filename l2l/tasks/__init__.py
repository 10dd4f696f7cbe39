"""Task families for learning to learn: each draws tasks, gives the network's input and scores its output.

* :mod:`l2l.tasks.arm` -- a planar two-joint arm following smooth random trajectories.
"""
