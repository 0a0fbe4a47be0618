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


class Interrupted(BaseException):  # noqa: N818 - named for what happened, like KeyboardInterrupt
    """SIGINT or SIGTERM arrived. The CLI's signal handler raises it so that every cleanup
    (partial files, the trainer's last checkpoint) runs; it exits with ``128 + signal``
    (130, 143). Whoever keeps something on the way out says so in :attr:`kept`.
    """

    def __init__(self, signum: int, name: str) -> None:
        super().__init__(name)
        self.signum = signum
        self.name = name
        self.exit_code = 128 + signum
        self.kept: str | None = None
