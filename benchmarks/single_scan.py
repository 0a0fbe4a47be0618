"""Single-scan self-supervised benchmark: decimate a scan, train on it, compare with splines.

Keeps every r-th slice of each volume (the "observed" thick-slice scan), trains thinslice on
that observed scan alone for a CPU budget, upsamples it x r and compares the synthesized
slices with the removed originals. Cubic = ``scipy.interpolate.make_interp_spline(k=3)``
through the kept slices. Metrics on HU clipped to [-1024, 3072] scaled to [0, 1]: PSNR
over the removed slices; SSIM (scikit-image, data_range=1) averaged over the removed axial
slices, and over all coronal and all sagittal images.

    python benchmarks/single_scan.py -i ../shared/data/limb3mm_sts002.nii.gz --minutes 3
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from scipy.interpolate import make_interp_spline
from skimage.metrics import structural_similarity

from thinslice.io import load as _read_volume
from thinslice.model.config import ModelConfig
from thinslice.model.inference import Synthesizer, load_model
from thinslice.training.config import TrainConfig, load_config
from thinslice.training.loop import train
from thinslice.volume import Volume

HU_MIN, HU_MAX = -1024.0, 3072.0


def norm(x: np.ndarray) -> np.ndarray:
    return (np.clip(x.astype(np.float64), HU_MIN, HU_MAX) - HU_MIN) / (HU_MAX - HU_MIN)


def metrics(pred: np.ndarray, truth: np.ndarray, r: int) -> dict[str, float]:
    """PSNR on removed slices, SSIM per plane; both volumes ``(N, H, W)`` HU."""
    p, t = norm(pred), norm(truth)
    removed = np.ones(len(t), bool)
    removed[::r] = False
    mse = np.mean((p[removed] - t[removed]) ** 2)
    ssim = lambda a, b: structural_similarity(a, b, data_range=1.0)  # noqa: E731
    return {
        "psnr": 10 * np.log10(1.0 / mse),
        "ssim_ax": float(np.mean([ssim(p[i], t[i]) for i in np.flatnonzero(removed)])),
        "ssim_cor": float(np.mean([ssim(p[:, i], t[:, i]) for i in range(t.shape[1])])),
        "ssim_sag": float(np.mean([ssim(p[:, :, i], t[:, :, i]) for i in range(t.shape[2])])),
    }


def spline(observed: np.ndarray, r: int, k: int) -> np.ndarray:
    x = np.arange(len(observed)) * r
    return make_interp_spline(x, observed.astype(np.float64), k=k, axis=0)(np.arange(x[-1] + 1)).astype(np.float32)


def decimate(vol: Volume, r: int) -> tuple[Volume, Volume, np.ndarray]:
    """``(volume, observed = every r-th slice, truth = the slices the observed spans)``."""
    n = (vol.num_slices - 1) // r * r + 1
    observed = vol.with_data(vol.data[:n:r].copy(), slice_spacing=vol.slice_spacing * r)
    return vol, observed, vol.data[:n].astype(np.float32)


def fit(observed: list[Volume], ckpt: Path, train_cfg: TrainConfig, model_cfg: ModelConfig, kwargs: dict) -> float:
    """Train on the observed volumes; returns seconds."""
    t0 = time.monotonic()
    train(observed, ckpt, train_cfg, model_cfg, progress=sys.stderr.isatty(), overwrite=True, **kwargs)
    return time.monotonic() - t0


def evaluate(
    synth: Synthesizer, observed: Volume, truth: np.ndarray, r: int, views: bool
) -> tuple[dict[str, dict[str, float]], float, np.ndarray]:
    """Scores of the model (and optionally of each view and other fusions) and the splines."""
    t0 = time.monotonic()
    pred, spread = synth.upsample(observed.data, return_uncertainty=True)
    t_infer = time.monotonic() - t0
    assert np.array_equal(pred[::r], observed.data.astype(np.float32))
    rows = {"thinslice": metrics(pred, truth, r)}
    if views:
        for view in synth.views:
            rows[f"  {view} only"] = metrics(synth.upsample(observed.data, views=view), truth, r)
        if len(synth.views) == 3:
            pair = synth.upsample(observed.data, views="coronal,sagittal")
            rows["  coronal+sagittal"] = metrics(pair, truth, r)
            median = Synthesizer(synth.axial, synth.sr, replace(synth.config, fusion="median"), synth.device)
            rows["  median fusion"] = metrics(median.upsample(observed.data), truth, r)
    rows["cubic"] = metrics(spline(observed.data, r, 3), truth, r)
    rows["linear"] = metrics(spline(observed.data, r, 1), truth, r)
    return rows, t_infer, spread


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-i", "--input", type=Path, nargs="+", default=[Path("../shared/data/limb3mm_sts002.nii.gz")])
    ap.add_argument("--joint", action="store_true", help="one model trained on all inputs (else one per scan)")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", type=Path, help="TOML with [model] and [train] tables")
    ap.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="override config fields, e.g. train.lr=3e-4 model.base=cubic",
    )
    ap.add_argument("--model", type=Path, help="keep the trained checkpoint here")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--views", action="store_true", help="also score each view alone")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    if args.verbose:
        logging.getLogger("thinslice.training").setLevel(logging.DEBUG)
    if args.threads:
        torch.set_num_threads(args.threads)

    model_cfg, train_cfg = load_config(args.config) if args.config else (ModelConfig(), TrainConfig())
    model_cfg = replace(model_cfg, scale=args.scale)
    for item in args.set:
        key, value = item.split("=", 1)
        table, name = key.split(".", 1)
        target = model_cfg if table == "model" else train_cfg
        current = getattr(target, name)
        typed = value.lower() == "true" if isinstance(current, bool) else type(current)(value)
        if table == "model":
            model_cfg = replace(model_cfg, **{name: typed})
        else:
            train_cfg = replace(train_cfg, **{name: typed})

    r = args.scale
    cases = [decimate(_read_volume(path), r) for path in args.input]
    for vol, observed, _ in cases:
        print(
            f"{vol.name}: {vol.data.shape} -> observed {observed.data.shape} at {observed.slice_spacing:.2f} mm, x{r}"
        )
    train_args = dict(steps=args.steps, minutes=args.minutes, seed=args.seed, device=args.device)
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.model or Path(tmp) / "model.pt"
        if args.joint:
            t_train = fit([c[1] for c in cases], ckpt, train_cfg, model_cfg, train_args)
            print(f"one model trained on all {len(cases)} observed volumes for {t_train:.0f} s")
        for vol, observed, truth in cases:
            if not args.joint:
                t_train = fit([observed], ckpt, train_cfg, model_cfg, train_args)
            synth = load_model(ckpt, device=args.device)
            rows, t_infer, spread = evaluate(synth, observed, truth, r, args.views)
            print(
                f"\n{vol.name}: train {t_train:.0f} s, inference {t_infer:.1f} s, "
                f"mean view spread {spread[spread > 0].mean():.1f} HU"
            )
            print(f"{'method':<18}{'PSNR':>8}{'SSIM ax':>9}{'SSIM cor':>9}{'SSIM sag':>9}")
            for name, m in rows.items():
                print(f"{name:<18}{m['psnr']:8.3f}{m['ssim_ax']:9.4f}{m['ssim_cor']:9.4f}{m['ssim_sag']:9.4f}")
            model, cubic = rows["thinslice"], rows["cubic"]
            wins = sum(model[k] > cubic[k] for k in ("ssim_ax", "ssim_cor", "ssim_sag"))
            summary.append((vol.name, model["psnr"], cubic["psnr"], rows["linear"]["psnr"], wins))
    if len(summary) > 1:
        print(f"\n{'scan':<24}{'model':>8}{'cubic':>8}{'linear':>8}{'dPSNR':>8}  SSIM wins vs cubic")
        for name, psnr_m, psnr_c, psnr_l, wins in summary:
            print(f"{name:<24}{psnr_m:8.3f}{psnr_c:8.3f}{psnr_l:8.3f}{psnr_m - psnr_c:+8.3f}  {wins}/3")
    return 0


if __name__ == "__main__":
    sys.exit(main())
