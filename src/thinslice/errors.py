"""The exception hierarchy of thinslice.

Every error a user can cause is a :class:`ThinsliceError`; the CLI maps them to
exit code 2 and prints the message as one line. Anything else is a bug.
"""

from __future__ import annotations


class ThinsliceError(Exception):
    """Base class: a problem the user can act on. The message says what and how."""

    exit_code = 2


class InputError(ThinsliceError):
    """The input image or folder cannot be used (missing, corrupt, unsupported geometry)."""


class OutputError(ThinsliceError):
    """The output cannot be written where asked (exists, read-only, same as input)."""


class ModelError(ThinsliceError):
    """A checkpoint is missing, foreign, corrupt or incompatible."""


class ConfigError(ThinsliceError):
    """An option or configuration value is invalid."""


class ResourceError(ThinsliceError):
    """The job does not fit in the memory available."""


class BatchError(ThinsliceError):
    """Some cases of a batch failed (each is in the report with its reason); the rest were written."""
