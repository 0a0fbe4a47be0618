"""Build the small DICOM fixture ``tests/data/dicom/chest_totalseg_crop/``.

Source: ``../shared/data/dicom/chest_totalseg`` (TotalSegmentator test data; 20 axial
slices 512 x 512, 0.977 mm pixels, SliceThickness 3 mm, positions 2 mm apart). The
fixture keeps the 8 middle slices (sorted along the slice normal) and a 64 x 64 patch
that straddles the skin edge (air, fat, soft tissue), so HU values are varied.

For each kept slice the script
- decodes the JPEG 2000 pixels with pydicom and crops rows ``ROW0:ROW0+SIZE`` and
  columns ``COL0:COL0+SIZE``;
- moves ImagePositionPatient to the new first voxel:
  ``ipp + COL0 * col_spacing * row_cosine + ROW0 * row_spacing * col_cosine``
  (PixelSpacing is ``[row spacing, column spacing]``), so the physical geometry of
  every kept voxel is unchanged;
- stores the pixels uncompressed (Explicit VR Little Endian) with new Rows/Columns,
  drops private tags and the now stale Smallest/Largest Image Pixel Value, and gets a
  SOP Instance UID derived (deterministically) from the source file's.

All other tags (empty SeriesInstanceUID included, as in the source) are kept.
Run from the repository root; the output is deterministic::

    .venv/bin/python tests/data/make_fixtures_dicom.py [SHARED_DATA_DIR]
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import generate_uid

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared" / "data"
SOURCE = SHARED / "dicom" / "chest_totalseg"
TARGET = REPO / "tests" / "data" / "dicom" / "chest_totalseg_crop"
NUM_SLICES, ROW0, COL0, SIZE = 8, 176, 224, 64


def _along_normal(ds: pydicom.Dataset) -> float:
    iop = np.asarray(ds.ImageOrientationPatient, dtype=float)
    return float(np.dot(np.asarray(ds.ImagePositionPatient, dtype=float), np.cross(iop[:3], iop[3:])))


def main() -> None:
    """Write the cropped series to ``TARGET`` (replacing it) and print its size."""
    if not SOURCE.is_dir():
        sys.exit(f"source series not found: {SOURCE}")
    slices = sorted((pydicom.dcmread(p) for p in sorted(SOURCE.iterdir())), key=_along_normal)
    start = (len(slices) - NUM_SLICES) // 2
    shutil.rmtree(TARGET, ignore_errors=True)
    TARGET.mkdir(parents=True)
    for ds in slices[start : start + NUM_SLICES]:
        pixels = ds.pixel_array[ROW0 : ROW0 + SIZE, COL0 : COL0 + SIZE].copy()
        iop = np.asarray(ds.ImageOrientationPatient, dtype=float)
        row_sp, col_sp = (float(v) for v in ds.PixelSpacing)
        ipp = np.asarray(ds.ImagePositionPatient, dtype=float)
        ipp = ipp + COL0 * col_sp * iop[:3] + ROW0 * row_sp * iop[3:]
        ds.remove_private_tags()
        for keyword in ("SmallestImagePixelValue", "LargestImagePixelValue"):
            if keyword in ds:
                delattr(ds, keyword)
        ds.ImagePositionPatient = [f"{v:.12g}" for v in ipp]
        ds.set_pixel_data(pixels, "MONOCHROME2", int(ds.BitsStored), generate_instance_uid=False)
        # a new image gets a new SOP Instance UID; derived from the old one, so reproducible
        uid = generate_uid(entropy_srcs=[str(ds.file_meta.MediaStorageSOPInstanceUID), "crop"])
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.save_as(TARGET / f"{Path(str(ds.filename)).name}.dcm", enforce_file_format=True)
    total = sum(p.stat().st_size for p in TARGET.iterdir())
    print(f"wrote {NUM_SLICES} slices to {TARGET} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
