"""Write a volume as a derived DICOM CT series of the study it was read from.

One uncompressed file (explicit VR little endian) per slice, filed as a new series of
the *same* study: study, patient and frame of reference come from the template series
(the one the volume was read from, or the one given with ``--dicom-template``), never
invented. New: the series and instance UIDs, SeriesNumber, SeriesDescription,
``ImageType DERIVED\\SECONDARY\\AXIAL``, the DerivationDescription, references to the
source images and a ContributingEquipmentSequence naming thinslice (the attributes are
in :mod:`thinslice.io.dicom_attrs`). The series is written into a hidden sibling folder
and renamed into place (:func:`thinslice.io.atomic.atomic_folder`): all of it appears,
or nothing.

Example:
    >>> thin = thinslice.upsample(thinslice.load("case/ct"), 2)  # doctest: +SKIP
    >>> write_dicom_series(thin, "case/ct_thin", template="case/ct",
    ...                    description="CT Body 3.0 thinslice x2 1.5 mm",
    ...                    derivation="thinslice 0.1.0, model x2")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from thinslice.ct import fits_int16
from thinslice.errors import ConfigError, InputError, OutputError
from thinslice.io.atomic import atomic_folder, probe_write
from thinslice.io.dicom import headers_by_series, slice_thickness_of
from thinslice.io.dicom_attrs import UidMaker, ds_text, series_dataset, slice_dataset, sop_uid
from thinslice.io.multiframe import frame_headers
from thinslice.volume import Geometry, Volume, check_mm

log = logging.getLogger(__name__)

_COS_TOL = 1e-4  # direction cosines
_MIN_SLOPE_EXP = -12  # smallest RescaleSlope: 2**-12 HU


@dataclass(frozen=True)
class Template:
    """The series a derived series is filed with: its headers sorted along the slice normal.

    Attributes:
        folder: where it was read from.
        uid: its SeriesInstanceUID ("" when empty).
        headers: pydicom headers (no pixels), sorted along ``normal``.
        positions: ``(N,)`` mm along ``normal``, ascending.
        normal: ``(3,)`` unit vector (LPS), ``cross(row, column)`` of ImageOrientationPatient.
        spacing: median gap between positions, mm (0 for a single slice).
    """

    folder: Path
    uid: str
    headers: tuple[Dataset, ...]
    positions: np.ndarray
    normal: np.ndarray
    spacing: float

    @property
    def description(self) -> str:
        """Its SeriesDescription ("" when missing)."""
        return str(self.headers[0].get("SeriesDescription") or "").strip()

    @property
    def study_uid(self) -> str:
        return str(self.headers[0].get("StudyInstanceUID") or "").strip()

    @property
    def slice_thickness(self) -> float | None:
        """Its SliceThickness (mm), as reading the series would give it; None when unusable."""
        return slice_thickness_of(self.headers[0], self.spacing, self.folder, warn=False)  # reading it warned


@dataclass(frozen=True)
class _Plane:
    """How the volume's ``(D, H, W)`` axes map onto DICOM slices."""

    orientation: tuple[float, ...]  # ImageOrientationPatient: along a row (W grows), then down a column (H)
    pixel_spacing: tuple[float, float]  # (between rows, between columns), mm
    normal: np.ndarray  # cross(IOP row cosines, IOP column cosines)


