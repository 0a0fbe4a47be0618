"""Speed and peak memory of ``thinslice upsample`` against SimpleITK B-spline, same run.

Every number is a whole process (start-up, read, synthesis, write .nii.gz) timed from
outside; each command's peak memory is GNU time's maximum resident set size. Commands of
one case run interleaved (model, B-spline, model, ...), so drifting load hits all alike;
medians of ``--repeats`` runs, and the ratio to B-spline of the same run.

Cases (all from the 1 mm LIDC chest in ../shared/data, real CT, never trained on):

* ``x2``: 512 x 512 x 101 (slices 0, 2, 4, ... : 2 mm) at x2. Commands: thinslice with no
  flags; with ``--precision float32``; the previous default path (``--all-views
  --precision float32``); SimpleITK B-spline (``sitk.Resample`` with ``sitkBSpline`` onto
  the thin grid, what a user would write).
* ``5mm``: 512 x 512 x 60 slices 5 mm thick every 5 mm (the chest, mirrored at its end to
  300 mm, averaged over a 5 mm box: ``thinslice.evaluation.degrade.profile_array``) to 1 mm with
  ``--target-spacing 1``; B-spline onto the same 1 mm grid.
* ``memory``: peak at x4 of 512 x 512 x 100 and 512 x 512 x 400 inputs (2 mm; the chest
  mirrored to length), one run each, against the output's float32 size (the bound of
  issue 13 is 2.5 times that).

    python benchmarks/speed.py --repeats 3 [--cases x2 5mm memory] [--device cpu] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import SimpleITK as sitk

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CHEST = SHARED / "chest1mm_lidc0314.nii.gz"

BSPLINE = """
import sys, SimpleITK as sitk
src, dst, r = sys.argv[1], sys.argv[2], int(sys.argv[3])
image = sitk.ReadImage(src)
size = list(image.GetSize()); spacing = list(image.GetSpacing())
size[2] = r * (size[2] - 1) + 1; spacing[2] /= r
out = sitk.Resample(image, size, sitk.Transform(), sitk.sitkBSpline, image.GetOrigin(), spacing,
                    image.GetDirection(), 0.0, image.GetPixelID())
