"""Self-supervised training by incremental cross-view mutual distillation.

Fang et al., "Incremental Cross-view Mutual Distillation for Self-supervised Medical CT
Synthesis", CVPR 2022. Each step, on random crops ``V`` of the observed volumes
(``r^2*k+1`` slices, HU window scaled to [0, 1], random in-plane flips):

1. reconstruction: both networks predict ``V`` from ``V[::r]`` (L1 + wavelet);
2. SMORE (beyond the paper): the through-plane network restores axial images degraded
   along one in-plane axis to the slice spacing;
3. consistency: both networks applied to ``V`` itself must agree on the unobserved slices
   at spacing sz/r (axial vs coronal, axial vs sagittal; only the best-agreeing fraction of
   voxels counts);
4. incremental level: the networks applied to their own (detached) output, a window of it,
   must agree at sz/r^2.

Runs as one process or under ``torchrun`` (DistributedDataParallel: gloo on CPU, NCCL on
GPU). Rank 0 validates, shows progress and writes checkpoints; every rank samples its own
crops (seed + rank).
"""

from __future__ import annotations

import argparse
import copy
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from thinslice.checkpoint import load_checkpoint, model_config_of, save_checkpoint
from thinslice.config import ModelConfig, TrainConfig
from thinslice.device import resolve_device
from thinslice.errors import ConfigError, InputError
from thinslice.losses import reconstruction_loss, robust_consistency
from thinslice.nets import build_networks, interpolate_slices
from thinslice.synthesize import VIEWS, autocast_for, normalize, synthesize_views
from thinslice.volume import Volume

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- data


@dataclass
class ObservedVolume:
    """A training volume: normalised voxels and what SMORE needs to know.

    Attributes:
        data: ``(D, H, W)`` float32 in [0, 1].
        train_w: columns ``[0, train_w)`` are for training; the rest is held back.
        spacing: ``(slice, H, W)`` spacing in mm, or None when unknown (plain arrays).
        name: label for logs.
    """

    data: Tensor
    train_w: int
    spacing: tuple[float, float, float] | None
    name: str


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
        else:
            arr, name, spacing = np.asarray(vol), f"volume{i}", None
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
        prepared.append(ObservedVolume(data, train_w, spacing, name))
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


def _fit_slices(wanted: int, available: int, r: int) -> int:
    """Largest ``n <= min(wanted, available)`` with ``n = r*j + 1``."""
    n = min(wanted, available)
    return (n - 1) // r * r + 1


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
    n_target = (n_target - 1) // scale * scale + 1
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
        n = _fit_slices(self.slices, d, r)
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
            if ratio >= 1.0:
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


# ----------------------------------------------------------------------------- model


def _gap_rows(fine: Tensor, r: int) -> Tensor:
    """``(B, r*(n-1)+1, ...)`` -> the new rows ``(B, n-1, r-1, ...)`` of each gap."""
    b, length = fine.shape[:2]
    gaps = (length - 1) // r
    return fine[:, : gaps * r].reshape(b, gaps, r, *fine.shape[2:])[:, :, 1:]


