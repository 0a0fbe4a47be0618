"""The acquisition model of a slice: thin anatomy averaged over the slice profile.

A thick slice at position ``p`` (in thin-sample units) is, to a good approximation, the
thin signal averaged over a box ``thickness`` wide centred on ``p`` (optionally softened by
a Gaussian, the reconstruction kernel), and the thick stack samples that every
``thick_spacing`` (METHOD.md, "Beyond the paper: the acquisition model"). Thickness and
spacing are independent: thickness > spacing is an overlapping reconstruction, thickness <
spacing leaves gaps.

Each thin sample is treated as a cell one sample wide, so a box covers the cells it
overlaps with their exact overlap as weight (a box 2 samples wide centred on a sample has
taps 1/4, 1/2, 1/4). Fractional output positions are linearly interpolated between the
profile-averaged samples. Edges replicate the first and last thin sample.

Everything is a matrix ``M`` ``(n_out, n_in)`` along one axis (:func:`profile_matrix`), so
the numpy and torch versions apply the very same operator. :func:`estimate_softness` reads
how soft a thick scan's profile is from the scan itself (``--adapt`` trains at it).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from scipy.special import ndtr
from torch import Tensor

from thinslice.ct import HU_WINDOW
from thinslice.errors import ConfigError

# sub-samples per thin cell when a Gaussian softens the box (numerical cell integral)
_SUBSAMPLES = 64


def slice_profile_kernel(thickness_mm: float, spacing_mm: float, softness: float = 0.0) -> np.ndarray:
    """Taps of a slice profile sampled on a thin grid; odd length, centred, sums to 1.

    Args:
        thickness_mm: width of the box (the slice thickness).
        spacing_mm: spacing of the thin grid the taps live on.
        softness: FWHM in mm of a Gaussian the box is convolved with (0 = plain box).

    Returns:
        float64 taps; tap ``k`` (from the centre) is the mean of the profile over the
        cell ``[k - 1/2, k + 1/2]`` (in samples), normalised to sum to 1.
    """
    if not thickness_mm > 0 or not spacing_mm > 0 or softness < 0:
        raise ConfigError(
            f"thickness and spacing must be > 0 and softness >= 0, got {thickness_mm}, {spacing_mm}, {softness}"
        )
    half = 0.5 * thickness_mm / spacing_mm  # box half-width in samples
    sigma = softness / spacing_mm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    radius = int(math.ceil(half + 4.0 * sigma - 0.5 + 1e-9))
    k = np.arange(-radius, radius + 1, dtype=np.float64)
    if sigma == 0:
        # exact overlap of the box [-half, half] with each cell [k - 1/2, k + 1/2]
        taps = np.clip(np.minimum(k + 0.5, half) - np.maximum(k - 0.5, -half), 0.0, None)
    else:
        sub = (np.arange(_SUBSAMPLES) + 0.5) / _SUBSAMPLES - 0.5
        x = k[:, None] + sub[None, :]
        # box convolved with a Gaussian, in closed form
        taps = (ndtr((x + half) / sigma) - ndtr((x - half) / sigma)).mean(axis=1)
    taps = taps / taps.sum()
    # trim zero end taps (e.g. an integer half-width), keeping the kernel centred
    while len(taps) > 1 and taps[0] < 1e-12 and taps[-1] < 1e-12:
        taps = taps[1:-1]
    return taps


@functools.lru_cache(maxsize=256)
def _profile_matrix(
    n_in: int, thin_spacing: float, thick_spacing: float, thickness: float, offset: float, softness: float, count: int
) -> tuple[np.ndarray, np.ndarray]:
    step = thick_spacing / thin_spacing
    if count < 0:
        count = int(math.floor((n_in - 1 - offset) / step + 1e-9)) + 1
    if n_in < 1 or count < 1 or offset < 0:
        raise ConfigError(f"no thick sample fits: {n_in} thin samples, offset {offset}, step {step:.4g}")
    taps = slice_profile_kernel(thickness, thin_spacing, softness)
    radius = len(taps) // 2
    # convolution with replicated edges as a matrix (n_in, n_in)
    conv = np.zeros((n_in, n_in))
    rows = np.arange(n_in)
    for j, t in enumerate(taps):
        cols = np.clip(rows + j - radius, 0, n_in - 1)
        np.add.at(conv, (rows, cols), t)
    positions = offset + step * np.arange(count)
    lo = np.clip(np.floor(positions).astype(int), 0, max(0, n_in - 2))
    frac = np.clip(positions - lo, 0.0, 1.0)
    hi = np.minimum(lo + 1, n_in - 1)
    interp = np.zeros((count, n_in))
    np.add.at(interp, (np.arange(count), lo), 1 - frac)
    np.add.at(interp, (np.arange(count), hi), frac)
    return interp @ conv, positions


def profile_matrix(
    n_in: int,
    thin_spacing: float,
    thick_spacing: float,
    thickness: float,
    offset: float = 0.0,
    softness: float = 0.0,
    count: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The degradation along one axis as a matrix.

    Args:
        n_in: thin samples along the axis.
        thin_spacing: their spacing (mm; only ratios matter).
        thick_spacing: spacing of the thick samples.
        thickness: width of the thick profile.
        offset: position of the first thick sample, in thin samples (>= 0).
        softness: Gaussian FWHM (mm) softening the box.
        count: number of thick samples (default: all that fit in ``[offset, n_in - 1]``).

    Returns:
        ``M`` float64 ``(count, n_in)`` (rows sum to 1) and the positions ``(count,)`` of
        the thick samples in thin-sample units.
    """
    m, pos = _profile_matrix(
        int(n_in),
        float(thin_spacing),
        float(thick_spacing),
        float(thickness),
        float(offset),
        float(softness),
        -1 if count is None else int(count),
    )
    return m.copy(), pos.copy()


