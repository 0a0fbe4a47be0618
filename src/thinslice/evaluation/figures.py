"""Pictures a user can look at: coronal and sagittal views side by side (matplotlib, Agg).

One column per volume (a thick input, its upsampled versions, a reference), and the
uncertainty map as a last column when there is one. Each view is drawn at its physical
aspect ratio (mm, not voxels), superior up, patient right on the left of coronal views
and anterior on the left of sagittal views. The CT window follows the content: soft
tissue always, plus lung when the volume holds lung, else bone when it holds bone
(:func:`choose_windows`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from thinslice.ct import ct_value_problem
from thinslice.io.atomic import atomic_path
from thinslice.volume import Volume


@dataclass(frozen=True)
class Window:
    """A display window: HU ``level`` (centre) and ``width``."""

    name: str
    level: float
    width: float

    @property
    def lo(self) -> float:
        return self.level - self.width / 2

    @property
    def hi(self) -> float:
        return self.level + self.width / 2

    @property
    def label(self) -> str:
        return f"{self.name} W{self.width:g} L{self.level:g}"


SOFT_TISSUE = Window("soft tissue", 40.0, 400.0)
LUNG = Window("lung", -600.0, 1500.0)
BONE = Window("bone", 400.0, 1800.0)
#: A volume "holds lung" when at least this share of its voxels lies in LUNG_HU
#: (aerated lung is about -850 to -700 HU; air outside the body is below -950).
LUNG_FRACTION, LUNG_HU = 0.05, (-950.0, -600.0)
#: ... and "holds bone" when at least this share lies above BONE_HU.
BONE_FRACTION, BONE_HU = 0.005, 300.0

#: Layout, inches: panel width, gap between panels, room for row labels, column titles
#: and the figure title; the PNG is written at DPI dots per inch.
PANEL_IN, GAP_IN, LABEL_IN, HEAD_IN, TITLE_IN, DPI = 2.4, 0.08, 0.8, 0.3, 0.3, 100
_ROW_IN = (0.6, 4.0)  # a row's height is clamped to this range (very flat or tall views)


def choose_windows(data: np.ndarray) -> list[Window]:
    """The windows that show ``data`` (HU) well: soft tissue, plus lung or bone.

    Values that do not look like CT (see :func:`thinslice.ct.ct_value_problem`) get one
    window from their 1st to 99th percentile instead.
    """
    sample = data[:, ::2, ::2] if data.ndim == 3 else data  # the shares, from a quarter of the voxels
    if ct_value_problem(data) is not None:
        lo, hi = (float(v) for v in np.percentile(sample, [1, 99]))
        hi = hi if hi > lo else lo + 1.0
        return [Window("p1-p99", (lo + hi) / 2, hi - lo)]
    n = max(1, sample.size)
    lung = np.count_nonzero((sample > LUNG_HU[0]) & (sample < LUNG_HU[1])) / n
    if lung >= LUNG_FRACTION:
        return [SOFT_TISSUE, LUNG]
    if np.count_nonzero(sample > BONE_HU) / n >= BONE_FRACTION:
        return [SOFT_TISSUE, BONE]
    return [SOFT_TISSUE]


@dataclass(frozen=True)
class _View:
    image: np.ndarray  # (slices, columns), slice 0 first
    aspect: float  # slice spacing / column spacing
    height_mm: float
    width_mm: float


def _views(volume: Volume) -> tuple[_View, _View]:
    """The middle coronal and sagittal images, oriented for display (see the module doc)."""
    d, h, w = volume.data.shape
    g = volume.geometry
    col_axis, row_axis = (a for a in range(3) if a != g.slice_axis)  # W, then H (Volume.itk_array)
    direction = np.asarray(g.direction, dtype=float).reshape(3, 3)
    sz, s_w, s_h = g.slice_spacing, float(g.spacing[col_axis]), float(g.spacing[row_axis])
    coronal, sagittal = volume.data[:, h // 2, :], volume.data[:, :, w // 2]
    if direction[0, col_axis] < 0:  # W runs to the patient's right: flip, right shows left
        coronal = coronal[:, ::-1]
    if direction[1, row_axis] < 0:  # H runs anterior: flip, anterior shows left
        sagittal = sagittal[:, ::-1]
    if g.slice_direction[2] < 0:  # slices run downwards: flip, superior shows up
        coronal, sagittal = coronal[::-1], sagittal[::-1]
    return (
        _View(np.asarray(coronal), sz / s_w, d * sz, w * s_w),
        _View(np.asarray(sagittal), sz / s_h, d * sz, h * s_h),
    )


def compare_views(
    panels: Sequence[tuple[str, Volume]],
    path: str | os.PathLike[str],
    *,
    uncertainty: Volume | None = None,
    windows: Sequence[Window] | None = None,
    title: str = "",
) -> Path:
    """Save a PNG: one column per panel; a coronal and a sagittal row per window.

    The figure is ``LABEL_IN + n * (PANEL_IN + GAP_IN)`` inches wide for ``n`` columns
    (at ``DPI``, rounded to whole pixels), each row as tall as its view's physical aspect
    asks (``PANEL_IN`` times height over width in mm, kept within ``0.6`` to ``4`` inches).

    Args:
        panels: ``(label, volume)`` pairs covering the same physical extent (a thick
            input and its upsampled versions); each is drawn at its true aspect ratio.
        path: the PNG to write (atomically).
        uncertainty: optional per-voxel disagreement (HU) shown as an extra column, in
            the rows of the first window.
        windows: the CT windows; default :func:`choose_windows` of the last panel.
        title: a line above the figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = list(panels) + ([("uncertainty (HU)", uncertainty)] if uncertainty is not None else [])
    windows = list(windows) if windows is not None else choose_windows(panels[-1][1].data)
    views = [_views(vol) for _, vol in columns]
    rows = [(window, v) for window in windows for v in (0, 1)]
    heights = [float(np.clip(PANEL_IN * views[0][v].height_mm / views[0][v].width_mm, *_ROW_IN)) for _, v in rows]
    top = HEAD_IN + (TITLE_IN if title else 0.0)
    width_in = round(DPI * (LABEL_IN + len(columns) * (PANEL_IN + GAP_IN))) / DPI  # whole pixels
    height_in = round(DPI * (top + sum(heights) + GAP_IN * len(rows))) / DPI
    fig = plt.figure(figsize=(width_in, height_in), dpi=DPI, facecolor="white")
    y = height_in - top
    for row, ((window, v), row_in) in enumerate(zip(rows, heights, strict=True)):
        y -= row_in
        for col, (label, vol) in enumerate(columns):
            is_unc = uncertainty is not None and vol is uncertainty
            if is_unc and window is not windows[0]:
                continue
            left = LABEL_IN + col * (PANEL_IN + GAP_IN)
            ax = fig.add_axes((left / width_in, y / height_in, PANEL_IN / width_in, row_in / height_in))
            view = views[col][v]
            vmax = max(1.0, float(np.percentile(vol.data, 99.5))) if is_unc else window.hi
            ax.imshow(
                view.image,
                aspect=view.aspect,
                origin="lower",
                interpolation="nearest",
                cmap="magma" if is_unc else "gray",
                vmin=0.0 if is_unc else window.lo,
                vmax=vmax,
            )
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if row == 0:
                ax.set_title(label if not is_unc else f"{label}, 0-{vmax:.0f}", fontsize=8)
            if col == 0:
                text = f"{('coronal', 'sagittal')[v]}\n{window.name}\nW{window.width:g} L{window.level:g}"
                fig.text(0.08 / width_in, (y + row_in / 2) / height_in, text, fontsize=7, va="center")
        y -= GAP_IN
    if title:
        fig.suptitle(title, fontsize=9, y=1 - 0.5 * TITLE_IN / height_in, va="center")
    out = Path(path)
    try:
        with atomic_path(out, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=DPI, facecolor="white")
    finally:
        plt.close(fig)
    return out
