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
how soft a thick scan's profile is from the scan itself (the bundled models for soft
profiles are picked by it, and ``--adapt`` trains at it).
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import numpy as np

from thinslice import grid
from thinslice.checks import not_negative, positive
from thinslice.ct import HU_WINDOW
from thinslice.errors import ConfigError
from thinslice.volume import Volume

if TYPE_CHECKING:  # torch is imported where it is used: classical methods start without it
    from torch import Tensor

# sub-samples per thin cell when a Gaussian softens the box (numerical cell integral)
_SUBSAMPLES = 64
#: A bell-shaped slice profile (a Gaussian of some FWHM, as helical scans have) is a box this
#: fraction of that FWHM wide, softened by a Gaussian of that FWHM: the same operator.
BELL_BOX = 1e-4


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
    positive(thickness_mm, "the slice thickness", "mm")
    positive(spacing_mm, "the slice spacing", "mm")
    not_negative(softness, "softness")
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
        taps = (_normal_cdf((x + half) / sigma) - _normal_cdf((x - half) / sigma)).mean(axis=1)
    taps = taps / taps.sum()
    # trim zero end taps (e.g. an integer half-width), keeping the kernel centred
    while len(taps) > 1 and taps[0] < 1e-12 and taps[-1] < 1e-12:
        taps = taps[1:-1]
    return taps


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    # torch's, not scipy's: importing scipy.special costs 0.2 s of every upsample's start-up
    import torch

    return torch.special.ndtr(torch.from_numpy(x)).numpy()


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


def average_slices(data: np.ndarray, thickness: float, axis: int = 0) -> np.ndarray:
    """Every slice averaged over a box ``thickness`` slices wide centred on it: the same
    positions, thicker slices (what :func:`profile_degrade` gives at the input's own
    spacing, edges replicated, without its dense matrix). Any real dtype in, float32 out."""
    from scipy import ndimage  # here: only --output-thickness needs it (0.2 s to import)

    taps = slice_profile_kernel(thickness, 1.0).astype(np.float32)  # odd and symmetric
    return ndimage.convolve1d(np.asarray(data), taps, axis=axis, output=np.float32, mode="nearest")


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
    import torch

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
    n_target = grid.usable_slices(n_target, scale)
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
#: Spectra leave out stretches that touch air (outside the body, airways): an air boundary
#: is a step that in-plane lines cross and the slice axis mostly runs along, which would
#: read as a sharper in-plane axis.
AIR_HU = -950.0


#: In-plane lines shorter than this (pixels) cross too few structures to stand for the slice
#: axis: crops 48-96 pixels wide read some boxes as 0.5-0.8, 128 and wider at most 0.5.
MIN_PIXELS = 128
#: An estimated softness from which a scan's profile counts as soft: boxes read 0.0-0.3 and
#: a box softened by a Gaussian as wide as the thickness 0.6-0.9 (BENCHMARKS.md); the bundled
#: models for soft profiles lose to the profile models at a true softness of 0.5 and win at 1.0.
SOFT_PROFILE = 0.6
#: Where the models for soft profiles take over from the profile models as slices overlap
#: (:func:`soft_weight`): their outputs are blended with a weight rising linearly over this
#: range of equivalent softness (:func:`equivalent_softness`). The profile family was trained
#: up to 1.0, the soft one from 1.0. Overlapping reconstructions 1.5 spacings thick (0.76)
#: are made 0.1-0.8 dB better by the blend than by the profile family alone, and within 0.2 dB
#: of the better family; from 1.75 spacings (0.98) the soft family wins everywhere (BENCHMARKS.md,
#: "Overlapping reconstructions").
BLEND_SOFTNESS = (0.5, 1.0)
_FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))  # a Gaussian's FWHM over its sigma


def equivalent_softness(thickness: float, softness: float = 0.0) -> float:
    """How soft slices ``thickness`` spacings thick, softened by ``softness`` times their
    thickness, look to a model trained on contiguous slices: the FWHM (in spacings) of the
    Gaussian that widens a box one spacing wide to the same second moment. Contiguous
    slices (thickness 1) give ``softness``; thinner ones (gaps) 0 when unsoftened.

    Raises:
        ConfigError: a thickness that is not positive or a softness below 0 (or not finite).
    """
    _check_profile(thickness, softness)
    variance = (thickness**2 - 1.0) / 12.0 + (softness * thickness / _FWHM) ** 2
    return _FWHM * math.sqrt(max(variance, 0.0))


def _check_profile(thickness: float, softness: float) -> None:
    positive(thickness, "the slice thickness", "spacings")
    not_negative(softness, "softness")


def soft_weight(thickness: float, softness: float | None) -> float:
    """How much of thick slices the bundled models for soft profiles make (0 to 1; the
    profile models the rest): all of it when the profile, as estimated from the image
    (``softness``; None when the scan is too small to tell, read as a box), reads
    :data:`SOFT_PROFILE` or more; otherwise a share rising over :data:`BLEND_SOFTNESS` with
    the equivalent softness of the slices' overlap (``thickness`` in spacings, exact from
    the header) and that estimate."""
    estimate = 0.0 if softness is None else softness
    _check_profile(thickness, estimate)
    if estimate >= SOFT_PROFILE:
        return 1.0
    lo, hi = BLEND_SOFTNESS
    return float(min(1.0, max(0.0, (equivalent_softness(thickness, estimate) - lo) / (hi - lo))))


