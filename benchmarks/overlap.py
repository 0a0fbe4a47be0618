"""Overlapping reconstructions: slices thicker than their spacing (e.g. 5 mm every 2.5 mm).

Thin truth becomes thick slices ``r`` thin slices apart and ``overlap * r`` thick (a box,
``thinslice evaluate --degrade profile --thickness MM``), and each method, told the
thickness, makes the thin slices back. The bundled model runs three ways: with no flags
(which picks or blends the families by :func:`thinslice.profile.soft_weight`), and forced to the profile
family and to the soft-profile family (``--model``; with gaps between the slices,
``--overlaps`` below 1, to the profile family and the default, thin-slice one). PSNR over
all output slices, dB, on the held-out crops of ``thick_slices.py``.

    OMP_NUM_THREADS=1 python benchmarks/overlap.py --json benchmarks/out/overlap.json
    OMP_NUM_THREADS=1 python benchmarks/overlap.py --overlaps 0.6 0.8 --json benchmarks/out/overlap_gaps.json
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from typing import Any

import torch
from thick_slices import SCANS, SHARED, crop

import thinslice
from thinslice.evaluation.protocol import evaluate
from thinslice.methods.learned import bundled_model_path
from thinslice.volume import Volume

OVERLAPS = (1.5, 1.75, 2.0)
CLASSICAL = ("linear", "cubic", "lanczos")


def score(volume: Volume, r: int, mm: float, **options: Any) -> dict[str, dict[str, Any]]:
    """``thinslice evaluate --degrade profile --thickness MM`` rows by method."""
    report = evaluate([volume], r, degrade="profile", thickness=mm, device="cpu", **options)
    return {row["method"]: row for row in report["rows"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--overlaps", type=float, nargs="+", default=list(OVERLAPS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for name, (file, factors, size, slices) in SCANS.items():
        volume = crop(thinslice.load(SHARED / file), size, slices)
        for overlap in args.overlaps:
            for r in factors[:4]:
                mm = overlap * r * volume.slice_spacing
                plain = score(volume, r, mm, methods=[*CLASSICAL, "model"])
                row = {"scan": name, "r": r, "overlap": overlap, "made_by": plain["model"]["made_by"]}
                row.update({m: round(plain[m]["psnr_paper"], 2) for m in (*CLASSICAL, "model")})
                for family in ("profile", "profile_soft" if overlap >= 1 else "default"):
                    forced = score(volume, r, mm, methods=["model"], model=bundled_model_path(r, family))
                    row[family] = round(forced["model"]["psnr_paper"], 2)
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": date.today().isoformat(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
