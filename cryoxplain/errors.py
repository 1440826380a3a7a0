"""Error hierarchy.

Every error a *user* can cause (bad file, wrong shape, NaN data, unknown plugin, model/data
mismatch, an output that already exists) raises a :class:`CryoxplainError` subclass whose message
says what is wrong and how to fix it.  The CLI prints the message on one line and exits with
status 2; programming errors propagate as ordinary exceptions.
"""


class CryoxplainError(Exception):
    """Base class of all user-facing errors."""

    exit_code = 2


class InputFileError(CryoxplainError):
    """An input file is missing, unreadable, malformed or holds unusable data."""


class OutputExistsError(CryoxplainError):
    """An output file exists and ``force`` was not given."""


class OutputLocationError(CryoxplainError):
    """An output cannot be written where asked: a full disk, a read-only or unwritable folder."""


class ParameterError(CryoxplainError):
    """A parameter value is out of range, of the wrong type or inconsistent with another."""


class ShapeError(CryoxplainError):
    """Arrays or stacks have incompatible shapes."""


class ModelFileError(CryoxplainError):
    """A model file is missing, corrupted, of an unknown architecture or not a cryoxplain model."""


class PluginError(CryoxplainError):
    """An explainer plugin is unknown, failed to load or was given bad parameters."""


class DeviceError(CryoxplainError):
    """The requested compute device is not available."""


class FileQuirkWarning(UserWarning):
    """A file written by another tool departs from the standard in a known, harmless way (e.g. an
    MRC header without the ``MAP `` identifier); it is read, and the warning says how."""


class TrainingDivergedError(ParameterError):
    """Training produced a non-finite loss, parameter or validation value and was stopped (no
    model is written; the last good checkpoint is kept)."""


class TrainingInterrupted(CryoxplainError, KeyboardInterrupt):
    """Training was interrupted (Ctrl-C); the message says which checkpoint ``resume`` continues
    from.  Still a :class:`KeyboardInterrupt`, so ``except KeyboardInterrupt`` catches it."""

    exit_code = 130
