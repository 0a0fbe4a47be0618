"""Slices past the end slices' centres: how to make them (BENCHMARKS.md, "Past the end slices").

A thick slice covers anatomy past its centre, so upsample reaches past the first and last
acquired centres by as many output slices as fit inside them (``thinslice.grid.reach``).
A method needs input there: ``thinslice.grid.pad_slices`` repeats the end slices. This
script compares that with the alternatives on the held-out crops of ``thick_slices.py``
(box profile, contiguous), scoring only the slices past the ends against the real thin
slices there:

* ``end slice``: the end thick slice itself, copied (what a viewer shows there);
* each method (``lanczos``, ``model``) on the stack padded by repeating the end slices
  (``replicate``, what thinslice does), mirroring them about the end (``reflect``) or
  extrapolating linearly (``linear``).

It also reports how much the padding moves the slices between the end centres.

    OMP_NUM_THREADS=1 python benchmarks/end_slices.py --json benchmarks/out/end_slices.json
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

import numpy as np
import torch
from thick_slices import SCANS, SHARED, crop

import thinslice
from thinslice import grid
from thinslice.evaluation.degrade import degrade_array
from thinslice.evaluation.metrics import psnr, scale_hu
from thinslice.methods import get_method

CASES = [("chest1mm_lidc0314", r) for r in (3, 4, 5, 6)] + [("limb3mm_sts002", 3)]


def pad(data: np.ndarray, mode: str) -> np.ndarray:
    """One slice more at each end: repeated, mirrored about the end slice, or extrapolated."""
    if mode == "replicate":
        return grid.pad_slices(data, 1)
    if mode == "reflect":
        lo, hi = data[1:2], data[-2:-1]
    else:  # linear
        lo, hi = 2 * data[:1] - data[1:2], 2 * data[-1:] - data[-2:-1]
    return np.concatenate([lo, data, hi]).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    methods = {name: get_method(name, device="cpu") for name in ("lanczos", "model")}
    rows = []
    for name, r in CASES:
        file, _, size, slices = SCANS[name]
        volume = crop(thinslice.load(SHARED / file), size, slices)
        thin = volume.data.astype(np.float32)
        copy = degrade_array(thin, r, "profile")
        margin = copy.margin(len(thin), r)
        truth = copy.truth(thin, r)
        ends = np.r_[0:margin, len(truth) - margin : len(truth)]
        spacing = (r * volume.slice_spacing, *volume.voxel_spacing[1:])
        row = {"scan": name, "r": r, "margin": margin}
        end_slice = np.concatenate([np.repeat(copy.data[:1], margin, 0), np.repeat(copy.data[-1:], margin, 0)])
        row["end slice"] = psnr(scale_hu(truth[ends]), scale_hu(end_slice))
        for label, fn in methods.items():
            inner = fn.run(copy.data, r, thickness=1.0, spacing=spacing).data.astype(np.float32)
            for mode in ("replicate", "reflect", "linear"):
                fine = fn.run(pad(copy.data, mode), r, thickness=1.0, spacing=spacing, padded=1).data
                made = fine[r - margin : len(fine) - r + margin].astype(np.float32)
                row[f"{label} {mode}"] = psnr(scale_hu(truth[ends]), scale_hu(made[ends]))
                if mode == "replicate":  # how much padding moves the slices between the centres
                    between = made[margin : len(made) - margin]
                    row[f"{label} between, unpadded"] = psnr(scale_hu(truth[margin:-margin]), scale_hu(inner))
                    row[f"{label} between, padded"] = psnr(scale_hu(truth[margin:-margin]), scale_hu(between))
        rows.append(row)
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"date": str(date.today()), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
