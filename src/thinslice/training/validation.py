"""Validation during training: PSNR on held-back columns, against the base interpolation."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from thinslice.model.config import ModelConfig
from thinslice.model.inference import VIEWS, synthesize_views
from thinslice.model.nets import interpolate_slices
from thinslice.training.data import ObservedVolume, coarser_copy, fit_slices
from thinslice.training.objective import DistillationModel


class Validator:
    """PSNR on held-back columns: observed slices predicted from ``V[::r]`` (coarser level).

    Never touches the unobserved slices a user would evaluate on. Also reports the
    classical base interpolation on the same slices, the floor the model must beat.
    """

    def __init__(self, volumes: list[ObservedVolume], model_config: ModelConfig, profile: bool = False) -> None:
        self.r = model_config.scale
        self.model_config = model_config
        self.items: list[tuple[Tensor, Tensor]] = []  # (coarser copy, observed band)
        for vol in volumes:
            d, h, w = vol.data.shape
            if vol.train_w >= w:
                continue
            n = fit_slices(vol.data.shape[0], d, self.r)
            n = min(n, self.r * 16 + 1)
            y0 = max(0, (h - 192) // 2)
            band = vol.data[:n, y0 : y0 + 192, vol.train_w :]
            self.items.append((coarser_copy(band, self.r, profile, dim=0).contiguous(), band))
        self.baseline = self._score(None) if self.items else float("nan")

    def _score(self, model: DistillationModel | None, device: torch.device | None = None) -> float:
        sq, count = 0.0, 0
        for low, target in self.items:
            if model is None:
                pred = interpolate_slices(low, self.r, self.model_config.base, dim=0)
            else:
                views = [v for v in VIEWS if (model.axial if v == "axial" else model.sr) is not None]
                fused, _ = synthesize_views(
                    low,
                    self.r,
                    model.axial,
                    model.sr,
                    views=views,
                    base=self.model_config.base,
                    fusion=self.model_config.fusion,
                    batch_size=16,
                    device=device or "cpu",
                    keep_acquired=not self.model_config.sharpen,
                )
                assert fused is not None  # no finish step: the fused volume is returned
                pred = fused
            keep = torch.ones(target.shape[0], dtype=torch.bool)
            if not self.model_config.sharpen:  # a sharpening model is scored on every row
                keep[:: self.r] = False
            diff = pred.clamp(0, 1)[keep].double() - target[keep].double()
            sq += float((diff**2).sum())
            count += diff.numel()
        return float("inf") if sq == 0 else 10 * math.log10(count / sq)

    def __call__(self, model: DistillationModel, device: torch.device) -> float:
        if not self.items:
            return float("nan")
        was_training = model.training
        model.eval()
        try:
            return self._score(model, device)
        finally:
            model.train(was_training)
