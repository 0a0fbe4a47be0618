"""Does more capacity help the through-plane network? A probe on the CPU, not a product model.

The limb misses issue 10's 2 dB goal, and fine-tuning on the limb itself gained nothing
(``limb_ceiling.py``), which leaves capacity as the open question. Training a larger
network from scratch needs a GPU; this probe instead grows the bundled ``profile_x{r}``
network without changing what it computes: ``--extra`` residual groups are added after its
own, each starting as the identity (its closing convolution zero, so ``x + body(x) = x``),
and then both the grown network and an unchanged copy (the control) are fine-tuned with
the recipe of the bundled profile models (``profile_soft_finetune.toml``) for the same
``--minutes`` on the four training scans. Any difference on the held-out scans is what the
added capacity learned in that time.

    OMP_NUM_THREADS=1 python benchmarks/deeper.py grow --scale 2 --extra 2 -o /tmp/deep_init.pt
    OMP_NUM_THREADS=1 python benchmarks/deeper.py train --init /tmp/deep_init.pt --minutes 25 -o /tmp/deep.pt
    OMP_NUM_THREADS=1 python benchmarks/deeper.py train --init src/thinslice/weights/profile_x2.pt \\
        --minutes 25 -o /tmp/ctrl.pt
    OMP_NUM_THREADS=1 python benchmarks/softness.py eval --scale 2 --softness 0 --model ctrl=/tmp/ctrl.pt \\
        deep=/tmp/deep.pt
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from softness import SHARED, TRAINING

import thinslice
from thinslice.model.checkpoint import load_checkpoint, model_config_of, save_checkpoint
from thinslice.model.nets import build_networks
from thinslice.training.config import load_config
from thinslice.training.loop import train

ROOT = Path(__file__).resolve().parents[1]


def grow(args: argparse.Namespace) -> None:
    source = ROOT / "src" / "thinslice" / "weights" / f"profile_x{args.scale}.pt"
    stored = load_checkpoint(source)
    config = model_config_of(stored, source)
    deeper = replace(config, sr_groups=config.sr_groups + args.extra)
    _, sr = build_networks(deeper, "sr")
    assert sr is not None
    old = stored["weights"]["sr"]
    closing = f"body.{config.sr_groups}."  # the body's own closing conv moves behind the new groups
    state = {
        (f"body.{deeper.sr_groups}." + k[len(closing) :] if k.startswith(closing) else k): v for k, v in old.items()
    }
    new = sr.state_dict()
    for g in range(config.sr_groups, deeper.sr_groups):  # each new group starts as the identity
        last = f"body.{g}.body.{config.sr_blocks}."
        fresh = {k: v for k, v in new.items() if k.startswith(f"body.{g}.")}
        state.update({k: torch.zeros_like(v) if k.startswith(last) else v for k, v in fresh.items()})
    sr.load_state_dict(state)
    _, original = build_networks(config, "sr")
    assert original is not None
    original.load_state_dict(old)
    probe = torch.rand(2, 1, 12, 40)
    with torch.no_grad():
        gap = float((sr(probe) - original(probe)).abs().max())
    assert gap < 1e-5, f"the grown network computes something else ({gap})"
    weights = {**stored["weights"], "sr": sr.state_dict()}
    save_checkpoint(args.output, weights=weights, model_config=deeper, networks=stored["networks"],
                    train_config=stored.get("train_config"))  # fmt: skip
    params = sum(p.numel() for p in sr.parameters())
    print(f"{args.output}: sr_groups {config.sr_groups} -> {deeper.sr_groups}, {params} parameters, same output")


def finetune(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    _, config = load_config(args.config)
    stored = load_checkpoint(args.init)
    model_config = model_config_of(stored, args.init)
    volumes = [thinslice.load(SHARED / f"{name}.nii.gz") for name in TRAINING]
    train(volumes, args.output, config, model_config, minutes=args.minutes, seed=1, device="cpu", progress=False,
          init=args.init)  # fmt: skip
    print(f"{args.output}: {load_checkpoint(args.output)['step']} steps; {np.round(args.minutes, 1)} minutes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("grow")
    g.add_argument("--scale", type=int, default=2)
    g.add_argument("--extra", type=int, default=2, help="residual groups to add")
    g.add_argument("-o", "--output", type=Path, required=True)
    t = sub.add_parser("train")
    t.add_argument("--init", type=Path, required=True)
    t.add_argument("--config", type=Path, default=ROOT / "benchmarks" / "profile_soft_finetune.toml")
    t.add_argument("--minutes", type=float, required=True)
    t.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    grow(args) if args.command == "grow" else finetune(args)


if __name__ == "__main__":
    main()
