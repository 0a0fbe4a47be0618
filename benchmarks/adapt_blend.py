"""``--adapt`` where the bundled model blends two families (overlapping slices, gaps).

``thinslice upsample --adapt MINUTES`` fine-tunes the family with the largest share
(``ModelMethod.checkpoint_for``) and uses the fine-tuned copy in that family's place in the
blend. This compares it with no flags on
one held-out crop of ``thick_slices.py`` made into box-profile slices ``overlap * r`` thin
slices thick, ``r`` apart. PSNR over all output slices, dB.

    OMP_NUM_THREADS=1 python benchmarks/adapt_blend.py chest1mm_lidc0314 2 1.5
    OMP_NUM_THREADS=1 python benchmarks/adapt_blend.py chest1mm_lidc0314 2 0.6
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from thick_slices import SCANS, held_out_thick

import thinslice
from thinslice.evaluation.metrics import psnr, scale_hu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scan", choices=list(SCANS))
    parser.add_argument("r", type=int)
    parser.add_argument("overlap", type=float, help="slice thickness over slice spacing")
    parser.add_argument("--minutes", type=float, default=2.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    truth, thick = held_out_thick(args.scan, args.r, args.overlap)
    for label, options in (("no flags", {}), (f"--adapt {args.minutes:g}", {"adapt": args.minutes})):
        out = thinslice.upsample(thick, args.r, device="cpu", **options)
        score = psnr(truth, scale_hu(out.data.astype(np.float32)))
        print(f"{args.scan} x{args.r} {args.overlap:g} {label}: {score:.2f} dB ({out.meta['made_by']})", flush=True)


if __name__ == "__main__":
    main()
