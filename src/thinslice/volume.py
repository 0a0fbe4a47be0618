"""The in-memory CT volume: voxels plus the geometry that travels with them.

Internal convention: ``Volume.data`` is a 3-D array shaped ``(D, H, W)`` whose first
axis is the slice (acquisition) axis. ``D`` is the number of slices, ``H``/``W`` the
in-plane rows/columns. The geometry keeps the header exactly as read (ITK index order
``(i, j, k)``), plus ``slice_axis``: which ITK index axis the slice axis is. Converting
between the two layouts happens only here, so readers and writers never reorder axes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from thinslice.checks import positive
from thinslice.errors import ConfigError, InputError


@dataclass(frozen=True)
class Geometry:
    """Physical geometry of a volume, in ITK index order ``(i, j, k)``.

    Attributes:
        spacing: voxel spacing in mm along ITK axes i, j, k.
        origin: physical position (mm, LPS) of voxel (0, 0, 0).
        direction: 3x3 direction cosines, row-major, columns are the axis directions.
        slice_axis: the ITK index axis (0, 1 or 2) along which slices are stacked.
    """

    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]
    slice_axis: int = 2

    def __post_init__(self) -> None:
        if self.slice_axis not in (0, 1, 2):
            raise ConfigError(f"slice_axis must be 0, 1 or 2, got {self.slice_axis}")
        if len(self.spacing) != 3 or len(self.origin) != 3 or len(self.direction) != 9:
            raise ConfigError("geometry needs 3 spacings, 3 origin values and 9 direction values")
        if not all(np.isfinite(s) and s > 0 for s in self.spacing):
            raise ConfigError(f"geometry spacings must be positive numbers of mm, got {tuple(self.spacing)}")
        if not all(np.isfinite(v) for v in (*self.origin, *self.direction)):
            raise ConfigError("geometry origin and direction must be finite numbers")

    @property
    def slice_spacing(self) -> float:
        """Distance between neighbouring slices, mm."""
        return float(self.spacing[self.slice_axis])

    @property
    def inplane_spacing(self) -> tuple[float, float]:
        """Spacing (mm) of the two in-plane axes, in ITK order."""
        return tuple(float(s) for i, s in enumerate(self.spacing) if i != self.slice_axis)  # type: ignore[return-value]

    @property
    def slice_direction(self) -> np.ndarray:
        """Unit vector (LPS) along which slice index grows."""
        return np.asarray(self.direction, dtype=float).reshape(3, 3)[:, self.slice_axis]

    def with_slice_spacing(self, spacing_mm: float) -> Geometry:
        """Same geometry with a new slice spacing; origin and direction untouched."""
        sp = list(self.spacing)
        sp[self.slice_axis] = float(spacing_mm)
        return replace(self, spacing=(sp[0], sp[1], sp[2]))

    def starting_at(self, k: float) -> Geometry:
        """Same geometry with voxel (0, 0, 0) moved to this one's slice ``k`` (fractional or negative)."""
        x, y, z = (float(v) for v in self.slice_position(k))
        return replace(self, origin=(x, y, z))

    def slice_position(self, k: float) -> np.ndarray:
        """Physical position (mm) of the first voxel of slice ``k``."""
        return np.asarray(self.origin, dtype=float) + k * self.slice_spacing * self.slice_direction


#: The :attr:`Volume.meta` keys (and their DICOM keywords) that say which scan a series belongs to.
ACQUISITION_KEYWORDS = {
    "patient_id": "PatientID",
    "study_uid": "StudyInstanceUID",
    "frame_of_reference_uid": "FrameOfReferenceUID",
}


def check_mm(value: float | None, option: str) -> float | None:
    """``value`` (mm) when it is None or a positive finite number.

    Raises:
        ConfigError: naming ``option`` (``--slice-thickness``, say) and the value.
    """
    return None if value is None else positive(value, option, "mm")


