"""Make the small scans kept in the repo from ../shared/data (reproducible crops).

* ``src/thinslice/data/sample_reference.nii.gz``: LIDC-IDRI-0314 chest, 1 mm slices,
  a 160 x 160 x 65 crop (right lung, mediastinum) - the demo's ground truth.
* ``src/thinslice/data/sample_thick.nii.gz``: the same crop keeping every 4th slice
  (17 slices at 4 mm), the thick-slice scan the demo upsamples.
* ``tests/data/limb_crop.nii.gz``: STS_002 limb, 64 x 64 x 25 slices at 3.27 mm.
* ``tests/data/chest_crop.nii.gz``: LIDC-IDRI-0314, 48 x 48 x 33 slices at 1 mm.

Each crop keeps the source geometry: spacing and direction unchanged, origin moved to
the crop's first voxel (SimpleITK slicing does this). Usage: ``python scripts/make_data.py``.
"""

from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def crop(src: str, x: slice, y: slice, z: slice) -> sitk.Image:
    image = sitk.ReadImage(str(SHARED / src))
    return image[x, y, z]


def write(image: sitk.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.Cast(image, sitk.sitkInt16), str(path), useCompression=True)
    print(f"{path.relative_to(ROOT)}: {image.GetSize()} spacing {image.GetSpacing()}")


def main() -> None:
    reference = crop("chest1mm_lidc0314.nii.gz", slice(160, 320), slice(210, 370), slice(100, 165))
    write(reference, ROOT / "src/thinslice/data/sample_reference.nii.gz")
    write(reference[:, :, ::4], ROOT / "src/thinslice/data/sample_thick.nii.gz")
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
