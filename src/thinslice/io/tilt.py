"""Gantry tilt: a series whose slice positions are sheared against its image planes,
moved onto the orthogonal grid of the planes, as dcm2niix does.

A tilted CT acquisition moves the table along z while the image planes lean, so each
slice's first pixel lies a little further along the planes' column direction than the
last one's. Moving every slice in its own plane by that offset puts all of them on one
orthogonal grid whose third axis is the planes' normal: the slice spacing is then the
distance between the planes, and the slice thickness (measured along the normal) keeps
its meaning. Nothing is resampled across slices.

Example:
    >>> shear = find_shear(positions, direction, (0.49, 0.49))  # doctest: +SKIP
    >>> data, origin = deshear(data, shear, origin, direction)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from thinslice.memory import require_memory


@dataclass(frozen=True)
class Shear:
    """How a sheared stack of slices leans.

    Attributes:
        offsets: ``(D, 2)`` where each slice's first pixel lies in the first slice's plane,
            in pixels ``(row, column)``.
        pixel: the pixels' size ``(between rows, between columns)`` in mm.
        degrees: the tilt: the angle between the stack's end-to-end step and the normal.
    """

    offsets: np.ndarray
    pixel: tuple[float, float]
    degrees: float


def find_shear(positions: np.ndarray, direction: np.ndarray, pixel: tuple[float, float]) -> Shear | None:
    """The shear of slices at ``positions`` (``(D, 3)`` mm, first pixels, sorted along the
    normal) whose planes have ``direction`` (columns: row direction, column direction,
    normal); None when the stack is orthogonal (offsets within rounding of the headers)."""
    steps = positions - positions[0]
    along = steps @ direction[:, 2]
    in_plane = steps @ direction[:, :2]  # mm along the rows' and the columns' directions
    if not np.any(np.linalg.norm(in_plane, axis=1) > 0.02 + 0.01 * np.abs(along)):
        return None
    degrees = float(np.degrees(np.arctan2(np.linalg.norm(in_plane[-1]), abs(along[-1]))))
    return Shear(in_plane[:, ::-1] / np.asarray(pixel), pixel, degrees)


def deshear(
    array: np.ndarray, shear: Shear, origin: np.ndarray, direction: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Slices ``(D, H, W)`` moved by their in-plane offsets onto one grid large enough to
    hold every acquired pixel; the rest is filled with the series' lowest value (the
    scanner's own padding, or air). Whole pixels are copied, the fractional rest is a
    cubic B-spline shift, clipped to the slice's own range of values.

    Returns:
        The new slices (float32) and the new grid's origin (the first slice's ``origin``
        moved to where the new grid's first pixel lies).
    """
    from scipy import ndimage  # here: only tilted series need it

    corner = np.floor(shear.offsets.min(axis=0)).astype(int)
    extent = np.ceil(shear.offsets.max(axis=0)).astype(int) - corner
    depth, rows, cols = array.shape
    shape = (depth, rows + int(extent[0]), cols + int(extent[1]))
    require_memory(int(np.prod(shape)) * 4 * 2, "correcting the gantry tilt", "crop the series or use more memory")
    fill = float(array.min())
    out = np.full(shape, fill, np.float32)
    for k, shift in enumerate(shear.offsets - corner):
        whole = np.floor(shift + 1e-6).astype(int)  # an offset a hair below a whole pixel is whole
        plane = np.pad(array[k].astype(np.float32), ((0, 1), (0, 1)), constant_values=fill)
        if np.any(np.abs(shift - whole) > 1e-6):
            lo, hi = float(plane.min()), float(plane.max())
            plane = ndimage.shift(plane, shift - whole, order=3, mode="nearest")
            np.clip(plane, lo, hi, out=plane)  # the spline overshoots at edges: no value the slice lacks
        r, c = whole
        height, width = min(rows + 1, shape[1] - r), min(cols + 1, shape[2] - c)
        out[k, r : r + height, c : c + width] = plane[:height, :width]
    moved = corner * np.asarray(shear.pixel)  # mm along the column direction, then the row direction
    return out, origin + direction[:, :2] @ moved[::-1]
