"""What a file's header promises, checked before anything is allocated or read.

A header is untrusted input: it may declare far more voxels than the file holds, point
its voxels at another file (``/etc/passwd``, a FIFO, a device), or describe a geometry
that the NIfTI writer cannot keep (a sheared grid, qform and sform that disagree, a
voxel size of 0). Each check here raises :class:`~thinslice.errors.InputError` with one
line that names the file and what to do; :func:`thinslice.io.files.load` calls them.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import stat
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from thinslice.errors import InputError, OutputError

log = logging.getLogger(__name__)

#: deflate cannot unpack to more than about 1032 times its compressed size.
MAX_DEFLATE_RATIO = 1032
#: Bytes of a MetaImage or NRRD text header read at most (real headers are < 4 KiB).
MAX_TEXT_HEADER = 1 << 16
#: Direction cosines whose columns are further than this from orthonormal are refused.
ORTHO_TOL = 1e-4
#: Voxel sizes (mm) beyond these get a warning: micro-CT reaches 0.01 mm, no CT a 100 mm slice.
CT_SPACING_MM = (0.01, 100.0)

_META_BYTES = {"CHAR": 1, "UCHAR": 1, "SHORT": 2, "USHORT": 2, "INT": 4, "UINT": 4, "LONG": 4, "ULONG": 4,
               "LONG_LONG": 8, "ULONG_LONG": 8, "FLOAT": 4, "DOUBLE": 8}  # fmt: skip
_NRRD_BYTES = {1: ("char", "int8", "uchar", "uint8"), 2: ("short", "int16", "ushort", "uint16"),
               4: ("int", "int32", "uint", "uint32", "float"), 8: ("longlong", "int64", "ulonglong", "uint64",
               "double", "longlongint", "unsignedlonglong", "unsignedlonglongint")}  # fmt: skip


def require_regular_file(p: Path, what: str = "") -> int:
    """The size of ``p`` when it is a regular file with something in it.

    Raises:
        InputError: ``p`` is a FIFO, a device, a socket or a folder (reading a FIFO would
            hang), or it is empty.
    """
    try:
        st = os.stat(p)
    except OSError as err:
        raise InputError(f"cannot read {p}: {err.strerror or err}; check the path") from err
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _NOT_FILES if test(st.st_mode)), "not a regular file")
        raise InputError(f"{what or p} is {kind}, not a regular file; give a file holding the scan")
    if st.st_size == 0:
        raise InputError(f"{what or p} is empty (0 bytes); re-export the scan")
    return st.st_size


#: What a path that is not a regular file is, for the refusal (reading a FIFO would hang).
_NOT_FILES = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
    (stat.S_ISSOCK, "a socket"),
)


def check_text_header(p: Path, suffix: str, check_shape: Callable[[tuple[int, ...], Path], None]) -> None:
    """MetaImage (``.mha``/``.mhd``) and NRRD (``.nrrd``/``.nhdr``): the voxels' file lies
    inside the header's folder and is a regular file, and it holds at least the bytes the
    header declares (or, compressed, could unpack to them).

    Raises:
        InputError: the header names a data file outside its folder, a FIFO or device, a
            list or pattern of files, or too little data for its declared size.
    """
    parsed = _text_header(p, suffix)
    if parsed is None:
        return  # not parsable as text: SimpleITK gives its own error
    sizes, itemsize, compressed, data_file, header_end = parsed
    check_shape(tuple(sizes), p)  # the voxel-count limit first: the clearer message
    if data_file is None:
        payload = p.stat().st_size - header_end
        where = p.name
    else:
        data = _detached(p, data_file)
        payload = require_regular_file(data, f"{data} (the data file named in {p.name})")
        where = data.name
    needed = math.prod(sizes) * itemsize
    capacity = payload * MAX_DEFLATE_RATIO if compressed else payload
    if needed > capacity:
        how = f"compressed data of {payload:,} bytes cannot unpack to" if compressed else f"{payload:,} bytes, not"
        raise InputError(
            f"{p.name} is truncated or its header is wrong: it declares "
            f"{'x'.join(map(str, sizes))} voxels ({needed:,} bytes) but {where} holds {how} that; "
            "re-export the scan or check its header"
        )


def detached_data_file(p: Path) -> Path | None:
    """The file beside header ``p`` that holds its voxels (a ``.mhd``'s or ``.nhdr``'s), or
    None when ``p`` holds them itself.

    Raises:
        InputError: as :func:`check_text_header`, for a data file it would refuse by name.
    """
    suffix = p.suffix.lower()
    parsed = _text_header(p, suffix) if suffix in (".mha", ".mhd", ".nrrd", ".nhdr") else None
    return None if parsed is None or parsed[3] is None else _detached(p, parsed[3])


def check_companions(out: Path, names: Iterable[str]) -> None:
    """Refuse data files (``names``, beside ``out``) of a new ``.mhd``/``.nhdr`` that would
    replace files there already, unless it is the one ``out`` (being replaced) names:
    another header's data, an input's perhaps (``scan.nhdr`` beside ``scan.mhd`` would
    both name ``scan.raw``)."""
    own = detached_data_file(out) if out.exists() else None
    for name in names:
        there = out.parent / name
        if name != out.name and (there.exists() or there.is_symlink()) and there.resolve() != own:  # own: resolved
            raise OutputError(
                f"{out.name} would write its data to {name}, which is there already (another header's "
                f"data?) in {out.parent}; choose another output name"
            )


def _text_header(p: Path, suffix: str) -> tuple[list[int], int, bool, str | None, int] | None:
    with p.open("rb") as fh:
        head = fh.read(MAX_TEXT_HEADER)
    return _meta_header(head) if suffix in (".mha", ".mhd") else _nrrd_header(head)


def _detached(p: Path, name: str) -> Path:
    """The data file ``name`` of header ``p``, refused unless it is one file inside p's folder."""
    if name.upper() == "LIST" or "%" in name or re.search(r"\s-?\d+\s+-?\d+", name):
        raise InputError(
            f"{p.name} spreads its voxels over several files ({name!r}), which thinslice does not read; "
            "convert the scan to one .nii.gz, .nrrd or .mha file"
        )
    folder = p.resolve().parent
    target = (folder / name).resolve()
    if Path(name).is_absolute() or (target != folder and folder not in target.parents):
        raise InputError(
            f"{p.name} names a data file outside its own folder ({name}"
            f"{'' if Path(name).is_absolute() else f' -> {target}'}); only files beside the "
            "header are read: copy the data next to it and name it without a path"
        )
    return target