sitk.WriteImage(out, dst, useCompression=True)
"""


def chest_slices(n: int, step: int = 1) -> tuple[np.ndarray, sitk.Image]:
    """``n * step`` 1 mm slices of the chest, mirrored at its end when it is shorter."""
    image = sitk.ReadImage(str(CHEST))
    data = sitk.GetArrayFromImage(image)
    order = np.concatenate([np.arange(len(data)), np.arange(len(data) - 1, -1, -1)])
    while len(order) < n * step:
        order = np.concatenate([order, order])
    return data[order[: n * step]], image


def write(data: np.ndarray, like: sitk.Image, spacing: float, path: Path, thickness: float | None = None) -> Path:
    image = sitk.GetImageFromArray(data)
    image.SetSpacing((*like.GetSpacing()[:2], spacing))
    image.SetOrigin(like.GetOrigin())
    image.SetDirection(like.GetDirection())
    if thickness is not None:  # as thinslice writes it: the thickness is known
        image.SetMetaData("ITK_FileNotes", f"thinslice slice_thickness={thickness:g}")
    sitk.WriteImage(image, str(path), useCompression=True)
    return path


def decimated(folder: Path, n: int) -> Path:
    """``n`` slices 2 mm apart (every 2nd 1 mm slice: real CT at 2 mm)."""
    data, like = chest_slices(n, 2)
    return write(data[::2], like, 2.0, folder / f"chest_2mm_512x512x{n}.nii.gz")


def thick_5mm(folder: Path, n: int = 60) -> Path:
    """``n`` slices 5 mm thick every 5 mm, box profile over the 1 mm slices."""
    from thinslice.evaluation.degrade import profile_array

    data, like = chest_slices(5 * n)
    thick = profile_array(data.astype(np.float32), 5)
    return write(np.rint(thick).astype(np.int16), like, 5.0, folder / f"chest_5mm_512x512x{n}.nii.gz", 5.0)


def timed(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd`` under GNU time; return (seconds, peak RSS in GiB)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as fh:
        start = time.perf_counter()
        subprocess.run(["/usr/bin/time", "-v", "-o", fh.name, *cmd], check=True, capture_output=True)
        seconds = time.perf_counter() - start
        rss = next(line for line in fh.read().splitlines() if "Maximum resident set size" in line)
    return seconds, float(rss.split(":")[1]) / 2**20


def run_case(name: str, commands: dict[str, list[str]], repeats: int, baseline: str) -> list[dict]:
    runs: dict[str, list[tuple[float, float]]] = {key: [] for key in commands}
    for _ in range(repeats):  # interleaved
        for key, cmd in commands.items():
            runs[key].append(timed(cmd))
    base = statistics.median(v[0] for v in runs[baseline])
    rows = []
    for key, values in runs.items():
        median = statistics.median(v[0] for v in values)
        rows.append({"case": name, "command": key, "median_s": median, "ratio_to_bspline": median / base,
                     "peak_gib": max(v[1] for v in values), "runs": [round(v[0], 2) for v in values]})  # fmt: skip
        peak = rows[-1]["peak_gib"]
        print(f"{name} {key}: median {median:.2f} s, x{median / base:.2f} of B-spline, peak {peak:.2f} GiB", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", nargs="+", default=["x2", "5mm", "memory"], choices=["x2", "5mm", "memory"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not CHEST.exists():
        raise SystemExit(f"needs {CHEST}")
    ts = [sys.executable, "-m", "thinslice.cli", "-q", "upsample", "--device", args.device, "--overwrite"]
    results: dict[str, object] = {
        "date": str(date.today()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "device": args.device,
        "repeats": args.repeats,
    }
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        out, ref = str(folder / "out.nii.gz"), str(folder / "bspline.nii.gz")
        if "x2" in args.cases:
            src = str(decimated(folder, 101))
            model = [*ts, "-i", src, "-o", out, "--scale", "2"]
            commands = {
                "thinslice (no flags)": model,
                "thinslice --precision float32": [*model, "--precision", "float32"],
                "previous default (--all-views --precision float32)": [*model, "--all-views", "--precision", "float32"],
                "SimpleITK B-spline": [sys.executable, "-c", BSPLINE, src, ref, "2"],
            }
            rows += run_case("x2 512x512x101", commands, args.repeats, "SimpleITK B-spline")
        if "5mm" in args.cases:
            src = str(thick_5mm(folder))
            commands = {
                "thinslice --target-spacing 1": [*ts, "-i", src, "-o", out, "--target-spacing", "1"],
                "SimpleITK B-spline": [sys.executable, "-c", BSPLINE, src, ref, "5"],
            }
            rows += run_case("5 mm -> 1 mm 512x512x60", commands, args.repeats, "SimpleITK B-spline")
        if "memory" in args.cases:
            for n in (100, 400):
                src = str(decimated(folder, n))
                commands = {
                    "thinslice --scale 4": [*ts, "-i", src, "-o", out, "--scale", "4"],
                    "SimpleITK B-spline": [sys.executable, "-c", BSPLINE, src, ref, "4"],
                }
                case = run_case(f"x4 512x512x{n}", commands, 1, "SimpleITK B-spline")
                out_gib = (4 * (n - 1) + 1) * 512 * 512 * 4 / 2**30
                for row in case:
                    row["output_float32_gib"] = out_gib
                    row["peak_over_output"] = row["peak_gib"] / out_gib
                rows += case
    results["rows"] = rows
    print(f"\n{results['machine']}, device {args.device}, {args.repeats} runs, {date.today()}")
    print("| case | command | median s | / B-spline | peak GiB | peak / output float32 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        share = f"{row['peak_over_output']:.2f}" if "peak_over_output" in row else ""
        print(f"| {row['case']} | {row['command']} | {row['median_s']:.1f} | {row['ratio_to_bspline']:.2f} | "
              f"{row['peak_gib']:.2f} | {share} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
