"""Quality of the bundled default model against classical interpolation on unseen scans.

Runs the evaluation protocol (``thinslice.evaluation.protocol``) at x2, x3 and x4, degrading by
decimation and by slab averaging, on the ../shared/data scans the default model did not
train on (see MODEL.md), with the bundled model (``--method model`` without ``--model``:
the x2 model, applied twice for x4, unless a model for that factor is bundled) and
linear, cubic and Lanczos. Prints Markdown tables for BENCHMARKS.md.

    python benchmarks/quality.py [--scales 2 3 4] [--degrade decimate slab] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

from thinslice.evaluation.protocol import evaluate, markdown_rows
from thinslice.methods.learned import bundled_model_path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
HELD_OUT = ("chest1mm_lidc0314.nii.gz", "limb3mm_sts002.nii.gz")  # never seen by the default model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--degrade", nargs="+", default=["decimate", "slab"])
    parser.add_argument("--volumes", nargs="+", default=list(HELD_OUT))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    volumes = [SHARED / v for v in args.volumes]
    missing = [str(v) for v in volumes if not v.exists()]
    if missing:
        raise SystemExit(f"missing scans: {', '.join(missing)}")
    reports = []
    print(f"Held-out scans: {', '.join(args.volumes)}; {date.today()}")
    for degrade in args.degrade:
        for r in args.scales:
            methods = ["linear", "cubic", "lanczos"]
            model = bundled_model_path(r)
            if model is not None:
                methods.insert(0, "model")
            report = evaluate(volumes, r, degrade=degrade, methods=methods, device=args.device)
            report["model_file"] = model.name if model is not None else None
            reports.append(report)
            note = f"model: {model.name}" if model is not None else "no bundled model makes this factor"
            print(f"\n**x{r}, {degrade}** ({note})\n")
            print(markdown_rows(report))
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2))


if __name__ == "__main__":
    main()
