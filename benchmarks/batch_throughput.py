"""Batch throughput: cases per hour of ``thinslice upsample -i DIR -o DIR`` with one
process and with ``torchrun --nproc-per-node=N``, measured in the same run.

Builds a folder of ``--cases`` scans of equal size (``--max-slices x --size x --size``
crops of the NIfTI scans in ../shared/data that are that large) in a temporary folder, then runs the batch command
``--repeats`` times per setting, alternating the settings so that load from other jobs
hits both alike. Reports the median cases per hour over the whole command (process start,
imports, reading, writing: what a user waits for) and inside the batch (the report's own
``seconds``), and the N-vs-1 ratio. Usage::

    python benchmarks/batch_throughput.py [--cases 8] [--repeats 3] [--model M.pt] [--json out.json]
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

import thinslice
from thinslice.io import stem_of
from thinslice.volume import Volume

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def build_cases(folder: Path, count: int, size: int, max_slices: int) -> list[str]:
    """Write ``count`` crops of ``max_slices x size x size`` voxels (equal cost) of the shared
    scans that are at least that large, under ``folder`` (one subfolder per source)."""
    volumes = {src: thinslice.load(src) for src in sorted(SHARED.glob("*.nii.gz"))}
    sources = [src for src, vol in volumes.items() if min(vol.data.shape[1:]) >= size and len(vol.data) >= max_slices]
    if not sources:
        raise SystemExit(f"no scan in {SHARED} is at least {max_slices} x {size} x {size}")
    rng = np.random.default_rng(0)
    written = []
    for i in range(count):
        src = sources[i % len(sources)]
        vol: Volume = volumes[src]
        d, h, w = vol.data.shape
        z0 = int(rng.integers(0, max(1, d - max_slices + 1)))
        y0, x0 = int(rng.integers(0, max(1, h - size + 1))), int(rng.integers(0, max(1, w - size + 1)))
        crop = vol.data[z0 : z0 + max_slices, y0 : y0 + size, x0 : x0 + size]
        # cropping keeps the spacing; the origin moves, which does not matter for throughput
        out = folder / stem_of(src) / f"crop{i:02d}.nii.gz"
        out.parent.mkdir(parents=True, exist_ok=True)
        thinslice.save(Volume(np.ascontiguousarray(crop), vol.geometry, out.name), out)
        written.append(f"{out.relative_to(folder)} {crop.shape}")
    return written


def run_batch(
    launcher: list[str], src: Path, out: Path, method: list[str], scale: int, threads: int | None
) -> tuple[float, float]:
    """Wall seconds of the whole command, and the seconds the batch itself reports."""
    cmd = [*launcher, "-m", "thinslice.cli", "-q", "upsample", "-i", str(src), "-o", str(out), "-r", str(scale)]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    if threads is not None:  # torchrun keeps an OMP_NUM_THREADS that is already set
        env["OMP_NUM_THREADS"] = str(threads)
    t0 = time.perf_counter()
    res = subprocess.run([*cmd, *method], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd + method)} failed:\n{res.stderr[-3000:]}")
    report = json.loads((out / "thinslice_report.json").read_text())
    if report["counts"]["done"] != report["counts"]["total"]:
        raise SystemExit(f"not every case was done: {report['counts']}")
    return wall, float(report["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nproc", type=int, default=2, help="processes of the torchrun setting")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--size", type=int, default=512, help="in-plane crop size, pixels")
    parser.add_argument("--max-slices", type=int, default=40, help="slices per crop")
    parser.add_argument("--model", type=Path, help="also measure --method model with this checkpoint")
    parser.add_argument("--device", default="cpu", help="device for --method model")
    parser.add_argument(
        "--threads",
        type=int,
        help="OMP_NUM_THREADS for every process of both settings (default: torch's own choice for "
        "one process, 1 per process under torchrun)",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    methods = {"cubic": ["-m", "cubic"]}
    if args.model is not None:
        methods["model"] = ["-m", "model", "--model", str(args.model), "--device", args.device]
    launchers = {
        "1 process": [sys.executable],
        f"torchrun x{args.nproc}": [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        + [f"--nproc-per-node={args.nproc}"],
    }
    rows = []
    with tempfile.TemporaryDirectory(prefix="thinslice_bench_") as tmp:
        src = Path(tmp) / "in"
        cases = build_cases(src, args.cases, args.size, args.max_slices)
        print(f"<!-- {date.today()} on {platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs) -->")
        threads = f"OMP_NUM_THREADS={args.threads}" if args.threads else "default threads"
        print(f"{args.cases} cases, x{args.scale}, {threads}: " + "; ".join(cases))
        for name, method in methods.items():
            walls: dict[str, list[float]] = {k: [] for k in launchers}
            inner: dict[str, list[float]] = {k: [] for k in launchers}
            for rep in range(args.repeats):
                for label, launcher in launchers.items():
                    out = Path(tmp) / f"out_{name}_{label.replace(' ', '_')}_{rep}"
                    wall, seconds = run_batch(launcher, src, out, method, args.scale, args.threads)
                    walls[label].append(wall)
                    inner[label].append(seconds)
            for label in launchers:
                rows.append(
                    {
                        "method": name,
                        "launcher": label,
                        "wall_s": walls[label],
                        "batch_s": inner[label],
                        "cases_per_hour_wall": 3600 * args.cases / statistics.median(walls[label]),
                        "cases_per_hour_batch": 3600 * args.cases / statistics.median(inner[label]),
                    }
                )
    print("\n| method | launcher | cases/h (whole command) | cases/h (inside the batch) | wall s (each run) |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        walls_text = ", ".join(f"{w:.1f}" for w in row["wall_s"])
        print(
            f"| {row['method']} | {row['launcher']} | {row['cases_per_hour_wall']:.0f} | "
            f"{row['cases_per_hour_batch']:.0f} | {walls_text} |"
        )
    for name in methods:
        one, many = (r for r in rows if r["method"] == name)
        print(
            f"\n{name}: {args.nproc} vs 1 process: x{many['cases_per_hour_wall'] / one['cases_per_hour_wall']:.2f} "
            f"(whole command), x{many['cases_per_hour_batch'] / one['cases_per_hour_batch']:.2f} (inside the batch)"
        )
    if args.json:
        summary = {"cases": args.cases, "scale": args.scale, "threads": args.threads, "rows": rows}
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