def read_template(
    folder: str | os.PathLike[str],
    *,
    series_uid: str | None = None,
    volume: Volume | None = None,
    new_study: bool = False,
) -> Template:
    """Read and check the series a derived series will join, before any work is done.

    Args:
        folder: the DICOM folder (searched recursively).
        series_uid: the series to use when ``folder`` holds several; defaults to the
            series ``volume`` was read from.
        volume: the volume (or its upsampled result) to be written: it must have been
            read from this series (when it came from DICOM) and lie within its extent.
        new_study: the series will get a new study, so a missing StudyInstanceUID is fine.

    Raises:
        InputError: no CT series, an ambiguous or unknown series, no StudyInstanceUID
            (without ``new_study``), no valid orientation, or a volume outside its extent.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"DICOM template folder not found (or not a folder): {folder}")
    groups = headers_by_series(folder)
    if not groups:
        raise InputError(f"no DICOM images found in the template folder {folder}; pass the input series' folder")
    volume_uid = None if volume is None else volume.meta.get("series_uid")
    uid = series_uid
    if uid is None and len(groups) == 1:
        uid = next(iter(groups))
    elif uid is None and isinstance(volume_uid, str) and volume_uid in groups:
        uid = volume_uid
    if uid is None or uid not in groups:
        found = ", ".join(repr(u) for u in groups)
        wanted = "holds several series" if uid is None else f"has no series {uid!r}"
        raise InputError(f"the DICOM template folder {folder} {wanted} (found {found}); pass --series-uid UID")
    if isinstance(volume_uid, str) and volume_uid != uid:
        raise InputError(
            f"the volume was read from series {volume_uid!r} but the template series is {uid!r}; "
            "pass the DICOM folder (and series) the volume was read from"
        )
    headers = groups[uid]
    if len(headers) == 1 and int(headers[0].get("NumberOfFrames") or 1) > 1:  # Enhanced CT: frames are slices
        headers = frame_headers(headers[0]) if "PerFrameFunctionalGroupsSequence" in headers[0] else headers
    template = _sorted_template(folder, uid, headers)
    if not new_study and not template.study_uid:
        raise InputError(_no_study(folder))
    if volume is not None:
        _check_coverage(template, volume)
    return template


def _no_study(folder: Path) -> str:
    return (
        f"the DICOM series in {folder} has no StudyInstanceUID, so a derived series cannot join its "
        "study; pass --new-study to file it in a new study (patient attributes are still copied)"
    )


def check_series_output(out: str | os.PathLike[str], *, overwrite: bool, sources: Iterable[object] = ()) -> None:
    """Refuse an output folder that cannot or must not be written, before any work.

    Raises:
        OutputError: the parent folder is missing or not writable, ``out`` is a file, is,
            holds or lies inside an input, or holds files and ``overwrite`` is False.
    """
    out = Path(out)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"the folder to hold {out.name} does not exist: {parent}; create it first")
    if out.exists() and not out.is_dir():
        raise OutputError(f"output {out} is a file; give a folder for the DICOM series")
    resolved = out.resolve()
    for item in sources:
        if not item:
            continue
        source = Path(str(item)).resolve()
        if resolved == source or resolved in source.parents:
            raise OutputError(f"output {out} is or holds the input {item}; choose another folder (inputs are kept)")
        if source.is_dir() and source in resolved.parents:  # its files would join the input's series
            raise OutputError(
                f"output {out} lies inside the input folder {item}, where the new series would become part of "
                "the input; choose a folder outside it (inputs are kept)"
            )
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputError(f"output folder {out} already holds files; pass --overwrite to replace them")
    probe_write(parent)


def write_dicom_series(
    volume: Volume,
    out_dir: str | os.PathLike[str],
    *,
    template: str | os.PathLike[str] | Template,
    description: str,
    derivation: str,
    series_uid: str | None = None,
    slice_thickness: float | None = None,
    overwrite: bool = False,
    deterministic_uids: bool = True,
    new_study: bool = False,
) -> Path:
    """Write ``volume`` as a derived CT series of the study of ``template``.

    Voxels are stored as int16. When every value is an integer within int16 they are
    stored as is (RescaleSlope 1, RescaleIntercept 0), so they read back exactly.
    Otherwise RescaleIntercept is an integer near the middle of the value range and
    RescaleSlope the smallest power of two (at least 2**-12 HU) that fits the range
    into int16: every voxel reads back within half a slope of its value, exactly when
    it is a multiple of the slope (the halves and quarters of linear interpolation).
    The source's PixelPaddingValue (pixels outside the field of view) is kept for the
    same HU in the new stored values, and no pixel is stored below it.

    Slices are ``volume.data``'s (shape ``(D, H, W)``, HU), rows ``H`` and columns ``W``,
    each axis reversed where it runs against the template's rows, columns or slice
    normal, so that viewers show the series as they show its source (a NIfTI from
    dcm2niix has its rows flipped); InstanceNumbers run along the normal as the
    template's do. Readers (SimpleITK, thinslice, dcm2niix) get back the same voxels at
    the same physical positions, and thinslice the same geometry when the volume's slice
    axis is ITK's ``k`` and no axis was reversed. A grid whose axes do not line up with
    the template's is written as it is; left-handed (slice direction opposite to
    ``cross(row, column)``), it reads back with its slices in reverse order.

    Args:
        volume: the volume to write; its geometry must be a grid without shear.
        out_dir: the folder to create for the series (one ``IMnnnnn.dcm`` per slice).
        template: the DICOM folder of the series the volume was derived from, or a
            :class:`Template` from :func:`read_template`.
        description: SeriesDescription (at most 64 characters), e.g.
            ``"CT Body 3.0 thinslice x2 1.5 mm"``.
        derivation: DerivationDescription: method, model and version (at most 1024
            characters).
        series_uid: the template series to use when ``template`` holds several;
            defaults to the series the volume was read from (``volume.meta``).
        slice_thickness: nominal SliceThickness in mm; defaults to the volume's (its slice
            spacing when it says none).
        overwrite: replace ``out_dir`` when it exists and is not empty.
        deterministic_uids: derive the new UIDs from the template series, the
            description, the derivation, the output grid and the voxels themselves, so
            rerunning the same job gives the same UIDs (and a PACS replaces rather than
            duplicates), while different pixels (say, new weights under the same model
            file name) never reuse a UID; a new study or frame of reference is one per
            source, shared by every series derived from it. False: random UIDs.
        new_study: file the series in a new study (new StudyInstanceUID) instead of
            the template's; needed when the template has no StudyInstanceUID.

    Returns:
        ``out_dir``.

    Raises:
        ConfigError: an empty or too long description or derivation, a bad thickness.
        InputError: see :func:`read_template`; also an empty volume, values that are not
            finite or a sheared (tilted) grid.
        OutputError: see :func:`check_series_output`; also a failed write (nothing is
            left behind, and a replaced series is kept).
    """
    out = Path(out_dir)
    if volume.num_slices == 0 or volume.data.size == 0:
        raise InputError(f"the volume {volume.name} is empty (shape {volume.data.shape}); nothing to write")
    _check_options(description, derivation, slice_thickness)
    folder = template.folder if isinstance(template, Template) else Path(template)
    sources = [folder, volume.meta.get("source"), volume.meta.get("derived_from")]
    check_series_output(out, overwrite=overwrite, sources=sources)
    _plane(volume.geometry)  # a grid DICOM slices can express, before the template is read
    if isinstance(template, Template):
        _check_coverage(template, volume)
        src = template
        if not new_study and not src.study_uid:  # as read_template refuses it
            raise InputError(_no_study(folder))
    else:
        src = read_template(folder, series_uid=series_uid, volume=volume, new_study=new_study)
    volume = _oriented_as(volume, src)
    plane = _plane(volume.geometry)
    positions = np.asarray([volume.geometry.slice_position(k) for k in range(volume.num_slices)])
    slope, intercept = _rescale(volume.data)
    padding = _stored_padding(src.headers[0], slope, intercept)
    if plane.normal @ volume.geometry.slice_direction < 0:
        log.info("left-handed grid: readers will list the %d slices in reverse order", volume.num_slices)

    uid = _uid_maker(src, description, derivation, volume, deterministic_uids, new_study)
    series, new_frame = series_dataset(
        src.headers[0], src.uid, src.headers, description=description, derivation=derivation, uid=uid,
        new_study=new_study,
    )  # fmt: skip
    if new_frame:
        log.warning("the template series in %s has no FrameOfReferenceUID; the derived series gets a new one", folder)
    if not series.get("ReferencedSeriesSequence") and not new_study:
        log.info("the template series has no SeriesInstanceUID or SOPInstanceUIDs: no ReferencedSeriesSequence")
    thickness = volume.thickness if slice_thickness is None else float(slice_thickness)
    width = max(5, len(str(volume.num_slices)))
    number = np.arange(volume.num_slices)  # InstanceNumber - 1: in the template's order along the normal
    if _numbered_downwards(src):
        number = number[::-1]
    try:
        with atomic_folder(out, replace=overwrite) as part:
            for k in range(volume.num_slices):
                along = float(positions[k] @ src.normal)
                gaps = np.abs(src.positions - along)
                within = np.flatnonzero(gaps < src.spacing - 1e-3) if src.spacing > 0 else np.empty(0, dtype=int)
                used = within if within.size else [int(np.argmin(gaps))]
                ds = slice_dataset(
                    series, src.headers[int(np.argmin(gaps))], [src.headers[i] for i in used],
                    position=positions[k], orientation=plane.orientation, pixel_spacing=plane.pixel_spacing,
                    slice_location=float(positions[k] @ plane.normal), shape=volume.data.shape[1:],
                    index=number[k], sop=uid(f"instance {k}"),
                )  # fmt: skip
                ds.SliceThickness = ds_text(thickness)
                ds.SpacingBetweenSlices = ds_text(volume.slice_spacing)
                ds.RescaleSlope, ds.RescaleIntercept = ds_text(slope), ds_text(intercept)
                ds.PixelData = _encode(volume.data[k], slope, intercept, padding).tobytes()
                if padding is not None:
                    ds.add_new((0x0028, 0x0120), "SS", padding)  # PixelPaddingValue, signed as the pixels
                _write_file(ds, part / f"IM{number[k] + 1:0{width}d}.dcm")
    except OSError as err:
        raise OutputError(f"cannot write the DICOM series to {out}: {err.strerror or err}") from err
    log.info("wrote %d DICOM slices to %s (series %s)", volume.num_slices, out, series.SeriesInstanceUID)
    return out


def _check_options(description: str, derivation: str, slice_thickness: float | None) -> None:
    for name, text, limit in (("description", description, 64), ("derivation", derivation, 1024)):
        if not text.strip():
            raise ConfigError(f"the series {name} is empty; say what the series is (method, scale, spacing)")
        if len(text) > limit:
            raise ConfigError(f"the series {name} must be at most {limit} characters, got {len(text)}: {text!r}")
    if "\\" in description:
        raise ConfigError(f"the series description cannot hold a backslash (DICOM LO), got {description!r}")
    check_mm(slice_thickness, "slice_thickness")


def _oriented_as(volume: Volume, src: Template) -> Volume:
    """``volume`` with each axis that runs against the template's rows, columns or normal
    reversed (data and geometry together: the same voxels at the same places), so that a
    viewer shows the new series as it shows its source. A NIfTI made from the series
    (dcm2niix flips the rows) would otherwise come back upside down. Axes that do not
    line up with the template's (a transposed or rotated grid) are left as they are."""
    iop = np.asarray([float(v) for v in src.headers[0].ImageOrientationPatient])
    direction = np.asarray(volume.geometry.direction, dtype=float).reshape(3, 3).copy()
    col_axis, row_axis = (a for a in range(3) if a != volume.geometry.slice_axis)
    targets = {col_axis: iop[:3], row_axis: iop[3:], volume.geometry.slice_axis: src.normal}
    shape = volume.itk_array().shape[::-1]  # sizes along ITK axes i, j, k
    origin = np.asarray(volume.geometry.origin, dtype=float)
    data = volume.itk_array()
    flipped = []
    for axis, target in targets.items():
        dot = float(direction[:, axis] @ target)
        if dot < 0 and abs(abs(dot) - 1) < _COS_TOL:
            origin = origin + (shape[axis] - 1) * volume.geometry.spacing[axis] * direction[:, axis]
            direction[:, axis] *= -1
            data = np.flip(data, axis=2 - axis)
            flipped.append(axis)
    if not flipped:
        return volume
    log.debug("axes %s reversed to run as the template's do", flipped)
    geometry = replace(volume.geometry, origin=tuple(origin), direction=tuple(direction.ravel()))
    return Volume.from_itk_array(data, geometry, volume.name, volume.meta, volume.slice_thickness)


