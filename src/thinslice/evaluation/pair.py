"""Scoring on a real pair: a thick series against thin slices of the same acquisition.

Hospitals often keep two reconstructions of one scan, e.g. 5 mm and 1 mm. The thin one is
the truth for the thick one: every method makes the thick series' thin slices at the very
positions of the reference slices that lie within the thick stack, up to as far past its
end slices' centres as their thickness covers (read from both headers,
in patient coordinates), each as thick as the reference's slices, and is scored there.
No degradation is simulated, so this is the measure a user can trust for their scanner.

The two series must share their orientation; the reference may start, end and be spaced
anywhere along the slice axis. Two reconstructions of one acquisition usually share their
in-plane grid too, and then the methods' slices are scored as they are. A thin series
reconstructed over another field of view or matrix (a targeted lung field, finer pixels)
is scored where both fields overlap, each method's slices resampled onto the reference's
pixels (cubic spline, :class:`InplaneMap`): the reference is never resampled.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from thinslice import grid
from thinslice.ct import check_ct_values, require_usable
from thinslice.errors import ConfigError, InputError
from thinslice.evaluation.metrics import compare_where
from thinslice.evaluation.protocol import COMPARED, build_methods, means
from thinslice.io import load
from thinslice.methods import Method, get_method, run_on_grid
from thinslice.volume import ACQUISITION_KEYWORDS, Volume, check_mm, require_plausible_thickness

log = logging.getLogger(__name__)

#: Adapts a method to a volume at a factor, for the duration of a block (``--adapt``).
Adapter = Callable[[Method, Volume, int], AbstractContextManager[Method]]
#: How far (mm) the two series' in-plane origins and axes may differ and still be one grid.
GRID_TOLERANCE_MM = 0.05
#: Fewest reference pixels, along each in-plane axis, the two fields must share to be scored.
MIN_SHARED_PIXELS = 16


@dataclass(frozen=True)
class InplaneMap:
    """Where the reference's pixels lie on the thick series' in-plane grid.

    Attributes:
        rows, cols: the reference's pixels inside the thick field of view (data axes 1, 2).
        scale: thick pixels per reference pixel along each axis (negative: reversed axis).
        start: the thick pixel (fractional) the first of those reference pixels lies on.
    """

    rows: slice
    cols: slice
    scale: tuple[float, float]
    start: tuple[float, float]

    def resample(self, data: np.ndarray) -> np.ndarray:
        """``data`` ``(N, H, W)`` on the thick grid at the reference's pixels: cubic spline,
        slice by slice; float32 ``(N, rows, cols)``."""
        shape = (self.rows.stop - self.rows.start, self.cols.stop - self.cols.start)
        out = np.empty((len(data), *shape), dtype=np.float32)
        for k, image in enumerate(data):
            out[k] = ndimage.affine_transform(
                image.astype(np.float32), np.asarray(self.scale), offset=self.start, output_shape=shape,
                order=3, mode="nearest",
            )  # fmt: skip
        return out


def _inplane_axes(volume: Volume) -> tuple[list[np.ndarray], list[float]]:
    """Unit vectors (LPS) and spacings (mm) of a volume's data axes 1 and 2."""
    g = volume.geometry
    direction = np.asarray(g.direction, float).reshape(3, 3)
    itk = sorted((i for i in range(3) if i != g.slice_axis), reverse=True)  # data axis 1 is the later ITK axis
    return [direction[:, i] for i in itk], [float(g.spacing[i]) for i in itk]


