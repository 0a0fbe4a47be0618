"""Thick-slice simulation: make a coarser scan from a finer one.

Two models of a thick-slice acquisition at ``r`` times the slice spacing:

* :func:`decimate` keeps every ``r``-th slice (the protocol of Fang et al., CVPR 2022);
* :func:`slab` also averages each kept slice over a slice profile ``r`` slices wide,
  centred on it: the partial-volume blur of a real thick reconstruction.

Both keep slice 0 where it was, so a volume of ``r * k + 1`` slices becomes one of
``k + 1`` slices whose slice ``j`` sits at original slice ``r * j``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from thinslice.grid import check_scale
from thinslice.volume import Volume


def slab_profile(r: int) -> np.ndarray:
    """Slice weights of a box profile ``r`` slices wide, centred on a slice.

    Odd ``r``: ``r`` equal taps. Even ``r``: ``r + 1`` taps with half weight at both
    ends, so the profile still spans exactly ``r`` slice spacings. Sums to 1.
    """
    r = check_scale(r)
    taps = np.ones(r if r % 2 else r + 1)
    if r % 2 == 0:
        taps[[0, -1]] = 0.5
    return taps / taps.sum()


def decimate_array(data: np.ndarray, r: int) -> np.ndarray:
    """Keep every ``r``-th slice of a ``(D, H, W)`` array (a view, not a copy)."""
    return data[:: check_scale(r)]


def slab_array(data: np.ndarray, r: int) -> np.ndarray:
    """Average over the slab profile, then keep every ``r``-th slice; float32 HU out."""
    blurred = ndimage.convolve1d(data.astype(np.float32), slab_profile(r), axis=0, mode="nearest")
    return blurred[:: check_scale(r)]


def decimate(volume: Volume, r: int) -> Volume:
    """Thick-slice copy keeping every ``r``-th slice; slice spacing times ``r``."""
    return volume.with_data(np.ascontiguousarray(decimate_array(volume.data, r)), volume.slice_spacing * r)


def slab(volume: Volume, r: int) -> Volume:
    """Thick-slice copy with partial-volume blur over ``r`` slices; spacing times ``r``."""
    return volume.with_data(slab_array(volume.data, r), volume.slice_spacing * r)


DEGRADATIONS = {"decimate": decimate_array, "slab": slab_array}