def _numbered_downwards(src: Template) -> bool:
    """Whether the template's InstanceNumbers fall along its normal (head to feet, say)."""
    try:
        numbers = [int(ds.InstanceNumber) for ds in src.headers]
    except (AttributeError, TypeError, ValueError):
        return False
    return len(numbers) > 1 and numbers[0] > numbers[-1]


def _plane(geometry: Geometry) -> _Plane:
    """ImageOrientationPatient and PixelSpacing of the volume's slices.

    In ``Volume.data`` the columns (``W``) run along the smaller remaining ITK axis and
    the rows (``H``) along the larger one (see :meth:`Volume.itk_array`).
    """
    direction = np.asarray(geometry.direction, dtype=float).reshape(3, 3)
    col_axis, row_axis = (a for a in range(3) if a != geometry.slice_axis)
    along_row, along_col = direction[:, col_axis], direction[:, row_axis]
    normal = np.cross(along_row, along_col)
    unit = np.allclose(np.linalg.norm(direction, axis=0), 1, atol=_COS_TOL)
    if not unit or abs(float(along_row @ along_col)) > _COS_TOL:
        raise InputError(f"the volume's direction matrix {geometry.direction} is not orthonormal; fix its header")
    if abs(abs(float(normal @ geometry.slice_direction)) - 1) > _COS_TOL:
        raise InputError(
            "the volume's slices are not perpendicular to its slice axis (a tilted or sheared grid); "
            "DICOM CT slices cannot express it: resample to an orthogonal grid first"
        )
    spacing = (float(geometry.spacing[row_axis]), float(geometry.spacing[col_axis]))
    return _Plane(tuple(float(v) for v in (*along_row, *along_col)), spacing, normal)


