"""`thinslice train`'s two recipes on the held-out crops, both protocols (BENCHMARKS.md,
"`thinslice train` on your own thick scans").

Scores checkpoints trained by `thinslice train` (THICK=, DEFAULT= paths) at x2 through
``thinslice.evaluate``, the code of `thinslice evaluate`, which tells each method the
thickness of the slices it is given:

    OMP_NUM_THREADS=1 python benchmarks/train_recipes.py thick=thick.pt default=default.pt
"""

from __future__ import annotations

import sys

from thick_slices import SCANS, SHARED, crop

import thinslice
from thinslice.evaluation.protocol import evaluate


def main() -> None:
    models = dict(arg.split("=", 1) for arg in sys.argv[1:])
    for name, (file, _, size, slices) in SCANS.items():
        volume = crop(thinslice.load(SHARED / file), size, slices)
        for label, path in models.items():
            for degrade in ("profile", "decimate"):
                row = evaluate([volume], 2, degrade=degrade, methods=["model"], model=path, device="cpu")["rows"][0]
                print(f"{name} {degrade} x2 {label}: all {row['psnr_paper']:.2f} synth {row['psnr_synth']:.2f}",
                      flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
