"""The header notes thinslice writes into NIfTI, NRRD and MetaImage files, and reads back.

The slice thickness has no field of its own in these formats, so thinslice records it as a
note, with the slice axis where its spacing alone may not tell it: NIfTI keeps it in
``descrip`` (80 bytes), NRRD and MetaImage as a header note; all three carry ITK's file
notes. The notes the input had (a converter's description) follow it, so nothing is lost,
and a second run replaces thinslice's note instead of nesting it.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import SimpleITK as sitk

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