def _sorted_template(folder: Path, uid: str, headers: list[Dataset]) -> Template:
    """The template's CT headers sorted along their slice normal."""
    modalities = {str(ds.get("Modality") or "") for ds in headers} - {""}
    if modalities - {"CT"}:
        raise InputError(f"the DICOM template series in {folder} is {'/'.join(sorted(modalities))}, not CT")
    try:
        iop = np.asarray([float(v) for v in headers[0].ImageOrientationPatient], dtype=float)
        ipp = np.asarray([[float(v) for v in ds.ImagePositionPatient] for ds in headers], dtype=float)
    except (AttributeError, TypeError, ValueError) as err:
        raise InputError(f"the DICOM template series in {folder} lacks a valid orientation or position: {err}") from err
    normal = np.cross(iop[:3], iop[3:6])
    proj = ipp @ normal
    order = np.argsort(proj, kind="stable")
    spacing = float(np.median(np.diff(proj[order]))) if len(order) > 1 else 0.0
    return Template(folder, uid, tuple(headers[i] for i in order), proj[order], normal, spacing)


def _check_coverage(src: Template, volume: Volume) -> None:
    """Refuse a volume whose slices lie outside the template's range along its normal (its
    end slices' centres, widened by a slice spacing or half their thickness, where an
    upsampled series' end slices lie: :func:`thinslice.grid.reach`)."""
    first, last = volume.geometry.slice_position(0), volume.geometry.slice_position(volume.num_slices - 1)
    along = np.asarray([first @ src.normal, last @ src.normal])
    try:
        half = float(src.headers[0].get("SliceThickness", 0) or 0) / 2
    except (TypeError, ValueError):
        half = 0.0
    margin = max(src.spacing, half, 0.01)
    lo, hi = float(src.positions[0]), float(src.positions[-1])
    if along.min() < lo - margin or along.max() > hi + margin:
        raise InputError(
            f"the volume ({along.min():.2f} to {along.max():.2f} mm along the slice normal) lies outside the "
            f"DICOM template series in {src.folder} ({lo:.2f} to {hi:.2f} mm); pass the series it was made from"
        )


