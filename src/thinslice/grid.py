"""The slice grid: which factors thinslice makes, and where output slices lie.

The one place these rules are written down:

* a factor ``r`` is an integer from :data:`MIN_SCALE` to :data:`MAX_SCALE`;
* ``D`` slices become ``r * (D - 1) + 1``: the first slice keeps its position and output
  slice ``r * k`` lies on input slice ``k`` (both ends acquired);
* a target spacing must divide the slice spacing by such an integer (within 1 %).
"""

from __future__ import annotations

import numpy as np

from thinslice.errors import ConfigError

MIN_SCALE = 2
MAX_SCALE = 8
#: How far (as a share of the ratio) a target spacing may be from an exact integer factor.
RATIO_TOLERANCE = 0.01


def check_scale(r: object) -> int:
    """Validate an integer upsampling factor (``MIN_SCALE`` to ``MAX_SCALE``).

    Raises:
        ConfigError: ``r`` is not an integer in range.
    """
    if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or not MIN_SCALE <= int(r) <= MAX_SCALE:
        raise ConfigError(f"scale must be an integer from {MIN_SCALE} to {MAX_SCALE}, got {r!r}")
    return int(r)


def output_slices(num_slices: int, r: int) -> int:
    """Slices of the result: ``r * (D - 1) + 1``."""
    return r * (num_slices - 1) + 1


def usable_slices(num_slices: int, r: int) -> int:
    """Largest ``n <= num_slices`` with ``n = r * k + 1`` (both ends on the coarse grid)."""
    return r * ((num_slices - 1) // r) + 1


def keep_acquired(out: np.ndarray, acquired: np.ndarray, r: int) -> np.ndarray:
    """Put the acquired slices back at output slices ``r * k``, bit-identical; returns ``out``."""
    out[::r] = acquired.astype(out.dtype, copy=False)
    return out


def scale_for_spacing(slice_spacing: float, target_spacing: float) -> int:
    """The integer factor that turns ``slice_spacing`` into ``target_spacing`` (mm).

    Raises:
        ConfigError: the target is not a positive number, or does not divide the spacing
            by an integer in range; the message names the nearest valid targets.
    """
    if not np.isfinite(target_spacing) or target_spacing <= 0:
        raise ConfigError(f"--target-spacing must be a positive number of mm, got {target_spacing}")
    ratio = slice_spacing / target_spacing
    if not np.isfinite(ratio) or ratio > 1e6:  # a target like 1e-300 mm
        raise ConfigError(
            f"target spacing {target_spacing:g} mm is not reachable from {slice_spacing:.4g} mm by a factor "
            f"from {MIN_SCALE} to {MAX_SCALE}"
        )
    r = round(ratio)
    if abs(ratio - r) <= RATIO_TOLERANCE * ratio and MIN_SCALE <= r <= MAX_SCALE:
        return int(r)
    lo = max(MIN_SCALE, min(MAX_SCALE, int(np.floor(ratio))))
    hi = min(MAX_SCALE, max(MIN_SCALE, int(np.ceil(ratio))))
    options = sorted({slice_spacing / lo, slice_spacing / hi}, reverse=True)
    nearest = " or ".join(f"{o:.4g} mm (x{round(slice_spacing / o)})" for o in options)
    raise ConfigError(
        f"target spacing {target_spacing:g} mm does not divide the slice spacing "
        f"{slice_spacing:.4g} mm by an integer from {MIN_SCALE} to {MAX_SCALE}; nearest valid: {nearest}"
    )
