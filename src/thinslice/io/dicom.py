"""Read a CT series from a DICOM folder into a :class:`~thinslice.volume.Volume`.

Headers come from pydicom, voxels (rescaled to HU, any transfer syntax) from SimpleITK's
``ImageSeriesReader``. Slices are sorted along the normal ``cross(row, col)`` of
ImageOrientationPatient and the spacing is the median gap between positions, never
SliceThickness. A gantry-tilted series (positions sheared against the image planes) is
shifted slice by slice onto an orthogonal grid, as dcm2niix does. Localizers (scouts) are
left out. Non-CT, unevenly spaced or incomplete series raise InputError, as do slices
whose pixel data is shorter than Rows x Columns, colour slices, and orientations that are
not two orthogonal unit vectors. MONOCHROME1 slices are read by pydicom (ITK
inverts their values, which for CT would invert the HU). A multi-frame (enhanced) CT file
is read as the series of its frames (:mod:`thinslice.io.multiframe`).

Example:
    >>> read_series("tests/data/dicom/chest_totalseg_crop").slice_spacing  # doctest: +SKIP
    2.0
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from thinslice.ct import fits_int16
from thinslice.errors import InputError
from thinslice.io.headers import first_line
from thinslice.io.tilt import deshear, find_shear
from thinslice.io.walk import files_below
from thinslice.memory import require_memory
from thinslice.volume import ACQUISITION_KEYWORDS, Geometry, Volume

log = logging.getLogger(__name__)
_Slices = list[tuple[Path, Dataset]]
_COS_TOL = 1e-4  # direction cosines
_MM_TOL = 1e-3  # pixel spacing and duplicate positions, mm


@dataclass(frozen=True)
class SeriesInfo:
    """One series found in a folder (headers only).

    Attributes:
        uid: SeriesInstanceUID ("" when missing or empty).
        description: SeriesDescription ("" when missing).
        modality: Modality, e.g. "CT".
        num_slices: number of image files.
        slice_spacing_mm: median gap between slice positions (mm); None if not computable.
        files: the files, sorted by position along the slice normal.
    """

    uid: str
    description: str
    modality: str
    num_slices: int
    slice_spacing_mm: float | None
    files: tuple[Path, ...]

    def summary(self) -> str:
        """One line: UID, description, slice count and spacing."""
        spacing = "?" if self.slice_spacing_mm is None else f"{self.slice_spacing_mm:.3g}"
        desc = f"{self.uid or '<empty UID>'}  {self.description!r} {self.modality}"
        return f"{desc}, {self.num_slices} slices, {spacing} mm"


def list_series(folder: str | Path) -> list[SeriesInfo]:
    """List the image series under ``folder`` (searched recursively), grouped by UID.

    Files that are not DICOM images are skipped and counted (logged at INFO), and so are
    localizers (scouts), which are not slices of the volume.
    """
    groups, skipped, _, scouts = _scan(Path(folder))
    if skipped:
        log.info("skipped %d non-DICOM file(s) in %s", skipped, folder)
    if scouts:
        log.info("left out %d localizer image(s) in %s", sum(scouts.values()), folder)
    return [_info(uid, slices) for uid, slices in groups.items()]


def read_series(folder: str | Path, series_uid: str | None = None, *, series_option: str = "--series-uid") -> Volume:
    """Read one CT series as a volume in HU, slice axis first.

    Args:
        folder: folder holding the series (searched recursively).
        series_uid: SeriesInstanceUID to read; needed when the folder holds several.
        series_option: the option that chooses the series, named when the folder holds several.

    Returns:
        A :class:`Volume` with data ``(D, H, W)`` (int16 when all HU are integers that
        fit, else float32) and geometry in ITK order with ``slice_axis=2``.

    Raises:
        InputError: no DICOM files, ambiguous or unknown series, not CT, < 3 slices,
            inconsistent headers, duplicate/missing slices, uneven gaps, bad pixels.
    """
    folder = Path(folder)
    groups, skipped, damaged, scouts = _scan(folder)
    if not groups:
        extra = f" ({skipped} non-DICOM file(s) skipped)" if skipped else ""
        extra += f" ({sum(scouts.values())} localizer image(s) only)" if scouts else ""
        extra += f"; damaged DICOM file(s): {', '.join(damaged[:3])}" if damaged else ""
        raise InputError(f"no DICOM files found in {folder}{extra}; pass a folder holding one CT series")
    uid = _pick(folder, groups, series_uid, series_option)
    if scouts.get(uid):
        log.info("%s: left out %d localizer image(s) (scouts) of the series", folder, scouts[uid])
    from thinslice.io.multiframe import expand_frames  # enhanced CT: one file, many frames

    group, frames = expand_frames(groups[uid])
    slices, unchecked = _order(group)
    try:
        pos = _check(folder, slices, unchecked)
    except InputError as err:
        if damaged:  # a file that could not be read looks like a gap: name it
            raise InputError(f"{err}; unreadable file(s) there: {', '.join(damaged[:3])}") from err
        raise
    _check_pixels(folder, slices, frames is not None)
    first = slices[0][1]
    iop = _floats(first, "ImageOrientationPatient", 6)
    row_sp, col_sp = _floats(first, "PixelSpacing", 2)
    normal = np.cross(iop[:3], iop[3:])
    direction = np.column_stack([iop[:3], iop[3:], normal])
    if frames is not None:
        array = frames(slices)
    elif _text(first, "PhotometricInterpretation") == "MONOCHROME1":
        array = _pydicom_hu([p for p, _ in slices])
    else:
        image = _read_pixels(folder, [p for p, _ in slices])
        itk_dir = np.asarray(image.GetDirection()).reshape(3, 3)
        if not np.allclose(itk_dir[:, :2], direction[:, :2], atol=_COS_TOL):
            raise InputError(f"SimpleITK and pydicom disagree on the orientation of {folder}")
        if not np.allclose(itk_dir[:, 2], normal, atol=_COS_TOL):
            log.debug("ITK slice direction %s; using the sorted order's %s", itk_dir[:, 2], normal)
        array = sitk.GetArrayFromImage(image)
        del image
    origin = _floats(first, "ImagePositionPatient", 3)
    shear = find_shear(
        np.asarray([_floats(ds, "ImagePositionPatient", 3) for _, ds in slices]), direction, (row_sp, col_sp)
    )
    if shear is not None:  # the positions decide, as dcm2niix's estimate does; the tilt tag alone changes nothing
        log.info(
            "%s: gantry tilt of %.1f°: slices moved in their planes by up to %.1f pixels onto an orthogonal grid",
            folder, shear.degrees, float(np.ptp(shear.offsets, axis=0).max()),
        )  # fmt: skip
        integral = fits_int16(array)
        array, origin = deshear(array, shear, origin, direction)
        if integral:  # whole HU in, whole HU out: the shift's fractions are below the scanner's own step
            array = np.rint(array)
    ox, oy, oz = (float(v) for v in origin)
    spacing = (float(col_sp), float(row_sp), float(np.median(np.diff(pos))))
    geometry = Geometry(spacing, (ox, oy, oz), tuple(direction.ravel().tolist()), slice_axis=2)
    meta: dict[str, object] = {"source": str(folder.resolve()), "series_uid": uid, "modality": _text(first, "Modality")}
    for key, keyword in ACQUISITION_KEYWORDS.items():  # what tells whether two series are of one scan
        if _text(first, keyword):
            meta[key] = _text(first, keyword)
    name = _text(first, "SeriesDescription") or folder.resolve().name
    thickness = slice_thickness_of(first, spacing[2], folder)
    return Volume.from_itk_array(_to_hu(array), geometry, name, meta, thickness)


def slice_thickness_of(ds: Dataset, spacing: float, folder: Path, *, warn: bool = True) -> float | None:
    """SliceThickness (mm), checked against the spacing from the positions.

    Thicker than the spacing is an overlapping reconstruction, thinner leaves gaps; both
    are legitimate and logged. A missing or unusable value gives None (read as the spacing),
    with a warning when a value is there (``warn``: once per series, as it is read).
    """
    thick = _floats(ds, "SliceThickness", 1)
    if not thick.size or thick[0] <= 0:
        stated = _text(ds, "SliceThickness")
        if stated and warn:  # a value that is there but cannot be a thickness: said, not taken silently for none
            log.warning(
                "warning: SliceThickness %r in %s is not a thickness; taking the slices as contiguous (%.4g mm "
                "thick); give --slice-thickness if they are not", stated, folder, spacing,
            )  # fmt: skip
        return None
    value = float(thick[0])
    if abs(value - spacing) > 0.05 * spacing:
        kind = "overlapping" if value > spacing else "with gaps between them"
        log.debug("%s: slices %.3g mm thick every %.3g mm (%s)", folder, value, spacing, kind)
    return value


def headers_by_series(folder: str | Path) -> dict[str, list[Dataset]]:
    """The image headers (no pixels) under ``folder``, searched recursively, grouped by
    SeriesInstanceUID ("" for an empty one); files that are not DICOM images are skipped.

    Raises:
        InputError: ``folder`` is not a folder.
    """
    groups, _, _, _ = _scan(Path(folder))
    return {uid: [ds for _, ds in slices] for uid, slices in groups.items()}


def _scan(folder: Path) -> tuple[dict[str, _Slices], int, list[str], dict[str, int]]:
    """Group image headers under ``folder`` by SeriesInstanceUID; count skipped files, name
    the damaged ones (a DICOM preamble, but the header cannot be read), and count the
    localizers (ImageType LOCALIZER: a scout, which some scanners file in the series of
    the slices it planned) left out of each series."""
    if not folder.is_dir():
        raise InputError(f"DICOM folder not found (or not a folder): {folder}")
    groups: dict[str, _Slices] = {}
    skipped, damaged, scouts = 0, [], dict[str, int]()
    for path in files_below(folder):
        ds = _read_header(path)
        if ds is None:
            skipped += 1
            if _has_preamble(path):
                damaged.append(path.name)
        elif _is_localizer(ds):
            uid = _text(ds, "SeriesInstanceUID")
            scouts[uid] = scouts.get(uid, 0) + 1
        else:
            groups.setdefault(_text(ds, "SeriesInstanceUID"), []).append((path, ds))
    return groups, skipped, damaged, scouts


def _is_localizer(ds: Dataset) -> bool:
    value = ds.get("ImageType") or ()
    return "LOCALIZER" in (str(v).strip().upper() for v in ([value] if isinstance(value, str) else value))


def _has_preamble(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(132)[128:] == b"DICM"
    except OSError:
        return False


def _read_header(path: Path) -> Dataset | None:
    """The header of a DICOM image file, or None if ``path`` is not one.

    pydicom's validation warnings (odd but readable values) are logged at DEBUG (``-v``)
    instead of flooding stderr."""
    for force in (False, True):  # force only for files without the DICM preamble
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ds = pydicom.dcmread(path, stop_before_pixels=True, force=force)
            for warning in caught:
                log.debug("%s: %s", path.name, warning.message)
        except InvalidDicomError:
            continue
        except Exception as err:  # truncated or garbled: not a readable DICOM file
            log.debug("skipping %s: %s", path, err)
            return None
        return ds if "Rows" in ds else None
    return None


def series_uid_of(path: Path) -> str | None:
    """The SeriesInstanceUID of a DICOM image file ("" when empty); None for other files."""
    ds = _read_header(path)
    return None if ds is None else _text(ds, "SeriesInstanceUID")


def _text(ds: Dataset, keyword: str) -> str:
    return str(ds.get(keyword, "") or "").strip()


def _floats(ds: Dataset, keyword: str, size: int) -> np.ndarray:
    """A numeric tag as ``size`` floats (empty array when missing, malformed or not finite)."""
    value = ds.get(keyword)
    try:
        values = np.asarray([float(v) for v in ([value] if size == 1 else value or [])])
    except (TypeError, ValueError):
        return np.empty(0)
    return values if values.size == size and np.all(np.isfinite(values)) else np.empty(0)


def _order(slices: _Slices) -> tuple[_Slices, np.ndarray | None]:
    """Sort along the slice normal; also return the sorted positions along it (mm)."""
    iop = _floats(slices[0][1], "ImageOrientationPatient", 6)
    ipps = [_floats(ds, "ImagePositionPatient", 3) for _, ds in slices]
    if iop.size == 0 or any(p.size == 0 for p in ipps):
        return sorted(slices, key=lambda s: (int(s[1].get("InstanceNumber") or 0), s[0])), None
    proj = np.asarray(ipps) @ np.cross(iop[:3], iop[3:])
    order = np.argsort(proj, kind="stable")
    return [slices[i] for i in order], proj[order]


def _info(uid: str, slices: _Slices) -> SeriesInfo:
    ordered, pos = _order(slices)
    ds, files = ordered[0][1], tuple(p for p, _ in ordered)
    spacing = float(np.median(np.diff(pos))) if pos is not None and len(pos) > 1 else None
    desc, modality = _text(ds, "SeriesDescription"), _text(ds, "Modality")
    return SeriesInfo(uid, desc, modality, len(files), spacing, files)


def _pick(folder: Path, groups: dict[str, _Slices], series_uid: str | None, option: str) -> str:
    if series_uid is None:
        if len(groups) == 1:
            return next(iter(groups))
        listing = "; ".join(_info(u, s).summary() for u, s in groups.items())
        empty = f" ({option} '' for <empty UID>)" if "" in groups else ""
        raise InputError(f"{folder} holds {len(groups)} series: {listing}; pass {option} UID to choose one{empty}")
    if series_uid not in groups:
        raise InputError(
            f"series {series_uid!r} not found in {folder}; available: " + ", ".join(repr(u) for u in groups)
        )
    return series_uid


def _check(folder: Path, slices: _Slices, pos: np.ndarray | None) -> np.ndarray:
    """Refuse series that cannot be read as one regular CT volume (evenly spaced along the
    slice normal; a gantry tilt's shear is undone after, by :mod:`thinslice.io.tilt`).

    Returns:
        The sorted slice positions along the normal (mm), known to be evenly spaced.
    """
    modalities = sorted({_text(ds, "Modality") for _, ds in slices} - {""})
    if modalities and modalities != ["CT"]:
        raise InputError(
            f"the series in {folder} is {'/'.join(modalities)}, thinslice needs CT; pass a folder holding a CT series"
        )
    if len(slices) < 3:
        raise InputError(f"only {len(slices)} slice(s) in {folder}; thinslice needs at least 3")
    bad = next((p.name for p, ds in slices if _floats(ds, "ImagePositionPatient", 3).size == 0), None)
    if bad is not None:
        raise InputError(
            f"cannot order the slices in {folder}: {bad} has no valid ImagePositionPatient; fix or remove that slice"
        )
    p0, ds0 = slices[0]
    checks = (("ImageOrientationPatient", 6, _COS_TOL), ("PixelSpacing", 2, _MM_TOL), ("Rows", 1, 0), ("Columns", 1, 0))
    for keyword, size, tol in checks:
        ref = _floats(ds0, keyword, size)
        if ref.size != size:
            raise InputError(f"{p0.name} in {folder} has no valid {keyword}")
        for path, ds in slices[1:]:
            val = _floats(ds, keyword, size)
            if val.shape != ref.shape or not np.allclose(val, ref, rtol=0, atol=tol):
                raise InputError(
                    f"differing {keyword} within the series in {folder}: {ref.tolist()} in "
                    f"{p0.name} but {val.tolist()} in {path.name}; split or fix the series"
                )
    for keyword in ("RescaleSlope", "RescaleIntercept"):  # an absent one reads as 1 or 0: HU off by 1024
        lacking = [path.name for path, ds in slices if keyword not in ds]
        if 0 < len(lacking) < len(slices):
            raise InputError(
                f"{lacking[0]} in {folder} has no {keyword} where other slices of the series have one, so its HU "
                "cannot be told; fix or remove that slice"
            )
    if pos is None:  # every slice has a position and the first an orientation, as checked above
        raise InputError(f"cannot order the slices in {folder}")
    patients = {_text(ds, "PatientID") for _, ds in slices}
    if len(patients) > 1:  # one series of two patients: a mix-up, never to be read as one scan
        raise InputError(f"the series in {folder} holds slices of {len(patients)} PatientIDs; split or fix the series")
    if np.any(_floats(ds0, "PixelSpacing", 2) <= 0):
        raise InputError(
            f"{p0.name} in {folder} has PixelSpacing {ds0.PixelSpacing} mm; fix the header (sizes are > 0)"
        )
    row, col = ref_iop = _floats(ds0, "ImageOrientationPatient", 6).reshape(2, 3)
    if not (np.allclose(np.linalg.norm(ref_iop, axis=1), 1, atol=1e-3) and abs(float(row @ col)) < 1e-3):
        raise InputError(
            f"ImageOrientationPatient {ref_iop.ravel().tolist()} in {p0.name} ({folder}) is not two orthogonal "
            "unit vectors (lengths "
            + ", ".join(f"{n:.3g}" for n in np.linalg.norm(ref_iop, axis=1))
            + f", {np.degrees(np.arccos(np.clip(row @ col / np.prod(np.linalg.norm(ref_iop, axis=1)), -1, 1))):.1f}° "
            "apart); fix the header or re-export the series"
        )
    gaps = np.diff(pos)
    if np.any(gaps <= _MM_TOL):
        i = int(np.argmax(gaps <= _MM_TOL))
        raise InputError(
            f"duplicate slice position {pos[i]:.2f} mm in {folder} ({slices[i][0].name} and "
            f"{slices[i + 1][0].name}); remove the duplicates or split the series"
        )
    med = float(np.median(gaps))
    off = np.abs(gaps - med) > 0.01 * med + 0.01
    if not np.any(off):  # read: now a warning may be said
        stated = sorted({float(t[0]) for _, ds in slices if (t := _floats(ds, "SliceThickness", 1)).size})
        if len(stated) > 1:
            log.warning(
                "warning: SliceThickness differs within the series in %s (%g to %g mm); thinslice takes the first "
                "slice's: give --slice-thickness if another is right", folder, stated[0], stated[-1],
            )  # fmt: skip
        zero = [path.name for path, ds in slices if (slope := _floats(ds, "RescaleSlope", 1)).size and not slope[0]]
        if zero:  # every voxel would read as the intercept; readers take 0 as 1, and so does thinslice, aloud
            log.warning("warning: %s in %s has RescaleSlope 0; reading it as 1, as DICOM readers do", zero[0], folder)
        return pos
    multiple = np.round(gaps[off] / med)
    if np.all(multiple >= 2) and np.allclose(gaps[off], multiple * med, rtol=0.01, atol=0.01):
        where = ", ".join(f"{pos[i]:.2f} and {pos[i + 1]:.2f} mm" for i in np.flatnonzero(off))
        raise InputError(
            f"missing slice between positions {where} in {folder} (slices are {med:.3g} mm "
            "apart elsewhere); export the complete series"
        )
    stacks = _stacks(gaps)
    if stacks:
        parts = [f"slices {a + 1}-{b + 1} ({pos[a]:.2f} to {pos[b]:.2f} mm) {gaps[a]:.3g} mm apart" for a, b in stacks]
        raise InputError(
            f"uneven slice spacing in {folder}: it is {len(stacks)} stacks at different spacings, "
            + " and ".join(parts)
            + "; thinslice needs one spacing: export each stack as its own series, or resample to even spacing first"
        )
    lo, hi = int(np.argmin(gaps)), int(np.argmax(gaps))
    raise InputError(
        f"uneven slice spacing in {folder}: gaps from {gaps[lo]:.3g} mm (between "
        f"{pos[lo]:.2f} and {pos[lo + 1]:.2f} mm) to {gaps[hi]:.3g} mm (between {pos[hi]:.2f} "
        f"and {pos[hi + 1]:.2f} mm), median {med:.3g} mm; resample to even spacing first"
    )


def _stacks(gaps: np.ndarray) -> list[tuple[int, int]]:
    """The first and last slice of each evenly spaced stack, when the series is a few of
    them at different spacings (head CT often has thin slices low and thick ones above),
    joined by at most one odd gap each; [] when the gaps are not like that."""
    runs, start = [], 0
    for i in range(1, len(gaps) + 1):
        if i == len(gaps) or abs(gaps[i] - gaps[start]) > 0.01 * gaps[start] + 0.01:
            runs.append((start, i))  # gaps[start:i] are equal
            start = i
    stacks = [(a, b) for a, b in runs if b - a >= 2]
    covered = sum(b - a for a, b in stacks)
    joins = [after[0] - before[1] for before, after in zip(stacks, stacks[1:], strict=False)]  # odd gaps
    spacings = [gaps[a] for a, _ in stacks]
    differ = all(abs(x - y) > 0.01 * x + 0.01 for x, y in zip(spacings, spacings[1:], strict=False))
    if len(stacks) < 2 or covered + sum(joins) != len(gaps) or any(j > 1 for j in joins) or not differ:
        return []
    return stacks


def _check_pixels(folder: Path, slices: _Slices, multiframe: bool) -> None:
    """Refuse colour slices and pixel data shorter than Rows x Columns (ITK fills the rest
    with zeros), and a series too big for the memory, before reading any pixels."""
    ds0 = slices[0][1]
    rows, cols = int(ds0.get("Rows") or 0), int(ds0.get("Columns") or 0)
    for path, ds in slices:
        samples, photometric = int(ds.get("SamplesPerPixel") or 1), _text(ds, "PhotometricInterpretation")
        if samples != 1 or photometric not in ("", "MONOCHROME1", "MONOCHROME2"):
            raise InputError(
                f"{path.name} in {folder} is a colour image ({photometric or '?'}, {samples} samples per pixel), "
                "not a CT slice; remove it from the series"
            )
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        if syntax is not None and not syntax.is_compressed and not multiframe:
            needed = rows * cols * max(1, int(ds.get("BitsAllocated") or 16) // 8)
            size = path.stat().st_size
            if size < needed:
                raise InputError(
                    f"{path.name} in {folder} claims {rows}x{cols} pixels ({needed:,} bytes) but the whole "
                    f"file has {size:,} bytes: truncated or a wrong header; re-export the series"
                )
    require_memory(len(slices) * rows * cols * 4 * 2, f"reading {folder}", "crop the series or use more memory")


def _pydicom_hu(files: list[Path]) -> np.ndarray:
    """HU of MONOCHROME1 slices, read by pydicom (stored values times slope plus intercept:
    the photometric interpretation is for display and does not change HU)."""
    planes = []
    for path in files:
        try:
            ds = pydicom.dcmread(path)
            raw = ds.pixel_array.astype(np.float64)
        except Exception as err:  # noqa: BLE001 - pydicom raises many types for bad pixel data
            raise InputError(f"cannot read the pixels of {path} ({err})") from err
        planes.append(raw * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0) or 0))
    return np.stack(planes)


def _read_pixels(folder: Path, files: list[Path]) -> sitk.Image:
    """Voxels of the sorted files, rescaled to HU by SimpleITK."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f in files])
    try:
        return reader.Execute()
    except RuntimeError as err:
        hint = "a truncated file or an unsupported compression?"
        raise InputError(f"cannot read the pixels in {folder} ({hint}): {first_line(err)}") from err


def _to_hu(array: np.ndarray) -> np.ndarray:
    """int16 when every value is an integer that fits, else float32."""
    return array.astype(np.int16 if fits_int16(array) else np.float32)
