"""Pictures a user can look at: coronal and sagittal views side by side (matplotlib, Agg)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from thinslice.io.atomic import atomic_path
from thinslice.volume import Volume

WINDOW = (-1000.0, 400.0)  # lung-to-soft-tissue window, HU


def _views(volume: Volume) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Central coronal and sagittal images and their display aspect (slice / in-plane mm)."""
    d, h, w = volume.data.shape
    sx, sy = volume.geometry.inplane_spacing
    sz = volume.slice_spacing
    return volume.data[:, h // 2, :], volume.data[:, :, w // 2], sz / sx, sz / sy


def compare_views(
    panels: Sequence[tuple[str, Volume]],
    path: str | os.PathLike[str],
    *,
    uncertainty: Volume | None = None,
    window: tuple[float, float] = WINDOW,
    title: str = "",
) -> Path:
    """Save a PNG: one column per panel, coronal on top and sagittal below.

    Args:
        panels: ``(label, volume)`` pairs covering the same physical extent (a thick
            input and its upsampled versions); each is drawn at its true aspect ratio.
        path: the PNG to write (atomically).
        uncertainty: optional per-voxel disagreement (HU) shown as an extra column.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = list(panels) + ([("uncertainty (HU)", uncertainty)] if uncertainty is not None else [])
    fig, axes = plt.subplots(2, len(columns), figsize=(2.6 * len(columns), 5.4), squeeze=False)
    for col, (label, vol) in enumerate(columns):
        assert vol is not None
        cor, sag, a_cor, a_sag = _views(vol)
        is_unc = uncertainty is not None and vol is uncertainty
        kw = (
            {"cmap": "magma", "vmin": 0, "vmax": max(1.0, float(np.percentile(vol.data, 99.5)))}
            if is_unc
            else {"cmap": "gray", "vmin": window[0], "vmax": window[1]}
        )
        for row, (img, aspect) in enumerate(((cor, a_cor), (sag, a_sag))):
            ax = axes[row, col]
            ax.imshow(img, aspect=aspect, origin="lower", interpolation="nearest", **kw)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(label, fontsize=9)
        axes[0, 0].set_ylabel("coronal")
        axes[1, 0].set_ylabel("sagittal")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = Path(path)
    try:
        with atomic_path(out, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)
    return out
