"""Two views or three, float32 or bf16: the bundled model on the held-out scans (BENCHMARKS.md).

The same protocol as ``thick_slices.py`` (profile: thick slices averaged over their
thickness, PSNR over all output slices, HU [-1024, 3072]; chest1mm_lidc0314 x2..x5 and
limb3mm_sts002 x2, x3, central crops), the model alone, in four settings: all three views
(``all_views=True``, the previous default) or the coronal and sagittal ones (the default
now), each with float32 and with bf16 convolutions.

    OMP_NUM_THREADS=1 python benchmarks/views_precision.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

from thick_slices import SCANS, SHARED, crop

from thinslice.evaluation.protocol import evaluate
from thinslice.io import load

SETTINGS = [(all_views, precision) for all_views in (True, False) for precision in ("float32", "bfloat16")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    print("| scan | r | 3 views float32 | 3 views bf16 | 2 views float32 | 2 views bf16 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, (file, factors, size, slices) in SCANS.items():
        volume = crop(load(SHARED / file), size, slices)
        for r in [f for f in factors if f <= 5]:
            scores = []
            for all_views, precision in SETTINGS:
                report = evaluate([volume], r, degrade="profile", methods=["model"], device="cpu",
                                  all_views=all_views, precision=precision)  # fmt: skip
                scores.append(report["rows"][0]["psnr_paper"])
            rows.append({"scan": name, "r": r, "psnr_all": dict(zip(map(str, SETTINGS), scores, strict=True))})
            print(f"| {name} | x{r} | " + " | ".join(f"{s:.2f}" for s in scores) + " |", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"date": str(date.today()), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
