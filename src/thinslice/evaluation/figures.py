"""Pictures a user can look at: coronal and sagittal views side by side (matplotlib, Agg).

One column per volume (a thick input, its upsampled versions, a reference), and the
uncertainty map as a last column when there is one. The two views are the planes through
the slice axis (coronal and sagittal for axial slices), each named for its plane and drawn
at its physical aspect ratio (mm, not voxels): superior up (anterior up in axial views),
patient right on the left of coronal and axial views, anterior on the left of sagittal ones.
The CT window follows the content: soft tissue always, plus lung when the volume holds
lung, else bone when it holds bone (:func:`choose_windows`).
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
#: A volume "holds lung" when at least this share of its voxels lies in LUNG_HU, outside
#: the air around the body (aerated lung is about -850 to -700 HU; the air around the body
#: about -1000, but its noise reaches -900 in some scans: :func:`_not_outside_air`).
LUNG_FRACTION, LUNG_HU = 0.05, (-950.0, -600.0)
#: ... and "holds bone" when at least this share lies above BONE_HU.
BONE_FRACTION, BONE_HU = 0.005, 300.0

#: A view wider than this many times its height (a few slices across a whole field) shows
#: its middle only, so that its slices are not thinner than a pixel.
FLATTEST = 3.0
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
    lung = np.count_nonzero((sample > LUNG_HU[0]) & (sample < LUNG_HU[1]) & _not_outside_air(sample)) / n
    if lung >= LUNG_FRACTION:
        return [SOFT_TISSUE, LUNG]
    if np.count_nonzero(sample > BONE_HU) / n >= BONE_FRACTION:
        return [SOFT_TISSUE, BONE]
    return [SOFT_TISSUE]


def _not_outside_air(sample: np.ndarray) -> np.ndarray:
    """Voxels outside the air around the body: a slice's region of air that reaches the
    edge of the field and whose median reads below LUNG_HU (about -1000 HU, with noise up
    to -900). Lung (-850 to -700, cropped or not) is kept, and so is air inside the body,
    however dark (emphysema)."""
    from scipy import ndimage

    keep = np.ones(sample.shape, dtype=bool)
    for plane, kept in zip(sample.reshape(-1, *sample.shape[-2:]), keep.reshape(-1, *sample.shape[-2:]), strict=True):
        labels, count = ndimage.label(plane < LUNG_HU[1])
        if count:
            medians = np.asarray(ndimage.median(plane, labels, np.arange(1, count + 1)))
            edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
            outside = np.intersect1d(np.flatnonzero(medians <= LUNG_HU[0]) + 1, edge)
            kept[np.isin(labels, outside)] = False
    return keep


@dataclass(frozen=True)
class _View:
    name: str  # the anatomical plane: "coronal", "sagittal" or "axial"
    image: np.ndarray  # (rows, columns), drawn with row 0 at the bottom
    aspect: float  # row spacing / column spacing
    height_mm: float
    width_mm: float
    cropped: bool = False  # its middle only (see FLATTEST)


#: The plane a view shows, by the patient (LPS) axis its normal runs along.
_PLANES = ("sagittal", "coronal", "axial")


def _views(volume: Volume, widths: tuple[float, float] | None = None) -> tuple[_View, _View]:
    """The two middle planes through the slice axis (for axial slices: coronal and
    sagittal), each named for the anatomical plane it is nearest to and oriented for
    display (see the module doc; axial: anterior up, patient right on the left). A view
    wider than ``widths`` mm (default :data:`FLATTEST` times its height) shows its middle."""
    g = volume.geometry
    direction = np.asarray(g.direction, dtype=float).reshape(3, 3)
    col_axis, row_axis = (a for a in range(3) if a != g.slice_axis)  # W, then H (Volume.itk_array)
    views: list[_View] = []
    # (data axis held at its middle, its ITK axis, the ITK axis of the image's second axis)
    for held, held_itk, other_itk in ((1, row_axis, col_axis), (2, col_axis, row_axis)):
        image = np.take(volume.data, volume.data.shape[held] // 2, axis=held)  # (slices, other)
        axes = [g.slice_axis, other_itk]
        plane = int(np.argmax(np.abs(direction[:, held_itk])))
        up = 1 if plane == 2 else 2  # anterior-posterior runs up an axial view, else superior-inferior
        if abs(direction[up, axes[1]]) > abs(direction[up, axes[0]]):
            image, axes = image.T, axes[::-1]
        if (direction[up, axes[0]] > 0) == (up == 1):  # superior up; anterior (LPS -y) up
            image = image[::-1]
        across = 1 if plane == 0 else 0  # sagittal: anterior on the left; else patient right on the left
        if direction[across, axes[1]] < 0:
            image = image[:, ::-1]
        rows_mm, cols_mm = (float(g.spacing[a]) for a in axes)
        widest = widths[len(views)] if widths else FLATTEST * image.shape[0] * rows_mm
        keep = max(1, int(np.ceil(widest / cols_mm - 1e-6)))
        cropped = image.shape[1] > keep  # a thin stack over a wide field: its middle, where the slices show
        if cropped:
            start = (image.shape[1] - keep) // 2
            image = image[:, start : start + keep]
        height, width = image.shape[0] * rows_mm, image.shape[1] * cols_mm
        views.append(_View(_PLANES[plane], np.asarray(image), rows_mm / cols_mm, height, width, cropped))
    return views[0], views[1]


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
    first = _views(columns[0][1])  # the others show as much of the field as the first
    views = [_views(vol, (first[0].width_mm, first[1].width_mm)) for _, vol in columns]
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
                middle = f"\n{view.width_mm:.0f} mm wide" if view.cropped else ""
                text = f"{view.name}{middle}\n{window.name}\nW{window.width:g} L{window.level:g}"
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
