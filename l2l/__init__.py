"""Learning to learn with the compiled, simulated hardware in the loop.

``optimizers`` (CMA-ES, cross-entropy, genetic algorithm, evolution strategies, with ask/tell
and checkpoints), ``tasks`` (the task families: functions, ALIF hyper-parameters, the one-shot
robot arm), ``hardware`` (the devices of a simulated chip, one state per task, and device
writes), ``eprop`` (the inner loop's weight update), ``learner`` (one-shot learning of a task),
``runner`` (local or remote Dask evaluation), ``loop`` (the resumable outer loop), ``config``
and ``fields`` (the TOML configuration) and ``evaluate`` (a meta-trained model on unseen tasks).

Above ``verify`` in the layers: it uses ``compiler`` and ``sim``, never the command line.
"""