def profile_degrade(
    thin: np.ndarray,
    thin_spacing: float,
    thick_spacing: float,
    thickness: float,
    axis: int = 0,
    offset: float = 0.0,
    softness: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Simulate a thick acquisition of ``thin`` along ``axis``.

    Args:
        thin: the thin array (any dimensionality).
        thin_spacing: its spacing along ``axis``.
        thick_spacing: spacing of the thick slices (any ratio, not only whole multiples).
        thickness: width of the thick slice profile (box).
        axis: the slice axis.
        offset: position of the first thick slice in thin-slice index units.
        softness: Gaussian FWHM (mm) softening the box.

    Returns:
        the thick array (float32, ``axis`` shortened to the thick slices) and the positions
        of its slices in thin-slice index units.
    """
    arr = np.asarray(thin, dtype=np.float32)
    m, pos = profile_matrix(arr.shape[axis], thin_spacing, thick_spacing, thickness, offset, softness)
    moved = np.moveaxis(arr, axis, -1)
    out = moved @ m.T.astype(np.float32)
    return np.ascontiguousarray(np.moveaxis(out, -1, axis)), pos


def profile_degrade_torch(
    images: Tensor,
    thin_spacing: float,
    thick_spacing: float,
    thickness: float,
    offset: float = 0.0,
    softness: float = 0.0,
    count: int | None = None,
    dim: int = -1,
) -> Tensor:
    """Torch version of :func:`profile_degrade` along ``dim`` of a batch (differentiable).

    E.g. ``images`` ``(S, h, x)`` degraded along the in-plane axis ``x`` gives
    ``(S, h, count)``.
    """
    m, _ = profile_matrix(images.shape[dim], thin_spacing, thick_spacing, thickness, offset, softness, count)
    mt = torch.from_numpy(m).to(device=images.device, dtype=images.dtype)
    return (images.movedim(dim, -1) @ mt.T).movedim(-1, dim)


def smore_pair(
    images: Tensor,
    step: float,
    scale: int,
    offset: float = 0.0,
    softness: float = 0.0,
    thickness: float = 1.0,
    thick_softness: float | None = None,
) -> tuple[Tensor, Tensor] | None:
    """In-plane training pair under the acquisition model (SMORE with slice profiles).

    The last axis of ``images`` ``(S, h, x)`` (pixel units) plays the slice axis. The
    target is the thin acquisition: box ``step`` pixels wide, sampled every ``step``
    pixels; the input is the thick one: box ``thickness * scale * step`` wide (the
    scan's slice thickness over its spacing: 1 for contiguous slices), sampled every
    ``scale * step`` pixels, at the target's rows ``0, r, 2r, ...``. ``softness`` (Gaussian
    FWHM, pixels) softens both boxes; ``thick_softness``, when given, the thick one instead.

    Returns:
        ``(input (S, 1, m, h), target (S, 1, r*(m-1)+1, h))`` with the degraded axis as
        dim -2, or None when the image is too short.
    """
    x = images.shape[-1]
    n_target = int(math.floor((x - 1 - offset) / step + 1e-9)) + 1
    n_target = (n_target - 1) // scale * scale + 1
    if n_target < scale + 1:
        return None
    m = (n_target - 1) // scale + 1
    thin = profile_degrade_torch(images, 1.0, step, step, offset, softness, count=n_target)
    soft = softness if thick_softness is None else thick_softness
    thick = profile_degrade_torch(images, 1.0, scale * step, thickness * scale * step, offset, soft, count=m)
    as_rows = lambda t: t.transpose(-1, -2).unsqueeze(1).contiguous()  # noqa: E731
    return as_rows(thick), as_rows(thin)


#: The softness values :func:`estimate_softness` chooses from (Gaussian FWHM over the thickness).
SOFTNESS_GRID = tuple(round(0.1 * k, 1) for k in range(21))


def estimate_softness(
    thick: np.ndarray,
    slice_spacing: float,
    thickness: float,
    pixel_spacing: tuple[float, float],
    window: tuple[float, float] = HU_WINDOW,
    max_lines: int = 4096,
) -> float | None:
    """How much softer than a box the slice profile of a thick scan looks, from the scan alone.

    A CT's in-plane axes are thin. Degraded along one of them with the box ``thickness``
    wide softened by a Gaussian of FWHM ``s`` times the thickness, and sampled every
    ``slice_spacing``, in-plane lines should have the power spectrum of the slice axis when
    ``s`` is the scan's own (ESPRESO's idea, Han et al. 2021, reduced to one number). The
    estimate is the ``s`` of :data:`SOFTNESS_GRID` whose log spectrum (its mean removed,
    from the second frequency up) is closest. It cannot tell a box from a slightly softened
    one (the difference lies mostly above the slice axis's Nyquist frequency): below about
    0.5 it reads low.

    Args:
        thick: ``(D, H, W)`` in HU, slice axis first.
        slice_spacing, thickness: of the slices, mm.
        pixel_spacing: ``(H, W)`` spacing of the in-plane axes, mm.
        window: HU clipped to before the spectra (as the networks see the scan).
        max_lines: lines per direction used (an even spread), to bound the work.

    Returns:
        the softness, or None when the scan is too short (fewer than 8 slices, or in-plane
        lines shorter than 8 slice spacings) to tell.
    """
    lo, hi = window
    x = np.clip(np.asarray(thick, dtype=np.float32), lo, hi)
    d, h, w = x.shape
    lines = [  # (lines along one in-plane axis, its spacing)
        (x.reshape(-1, w), float(pixel_spacing[1])),
        (x.transpose(0, 2, 1).reshape(-1, h), float(pixel_spacing[0])),
    ]
    n_thick = min(int((a.shape[1] - 1) * p / slice_spacing) + 1 for a, p in lines)
    length = min(d, n_thick, 32)  # Welch segment, in slice spacings
    if length < 8:
        return None
    columns = _varying(x.reshape(d, -1).T, max_lines)
    if not len(columns):
        return None
    target = np.log(_power(columns, length)[2:])
    lines = [(a, p) for a, p in ((_varying(a, max_lines // 2), p) for a, p in lines) if len(a)]
    errors = []
    for s in SOFTNESS_GRID:
        power = np.zeros(length // 2 + 1)
        for a, p in lines:
            degraded, _ = profile_degrade(a, p, slice_spacing, thickness, axis=1, softness=s * thickness)
            power += _power(degraded, length) * len(a)
        errors.append(float(np.var(target - np.log(power[2:]))))
    return SOFTNESS_GRID[int(np.argmin(errors))]


def _varying(lines: np.ndarray, limit: int) -> np.ndarray:
    """Up to ``limit`` of the lines that are not flat (air, padding), evenly spread."""
    lines = lines[lines.std(axis=1) > 1.0]  # HU
    step = max(1, math.ceil(len(lines) / limit))
    return lines[::step]


def _power(lines: np.ndarray, length: int) -> np.ndarray:
    """Welch power spectrum of the rows of ``lines``: Hann segments of ``length``, half overlapping."""
    taper = np.hanning(length).astype(np.float32)
    starts = range(0, lines.shape[1] - length + 1, max(1, length // 2))
    segments = np.concatenate([lines[:, i : i + length] for i in starts])
    segments = segments - segments.mean(axis=1, keepdims=True)
    return (np.abs(np.fft.rfft(segments * taper, axis=1)) ** 2).mean(axis=0) + 1e-12
