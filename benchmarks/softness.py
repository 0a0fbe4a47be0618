"""Softer slice profiles than a box: does training on a range of them help, and what does it cost?

A real thick slice is a box as wide as its thickness softened by the reconstruction (its
profile has tails); the bundled profile models were trained on plain boxes. This script

* ``train``: fine-tunes a bundled profile model (or ``--init CHECKPOINT``) from its weights
  on the four training scans with a TOML config (e.g. ``[train] profile_softness = 1.0``:
  each step's thick box softened by a Gaussian of FWHM drawn up to the thickness), for
  ``--minutes`` or ``--steps`` (the same work whatever else runs);
* ``eval``: scores models on the held-out scans made thick with a box softened by a
  Gaussian of FWHM ``softness x thickness`` for each ``--softness`` (0 = the plain box of
  the measure of record; the same degradation as ``thinslice evaluate --degrade profile
  --softness S``), PSNR over all slices, with Lanczos beside them and the profile's
  estimate (``estimate_softness``). The methods are told the thickness, not the softness;
  ``bundled`` picks its checkpoint from that estimate, as ``thinslice upsample`` does.
  ``--shape gaussian``: a bell-shaped profile instead, a Gaussian of FWHM the thickness
  (softened by ``S``: FWHM ``(1 + S)`` x the thickness), like a helical scan's slice
  sensitivity profile; the methods are told that FWHM as the thickness.

    OMP_NUM_THREADS=1 python benchmarks/softness.py train --scale 2 --config soft.toml --minutes 25 -o soft_x2.pt
    OMP_NUM_THREADS=1 python benchmarks/softness.py eval --scale 2 --model bundled soft=soft_x2.pt
    OMP_NUM_THREADS=1 python benchmarks/softness.py eval --scale 2 --shape gaussian --softness 0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import thinslice
from thinslice.evaluation.degrade import degrade_array
from thinslice.evaluation.metrics import psnr, scale_hu
from thinslice.profile import BELL_BOX, estimate_softness

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
TRAINING = ("abd5mm_crlm1004", "aorta1.5mm_totalseg", "body3mm_totalseg", "limb3mm_sts001")
# held out: name -> (factors, in-plane crop, thin slices), as in thick_slices.py
HELD_OUT = {"chest1mm_lidc0314": ((2, 3, 4, 5, 6), 256, 121), "limb3mm_sts002": ((2, 3), 256, 48)}


def train(args: argparse.Namespace) -> None:
    from thinslice.model.checkpoint import load_checkpoint, model_config_of
    from thinslice.training.config import load_config
    from thinslice.training.loop import train as run

    source = args.init or ROOT / "src" / "thinslice" / "weights" / f"profile_x{args.scale}.pt"
    model_config, config = load_config(args.config)
    stored = model_config_of(load_checkpoint(source), source)
    volumes = [thinslice.load(SHARED / f"{name}.nii.gz") for name in TRAINING]
    volumes += [thinslice.load(SHARED / name) for name in args.add or ()]
    run(volumes, args.output, config, stored, steps=args.steps, minutes=args.minutes, seed=1, device="cpu",
        progress=False, init=source)  # fmt: skip


def evaluate(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    models = dict(m.split("=", 1) if "=" in m else (m, None) for m in args.model)
    rows = []
    for name, (factors, size, slices) in HELD_OUT.items():
        if args.scale not in factors:
            continue
        vol = thinslice.load(SHARED / f"{name}.nii.gz")
        d, h, w = vol.data.shape
        z0, y0, x0 = max(0, (d - slices) // 2), max(0, (h - size) // 2), max(0, (w - size) // 2)
        thin = vol.data[z0 : z0 + slices, y0 : y0 + size, x0 : x0 + size].astype(np.float32)
        for softness in args.softness:
            if args.shape == "gaussian":
                width = args.scale * BELL_BOX
                copy = degrade_array(thin, args.scale, "profile", thickness=width, softness=(1 + softness) / BELL_BOX)
            else:
                copy = degrade_array(thin, args.scale, "profile", softness=softness)  # tails inside the scan
            truth = copy.truth(thin, args.scale)
            mm = vol.slice_spacing * args.scale
            src = vol.with_data(copy.data, mm, slice_thickness=mm)
            scores: dict[str, object] = {"estimate": estimate_softness(src)}
            for label, path in [("lanczos", None), *models.items()]:
                method = "lanczos" if label == "lanczos" else "model"
                out = thinslice.upsample(src, args.scale, method=method, model=path, device="cpu")
                # upsample reaches past the end centres as far as the profile covers; the crop's
                # truth may hold fewer slices there (its profiles' tails must fit inside it)
                extra = (len(out.data) - len(truth)) // 2
                made = out.data[extra : len(out.data) - extra].astype(np.float32)
                scores[label] = psnr(scale_hu(truth), scale_hu(made))
                if path is None and method == "model":  # the bundled models: which one it picked
                    scores[f"{label}_made_by"] = out.meta["made_by"]
            rows.append({"scan": name, "r": args.scale, "shape": args.shape, "softness": softness, **scores})
            print(json.dumps(rows[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--scale", type=int, required=True)
    t.add_argument("--config", type=Path, required=True)
    budget = t.add_mutually_exclusive_group(required=True)
    budget.add_argument("--minutes", type=float)
    budget.add_argument("--steps", type=int, help="instead of --minutes: the same work whatever else runs")
    t.add_argument("-o", "--output", type=Path, required=True)
    t.add_argument("--init", type=Path, help="start from this checkpoint (default: the bundled profile_xR.pt)")
    t.add_argument("--add", nargs="+", help="more training scans under ../shared/data (a file or a DICOM folder)")
    e = sub.add_parser("eval")
    e.add_argument("--scale", type=int, required=True)
    e.add_argument("--model", nargs="+", default=["bundled"], help="bundled, or LABEL=PATH")
    e.add_argument("--softness", nargs="+", type=float, default=[0.0, 0.5, 1.0])
    e.add_argument("--shape", choices=("box", "gaussian"), default="box", help="the thick slices' profile")
    e.add_argument("--json", type=Path)
    args = parser.parse_args()
    train(args) if args.command == "train" else evaluate(args)


if __name__ == "__main__":
    main()