def inplane_map(thick: Volume, reference: Volume) -> InplaneMap | None:
    """How the reference's in-plane pixels map onto the thick series' (None: the same grid).

    Raises:
        InputError: the in-plane axes are rotated against each other, or the two fields of
            view share fewer than :data:`MIN_SHARED_PIXELS` pixels along an axis.
    """
    (t1, t2), (ts1, ts2) = _inplane_axes(thick)
    (r1, r2), (rs1, rs2) = _inplane_axes(reference)
    scale = np.array([[t @ r * rs / ts for r, rs in ((r1, rs1), (r2, rs2))] for t, ts in ((t1, ts1), (t2, ts2))])
    offset = np.asarray(reference.geometry.origin, float) - np.asarray(thick.geometry.origin, float)
    start = np.array([offset @ t1 / ts1, offset @ t2 / ts2])
    if abs(scale[0, 1]) > 1e-3 * abs(scale[0, 0]) + 1e-6 or abs(scale[1, 0]) > 1e-3 * abs(scale[1, 1]) + 1e-6:
        raise InputError(
            f"the in-plane axes of the reference {reference.name} are rotated against {thick.name}'s; "
            "give two reconstructions of one acquisition"
        )
    diagonal = np.diag(scale)
    sizes = np.array(reference.data.shape[1:]) - 1
    drift = (np.abs(start) + np.abs(diagonal - 1) * sizes) * np.array([ts1, ts2])  # mm, at the far pixel
    if reference.data.shape[1:] == thick.data.shape[1:] and drift.max() <= GRID_TOLERANCE_MM:
        return None
    spans = []
    for s, a, n_ref, n_thick in zip(diagonal, start, reference.data.shape[1:], thick.data.shape[1:], strict=True):
        at = a + s * np.arange(n_ref)  # each reference pixel on the thick grid
        inside = np.flatnonzero((at >= -1e-3) & (at <= n_thick - 1 + 1e-3))
        if len(inside) < MIN_SHARED_PIXELS:
            raise InputError(
                f"the reference {reference.name} ({_grid(reference)}) and {thick.name} ({_grid(thick)}) share "
                f"{len(inside)} pixels of their fields of view along an axis, fewer than {MIN_SHARED_PIXELS}; "
                "give the thin reconstruction of the same scan"
            )
        spans.append(slice(int(inside[0]), int(inside[-1]) + 1))
    first = [float(a + s * span.start) for s, a, span in zip(diagonal, start, spans, strict=True)]
    return InplaneMap(spans[0], spans[1], (float(diagonal[0]), float(diagonal[1])), (first[0], first[1]))


def reference_positions(thick: Volume, reference: Volume) -> tuple[np.ndarray, np.ndarray]:
    """Where the reference's slices lie in the thick stack.

    Returns:
        the indices of the reference slices within the thick stack (first to last thick
        slice centre, and past them as far as upsample reaches: :func:`thinslice.grid.reach`)
        and their positions there, in thick-slice units (fractional; below 0 or above
        ``D - 1`` past the end slices' centres).

    Raises:
        InputError: the slice axes differ, the reference is not finer, or fewer than two of
            its slices lie within the thick stack.
    """
    a, b = thick.geometry, reference.geometry
    da, db = (np.asarray(g.direction, float).reshape(3, 3) for g in (a, b))
    if not np.isclose(abs(float(da[:, a.slice_axis] @ db[:, b.slice_axis])), 1.0, atol=1e-3):
        raise InputError(
            f"the reference {reference.name} is not stacked along the same axis as {thick.name}; "
            "give two reconstructions of one acquisition"
        )
    if reference.slice_spacing >= thick.slice_spacing * (1 - grid.RATIO_TOLERANCE):
        raise InputError(
            f"the reference {reference.name} ({reference.slice_spacing:.4g} mm apart) is not finer than "
            f"{thick.name} ({thick.slice_spacing:.4g} mm); give the thin reconstruction as --reference"
        )
    start, step = _reference_axis(thick, reference)
    positions = start + step * np.arange(reference.num_slices)
    eps = 1e-3
    past = grid.reach(thick.thickness, max(reference.thickness, reference.slice_spacing)) / a.slice_spacing
    inside = np.flatnonzero((positions >= -past - eps) & (positions <= thick.num_slices - 1 + past + eps))
    if len(inside) < 2:
        raise InputError(
            f"fewer than two slices of the reference {reference.name} lie within {thick.name}'s stack "
            f"({a.slice_spacing * (thick.num_slices - 1):.1f} mm long); give the thin reconstruction of the same scan"
        )
    return inside, np.clip(positions[inside], -past, thick.num_slices - 1 + past)


def _reference_axis(thick: Volume, reference: Volume) -> tuple[float, float]:
    """``(start, step)``: reference slice ``j`` lies at ``start + step * j`` in thick-slice
    units along the thick series' normal (``step`` negative when stacked the other way)."""
    a, b = thick.geometry, reference.geometry
    normal = a.slice_direction
    offset = np.asarray(b.origin, float) - np.asarray(a.origin, float)
    start = float(offset @ normal) / a.slice_spacing
    step = b.slice_spacing * float(b.slice_direction @ normal) / a.slice_spacing
    return start, step


