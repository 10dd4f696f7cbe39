"""SMALL's exception tree for everything from the network IR to the HardwareImage.

The command line maps every :class:`SmallError` to exit status 2 and prints its message as
one line, without a traceback: these are mistakes in the user's input, and the message names
the problem and the fix. Anything else escaping is a bug in SMALL and keeps its traceback.
"""


class SmallError(Exception):
    """Base of all errors that the user can fix (bad files, bad options, bad networks)."""


class NetworkError(SmallError):
    """A network that breaks the IR's rules: shapes, values, names, references, cycles."""


class FileFormatError(SmallError):
    """A file that cannot be read: truncated, not the expected format, or inconsistent."""


class UnsupportedError(SmallError):
    """Valid input that SMALL does not handle (an unknown NIR node type, say)."""


class SimulationError(SmallError):
    """A simulation request that does not fit the network: input shapes, missing inputs."""


class SmallWarning(UserWarning):
    """Something the user should know that does not stop the run (a corrected unit error)."""
