"""Exceptions raised by MedFusionLib.

Every error the library raises on purpose derives from :class:`FusionError`, so a caller (the Slicer
panel, the command line) can show its message to the user and treat anything else as a bug.
"""


class FusionError(Exception):
    """Base class of the errors MedFusionLib raises on purpose."""


class FusionInputError(FusionError, ValueError):
    """Bad input: wrong shapes or dtypes, non-finite values, unknown methods or parameters.

    Raised before any work starts; the message says what was wrong and what is allowed.
    """


class FusionCancelled(FusionError):
    """The caller cancelled a long call through its cancel token; nothing partial was returned or
    written."""


class WeightsError(FusionError):
    """Model weights are missing or unreadable; the message names the command that trains them."""


class RegistrationError(FusionError):
    """Registering an input onto the reference failed (no overlap, too few samples, no improvement): the
    inputs are not fused; the message says what failed."""
