"""How far can this network go on the held-out limb? A ceiling, not a quality claim.

The limb misses issue 10's 2 dB goal under the profile protocol (BENCHMARKS.md). Is that the
network's capacity on this scan, or what it learned elsewhere? This script fine-tunes the
bundled profile model on the **evaluation scan itself** (limb3mm_sts002 at its own 3.27 mm
spacing: its coarser copies are the very task scored, on the very anatomy) for
``--minutes``, the bundled recipe otherwise (``benchmarks/profile_soft_finetune.toml``), and
scores it on the held-out crop of ``thick_slices.py`` (box profile), beside Lanczos and the
bundled model. Trained on what it is scored on, it bounds what training can reach here;
it is never a number for the product.

    OMP_NUM_THREADS=1 python benchmarks/limb_ceiling.py --scale 2 --minutes 15 -o /tmp/ceiling_x2.pt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from thick_slices import SCANS, SHARED, crop

import thinslice
from thinslice.evaluation.degrade import degrade_array
from thinslice.evaluation.metrics import psnr, scale_hu
from thinslice.methods.learned import bundled_model_path
from thinslice.model.checkpoint import load_checkpoint, model_config_of
from thinslice.training.config import load_config
from thinslice.training.loop import train

ROOT = Path(__file__).resolve().parents[1]
SCAN = "limb3mm_sts002"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--config", type=Path, default=ROOT / "benchmarks" / "profile_soft_finetune.toml")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    file, _, size, slices = SCANS[SCAN]
    whole = thinslice.load(SHARED / file)
    source = bundled_model_path(args.scale, "profile")
    if not args.output.exists():
        model_config, config = load_config(args.config)
        stored = model_config_of(load_checkpoint(source), source)
        train([whole], args.output, config, stored, minutes=args.minutes, seed=1, device="cpu", progress=False,
              init=source)  # fmt: skip
    volume = crop(whole, size, slices)
    thin = volume.data.astype(np.float32)
    copy = degrade_array(thin, args.scale, "profile")
    truth, mm = scale_hu(copy.truth(thin, args.scale)), volume.slice_spacing * args.scale
    thick = volume.with_data(copy.data, mm, slice_thickness=mm)
    row: dict[str, object] = {"scan": SCAN, "r": args.scale, "minutes": args.minutes}
    for label, method, model in [("lanczos", "lanczos", None), ("bundled", "model", None),
                                 ("ceiling", "model", args.output)]:  # fmt: skip
        out = thinslice.upsample(thick, args.scale, method=method, model=model, device="cpu")
        row[label] = round(psnr(truth, scale_hu(out.data.astype(np.float32))), 2)
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
