"""Train a model under the acquisition model on the non-held-out shared scans.

The same code path as ``thinslice train`` (``thinslice.training.train``) on the four scans
MODEL.md trains on; chest1mm_lidc0314 and limb3mm_sts002 stay held out.

    OMP_NUM_THREADS=1 python benchmarks/train_profile.py --scale 5 --minutes 12 -o out/x5.pt
    # --old: the shipped objective (decimation, acquired slices copied) for comparison
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path

import torch

from thinslice.io import load
from thinslice.model.config import ModelConfig
from thinslice.training.config import LossWeights, TrainConfig
from thinslice.training.loop import train

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TRAIN = ("abd5mm_crlm1004", "aorta1.5mm_totalseg", "body3mm_totalseg", "limb3mm_sts001")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--scale", type=int, default=5)
    parser.add_argument("--minutes", type=float, default=12)
    parser.add_argument("--old", action="store_true", help="shipped objective (no acquisition model)")
    parser.add_argument("--consistency", type=float, default=0.15, help="consistency weight")
    parser.add_argument("--fraction", type=float, default=0.25, help="consistency fraction")
    parser.add_argument("--second-level", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO)
    weights = replace(LossWeights(), consistency=args.consistency, consistency_level2=args.consistency)
    tc = TrainConfig(
        profile=not args.old,
        weights=weights,
        consistency_fraction=args.fraction,
        second_level=args.second_level,
    )
    mc = ModelConfig(scale=args.scale, sharpen=not args.old)
    volumes = [load(SHARED / f"{name}.nii.gz") for name in TRAIN]
    train(volumes, args.output, tc, mc, minutes=args.minutes, seed=args.seed, device="cpu", progress=False)
    ckpt = torch.load(args.output, weights_only=False, map_location="cpu")
    print("steps", ckpt["step"], {k: round(v, 6) for k, v in ckpt["metrics"].items()})


if __name__ == "__main__":
    main()
