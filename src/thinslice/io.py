"""Reading and writing CT volumes with their geometry.

Files: NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``) and MetaImage
(``.mha``, ``.mhd``) through SimpleITK. Folders: one DICOM series (see
:mod:`thinslice.dicom`). Geometry travels from the reader to the writer untouched;
only what the caller changes (the slice spacing) differs in the output.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from thinslice.errors import InputError, OutputError
from thinslice.volume import Geometry, Volume

log = logging.getLogger(__name__)

SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
#: Refuse volumes larger than this many voxels before allocating them (4 GiB of int16).
MAX_VOXELS = 2**31


def suffix_of(path: str | os.PathLike[str]) -> str:
    """The image suffix of ``path`` (``.nii.gz`` counts as one), lower case, or ``''``."""
    name = Path(path).name.lower()
    return next((s for s in SUFFIXES if name.endswith(s)), "")


def stem_of(path: str | os.PathLike[str]) -> str:
    """File name without its image suffix (``ct.nii.gz`` -> ``ct``)."""
    p = Path(path)
    suffix = suffix_of(p)
    return p.name[: len(p.name) - len(suffix)] if suffix else p.name


def choose_slice_axis(spacing: tuple[float, float, float]) -> int:
    """The ITK axis with the largest spacing; the third axis on a tie."""
    largest = max(spacing)
    if spacing[2] >= largest * (1 - 1e-6):
        return 2
    return int(np.argmax(spacing))


def load(path: str | os.PathLike[str], series_uid: str | None = None) -> Volume:
    """Read a CT volume in Hounsfield units.

    Args:
        path: a NIfTI/NRRD/MHA file or a folder holding a DICOM series.
        series_uid: which series to read when a DICOM folder holds several.

    Returns:
        The volume, slice axis first. For files the slice axis is the axis with the
        largest spacing (the third on a tie); for DICOM it is the acquisition axis.

    Raises:
        InputError: the path is missing, unreadable, not 3-D, or not usable CT.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"input not found: {p}; check the path")
    if p.is_dir():
        from thinslice.dicom import read_series

        volume = read_series(p, series_uid=series_uid)
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
    if p.stat().st_size == 0:
        raise InputError(f"{p} is empty (0 bytes); re-export the scan")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise InputError(f"cannot read {p}: not a valid image file ({_first_line(err)})") from err
    size = reader.GetSize()
    _check_shape(size, p)
    _check_nifti(p)
    try:
        image = reader.Execute()
    except RuntimeError as err:
        raise InputError(f"cannot read {p}: the file is damaged or truncated ({_first_line(err)})") from err
    if image.GetDimension() == 4:  # a 4-D file holding a single 3-D volume
        image = image[:, :, :, 0]
    spacing = tuple(float(s) for s in image.GetSpacing())
    geometry = Geometry(
        spacing=(spacing[0], spacing[1], spacing[2]),
        origin=tuple(float(o) for o in image.GetOrigin()),  # type: ignore[arg-type]
        direction=tuple(float(d) for d in image.GetDirection()),
        slice_axis=choose_slice_axis((spacing[0], spacing[1], spacing[2])),
    )
    array = sitk.GetArrayFromImage(image)
    return Volume.from_itk_array(array, geometry, name=stem_of(p), meta={"source": str(p.resolve())})


def _first_line(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("sitk::", "/", "Exception thrown"))]
    return (useful or lines or [type(err).__name__])[-1][:200]


def _check_shape(size: tuple[int, ...], p: Path) -> None:
    if len(size) == 2 or (len(size) == 3 and min(size) == 1 and size[2] == 1):
        raise InputError(f"{p.name} is a 2-D image {size}; thinslice needs a 3-D CT volume")
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


