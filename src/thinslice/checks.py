"""What a number given as an option may be, each rule stated once.

Every layer checks its own arguments (the Python API has no CLI in front of it), so the
same rule is applied in several places; these helpers keep its wording and its edge
cases (bool is not a count, NaN is not positive) the same everywhere. Each raises
:class:`~thinslice.errors.ConfigError` naming the option and the value it got.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from thinslice.errors import ConfigError


def is_whole(value: Any) -> bool:
    """True for a Python or numpy integer; False for bool, float and anything else."""
    return not isinstance(value, bool | np.bool_) and isinstance(value, int | np.integer)


def whole(value: Any, name: str, lo: int = 0, hi: int | None = None) -> int:
    """``value`` as an int when it is a whole number from ``lo`` to ``hi`` (no upper
    limit when None)."""
    if not is_whole(value) or value < lo or (hi is not None and value > hi):
        wanted = f"an integer from {lo} to {hi}" if hi is not None else f"a whole number >= {lo}"
        raise ConfigError(f"{name} must be {wanted}, got {value!r}")
    return int(value)


def positive(value: Any, name: str, unit: str = "") -> float:
    """``value`` as a float when it is a finite number above zero; ``unit`` ("mm",
    "minutes") completes the message."""
    if not _finite_number(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive number{f' of {unit}' if unit else ''}, got {value}")
    return float(value)


def not_negative(value: Any, name: str, meaning: str = "") -> float:
    """``value`` as a float when it is a finite number at or above zero; ``meaning``
    says what it measures, in the message."""
    if not _finite_number(value) or value < 0:
        raise ConfigError(f"{name} must be a number >= 0{f' ({meaning})' if meaning else ''}, got {value}")
    return float(value)


def _finite_number(value: Any) -> bool:
    return (
        isinstance(value, int | float | np.integer | np.floating)
        and not isinstance(value, bool)
        and math.isfinite(value)
    )