def _rescale(data: np.ndarray) -> tuple[float, float]:
    """``(slope, intercept)`` that store ``data`` in int16 (see :func:`write_dicom_series`)."""
    lo = hi = 0.0
    exact = True
    for plane in data:  # one slice at a time, one pass: no full-size temporary
        if not np.all(np.isfinite(plane)):
            raise InputError("the volume holds NaN or infinite values; fix or mask them before writing DICOM")
        lo, hi = min(lo, float(plane.min())), max(hi, float(plane.max()))
        exact = exact and fits_int16(plane)
    if exact:
        return 1.0, 0.0
    intercept = float(round((lo + hi) / 2))
    half = max(hi - intercept, intercept - lo, 1e-12)
    exponent = max(_MIN_SLOPE_EXP, math.ceil(math.log2(half / 32767)))
    return 2.0**exponent, intercept


def _stored_padding(source: Dataset, slope: float, intercept: float) -> int | None:
    """The source's PixelPaddingValue (the scanner's mark for pixels outside the field of
    view) as a stored value of the new series, for the same HU; None when the source has
    none, gives a range (PixelPaddingRangeLimit), or the new encoding cannot hold it."""
    value = source.get("PixelPaddingValue")
    if value is None or "PixelPaddingRangeLimit" in source:
        return None
    value = int(value)
    if source.get("PixelRepresentation") == 1 and value > 32767:  # read as US, stored signed
        value -= 65536
    hu = value * float(source.get("RescaleSlope", 1) or 1) + float(source.get("RescaleIntercept", 0) or 0)
    stored = int(np.rint((hu - intercept) / slope))
    return stored if -32768 <= stored <= 32767 else None