class DistillationModel(nn.Module):
    """Both networks and the whole training objective in ``forward`` (so DDP sees it all).

    ``forward(batch)`` returns a dict of scalar losses with the weighted sum in ``"total"``.
    """

    def __init__(self, model_config: ModelConfig, config: TrainConfig) -> None:
        super().__init__()
        self.model_config = model_config
        self.config = config
        self.axial, self.sr = build_networks(model_config, config.networks)
        self.r = model_config.scale

    # -- helpers: each view's prediction of the fine volume, as tensors ------------
    def _axial_new(self, vol: Tensor, gaps: slice = slice(None)) -> tuple[Tensor, dict[str, Tensor]]:
        """Axial net on neighbour pairs of ``vol (B, n, h, w)`` -> ``(B, G, r-1, h, w)``.

        ``gaps`` selects which of the ``n - 1`` gaps to fill (all by default); the base
        interpolation always sees the whole of ``vol``.
        """
        assert self.axial is not None
        b, n, h, w = vol.shape
        base = interpolate_slices(vol, self.r, self.model_config.base, dim=1)
        base_new = _gap_rows(base, self.r)[:, gaps]
        pairs = torch.stack([vol[:, :-1], vol[:, 1:]], dim=2)[:, gaps]
        g = pairs.shape[1]
        out, aux = self.axial(pairs.reshape(-1, 2, h, w), base_new.reshape(-1, self.r - 1, h, w), return_aux=True)
        return out.view(b, g, self.r - 1, h, w), aux

    def _sr_views(self, vol: Tensor, lines_h: Tensor, lines_w: Tensor) -> tuple[Tensor, Tensor]:
        """Through-plane net on chosen coronal rows and sagittal columns of ``vol``.

        Returns:
            coronal ``(B, Lh, N, w)`` and sagittal ``(B, Lw, N, h)``, ``N = r*(n-1)+1``.
        """
        assert self.sr is not None
        b, n, h, w = vol.shape
        cor = vol[:, :, lines_h, :].permute(0, 2, 1, 3).reshape(-1, 1, n, w)
        sag = vol[:, :, :, lines_w].permute(0, 3, 1, 2).reshape(-1, 1, n, h)
        if h == w:
            both = self.sr(torch.cat([cor, sag]))
            out_cor, out_sag = both[: cor.shape[0]], both[cor.shape[0] :]
        else:
            out_cor, out_sag = self.sr(cor), self.sr(sag)
        fine = self.r * (n - 1) + 1
        return out_cor.view(b, -1, fine, w), out_sag.view(b, -1, fine, h)

    def _sr_pairs(self, cor: Tensor, sag: Tensor) -> tuple[Tensor, Tensor]:
        """Through-plane net on coronal ``(B, Lh, n, w)`` and sagittal ``(B, Lw, n, h)`` images."""
        assert self.sr is not None
        b, _, n, w = cor.shape
        h = sag.shape[-1]
        fine = self.r * (n - 1) + 1
        out_cor = self.sr(cor.reshape(-1, 1, n, w)).view(b, -1, fine, w)
        out_sag = self.sr(sag.reshape(-1, 1, n, h)).view(b, -1, fine, h)
        return out_cor, out_sag

    def _consistency(self, axial_new: Tensor, cor: Tensor, sag: Tensor, lines_h: Tensor, lines_w: Tensor) -> Tensor:
        """Robust agreement of the axial result with the coronal and sagittal ones."""
        frac = self.config.consistency_fraction
        cor_new = _gap_rows(cor.transpose(1, 2), self.r)  # (B, n-1, r-1, Lh, w)
        sag_new = _gap_rows(sag.transpose(1, 2), self.r)  # (B, n-1, r-1, Lw, h)
        ax_cor = axial_new[:, :, :, lines_h, :]
        ax_sag = axial_new[:, :, :, :, lines_w].transpose(-1, -2)
        return robust_consistency(ax_cor, cor_new, frac) + robust_consistency(ax_sag, sag_new, frac)

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        cfg, wts, r = self.config, self.config.weights, self.r
        vol = batch.crop
        low = vol[:, ::r]
        losses: dict[str, Tensor] = {}
        total = vol.new_zeros(())
        recon = lambda p, t: reconstruction_loss(  # noqa: E731
            p, t, l1_weight=wts.l1, wavelet_weight=wts.wavelet, use_wavelet=cfg.wavelet
        )[0]
        lh, lw = batch.lines_h, batch.lines_w
        # 1. reconstruction of the observed crop from its coarser copy
        if self.axial is not None:
            pred, aux = self._axial_new(low)
            losses["rec_axial"] = recon(pred.flatten(0, 2), _gap_rows(vol, r).flatten(0, 2))
            total = total + losses["rec_axial"]
            if aux:
                losses["memory"] = wts.compactness * aux["compactness"]
                losses["memory"] = losses["memory"] + wts.separateness * aux["separateness"]
                total = total + losses["memory"]
        if self.sr is not None:
            cor, sag = self._sr_views(low, lh, lw)
            cor_t = vol[:, :, lh, :].transpose(1, 2)
            sag_t = vol[:, :, :, lw].permute(0, 3, 1, 2)
            losses["rec_sr"] = 0.5 * (recon(cor, cor_t) + recon(sag, sag_t))
            total = total + losses["rec_sr"]
            # 2. SMORE: in-plane axis degraded to the slice spacing, at the target spacing
            if batch.smore_in is not None and wts.smore > 0:
                losses["smore"] = recon(self.sr(batch.smore_in), batch.smore_target)
                total = total + wts.smore * losses["smore"]
        if self.axial is None or self.sr is None:
            losses["total"] = total
            return losses
        # 3. cross-view consistency at spacing sz/r (no ground truth), on a block of gaps
        b, n, h, w = vol.shape
        gaps = slice(batch.gap0, min(n - 1, batch.gap0 + cfg.consistency_gaps))
        ax1, _ = self._axial_new(vol, gaps)
        cor1, sag1 = self._sr_views(vol, lh, lw)
        rows = slice(gaps.start * r, gaps.stop * r + 1)  # the block on the sz/r grid
        cor1, sag1 = cor1[:, :, rows], sag1[:, :, rows]
        losses["cons1"] = self._consistency(ax1, cor1, sag1, lh, lw)
        total = total + wts.consistency * losses["cons1"]
        # 4. incremental: networks on their own (detached) output, spacing sz/r^2
        if cfg.second_level and wts.consistency_level2 > 0:
            size = cor1.shape[2]
            slab = torch.empty(b, size, h, w, dtype=vol.dtype, device=vol.device)
            slab[:, ::r] = vol[:, gaps.start : gaps.stop + 1]
            slab[:, :-1].view(b, -1, r, h, w)[:, :, 1:] = ax1.detach().to(vol.dtype)
            ax2, _ = self._axial_new(slab)
            cor2, sag2 = self._sr_pairs(cor1.detach(), sag1.detach())
            losses["cons2"] = self._consistency(ax2, cor2, sag2, lh, lw)
            total = total + wts.consistency_level2 * losses["cons2"]
        losses["total"] = total
        return losses

    def weights(self) -> dict[str, dict[str, Tensor]]:
        """State dicts per network, for checkpoints."""
        out = {}
        if self.axial is not None:
            out["axial"] = self.axial.state_dict()
        if self.sr is not None:
            out["sr"] = self.sr.state_dict()
        return out

    def load_weights(self, weights: dict[str, dict[str, Tensor]]) -> None:
        for name, net in (("axial", self.axial), ("sr", self.sr)):
            if net is not None:
                net.load_state_dict(weights[name])


