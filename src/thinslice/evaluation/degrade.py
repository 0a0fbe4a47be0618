"""Thick-slice simulation: make a coarser scan from a finer one.

Three models of a thick-slice acquisition at ``r`` times the slice spacing:

* :func:`decimate` keeps every ``r``-th slice (the protocol of Fang et al., CVPR 2022);
  the kept slices keep their own (thin) thickness;
* :func:`slab` also averages each kept slice over ``r`` slices (half-weight end taps);
* :func:`profile` averages over a box profile of any thickness (default ``r`` slices: a
  contiguous thick acquisition) with exact partial end taps, optionally softened by a
  Gaussian (the reconstruction kernel's tails; :mod:`thinslice.profile`): the measure of
  record, as real thick slices are such averages.

All keep slice 0 where it was, so a volume of ``r * k + 1`` slices becomes one of
``k + 1`` slices whose slice ``j`` sits at original slice ``r * j``. Each says the
thickness of the slices it makes, so that a method can know what it is given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from thinslice import grid
from thinslice.checks import not_negative, positive
from thinslice.errors import ConfigError
from thinslice.profile import profile_degrade, slice_profile_kernel
from thinslice.volume import Volume


def slab_profile(r: int) -> np.ndarray:
    """Slice weights of a box profile ``r`` slices wide, centred on a slice.

    Odd ``r``: ``r`` equal taps. Even ``r``: ``r + 1`` taps with half weight at both
    ends, so the profile still spans exactly ``r`` slice spacings. Sums to 1.
    """
    r = grid.check_scale(r)
    taps = np.ones(r if r % 2 else r + 1)
    if r % 2 == 0:
        taps[[0, -1]] = 0.5
    return taps / taps.sum()


def decimate_array(data: np.ndarray, r: int) -> np.ndarray:
    """Keep every ``r``-th slice of a ``(D, H, W)`` array (a view, not a copy)."""
    return data[:: grid.check_scale(r)]


def slab_array(data: np.ndarray, r: int) -> np.ndarray:
    """Average over the slab profile, then keep every ``r``-th slice; float32 HU out."""
    blurred = ndimage.convolve1d(data.astype(np.float32), slab_profile(r), axis=0, mode="nearest")
    return blurred[:: grid.check_scale(r)]


def profile_array(data: np.ndarray, r: int, thickness: float | None = None, softness: float = 0.0) -> np.ndarray:
    """Average over a box ``thickness`` slices wide (default ``r``), softened by a Gaussian of
    FWHM ``softness`` times that width, and keep every ``r``-th slice; float32."""
    r = grid.check_scale(r)
    width = _width(r, thickness)
    check_degradation("profile", softness=softness)
    count = (data.shape[0] - 1) // r + 1
    thick, _ = profile_degrade(data, 1.0, float(r), width, axis=0, softness=softness * width)
    return thick[:count]


def _width(r: int, thickness: float | None) -> float:
    return positive(r if thickness is None else thickness, "thickness")


def check_degradation(kind: str, thickness: float | None = None, softness: float = 0.0) -> None:
    """Refuse an unknown degradation, or a profile width or softness for one that has none.

    Raises:
        ConfigError: naming the valid choices.
    """
    if kind not in DEGRADATIONS:
        raise ConfigError(f"unknown degradation '{kind}'; choose one of {', '.join(DEGRADATIONS)}")
    if thickness is not None and kind != "profile":
        raise ConfigError(f"--thickness applies to --degrade profile, not {kind}")
    not_negative(softness, "--softness", "the Gaussian's FWHM over the thickness")
    if softness and kind != "profile":
        raise ConfigError(f"--softness applies to --degrade profile, not {kind}")


@dataclass(frozen=True)
class ThickCopy:
    """A simulated thick acquisition of a thin array.

    Attributes:
        data: ``(K, H, W)`` float32 thick slices.
        thickness: their thickness, in thin slices.
        first: the thin slice thick slice 0 is centred on; thick slice ``j`` is centred on
            thin slice ``first + r * j``.
    """

    data: np.ndarray
    thickness: float
    first: int

    def margin(self, num_thin: int, r: int) -> int:
        """How many thin slices past each end slice's centre an upsampled copy reaches
        (:func:`thinslice.grid.reach`: as far as its profile covers) and the ``num_thin``
        thin slices have."""
        room = min(self.first, num_thin - 1 - (self.first + r * (len(self.data) - 1)))
        return grid.Plan(r, 1.0, reach=min(grid.reach(self.thickness, 1.0), room)).margins(len(self.data))[0]

    def truth(self, thin: np.ndarray, r: int, margin: int | None = None) -> np.ndarray:
        """The thin slices an upsampled copy covers: ``r * (K - 1) + 1`` from :attr:`first`,
        and ``margin`` more past each end (default :meth:`margin`: as upsample makes them)."""
        m = self.margin(len(thin), r) if margin is None else margin
        return thin[self.first - m : self.first + grid.output_slices(len(self.data), r) + m]


def degrade_array(
    data: np.ndarray, r: int, kind: str, thickness: float | None = None, softness: float = 0.0
) -> ThickCopy:
    """The thick copy of ``data`` by degradation ``kind``. For ``profile``: ``thickness``
    in slices of ``data`` (default ``r``), and ``softness``, the FWHM of the Gaussian that
    softens the box as a fraction of that thickness (0: a plain box).

    A profile's thick slices start where their whole profile, tails included, lies inside
    ``data``, so no thick slice averages anatomy the thin scan does not have.

    Raises:
        ConfigError: unknown ``kind``, or a thickness or softness given for another kind.
    """
    check_degradation(kind, thickness, softness)
    r = grid.check_scale(r)
    if kind == "decimate":
        return ThickCopy(np.ascontiguousarray(decimate_array(data, r), dtype=np.float32), 1.0, 0)
    if kind == "slab":
        return ThickCopy(slab_array(data, r), float(r), 0)
    width = _width(r, thickness)
    first = len(slice_profile_kernel(width, 1.0, softness * width)) // 2  # the profile's radius
    count = max(0, (data.shape[0] - 1 - 2 * first) // r + 1)
    if count < 1:
        soft = f" softened by {softness:g} of it" if softness else ""
        raise ConfigError(
            f"{data.shape[0]} slices are too few for profiles {2 * first + 1} slices long (a {width:g}-slice box"
            f"{soft}); give a scan with more slices" + (" or less --softness" if softness else "")
        )
    thick, _ = profile_degrade(data, 1.0, float(r), width, axis=0, offset=float(first), softness=softness * width)
    return ThickCopy(thick[:count], width, first)


def decimate(volume: Volume, r: int) -> Volume:
    """Thick-slice copy keeping every ``r``-th slice; slice spacing times ``r``, thickness kept."""
    thick = np.ascontiguousarray(decimate_array(volume.data, r))
    return volume.with_data(thick, volume.slice_spacing * r, slice_thickness=volume.thickness)


def slab(volume: Volume, r: int) -> Volume:
    """Thick-slice copy with partial-volume blur over ``r`` slices; spacing times ``r``."""
    return volume.with_data(slab_array(volume.data, r), volume.slice_spacing * r)


def profile(volume: Volume, r: int, thickness_mm: float | None = None, softness: float = 0.0) -> Volume:
    """Thick-slice copy averaged over a box ``thickness_mm`` wide (default ``r`` times the
    spacing, contiguous), softened by a Gaussian of FWHM ``softness`` times the thickness;
    spacing times ``r``, thickness as given."""
    width = None if thickness_mm is None else thickness_mm / volume.slice_spacing
    thick = profile_array(volume.data, r, width, softness)
    return volume.with_data(thick, volume.slice_spacing * r, slice_thickness=thickness_mm)


DEGRADATIONS = ("decimate", "slab", "profile")
