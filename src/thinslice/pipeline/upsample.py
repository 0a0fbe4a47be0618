"""``upsample``: the main job, thick-slice volume in, thin-slice volume out.

The pipeline: read (or take) a volume, check it, plan the output grid with the method
(:mod:`.plan`), check memory, run the method, put the acquired slices back, return a
volume with the new slice spacing. Saving is the caller's step (:func:`thinslice.io.save`).
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

import numpy as np

from thinslice import grid
from thinslice.ct import check_ct_values, require_usable
from thinslice.errors import ConfigError, ResourceError
from thinslice.io import from_sitk, load, to_sitk
from thinslice.memory import cuda_free_memory, require_memory
from thinslice.methods import Method, get_method, method_class, run_on_grid, unused_options
from thinslice.pipeline.plan import (
    ASSUMED_CONTIGUOUS,
    acquired_kept,
    check_output_thickness,
    check_request,
    reach_note,
    resolve_plan,
)
from thinslice.volume import Volume

log = logging.getLogger(__name__)


def output_dtype(data: np.ndarray) -> np.dtype:
    """int16 for integer HU that fits int16, the input's integer type otherwise, float32 else."""
    if np.issubdtype(data.dtype, np.integer):
        if data.size == 0 or (data.min() >= -32768 and data.max() <= 32767):
            return np.dtype(np.int16)
        return data.dtype
    return np.dtype(np.float32)


