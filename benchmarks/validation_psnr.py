"""The training-time validation PSNR of the bundled checkpoints, as MODEL.md quotes it.

Each checkpoint is scored as its training run scored it: on the held-back columns of the
four training scans (``val_fraction`` of each scan's last in-plane columns, never trained
on), every row of the band predicted from its coarser copy (``V[::r]``, or for the
thick-slice families a box average over ``r`` slices), by the averaged weights the
checkpoint ships; the base interpolation beside it.

    OMP_NUM_THREADS=2 python benchmarks/validation_psnr.py
"""

from __future__ import annotations

from pathlib import Path

import torch

import thinslice
from thinslice.model.checkpoint import load_checkpoint, model_config_of
from thinslice.training.config import TrainConfig
from thinslice.training.data import prepare_volumes
from thinslice.training.objective import DistillationModel
from thinslice.training.validation import Validator

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
TRAINING = ("abd5mm_crlm1004", "aorta1.5mm_totalseg", "body3mm_totalseg", "limb3mm_sts001")
WEIGHTS = ROOT / "src" / "thinslice" / "weights"


def main() -> None:
    volumes = [thinslice.load(SHARED / f"{name}.nii.gz") for name in TRAINING]
    print("| checkpoint | step | validation PSNR (dB) | base interpolation (dB) |")
    print("| --- | --- | --- | --- |")
    for family in ("profile", "profile_soft", "default"):
        for r in range(2, 7):
            path = WEIGHTS / f"{family}_x{r}.pt"
            ckpt = load_checkpoint(path)
            model_config = model_config_of(ckpt, path)
            config = TrainConfig.from_dict(ckpt.get("train_config") or {})
            validator = Validator(
                prepare_volumes(volumes, model_config, config.val_fraction), model_config, config.profile
            )
            model = DistillationModel(model_config, config)
            model.load_weights(ckpt["weights"])
            score = validator(model.eval(), torch.device("cpu"))
            print(f"| `{path.name}` | {ckpt['step']} | {score:.2f} | {validator.baseline:.2f} |", flush=True)


if __name__ == "__main__":
    main()
