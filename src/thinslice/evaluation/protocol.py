"""The evaluation protocol: degrade a scan, synthesize it back, compare with the original.

Each input is ground truth at its own spacing. It is degraded by ``decimate``, ``slab``
or ``profile`` (:mod:`thinslice.evaluation.degrade`), upsampled by each method, and
compared with :func:`thinslice.evaluation.metrics.compare` over the slices the thick stack
covers: ``r * k + 1`` from the first thick slice's centre to the last's and, for slices
thicker than the output's, as far past them as upsample reaches. The removed slices are
never shown to any method.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from thinslice import grid
from thinslice.ct import check_ct_values, require_usable
from thinslice.errors import ConfigError
from thinslice.evaluation.degrade import ThickCopy, check_degradation, degrade_array
from thinslice.evaluation.metrics import METRIC_NAMES, compare
from thinslice.io import load
from thinslice.methods import Method, get_method, run_on_grid, unused_options
from thinslice.volume import Volume, check_mm

log = logging.getLogger(__name__)


#: The methods compared unless told otherwise: the interpolations a user would otherwise
#: use, and the model (a comparison without it would not show what thinslice adds).
COMPARED = ("linear", "cubic", "lanczos", "model")


def evaluate(
    inputs: str | os.PathLike[str] | Volume | Sequence[str | os.PathLike[str] | Volume],
    scale: int = 2,
    *,
    degrade: str = "profile",
    methods: Sequence[str | Method] = COMPARED,
    model: str | os.PathLike[str] | None = None,
    device: str = "auto",
    progress: bool = False,
    all_views: bool = False,
    precision: str = "auto",
    thickness: float | None = None,
    softness: float = 0.0,
    series_uid: str | None = None,
    accept_non_ct: bool = False,
    fast: bool | None = None,
) -> dict[str, Any]:
    """Run the protocol on every input with every method.

    The default is the measure of record: realistic thick slices (``degrade="profile"``,
    each the average of the thin slices over a box as wide as their spacing), every output
    slice scored, every method of :data:`COMPARED`. ``"decimate"`` is the paper's protocol
    (every r-th slice kept), which flatters every method that keeps the acquired slices.
    Each method is told the thickness of the slices it gets (decimation: the input's own;
    slab and profile: the profile width), as ``--slice-thickness`` would. Acquired slices
    no thicker than the output's are put back unchanged, as upsample does; thicker ones
    are the method's estimate, and ``psnr_paper`` (all slices) scores them too.

    Args:
        inputs: thin scans taken as the truth: paths or Volumes, or one of them.
        methods: registry names or Method instances, or one of them (:func:`build_methods`).
        thickness: the profile width in mm for ``degrade="profile"`` (default ``r``
            times the input spacing: contiguous thick slices).
        softness: for ``degrade="profile"``, the FWHM of a Gaussian that softens the box
            (a reconstruction kernel's tails), as a fraction of the thickness. Methods are
            told the thickness, not the softness.
        series_uid: which series to read from a DICOM folder that holds several.
        accept_non_ct: score inputs whose values do not look like CT in HU (with a warning);
            refused otherwise, since the scores are taken in an HU window.

    Returns:
        ``{"scale": r, "degrade": ..., "rows": [{"volume", "method", <metrics>,
        "seconds", "slices_used", "slices_total", "made_by"}], "mean": {method: {<metrics>}}}``.
        ``seconds`` is the wall time of the synthesis alone; ``made_by`` names the checkpoint
        a learned method picked for the input (the method's name otherwise).
    """
    if fast is not None:
        warnings.warn("evaluate(fast=...): two views are now the default", DeprecationWarning, stacklevel=2)
    r = grid.check_scale(scale)
    check_degradation(degrade, thickness, softness)
    check_mm(thickness, "--thickness")
    if not methods:
        raise ConfigError("give at least one method")
    options = {"model": model, "device": device, "progress": progress, "all_views": all_views}
    options["precision"] = precision
    built = build_methods(methods, options)
    if isinstance(inputs, str | os.PathLike | Volume):  # one scan, not the letters of its path
        inputs = [inputs]
    if not inputs:
        raise ConfigError("give at least one scan to evaluate")
    scan = functools.partial(
        _thick_copy, r=r, degrade=degrade, thickness=thickness, softness=softness, series_uid=series_uid,
        accept_non_ct=accept_non_ct,
    )  # fmt: skip
    if len(inputs) > 1:  # every scan checked before any is scored: a bad last one fails in seconds, not hours
        for item in inputs:
            scan(item)
    rows: list[dict[str, Any]] = []
    for item in inputs:
        with _warned_once(len(inputs) > 1):
            volume, thin, thick = scan(item)
        total = volume.num_slices
        margin = thick.margin(len(thin), r)  # as upsample does, and as far as the truth goes
        truth = thick.truth(thin, r, margin)
        observed, observed_thickness, used = thick.data, thick.thickness, len(truth)
        if used != total:
            log.info("%s: %d of %d slices lie within the thick stack; scoring those", volume.name, used, total)
        if grid.overlapping(volume.thickness, volume.slice_spacing):
            log.warning(
                "warning: %s's slices are %.4g mm thick every %.4g mm (an overlapping reconstruction): its thick "
                "copy averages slices that are averages already, and each method is scored against slices thicker "
                "than it makes; contiguous thin slices are a truer ground truth",
                volume.name, volume.thickness, volume.slice_spacing,
            )  # fmt: skip
        thin_mm, row_mm, column_mm = volume.voxel_spacing
        for name, fn in built.items():
            # as upsample does: a factor the method does not make is reached by resampling;
            # lengths in thin slices here (spacing r onto 1), so the margin is the reach
            plan = fn.plan_for_spacing(len(observed), float(r), 1.0).with_reach(margin)
            start = time.perf_counter()
            result = run_on_grid(
                fn,
                observed.astype(np.float32),
                plan,
                thickness=observed_thickness / r,
                spacing=(r * thin_mm, row_mm, column_mm),
                keep_acquired=grid.keeps_acquired(observed_thickness, 1.0),
            )
            seconds = time.perf_counter() - start
            row: dict[str, Any] = {"volume": volume.name, "method": name}
            row.update(compare(truth, result.data, r, first=margin))
            row.update(seconds=seconds, slices_used=used, slices_total=total, made_by=result.made_by or name)
            rows.append(row)
            log.info("%s / %s: psnr_synth %.2f dB", volume.name, name, row["psnr_synth"])
    report = {"scale": r, "degrade": degrade, "rows": rows, "mean": means(rows, list(built))}
    if degrade == "profile":
        report.update(thickness_mm=thickness, softness=softness)
    return report


def _thick_copy(
    item: str | os.PathLike[str] | Volume,
    *,
    r: int,
    degrade: str,
    thickness: float | None,
    softness: float,
    series_uid: str | None,
    accept_non_ct: bool,
) -> tuple[Volume, np.ndarray, ThickCopy]:
    """One scan read, checked and made thick (``thickness`` in mm, converted to thin
    slices): the volume, its voxels as float32 and its thick copy."""
    volume = item if isinstance(item, Volume) else load(item, series_uid)
    if isinstance(item, Volume):  # files are checked as they are read
        require_usable(volume)
    check_ct_values(volume, accept_non_ct=accept_non_ct, verb="score")
    width = None if thickness is None else thickness / volume.slice_spacing
    thin = volume.data.astype(np.float32)
    thick = degrade_array(thin, r, degrade, width, softness)
    if len(thick.data) < 3:
        raise ConfigError(
            f"{volume.name} has {volume.num_slices} slices, of which x{r} ({degrade}) makes {len(thick.data)} "
            "thick slices, and evaluating needs 3; give a scan with more slices or a smaller --scale"
        )
    return volume, thin, thick


@contextlib.contextmanager
def _warned_once(again: bool) -> Iterator[None]:
    """Warnings from reading and checking a scan, silenced when ``again``: the check of
    every scan before scoring gave them already."""
    logger = logging.getLogger("thinslice")
    level = logger.level
    if again:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def build_methods(methods: str | Method | Sequence[str | Method], options: dict[str, Any]) -> dict[str, Method]:
    """The methods to score, by name: a registry name is built with ``options``; a
    :class:`~thinslice.methods.Method` instance (a method of one's own, or a peer's result
    wrapped as one) is scored as it is, under its ``name``."""
    listed = [methods] if isinstance(methods, str | Method) else list(methods)  # one name is not its letters
    names = [given for given in listed if isinstance(given, str)]
    if names and len(names) == len(listed):  # an option no method takes is a mistake, as for upsample
        asked = {"model": options.get("model"), "all_views": options.get("all_views")}
        asked |= {"precision": options.get("precision"), "device": options.get("device")}
        unused = [key for key in asked if all(key in unused_options(name, **asked) for name in names)]
        if unused:
            flags = ", ".join(f"--{key.replace('_', '-')}" for key in unused)
            raise ConfigError(f"{flags} applies to --method model, which is not among {', '.join(names)}")
    built: dict[str, Method] = {}
    for given in listed:
        if not isinstance(given, str | Method):
            raise ConfigError(f"methods takes names and thinslice.methods.Method instances, got {given!r}")
        fn = get_method(given, **options) if isinstance(given, str) else given
        if fn.name in built:  # one row would hide the other's scores
            raise ConfigError(f"two methods are named {fn.name!r}; give each method once, under a name of its own")
        built[fn.name] = fn
    return built


def means(rows: list[dict[str, Any]], methods: list[str]) -> dict[str, dict[str, float]]:
    """Per method, the mean of each metric and of the seconds over the rows (NaN left out)."""
    keys = (*METRIC_NAMES, "seconds")
    out: dict[str, dict[str, float]] = {}
    for m in methods:
        mine = [row for row in rows if row["method"] == m]
        out[m] = {k: _finite_mean([row[k] for row in mine]) for k in keys}
    return out


def _finite_mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def format_table(report: dict[str, Any]) -> str:
    """A plain-text table of the rows and the per-method means."""
    cols = ("volume", "method", *METRIC_NAMES, "seconds")
    header = ["volume", "method", "PSNR", "PSNR_syn", "PSNR_body", "SSIM_ax", "SSIM_cor", "SSIM_sag", "sec"]
    lines = [_title(report)]
    body = [[_fmt(row[c]) for c in cols] for row in report["rows"]]
    body += [["MEAN", m, *[_fmt(v[k]) for k in (*METRIC_NAMES, "seconds")]] for m, v in report["mean"].items()]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body, strict=True)]
    for cells in [header, *body]:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)))
    trimmed = {row["volume"]: row for row in report["rows"] if row["slices_used"] != row["slices_total"]}
    for name, row in trimmed.items():
        if "reference" in report:
            lines.append(
                f"note: {row['slices_used']} of the reference's {row['slices_total']} slices lie within {name}'s "
                "stack; scored those"
            )
        else:
            lines.append(f"note: {name} trimmed to {row['slices_used']} of {row['slices_total']} slices")
    if report.get("reference_pixels"):
        h, w = report["reference_pixels"]
        lines.append(
            f"note: the two in-plane grids differ; scored over the {h} x {w} reference pixels both fields cover, "
            "each method's slices resampled onto them (cubic spline)"
        )
    for row in report["rows"]:
        if row.get("made_by", row["method"]) != row["method"]:
            lines.append(f"note: {row['volume']}, {row['method']}: {row['made_by']}")
    return "\n".join(lines)


def _title(report: dict[str, Any]) -> str:
    if "reference" in report:  # a real pair (thinslice.evaluation.pair)
        return (
            f"real pair: {report['thick_spacing']:.4g} mm slices {report['thick_thickness']:.4g} mm thick, "
            f"against {report['reference']} ({report['reference_spacing']:.4g} mm apart, "
            f"{report['reference_thickness']:.4g} mm thick)"
        )
    profile = ""
    if report["degrade"] == "profile":
        thickness = report.get("thickness_mm")
        profile = f" ({'r x spacing' if thickness is None else f'{thickness:g} mm'} thick"
        profile += f", softness {report['softness']:g})" if report.get("softness") else ")"
    return f"scale x{report['scale']}, degrade {report['degrade']}{profile}"


def markdown_rows(report: dict[str, Any]) -> str:
    """The report's rows as a Markdown table (the form BENCHMARKS.md uses)."""
    lines = [
        "| volume | method | PSNR paper | PSNR synth | PSNR body | SSIM ax | SSIM cor | SSIM sag | s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in report["rows"]:
        psnr = " | ".join(f"{row[k]:.2f}" for k in METRIC_NAMES[:3])
        ssim = " | ".join(f"{row[k]:.4f}" for k in METRIC_NAMES[3:])
        lines.append(f"| {row['volume']} | {row['method']} | {psnr} | {ssim} | {row['seconds']:.2f} |")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1.5 else f"{v:.2f}"
    return str(Path(v).name if isinstance(v, Path) else v)
