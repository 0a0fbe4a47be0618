"""Train the bundled models further on a GPU, with a decaying learning rate.

The bundled models were trained on this project's 2-core CPU at a constant rate (batch 2).
This script trains one family (``--family profile|default``) on one GPU, all factors at
once (one process per factor), in phases: each phase starts from the previous one's
averaged weights with a fresh optimiser, a larger batch and a lower rate (``--phases``),
the usual end of a training run that a constant rate never reaches. Phase 1 starts from
the bundled ``{family}_x{r}.pt`` where there is one, else from scratch. Same recipe
otherwise (``profile_model.toml`` for the profile family, the defaults for the default
family), same four training scans; the held-out scans are evaluated afterwards on the CPU
(``thick_slices.py``, with the results copied into ``src/thinslice/weights``).

The training scans travel as one pickle of ``thinslice.Volume`` objects (made here with
``--pack``), so the GPU machine needs neither the shared data nor SimpleITK (training never
calls it; a stand-in module satisfies the import when it is missing).

    python benchmarks/gpu_train.py --pack .gpu/train_volumes.pkl.gz        # here
    python benchmarks/gpu_train.py --data .gpu/train_volumes.pkl.gz --out DIR   # on the GPU
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import pickle
import subprocess
import sys
import time
import types
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAINING_SCANS = ("abd5mm_crlm1004", "aorta1.5mm_totalseg", "body3mm_totalseg", "limb3mm_sts001")
SHARED = ROOT.parent / "shared" / "data"
#: ``(learning rate, minutes)`` per phase; the batch is --batch throughout.
PHASES = ((1e-3, 3.0), (3e-4, 2.0), (1e-4, 1.5))
CONFIGS = {"profile": ROOT / "benchmarks" / "profile_model.toml"}


def _import_without_itk() -> None:
    if importlib.util.find_spec("SimpleITK") is None:  # the GPU image lacks it; training never calls it
        sys.modules["SimpleITK"] = types.ModuleType("SimpleITK")
    sys.path.insert(0, str(ROOT / "src"))


def pack(path: Path) -> None:
    import thinslice

    volumes = [thinslice.load(SHARED / f"{name}.nii.gz") for name in TRAINING_SCANS]
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb", compresslevel=6) as f:
        pickle.dump(volumes, f)


def train_one(
    family: str, scale: int, data: Path, out: Path, batch: int, phases: list[tuple[float, float]], device: str
) -> None:
    _import_without_itk()
    import torch

    from thinslice.model.checkpoint import load_checkpoint, model_config_of
    from thinslice.model.config import ModelConfig
    from thinslice.training.config import TrainConfig, load_config
    from thinslice.training.loop import train

    torch.backends.cudnn.benchmark = True
    with gzip.open(data, "rb") as f:
        volumes = pickle.load(f)
    source: Path | None = ROOT / "src" / "thinslice" / "weights" / f"{family}_x{scale}.pt"
    if source.exists():
        stored = load_checkpoint(source)
        model_config = model_config_of(stored, source)
        base = TrainConfig.from_dict(stored["train_config"])
    else:  # a factor the family did not have: from scratch, with the family's recipe
        source = None
        model_config, base = load_config(CONFIGS[family]) if family in CONFIGS else (ModelConfig(), TrainConfig())
        model_config = replace(model_config, scale=scale)
    start = source
    for k, (lr, minutes) in enumerate(phases, 1):
        config = replace(base, lr=lr, batch_size=batch, warmup_steps=50 if k == 1 else 0)
        target = out / f"{family}_x{scale}_phase{k}.pt"
        t0 = time.monotonic()
        train(volumes, target, config, model_config, minutes=minutes, seed=k, device=device, progress=False, init=start,
              overwrite=True)  # fmt: skip
        ckpt = load_checkpoint(target)
        seconds, val = time.monotonic() - t0, ckpt["metrics"].get("val_psnr", float("nan"))
        print(f"{family} x{scale} phase {k} lr {lr:g} batch {batch}: {ckpt['step']} steps in {seconds:.0f} s, "
              f"val {val:.3f} dB", flush=True)  # fmt: skip
        start = target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pack", type=Path, help="write the training volumes to this pickle and stop")
    parser.add_argument("--data", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--family", choices=["profile", "default"], default="profile")
    parser.add_argument("--scales", nargs="+", type=int, default=[2, 3, 4, 5, 6])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--phases", nargs="+", default=[f"{lr}:{m}" for lr, m in PHASES], help="LR:MINUTES ...")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a worker: this factor only
    args = parser.parse_args()
    if args.pack:
        sys.path.insert(0, str(ROOT / "src"))
        pack(args.pack)
        return
    phases = [(float(p.split(":")[0]), float(p.split(":")[1])) for p in args.phases]
    args.out.mkdir(parents=True, exist_ok=True)
    if args.one is not None:
        train_one(args.family, args.one, args.data, args.out, args.batch, phases, args.device)
        return
    common = ["--family", args.family, "--data", str(args.data), "--out", str(args.out),
              "--batch", str(args.batch), "--device", args.device]  # fmt: skip
    workers = [subprocess.Popen([sys.executable, __file__, "--one", str(r), *common, "--phases", *args.phases])
               for r in args.scales]  # fmt: skip
    codes = [w.wait() for w in workers]
    if any(codes):
        raise SystemExit(f"worker exit codes {codes}")


if __name__ == "__main__":
    main()
