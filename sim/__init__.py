"""SMALL simulators: ``reference`` (float ground truth), ``digital`` (bit-exact twin),
``memristive`` (ideal devices) and ``analog`` (device-level)."""


def chip_simulator(image, analog: str = "ideal"):
    """The simulator of a compiled image: the digital twin, or for a memristive image its tiles
    with ideal devices (``analog="ideal"``) or a device's conductances (``"pcm"``, ``"tiox"``,
    as :class:`sim.analog.AnalogSimulator` draws them; ``"pcm@86400+column"``: read a day after
    programming, drift-compensated as the chip does, :func:`sim.analog.analog_spec`)."""
    if image.target == "digital":
        from .digital import DigitalSimulator

        return DigitalSimulator(image)
    if analog == "ideal":
        from .memristive import IdealMemristiveSimulator

        return IdealMemristiveSimulator(image)
    from .analog import AnalogSimulator, analog_spec

    return AnalogSimulator(image, **analog_spec(analog), digital_scale=True)
