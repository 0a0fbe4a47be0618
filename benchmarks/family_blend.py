"""Blending two model families where a scan lies between what they were trained on.

The profile family was trained on boxes softened up to a Gaussian as wide as the thickness,
the soft-profile family from there to twice that. Between them (slices overlapping by half
a slice, or a box softened by 0.75 of its thickness) each model's output, forced with
``--model``, is blended, ``(1 - w) * profile + w * soft``, and scored (PSNR over all output
slices, dB) on the held-out crops of ``thick_slices.py``. With ``--gaps``: slices 0.6 and
0.8 of their spacing thick, between the thin-slice (default) family and the profile one,
``(1 - w) * profile + w * default``.

    OMP_NUM_THREADS=1 python benchmarks/family_blend.py
    OMP_NUM_THREADS=1 python benchmarks/family_blend.py --gaps
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from thick_slices import held_out_thick

import thinslice
from thinslice.evaluation.metrics import psnr, scale_hu
from thinslice.methods.learned import bundled_model_path

# (scan, r, thickness over spacing, Gaussian FWHM over the thickness)
CASES = [("chest1mm_lidc0314", r, 1.5, 0.0) for r in (2, 3, 4, 5)] + [("limb3mm_sts002", r, 1.5, 0.0) for r in (2, 3)]
CASES += [("chest1mm_lidc0314", r, 1.0, 0.75) for r in (2, 5)] + [("limb3mm_sts002", 2, 1.0, 0.75)]
GAPS = [("chest1mm_lidc0314", r, gap, 0.0) for gap in (0.6, 0.8) for r in (2, 3, 4, 5)]
GAPS += [("limb3mm_sts002", r, gap, 0.0) for gap in (0.6, 0.8) for r in (2, 3)]
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gaps", action="store_true", help="slices thinner than their spacing: profile and default")
    args = parser.parse_args()
    torch.set_num_threads(1)
    other = "default" if args.gaps else "profile_soft"
    for name, r, overlap, softness in GAPS if args.gaps else CASES:
        truth, thick = held_out_thick(name, r, overlap, softness)
        outs = {
            family: thinslice.upsample(thick, r, device="cpu", model=bundled_model_path(r, family)).data
            for family in ("profile", other)
        }
        blends = {w: (1 - w) * outs["profile"].astype(np.float32) + w * outs[other] for w in WEIGHTS}
        scores = {w: round(psnr(truth, scale_hu(blend)), 2) for w, blend in blends.items()}
        row = {"scan": name, "r": r, "overlap": overlap, "softness": softness, "blended with": other, "psnr": scores}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
