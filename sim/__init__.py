"""SMALL simulators: ``reference`` (float ground truth), ``digital`` (bit-exact twin),
``memristive`` (ideal devices) and ``analog`` (device-level)."""


def chip_simulator(image, analog: str = "ideal"):
    """The simulator of a compiled image: the digital twin, or for a memristive image its tiles
    with ideal devices (``analog="ideal"``) or a device's conductances (``"pcm"``, ``"tiox"``,
    as :class:`sim.analog.AnalogSimulator` draws them)."""
    if image.target == "digital":
        from .digital import DigitalSimulator

        return DigitalSimulator(image)
    if analog == "ideal":
        from .memristive import IdealMemristiveSimulator

        return IdealMemristiveSimulator(image)
    from .analog import AnalogSimulator

    return AnalogSimulator(image, device=analog)
