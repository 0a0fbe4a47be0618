"""Thick slices made by the acquisition model (profile averaging) vs decimation, held-out scans.

For each held-out scan and factor r, a thick stack is simulated from the thin truth: either
by averaging over a box ``r`` thin slices wide sampled every ``r`` slices
(:func:`thinslice.profile.profile_degrade`, thickness = spacing = r x thin spacing), or by
keeping every r-th slice (decimation). Every method then produces ``r*(K-1)+1`` slices, which
are compared with the thin truth over the same z range: PSNR with HU clipped to
[-1024, 3072] scaled to [0, 1], over all output slices (``all``), over the synthesized
slices only (``synth``) and over the acquired positions only (``acq``).

chest1mm_lidc0314 (1 mm) is used at x2..x5, limb3mm_sts002 (3.27 mm) at x2 and x3 of its
own spacing. Both are held out from every model's training.

    python benchmarks/profile_eval.py --scales 2 3 4 5 --degrade profile decimate \
        --model bundled_x2=src/thinslice/weights/default_x2.pt --model new_x5=out/x5.pt
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from thinslice.evaluation.metrics import psnr, scale_hu, synthesized_mask
from thinslice.io import load
from thinslice.methods import get_method
from thinslice.profile import profile_degrade

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
# name -> (file, factors it is used at, in-plane crop, thin slices used)
SCANS = {
    "chest1mm": ("chest1mm_lidc0314.nii.gz", (2, 3, 4, 5), 256, 121),
    "limb3mm_sts002": ("limb3mm_sts002.nii.gz", (2, 3), 256, 48),
}


def crop(data: np.ndarray, size: int, slices: int) -> np.ndarray:
    d, h, w = data.shape
    z0 = max(0, (d - slices) // 2)
    y0, x0 = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return data[z0 : z0 + slices, y0 : y0 + size, x0 : x0 + size].astype(np.float32)


def thick_stack(thin: np.ndarray, r: int, degrade: str) -> tuple[np.ndarray, np.ndarray]:
    """(thick K slices, truth r*(K-1)+1 slices); the first thick slice sits at thin index ``off``."""
    off = r // 2 + 1 if degrade == "profile" else 0  # keep the box inside the data
    k = (thin.shape[0] - 1 - 2 * off) // r + 1
    if degrade == "profile":
        thick, pos = profile_degrade(thin, 1.0, float(r), float(r), axis=0, offset=float(off))
        thick = thick[:k]
        assert pos[k - 1] + r / 2 <= thin.shape[0] - 0.5 + 1e-6
    else:
        thick = thin[off::r][:k]
    return thick, thin[off : off + r * (k - 1) + 1]


def scores(truth: np.ndarray, pred: np.ndarray, r: int) -> dict[str, float]:
    t, p = scale_hu(truth), scale_hu(pred)
    synth = synthesized_mask(t.shape[0], r)
    return {"all": psnr(t, p), "synth": psnr(t[synth], p[synth]), "acq": psnr(t[~synth], p[~synth])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4, 5])
    parser.add_argument("--degrade", nargs="+", default=["profile"], choices=["profile", "decimate"])
    parser.add_argument("--scans", nargs="+", default=list(SCANS))
    parser.add_argument("--methods", nargs="+", default=["linear", "cubic", "lanczos"])
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=PATH[:keep]",
        help="checkpoint to score; ':keep' copies the acquired slices even for a sharpening model",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from thinslice.model.inference import load_model

    models = {}
    for spec in args.model:
        name, path = spec.split("=", 1)
        keep = path.endswith(":keep")
        models[name] = (load_model(path.removesuffix(":keep"), device="cpu"), True if keep else None)
    rows = []
    for scan in args.scans:
        fname, factors, size, slices = SCANS[scan]
        thin = crop(load(SHARED / fname).data, size, slices)
        for degrade in args.degrade:
            for r in [r for r in args.scales if r in factors]:
                thick, truth = thick_stack(thin, r, degrade)
                runs = {m: (lambda m=m, thick=thick, r=r: get_method(m)(thick, r)) for m in args.methods}
                for name, (synth, keep) in models.items():
                    valid = [synth.scale**k for k in range(1, 4)]
                    if r in valid:
                        runs[name] = lambda synth=synth, keep=keep, thick=thick, r=r: synth.upsample(
                            thick, r, keep_acquired=keep
                        )
                for name, fn in runs.items():
                    t0 = time.perf_counter()
                    pred = fn()
                    row = {"scan": scan, "degrade": degrade, "r": r, "method": name, **scores(truth, pred, r)}
                    row["s"] = time.perf_counter() - t0
                    rows.append(row)
                    print(
                        f"| {scan} | {degrade} | x{r} | {name} | {row['all']:.2f} | {row['synth']:.2f} "
                        f"| {row['acq']:.2f} | {row['s']:.1f} |",
                        flush=True,
                    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