def thin_weight(thickness: float, r: int) -> float:
    """How much of slices ``thickness`` spacings thick, made ``r`` times finer, the models for
    thin slices make (0 to 1; the thick-slice models the rest). Slices with gaps between them
    lie between the two: the thin-slice models take slices as thick as the output spacing,
    the thick-slice ones as thick as ``r`` of them, so the share falls with the logarithm of
    the thickness from 1 at one output spacing to 0 at ``r`` (BENCHMARKS.md, "Overlapping
    reconstructions": slices 0.6 of their spacing thick at x2, 1.2 output spacings, were
    made 1.4-1.7 dB better by the blend than by the thick-slice model alone)."""
    slices = thickness * r  # in output spacings
    if slices <= 1.0:
        return 1.0
    if slices >= r:
        return 0.0
    return float(math.log(r / slices) / math.log(r))


def estimate_softness(volume: Volume, max_lines: int = 2048) -> float | None:
    """How much softer than a box the slice profile of a thick scan looks, from the scan alone.

    A CT's in-plane axes are thin. Degraded along one of them with the box as wide as the
    slices are thick, softened by a Gaussian of FWHM ``s`` times the thickness, and sampled
    at the slice spacing, in-plane lines should have the power spectrum of the slice axis
    when ``s`` is the scan's own (ESPRESO's idea, Han et al. 2021, reduced to one number).
    The estimate is the ``s`` of :data:`SOFTNESS_GRID` whose log spectrum (its mean
    removed, from the second frequency up; HU clipped to the networks' window, stretches in
    air left out) is closest. It cannot tell a box from a slightly softened one (the
    difference lies mostly above the slice axis's Nyquist frequency): below about 0.5 it
    reads low.

    Args:
        volume: the thick scan (its slice spacing and thickness are used).
        max_lines: about how many lines per direction are used (an even spread).

    Returns:
        the softness, or None when the scan is too small (fewer than 8 slices, in-plane
        lines shorter than 8 slice spacings or :data:`MIN_PIXELS` pixels) or holds too
        little tissue to tell.
    """
    return estimate_softness_of(volume.data, volume.voxel_spacing, volume.thickness, max_lines)


def estimate_softness_of(
    x: np.ndarray, voxel_spacing: tuple[float, float, float], thickness: float, max_lines: int = 2048
) -> float | None:
    """:func:`estimate_softness` of the voxels ``x`` ``(D, H, W)`` (HU) with ``voxel_spacing``
    (slice, row, column; mm, only ratios matter) and slices ``thickness`` mm thick."""
    if max_lines < 1:
        raise ConfigError(f"max_lines must be at least 1, got {max_lines}")
    spacing, sp_h, sp_w = voxel_spacing
    d, h, w = x.shape
    every_h, every_w = max(1, math.ceil(d * h / max_lines)), max(1, math.ceil(d * w / max_lines))
    lines = [  # (lines along one in-plane axis, its spacing), picked before any copy
        (_window(x[:, ::every_h, :].reshape(-1, w)), sp_w),
        (_window(x[:, :, ::every_w].transpose(0, 2, 1).reshape(-1, h)), sp_h),
    ]
    length = min(d, 32, *(int((a.shape[1] - 1) * p / spacing) + 1 for a, p in lines))  # segment, in slices
    if length < 8 or min(h, w) < MIN_PIXELS:
        return None
    every = max(1, int(math.sqrt(h * w / max_lines)))
    columns = _power(_window(x[:, ::every, ::every].reshape(d, -1).T), length)
    if columns is None:
        return None
    target = np.log(columns[0][2:])
    errors = []
    for s in SOFTNESS_GRID:
        total, count = np.zeros(length // 2 + 1), 0
        for a, p in lines:
            found = _power(profile_degrade(a, p, spacing, thickness, axis=1, softness=s * thickness)[0], length)
            if found is not None:
                total, count = total + found[0] * found[1], count + found[1]
        if not count:
            return None
        errors.append(float(np.var(target - np.log(total[2:] / count))))
    return SOFTNESS_GRID[int(np.argmin(errors))]


def _window(lines: np.ndarray) -> np.ndarray:
    return np.clip(lines.astype(np.float32), *HU_WINDOW)


def _power(lines: np.ndarray, length: int) -> tuple[np.ndarray, int] | None:
    """Welch power spectrum of the rows of ``lines`` (Hann segments of ``length``, half
    overlapping, none that touches air) and how many segments it averages; None if none."""
    taper = np.hanning(length).astype(np.float32)
    starts = range(0, lines.shape[1] - length + 1, max(1, length // 2))
    segments = np.concatenate([lines[:, i : i + length] for i in starts])
    segments = segments[segments.min(axis=1) > AIR_HU]
    if not len(segments):
        return None
    segments = segments - segments.mean(axis=1, keepdims=True)
    return (np.abs(np.fft.rfft(segments * taper, axis=1)) ** 2).mean(axis=0) + 1e-12, len(segments)
