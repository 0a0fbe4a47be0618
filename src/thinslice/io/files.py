"""Reading and writing CT volumes with their geometry.

Files: NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``) and MetaImage
(``.mha``, ``.mhd``) through SimpleITK. Folders: one DICOM series (see
:mod:`thinslice.io.dicom`). Geometry travels from the reader to the writer untouched;
only what the caller changes (the slice spacing) differs in the output.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from thinslice.ct import fits_int16, require_usable
from thinslice.errors import ConfigError, InputError, OutputError
from thinslice.io.atomic import atomic_files, atomic_path, check_destination
from thinslice.io.compress import gzip_file
from thinslice.io.headers import (
    check_companions,
    check_direction,
    check_nifti_header,
    check_spacing,
    check_text_header,
    first_line,
    gzip_payload_size,
    integer_values,
    kept_nifti_fields,
    nifti_bytes,
    quiet_nibabel,
    read_nifti_header,
    require_regular_file,
    restore_nifti_fields,
)
from thinslice.io.notes import Notes, notes_for, nrrd_thickness, read_notes, record_nrrd_thickness
from thinslice.io.walk import NOT_DICOM_SUFFIXES
from thinslice.memory import require_memory
from thinslice.volume import Geometry, Volume

log = logging.getLogger(__name__)

SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
#: The ITK reader and writer of each suffix, set explicitly: ITK picks them by a
#: case-sensitive extension, so ``CT.MHA`` would otherwise be unreadable.
IMAGE_IOS = {".nii.gz": "NiftiImageIO", ".nii": "NiftiImageIO", ".nrrd": "NrrdImageIO", ".nhdr": "NrrdImageIO",
             ".mha": "MetaImageIO", ".mhd": "MetaImageIO"}  # fmt: skip
#: Formats whose voxels go to a second file next to the header.
DETACHED = (".nhdr", ".mhd")
#: Refuse volumes larger than this many voxels before allocating them (4 GiB of int16).
MAX_VOXELS = 2**31


def suffix_of(path: str | os.PathLike[str]) -> str:
    """The image suffix of ``path`` (``.nii.gz`` counts as one), lower case, or ``''``."""
    name = Path(path).name.lower()
    return next((s for s in SUFFIXES if name.endswith(s)), "")


def stem_of(path: str | os.PathLike[str]) -> str:
    """File name without its image suffix (``ct.nii.gz`` -> ``ct``)."""
    name = Path(path).name
    return name[: len(name) - len(suffix_of(name))]


#: How much wider than the third axis's spacing another axis's must be to be the slice axis
#: of a file: thin CT often has slices finer than its pixels (0.5 mm slices with 1 mm pixels,
#: 0.4 mm with 1 mm), while a thick axis stored first is 3 mm or more against pixels under 1 mm.
SLICE_AXIS_MARGIN = 3.0


def choose_slice_axis(spacing: tuple[float, float, float]) -> int:
    """The ITK axis slices are stacked along in a file: the third, as converters write CT,
    unless another axis's spacing is at least :data:`SLICE_AXIS_MARGIN` times as wide (a
    thick axis stored first), then the widest."""
    widest = int(np.argmax(spacing))
    return widest if spacing[widest] >= SLICE_AXIS_MARGIN * spacing[2] else 2


def load(path: str | os.PathLike[str], series_uid: str | None = None, *, series_option: str = "--series-uid") -> Volume:
    """Read a CT volume in Hounsfield units.

    Args:
        path: a NIfTI/NRRD/MHA file or a folder holding a DICOM series.
        series_uid: which series to read when a DICOM folder holds several.
        series_option: the option that chooses the series, named when a folder holds several.

    Returns:
        The volume, slice axis first. For files the slice axis is the third axis unless
        another is at least three times as wide (:func:`choose_slice_axis`); for DICOM it
        is the acquisition axis.

    Raises:
        InputError: not a path, or the path is missing, unreadable, not 3-D, or not usable CT.
        ConfigError: ``series_uid`` for a file.
    """
    if not isinstance(path, str | os.PathLike):
        kind = type(path).__name__
        raise InputError(
            f"expected a path to a NIfTI/NRRD/MHA file or a DICOM folder, got {kind}"
            + (
                "; an array has no geometry: build a thinslice.Volume(data, Geometry(...)) from it"
                if kind == "ndarray"
                else ""
            )
        )
    p = Path(path)
    if not p.exists():
        raise InputError(f"input not found: {p}; check the path")
    if series_uid is not None and not p.is_dir():
        raise ConfigError(f"{series_option} picks a series of a DICOM folder; {p} is a file, and holds one scan")
    if p.is_dir() and not any(_is_dicom_candidate(c) for c in _files_under(p)):
        images = [c for c in _files_under(p) if suffix_of(c)]
        if images:
            raise InputError(
                f"{p} holds {len(images)} image file(s) ({images[0].name}, ...), not a DICOM series; give one "
                "file with -i, or an output folder with -o to upsample them all (batch)"
            )
    if p.is_dir():
        from thinslice.io.dicom import read_series  # pydicom only when a folder is read

        volume = read_series(p, series_uid=series_uid, series_option=series_option)
    else:
        volume = _read_file(p)
    _check_values(volume, p)
    return volume


def _read_file(p: Path) -> Volume:
    if not suffix_of(p):
        raise InputError(
            f"unsupported file type: {p.name}; give a .nii, .nii.gz, .nrrd, .mha or .mhd file, "
            "or a folder with one DICOM series"
        )
    size_on_disk = require_regular_file(p)  # a FIFO would hang the reader
    with _canonical_name(p) as readable:
        return _read_checked(p, readable, size_on_disk)


def _read_checked(p: Path, readable: Path, size_on_disk: int) -> Volume:
    """Read ``p`` (through ``readable``, the same file under a name ITK and nibabel accept)."""
    suffix = suffix_of(p)
    header = read_nifti_header(readable, p) if suffix in (".nii", ".nii.gz") else None
    if header is not None:  # before ITK: dimensions it would accept or cannot read (NIfTI-2)
        _check_shape(tuple(int(n) for n in header.get_data_shape()), p)
        check_nifti_header(header, p, size_on_disk, suffix == ".nii.gz")
    else:
        check_text_header(p, suffix, _check_shape)
    reader = sitk.ImageFileReader()
    reader.SetImageIO(IMAGE_IOS[suffix_of(p)])
    reader.SetFileName(str(readable))
    try:
        with _itk_stderr():
            reader.ReadImageInformation()
    except RuntimeError as err:
        if header is not None and int(header.sizeof_hdr) == 540:
            raise InputError(
                f"{p.name} is NIfTI-2, which SimpleITK cannot read; save it as NIfTI-1 (.nii.gz), .nrrd or .mha"
            ) from err
        raise InputError(f"cannot read {p}: not a valid image file ({first_line(err)})") from err
    size = reader.GetSize()
    _check_shape(size, p)
    if reader.GetNumberOfComponents() > 1:  # RGB, vector or complex voxels
        kind = sitk.GetPixelIDValueAsString(reader.GetPixelID())
        raise InputError(f"{p.name} holds {kind} voxels, not one grey value each; thinslice needs a CT volume in HU")
    check_direction(tuple(reader.GetDirection()), p)
    check_spacing(tuple(float(s) for s in reader.GetSpacing()), p)
    _check_memory_to_read(reader, p)
    needed = _check_nifti(readable, header, p) if header is not None else 0
    with ThreadPoolExecutor(max_workers=1) as pool:  # zlib and ITK release the GIL
        payload = pool.submit(gzip_payload_size, p) if suffix_of(p) == ".nii.gz" else None
        try:
            with _itk_stderr() as noise:
                image = reader.Execute()
        except RuntimeError as err:
            detail = next((ln for ln in noise if not ln.startswith("WARNING")), first_line(err))
            raise InputError(f"cannot read {p}: the file is damaged or truncated ({detail})") from err
        if payload is not None and payload.result() < needed:
            raise InputError(
                f"{p} is truncated: its header needs {needed:,} bytes but the file unpacks to "
                f"{payload.result():,}; re-export the scan"
            )
    if image.GetDimension() == 4:  # a 4-D file holding a single 3-D volume
        image = image[:, :, :, 0]
    geometry, notes = _geometry_and_notes(image)
    array = sitk.GetArrayFromImage(image)
    del image
    if header is not None and integer_values(header) and not np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.int16 if fits_int16(array) else np.int32)  # integer HU stay integers
    meta: dict[str, Any] = {"source": str(p.resolve())} | ({"notes": notes.text} if notes.text else {})
    if header is not None:  # what ITK would not carry to a NIfTI written from it
        meta["nifti_fields"] = kept_nifti_fields(header)
    thickness = notes.thickness or (nrrd_thickness(p, geometry.slice_axis) if suffix in (".nrrd", ".nhdr") else None)
    return Volume.from_itk_array(array, geometry, stem_of(p), meta, thickness)


def _geometry_and_notes(image: sitk.Image) -> tuple[Geometry, Notes]:
    """The grid of a 3-D image, its slice axis from a thinslice note or else by
    :func:`choose_slice_axis`, and its notes."""
    notes = read_notes(image)
    spacing = tuple(float(s) for s in image.GetSpacing())
    axis = choose_slice_axis((spacing[0], spacing[1], spacing[2])) if notes.slice_axis is None else notes.slice_axis
    geometry = Geometry(
        spacing=(spacing[0], spacing[1], spacing[2]),
        origin=tuple(float(o) for o in image.GetOrigin()),  # type: ignore[arg-type]
        direction=tuple(float(d) for d in image.GetDirection()),
        slice_axis=axis,
    )
    return geometry, notes


@contextlib.contextmanager
def _canonical_name(p: Path) -> Iterator[Path]:
    """``p``, or a link to it alone in a folder, named in lower case: when its suffix is
    not (``CT.Nii.Gz``: the NIfTI library refuses mixed-case names whatever reader is
    chosen), or when a file beside it shares its stem (asked for ``a.nii.gz``, the library
    opens ``a.nii`` when there is one, and the voxels would be another scan's)."""
    suffix = suffix_of(p)
    if suffix not in (".nii", ".nii.gz"):
        yield p
        return
    twins = [p.with_name(stem_of(p) + ext) for ext in (".nii", ".nii.gz", ".hdr", ".img", ".hdr.gz", ".img.gz")]
    if p.name.endswith(suffix) and not any(t.name != p.name and t.exists() for t in twins):
        yield p
        return
    with tempfile.TemporaryDirectory(prefix="thinslice-") as tmp:
        link = Path(tmp) / ("image" + suffix)
        link.symlink_to(p.resolve())
        yield link


def _files_under(folder: Path) -> list[Path]:
    try:
        return sorted(e for e in folder.iterdir() if e.is_file() and not e.name.startswith("."))
    except OSError:
        return []


def _is_dicom_candidate(path: Path) -> bool:
    """Could be a DICOM file: no image suffix and not an obvious companion or document."""
    return not suffix_of(path) and path.suffix.lower() not in NOT_DICOM_SUFFIXES


@contextlib.contextmanager
def _itk_stderr() -> Iterator[list[str]]:
    """Catch what ITK's C++ code prints on file descriptor 2 (MetaIO, GDCM and NIfTI
    readers write there directly), so a bad file gives one line, not a screenful.

    Yields a list that holds the caught lines once the block ends; they are also logged
    at DEBUG (``-v``).
    """
    lines: list[str] = []
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2: nothing to catch
        yield lines
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode(errors="replace")
            lines.extend(ln.strip() for ln in text.splitlines() if ln.strip())
            for line in lines:
                log.debug("ITK: %s", line)


def _check_memory_to_read(reader: sitk.ImageFileReader, p: Path) -> None:
    """Refuse before allocating when the voxels (ITK buffer plus numpy copies) cannot fit."""
    match = re.search(r"(\d+)-bit", sitk.GetPixelIDValueAsString(reader.GetPixelID()))
    itemsize = (int(match.group(1)) // 8 if match else 8) * max(1, reader.GetNumberOfComponents())
    voxels = int(np.prod(np.asarray(reader.GetSize(), dtype=np.int64)))
    copies = 2 if choose_slice_axis(tuple(reader.GetSpacing()[:3])) == 2 else 3  # type: ignore[arg-type]
    require_memory(voxels * itemsize * copies, f"reading {p.name}", "crop the scan or use a machine with more memory")


def _check_shape(size: tuple[int, ...], p: Path) -> None:
    if len(size) == 2:
        raise InputError(f"{p.name} is a 2-D image {tuple(size)}; thinslice needs a 3-D CT volume")
    if len(size) == 3 and min(size) == 1 and size[2] == 1:
        raise InputError(
            f"{p.name} has 1 slice {tuple(size)}: a 2-D image; thinslice needs a 3-D CT volume with at least 3 slices"
        )
    if len(size) == 4 and size[3] == 1:
        return
    if len(size) != 3:
        raise InputError(
            f"{p.name} has {len(size)} dimensions {tuple(size)}; thinslice needs one 3-D CT volume "
            "(split 4-D series into 3-D volumes first)"
        )
    voxels = int(np.prod(np.asarray(size, dtype=np.int64)))
    if voxels > MAX_VOXELS:
        raise InputError(
            f"{p.name} declares {size[0]}x{size[1]}x{size[2]} = {voxels:,} voxels, more than "
            f"thinslice handles ({MAX_VOXELS:,}); crop the scan or check its header"
        )


def _check_nifti(readable: Path, header: Any, p: Path) -> int:
    """NIfTI checks SimpleITK does not make: the file holds the voxels its header claims,
    and float voxels are finite (ITK's NIfTI reader silently turns NaN into 0).

    Returns:
        The bytes the header needs (offset plus voxels), to compare with a ``.nii.gz``'s
        unpacked size.
    """
    import nibabel as nib

    needed = nifti_bytes(header)
    if suffix_of(p) == ".nii" and p.stat().st_size < needed:
        raise InputError(
            f"{p} is truncated: its header needs {needed:,} bytes but the file has "
            f"{p.stat().st_size:,}; re-export the scan"
        )
    if np.issubdtype(header.get_data_dtype(), np.floating):
        try:
            with quiet_nibabel():
                image: Any = nib.load(str(readable))
                raw = np.asanyarray(image.dataobj)
        except Exception as err:  # noqa: BLE001
            raise InputError(f"cannot read {p}: the file is damaged or truncated ({first_line(err)})") from err
        bad = int(raw.size - np.count_nonzero(np.isfinite(raw)))
        if bad:
            raise InputError(f"{p.name} holds {bad:,} NaN/Inf voxels; fix or mask them before upsampling")
    return needed


def _check_values(volume: Volume, p: Path) -> None:
    require_usable(volume, p.name)


def save(
    volume: Volume,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    force: bool | None = None,
) -> Path:
    """Write ``volume`` atomically (see :mod:`thinslice.io.atomic`).

    The format follows the extension: NIfTI (default for ``.nii.gz``), NRRD, MHA. The
    voxel type is that of ``volume.data``.

    Raises:
        OutputError: unknown extension, missing or read-only folder, the output would
            overwrite the volume's own source, it exists and ``overwrite`` is False, or the
            write fails (disk full, permissions).
    """
    if force is not None:
        warnings.warn("save(force=...) is now save(overwrite=...)", DeprecationWarning, stacklevel=2)
        overwrite = overwrite or force
    out = Path(path)
    suffix = suffix_of(out)
    check_output_path(out, overwrite=overwrite, sources=[volume.meta.get("source"), volume.meta.get("derived_from")])
    image = to_sitk(volume)
    image.SetMetaData("ITK_FileNotes", notes_for(volume, suffix))
    writer = sitk.ImageFileWriter()
    writer.SetImageIO(IMAGE_IOS[suffix])
    writer.SetUseCompression(suffix in (".nii.gz", ".nrrd", ".mha"))
    try:
        if suffix in DETACHED:  # header and data file, published together under their final names
            with atomic_files(out, overwrite=overwrite) as folder:
                _write(writer, image, folder / out.name, out, volume)
                check_companions(out, os.listdir(folder))  # as ITK named them
        else:
            with atomic_path(out, suffix=suffix, overwrite=overwrite) as tmp:
                if suffix == ".nii.gz":  # ITK's own gzip is slow (one thread, level 6)
                    raw = tmp.with_name(tmp.name.removesuffix(".gz"))
                    try:
                        writer.SetUseCompression(False)
                        _write(writer, image, raw, out, volume)
                        gzip_file(raw, tmp)
                    finally:
                        raw.unlink(missing_ok=True)
                else:
                    _write(writer, image, tmp, out, volume)
    except (RuntimeError, OSError) as err:
        raise OutputError(f"cannot write {out}: {first_line(err)}") from err
    return out


def _write(writer: sitk.ImageFileWriter, image: sitk.Image, path: Path, out: Path, volume: Volume) -> None:
    """Write and check: the NIfTI writer reports a short write (disk full) only on stderr,
    so the written file is read back (header, size, gzip stream) before it is published.
    A NIfTI gets back the input's fields (:func:`kept_nifti_fields`) ITK would drop, a NRRD
    the slice thickness (:func:`record_nrrd_thickness`)."""
    writer.SetFileName(str(path))
    with _itk_stderr() as noise:
        writer.Execute(image)
    errors = [ln for ln in noise if "ERROR" in ln.upper()]
    if errors:
        raise OutputError(f"cannot write {out}: {errors[0][:200]} (is the disk full?)")
    if suffix_of(path) in (".nrrd", ".nhdr") and volume.slice_thickness is not None:
        record_nrrd_thickness(path, volume.geometry.slice_axis, volume.slice_thickness)
    if suffix_of(path) in (".nii", ".nii.gz"):
        fields = volume.meta.get("nifti_fields")
        if fields and suffix_of(path) == ".nii":
            restore_nifti_fields(path, fields)
        try:
            header = read_nifti_header(path)
            needed = nifti_bytes(header)
            got = gzip_payload_size(path) if suffix_of(path) == ".nii.gz" else path.stat().st_size
        except InputError as err:
            raise OutputError(f"cannot write {out}: the written file is incomplete (is the disk full?): {err}") from err
        if got < needed:
            raise OutputError(f"cannot write {out}: only {got:,} of {needed:,} bytes were written (is the disk full?)")


def check_output_path(
    out: Path,
    *,
    overwrite: bool,
    sources: list[str | None] | None = None,
    suffixes: tuple[str, ...] | None = None,
    option: str = "-o",
) -> None:
    """Refuse an output that cannot or must not be written, before any work is done.

    Args:
        suffixes: the endings allowed (e.g. ``(".png",)``); default: the image formats.
        option: the option that names ``out``, for the messages.
    """
    if suffixes is None and not suffix_of(out):
        hint = " (or, for a DICOM series in that folder, give --output-format dicom; from a file, --dicom-template too)"
        folder = "" if "." in out.name or option != "-o" else hint
        raise OutputError(
            f"unsupported {option if option != '-o' else 'output'} type: {out.name}; end the name with .nii.gz, "
            f".nii, .nrrd or .mha{folder}"
        )
    what = "output" if option == "-o" else option  # the messages name the option when it is not -o
    if suffixes is not None and not out.name.lower().endswith(suffixes):
        raise OutputError(f"unsupported {what} type: {out.name or out}; end the name with {' or '.join(suffixes)}")
    if suffix_of(out) in DETACHED:  # ITK names the uncompressed data file so
        check_companions(out, [stem_of(out) + ".raw"])
    example = out / ("thin.nii.gz" if suffixes is None else f"preview{suffixes[0]}")
    check_destination(out, overwrite=overwrite, what=what, option=option, inputs=sources or [], example=example)


def to_sitk(volume: Volume) -> sitk.Image:
    """A ``SimpleITK.Image`` with the volume's voxels and geometry, and thinslice's note
    (thickness, slice axis) in ``ITK_FileNotes``, which ``sitk.WriteImage`` keeps."""
    array = volume.itk_array()
    if array.dtype.kind == "b" or array.dtype.itemsize < 4 and array.dtype.kind == "f":  # types ITK has not
        array = array.astype(np.uint8 if array.dtype.kind == "b" else np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(volume.geometry.spacing)
    image.SetOrigin(volume.geometry.origin)
    image.SetDirection(volume.geometry.direction)
    image.SetMetaData("ITK_FileNotes", notes_for(volume, ""))
    return image


def from_sitk(image: sitk.Image, name: str = "image") -> Volume:
    """A :class:`Volume` from a 3-D ``SimpleITK.Image``, read as :func:`load` reads a file:
    the slice axis and thickness of a thinslice note, else :func:`choose_slice_axis`."""
    if image.GetDimension() != 3:
        raise InputError(f"expected a 3-D image, got {image.GetDimension()}-D")
    geometry, notes = _geometry_and_notes(image)
    meta = {"notes": notes.text} if notes.text else {}
    return Volume.from_itk_array(
        sitk.GetArrayFromImage(image), geometry, name=name, meta=meta, slice_thickness=notes.thickness
    )
