"""The header notes thinslice writes into NIfTI, NRRD and MetaImage files, and reads back.

The slice thickness has no field of its own in these formats, so thinslice records it as a
note: NIfTI keeps it in ``descrip`` (80 bytes), NRRD and MetaImage as a header note; all
three carry ITK's file notes. The notes the input had (a converter's description) follow
it, so nothing is lost, and a second run replaces thinslice's note instead of nesting it.
"""

from __future__ import annotations

import re

import SimpleITK as sitk

from thinslice.volume import Volume

_THICKNESS_NOTE = re.compile(r"thinslice slice_thickness=([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)(; )?")
_NIFTI_DESCRIP = 79  # characters (the field is 80 bytes with its terminating NUL)


def read_notes(image: sitk.Image) -> tuple[float | None, str]:
    """The slice thickness a previous thinslice run wrote into the header notes, if any,
    and the rest of the notes (the input's own description)."""
    for key in ("ITK_FileNotes", "descrip"):
        if image.HasMetaDataKey(key):
            text = image.GetMetaData(key).strip()
            match = _THICKNESS_NOTE.search(text)
            if match is None:
                return None, text
            rest = (text[: match.start()] + text[match.end() :]).strip()
            return (float(match.group(1)) if float(match.group(1)) > 0 else None), rest
    return None, ""


def notes_for(volume: Volume, suffix: str) -> str:
    """The header notes to write: the thickness when it is known (an unknown one stays
    unknown, not read back as if a file had said it), then the input's own notes (cut to
    fit NIfTI)."""
    parts = [] if volume.slice_thickness is None else [f"thinslice slice_thickness={volume.slice_thickness:.6g}"]
    if volume.meta.get("notes"):
        parts.append(str(volume.meta["notes"]))
    text = "; ".join(parts)
    return text[:_NIFTI_DESCRIP] if suffix in (".nii", ".nii.gz") else text
