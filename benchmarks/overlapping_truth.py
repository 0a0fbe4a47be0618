"""Overlapping slices as ground truth: scored as made, or averaged to the truth's thickness?

``thinslice evaluate`` scores each method's slices against the truth as they are made (as
thick as their spacing). When the truth's own slices overlap, that is not like for like.
This script scores Lanczos and the model at x2 (profile protocol) both ways on two truths:
the shared DICOM chest (3 mm slices every 2 mm, as read) and the bundled sample's 1 mm
reference made overlapping by hand (each slice the mean of two neighbours: 2 mm every
1 mm). ``width`` is the box, in output slices, each method's slices are averaged over
before scoring (1: as made; the truth's thickness over its spacing: as thick as the truth).
BENCHMARKS.md, "Overlapping slices as ground truth".

    OMP_NUM_THREADS=2 python benchmarks/overlapping_truth.py
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np

import thinslice
from thinslice import grid
from thinslice.evaluation.degrade import degrade_array
from thinslice.evaluation.metrics import compare
from thinslice.methods import get_method, run_on_grid
from thinslice.volume import Volume

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def truths() -> list[tuple[str, np.ndarray, Volume]]:
    """(label, truth voxels, the volume they come from) for each truth."""
    chest = thinslice.load(SHARED / "dicom" / "chest_totalseg")
    sample = thinslice.load(Path(str(resources.files("thinslice") / "data" / "sample_reference.nii.gz")))
    thin = sample.data.astype(np.float32)
    overlapped = sample.with_data((thin[:-1] + thin[1:]) / 2, slice_thickness=2 * sample.slice_spacing)
    return [("dicom chest, 3 mm every 2 mm", chest.data.astype(np.float32), chest),
            ("sample reference made 2 mm every 1 mm", overlapped.data, overlapped)]  # fmt: skip


def main(r: int = 2) -> None:
    for label, data, volume in truths():
        copy = degrade_array(data, r, "profile")
        truth = copy.truth(data, r)
        thin_mm, row_mm, column_mm = volume.voxel_spacing
        for name in ("lanczos", "model"):
            fn = get_method(name, device="cpu")
            for width in (1.0, volume.thickness / thin_mm):
                plan = grid.plan_for_spacing(len(copy.data), float(r), 1.0, fn.makes)
                result = run_on_grid(fn, copy.data, plan, thickness=copy.thickness / r,
                                     spacing=(r * thin_mm, row_mm, column_mm), output_width=width)  # fmt: skip
                row = {"truth": label, "r": r, "method": name, "width": round(width, 3)}
                row.update(psnr=round(compare(truth, result.data, r)["psnr_paper"], 2), made_by=result.made_by)
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
