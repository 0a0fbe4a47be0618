"""Loss terms of incremental cross-view mutual distillation (Fang et al., CVPR 2022).

- :func:`reconstruction_loss`: L1 plus the wavelet high-frequency loss (weights 1 and 0.1),
  for predictions that have real targets (the coarser copy of the observed volume).
- :func:`wavelet_loss`: mean squared difference of the detail sub-bands of a 3-level 2-D
  Daubechies-3 DWT (``ptwt``).
- :func:`robust_consistency`: mean squared disagreement of two views over only the
  best-agreeing fraction of voxels.

The memory-module losses (compactness, separateness) are computed by
:class:`~thinslice.nets.PrototypeMemory` itself.
"""

from __future__ import annotations

import ptwt
import torch
from torch import Tensor

from thinslice.errors import ConfigError


def wavelet_loss(pred: Tensor, target: Tensor, wavelet: str = "db3", level: int = 3) -> Tensor:
    """Mean squared difference of the high-frequency DWT sub-bands of two image stacks.

    The DWT is linear, so it is taken once, of ``pred - target``. Symmetric boundary
    extension keeps it defined for images of a few pixels.

    Args:
        pred: ``(..., H, W)`` images.
        target: same shape.
        wavelet: wavelet name (``pywt`` naming).
        level: decomposition levels.

    Returns:
        scalar: mean over all detail coefficients of all levels.
    """
    diff = (pred - target).float()
    diff = diff.reshape(-1, *diff.shape[-2:])
    coeffs = ptwt.wavedec2(diff, wavelet, level=level, mode="symmetric")
    total = diff.new_zeros(())
    count = 0
    for details in coeffs[1:]:
        for band in details:
            total = total + band.pow(2).sum()
            count += band.numel()
    return total / max(count, 1)


def reconstruction_loss(
    pred: Tensor,
    target: Tensor,
    *,
    l1_weight: float = 1.0,
    wavelet_weight: float = 0.1,
    l2_weight: float = 0.0,
    use_wavelet: bool = True,
    wavelet_images: int = 8,
) -> tuple[Tensor, dict[str, Tensor]]:
    """``l1_weight * L1 + wavelet_weight * wavelet`` between images ``(..., H, W)``.

    The L1 term covers every image; the wavelet term an evenly spaced subset of at most
    ``wavelet_images`` of them (it costs far more per pixel, and the subset is unbiased).

    Returns:
        the weighted total and its unweighted parts ``{"l1": ..., "wavelet": ...}``.
    """
    if pred.shape != target.shape:
        raise ConfigError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    diff = pred.float() - target.float()
    l1 = diff.abs().mean()
    parts = {"l1": l1}
    total = l1_weight * l1
    if l2_weight > 0:
        parts["l2"] = diff.square().mean()
        total = total + l2_weight * parts["l2"]
    if use_wavelet and wavelet_weight > 0:
        flat_pred = pred.reshape(-1, *pred.shape[-2:])
        flat_target = target.reshape(-1, *target.shape[-2:])
        stride = max(1, -(-flat_pred.shape[0] // max(1, wavelet_images)))
        wav = wavelet_loss(flat_pred[::stride], flat_target[::stride])
        parts["wavelet"] = wav
        total = total + wavelet_weight * wav
    return total, parts


def robust_consistency(a: Tensor, b: Tensor, fraction: float = 0.25) -> Tensor:
    """Mean squared difference over the ``fraction`` of voxels where ``a`` and ``b`` agree best.

    Where one view is plainly wrong its disagreement is large and drops out, so it cannot
    drag the other view (METHOD.md step 3). Gradients flow into both inputs.

    Args:
        a: predictions of one view, any shape.
        b: the other view, same shape.
        fraction: kept share of voxels, in (0, 1].
    """
    if a.shape != b.shape:
        raise ConfigError(f"views {tuple(a.shape)} and {tuple(b.shape)} differ")
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"fraction must be in (0, 1], got {fraction}")
    sq = (a.float() - b.float()).pow(2).flatten()
    if sq.numel() == 0:
        return sq.sum()
    keep = max(1, int(round(fraction * sq.numel())))
    if keep >= sq.numel():
        return sq.mean()
    return torch.topk(sq, keep, largest=False, sorted=False).values.mean()
