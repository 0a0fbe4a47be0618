"""Files in and out: NIfTI/NRRD/MHA (:mod:`.files`), DICOM series in (:mod:`.dicom`) and
out (:mod:`.dicom_write`, attributes in :mod:`.dicom_attrs`), and the one atomic writer
everything uses (:mod:`.atomic`).

The DICOM writer is imported from its module (``thinslice.io.dicom_write``), so reading a
NIfTI file does not load pydicom.
"""

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