# ----------------------------------------------------------------------------- validation


class Validator:
    """PSNR on held-back columns: observed slices predicted from ``V[::r]`` (coarser level).

    Never touches the unobserved slices a user would evaluate on. Also reports the
    classical base interpolation on the same slices, the floor the model must beat.
    """

    def __init__(self, volumes: list[ObservedVolume], model_config: ModelConfig) -> None:
        self.r = model_config.scale
        self.model_config = model_config
        self.items: list[tuple[Tensor, Tensor]] = []  # (coarser copy, observed band)
        for vol in volumes:
            d, h, w = vol.data.shape
            if vol.train_w >= w:
                continue
            n = _fit_slices(vol.data.shape[0], d, self.r)
            n = min(n, self.r * 16 + 1)
            y0 = max(0, (h - 192) // 2)
            band = vol.data[:n, y0 : y0 + 192, vol.train_w :]
            self.items.append((band[:: self.r].contiguous(), band))
        self.baseline = self._score(None) if self.items else float("nan")

    def _score(self, model: DistillationModel | None, device: torch.device | None = None) -> float:
        sq, count = 0.0, 0
        for low, target in self.items:
            if model is None:
                pred = interpolate_slices(low, self.r, self.model_config.base, dim=0)
            else:
                views = [v for v in VIEWS if (model.axial if v == "axial" else model.sr) is not None]
                pred, _ = synthesize_views(
                    low,
                    self.r,
                    model.axial,
                    model.sr,
                    views=views,
                    base=self.model_config.base,
                    fusion=self.model_config.fusion,
                    batch_size=16,
                    device=device or "cpu",
                )
            keep = torch.ones(target.shape[0], dtype=torch.bool)
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


# ----------------------------------------------------------------------------- training


@dataclass(frozen=True)
class DistEnv:
    """The torchrun environment (WORLD_SIZE, RANK, LOCAL_RANK); world 1 without torchrun."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> DistEnv:
        try:
            return cls(
                int(os.environ.get("WORLD_SIZE", "1")),
                int(os.environ.get("RANK", "0")),
                int(os.environ.get("LOCAL_RANK", "0")),
            )
        except ValueError as err:
            raise ConfigError(f"invalid torchrun environment: {err}") from err

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _setup_distributed(env: DistEnv, device_spec: str) -> torch.device:
    """Pick this process's device and join the process group (when under torchrun)."""
    device = resolve_device(device_spec)
    if not env.enabled:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def _gather_states(state: Tensor, env: DistEnv, device: torch.device) -> list[Tensor]:
    """All ranks' copies of an RNG state (a collective call: every rank must make it)."""
    if not env.enabled:
        return [state.clone()]
    comm_device = device if dist.get_backend() == "nccl" else torch.device("cpu")
    local = state.to(comm_device)
    parts = [torch.empty_like(local) for _ in range(env.world_size)]
    dist.all_gather(parts, local)
    return [p.cpu() for p in parts]


def _flags(stop: bool, save: bool, env: DistEnv, device: torch.device) -> tuple[bool, bool]:
    """Rank 0's decision to stop/checkpoint, shared with every rank."""
    if not env.enabled:
        return stop, save
    comm_device = device if dist.get_backend() == "nccl" else torch.device("cpu")
    flags = torch.tensor([int(stop), int(save)], device=comm_device)
    dist.broadcast(flags, src=0)
    return bool(flags[0]), bool(flags[1])


def train(
    volumes: Sequence[Volume | np.ndarray],
    output: str | Path,
    config: TrainConfig | None = None,
    model_config: ModelConfig | None = None,
    *,
    steps: int | None = None,
    minutes: float | None = None,
    resume: bool = False,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
) -> Path:
    """Train a model self-supervised on the observed volumes; write a checkpoint.

    Args:
        volumes: the observed thick-slice volumes (``Volume`` or ``(D, H, W)`` HU arrays;
            arrays carry no spacing, so SMORE is skipped for them). Only these are used.
        output: checkpoint path (rewritten every ``config.checkpoint_minutes`` and at the
            end, atomically).
        config: training settings.
        model_config: network settings (scale, widths, base interpolation, ...).
        steps: total optimisation steps (counting those of a resumed checkpoint).
        minutes: wall-clock budget of this call; with ``steps`` whichever ends first.
        resume: continue from ``output`` if it exists (same step, optimizer, RNG, configs).
        seed: seed; rank k samples with ``seed + k``. Deterministic on CPU.
        device: ``auto|cpu|cuda|cuda:N|mps`` (under torchrun CUDA uses LOCAL_RANK).
        progress: tqdm bar on rank 0 with losses and validation PSNR.

    Returns:
        the checkpoint path.

    Raises:
        ConfigError: neither steps nor minutes; a resumed checkpoint with another model
            config.
        InputError: a volume is too small for the scale.
    """
    config = config or TrainConfig()
    model_config = model_config or ModelConfig()
    output = Path(output)
    if steps is None and minutes is None:
        raise ConfigError("give a training length: steps or minutes")
    if steps is not None and steps < 0 or minutes is not None and minutes <= 0:
        raise ConfigError(f"steps must be >= 0 and minutes > 0, got {steps} and {minutes}")
    env = DistEnv.from_env()
    dev = _setup_distributed(env, device)

    ckpt = None
    if resume and output.exists():
        ckpt = load_checkpoint(output)
        stored = model_config_of(ckpt, output)
        if stored != model_config:
            raise ConfigError(
                f"{output} was trained with a different model config ({stored}); "
                "resume with the same settings or train a new model"
            )
        if ckpt.get("train_config"):
            stored_train = TrainConfig.from_dict(ckpt["train_config"])
            if stored_train != config:
                log.warning("resuming with the training config stored in %s", output)
            config = stored_train
        seed = int(ckpt.get("seed", seed))
    elif resume:
        log.info("no checkpoint at %s yet; starting a new run", output)
    elif output.exists() and env.is_main:
        log.warning("overwriting %s", output)

    observed = prepare_volumes(volumes, model_config, config.val_fraction)
    torch.manual_seed(seed)  # identical initial weights on every rank
    model = DistillationModel(model_config, config).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.99))
    generator = torch.Generator().manual_seed(seed + env.rank)
    torch.manual_seed(seed + env.rank)
    step, elapsed_before = 0, 0.0
    metrics: dict[str, float] = {}
    if ckpt is not None:
        if ckpt.get("optimizer") is not None:
            optimizer.load_state_dict(ckpt["optimizer"])
        step = int(ckpt.get("step", 0))
        elapsed_before = float(ckpt.get("elapsed_s", 0.0))
        metrics = dict(ckpt.get("metrics") or {})
        rng = ckpt.get("rng")
        if rng and len(rng.get("sampler", [])) == env.world_size:
            generator.set_state(rng["sampler"][env.rank])
            torch.set_rng_state(rng["torch"][env.rank])
        else:
            log.warning("checkpoint RNG states do not fit %d process(es); reseeding", env.world_size)
            generator.manual_seed(seed + env.rank + 1_000_003 * step)
    # exponential moving average of the weights: what inference uses (steadier than SGD's last step)
    averaged = copy.deepcopy(model).requires_grad_(False)
    if ckpt is not None:
        averaged.load_weights(ckpt["weights"])
        model.load_weights(ckpt.get("train_weights") or ckpt["weights"])
    runner: nn.Module = model
    if env.enabled:
        runner = nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    sampler = CropSampler(observed, model_config, config, generator)
    validator = Validator(observed, model_config) if env.is_main else None

    def checkpoint() -> None:
        states = _gather_states(generator.get_state(), env, dev)
        torch_states = _gather_states(torch.get_rng_state(), env, dev)
        if env.is_main:
            save_checkpoint(
                output,
                weights=_cpu(averaged.weights()),
                train_weights=_cpu(model.weights()),
                model_config=model_config,
                networks=config.networks,
                train_config=config.to_dict(),
                optimizer=optimizer.state_dict(),
                step=step,
                seed=seed,
                world_size=env.world_size,
                rng={"sampler": states, "torch": torch_states},
                metrics=metrics,
                elapsed_s=elapsed_before + time.monotonic() - start,
            )

    start = last_save = time.monotonic()
    deadline = start + 60.0 * minutes if minutes is not None else math.inf
    interval = 60.0 * config.checkpoint_minutes
    bar = tqdm(
        total=steps,
        initial=step,
        desc="train",
        disable=not (progress and env.is_main),
        dynamic_ncols=True,
    )
    if validator is not None and "val_base" not in metrics:
        metrics["val_base"] = validator.baseline
    model.train()
    validated = -1
    try:
        while steps is None or step < steps:
            now = time.monotonic()
            stop, save = _flags(now >= deadline, now - last_save >= interval, env, dev)
            if stop:
                break
            batch = sampler.sample().to(dev)
            for group in optimizer.param_groups:  # linear warm-up, a function of the step only
                group["lr"] = config.lr * min(1.0, (step + 1) / max(1, config.warmup_steps))
            with autocast_for(dev):
                losses = runner(batch)
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            if config.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            step += 1
            _update_average(averaged, model, config.ema, step)
            metrics.update({k: float(v.detach()) for k, v in losses.items()})
            if validator is not None and step % config.val_every == 0:
                metrics["val_psnr"], validated = validator(averaged, dev), step
                log.debug("step %d %s", step, _postfix(metrics))
            bar.update()
            bar.set_postfix(_postfix(metrics), refresh=False)
            if save:
                checkpoint()
                last_save = time.monotonic()
    except KeyboardInterrupt:
        if not env.enabled:
            log.warning("interrupted at step %d; saving %s", step, output)
            checkpoint()
        raise
    finally:
        bar.close()
    if validator is not None and validated != step:
        metrics["val_psnr"] = validator(averaged, dev)
    checkpoint()
    if env.is_main:
        log.info(
            "trained %d steps; validation PSNR %.2f dB (base interpolation %.2f dB)",
            step,
            metrics.get("val_psnr", float("nan")),
            metrics.get("val_base", float("nan")),
        )
    return output


