"""Ratios that are not whole numbers (2.5 mm -> 1 mm, 1.5 mm -> 1 mm): what
``upsample --target-spacing 1`` writes, and what ``evaluate --reference`` says of it.

Thick series are made from the held-out chest's real 1 mm slices (central 256 x 256 crop)
by averaging over each slice's profile in millimetres, exactly (each thin slice a cell 1 mm
wide, weighted by its overlap with the box, or by the Gaussian's integral over it for a
bell), at centres every SPACING mm from thin slice 62. They are passed to thinslice as
Volumes that state their thickness. Each method upsamples to 1 mm, and its output slices
are scored against the real 1 mm slices at the same positions (PSNR, HU [-1024, 3072],
every output slice the truth has); ``evaluate_pair`` scores the same methods on the same
pair, and its factor is reported beside.

    OMP_NUM_THREADS=1 python benchmarks/nonint_ratios.py [--json benchmarks/out/nonint.json]
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from datetime import date

import numpy as np
from thick_slices import SHARED

import thinslice
from thinslice.evaluation.metrics import psnr, scale_hu
from thinslice.volume import Volume

#: (thickness mm, spacing mm) -> 1 mm: contiguous 2.5 mm, overlapping 3 every 1.5 and 5 every 2.5
CASES = ((2.5, 2.5), (3.0, 1.5), (5.0, 2.5))
METHODS = ("linear", "cubic", "lanczos", "model")


def exact_weights(n: int, centre: float, thickness: float, shape: str) -> np.ndarray:
    """Weights of thin slices 0..n-1 (1 mm cells) in a thick slice centred at ``centre`` (mm,
    thin-slice units): a box ``thickness`` wide, or a Gaussian of that FWHM."""
    lo, hi = np.arange(n) - 0.5, np.arange(n) + 0.5
    if shape == "box":
        w = np.clip(np.minimum(hi, centre + thickness / 2) - np.maximum(lo, centre - thickness / 2), 0, None)
    else:
        sigma = thickness / (2 * math.sqrt(2 * math.log(2)))
        cdf = np.vectorize(lambda x: 0.5 * (1 + math.erf((x - centre) / (sigma * math.sqrt(2)))))
        w = cdf(hi) - cdf(lo)
    return w / w.sum()


def thick_series(thin: Volume, thickness: float, spacing: float, shape: str, first: int = 62) -> Volume:
    """Thick slices ``thickness`` mm (profile ``shape``) every ``spacing`` mm, the first
    centred on thin slice ``first``, as many as fit with their whole profile inside."""
    n = thin.num_slices
    reach = 3 * thickness if shape == "bell" else thickness / 2
    centres = [first + k * spacing for k in range(int((n - 1 - reach - first) // spacing) + 1)]
    data = np.stack([np.tensordot(exact_weights(n, c, thickness, shape), thin.data, axes=1) for c in centres])
    geometry = replace(
        thin.geometry.with_slice_spacing(spacing * thin.slice_spacing),
        origin=tuple(float(v) for v in thin.geometry.slice_position(first)),
    )
    return Volume(np.rint(data).astype(np.int16), geometry, "thick", {}, thickness * thin.slice_spacing)


def written_score(thin: Volume, out: Volume) -> tuple[float, int]:
    """PSNR of ``out`` against the thin slices at its positions (every one the truth has)."""
    z0, dz = thin.geometry.slice_position(0), thin.geometry.slice_direction * thin.slice_spacing
    made, truth = [], []
    for i in range(out.num_slices):
        j = float((out.geometry.slice_position(i) - z0) @ dz) / thin.slice_spacing**2
        if abs(j - round(j)) < 1e-3 and 0 <= round(j) < thin.num_slices:
            made.append(out.data[i])
            truth.append(thin.data[round(j)])
    a, b = (scale_hu(np.stack(x).astype(np.float32)) for x in (truth, made))
    return float(psnr(a, b)), len(made)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json")
    args = parser.parse_args()
    full = thinslice.load(SHARED / "chest1mm_lidc0314.nii.gz")
    h, w = full.data.shape[1:]
    thin = full.with_data(np.ascontiguousarray(full.data[:, h // 2 - 128 : h // 2 + 128, w // 2 - 128 : w // 2 + 128]))
    thin = Volume(thin.data, thin.geometry, "chest1mm_lidc0314", {}, 1.0)
    rows = []
    for thickness, spacing in CASES:
        for shape in ("box", "bell"):
            thick = thick_series(thin, thickness, spacing, shape)
            report = thinslice.evaluate_pair(thick, thin, methods=list(METHODS), device="cpu")
            said = {row["method"]: row for row in report["rows"]}
            for method in METHODS:
                out = thinslice.upsample(thick, target_spacing=1.0, method=method, device="cpu")
                score, count = written_score(thin, out)
                row = {
                    "case": f"{thickness:g} mm every {spacing:g} mm -> 1 mm, {shape}",
                    "method": method,
                    "upsample_factor": out.meta["factor"],
                    "written_psnr": round(score, 3),
                    "written_slices": count,
                    "evaluate_factor": said[method]["factor"],
                    "evaluate_psnr": round(said[method]["psnr_paper"], 3),
                    "evaluate_slices": said[method]["slices_used"],
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"date": date.today().isoformat(), "version": thinslice.__version__, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
