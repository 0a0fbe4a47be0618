"""Output grids that are not the synthesized one: a ratio that is not a whole number
(2.5 mm -> 1 mm), and output slices thicker than their spacing (``--output-thickness``).

Thin truth becomes thick slices ``ratio`` thin slices thick and apart (a box profile,
contiguous), and every method makes output slices one thin spacing apart, starting on the
first thick slice. The truth at each output position is the thin scan averaged over the
output's own thickness (its spacing, or ``out_thickness`` thin slices): a 1 mm slice of the
chest is its real 1 mm slice; a 2 mm one is the 1 mm slices averaged over 2 mm.

Ways to the output grid, for the bundled model and for Lanczos (a ratio that is a whole
number has two: the slices as synthesized, and those averaged over the thickness):

* ``next-up linear``: synthesize at the next factor up (x3 for 2.5) and resample linearly
  (how thinslice makes non-integer ratios; before 2026-11-30 also for thicker output slices,
  whose thickness was only declared);
* ``next-up box``: the same fine slices averaged over the output's thickness, then
  resampled linearly at the output positions (the acquisition model on the fine grid);
* ``multiple box``: synthesize at the smallest whole multiple of the ratio (x5 for 2.5), so
  every output position lies on a fine slice, and average over the output thickness;
* ``multiple pick``: the same fine grid, every output position's fine slice as it is;
* ``next-up linear, then averaged``: resampled first, averaged on the output grid;
* ``thinslice upsample``: what ``--target-spacing`` (and ``--output-thickness``) do.

PSNR over all output slices (HU [-1024, 3072]), on the held-out crops of ``thick_slices.py``.

    OMP_NUM_THREADS=1 python benchmarks/fractional.py --json benchmarks/out/fractional.json
"""

from __future__ import annotations

import argparse
import json
from datetime import date

import numpy as np
import torch
from thick_slices import SCANS, SHARED, between_centres, crop

import thinslice
from thinslice.evaluation.metrics import psnr, scale_hu
from thinslice.grid import resample_slices
from thinslice.profile import average_slices, profile_degrade, slice_profile_kernel

# (scan, ratio thick/output, output thickness in thin slices)
CASES = (
    ("chest1mm_lidc0314", 2.5, 1.0),  # 2.5 mm -> 1 mm
    ("limb3mm_sts002", 2.5, 1.0),  # 8.2 mm -> 3.27 mm
    ("chest1mm_lidc0314", 2.5, 2.0),  # 2.5 mm -> 1 mm apart, 2 mm thick
    ("chest1mm_lidc0314", 5.0, 2.0),  # 5 mm -> 1 mm apart, 2 mm thick
)


def reach(fine: np.ndarray, step: float, count: int, width: float, how: str) -> np.ndarray:
    """Output slices ``k * step`` fine slices apart from fine slices, by ``how``."""
    if how == "pick":
        return fine[np.round(np.arange(count) * step).astype(int)]
    if how.startswith("linear"):
        out = resample_slices(fine, np.arange(count) * step)
        return average_slices(out, width / step) if how == "linear+box" else out
    out, _ = profile_degrade(fine.astype(np.float32), 1.0, step, width, axis=0)
    return out[:count]


def ways_for(ratio: float, out_thick: float) -> dict[str, tuple[int, str]]:
    """The ways to the output grid: name -> (factor synthesized, how the grid is reached)."""
    if abs(ratio - round(ratio)) < 1e-6:
        return {"as synthesized": (int(ratio), "pick"), "averaged over the thickness": (int(ratio), "box")}
    up = int(np.ceil(ratio))
    multiple = int(round(next(m * ratio for m in range(1, 5) if abs(m * ratio - round(m * ratio)) < 1e-6)))
    ways = {"next-up linear": (up, "linear"), "next-up box": (up, "box"), "multiple box": (multiple, "box"),
            "multiple pick": (multiple, "pick")}  # fmt: skip
    if out_thick > 1:
        ways["next-up linear, then averaged"] = (up, "linear+box")
    return ways


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for name, ratio, out_thick in CASES:
        file, _, size, slices = SCANS[name]
        volume = crop(thinslice.load(SHARED / file), size, slices)
        thin = volume.data.astype(np.float32)
        first = len(slice_profile_kernel(ratio, 1.0)) // 2 + 1
        thick, _ = profile_degrade(thin, 1.0, ratio, ratio, axis=0, offset=float(first))
        thick = thick[: int((thin.shape[0] - 1 - 2 * first) // ratio) + 1]
        count = int(np.floor((len(thick) - 1) * ratio + 1e-6)) + 1
        sp = volume.slice_spacing
        truth, _ = profile_degrade(thin, 1.0, 1.0, out_thick, axis=0, offset=float(first))
        truth = scale_hu(truth[:count])
        src = volume.with_data(thick, sp * ratio, slice_thickness=sp * ratio)
        for method in ("lanczos", "model"):
            ways = ways_for(ratio, out_thick)
            # scored from the first thick centre to the last (this section's grid, before the
            # output reached past the end centres)
            fines = {r: between_centres(thinslice.upsample(src, r, method=method, device="cpu"), src).astype(np.float32)
                     for r in sorted({r for r, _ in ways.values()})}  # fmt: skip
            outs = {way: reach(fines[r], r / ratio, count, out_thick * r / ratio, how)
                    for way, (r, how) in ways.items()}  # fmt: skip
            made = thinslice.upsample(
                src, target_spacing=sp, output_thickness=out_thick * sp, method=method, device="cpu"
            )
            outs["thinslice upsample"] = between_centres(made, src)[:count]
            for way, out in outs.items():
                score = psnr(scale_hu(out.astype(np.float32)), truth)
                rows.append({"scan": name, "ratio": ratio, "out_thickness": out_thick, "method": method,
                             "way": way, "psnr": round(score, 2)})  # fmt: skip
                print(f"{name} /{ratio} out {out_thick:g} {method} {way}: {score:.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": date.today().isoformat(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
