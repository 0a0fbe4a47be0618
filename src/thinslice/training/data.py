"""Training data: the observed volumes, normalised, and random crops of them.

Each step draws crops of ``r^2*k+1`` slices (HU window scaled to [0, 1], random in-plane
flips) from one volume, the coronal and sagittal lines the through-plane network sees,
and (SMORE, beyond the paper) axial images degraded along one in-plane axis to look like
the slice axis. A band of each volume's last columns is held back for validation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from thinslice import grid
from thinslice.errors import InputError
from thinslice.model.config import ModelConfig
from thinslice.model.inference import normalize
from thinslice.profile import BELL_BOX, profile_degrade_torch, smore_pair
from thinslice.training.config import TrainConfig
from thinslice.volume import Volume, require_plausible_thickness


@dataclass
class ObservedVolume:
    """A training volume: normalised voxels and what SMORE needs to know.

    Attributes:
        data: ``(D, H, W)`` float32 in [0, 1].
        train_w: columns ``[0, train_w)`` are for training; the rest is held back.
        spacing: ``(slice, H, W)`` spacing in mm, or None when unknown (plain arrays).
        name: label for logs.
        thickness: the slice thickness over the slice spacing (1: contiguous slices).
    """

    data: Tensor
    train_w: int
    spacing: tuple[float, float, float] | None
    name: str
    thickness: float = 1.0


def prepare_volumes(
    volumes: Sequence[Volume | np.ndarray], model_config: ModelConfig, val_fraction: float
) -> list[ObservedVolume]:
    """Normalise the volumes and decide each one's held-back validation band."""
    if not volumes:
        raise InputError("training needs at least one volume")
    prepared = []
    for i, vol in enumerate(volumes):
        if isinstance(vol, Volume):
            arr, name = vol.data, vol.name
            sp_w, sp_h = vol.geometry.inplane_spacing  # ITK order: W axis first
            spacing: tuple[float, float, float] | None = (vol.slice_spacing, sp_h, sp_w)
            require_plausible_thickness(vol)
            thickness = vol.thickness / vol.slice_spacing
        else:
            arr, name, spacing, thickness = np.asarray(vol), f"volume{i}", None, 1.0
        if arr.ndim != 3:
            raise InputError(f"{name}: expected a (D, H, W) volume, got shape {arr.shape}")
        d, h, w = arr.shape
        if d < model_config.scale + 1:
            raise InputError(
                f"{name} has {d} slices; training at scale {model_config.scale} needs at least {model_config.scale + 1}"
            )
        if min(h, w) < 8:
            raise InputError(f"{name}: in-plane size {h}x{w} is too small (need 8x8)")
        band = max(8, round(val_fraction * w)) if val_fraction > 0 else 0
        train_w = w - band if w - band >= 16 else w
        data = normalize(arr, model_config.hu_min, model_config.hu_max)
        prepared.append(ObservedVolume(data, train_w, spacing, name, thickness))
    return prepared


@dataclass
class Batch:
    """One step's inputs (all float32 in [0, 1]).

    Attributes:
        crop: ``(B, n, h, w)`` observed crops, ``n = r*j+1``.
        lines_h: coronal rows the through-plane network processes ``(L,)``.
        lines_w: sagittal columns ``(L,)``.
        gap0: first gap of the block used for the consistency terms.
        smore_in: ``(S, 1, m, x)`` degraded axial images or None.
        smore_target: ``(S, 1, r*(m-1)+1, x)`` or None.
    """

    crop: Tensor
    lines_h: Tensor
    lines_w: Tensor
    gap0: int
    smore_in: Tensor | None = None
    smore_target: Tensor | None = None

    def to(self, device: torch.device) -> Batch:
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device, non_blocking=True)

        return Batch(
            self.crop.to(device),
            self.lines_h,
            self.lines_w,
            self.gap0,
            move(self.smore_in),
            move(self.smore_target),
        )


def fit_slices(wanted: int, available: int, r: int) -> int:
    """Largest ``n <= min(wanted, available)`` with ``n = r*j + 1``."""
    n = min(wanted, available)
    return grid.usable_slices(n, r)


