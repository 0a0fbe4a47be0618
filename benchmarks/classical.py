"""Classical interpolation on every shared scan: the baseline table of BENCHMARKS.md.

Runs ``thinslice evaluate`` (via the Python API) with linear, cubic B-spline and
Lanczos-3 at the given scales (decimation), on every NIfTI in ../shared/data, and
prints a Markdown table. Usage::

    python benchmarks/classical.py --scales 2 4 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
from datetime import date
from pathlib import Path

from thinslice.evaluation.protocol import evaluate, markdown_rows

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--degrade", default="decimate")
    parser.add_argument("--methods", default="linear,cubic,lanczos")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    volumes = sorted(SHARED.glob("*.nii.gz"))
    if not volumes:
        raise SystemExit(f"no scans in {SHARED}")
    reports = []
    print(f"<!-- {date.today()} on {platform.node()} ({platform.processor() or platform.machine()}) -->")
    for r in args.scales:
        report = evaluate(volumes, r, degrade=args.degrade, methods=args.methods.split(","))
        reports.append(report)
        print(f"\n**x{r}, {args.degrade}**\n")
        print(markdown_rows(report))
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2))


if __name__ == "__main__":
    main()
