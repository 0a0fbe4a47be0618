"""Slices past the end slices' centres, per model: PSNR of checkpoints there and overall
(BENCHMARKS.md, "Training the x5 network more as inference and the measure use it").

Upsample reaches past the first and last thick slices' centres (``thinslice.grid.reach``)
and the networks see the end slices repeated there (``thinslice.grid.pad_slices``). This
script scores models on the held-out crops of ``thick_slices.py`` (box profile,
contiguous; x3-x6 on the chest, x3 on the limb: x2 reaches no slice past the ends), as
``thinslice upsample --model PATH`` runs them: PSNR over all output slices (the measure of
record), over the slices past the ends alone, and over those between the end centres. The
experiment it measured, training at a stack's end (``TrainConfig.profile_edge``), lives at
commit 59f18a3.

    OMP_NUM_THREADS=1 python benchmarks/edge_training.py --model bundled edge=EDGE_x5.pt --factors 5
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

import numpy as np
import torch
from thick_slices import held_out_thick

import thinslice
from thinslice.evaluation.metrics import psnr, scale_hu

CASES = [("chest1mm_lidc0314", r) for r in (3, 4, 5, 6)] + [("limb3mm_sts002", 3)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model", nargs="+", default=["bundled"], help="bundled, or LABEL=PATH (x{r} in PATH: each factor's)"
    )
    parser.add_argument("--factors", nargs="+", type=int, help="only these factors")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    models = dict(m.split("=", 1) if "=" in m else (m, None) for m in args.model)
    rows = []
    for name, r in CASES:
        if args.factors and r not in args.factors:
            continue
        truth, thick = held_out_thick(name, r)
        lanczos = scale_hu(thinslice.upsample(thick, r, method="lanczos").data.astype(np.float32))
        for label, path in {"lanczos": "", **models}.items():
            if label == "lanczos":
                out = lanczos
            else:
                model = None if path is None else path.replace("x{r}", f"x{r}")
                out = scale_hu(thinslice.upsample(thick, r, model=model, device="cpu").data.astype(np.float32))
            assert out.shape == truth.shape, (out.shape, truth.shape)
            m = (len(truth) - r * (thick.num_slices - 1) - 1) // 2  # slices past each end
            ends = np.r_[0:m, len(truth) - m : len(truth)]
            inner = slice(m, len(truth) - m)
            row = {"scan": name, "r": r, "model": label, "past_each_end": m, "all": psnr(truth, out),
                   "past_ends": psnr(truth[ends], out[ends]), "between": psnr(truth[inner], out[inner])}  # fmt: skip
            rows.append(row)
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"date": str(date.today()), "models": models, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
