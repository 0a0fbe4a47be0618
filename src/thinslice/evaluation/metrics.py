"""Image-quality metrics for synthesized slices.

All metrics compare a synthesized volume with the ground truth, both ``(D, H, W)`` HU
arrays on the same grid. Intensities follow Fang et al. (CVPR 2022): HU clipped to
[-1024, 3072] and scaled to [0, 1] (``data_range=1``), except ``psnr_body``, which uses
the soft-tissue-and-lung window [-1000, 1000] inside a body mask.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from thinslice.ct import HU_WINDOW

HU_RANGE = HU_WINDOW
BODY_WINDOW = (-1000.0, 1000.0)
BODY_THRESHOLD_HU = -500.0

METRIC_NAMES = (
    "psnr_paper",
    "psnr_synth",
    "psnr_body",
    "ssim_axial",
    "ssim_coronal",
    "ssim_sagittal",
)


def scale_hu(data: np.ndarray, window: tuple[float, float] = HU_RANGE) -> np.ndarray:
    """Clip HU to ``window`` and map it linearly to [0, 1] (float32)."""
    lo, hi = window
    return ((np.clip(data.astype(np.float32), lo, hi) - lo) / (hi - lo)).astype(np.float32)


def synthesized_mask(num_slices: int, r: int, first: int = 0) -> np.ndarray:
    """Boolean per slice: True where a slice was synthesized (acquired slices at ``first + k*r``)."""
    return (np.arange(num_slices) - first) % r != 0


def body_mask(truth: np.ndarray) -> np.ndarray:
    """Voxels inside the body: above -500 HU, holes filled per axial slice, largest blob."""
    mask = truth > BODY_THRESHOLD_HU
    mask = ndimage.binary_opening(mask, structure=np.ones((1, 3, 3), bool))
    labels, n = ndimage.label(mask)
    if n > 1:
        sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1))
        mask = labels == (1 + int(np.argmax(sizes)))
    for k in range(mask.shape[0]):
        mask[k] = ndimage.binary_fill_holes(mask[k])
    return mask


def psnr(truth: np.ndarray, pred: np.ndarray) -> float:
    """PSNR (dB) of arrays already scaled to [0, 1]; ``inf`` when identical."""
    if np.array_equal(truth, pred):
        return float("inf")
    return float(peak_signal_noise_ratio(truth, pred, data_range=1.0))


def ssim_plane(truth: np.ndarray, pred: np.ndarray, axis: int) -> float:
    """Mean 2-D SSIM over the images obtained by fixing index ``axis`` (data_range 1)."""
    min_side = min(s for i, s in enumerate(truth.shape) if i != axis)
    win = min(7, min_side if min_side % 2 else min_side - 1)
    if win < 3:
        return float("nan")
    return float(structural_similarity(truth, pred, data_range=1.0, channel_axis=axis, win_size=win))


def compare(truth_hu: np.ndarray, pred_hu: np.ndarray, r: int, first: int = 0) -> dict[str, float]:
    """All metrics of ``pred_hu`` against ``truth_hu``; slices ``first + k*r`` count as
    acquired (:func:`compare_where` with those slices left out of the synthesized ones)."""
    return compare_where(truth_hu, pred_hu, synthesized_mask(truth_hu.shape[0], r, first))


def compare_where(truth_hu: np.ndarray, pred_hu: np.ndarray, synth: np.ndarray) -> dict[str, float]:
    """All metrics of ``pred_hu`` against ``truth_hu``; ``synth`` (per slice) marks the
    slices between acquired positions.

    Returns:
        ``psnr_paper`` (whole volume), ``psnr_synth`` (synthesized slices only),
        ``psnr_body`` (window [-1000, 1000], synthesized slices, inside the body; NaN if
        the body mask is empty), ``ssim_axial`` (synthesized slices), ``ssim_coronal``,
        ``ssim_sagittal`` (all images of that plane). With no synthesized slice, the
        metrics of synthesized slices are NaN.
    """
    if truth_hu.shape != pred_hu.shape:
        raise ValueError(f"shape mismatch: truth {truth_hu.shape} vs prediction {pred_hu.shape}")
    t = scale_hu(truth_hu)
    p = scale_hu(pred_hu)
    synth = np.asarray(synth, dtype=bool)
    nan = float("nan")
    tb = scale_hu(truth_hu[synth], BODY_WINDOW)
    pb = scale_hu(pred_hu[synth], BODY_WINDOW)
    body = body_mask(truth_hu)[synth]
    return {
        "psnr_paper": psnr(t, p),
        "psnr_synth": psnr(t[synth], p[synth]) if synth.any() else nan,
        "psnr_body": psnr(tb[body], pb[body]) if body.any() else nan,
        "ssim_axial": ssim_plane(t[synth], p[synth], axis=0) if synth.any() else nan,
        "ssim_coronal": ssim_plane(t, p, axis=1),
        "ssim_sagittal": ssim_plane(t, p, axis=2),
    }
