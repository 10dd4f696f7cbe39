"""SMALL simulators: ``reference`` (float ground truth) now; ``digital`` (bit-exact twin) and
``analog`` (device-level) join it in later stages."""
