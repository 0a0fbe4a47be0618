"""Plausibility checks on voxel values, made before any work starts.

Two kinds of problem:

* hard ones (:func:`require_usable`): fewer than 3 slices, NaN or Inf voxels. Nothing
  sensible can come out, so they are always refused.
* soft ones (:func:`ct_value_problem`): the values do not look like CT in Hounsfield
  units, or the volume is constant. The result would be meaningless for CT, but a user
  who knows better may go on: refused unless ``accept_non_ct`` (``--accept-non-ct``), a warning otherwise.
"""

from __future__ import annotations

import logging

import numpy as np

from thinslice.errors import InputError
from thinslice.volume import Volume

log = logging.getLogger(__name__)

#: The HU window the networks see (scaled to [0, 1]) and the metrics score: air and
#: padding clip to -1024, 12-bit scanners stop at 3071 (Fang et al. and METHOD.md).
HU_WINDOW = (-1024.0, 3072.0)
#: CT in HU holds air (about -1000 HU; padding outside the field of view is -1024, -2048
#: or -3024), so its minimum is at or below this.
CT_MIN_AT_MOST = -500.0
#: Dense bone is about 2000 HU and 12-bit scanners stop at 3071; only metal goes higher.
CT_HIGH_HU = 4000.0
#: The share of voxels allowed above ``CT_HIGH_HU`` (metal implants, extended-scale CT).
CT_HIGH_FRACTION = 0.001


#: Larger magnitudes are refused even with ``accept_non_ct``: the methods compute in float32
#: (largest 3.4e38), and weighted sums of such values overflow to Inf.
MAX_ABS_VALUE = 1e30


def fits_int16(data: np.ndarray) -> bool:
    """True when every value is a whole number within int16: such HU are stored exactly as
    int16 (DICOM with slope 1, a NIfTI without scaling). One slice at a time: no
    volume-sized temporary. NaN and Inf are not whole numbers."""
    for plane in data if data.ndim > 2 else [data]:
        if plane.size and not (plane.min() >= -32768 and plane.max() <= 32767):
            return False
        if not np.issubdtype(plane.dtype, np.integer) and not np.array_equal(plane, np.rint(plane)):
            return False
    return True


def ct_value_problem(data: np.ndarray) -> str | None:
    """Why ``data`` does not look like CT in Hounsfield units; ``None`` when it does.

    The rule, the only place it is written down:

    1. the volume is not constant (one value everywhere leaves nothing to synthesize:
       usually a blank or failed export);
    2. its minimum is at most -500 HU (CT has air near -1000 HU around the body or in the
       lungs, or padding at -1024/-2048/-3024 outside the field of view);
    3. at most 0.1 % of its voxels lie above 4000 HU (bone is below ~2000 HU; 12-bit
       scanners stop at 3071; only metal implants reach higher).

    Volumes that fail are typically MR (0..4000 with no air), 8-bit exports (0..255), PET,
    or CT stored without its rescale intercept (0..4095 with air at 0). A crop inside the
    body (no air at all) fails rule 2 too: use ``accept_non_ct`` for those.

    Args:
        data: voxels of any shape and numeric dtype, nominally HU.

    Returns:
        One sentence naming the value range and what is wrong, or ``None``.

    Example:
        >>> ct_value_problem(np.array([-1000, 40, 1200]))  # air, soft tissue, bone
        >>> ct_value_problem(np.array([0, 255], dtype=np.uint8))
        'values range from 0 to 255 with nothing at or below -500 HU (no air), so this does not look like CT in HU (MR? an 8-bit export? CT without its rescale intercept?)'
    """  # noqa: E501 - a doctest output line
    if data.size == 0:
        return "the volume holds no voxels"
    lo, hi = data.min(), data.max()
    span = f"values range from {_fmt(lo)} to {_fmt(hi)}"
    if lo == hi:
        return f"every voxel is {_fmt(lo)}: a constant volume has nothing to synthesize (a blank export?)"
    if lo > CT_MIN_AT_MOST:
        return (
            f"{span} with nothing at or below {CT_MIN_AT_MOST:g} HU (no air), so this does not look like "
            "CT in HU (MR? an 8-bit export? CT without its rescale intercept?)"
        )
    if hi > CT_HIGH_HU:
        high = int(np.count_nonzero(data > CT_HIGH_HU))
        if high > CT_HIGH_FRACTION * data.size:
            return (
                f"{span} with {high / data.size:.1%} of voxels above {CT_HIGH_HU:g} HU, so this does not look "
                "like CT in HU (MR? a wrong rescale slope?)"
            )
    return None


def check_ct_values(volume: Volume, *, accept_non_ct: bool = False, verb: str = "upsample") -> None:
    """Refuse (or with ``accept_non_ct`` only warn about) a volume failing :func:`ct_value_problem`.

    ``verb`` names the work the refusal stops: ``"upsample"``, or ``"score"`` for evaluate,
    whose PSNR window is in HU.

    Raises:
        InputError: the values do not look like CT and ``accept_non_ct`` is False.
    """
    problem = ct_value_problem(volume.data)
    if problem is None:
        return
    if not accept_non_ct:
        raise InputError(f"{volume.name}: {problem}; pass --accept-non-ct to {verb} it anyway")
    log.warning("warning: %s: %s; going ahead (--accept-non-ct)", volume.name, problem)


def require_usable(volume: Volume, name: str | None = None) -> None:
    """Refuse what can never be upsampled: fewer than 3 slices, NaN or Inf voxels, or values
    beyond :data:`MAX_ABS_VALUE`.

    Raises:
        InputError: naming the count of slices or of non-finite voxels.
    """
    label = name or volume.name
    if volume.num_slices < 3:
        raise InputError(
            f"{label} has {volume.num_slices} slice(s) along its slice axis; thinslice needs at "
            "least 3 slices to synthesize between them"
        )
    data = volume.data
    if np.issubdtype(data.dtype, np.floating):
        bad = int(data.size - np.count_nonzero(np.isfinite(data)))
        if bad:
            raise InputError(f"{label} holds {bad:,} NaN/Inf voxels; fix or mask them before upsampling")
        huge = int(np.count_nonzero(np.abs(data) > MAX_ABS_VALUE))
        if huge:
            raise InputError(
                f"{label} holds {huge:,} voxel(s) beyond ±{MAX_ABS_VALUE:g} (largest {float(np.abs(data).max()):.3g}): "
                "outside what the float32 arithmetic of upsampling can carry; fix or mask them"
            )


def _fmt(value: object) -> str:
    number = float(value)  # type: ignore[arg-type]
    return f"{number:g}" if number.is_integer() else f"{number:.4g}"