@dataclass
class Volume:
    """A CT volume in Hounsfield units with its geometry.

    Attributes:
        data: array ``(D, H, W)``, slice axis first, HU. Any numeric dtype.
        geometry: the header geometry (see :class:`Geometry`).
        name: a short label (file stem) for reports.
        meta: free-form facts from the reader (source path, series UID, ...).
        slice_thickness: width (mm) of each slice's profile along the slice axis (DICOM
            SliceThickness); ``None`` when unknown, read as equal to the slice spacing
            (contiguous slices, the clinical norm). See :attr:`thickness`.
    """

    data: np.ndarray
    geometry: Geometry
    name: str = "volume"
    meta: dict[str, Any] = field(default_factory=dict)
    slice_thickness: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.data, np.ndarray) or not isinstance(self.geometry, Geometry):
            raise ConfigError("a Volume takes a numpy array (D, H, W) and a Geometry")
        if self.data.ndim != 3:
            raise ConfigError(f"a volume must be 3-D, got shape {self.data.shape}")
        if self.data.dtype.kind not in "biuf":  # complex parts would be dropped, objects fail deep inside
            raise InputError(f"{self.name}: voxels of type {self.data.dtype} are not CT values; give real numbers")
        if self.meta is None:
            self.meta = {}
        if not self.data.dtype.isnative:  # as nibabel reads a big-endian file; torch and ITK take native only
            self.data = self.data.astype(self.data.dtype.newbyteorder("="))
        check_mm(self.slice_thickness, "slice thickness")

    @property
    def thickness(self) -> float:
        """The slice thickness in mm: :attr:`slice_thickness`, or the slice spacing when unknown."""
        return float(self.slice_thickness) if self.slice_thickness is not None else self.slice_spacing

    @property
    def num_slices(self) -> int:
        return int(self.data.shape[0])

    @property
    def slice_spacing(self) -> float:
        return self.geometry.slice_spacing

    @property
    def extent(self) -> float:
        """The length (mm) the stack covers along the slice axis: slice count times spacing."""
        return self.num_slices * self.slice_spacing

    @property
    def voxel_spacing(self) -> tuple[float, float, float]:
        """Spacing (mm) along the axes of :attr:`data`: slice, row, column."""
        w, h = self.geometry.inplane_spacing  # ITK order: the column axis first
        return self.slice_spacing, h, w

    def itk_array(self) -> np.ndarray:
        """The voxels in SimpleITK/numpy order ``(k, j, i)``."""
        return np.moveaxis(self.data, 0, 2 - self.geometry.slice_axis)

    @classmethod
    def from_itk_array(
        cls,
        array: np.ndarray,
        geometry: Geometry,
        name: str = "volume",
        meta: dict | None = None,
        slice_thickness: float | None = None,
    ) -> Volume:
        """Build from an array in SimpleITK order ``(k, j, i)``."""
        data = np.moveaxis(array, 2 - geometry.slice_axis, 0)
        return cls(np.ascontiguousarray(data), geometry, name, dict(meta or {}), slice_thickness)

    def with_data(
        self,
        data: np.ndarray,
        slice_spacing: float | None = None,
        slice_thickness: float | None = None,
        *,
        first: float = 0.0,
    ) -> Volume:
        """A new volume sharing this geometry (optionally with a new slice spacing, and its
        first slice at this volume's slice ``first``, fractional or negative).

        The thickness is kept when the spacing is, and otherwise is ``slice_thickness``
        (``None``: equal to the new spacing).
        """
        geo = self.geometry if first == 0 else self.geometry.starting_at(first)
        if slice_spacing is None:
            return Volume(data, geo, self.name, dict(self.meta), slice_thickness or self.slice_thickness)
        return Volume(data, geo.with_slice_spacing(slice_spacing), self.name, dict(self.meta), slice_thickness)


def require_plausible_thickness(volume: Volume) -> None:
    """Refuse slices thicker than the whole stack (its slice count times the spacing): no
    acquisition makes them, a damaged SliceThickness or a mistyped ``--slice-thickness``
    does, and the output would reach past the end slices by half of it.

    Raises:
        InputError: naming the thickness, the spacing and what the stack covers.
    """
    if volume.thickness > volume.extent * (1 + 1e-6):
        raise InputError(
            f"{volume.name}: slices {volume.thickness:g} mm thick every {volume.slice_spacing:.4g} mm cannot be: its "
            f"{volume.num_slices} slices cover {volume.extent:.4g} mm in all; check the thickness it states (DICOM "
            "SliceThickness, a header note) or the --slice-thickness given"
        )
