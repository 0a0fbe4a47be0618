"""The header notes thinslice writes into NIfTI, NRRD and MetaImage files, and reads back.

The slice thickness has no field of its own in these formats, so thinslice records it as a
note, with the slice axis where its spacing alone may not tell it: NIfTI keeps it in
``descrip`` (80 bytes), NRRD and MetaImage as a header note; all three carry ITK's file
notes. The notes the input had (a converter's description) follow it, so nothing is lost,
and a second run replaces thinslice's note instead of nesting it. NRRD alone has a field for
it (``thicknesses``, per axis): thinslice writes it there too, and reads it from NRRD files
that other tools wrote.
"""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path
from typing import NamedTuple

import SimpleITK as sitk

from thinslice.errors import OutputError
from thinslice.io.headers import MAX_TEXT_HEADER, nrrd_fields
from thinslice.volume import Volume

# "thinslice slice_thickness=1.5 slice_axis=0; <the input's own notes>": the axis only when
# it is not the third, whose spacing alone may not tell it (a near-isotropic output)
_NOTE = re.compile(
    r"thinslice(?= slice_)(?: slice_thickness=([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?))?(?: slice_axis=([012]))?(; )?"
)
_NIFTI_DESCRIP = 79  # characters (the field is 80 bytes with its terminating NUL)


class Notes(NamedTuple):
    """What a file's header notes say: the slice thickness and the ITK axis of the slices
    that a previous thinslice run wrote (None where it did not), and the rest of the notes
    (the input's own description)."""

    thickness: float | None
    slice_axis: int | None
    text: str


def read_notes(image: sitk.Image) -> Notes:
    """The :class:`Notes` of ``image``'s header."""
    for key in ("ITK_FileNotes", "descrip"):
        if image.HasMetaDataKey(key):
            text = image.GetMetaData(key).strip()
            match = _NOTE.search(text)
            if match is None:
                return Notes(None, None, text)
            rest = (text[: match.start()] + text[match.end() :]).strip()
            thickness = float(match.group(1)) if match.group(1) else 0.0
            axis = int(match.group(2)) if match.group(2) else None
            return Notes(thickness if thickness > 0 else None, axis, rest)
    return Notes(None, None, "")


def notes_for(volume: Volume, suffix: str) -> str:
    """The header notes to write: the thickness when it is known (an unknown one stays
    unknown, not read back as if a file had said it) and the slice axis when it is not the
    third, then the input's own notes (cut to fit NIfTI)."""
    fields = [] if volume.slice_thickness is None else [f"slice_thickness={volume.slice_thickness:.6g}"]
    if volume.geometry.slice_axis != 2:
        fields.append(f"slice_axis={volume.geometry.slice_axis}")
    parts = [f"thinslice {' '.join(fields)}"] if fields else []
    if volume.meta.get("notes"):
        parts.append(str(volume.meta["notes"]))
    text = "; ".join(parts)
    return text[:_NIFTI_DESCRIP] if suffix in (".nii", ".nii.gz") else text


def nrrd_thickness(path: Path, axis: int) -> float | None:
    """The thickness a NRRD header gives ITK ``axis`` in its ``thicknesses`` field (NRRD
    orders axes as ITK does), or None: not NRRD, no such field, or NaN there."""
    with path.open("rb") as fh:
        parsed = nrrd_fields(fh.read(MAX_TEXT_HEADER))
    values = [] if parsed is None else parsed[0].get("thicknesses", "").split()
    try:
        value = float(values[axis])
    except (IndexError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def record_nrrd_thickness(path: Path, axis: int, thickness: float) -> None:
    """Put ``thickness`` into the ``thicknesses`` field of the NRRD file ITK wrote at
    ``path``, on ITK ``axis`` (NaN on the others, as the NRRD format defines it), which
    SimpleITK cannot set. Attached voxels are copied after the new header into a sibling
    file that then replaces ``path``: call it on a private, unpublished file."""
    with path.open("rb") as fh:
        head = fh.read(MAX_TEXT_HEADER)
        parsed = nrrd_fields(head)
        if parsed is None or "dimension" not in parsed[0] or (not parsed[2] and len(head) == MAX_TEXT_HEADER):
            raise OutputError(f"{path.name}: the NRRD header ITK wrote is not readable back; write .nii.gz instead")
        fields, offset, ended = parsed
        end = offset - 1 if ended else len(head)  # the blank line ending an attached header stays
        lines = [ln for ln in head[:end].decode("latin-1").splitlines() if not ln.lower().startswith("thicknesses:")]
        values = ["nan"] * int(fields["dimension"])
        values[axis] = f"{thickness:.6g}"
        at = next(i for i, ln in enumerate(lines) if ln.lower().startswith("sizes:")) + 1
        lines.insert(at, f"thicknesses: {' '.join(values)}")
        header = ("\n".join(lines) + "\n").encode("latin-1") + head[end:]
        if not ended:  # a detached header, read whole above
            path.write_bytes(header)
            return
        copy = path.with_name(path.name + ".thickness")
        try:
            with copy.open("wb") as out:
                out.write(header)
                shutil.copyfileobj(fh, out, 1 << 20)
            copy.replace(path)
        finally:
            copy.unlink(missing_ok=True)
