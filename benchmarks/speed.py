"""Speed of ``thinslice upsample`` against SimpleITK B-spline resampling, same run.

Times whole processes (start-up, read, synthesis, write) on a 512 x 512 x 101 volume
(slices 0, 2, 4, ... of the 1 mm LIDC chest in ../shared/data: real CT at 2 mm), at x2 and
x4: the default model (or ``--model``), cubic, and a SimpleITK B-spline resample
(``sitk.Resample`` with ``sitkBSpline`` onto the thin grid: what a user would write).
Reports medians of ``--repeats`` runs, the model / B-spline time ratio, and peak memory
(GNU time's maximum RSS). Then the model's own throughput: synthesized voxels per second
inside the process and the share of this machine's measured float32 convolution
throughput that it reaches.

    python benchmarks/speed.py --repeats 3 [--model M.pt] [--device cuda] [--json out.json]
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
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
ROOT = Path(__file__).resolve().parents[1]

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


def make_volume(folder: Path) -> Path:
    src = SHARED / "chest1mm_lidc0314.nii.gz"
    if not src.exists():
        raise SystemExit(f"needs {src}")
    image = sitk.ReadImage(str(src))[:, :, 0:202:2]
    path = folder / "chest_2mm_512x512x101.nii.gz"
    sitk.WriteImage(image, str(path), useCompression=True)
    return path


def timed(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd`` under GNU time; return (seconds, peak RSS in GiB)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as fh:
        start = time.perf_counter()
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", fh.name, *cmd], check=True, capture_output=True)
        seconds = time.perf_counter() - start
        rss_kb = float(fh.read().strip().splitlines()[-1])
    return seconds, rss_kb / 2**20


def conv_flops(device: str, channels: int = 32, size: int = 128, batch: int = 8) -> float:
    """Measured float32 FLOP/s of a 3x3 convolution on this machine (median of 5)."""
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1).to(device).eval()
    x = torch.randn(batch, channels, size, size, device=device)
    flops = 2 * batch * channels * channels * 9 * size * size
    times = []
    with torch.inference_mode():
        conv(x)
        for _ in range(5):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t = time.perf_counter()
            conv(x)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
    return flops / statistics.median(times)


def model_throughput(model: str | None, device: str, r: int) -> dict[str, float]:
    """Synthesized voxels/s and FLOP/s of the model inside one process."""
    from torch.utils.flop_counter import FlopCounterMode

    from thinslice.methods.learned import bundled_model_path
    from thinslice.model.inference import load_model

    synth = load_model(model or bundled_model_path(), device=device)
    data = sitk.GetArrayFromImage(sitk.ReadImage(str(SHARED / "chest1mm_lidc0314.nii.gz")))[0:42:2].astype(np.float32)
    synth.upsample(data[:4], r)  # warm-up
    counter = FlopCounterMode(display=False)
    with counter:
        synth.upsample(data[:6], r)
    flops_per_voxel = counter.get_total_flops() / (5 * (r - 1) * data.shape[1] * data.shape[2])
    t = time.perf_counter()
    synth.upsample(data, r)
    seconds = time.perf_counter() - t
    voxels = (data.shape[0] - 1) * (r - 1) * data.shape[1] * data.shape[2]
    return {
        "voxels_per_s": voxels / seconds,
        "flops_per_voxel": flops_per_voxel,
        "flops_per_s": voxels / seconds * flops_per_voxel,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--model", help="checkpoint (default: the bundled model)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fast", action="store_true", help="also time --fast")
    parser.add_argument(
        "--thin", action="store_true", help="also time --slice-thickness 1 (the thin-slice model family)"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    thinslice = [sys.executable, "-m", "thinslice.cli", "-q"]
    results: dict[str, object] = {
        "date": str(date.today()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch_threads": torch.get_num_threads(),
        "device": args.device,
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        src = make_volume(folder)
        rows = []
        for r in args.scales:
            commands = {
                "model": [
                    *thinslice,
                    "upsample",
                    "-i",
                    str(src),
                    "-o",
                    str(folder / "m.nii.gz"),
                    "--scale",
                    str(r),
                    "--method",
                    "model",
                    "--device",
                    args.device,
                    "--overwrite",
                ]
                + (["--model", args.model] if args.model else []),
                "cubic": [
                    *thinslice,
                    "upsample",
                    "-i",
                    str(src),
                    "-o",
                    str(folder / "c.nii.gz"),
                    "--scale",
                    str(r),
                    "--method",
                    "cubic",
                    "--overwrite",
                ],
                "sitk_bspline": [sys.executable, "-c", BSPLINE, str(src), str(folder / "b.nii.gz"), str(r)],
            }
            if args.fast:
                commands["model_fast"] = [*commands["model"], "--fast"]
            if args.thin:  # the slices are really 1 mm thick: the thin-slice family, acquired kept
                commands["model_thin_slices"] = [*commands["model"], "--slice-thickness", "1"]
            runs: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
            for _ in range(args.repeats):  # interleaved, so drifting load hits all alike
                for name, cmd in commands.items():
                    runs[name].append(timed(cmd))
            for name, values in runs.items():
                rows.append(
                    {
                        "scale": r,
                        "command": name,
                        "median_s": statistics.median(v[0] for v in values),
                        "peak_gib": max(v[1] for v in values),
                        "runs": [v[0] for v in values],
                    }
                )
            base = next(row["median_s"] for row in rows if row["scale"] == r and row["command"] == "sitk_bspline")
            for row in rows:
                if row["scale"] == r:
                    row["ratio_to_bspline"] = row["median_s"] / base
        results["rows"] = rows
    conv = conv_flops(args.device)
    results["conv_flops_per_s"] = conv
    results["model"] = {}
    for r in args.scales:
        tp = model_throughput(args.model, args.device, r)
        tp["share_of_conv_peak"] = tp["flops_per_s"] / conv
        results["model"][f"x{r}"] = tp  # type: ignore[index]
    print(f"512x512x101 volume, {results['machine']}, device {args.device}, {args.repeats} runs, {date.today()}")
    print("| scale | command | median s | / B-spline | peak GiB |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| x{row['scale']} | {row['command']} | {row['median_s']:.1f} | {row['ratio_to_bspline']:.2f} | "
            f"{row['peak_gib']:.2f} |"
        )
    print(f"\nmeasured 3x3 conv throughput: {conv / 1e9:.1f} GFLOP/s")
    for key, tp in results["model"].items():  # type: ignore[union-attr]
        print(
            f"model {key}: {tp['voxels_per_s'] / 1e6:.2f} Mvoxel/s synthesized, {tp['flops_per_voxel'] / 1e3:.1f} "
            f"kFLOP/voxel, {tp['flops_per_s'] / 1e9:.1f} GFLOP/s = {100 * tp['share_of_conv_peak']:.0f}% of conv peak"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
