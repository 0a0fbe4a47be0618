"""Real thick slices: the bundled models against interpolation on held-out scans (BENCHMARKS.md).

For each held-out scan and factor r, thin truth becomes a thick stack in two ways, and
every method synthesizes the thin slices back through ``thinslice.evaluate`` (the same
code as ``thinslice evaluate``):

* ``profile`` (the measure of record): each thick slice is the average of the thin slices
  over a box r thin slices wide (thickness = spacing = r x thin spacing, contiguous), and
  the method is told that thickness; every output slice is an estimate, and PSNR over all
  output slices is the score;
* ``decimate`` (the paper's protocol): every r-th thin slice is kept, with its own thin
  thickness, so the acquired slices are copied back exactly.

PSNR: HU clipped to [-1024, 3072] and scaled to [0, 1]; ``all`` over every output slice,
``synth`` over the slices between acquired positions. The model is the bundled one (the
profile family for thick slices, the default family for thin ones), as `thinslice upsample`
uses with no flags. Held out (never trained on): chest1mm_lidc0314 (1 mm; x2..x6) and
limb3mm_sts002 (3.27 mm, used as truth at x2 and x3 of its own spacing).

``--adapt 1 2 4`` also measures ``thinslice upsample --adapt MINUTES`` on each scan given at
its largest factor, or at each of ``--factors`` (profile; ``--softness S ...`` softens the
thick box by a Gaussian of FWHM S x the thickness): the gain of fine-tuning on the thick
scan itself, per minute.

    OMP_NUM_THREADS=1 python benchmarks/thick_slices.py --json benchmarks/out/thick.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

import thinslice
from thinslice.evaluation.degrade import degrade_array
from thinslice.evaluation.metrics import psnr, scale_hu
from thinslice.evaluation.protocol import evaluate
from thinslice.volume import Volume

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
# name -> (file, factors, in-plane crop, thin slices used)
SCANS = {
    "chest1mm_lidc0314": ("chest1mm_lidc0314.nii.gz", (2, 3, 4, 5, 6), 256, 121),
    "limb3mm_sts002": ("limb3mm_sts002.nii.gz", (2, 3), 256, 48),
}
METHODS = ("linear", "cubic", "lanczos", "model")


def crop(volume: Volume, size: int, slices: int) -> Volume:
    """The central ``slices x size x size`` block, geometry kept (a crop for speed)."""
    d, h, w = volume.data.shape
    z0, y0, x0 = max(0, (d - slices) // 2), max(0, (h - size) // 2), max(0, (w - size) // 2)
    block = volume.data[z0 : z0 + slices, y0 : y0 + size, x0 : x0 + size].copy()
    out = volume.with_data(block)
    out.name = volume.name
    return out


def between_centres(out: Volume, thick: Volume) -> np.ndarray:
    """``out``'s slices from ``thick``'s first slice centre to its last: what ``upsample``
    made before it reached past the end slices' centres (2026-12-01), for the scripts that
    score that grid."""
    normal = thick.geometry.slice_direction
    shift = float((thick.geometry.slice_position(0) - out.geometry.slice_position(0)) @ normal)
    first = int(round(shift / out.slice_spacing))
    span = (thick.num_slices - 1) * thick.slice_spacing
    return out.data[first : first + int(np.floor(span / out.slice_spacing + 1e-6)) + 1]


def held_out_thick(
    name: str, r: int, overlap: float = 1.0, softness: float = 0.0
) -> tuple[np.ndarray, np.ndarray, Volume]:
    """A held-out crop made into thick slices ``r`` thin slices apart and ``overlap * r``
    thick (a box softened by a Gaussian of FWHM ``softness`` times that): the truth (HU
    scaled to [0, 1]) at the thin slices the thick stack covers, and the thick volume,
    told its thickness."""
    file, _, size, slices = SCANS[name]
    volume = crop(thinslice.load(SHARED / file), size, slices)
    thin = volume.data.astype(np.float32)
    copy = degrade_array(thin, r, "profile", thickness=overlap * r, softness=softness)
    spacing = volume.slice_spacing * r
    return scale_hu(copy.truth(thin, r)), volume.with_data(copy.data, spacing, slice_thickness=overlap * spacing)


def quality(scans: dict[str, Volume], degrades: list[str], factors: list[int] | None = None) -> list[dict]:
    rows = []
    for name, volume in scans.items():
        for r in [f for f in SCANS[name][1] if factors is None or f in factors]:
            for degrade in degrades:
                report = evaluate([volume], r, degrade=degrade, methods=list(METHODS), device="cpu")
                for row in report["rows"]:
                    rows.append({"scan": name, "degrade": degrade, "r": r, **row})
                    print(f"{name} {degrade} x{r} {row['method']}: all {row['psnr_paper']:.2f} "
                          f"synth {row['psnr_synth']:.2f} ({row['seconds']:.1f} s)", flush=True)  # fmt: skip
    return rows


def adapt_gain(volume: Volume, r: int, minutes: list[float], softness: float = 0.0) -> list[dict]:
    """PSNR over all slices after ``--adapt M`` for each M (0: the bundled model), the thick
    box softened by a Gaussian of FWHM ``softness`` x the thickness."""
    thin = volume.data.astype(np.float32)
    copy = degrade_array(thin, r, "profile", softness=softness)
    truth = copy.truth(thin, r)
    thick = volume.with_data(copy.data, volume.slice_spacing * r, slice_thickness=volume.slice_spacing * r)
    rows = []
    for m in [0.0, *minutes]:
        start = time.perf_counter()
        out = thinslice.upsample(thick, r, device="cpu", adapt=m or None)
        seconds = time.perf_counter() - start
        score = psnr(scale_hu(truth), scale_hu(out.data.astype(np.float32)))
        rows.append({"adapt_minutes": m, "psnr_all": score, "seconds": seconds})
        print(f"adapt {m:g} min: all {score:.2f} dB ({seconds:.0f} s)", flush=True)
    return rows


def tables(rows: list[dict]) -> str:
    lines = []
    for degrade in dict.fromkeys(r["degrade"] for r in rows):
        lines += [f"\n**{degrade}**\n", "| scan | r | linear | cubic | lanczos | model | model - best classical |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        keys = dict.fromkeys((r["scan"], r["r"]) for r in rows if r["degrade"] == degrade)
        for scan, r in keys:
            by = {x["method"]: x for x in rows if (x["scan"], x["r"], x["degrade"]) == (scan, r, degrade)}
            cells = [f"{by[m]['psnr_paper']:.2f} / {by[m]['psnr_synth']:.2f}" for m in METHODS]
            best = max(by[m]["psnr_paper"] for m in METHODS[:3])
            lines.append(f"| {scan} | x{r} | {' | '.join(cells)} | {by['model']['psnr_paper'] - best:+.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--degrade", nargs="+", default=["profile", "decimate"])
    parser.add_argument("--scans", nargs="+", default=list(SCANS))
    parser.add_argument("--factors", nargs="+", type=int, help="only these factors")
    parser.add_argument("--adapt", nargs="*", type=float, default=[])
    parser.add_argument("--softness", nargs="+", type=float, default=[0.0], help="--adapt: profile softness(es)")
    parser.add_argument("--skip-quality", action="store_true", help="only the --adapt measurement")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"needs the shared scans in {SHARED}")
    torch.set_num_threads(1)
    scans = {n: crop(thinslice.load(SHARED / SCANS[n][0]), *SCANS[n][2:]) for n in args.scans}
    result: dict = {"date": date.today().isoformat(), "rows": []}
    if not args.skip_quality:
        result["rows"] = quality(scans, args.degrade, args.factors)
        print(tables(result["rows"]))
    if args.adapt:
        result["adapt"] = []
        for name, volume in scans.items():
            for r, softness in itertools.product(args.factors or [max(SCANS[name][1])], args.softness):
                print(f"{name} x{r}, softness {softness:g}", flush=True)
                rows = adapt_gain(volume, r, args.adapt, softness)
                result["adapt"] += [{"scan": name, "r": r, "softness": softness, **row} for row in rows]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
