"""Ablation of the method at a fixed CPU budget: which parts earn their keep.

For every scan in ../shared/data: trim to r*k+1 slices and keep every r-th slice (the
observed thick scan). Train one model per variant on all observed scans together, for the
same wall-clock minutes each, with the same seed; then run the evaluation protocol
(``thinslice.evaluation.protocol``, decimate) on the original scans, so each model synthesizes
exactly the slices it never saw. Cubic and linear are measured in the same run.

Variants: full; no_consistency; no_second_level; no_wavelet; memory; axial_only;
sr_only; no_smore (without the in-plane SMORE training of the through-plane network).

    python benchmarks/ablation.py --scale 2 --minutes 5 --parallel 2 --json ablation_x2.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

from thinslice.evaluation.degrade import decimate
from thinslice.evaluation.metrics import METRIC_NAMES
from thinslice.evaluation.protocol import evaluate
from thinslice.grid import usable_slices
from thinslice.io import load, save

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

VARIANTS: dict[str, dict[str, Any]] = {
    "full": {},
    "no_consistency": {"train": {"weights": {"consistency": 0.0, "consistency_level2": 0.0}}},
    "no_second_level": {"train": {"second_level": False}},
    "no_wavelet": {"train": {"wavelet": False}},
    "memory": {"model": {"memory": True}},
    "axial_only": {"train": {"networks": "axial"}},
    "sr_only": {"train": {"networks": "sr"}},
    "no_smore": {"train": {"smore": False}},
}


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def to_toml(table: dict[str, Any], prefix: str = "") -> str:
    """Minimal TOML writer for nested tables of scalars and lists."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    scalars = [f"{k} = {value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    text = (f"[{prefix}]\n" if prefix and scalars else "") + "".join(line + "\n" for line in scalars)
    for k, v in table.items():
        if isinstance(v, dict):
            text += "\n" + to_toml(v, f"{prefix}.{k}" if prefix else k)
    return text


def observed_scans(folder: Path, r: int) -> list[Path]:
    """Write the observed (decimated) copy of every shared scan; return the originals."""
    originals = sorted(SHARED.glob("*.nii.gz"))
    for path in originals:
        volume = load(path)
        volume = volume.with_data(volume.data[: usable_slices(volume.num_slices, r)])
        save(decimate(volume, r), folder / path.name)
    return originals


def train_variant(name: str, cfg: dict[str, Any], args: argparse.Namespace, work: Path) -> Path:
    toml_path = work / f"{name}.toml"
    toml_path.write_text(to_toml(cfg))
    model = work / f"{name}.pt"
    cmd = [
        sys.executable,
        "-m",
        "thinslice.cli",
        "-q",
        "train",
        "-i",
        str(work / "observed"),
        "-o",
        str(model),
        "--scale",
        str(args.scale),
        "--minutes",
        str(args.minutes),
        "--config",
        str(toml_path),
        "--seed",
        str(args.seed),
        "--device",
        args.device,
        "--overwrite",
    ]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    print(f"  trained {name} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--config", type=Path, help="base TOML every variant starts from")
    parser.add_argument("--parallel", type=int, default=2, help="variants trained at once")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per training process")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--keep", type=Path, help="copy the trained models into this folder")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    base = tomllib.loads(args.config.read_text()) if args.config else {}
    names = [n.strip() for n in args.variants.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "observed").mkdir()
        originals = observed_scans(work / "observed", args.scale)
        with ThreadPoolExecutor(args.parallel) as pool:
            futures = {n: pool.submit(train_variant, n, merge(base, VARIANTS[n]), args, work) for n in names}
            models = {n: f.result() for n, f in futures.items()}
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for m in models.values():
                (args.keep / m.name).write_bytes(m.read_bytes())
        reports = {"cubic/linear": evaluate(originals, args.scale, degrade="decimate", methods=["cubic", "linear"])}
        for n, m in models.items():
            reports[n] = evaluate(
                originals, args.scale, degrade="decimate", methods=["model"], model=m, device=args.device
            )
    print(
        f"\n**Ablation x{args.scale}, decimate, {args.minutes:g} min of training per variant "
        f"({args.threads} thread(s), {args.parallel} at once), seed {args.seed}, {date.today()}**\n"
    )
    volumes = [p.name.removesuffix(".nii.gz") for p in originals]
    rows = []
    for key, report in reports.items():
        for method, mean in report["mean"].items():
            label = method if key == "cubic/linear" else key
            per = {r["volume"]: r["psnr_synth"] for r in report["rows"] if r["method"] == method}
            rows.append((label, mean, per))
    print("| variant | PSNR synth (mean) | SSIM ax | SSIM cor | SSIM sag | " + " | ".join(volumes) + " |")
    print("| --- " * (5 + len(volumes)) + "|")
    for label, mean, per in rows:
        cells = [f"{mean['psnr_synth']:.2f}", *(f"{mean[k]:.4f}" for k in METRIC_NAMES[3:])]
        cells += [f"{per[v]:.2f}" for v in volumes]
        print(f"| {label} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(
            json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "reports": reports}, indent=2)
        )


if __name__ == "__main__":
    main()
