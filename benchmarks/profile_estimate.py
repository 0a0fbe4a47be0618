"""How well ``thinslice.profile.estimate_softness`` reads a slice profile from a thick scan.

1. The held-out crops of ``thick_slices.py`` made thick at each of their factors with a box
   softened by a Gaussian of FWHM 0, 0.5, 1.0 and 1.5 times the thickness
   (``thinslice.evaluation.degrade``): the estimate beside the truth.
2. The shared scans as acquired (thickness taken as the spacing where the file does not
   say): what real thick slices look like.

    python benchmarks/profile_estimate.py
"""

from __future__ import annotations

import numpy as np
from thick_slices import SCANS, SHARED, crop

import thinslice
from thinslice.evaluation.degrade import degrade_array
from thinslice.profile import estimate_softness

SOFTNESS = (0.0, 0.5, 1.0, 1.5)
ACQUIRED = ("abd5mm_crlm1004", "limb3mm_sts001", "limb3mm_sts002")


def main() -> None:
    print("| scan | r | " + " | ".join(f"true {s:g}" for s in SOFTNESS) + " |")
    print("| --- | --- |" + " --- |" * len(SOFTNESS))
    for name, (file, factors, size, slices) in SCANS.items():
        volume = crop(thinslice.load(SHARED / file), size, slices)
        thin = volume.data.astype(np.float32)
        for r in factors:
            mm = volume.slice_spacing * r
            thick = [volume.with_data(degrade_array(thin, r, "profile", softness=s).data, mm) for s in SOFTNESS]
            cells = [estimate_softness(t) for t in thick]
            print(f"| {name} | x{r} | " + " | ".join("-" if c is None else f"{c:.1f}" for c in cells) + " |")
    for name in ACQUIRED:
        volume = thinslice.load(SHARED / f"{name}.nii.gz")
        value = estimate_softness(volume)
        print(f"{name} as acquired ({volume.slice_spacing:.3g} mm, {volume.thickness:.3g} mm thick): {value}")


if __name__ == "__main__":
    main()