def _cpu(weights: dict[str, dict[str, Tensor]]) -> dict[str, dict[str, Tensor]]:
    return {k: {n: t.detach().cpu().clone() for n, t in sd.items()} for k, sd in weights.items()}


@torch.no_grad()
def _update_average(averaged: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """EMA of parameters and buffers; the decay ramps up so early weights fade fast."""
    rate = 1.0 - min(decay, (1.0 + step) / (10.0 + step))
    for avg, new in zip(averaged.state_dict().values(), model.state_dict().values(), strict=True):
        if avg.is_floating_point():
            avg.lerp_(new, rate)
        else:
            avg.copy_(new)


def _postfix(metrics: dict[str, float]) -> dict[str, str]:
    keys = ("total", "rec_axial", "rec_sr", "smore", "cons1", "cons2", "val_psnr", "val_base")
    return {k: f"{metrics[k]:.4g}" for k in keys if k in metrics}


# ----------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Minimal entry point, e.g. ``torchrun --nproc-per-node=2 -m thinslice.training ...``."""
    parser = argparse.ArgumentParser(prog="python -m thinslice.training")
    parser.add_argument("-i", "--input", nargs="+", required=True, help="NIfTI volumes")
    parser.add_argument("-o", "--output", required=True, type=Path)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--minutes", type=float)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--crop", type=int, nargs=2, metavar=("SIZE", "SLICES"))
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO)

    from dataclasses import replace

    from thinslice.config import load_config

    model_cfg, train_cfg = load_config(args.config) if args.config else (ModelConfig(), TrainConfig())
    model_cfg = replace(model_cfg, scale=args.scale)
    if args.crop:
        train_cfg = replace(train_cfg, crop_sizes=((args.scale, args.crop[0], args.crop[1]),))
    volumes = [_read_volume(Path(p)) for p in args.input]
    train(
        volumes,
        args.output,
        train_cfg,
        model_cfg,
        steps=args.steps,
        minutes=args.minutes,
        resume=args.resume,
        seed=args.seed,
        device=args.device,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


def _read_volume(path: Path) -> Volume:
    """Read a volume with :func:`thinslice.io.load` (slice axis first, geometry kept)."""
    from thinslice.io import load

    return load(path)


if __name__ == "__main__":
    sys.exit(main())