def to_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Round and clip float HU into ``dtype`` (no copy when it already is ``dtype``).

    Slice by slice, so the only new volume-sized array is the result."""
    if values.dtype == dtype:
        return values
    if not np.issubdtype(dtype, np.integer):
        return values.astype(dtype)
    info = np.iinfo(dtype)
    out = np.empty(values.shape, dtype)
    for k in range(values.shape[0]):
        np.clip(np.rint(values[k]), info.min, info.max, out=out[k], casting="unsafe")
    return out


def upsample_volume(
    volume: Volume,
    method: Method,
    plan: grid.Plan,
    *,
    output_thickness: float | None = None,
    keep_acquired: bool = False,
) -> tuple[Volume, Volume | None]:
    """Apply ``method`` along ``plan``; the geometry keeps direction and in-plane spacing.

    The output's first slice lies on the input's first slice, or (a plan that reaches past
    the end slices' centres) some output slices before it, and its slices are
    ``plan.spacing`` apart. Acquired slices are copied bit-identically when they are no
    thicker than the output slices (:func:`thinslice.grid.keeps_acquired`) or when
    ``keep_acquired``; thicker ones are re-estimated like the other output slices. An
    ``output_thickness`` above the spacing averages every output slice over it.

    Returns:
        the result and, when the method gives one, its uncertainty (float32 HU).
    """
    kept = acquired_kept(volume, method, plan, keep_acquired)
    width = grid.output_thickness_width(output_thickness, volume.thickness, plan.spacing)
    dtype = output_dtype(volume.data)  # a pass over every voxel: once
    try:
        result = run_on_grid(  # methods take any real dtype: no float copy of the input here
            method,
            volume.data,
            plan,
            thickness=volume.thickness / volume.slice_spacing,
            spacing=volume.voxel_spacing,
            keep_acquired=kept,
            dtype=dtype,
            output_width=width,
        )
    except MemoryError as err:  # the estimate in check_resources was too low
        raise ResourceError(f"ran out of memory upsampling {volume.name} x{plan.r}; {memory_hint()}") from err
    out, spread = to_dtype(result.data, dtype), result.uncertainty
    first = float(plan.fine_positions(volume.num_slices)[0]) / plan.r  # in input slices
    # synthesized slices are as thick as their spacing, or as asked: known, and saved so
    upsampled = volume.with_data(out, plan.spacing, output_thickness or plan.spacing, first=first)
    source = upsampled.meta.pop("source", None)  # the result was not read from there...
    if source is not None:
        upsampled.meta["derived_from"] = source  # ...but save() must never overwrite it
    ratio = volume.slice_spacing / plan.spacing
    upsampled.meta["scale"] = int(round(ratio)) if abs(ratio - round(ratio)) < 1e-6 else round(ratio, 4)
    upsampled.meta["factor"] = plan.r  # what the method ran at (then resampled when they differ)
    upsampled.meta["acquired_kept"] = kept and width == 1.0  # averaged slices are no longer the acquired ones
    upsampled.meta["made_by"] = result.made_by or method.provenance(plan.r)
    uncertainty = None
    if spread is not None:
        uncertainty = upsampled.with_data(np.asarray(spread, dtype=np.float32))
        uncertainty.name = f"{volume.name}_uncertainty"
        fields = uncertainty.meta.get("nifti_fields") or {}  # the same space, not the CT's display range
        uncertainty.meta["nifti_fields"] = {k: v for k, v in fields.items() if not k.startswith("cal_")}
    return upsampled, uncertainty


def upsample(
    image: Any,
    scale: int | None = None,
    *,
    target_spacing: float | None = None,
    method: str | Method = "model",
    model: str | os.PathLike[str] | None = None,
    device: str = "auto",
    series_uid: str | None = None,
    progress: bool = False,
    accept_non_ct: bool = False,
    all_views: bool = False,
    precision: str = "auto",
    uncertainty: bool = False,
    slice_thickness: float | None = None,
    output_thickness: float | None = None,
    keep_acquired: bool = False,
    adapt: float | None = None,
    force: bool | None = None,
    fast: bool | None = None,
) -> Any:
    """Synthesize thin slices from thick ones: those between the acquired slices, and the
    acquired positions too where the input slices are thicker than the output's.

    Args:
        image: a :class:`Volume`, a ``SimpleITK.Image``, or a path (NIfTI/NRRD/MHA file
            or DICOM folder).
        scale: the factor ``r`` (2-8); the output has ``r * (D - 1) + 1`` slices, and for
            slices thicker than the output's as many more past each end slice's centre as
            fit inside it (:func:`thinslice.grid.reach`; 2 at each end from 5 mm to 1 mm).
            Defaults to the model's own scale for ``method="model"``, else 2.
        target_spacing: alternative to ``scale``: the wanted slice spacing in mm. Any
            finer spacing works: a ratio the method makes is made directly, others by
            synthesizing at the next factor up and resampling linearly (see
            :func:`thinslice.grid.plan_for_spacing`).
        method: a name from :func:`thinslice.methods.available`, or a
            :class:`~thinslice.methods.Method` instance of one's own.
        model: a checkpoint for ``method="model"`` (default: the bundled model).
        device: ``auto``, ``cpu``, ``cuda[:N]`` or ``mps``.
        accept_non_ct: upsample values that do not look like CT (see
            :func:`thinslice.ct.ct_value_problem`) with a warning instead of refusing.
        all_views: with the model, also fuse the axial network's view (three views; by
            default the coronal and sagittal ones, measured better in BENCHMARKS.md).
        precision: with the model, ``auto`` (bfloat16 where the CPU or GPU has it natively),
            ``float32`` or ``bfloat16``: what the convolutions compute in.
        uncertainty: also return the per-voxel disagreement between the model's views
            (HU, same grid as the result; 0 at acquired slices kept unchanged, as thin
            ones are: thick ones are re-estimated, and disagreed on). Model only.
        slice_thickness: the input's slice thickness in mm, overriding what the file says
            (DICOM SliceThickness); without either, the slices are taken as contiguous
            (thickness = spacing), and that is logged.
        output_thickness: the thickness (mm) of the output slices; default their spacing.
            Thicker averages each synthesized slice over that thickness, at its position
            (as a scanner's thicker reconstruction would); thinner than both the spacing and
            the input slices is refused.
        keep_acquired: copy the acquired slices into the output even when they are
            thicker than the output slices (by default those are re-estimated), on the
            grid from the first slice's centre to the last's.
        adapt: minutes to fine-tune the model on this scan first (self-supervised; the
            bundled checkpoint is copied to a temporary folder, never changed).

    Raises:
        InputError: unreadable input, fewer than 3 slices, NaN/Inf voxels, or (without
            ``accept_non_ct``) values that do not look like CT or a constant volume.
        ResourceError: the job would not fit in the free memory (checked before it starts).

    Returns:
        A :class:`Volume` for a path or a Volume, a ``SimpleITK.Image`` for an Image;
        with ``uncertainty=True`` a pair ``(result, uncertainty)`` of that kind.

    Example:
        >>> thin = thinslice.upsample("ct_5mm.nii.gz", scale=2)   # doctest: +SKIP
        >>> thinslice.save(thin, "ct_2.5mm.nii.gz")                 # doctest: +SKIP
    """
    if force is not None:
        warnings.warn("upsample(force=...) is now accept_non_ct=...", DeprecationWarning, stacklevel=2)
        accept_non_ct = accept_non_ct or force
    if fast is not None:
        warnings.warn("upsample(fast=...): two views are now the default", DeprecationWarning, stacklevel=2)
    fn = build_method(
        method,
        model=model,
        device=device,
        progress=progress,
        all_views=all_views,
        precision=precision,
        uncertainty=uncertainty,
    )
    is_sitk = type(image).__name__ == "Image" and type(image).__module__.startswith("SimpleITK")
    if isinstance(image, Volume):
        volume = image
    elif is_sitk:
        volume = from_sitk(image)
    else:
        volume = load(image, series_uid=series_uid)
    result, spread = upsample_checked(
        volume,
        fn,
        scale=scale,
        target_spacing=target_spacing,
        accept_non_ct=accept_non_ct,
        slice_thickness=slice_thickness,
        output_thickness=output_thickness,
        keep_acquired=keep_acquired,
        adapt=adapt,
        device=device,
        progress=progress,
    )
    if not uncertainty:
        return to_sitk(result) if is_sitk else result
    assert spread is not None  # the method gives one (checked above)
    return (to_sitk(result), to_sitk(spread)) if is_sitk else (result, spread)


def build_method(
    method: str | Method,
    *,
    model: str | os.PathLike[str] | None = None,
    device: str = "auto",
    progress: bool = False,
    all_views: bool = False,
    precision: str = "auto",
    uncertainty: bool = False,
) -> Method:
    """Build ``method`` (before any scan is read), refusing options it does not take.

    Raises:
        ConfigError: an unknown method, or an option (``model``, ``all_views``, ``precision``,
            ``device`` other than auto or cpu, ``uncertainty``) the method does not take.
        ModelError: the checkpoint cannot be used.
    """
    if isinstance(method, Method):  # one's own, as evaluate takes it: run as it was built
        if model is not None or all_views or (uncertainty and not method.gives_uncertainty):
            raise ConfigError(f"model=, all_views= and uncertainty= apply to the model by name, not {method.name}")
        return method
    if not isinstance(method, str):
        raise ConfigError(f"method takes a name or a thinslice.methods.Method instance, got {method!r}")
    unused = unused_options(method, model=model, all_views=all_views, precision=precision, device=device)
    if uncertainty and not method_class(method).gives_uncertainty:
        unused.append("uncertainty")
    if unused:
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in unused)
        raise ConfigError(f"{flags} applies to --method model, not {method}")
    options = {"all_views": all_views, "precision": precision, "uncertainty": uncertainty}
    return get_method(method, model=model, device=device, progress=progress, **options)


def upsample_checked(
    volume: Volume,
    fn: Method,
    *,
    scale: int | None = None,
    target_spacing: float | None = None,
    accept_non_ct: bool = False,
    slice_thickness: float | None = None,
    output_thickness: float | None = None,
    keep_acquired: bool = False,
    adapt: float | None = None,
    device: str = "auto",
    progress: bool = False,
) -> tuple[Volume, Volume | None]:
    """The checks and the work of :func:`upsample` for a loaded volume and a built method
    ``fn``; a batch builds the method once and calls this per volume.

    Returns:
        the result and the method's uncertainty map (or None).

    Raises:
        InputError, ConfigError, ModelError, ResourceError: as :func:`upsample`.
    """
    check_request(
        fn, scale=scale, target_spacing=target_spacing, slice_thickness=slice_thickness,
        output_thickness=output_thickness, adapt=adapt,
    )  # fmt: skip
    require_usable(volume)
    check_ct_values(volume, accept_non_ct=accept_non_ct)
    if slice_thickness is not None:
        volume = volume.with_data(volume.data, slice_thickness=slice_thickness)
    plan = resolve_plan(
        volume, fn, scale, target_spacing, output_thickness=output_thickness, keep_acquired=keep_acquired
    )
    check_output_thickness(volume, plan, output_thickness, keep_acquired)
    check_resources(volume, plan, fn)
    log.info(
        "%s: %d slices at %.4g mm, %.4g mm thick%s -> %d at %.4g mm%s with %s (x%d%s)",
        volume.name,
        volume.num_slices,
        volume.slice_spacing,
        volume.thickness,
        f" ({ASSUMED_CONTIGUOUS})" if volume.slice_thickness is None else "",
        plan.output_slices(volume.num_slices),
        plan.spacing,
        reach_note(plan, volume.num_slices),
        fn.name,
        plan.r,
        ", resampled" if plan.positions is not None else "",
    )
    if adapt is None:
        return upsample_volume(volume, fn, plan, output_thickness=output_thickness, keep_acquired=keep_acquired)
    from thinslice.pipeline.adapt import adapted  # the trainer loads only when asked for

    with adapted(fn, volume, plan.r, adapt, device=device, progress=progress) as tuned:
        return upsample_volume(volume, tuned, plan, output_thickness=output_thickness, keep_acquired=keep_acquired)


#: Jobs whose memory estimate is above this say it in the log.
LARGE_JOB = 2**30


def check_resources(volume: Volume, plan: grid.Plan, fn: Method) -> None:
    """Refuse, before any work, a job whose memory estimate exceeds what is free.

    Host memory for the output and the method's workspace, and accelerator memory for
    methods that use one (see :mod:`thinslice.memory`).

    Raises:
        ResourceError: with the estimate, the free memory and what to change.
    """
    r = plan.r
    what = f"upsampling {volume.name} {'x'.join(map(str, volume.data.shape))} x{r} with {fn.name}"
    hint = memory_hint(fn.device)
    d, h, w = volume.data.shape
    shape = (d + 2 * grid.padding(plan.fine_positions(d), d, r), h, w)  # what the method runs on
    needed_host = fn.host_bytes(shape, r)
    if needed_host > LARGE_JOB:
        log.info("%s needs about %.1f GiB of memory besides the input", what, needed_host / 2**30)
    require_memory(needed_host, what, hint)
    needed = fn.device_bytes(shape, r)
    free = cuda_free_memory(fn.device)
    if needed is not None and free is not None:
        require_memory(needed, what, hint, free=free, where=str(fn.device))


def memory_hint(device: str | None = None) -> str:
    """The ways out of a job too big for the memory, in one clause."""
    options = ["crop the scan", "use a smaller --scale"]
    if device is not None and device != "cpu":
        options.insert(0, "try --device cpu")
    return ", ".join(options[:-1]) + " or " + options[-1]