def _meta_header(head: bytes) -> tuple[list[int], int, bool, str | None, int] | None:
    fields: dict[str, str] = {}
    offset = 0
    for raw in head.split(b"\n"):
        offset += len(raw) + 1
        key, eq, value = raw.decode("latin-1").partition("=")
        if not eq:
            return None
        fields[key.strip()] = value.strip()
        if key.strip() == "ElementDataFile":
            break
    else:
        return None
    try:
        sizes = [int(v) for v in fields["DimSize"].split()]
    except (KeyError, ValueError):
        return None
    element = fields.get("ElementType", "").upper().removeprefix("MET_")
    channels = int(fields.get("ElementNumberOfChannels", "1") or 1)
    itemsize = _META_BYTES.get(element, 1) * max(1, channels)
    compressed = fields.get("CompressedData", "False").lower() == "true"
    name = fields["ElementDataFile"]
    return sizes, itemsize, compressed, None if name.upper() == "LOCAL" else name, offset


def nrrd_fields(head: bytes) -> tuple[dict[str, str], int, bool] | None:
    """A NRRD header's fields (keys lower case without spaces: ``spacedirections``), the
    bytes up to its end, and whether it ended (a blank line) within ``head``; None if
    ``head`` is not NRRD. Key/value pairs (``key:=value``) and comments are left out."""
    if not head.startswith(b"NRRD"):
        return None
    fields: dict[str, str] = {}
    offset, ended = 0, False
    for raw in head.split(b"\n"):
        offset += len(raw) + 1
        line = raw.decode("latin-1").rstrip("\r")
        if not line:
            ended = True
            break
        if line.startswith(("#", "NRRD")) or ":=" in line:
            continue
        key, colon, value = line.partition(":")
        if colon:
            fields[key.strip().lower().replace(" ", "")] = value.strip()
    return fields, offset, ended


