"""Does averaging the bundled model over flipped copies of the input help (test-time flips)?

For each held-out scan and factor of ``thick_slices.py`` (profile protocol, the measure
of record), the thick stack is flipped along none, one or all of its axes (slice, rows,
columns), upsampled by the bundled model as ``thinslice upsample`` does with no flags,
flipped back, and the outputs averaged. A box profile is symmetric, so every flip is the
same acquisition seen mirrored. PSNR over all output slices, dB; the columns average the
plain output with its slice-axis flip (twice the work), the four in-plane flips, or all six.

    OMP_NUM_THREADS=1 python benchmarks/flip_ensemble.py
"""

from __future__ import annotations

import json

import numpy as np
import torch
from thick_slices import SCANS, SHARED, crop

import thinslice
from thinslice.evaluation.degrade import degrade_array
from thinslice.evaluation.metrics import psnr, scale_hu

FLIPS = ((), (1,), (2,), (1, 2), (0,), (0, 1, 2))
CASES = tuple(("chest1mm_lidc0314", r) for r in (2, 3, 4, 5, 6)) + (("limb3mm_sts002", 2), ("limb3mm_sts002", 3))


def main() -> None:
    torch.set_num_threads(1)
    for name, r in CASES:
        file, _, size, slices = SCANS[name]
        volume = crop(thinslice.load(SHARED / file), size, slices)
        thin = volume.data.astype(np.float32)
        copy = degrade_array(thin, r, "profile")
        truth, mm = copy.truth(thin, r), volume.slice_spacing * r
        outs = {}
        for axes in FLIPS:
            src = volume.with_data(np.ascontiguousarray(np.flip(copy.data, axes)), mm, slice_thickness=mm)
            outs[axes] = np.flip(thinslice.upsample(src, r, device="cpu").data.astype(np.float32), axes)

        def score(out: np.ndarray, truth: np.ndarray = truth) -> float:
            return round(psnr(scale_hu(truth), scale_hu(out)), 2)

        row = {"scan": name, "r": r, "single": score(outs[()])}
        row["slice-axis flip (2)"] = score((outs[()] + outs[(0,)]) / 2)
        row["in-plane flips (4)"] = score(sum(outs[a] for a in FLIPS[:4]) / 4)
        row["all six"] = score(sum(outs.values()) / len(outs))
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
