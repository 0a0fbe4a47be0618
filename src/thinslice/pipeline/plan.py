"""What an upsample will make, decided before any work: the options' checks, the output
grid (:class:`thinslice.grid.Plan`), whether the acquired slices are kept, and the
account of all of it that ``thinslice info -i`` gives (:func:`describe`).

:mod:`.upsample` does the work along what this module decides.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from thinslice import grid
from thinslice.checks import positive
from thinslice.ct import ct_value_problem, require_usable
from thinslice.errors import ConfigError
from thinslice.methods import Method
from thinslice.volume import Volume, check_mm, require_plausible_thickness

log = logging.getLogger(__name__)
#: What the log and ``info -i`` say of slices whose thickness no file or option gives.
ASSUMED_CONTIGUOUS = "assumed: contiguous; --slice-thickness to say otherwise"


def check_request(
    fn: Method,
    *,
    scale: int | None = None,
    target_spacing: float | None = None,
    slice_thickness: float | None = None,
    output_thickness: float | None = None,
    adapt: float | None = None,
) -> None:
    """The checks of an upsample's options that need no scan: a batch makes them once,
    before any folder or case, so that a bad option is one error, not one per case.

    Raises:
        ConfigError, ModelError: both ``scale`` and ``target_spacing``, a factor ``fn``
            does not make, a length that is not a positive number of mm, or ``adapt`` for
            a method without weights or not a positive number of minutes.
    """
    if scale is not None and target_spacing is not None:
        raise ConfigError("give either --scale or --target-spacing, not both")
    if scale is not None:
        fn.check_scale(scale)
    check_mm(target_spacing, "--target-spacing")
    check_mm(slice_thickness, "--slice-thickness")
    check_mm(output_thickness, "--output-thickness")
    if adapt is not None and not fn.adaptable:
        raise ConfigError(f"--adapt fine-tunes trained weights; method {fn.name} has none (use --method model)")
    if adapt is not None:
        positive(adapt, "--adapt", "minutes")


def check_template_source(source: str | os.PathLike[str], dicom_template: object) -> None:
    """Refuse ``--dicom-template`` for a DICOM folder, which is its own template.

    Raises:
        ConfigError: naming the inputs it is for.
    """
    if dicom_template is not None and Path(source).is_dir():
        raise ConfigError("--dicom-template is for NIfTI/NRRD/MHA input; a DICOM series is its own template")


def with_template_thickness(volume: Volume, template_thickness: float | None, given: float | None) -> Volume:
    """``volume`` with its DICOM template's SliceThickness when neither the file nor
    ``--slice-thickness`` (``given``) says it: the series the file was made from says
    what the file format cannot."""
    if given is not None or volume.slice_thickness is not None or template_thickness is None:
        return volume
    log.info("slice thickness %.4g mm, from the DICOM template's SliceThickness", template_thickness)
    return volume.with_data(volume.data, slice_thickness=template_thickness)


def resolve_plan(
    volume: Volume,
    fn: Method,
    scale: int | None,
    target_spacing: float | None,
    *,
    output_thickness: float | None = None,
    keep_acquired: bool = False,
) -> grid.Plan:
    """The factor (and any resampling) that gives the wanted output grid with method ``fn``,
    reaching past the end slices' centres as far as their thickness covers
    (:func:`thinslice.grid.reach`), unless the acquired slices are kept.

    The options themselves are checked by :func:`check_request` first.

    Raises:
        ConfigError, ModelError: a target spacing or factor the method does not make.
        InputError: slices thicker than the whole stack.
    """
    require_plausible_thickness(volume)
    if target_spacing is not None:
        plan = fn.plan_for_spacing(volume.num_slices, volume.slice_spacing, target_spacing)
    else:
        r = fn.check_scale(fn.default_scale if scale is None else scale)
        plan = grid.Plan(r, volume.slice_spacing / r)
    if keep_acquired:  # today's grid: first to last acquired slice
        return plan
    return plan.with_reach(grid.reach(volume.thickness, max(plan.spacing, output_thickness or 0.0)))


def check_output_thickness(
    volume: Volume, plan: grid.Plan, output_thickness: float | None, keep_acquired: bool
) -> None:
    """Refuse keeping the acquired slices unchanged while averaging every output slice, and
    output slices thicker than the whole stack (each would average all of it).

    Raises:
        ConfigError: both asked for, or the thickness.
    """
    if output_thickness is not None and output_thickness > volume.extent:
        raise ConfigError(
            f"--output-thickness {output_thickness:g} mm is more than the {volume.extent:.4g} mm that {volume.name}'s "
            "slices cover: every output slice would average all of it; give a few output spacings at most"
        )
    if grid.output_thickness_width(output_thickness, volume.thickness, plan.spacing) > 1 and keep_acquired:
        raise ConfigError(
            f"--keep-acquired keeps the acquired slices unchanged, but --output-thickness {output_thickness:g} mm "
            f"averages every output slice over more than its {plan.spacing:.4g} mm spacing; give one of them"
        )


def acquired_kept(volume: Volume, method: Method, plan: grid.Plan, keep_acquired: bool = False) -> bool:
    """Whether the output keeps the acquired slices bit-identical: asked to, or no thicker
    than the output's (:func:`thinslice.grid.keeps_acquired`), an interpolation (it passes
    through them), or a method that copies them anyway (a checkpoint not trained to
    re-estimate them)."""
    if keep_acquired or grid.keeps_acquired(volume.thickness, plan.spacing):
        return True
    if method.reestimates_acquired():
        return False
    if method.passes_through:  # as an interpolation does: nothing to warn of
        return True
    log.warning(
        "%s was trained for thin slices: it keeps the acquired %.4g mm slices as they are (bands in coronal "
        "views); the bundled models, or one trained by `thinslice train` on thick scans, re-estimate them",
        method.provenance(plan.r),
        volume.thickness,
    )
    return True


def reach_note(plan: grid.Plan, num_slices: int) -> str:
    """`` (2 past each end slice's centre)``: the output slices a plan makes past the end
    slices' centres, for the log and ``info -i``; empty when none."""
    before, after = plan.margins(num_slices)
    if before == after == 0:
        return ""
    if before == after:
        return f" ({before} past each end slice's centre)"
    if before == 0:  # a grid anchored at the first centre whose spacing does not divide the span
        return f" ({after} past the last slice's centre)"
    if after == 0:
        return f" ({before} before the first slice's centre)"
    return f" ({before} before the first slice's centre, {after} past the last)"


def describe(
    volume: Volume,
    fn: Method,
    *,
    scale: int | None = None,
    target_spacing: float | None = None,
    slice_thickness: float | None = None,
    output_thickness: float | None = None,
    keep_acquired: bool = False,
) -> list[str]:
    """What :func:`upsample` would read from ``volume`` and make of it with ``fn``, without
    doing it (``thinslice info -i``): the acquisition, whether the values look like CT, the
    output grid, and what makes it (for the model, the checkpoints the acquisition picks).

    Raises:
        InputError, ConfigError, ModelError: what :func:`upsample` would refuse before any work,
            except values that do not look like CT, which are a line of the answer.
    """
    require_usable(volume)
    check_request(
        fn, scale=scale, target_spacing=target_spacing, slice_thickness=slice_thickness,
        output_thickness=output_thickness,
    )  # fmt: skip
    if slice_thickness is not None:
        volume = volume.with_data(volume.data, slice_thickness=slice_thickness)
    plan = resolve_plan(
        volume, fn, scale, target_spacing, output_thickness=output_thickness, keep_acquired=keep_acquired
    )
    check_output_thickness(volume, plan, output_thickness, keep_acquired)
    reach = reach_note(plan, volume.num_slices)
    h, w = volume.data.shape[1:]
    sw, sh = volume.geometry.inplane_spacing
    said = ASSUMED_CONTIGUOUS if volume.slice_thickness is None else "as read"
    if slice_thickness is not None:
        said = "as given by --slice-thickness"
    if grid.overlapping(volume.thickness, volume.slice_spacing):
        said += ", overlapping"
    elif volume.thickness < volume.slice_spacing * (1 - grid.RATIO_TOLERANCE):
        said += ", with gaps between them"
    problem = ct_value_problem(volume.data)
    values = "look like CT" if problem is None else f"do not look like CT: {problem} (--accept-non-ct to upsample)"
    kept = acquired_kept(volume, fn, plan, keep_acquired)
    width = grid.output_thickness_width(output_thickness, volume.thickness, plan.spacing)
    thick = f", each averaged over {output_thickness:.4g} mm" if width > 1 and output_thickness else ""
    made_by = fn.made_by(volume.data, plan.r, thickness=volume.thickness / volume.slice_spacing,
                         spacing=volume.voxel_spacing)  # fmt: skip
    return [
        f"{volume.name}: {volume.num_slices} slices {volume.slice_spacing:.4g} mm apart, {volume.thickness:.4g} mm "
        f"thick ({said}); {h} x {w} pixels of {sh:.4g} x {sw:.4g} mm",
        f"values {float(volume.data.min()):.0f} to {float(volume.data.max()):.0f}: they {values}",
        f"upsample: x{plan.r}{_regrid_words(plan)} to "
        f"{plan.output_slices(volume.num_slices)} slices {plan.spacing:.4g} mm apart{reach}{thick}, "
        + _acquired_words(kept, resampled=plan.positions is not None, averaged=bool(thick), picked=_picked(plan)),
        f"made by: {made_by}",
    ]


def _picked(plan: grid.Plan) -> bool:
    """Whether every output slice is one of the synthesized slices (an interpolation's plan
    for a ratio that is not whole: :func:`thinslice.grid.plan_for_spacing`)."""
    return plan.positions is not None and bool(np.allclose(plan.positions, np.round(plan.positions)))


def _regrid_words(plan: grid.Plan) -> str:
    """How the synthesized slices become the output grid, for ``info -i``."""
    if plan.positions is None:
        return ""
    return f", one slice in {plan.step:.0f} of it taken," if _picked(plan) else " then resampled linearly"


def _acquired_words(kept: bool, resampled: bool, averaged: bool = False, picked: bool = False) -> str:
    """What ``info -i`` says of the acquired slices: kept, synthesized, or kept on the
    synthesized grid and then resampled or averaged with the rest (as upsample records
    in ``acquired_kept``: such slices are no longer the acquired ones)."""
    if not kept:
        return "every slice synthesized, the acquired positions too"
    if picked:
        return "the acquired slices kept where the output grid has them"
    if resampled:
        return "the acquired slices kept on that grid, then resampled with the others"
    if averaged:
        return "the acquired slices kept on that grid, then averaged with the others"
    return "the acquired slices kept unchanged"