def degrade_inplane(images: Tensor, ratio: float, scale: int, offset: float = 0.0) -> tuple[Tensor, Tensor] | None:
    """SMORE: make an in-plane axis look like the slice axis.

    The last axis of ``images`` ``(S, h, x)`` (spacing p) is blurred with a Gaussian of
    FWHM ``ratio`` pixels (``ratio = slice spacing / (r * p)``) and resampled every
    ``ratio`` pixels, giving the target at spacing sz/r; every r-th of its samples is the
    input at spacing sz.

    Returns:
        ``(input (S, 1, m, h), target (S, 1, r*(m-1)+1, h))`` with the degraded axis as the
        slice axis (dim -2), or None when the image is too short.
    """
    s, h, x = images.shape
    n_target = int(math.floor((x - 1 - offset) / ratio)) + 1
    n_target = grid.usable_slices(n_target, scale)
    if n_target < scale + 1:
        return None
    sigma = ratio / 2.355
    radius = max(1, int(math.ceil(3 * sigma)))
    taps = torch.arange(-radius, radius + 1, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = (kernel / kernel.sum()).view(1, 1, -1)
    flat = images.reshape(s * h, 1, x)
    blurred = F.conv1d(F.pad(flat, (radius, radius), mode="replicate"), kernel).view(s, h, x)
    pos = offset + ratio * torch.arange(n_target, dtype=images.dtype)
    lo = pos.floor().long().clamp(max=x - 2)
    frac = pos - lo
    target = blurred[..., lo] * (1 - frac) + blurred[..., lo + 1] * frac  # (S, h, n)
    target = target.transpose(1, 2).unsqueeze(1).contiguous()  # (S, 1, n, h)
    return target[:, :, ::scale].contiguous(), target


class CropSampler:
    """Random training crops of the observed volumes (one volume per step).

    Args:
        volumes: prepared training volumes.
        model_config: scale.
        config: crop sizes, batch size, consistency lines, SMORE flag.
        generator: the only randomness source (its state goes into checkpoints).
    """

    def __init__(
        self,
        volumes: list[ObservedVolume],
        model_config: ModelConfig,
        config: TrainConfig,
        generator: torch.Generator,
    ) -> None:
        self.volumes = volumes
        self.r = model_config.scale
        self.size, self.slices = config.crop_for(self.r)
        self.config = config
        self.generator = generator
        voxels = torch.tensor([float(v.data[:, :, : v.train_w].numel()) for v in volumes])
        self.weights = voxels / voxels.sum()

    def _randint(self, high: int) -> int:
        return int(torch.randint(0, max(1, high), (1,), generator=self.generator))

    def sample(self) -> Batch:
        g, r = self.generator, self.r
        vol = self.volumes[int(torch.multinomial(self.weights, 1, generator=g))]
        d, h, _ = vol.data.shape
        n = fit_slices(self.slices, d, r)
        ch, cw = min(self.size, h), min(self.size, vol.train_w)
        crops = []
        for _ in range(self.config.batch_size):
            for _attempt in range(4):  # avoid crops of pure air
                z, y = self._randint(d - n + 1), self._randint(h - ch + 1)
                x = self._randint(vol.train_w - cw + 1)
                crop = vol.data[z : z + n, y : y + ch, x : x + cw]
                if float(crop.std()) > 0.01:
                    break
            flips = torch.rand(2, generator=g)
            if flips[0] < 0.5:
                crop = crop.flip(1)
            if flips[1] < 0.5:
                crop = crop.flip(2)
            crops.append(crop)
        crop = torch.stack(crops).contiguous()
        lines = self.config.consistency_lines
        lines_h = torch.randperm(ch, generator=g)[: min(lines, ch)].sort().values
        lines_w = torch.randperm(cw, generator=g)[: min(lines, cw)].sort().values
        gap0 = self._randint(n - 1 - min(n - 1, self.config.consistency_gaps) + 1)
        batch = Batch(crop, lines_h, lines_w, gap0)
        if self.config.smore and vol.spacing is not None:
            axis = int(torch.randint(0, 2, (1,), generator=g))  # 0: degrade W, 1: degrade H
            pixel = vol.spacing[2 - axis]
            ratio = vol.spacing[0] / (r * pixel)
            if self.config.profile:
                # acquisition model: thin box `step` pixels at spacing `step`, thick box as wide
                # as the scan's slices are thick at spacing r*step (step at least one pixel:
                # finer than the pixels is not known)
                count = self.config.smore_images
                which = torch.randint(0, crop.shape[0], (count,), generator=g)
                picks = torch.randint(0, n, (count,), generator=g)
                images = crop[which, picks]
                if axis == 1:
                    images = images.transpose(1, 2)
                step = max(1.0, ratio)
                offset = float(torch.rand(1, generator=g)) * step
                soft = None
                thickness = vol.thickness
                if self.config.profile_softness > 0:  # a smoother slice profile than a box, this step
                    lo, hi = self.config.profile_softness_min, self.config.profile_softness
                    drawn = lo + float(torch.rand(1, generator=g)) * (hi - lo)
                    soft = drawn * vol.thickness * r * step
                if self.config.profile_bell > 0 and float(torch.rand(1, generator=g)) < self.config.profile_bell:
                    thickness, soft = BELL_BOX * vol.thickness, vol.thickness * r * step  # a bell this step
                pair = smore_pair(images, step, r, offset, thickness=thickness, thick_softness=soft)
                if pair is not None:
                    batch.smore_in, batch.smore_target = pair
            elif ratio >= 1.0:
                count = self.config.smore_images
                which = torch.randint(0, crop.shape[0], (count,), generator=g)
                picks = torch.randint(0, n, (count,), generator=g)
                images = crop[which, picks]  # (S, ch, cw)
                if axis == 1:
                    images = images.transpose(1, 2)
                offset = float(torch.rand(1, generator=g)) * min(ratio, 1.0)
                pair = degrade_inplane(images, ratio, r, offset)
                if pair is not None:
                    batch.smore_in, batch.smore_target = pair
        return batch


def coarser_copy(vol: Tensor, r: int, profile: bool, dim: int = 1) -> Tensor:
    """The crop one level coarser along ``dim``: ``V[::r]``, or (``profile``) its slices
    averaged over a box r slices wide at the same positions (the acquisition model)."""
    if not profile:
        return vol[(slice(None),) * dim + (slice(None, None, r),)]
    n = vol.shape[dim]
    return profile_degrade_torch(vol, 1.0, float(r), float(r), count=(n - 1) // r + 1, dim=dim)