def _check_nifti(p: Path) -> None:
    """NIfTI checks SimpleITK does not make: the file holds the voxels its header claims,
    and float voxels are finite (ITK's NIfTI reader silently turns NaN into 0)."""
    if suffix_of(p) not in (".nii", ".nii.gz"):
        return
    import nibabel as nib

    try:
        image: Any = nib.load(str(p))
        header: Any = image.header
    except Exception as err:  # noqa: BLE001 - nibabel raises many types for bad headers
        raise InputError(f"cannot read {p}: bad NIfTI header ({_first_line(err)})") from err
    if np.issubdtype(header.get_data_dtype(), np.floating):
        try:
            raw = np.asanyarray(image.dataobj)
        except Exception as err:  # noqa: BLE001
            raise InputError(f"cannot read {p}: the file is damaged or truncated ({_first_line(err)})") from err
        bad = int(raw.size - np.count_nonzero(np.isfinite(raw)))
        if bad:
            raise InputError(f"{p.name} holds {bad:,} NaN/Inf voxels; fix or mask them before upsampling")
    if suffix_of(p) != ".nii":
        return
    needed = (
        int(header.get_data_offset())
        + int(np.prod(header.get_data_shape(), dtype=np.int64)) * header.get_data_dtype().itemsize
    )
    if p.stat().st_size < needed:
        raise InputError(
            f"{p} is truncated: its header needs {needed:,} bytes but the file has "
            f"{p.stat().st_size:,}; re-export the scan"
        )


def _check_values(volume: Volume, p: Path) -> None:
    if volume.num_slices < 3:
        raise InputError(
            f"{p.name} has {volume.num_slices} slice(s) along its slice axis; thinslice needs at "
            "least 3 slices to synthesize between them"
        )
    data = volume.data
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        raise InputError(f"{p.name} holds {bad:,} NaN/Inf voxels; fix or mask them before upsampling")


def save(
    volume: Volume,
    path: str | os.PathLike[str],
    *,
    force: bool = False,
) -> Path:
    """Write ``volume`` atomically (temporary file in the same folder, then rename).

    The format follows the extension: NIfTI (default for ``.nii.gz``), NRRD, MHA. The
    voxel type is that of ``volume.data``.

    Raises:
        OutputError: unknown extension, missing or read-only folder, the output would
            overwrite the volume's own source, or it exists and ``force`` is False.
    """
    out = Path(path)
    suffix = suffix_of(out)
    check_output_path(out, force=force, sources=[volume.meta.get("source")])
    image = to_sitk(volume)
    fd, tmp = tempfile.mkstemp(prefix=f".{stem_of(out)}.", suffix=f".part{suffix}", dir=out.parent)
    os.close(fd)
    try:
        sitk.WriteImage(image, tmp, useCompression=suffix in (".nii.gz", ".nrrd", ".mha"))
        os.replace(tmp, out)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, RuntimeError):
            raise OutputError(f"cannot write {out}: {_first_line(err)}") from err
        raise
    return out


def check_output_path(out: Path, *, force: bool, sources: list[str | None] | None = None) -> None:
    """Refuse an output that cannot or must not be written, before any work is done."""
    if not suffix_of(out):
        raise OutputError(f"unsupported output type: {out.name}; end the name with .nii.gz, .nii, .nrrd or .mha")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"output folder does not exist: {parent}; create it first")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output folder is not writable: {parent}; choose another -o")
    resolved = out.resolve()
    for src in sources or []:
        if src and Path(src).resolve() == resolved:
            raise OutputError(f"output {out} is the input file; choose another -o (inputs are never overwritten)")
    if out.is_dir():
        raise OutputError(f"output {out} is a folder; give a file name such as {out / 'thin.nii.gz'}")
    if out.exists() and not force:
        raise OutputError(f"output {out} already exists; pass --force to replace it")


def to_sitk(volume: Volume) -> sitk.Image:
    """A ``SimpleITK.Image`` with the volume's voxels and geometry."""
    image = sitk.GetImageFromArray(volume.itk_array())
    image.SetSpacing(volume.geometry.spacing)
    image.SetOrigin(volume.geometry.origin)
    image.SetDirection(volume.geometry.direction)
    return image


def from_sitk(image: sitk.Image, name: str = "image") -> Volume:
    """A :class:`Volume` from a 3-D ``SimpleITK.Image`` (slice axis: largest spacing)."""
    if image.GetDimension() != 3:
        raise InputError(f"expected a 3-D image, got {image.GetDimension()}-D")
    sp = tuple(float(s) for s in image.GetSpacing())
    geometry = Geometry(
        spacing=(sp[0], sp[1], sp[2]),
        origin=tuple(float(o) for o in image.GetOrigin()),  # type: ignore[arg-type]
        direction=tuple(float(d) for d in image.GetDirection()),
        slice_axis=choose_slice_axis((sp[0], sp[1], sp[2])),
    )
    return Volume.from_itk_array(sitk.GetArrayFromImage(image), geometry, name=name)
