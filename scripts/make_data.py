"""Make the small scans kept in the repo from ../shared/data (reproducible crops).

* ``src/thinslice/data/sample_reference.nii.gz``: LIDC-IDRI-0314 chest, 1 mm slices,
  a 160 x 160 x 63 crop (right lung, mediastinum) - the demo's ground truth.
* ``src/thinslice/data/sample_thick.nii.gz``: realistic 4 mm slices of the same crop, each
  the average of the 1 mm slices over its 4 mm thickness (the slice profile,
  :func:`thinslice.evaluation.degrade.degrade_array`), centred on reference slices 1, 5,
  ..., 61 (16 slices, thickness recorded in the header) - the scan the demo upsamples;
  upsampled to 1 mm it reaches one slice past each end slice's centre, as the reference does.
* ``tests/data/limb_crop.nii.gz``: STS_002 limb, 64 x 64 x 25 slices at 3.27 mm.
* ``tests/data/chest_crop.nii.gz``: LIDC-IDRI-0314, 48 x 48 x 33 slices at 1 mm.

Each crop keeps the source geometry: spacing and direction unchanged, origin moved to
the crop's first voxel (SimpleITK slicing does this). Usage: ``python scripts/make_data.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from thinslice.evaluation.degrade import degrade_array
from thinslice.grid import Plan, reach

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def crop(src: str, x: slice, y: slice, z: slice) -> sitk.Image:
    image = sitk.ReadImage(str(SHARED / src))
    return image[x, y, z]


def write(image: sitk.Image, path: Path, notes: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    out = sitk.Cast(image, sitk.sitkInt16)
    if notes:  # e.g. the slice thickness, as thinslice records it
        out.SetMetaData("ITK_FileNotes", notes)
    sitk.WriteImage(out, str(path), useCompression=True)
    print(f"{path.relative_to(ROOT)}: {image.GetSize()} spacing {image.GetSpacing()}")


def main() -> None:
    block = crop("chest1mm_lidc0314.nii.gz", slice(160, 320), slice(210, 370), slice(100, 165))
    thin = sitk.GetArrayFromImage(block).astype(np.float32)  # (z, y, x): slices first
    thick = degrade_array(thin, 4, "profile")  # 4 mm boxes, each inside the crop
    margin, _ = Plan(4, 1.0, reach=reach(4.0, 1.0)).margins(len(thick.data))  # what upsample adds at 1 mm
    start = thick.first - margin
    reference = block[:, :, start : thick.first + 4 * (len(thick.data) - 1) + 1 + margin]
    write(reference, ROOT / "src/thinslice/data/sample_reference.nii.gz")
    sample = sitk.GetImageFromArray(np.rint(thick.data))
    sample.CopyInformation(reference[:, :, margin : margin + len(thick.data)])
    sample.SetSpacing((*reference.GetSpacing()[:2], 4 * reference.GetSpacing()[2]))
    write(sample, ROOT / "src/thinslice/data/sample_thick.nii.gz", notes="thinslice slice_thickness=4")
    write(
        crop("limb3mm_sts002.nii.gz", slice(48, 112), slice(40, 104), slice(10, 35)),
        ROOT / "tests/data/limb_crop.nii.gz",
    )
    write(
        crop("chest1mm_lidc0314.nii.gz", slice(200, 248), slice(250, 298), slice(120, 153)),
        ROOT / "tests/data/chest_crop.nii.gz",
    )


if __name__ == "__main__":
    main()