def check_same_scan(thick: Volume, reference: Volume) -> None:
    """Warn when the two series' headers name different patients, studies or frames of
    reference (DICOM): then their patient coordinates need not line up, and a pair is two
    reconstructions of one acquisition."""
    for key, keyword in ACQUISITION_KEYWORDS.items():
        ours, theirs = thick.meta.get(key), reference.meta.get(key)
        if ours and theirs and ours != theirs:
            log.warning(
                "%s and the reference %s have different %ss (%s, %s): they may not be reconstructions of one "
                "acquisition, and the scores assume they are",
                thick.name, reference.name, keyword, ours, theirs,
            )  # fmt: skip


#: Fewer scored reference slices than this get a warning (the SSIM window along the slices).
FEW_SLICES = 7
#: In-plane pixels per slice the alignment check compares (a regular sample of them).
ALIGNMENT_PIXELS = 2**16
#: How much better (dB) another offset must fit than the headers' for the pair to be called misaligned.
MISALIGNED_DB = 1.0
#: Offsets tried, in reference slices: a half-slice error shifts every score, so finer than whole ones.
ALIGNMENT_STEP = 0.25
#: Below this consistency (dB) the reference cannot be the thick series' thin reconstruction:
#: an RMS difference over 230 HU (simulated pairs, overlapping ones too, reach 44 dB and
#: more; other anatomy at the same positions about 15).
UNRELATED_DB = 25.0


