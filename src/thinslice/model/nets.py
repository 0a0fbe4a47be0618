"""The two networks of incremental cross-view mutual distillation (Fang et al., CVPR 2022).

- :class:`AxialInterpolator` (``A``): two neighbouring axial slices in, the ``r - 1`` slices
  between them out; CAIN-like (space-to-depth, residual channel-attention fusion,
  depth-to-space).
- :class:`ThroughPlaneSR` (``S``): a coronal or sagittal image in, the same image with its
  slice axis upsampled ``r`` times out (residual groups with channel attention, sub-pixel
  upsampling along that one axis). One instance serves both views.

Both predict a *residual* on top of a classical interpolation along the slice axis
(:func:`interpolate_slices`), and their last convolution starts at zero, so an untrained
network reproduces the classical interpolation exactly and training can only refine it.

Sub-pixel alignment: input slices sit at integer positions ``0..D-1``; the output has
``r * (D - 1) + 1`` slices at positions ``k / r``; output slice ``k * r`` is input slice ``k``.

All tensors are intensities normalised to ``[0, 1]`` (HU window, see ``ModelConfig``).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from thinslice import grid
from thinslice.errors import ConfigError
from thinslice.grid import check_scale
from thinslice.model.config import BASES, ModelConfig

# Inputs are shifted/scaled so that soft tissue sits near 0 and bone near 1..3.
_SHIFT, _GAIN = 0.25, 4.0


@functools.lru_cache(maxsize=64)
def _interp_matrix_np(n: int, scale: int, kind: str) -> np.ndarray:
    """Matrix ``(scale*(n-1)+1, n)`` that interpolates n samples onto the fine grid."""
    fine = np.arange(grid.output_slices(n, scale)) / scale
    degree = {"linear": 1, "cubic": 3}[kind]
    degree = min(degree, n - 1)
    if degree < 1:
        return np.ones((1, 1))
    if degree == 1:  # numpy alone: scipy.interpolate takes 0.2 s to import
        matrix = np.stack([np.interp(fine, np.arange(n), column) for column in np.eye(n)], axis=1)
    else:
        from scipy.interpolate import make_interp_spline

        matrix = make_interp_spline(np.arange(n), np.eye(n), k=degree, axis=0)(fine)
    matrix[::scale] = np.eye(n)  # acquired positions exactly reproduced
    return matrix


def interpolation_matrix(n: int, scale: int, kind: str = "linear") -> Tensor:
    """The classical slice interpolation as a matrix.

    Args:
        n: number of input samples (slices) along the axis.
        scale: upsampling factor r.
        kind: ``linear`` or ``cubic`` (not-a-knot cubic spline, as
            ``scipy.interpolate.make_interp_spline(k=3)``; lower degree when n < 4).

    Returns:
        float32 tensor ``(r*(n-1)+1, n)``.
    """
    if kind not in BASES:
        raise ConfigError(f"base interpolation must be one of {', '.join(BASES)}, got {kind!r}")
    return torch.from_numpy(_interp_matrix_np(int(n), int(scale), kind)).float()


def interpolate_slices(x: Tensor, scale: int, kind: str = "linear", dim: int = -2) -> Tensor:
    """Interpolate ``x`` along ``dim`` from ``n`` to ``scale*(n-1)+1`` samples."""
    n = x.shape[dim]
    dtype = x.dtype if x.dtype == torch.float64 else torch.float32
    if kind == "linear" and n >= 2 and x.ndim >= 2:  # two neighbours per sample, not an n x N product
        with torch.autocast(x.device.type, enabled=False):
            moved = x.to(dtype).movedim(dim, -2)  # (..., n, X): whole rows, contiguous output
            t = (torch.arange(scale, device=x.device, dtype=dtype) / scale).view(scale, 1)
            left, right = moved[..., :-1, None, :], moved[..., 1:, None, :]
            fine = (left + (right - left) * t).flatten(-3, -2)
            return torch.cat([fine, moved[..., -1:, :]], dim=-2).movedim(-2, dim)
    matrix = interpolation_matrix(n, scale, kind).to(device=x.device, dtype=dtype)
    with torch.autocast(x.device.type, enabled=False):  # full precision even under AMP
        moved = x.movedim(dim, -1).to(dtype)
        return (moved @ matrix.T).movedim(-1, dim)


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation channel attention: global pool, bottleneck, sigmoid gate."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(4, channels // reduction)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x)


class ResidualCABlock(nn.Module):
    """conv-ReLU-conv-channel attention with a skip connection (RCAN's RCAB)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1),
            ChannelAttention(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResidualGroup(nn.Module):
    """A chain of :class:`ResidualCABlock` and a conv, with a long skip connection."""

    def __init__(self, channels: int, blocks: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [ResidualCABlock(channels) for _ in range(blocks)]
        layers.append(nn.Conv2d(channels, channels, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class PrototypeMemory(nn.Module):
    """A small memory of learned prototypes read by attention (METHOD.md step 5).

    Each feature vector (per pixel) attends over ``items`` prototypes of the feature width;
    the read-out is concatenated to the feature and mixed back by a 1x1 conv.
    :meth:`forward` also returns the compactness loss (distance to the nearest prototype)
    and the separateness loss (triplet margin between nearest and second-nearest).
    """

    def __init__(self, channels: int, items: int = 10, margin: float = 1.0) -> None:
        super().__init__()
        self.items = nn.Parameter(torch.randn(items, channels) / channels**0.5)
        self.mix = nn.Conv2d(2 * channels, channels, 1)
        self.margin = margin

    def forward(self, feat: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, c, h, w = feat.shape
        query = F.normalize(feat.permute(0, 2, 3, 1).reshape(-1, c), dim=1)
        keys = F.normalize(self.items, dim=1)
        attn = torch.softmax(query @ keys.T, dim=1)
        read = (attn @ keys).reshape(b, h, w, c).permute(0, 3, 1, 2)
        out = feat + self.mix(torch.cat([feat, read], dim=1))
        dist = torch.cdist(query, keys)
        nearest = dist.topk(min(2, keys.shape[0]), dim=1, largest=False).values
        compact = (nearest[:, 0] ** 2).mean()
        if nearest.shape[1] > 1:
            separate = F.relu(nearest[:, 0] - nearest[:, 1] + self.margin).mean()
        else:
            separate = compact.new_zeros(())
        return out, compact, separate


class AxialInterpolator(nn.Module):
    """Slice-wise interpolation between two neighbouring axial slices (network ``A``).

    Args:
        scale: r; the network outputs the ``r - 1`` slices between its two inputs.
        width: feature channels.
        blocks: residual channel-attention blocks in the fusion body.
        unshuffle: space-to-depth factor (CAIN used 2^k); H and W are padded to a multiple.
        memory: insert a :class:`PrototypeMemory` after the fusion body.
        memory_items: number of prototypes.

    Shapes:
        ``pair`` ``(B, 2, H, W)`` (upper and lower slice), optional ``base``
        ``(B, r-1, H, W)`` (a better classical estimate, e.g. a cubic spline through more
        slices; linear interpolation of the pair when omitted); output ``(B, r-1, H, W)``.
        Intensities in [0, 1].

    Example:
        >>> net = AxialInterpolator(scale=3)
        >>> net(torch.rand(4, 2, 32, 32)).shape
        torch.Size([4, 2, 32, 32])
    """

    def __init__(
        self,
        scale: int,
        width: int = 16,
        blocks: int = 3,
        unshuffle: int = 2,
        memory: bool = False,
        memory_items: int = 10,
    ) -> None:
        super().__init__()
        check_scale(scale)
        self.scale = scale
        self.unshuffle = unshuffle
        channels_in = (2 + scale - 1) * unshuffle**2
        self.head = nn.Conv2d(channels_in, width, 3, padding=1)
        self.body = ResidualGroup(width, blocks)
        self.memory = PrototypeMemory(width, memory_items) if memory else None
        self.tail = nn.Conv2d(width, (scale - 1) * unshuffle**2, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)  # type: ignore[arg-type]

    def linear_base(self, pair: Tensor) -> Tensor:
        """Linear interpolation between the two slices, ``(B, r-1, H, W)``."""
        t = torch.arange(1, self.scale, device=pair.device, dtype=pair.dtype) / self.scale
        t = t.view(1, -1, 1, 1)
        return pair[:, :1] * (1 - t) + pair[:, 1:2] * t

    def forward(
        self, pair: Tensor, base: Tensor | None = None, *, return_aux: bool = False
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        if pair.ndim != 4 or pair.shape[1] != 2:
            raise ConfigError(f"AxialInterpolator expects (B, 2, H, W), got {tuple(pair.shape)}")
        if base is None:
            base = self.linear_base(pair)
        h, w = pair.shape[-2:]
        u = self.unshuffle
        x = (torch.cat([pair, base], dim=1) - _SHIFT) * _GAIN
        pad_h, pad_w = (-h) % u, (-w) % u
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        feat = self.head(F.pixel_unshuffle(x, u))
        feat = self.body(feat)
        aux: dict[str, Tensor] = {}
        if self.memory is not None:
            feat, aux["compactness"], aux["separateness"] = self.memory(feat)
        residual = F.pixel_shuffle(self.tail(feat), u)[..., :h, :w]
        out = base + residual
        return (out, aux) if return_aux else out


class ThroughPlaneSR(nn.Module):
    """One-axis super-resolution of coronal/sagittal images (network ``S``).

    The slice axis (dim -2) is upsampled r times; the in-plane axis (dim -1) is untouched.

    Args:
        scale: r.
        width: feature channels.
        groups: residual groups (each with ``blocks`` channel-attention blocks).
        blocks: blocks per group.
        unshuffle: space-to-depth factor along the in-plane axis only (speed).
        base: classical interpolation the residual is added to (``linear`` or ``cubic``).
        sharpen: also predict a residual at the acquired rows (deconvolution of thick
            slices); otherwise output row ``k*r`` equals input row ``k`` exactly.

    Shapes:
        input ``(B, 1, D, X)``; output ``(B, 1, r*(D-1)+1, X)``.

    Example:
        >>> net = ThroughPlaneSR(scale=2)
        >>> net(torch.rand(3, 1, 10, 40)).shape
        torch.Size([3, 1, 19, 40])
    """

    def __init__(
        self,
        scale: int,
        width: int = 16,
        groups: int = 2,
        blocks: int = 2,
        unshuffle: int = 2,
        base: str = "linear",
        sharpen: bool = False,
    ) -> None:
        super().__init__()
        check_scale(scale)
        if base not in BASES:
            raise ConfigError(f"base must be one of {', '.join(BASES)}, got {base!r}")
        self.scale = scale
        self.unshuffle = unshuffle
        self.base = base
        self.sharpen = sharpen
        self.head = nn.Conv2d(unshuffle, width, 3, padding=1)
        self.body = nn.Sequential(
            *[ResidualGroup(width, blocks) for _ in range(groups)],
            nn.Conv2d(width, width, 3, padding=1),
        )
        self.rows = scale if sharpen else scale - 1  # residual rows per input row
        self.tail = nn.Conv2d(width, self.rows * unshuffle, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)  # type: ignore[arg-type]

    def forward(self, image: Tensor) -> Tensor:
        if image.ndim != 4 or image.shape[1] != 1:
            raise ConfigError(f"ThroughPlaneSR expects (B, 1, D, X), got {tuple(image.shape)}")
        b, _, d, x_len = image.shape
        r, u = self.scale, self.unshuffle
        base = interpolate_slices(image, r, self.base, dim=-2)
        if d < 2:
            return base
        x = (image - _SHIFT) * _GAIN
        pad = (-x_len) % u
        if pad:
            x = F.pad(x, (0, pad, 0, 0), mode="replicate")
        xu = x_len + pad
        # (B, 1, D, X) -> (B, u, D, X/u): column c*u + i goes to channel i
        x = x.view(b, d, xu // u, u).permute(0, 3, 1, 2)
        feat = self.head(x)
        feat = feat + self.body(feat)
        k = self.rows
        t = self.tail(feat).view(b, k, u, d, xu // u)
        # -> (B, D, k, X): residual for offsets (0 if sharpen), 1..r-1 of each input row
        t = t.permute(0, 3, 1, 4, 2).reshape(b, d, k, xu)[..., :x_len]
        residual = t if self.sharpen else torch.cat([t.new_zeros(b, d, 1, x_len), t], dim=2)
        residual = residual.reshape(b, 1, d * r, x_len)[:, :, : r * (d - 1) + 1]
        return base + residual


def build_networks(
    config: ModelConfig, networks: str = "both"
) -> tuple[AxialInterpolator | None, ThroughPlaneSR | None]:
    """The networks a :class:`~thinslice.model.config.ModelConfig` describes.

    Args:
        config: widths, depths, scale, memory flag, base interpolation.
        networks: ``both``, ``axial`` or ``sr``; the other one is ``None``.
    """
    axial = sr = None
    if networks in ("both", "axial"):
        axial = AxialInterpolator(
            config.scale,
            width=config.axial_width,
            blocks=config.axial_blocks,
            memory=config.memory,
            memory_items=config.memory_items,
        )
    if networks in ("both", "sr"):
        sr = ThroughPlaneSR(
            config.scale,
            width=config.sr_width,
            groups=config.sr_groups,
            blocks=config.sr_blocks,
            unshuffle=config.sr_unshuffle,
            base=config.base,
            sharpen=config.sharpen,
        )
    return axial, sr