def _nrrd_header(head: bytes) -> tuple[list[int], int, bool, str | None, int] | None:
    parsed = nrrd_fields(head)
    if parsed is None:
        return None
    fields, offset, ended = parsed
    try:
        sizes = [int(v) for v in fields["sizes"].split()]
    except (KeyError, ValueError):
        return None
    kind = fields.get("type", "").lower().replace(" ", "").replace("_t", "").replace("signed", "")
    itemsize = next((n for n, names in _NRRD_BYTES.items() if kind in names), 1)
    encoding = fields.get("encoding", "raw").lower()
    compressed = encoding not in ("raw",)  # gzip, bzip2; ascii and hex only grow the data
    name = fields.get("datafile")
    if name is None and not ended:
        return None
    return sizes, itemsize, compressed, name, offset


def first_line(err: BaseException) -> str:
    """The line of an error from ITK or nibabel worth showing a user (their C++ frames left out)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("sitk::", "/", "Exception thrown"))]
    return (useful or lines or [type(err).__name__])[-1][:200]


def read_nifti_header(readable: Path, p: Path | None = None) -> Any:
    """The NIfTI header as stored in the file, read by nibabel (header only, no voxels;
    not the image's header, which nibabel rewrites from the affine: pixdim 0 would vanish)."""
    import nibabel as nib

    p = p or readable
    try:
        with quiet_nibabel():
            image: Any = nib.load(str(readable))
            with image.file_map["image"].get_prepare_fileobj("rb") as fh:
                return image.header_class.from_fileobj(fh, check=False)
    except Exception as err:  # noqa: BLE001 - nibabel raises many types for bad headers
        raise InputError(f"cannot read {p}: not a valid NIfTI file ({first_line(err)})") from err


@contextlib.contextmanager
def quiet_nibabel() -> Iterator[None]:
    """Silence nibabel's header-fixing notes ("qform_code 236 not valid; setting to 0"):
    it prints them on stderr itself, and nibabel's view of the header is used here only
    for sizes and types (SimpleITK reads the geometry)."""
    logger = logging.getLogger("nibabel.global")
    disabled, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = disabled


#: NIfTI-1 header fields ITK's writer sets its own way, kept from the input: the codes say
#: which space the affine maps to (2 aligned, 3 Talairach, 4 MNI; 0 none), which ITK
#: writes as 1 (scanner) whatever the input said; cal_min/cal_max, a display range, as 0.
#: ``(name, byte offset, struct format)``.
_KEPT_NIFTI = (("qform_code", 252, "h"), ("sform_code", 254, "h"), ("cal_max", 124, "f"), ("cal_min", 128, "f"))


def kept_nifti_fields(header: Any) -> dict[str, float]:
    """The fields of :data:`_KEPT_NIFTI` of a NIfTI-1 header, as read; not the codes when both
    are 0 (no stated space): readers would then rebuild the grid from the voxel sizes alone,
    losing the origin of an output that reaches past the end slices, so ITK's 1/1 stay."""
    fields = {name: float(header[name]) for name, _, _ in _KEPT_NIFTI if name in header}
    if not fields.get("qform_code") and not fields.get("sform_code"):
        fields.pop("qform_code", None)
        fields.pop("sform_code", None)
    return fields


def restore_nifti_fields(path: Path, fields: dict[str, float]) -> None:
    """Write ``fields`` into the header of the uncompressed NIfTI-1 file ``path`` in place."""
    with path.open("r+b") as fh:
        head = bytearray(fh.read(348))
        order = "<" if struct.unpack_from("<i", head, 0)[0] == 348 else ">"
        for name, offset, kind in _KEPT_NIFTI:
            if name in fields:
                value = fields[name]
                struct.pack_into(order + kind, head, offset, int(value) if kind == "h" else value)
        fh.seek(0)
        fh.write(head)


def check_nifti_header(header: Any, p: Path, file_size: int, gzipped: bool) -> None:
    """NIfTI geometry SimpleITK would change silently, and a declared size the file
    cannot hold (checked before SimpleITK allocates the voxels).

    Raises:
        InputError: a voxel size of 0 or not finite, qform and sform that disagree, a
            sheared sform, or more voxels than the (compressed) file can hold.
    """
    zooms = [float(z) for z in header["pixdim"][1:4]]
    if any(z == 0 or not math.isfinite(z) for z in zooms):
        raise InputError(
            f"{p.name} has a voxel size of {zooms} mm (pixdim 0 or not a number), which would be read as "
            "1 mm; fix the header's pixdim"
        )
    needed = nifti_bytes(header)
    if gzipped and needed > file_size * MAX_DEFLATE_RATIO:
        raise InputError(
            f"{p} is truncated: its header needs {needed:,} bytes but {file_size:,} compressed bytes "
            "cannot unpack to that; re-export the scan"
        )
    header = header.copy()
    if header["pixdim"][0] not in (-1, 1):  # qfac 0 from old writers: read as 1, as ITK does
        header["pixdim"][0] = 1
    try:
        _check_forms(header, p)
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001 - nibabel raises many types for a garbled header
        raise InputError(f"cannot read {p}: its NIfTI orientation fields are invalid ({err})") from err


def nifti_bytes(header: Any) -> int:
    """The bytes a NIfTI file with ``header`` holds: its voxels' offset plus the voxels."""
    voxels = int(np.prod(header.get_data_shape(), dtype=np.int64))
    return int(header.get_data_offset()) + voxels * int(header.get_data_dtype().itemsize)


def integer_values(header: Any) -> bool:
    """Whether a NIfTI header's voxels are whole numbers once scaled: integers stored with
    a whole ``scl_slope`` and ``scl_inter`` (or none), as dcm2niix writes CT (stored values
    with the DICOM rescale intercept, often -1024). ITK reads any scaled voxels as float."""
    slope, inter = header.get_slope_inter()
    whole = all(v is None or (np.isfinite(v) and float(v).is_integer()) for v in (slope, inter))
    return bool(np.issubdtype(header.get_data_dtype(), np.integer)) and whole


def _check_forms(header: Any, p: Path) -> None:
    qcode, scode = int(header["qform_code"]), int(header["sform_code"])
    if scode > 0:
        sform = np.asarray(header.get_sform(), dtype=np.float64)
        lengths = np.linalg.norm(sform[:3, :3], axis=0)
        if not np.all(np.isfinite(sform)) or np.any(lengths == 0):
            raise InputError(
                f"{p.name} has an sform with an axis of no length or not finite ({sform[:3, :3].tolist()}); "
                "fix its header (or set sform_code to 0 to use the qform)"
            )
        cols = sform[:3, :3] / lengths
        if not np.allclose(cols.T @ cols, np.eye(3), atol=ORTHO_TOL):
            raise InputError(
                f"{p.name} has a sheared sform (its axes are not at right angles: {_angles(cols)}); "
                "writing it back would move voxels in space: resample it to an orthogonal grid first"
            )
        if qcode > 0:
            qform = np.asarray(header.get_qform(), dtype=np.float64)
            diff = np.abs(qform - sform)
            if diff[:3, :3].max() > 1e-3 * max(1.0, np.abs(sform[:3, :3]).max()) or diff[:3, 3].max() > 1e-2:
                raise InputError(
                    f"{p.name} has a qform and an sform that disagree (by up to {diff[:3, 3].max():.3g} mm "
                    f"in origin and {diff[:3, :3].max():.3g} in the axes); the output could keep only one "
                    "of them: make them agree, or set the unwanted one's code to 0"
                )


def check_spacing(spacing: tuple[float, ...], p: Path) -> None:
    """Refuse a voxel size that is not a positive number; warn of one no CT has (a header in
    metres or microns reads as a scan a thousand times too small or too large, and a
    --target-spacing in mm would be read against it)."""
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        raise InputError(f"{p.name} has a voxel size of {spacing} mm; fix its header (spacing must be > 0)")
    if min(spacing) < CT_SPACING_MM[0] or max(spacing) > CT_SPACING_MM[1]:
        log.warning(
            "warning: %s has a voxel size of %s mm, outside the %g-%g mm CT has: is its header in another unit?",
            p.name, ", ".join(f"{s:.4g}" for s in spacing), *CT_SPACING_MM,
        )  # fmt: skip


def check_direction(direction: tuple[float, ...], p: Path) -> None:
    """Refuse a direction matrix that is not orthonormal (a sheared or skewed grid).

    NIfTI output, and the slice-axis rules, need orthogonal axes; writing a sheared grid
    would move voxels in space.
    """
    n = int(round(math.sqrt(len(direction))))
    d = np.asarray(direction, dtype=np.float64).reshape(n, n)
    if not np.all(np.isfinite(d)) or not np.allclose(d.T @ d, np.eye(n), atol=ORTHO_TOL):
        raise InputError(
            f"{p.name} has a sheared or non-orthogonal direction matrix ({_angles(d)}); its voxels "
            "would move in space on the way out: resample it to an orthogonal grid first"
        )


def _angles(cols: np.ndarray) -> str:
    norms = np.linalg.norm(cols, axis=0)
    unit = cols / np.where(norms > 0, norms, 1)
    pairs = [(0, 1), (0, 2), (1, 2)][: 3 if cols.shape[0] >= 3 else 1]
    degrees = [math.degrees(math.acos(max(-1.0, min(1.0, float(unit[:, i] @ unit[:, j]))))) for i, j in pairs]
    text = ", ".join(f"{a:.1f}°" for a in degrees) + " between axes"
    if not np.allclose(norms, 1, atol=ORTHO_TOL):
        text += "; axis lengths " + ", ".join(f"{x:.3g}" for x in norms)
    return text


def gzip_payload_size(p: Path) -> int:
    """Bytes a ``.gz`` file unpacks to, reading it to the end; refuses a cut or damaged stream.

    ITK's NIfTI reader accepts a truncated ``.nii.gz`` silently (the missing voxels come
    out as zeros), so the whole stream and its CRC are checked here.
    """
    size, complete, pending = 0, False, b""
    try:
        with p.open("rb") as fh:
            unpack = zlib.decompressobj(wbits=31)  # gzip wrapper: checks the CRC and length
            while chunk := pending or fh.read(1 << 20):
                if complete:  # one gzip member ended: another member follows, or zero padding
                    pending = b""
                    if not chunk.strip(b"\0"):
                        continue
                    unpack, complete = zlib.decompressobj(wbits=31), False
                size += len(unpack.decompress(chunk, 1 << 24))
                pending = unpack.unconsumed_tail
                if unpack.eof:
                    complete, pending = True, unpack.unused_data
    except zlib.error as err:
        raise InputError(f"cannot read {p}: the gzip data is damaged ({err}); re-export the scan") from err
    if not complete:
        raise InputError(f"{p} is truncated: the gzip stream ends early after {size:,} bytes; re-export the scan")
    return size