def alignment(thick: Volume, reference: Volume, fields: InplaneMap | None) -> dict[str, float] | None:
    """Whether the thick slices are where the headers put them on the reference: the
    reference averaged over each thick slice's thickness, at the headers' positions and
    shifted by steps of :data:`ALIGNMENT_STEP` reference slices up to one thick spacing
    either way, against the thick slices (PSNR over the pixels both cover).

    Returns:
        ``{"consistency_psnr": at the headers' positions, "best_offset_mm": the shift that
        fits best (0 when the headers' does), "best_consistency_psnr"}``, or None when too
        few thick slices lie inside the reference to tell.
    """
    from thinslice.evaluation.metrics import psnr, scale_hu
    from thinslice.profile import profile_matrix

    start, step = _reference_axis(thick, reference)
    ref = reference.data if step > 0 else reference.data[::-1]
    if step < 0:  # the reference reversed: slice j at start' + |step| * j
        start, step = start + step * (reference.num_slices - 1), -step
    if fields is not None:
        ref = ref[:, fields.rows, fields.cols]
    per_thick = 1.0 / step  # reference slices per thick spacing
    width = thick.thickness / reference.slice_spacing  # the thick profile, in reference slices
    reach = int(np.ceil(per_thick))
    centres = (np.arange(thick.num_slices) - start) * per_thick  # thick slices, in reference slices
    margin = width / 2 + reach
    ks = np.flatnonzero((centres >= margin) & (centres <= reference.num_slices - 1 - margin))
    if len(ks) < 2:
        return None
    seen = thick.data[ks[0] : ks[-1] + 1].astype(np.float32)
    seen = seen if fields is None else fields.resample(seen)
    stride = max(1, seen[0].size // ALIGNMENT_PIXELS)  # a sample of the pixels tells the offset as well
    seen = seen.reshape(len(seen), -1)[:, ::stride]
    flat = ref.reshape(len(ref), -1)[:, ::stride].astype(np.float32)
    scores = {}
    for shift in np.arange(-reach, reach + ALIGNMENT_STEP / 2, ALIGNMENT_STEP):
        weights, _ = profile_matrix(
            len(ref), 1.0, per_thick, width, offset=float(centres[ks[0]] + shift), count=len(ks)
        )
        simulated = weights.astype(np.float32) @ flat
        scores[round(float(shift), 6)] = psnr(scale_hu(seen), scale_hu(simulated))
    best = max(scores, key=lambda k: scores[k])
    if scores[best] - scores[0] < MISALIGNED_DB:
        best = 0
    return {
        "consistency_psnr": scores[0],
        "best_offset_mm": best * reference.slice_spacing,  # along the thick series' normal
        "best_consistency_psnr": scores[best],
    }


def factor_for(fn: Method, thick: Volume, reference: Volume, positions: np.ndarray) -> int:
    """The factor ``fn`` is scored at: the one ``upsample --target-spacing`` runs when the
    grid it writes holds the reference ``positions`` (in thick slices), so that what is
    scored is what it writes (2.5 -> 1 mm: the model at x3 resampled, an interpolation at
    x5); else :func:`on_reference` from that factor up."""
    r = fn.plan_for_spacing(thick.num_slices, thick.slice_spacing, reference.slice_spacing).r
    written = positions * thick.slice_spacing / reference.slice_spacing  # upsample's output slices
    return r if np.all(np.abs(written - np.round(written)) < 0.02) else on_reference(fn, r, positions)


def on_reference(fn: Method, r: int, positions: np.ndarray) -> int:
    """The smallest factor from ``r`` up that ``fn`` makes whose slices fall on the
    reference ``positions`` (within 2 % of a slice), else ``r``: a linear resampling of its
    slices would score a smooth method partly as linear interpolation (2 mm slices against
    1 mm ones centred half-way: x4)."""
    for factor in range(r, grid.MAX_SCALE + 1):
        fine = positions * factor
        if np.all(np.abs(fine - np.round(fine)) < 0.02) and fn.makes(factor):
            return factor
    return r


def check_preview(
    preview: str | os.PathLike[str], *, overwrite: bool, inputs: Sequence[str | os.PathLike[str] | Volume] = ()
) -> Path:
    """Refuse, before any work, a preview that is not a ``.png`` or that cannot or must not
    be written (:func:`thinslice.io.atomic.check_destination`: an input, an existing file
    without ``overwrite``, a missing folder).

    Raises:
        ConfigError, OutputError: naming ``--preview`` and the fix.
    """
    from thinslice.io.atomic import check_destination

    preview = Path(preview)
    if preview.suffix.lower() != ".png":
        raise ConfigError(f"--preview writes a PNG; give a name ending in .png, not {preview.name}")
    paths = tuple(str(item.meta.get("source", "")) if isinstance(item, Volume) else str(item) for item in inputs)
    return check_destination(preview, overwrite=overwrite, what="--preview", inputs=tuple(p for p in paths if p))


def _source(volume: Volume) -> dict[str, Any]:
    """Where a series was read from, for the report: its path and, for DICOM, its UIDs."""
    keys = ("source", "series_uid", "study_uid", "frame_of_reference_uid")
    return {key: volume.meta[key] for key in keys if volume.meta.get(key)}


def _grid(volume: Volume) -> str:
    h, w = volume.data.shape[1:]
    sw, sh = volume.geometry.inplane_spacing
    return f"{h} x {w} at {sh:.3g} x {sw:.3g} mm"


def evaluate_pair(
    thick: str | os.PathLike[str] | Volume,
    reference: str | os.PathLike[str] | Volume,
    *,
    methods: Sequence[str | Method] = COMPARED,
    model: str | os.PathLike[str] | None = None,
    device: str = "auto",
    progress: bool = False,
    all_views: bool = False,
    precision: str = "auto",
    slice_thickness: float | None = None,
    series_uid: str | None = None,
    reference_series_uid: str | None = None,
    adapter: tuple[str, Adapter] | None = None,
    preview: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    accept_non_ct: bool = False,
) -> dict[str, Any]:
    """Score each method on a real thick/thin pair.

    Args:
        thick: the thick series (what the methods see).
        reference: thin slices of the same acquisition (the truth; never shown to a method).
        methods: registry names or Method instances
            (:func:`thinslice.evaluation.protocol.build_methods`; ``benchmarks/eclare_compare.py``
            wraps ECLARE's result as one).
        slice_thickness: the thick slices' thickness in mm, overriding what the file says.
        series_uid, reference_series_uid: which series to read when a DICOM folder holds
            several (two reconstructions of one study often share a folder).
        adapter: ``(label, adapt)``: also score the model adapted to the thick series by
            ``adapt(method, thick, r)``, a context manager giving the adapted method (the
            pipeline's ``--adapt``; this layer does not train), under ``label``.
        preview: a PNG to write: coronal and sagittal views of the thick series, each
            method's slices and the reference, side by side over the same extent
            (checked before any work: :func:`check_preview`).
        overwrite: replace an existing ``preview``.
        accept_non_ct: score a pair whose values do not look like CT in HU (with a warning).

    Returns:
        ``{"reference", "thick_source", "reference_source", "thick_spacing", "thick_thickness", "reference_spacing",
        "reference_thickness", "reference_pixels", "rows": [{"volume", "method", <metrics>,
        "seconds", "slices_used", "slices_total", "made_by"}], "mean"}``. ``psnr_paper``
        and the SSIMs score every reference slice within the thick stack; ``psnr_synth`` and
        ``psnr_body`` those farther than half a reference spacing from an acquired one.
        ``thick_source`` and ``reference_source`` say where each was read from (path,
        DICOM UIDs). ``reference_pixels`` is None when the in-plane grids are the same, else the
        ``[rows, cols]`` of reference pixels scored (those both fields of view cover).
        ``alignment`` (:func:`alignment`) says whether the thick slices lie on the
        reference where the headers put them (a warning is logged when another offset
        fits better); None when too few thick slices lie inside the reference to tell.
    """
    if not methods and adapter is None:
        raise ConfigError("give at least one method")
    if preview is not None:
        check_preview(preview, overwrite=overwrite, inputs=(thick, reference))
    options = {"model": model, "device": device, "progress": progress, "all_views": all_views, "precision": precision}
    scored = build_methods(methods, options)
    thick = thick if isinstance(thick, Volume) else load(thick, series_uid)
    if not isinstance(reference, Volume):
        reference = load(reference, reference_series_uid, series_option="--reference-series-uid")
    for volume in (thick, reference):
        require_usable(volume)  # for Volumes given; files were checked as they were read
        check_ct_values(volume, accept_non_ct=accept_non_ct, verb="score")
    told = check_mm(slice_thickness, "--slice-thickness")
    if told is not None:
        thick = replace(thick, slice_thickness=float(told))
    require_plausible_thickness(thick)
    inside, positions = reference_positions(thick, reference)  # refused before any work
    fields = inplane_map(thick, reference)
    check_same_scan(thick, reference)
    aligned = alignment(thick, reference, fields)
    if aligned is not None and aligned["best_consistency_psnr"] < UNRELATED_DB:
        log.warning(
            "warning: the reference %s averaged over %s's slices matches them at %.1f dB at best: they do not look "
            "like two reconstructions of one acquisition (other anatomy, or the wrong --slice-thickness?); the scores "
            "below compare them anyway", reference.name, thick.name, aligned["best_consistency_psnr"],
        )  # fmt: skip
    elif aligned is not None and aligned["best_offset_mm"] != 0:
        log.warning(
            "%s does not lie on the reference %s where the headers put it: the reference averaged over its "
            "slices matches them best %+.3g mm along the slices from there (%.1f dB against %.1f); check that "
            "the two are reconstructions of one acquisition: the scores below assume the headers' positions",
            thick.name, reference.name, aligned["best_offset_mm"], aligned["best_consistency_psnr"],
            aligned["consistency_psnr"],
        )  # fmt: skip
    with contextlib.ExitStack() as stack:
        if adapter is not None:
            label, adapt = adapter
            fn = get_method("model", **options)
            scored[label] = stack.enter_context(adapt(fn, thick, factor_for(fn, thick, reference, positions)))
        report = _score(thick, reference, scored, inside, positions, fields, preview)
    report["alignment"] = aligned
    return report


def _score(
    thick: Volume,
    reference: Volume,
    scored: dict[str, Method],
    inside: np.ndarray,
    positions: np.ndarray,
    fields: InplaneMap | None,
    preview: str | os.PathLike[str] | None,
) -> dict[str, Any]:
    """The rows of :func:`evaluate_pair`: each method at the reference's positions (and
    pixels, when the grids differ in-plane)."""
    truth = reference.data[inside]
    if fields is not None:
        truth = truth[:, fields.rows, fields.cols]
        h, w = truth.shape[1:]
        theirs, ours = _grid(reference), _grid(thick)
        differs = (
            f"({theirs}) is not {thick.name}'s ({ours})"
            if theirs != ours
            else f"lies elsewhere or runs the other way against {thick.name}'s ({ours})"
        )
        log.info(
            "%s's in-plane grid %s: scoring the %d x %d reference pixels both fields cover, "
            "each method's slices resampled onto them (cubic spline)",
            reference.name, differs, h, w,
        )  # fmt: skip
    truth = truth.astype(np.float32)
    if len(inside) < FEW_SLICES:
        log.warning(
            "only %d reference slices lie within %s's stack: coronal and sagittal SSIM need %d, and so few "
            "slices say little about a method; give a reference that covers more of the thick series",
            len(inside), thick.name, FEW_SLICES,
        )  # fmt: skip
    ratio = thick.slice_spacing / reference.slice_spacing
    # reference slices nearer than half a reference spacing to a thick slice's centre are
    # "acquired"; one exactly half-way is not (a tie, which rounding used to decide)
    between = np.abs(positions - np.round(positions)) * ratio > 0.5 - 1e-6
    width = max(1.0, reference.thickness / reference.slice_spacing)  # as thick as the reference's slices
    log.info(
        "%s (%d slices, %.4g mm apart, %.4g mm thick) against %s: %d of %d slices within the stack, %.4g mm apart",
        thick.name, thick.num_slices, thick.slice_spacing, thick.thickness, reference.name,
        len(inside), reference.num_slices, reference.slice_spacing,
    )  # fmt: skip
    rows = []
    # the reference slices (and pixels) within the stack, where the methods' slices lie (for the preview)
    corner = reference.geometry.slice_position(int(inside[0]))
    if fields is not None:
        (v1, v2), (s1, s2) = _inplane_axes(reference)
        corner = corner + v1 * s1 * fields.rows.start + v2 * s2 * fields.cols.start
    at_reference = replace(reference.geometry, origin=(float(corner[0]), float(corner[1]), float(corner[2])))
    shown: list[tuple[str, Volume]] = []
    for name, fn in scored.items():
        r = factor_for(fn, thick, reference, positions)
        plan = grid.Plan(r, reference.slice_spacing, positions * r)
        start = time.perf_counter()
        result = run_on_grid(
            fn,
            thick.data,
            plan,
            thickness=thick.thickness / thick.slice_spacing,
            spacing=thick.voxel_spacing,
            keep_acquired=grid.keeps_acquired(thick.thickness, reference.slice_spacing),
            output_width=width,
        )
        seconds = time.perf_counter() - start
        made = result.data if fields is None else fields.resample(result.data)
        row: dict[str, Any] = {"volume": thick.name, "method": name}
        row.update(compare_where(truth, made, between))
        row.update(seconds=seconds, slices_used=len(inside), slices_total=reference.num_slices)
        row.update(made_by=result.made_by or name, factor=r)
        rows.append(row)
        log.info("%s / %s: psnr %.2f dB", thick.name, name, row["psnr_paper"])
        if preview is not None:  # float32 HU, one volume per method, only when a picture is asked for
            shown.append((f"{name}, {row['psnr_paper']:.2f} dB", Volume(made, at_reference, name)))
    if preview is not None:
        from thinslice.evaluation.figures import compare_views

        # the thick slices over the reference's extent, in its order and on its pixels
        first, last = int(np.floor(positions.min() + 1e-6)), int(np.ceil(positions.max() - 1e-6))
        seen = thick.data[max(0, first) : min(thick.num_slices - 1, last) + 1]
        seen = seen if positions[-1] >= positions[0] else seen[::-1]
        seen = seen if fields is None else fields.resample(seen)
        given = Volume(np.ascontiguousarray(seen), at_reference.with_slice_spacing(thick.slice_spacing), thick.name)
        panels = [(f"{thick.name}, {thick.slice_spacing:.3g} mm", given), *shown]
        panels.append((f"reference, {reference.slice_spacing:.3g} mm", Volume(truth, at_reference, reference.name)))
        compare_views(panels, preview, title=f"{thick.name} against {reference.name}: PSNR over every reference slice")
        log.info("wrote %s", preview)
    return {
        "reference": reference.name,
        "thick_source": _source(thick),
        "reference_source": _source(reference),
        "thick_spacing": thick.slice_spacing,
        "thick_thickness": thick.thickness,
        "reference_spacing": reference.slice_spacing,
        "reference_thickness": reference.thickness,
        "reference_pixels": None if fields is None else list(truth.shape[1:]),
        "rows": rows,
        "mean": means(rows, list(scored)),
    }