def _encode(plane: np.ndarray, slope: float, intercept: float, padding: int | None = None) -> np.ndarray:
    """One slice ``(H, W)`` in HU as little-endian int16 stored values; nothing below
    ``padding`` (the stored padding value: an interpolation's undershoot is padding too)."""
    stored = np.rint((plane.astype(np.float64) - intercept) / slope)
    return np.clip(stored, -32768 if padding is None else padding, 32767).astype("<i2")


#: UIDs of what a derived series shares with its source: one per source, not per job.
SOURCE_ROLES = ("study", "frame of reference")
#: The source's attributes that tell one patient's scan from another's (with its positions).
_SOURCE_KEYS = (
    "PatientID", "PatientName", "PatientBirthDate", "StudyDate", "StudyTime", "AccessionNumber", "StudyID",
    "ImageOrientationPatient",
)  # fmt: skip


def _uid_maker(
    src: Template, description: str, derivation: str, volume: Volume, deterministic: bool, new_study: bool
) -> UidMaker:
    """A function ``role -> UID``: stable per role and job, or random.

    The roles the source's own series stands for (a new study, a new frame of reference,
    made when the source has none) depend on the source alone, so that every series
    derived from one source lands in one study and one patient space; the others on the
    job too (texts, grid, voxels, and whether it goes into a new study: the same series
    filed in two studies must not share its UIDs)."""
    if not deterministic:
        return lambda role: generate_uid()
    source = ["thinslice derived series", src.uid, *map(sop_uid, src.headers)]
    # a new study or frame of reference: who and where too, as anonymised exports may have no
    # UIDs and two patients' series must never share one (the job's voxels tell series apart)
    patient = [str(src.headers[0].get(k) or "") for k in _SOURCE_KEYS]
    shared = [*source, *patient, *map(str, src.positions)]
    first = volume.geometry.slice_position(0).round(4).tolist()
    grid = f"{volume.data.shape} {volume.data.dtype.str} {volume.slice_spacing:.6f} {first}"
    digest = hashlib.sha256()
    for plane in volume.data:  # a slice at a time: a flipped view is not copied whole
        digest.update(np.ascontiguousarray(plane).data.cast("B"))
    voxels = digest.hexdigest()
    job = [*source, description, derivation, grid, voxels, *(["new study"] if new_study else [])]
    return lambda role: generate_uid(entropy_srcs=[*(shared if role in SOURCE_ROLES else job), role])


def _write_file(ds: Dataset, path: Path) -> None:
    """Save one slice as a DICOM file (preamble, file meta, explicit VR little endian)."""
    ds.save_as(path, enforce_file_format=True)
