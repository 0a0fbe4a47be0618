"""How soft a profile should ``--adapt`` train at? Adapt at fixed softnesses and score.

The bundled profile model of factor ``--scale`` is adapted for ``--minutes`` to a held-out
crop of ``thick_slices.py`` made thick with a box softened by ``--softness`` (Gaussian FWHM
over the thickness), its in-plane training pairs at each of ``--train-at`` instead of the
softness ``--adapt`` estimates plus ``ADAPT_SOFTNESS_MARGIN``. PSNR over all slices, dB.

    OMP_NUM_THREADS=1 python benchmarks/adapt_margin.py --scan chest1mm_lidc0314 --scale 2 \\
        --softness 0 --train-at 0 0.5 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
import torch
from thick_slices import SCANS, SHARED, crop

import thinslice
import thinslice.pipeline.adapt as adapt
from thinslice.evaluation.degrade import degrade_array
from thinslice.evaluation.metrics import psnr, scale_hu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scan", choices=list(SCANS), required=True)
    parser.add_argument("--scale", type=int, required=True)
    parser.add_argument("--softness", type=float, default=0.0)
    parser.add_argument("--train-at", nargs="+", type=float, required=True)
    parser.add_argument("--minutes", type=float, default=2.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    file, _, size, slices = SCANS[args.scan]
    volume = crop(thinslice.load(SHARED / file), size, slices)
    thin = volume.data.astype(np.float32)
    copy = degrade_array(thin, args.scale, "profile", softness=args.softness)
    truth, mm = copy.truth(thin, args.scale), volume.slice_spacing * args.scale
    thick = volume.with_data(copy.data, mm, slice_thickness=mm)
    for softness in args.train_at:
        adapt.at_scan_profile = lambda config, _volume, _estimate, s=softness: dataclasses.replace(
            config, profile_softness=s, profile_softness_min=s
        )
        out = thinslice.upsample(thick, args.scale, device="cpu", adapt=args.minutes)
        score = psnr(scale_hu(truth), scale_hu(out.data.astype(np.float32)))
        row = {"scan": args.scan, "r": args.scale, "softness": args.softness, "train_at": softness}
        print(json.dumps({**row, "psnr_all": round(score, 2)}), flush=True)


if __name__ == "__main__":
    main()
