"""The x2 default upsample of this tree against an earlier commit's, whole processes, same run.

A machine's speed drifts from day to day, so a ratio to B-spline measured today and one
measured last week may differ with no change in the code. This runs both source trees
alternately on the same input (the x2 case of ``speed.py``: 512 x 512 x 101, 2 mm slices
of the held-out chest) with the same interpreter and packages, the older one checked out
into a temporary git worktree and picked with ``PYTHONPATH``:

    python benchmarks/speed_ab.py --ref 54d81c7 --repeats 6
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from speed import decimated

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", required=True, help="the earlier commit")
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="thinslice-ab-") as folder:
        tmp = Path(folder)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(tmp / "old"), args.ref],
                       check=True)  # fmt: skip
        try:
            src = decimated(tmp, 101)
            trees = {args.ref: tmp / "old" / "src", "this tree": ROOT / "src"}
            times: dict[str, list[float]] = {label: [] for label in trees}
            for k in range(args.repeats):
                for label, path in trees.items():
                    out = tmp / "out.nii.gz"
                    cmd = [sys.executable, "-m", "thinslice.cli", "-q", "upsample", "-i", str(src), "-o", str(out),
                           "--overwrite"]  # fmt: skip
                    start = time.perf_counter()
                    subprocess.run(cmd, env={**os.environ, "PYTHONPATH": str(path)}, check=True)
                    times[label].append(time.perf_counter() - start)
                    print(f"run {k + 1} {label}: {times[label][-1]:.2f} s", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tmp / "old")], check=False)
    medians = {label: statistics.median(ts) for label, ts in times.items()}
    for label, median in medians.items():
        print(f"{label}: median {median:.2f} s of {args.repeats}")
    print(f"this tree / {args.ref}: {medians['this tree'] / medians[args.ref]:.3f}")


if __name__ == "__main__":
    main()
