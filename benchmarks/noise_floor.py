"""Where the bundled model's error lies on the held-out scans, and how much of it is noise.

The thin slices used as truth carry noise no method can predict from thick slices. This
script estimates it (robust sigma of the in-plane second difference in soft tissue,
truth HU -200..200: ``1.4826 * MAD / sqrt(6)``, white noise assumed, so correlated noise
reads low and fine structure high), and splits the squared error of the bundled model
and of Lanczos by truth HU band and by output phase (0: at the acquired positions),
under the profile protocol on the crops of ``thick_slices.py``.

    OMP_NUM_THREADS=1 python benchmarks/noise_floor.py
"""

from __future__ import annotations

import numpy as np
import torch
from thick_slices import SCANS, SHARED, crop

import thinslice
from thinslice.evaluation.degrade import degrade_array

BANDS = ((-1024, -900), (-900, -200), (-200, 200), (200, 4000))
SOFT = (-200, 200)


def soft_tissue_noise(truth: np.ndarray) -> float:
    d2 = truth[:, :, 2:] - 2 * truth[:, :, 1:-1] + truth[:, :, :-2]
    centre = truth[:, :, 1:-1]
    soft = (centre >= SOFT[0]) & (centre < SOFT[1])
    return float(1.4826 * np.median(np.abs(d2[soft])) / np.sqrt(6))


def main() -> None:
    torch.set_num_threads(1)
    for name, r in (("chest1mm_lidc0314", 2), ("limb3mm_sts002", 2)):
        file, _, size, slices = SCANS[name]
        volume = crop(thinslice.load(SHARED / file), size, slices)
        thin = volume.data.astype(np.float32)
        copy = degrade_array(thin, r, "profile")
        truth = np.clip(copy.truth(thin, r), -1024, 3072)
        mm = volume.slice_spacing * r
        src = volume.with_data(copy.data, mm, slice_thickness=mm)
        err = {}
        for method in ("model", "lanczos"):
            out = thinslice.upsample(src, r, method=method, device="cpu").data.astype(np.float32)
            err[method] = (np.clip(out, -1024, 3072) - truth) ** 2
        sigma = soft_tissue_noise(truth)
        print(f"{name} x{r}: soft-tissue noise sigma {sigma:.1f} HU; RMSE model {np.sqrt(err['model'].mean()):.1f}, "
              f"lanczos {np.sqrt(err['lanczos'].mean()):.1f} HU")  # fmt: skip
        for lo, hi in BANDS:
            band = (truth >= lo) & (truth < hi)
            m, lz = (float(np.sqrt(err[k][band].mean())) for k in ("model", "lanczos"))
            share = f"{100 * band.mean():4.1f} % of voxels"
            print(f"  truth HU [{lo}, {hi}): {share}, RMSE model {m:5.1f}, lanczos {lz:5.1f}")
        for phase in range(r):
            m, lz = (float(np.sqrt(err[k][phase::r].mean())) for k in ("model", "lanczos"))
            print(f"  phase {phase} of {r}: RMSE model {m:5.1f}, lanczos {lz:5.1f}")


if __name__ == "__main__":
    main()
