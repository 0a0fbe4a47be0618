"""Files in and out: NIfTI/NRRD/MHA (:mod:`.files`), DICOM series (:mod:`.dicom`), and the
one atomic writer everything uses (:mod:`.atomic`)."""

from thinslice.io.files import (
    SUFFIXES,
    check_output_path,
    choose_slice_axis,
    from_sitk,
    load,
    save,
    stem_of,
    suffix_of,
    to_sitk,
)

__all__ = [
    "SUFFIXES",
    "check_output_path",
    "choose_slice_axis",
    "from_sitk",
    "load",
    "save",
    "stem_of",
    "suffix_of",
    "to_sitk",
]
