"""Would 3-D context lift the held-out limb? An oracle diagnostic, never a quality claim.

The limb misses issue 10's 2 dB goal under the profile protocol (BENCHMARKS.md), and
neither more training on the scan itself (``limb_ceiling.py``) nor a wider or deeper
through-plane network moves it. The untested idea is context: each through-plane network
sees one coronal or sagittal plane, and the two views are only averaged. This script asks
whether anything local in 3-D is left to recover once the bundled model has run.

A small refiner (five 3-D convolutions, residual on the bundled model's output, inputs
the model's and Lanczos's slices) is trained **on the truth of the held-out limb itself**:
on one half of its columns, scored on the other half (a gap as wide as its reach between
them), and the other way round, so that every voxel is scored by a refiner that never saw
it. ``--kernel 3 3 3`` sees 3-D context; ``--kernel 3 1 3`` sees one coronal plane only,
the control that tells context from the extra training on the very scan. ``--base
lanczos`` refines Lanczos alone, without the model: how far the refiner itself reaches
when it has something to learn. ``--scan chest1mm_lidc0314`` runs the same on the chest.
Trained on the scan it is scored on, it bounds what local context could add; supervised
on thin truth, it is nothing the self-supervised product could train.

    OMP_NUM_THREADS=1 python benchmarks/limb_context.py --kernel 3 3 3 --minutes 8
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from thick_slices import held_out_thick
from torch import nn

import thinslice
from thinslice.evaluation.metrics import psnr, scale_hu

LAYERS, WIDTH, GAP = 5, 24, 8


def refiner(kernel: tuple[int, int, int], channels: int) -> nn.Module:
    pad = tuple(k // 2 for k in kernel)
    layers: list[nn.Module] = [nn.Conv3d(channels, WIDTH, kernel, padding=pad), nn.ReLU()]
    for _ in range(LAYERS - 2):
        layers += [nn.Conv3d(WIDTH, WIDTH, kernel, padding=pad), nn.ReLU()]
    last = nn.Conv3d(WIDTH, 1, kernel, padding=pad)
    nn.init.zeros_(last.weight)  # starts as the bundled model's output
    nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


def fit(net: nn.Module, inputs: torch.Tensor, truth: torch.Tensor, minutes: float, seed: int) -> None:
    """Random 16 x 48 x 48 patches of ``inputs`` (C, D, H, W; the first is refined) against
    ``truth`` (D, H, W)."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    _, d, h, w = inputs.shape
    pd, ph, pw = min(16, d), min(48, h), min(48, w)
    deadline, step = time.monotonic() + 60 * minutes, 0
    while time.monotonic() < deadline:
        batch_in, batch_truth = [], []
        for _ in range(4):
            z, y, x = (int(torch.randint(0, n - p + 1, (1,), generator=g)) for n, p in [(d, pd), (h, ph), (w, pw)])
            batch_in.append(inputs[:, z : z + pd, y : y + ph, x : x + pw])
            batch_truth.append(truth[z : z + pd, y : y + ph, x : x + pw])
        x_in, target = torch.stack(batch_in), torch.stack(batch_truth)[:, None]
        loss = torch.mean((x_in[:, :1] + net(x_in) - target) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step == 2000:
            for group in opt.param_groups:
                group["lr"] = 3e-4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--kernel", type=int, nargs=3, default=[3, 3, 3])
    parser.add_argument("--minutes", type=float, default=6.0, help="per half")
    parser.add_argument("--scan", default="limb3mm_sts002")
    parser.add_argument(
        "--base",
        choices=["model", "lanczos"],
        default="model",
        help="lanczos: refine Lanczos alone, without the model (the refiner's own reach)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    truth, thick = held_out_thick(args.scan, args.scale)
    model = scale_hu(thinslice.upsample(thick, args.scale, method="model", device="cpu").data.astype(np.float32))
    lanczos = scale_hu(thinslice.upsample(thick, args.scale, method="lanczos").data.astype(np.float32))
    inputs = torch.from_numpy(np.stack([model, lanczos] if args.base == "model" else [lanczos]))
    target = torch.from_numpy(truth)
    w = truth.shape[2]
    refined = inputs[0].numpy().copy()
    kernel = tuple(args.kernel)
    for fold, (train, test) in enumerate([(slice(0, w // 2 - GAP), slice(w // 2, w)),
                                          (slice(w // 2 + GAP, w), slice(0, w // 2))]):  # fmt: skip
        torch.manual_seed(fold)
        net = refiner(kernel, inputs.shape[0])  # type: ignore[arg-type]
        fit(net, inputs[..., train], target[..., train], args.minutes, seed=fold)
        with torch.no_grad():
            refined[..., test] = (inputs[:1, ..., test] + net(inputs[None, ..., test])[0]).numpy()[0]
    row = {
        "scan": args.scan, "r": args.scale, "kernel": kernel, "base": args.base, "minutes_per_half": args.minutes,
        "lanczos": round(psnr(truth, lanczos), 2), "model": round(psnr(truth, model), 2),
        "refined": round(psnr(truth, refined), 2),
    }  # fmt: skip
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
