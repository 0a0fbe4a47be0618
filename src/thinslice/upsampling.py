"""``upsample``: the main job, thick-slice volume in, thin-slice volume out."""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from thinslice.degrade import check_scale
from thinslice.errors import ConfigError, ResourceError
from thinslice.methods import Method, get_method
from thinslice.volume import Volume

log = logging.getLogger(__name__)


def scale_for_spacing(slice_spacing: float, target_spacing: float) -> int:
    """The integer factor that turns ``slice_spacing`` into ``target_spacing`` (mm).

    Raises:
        ConfigError: the target does not divide the spacing by an integer from 2 to 8;
            the message names the nearest valid targets.
    """
    if target_spacing <= 0:
        raise ConfigError(f"--target-spacing must be positive, got {target_spacing}")
    ratio = slice_spacing / target_spacing
    r = round(ratio)
    if abs(ratio - r) <= 0.01 * ratio and 2 <= r <= 8:
        return int(r)
    lo, hi = max(2, int(np.floor(ratio))), min(8, max(2, int(np.ceil(ratio))))
    options = sorted({slice_spacing / lo, slice_spacing / hi}, reverse=True)
    nearest = " or ".join(f"{o:.4g} mm (x{round(slice_spacing / o)})" for o in options)
    raise ConfigError(
        f"target spacing {target_spacing:g} mm does not divide the slice spacing "
        f"{slice_spacing:.4g} mm by an integer from 2 to 8; nearest valid: {nearest}"
    )


def output_dtype(data: np.ndarray) -> np.dtype:
    """int16 for integer HU that fits int16, the input's integer type otherwise, float32 else."""
    if np.issubdtype(data.dtype, np.integer):
        if data.size == 0 or (data.min() >= -32768 and data.max() <= 32767):
            return np.dtype(np.int16)
        return data.dtype
    return np.dtype(np.float32)


def to_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Round and clip float HU into ``dtype`` (no-op conversion for float types)."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def resolve_scale(volume: Volume, scale: int | None, target_spacing: float | None, default: int) -> int:
    if scale is not None and target_spacing is not None:
        raise ConfigError("give either --scale or --target-spacing, not both")
    if target_spacing is not None:
        return scale_for_spacing(volume.slice_spacing, target_spacing)
    return check_scale(default if scale is None else scale)


def upsample_volume(volume: Volume, method: Method, r: int) -> Volume:
    """Apply ``method`` at factor ``r``; acquired slices are copied bit-identically.

    The output keeps origin, direction and in-plane spacing; its slice spacing is the
    input's divided by ``r`` and output slice ``r * k`` is input slice ``k``.
    """
    try:
        result = method(volume.data.astype(np.float32), r)
    except MemoryError as err:  # the estimate in check_resources was too low
        raise ResourceError(f"ran out of memory upsampling {volume.name} x{r}; {memory_hint()}") from err
    expected = r * (volume.num_slices - 1) + 1
    if result.shape != (expected, *volume.data.shape[1:]):
        raise RuntimeError(f"method returned shape {result.shape}, expected {(expected, *volume.data.shape[1:])}")
    dtype = output_dtype(volume.data)
    out = to_dtype(result, dtype)
    out[::r] = volume.data.astype(dtype)
    upsampled = volume.with_data(out, volume.slice_spacing / r)
    source = upsampled.meta.pop("source", None)  # the result was not read from there...
    if source is not None:
        upsampled.meta["derived_from"] = source  # ...but save() must never overwrite it
    upsampled.meta["scale"] = r
    return upsampled


def upsample(
    image: Any,
    scale: int | None = None,
    *,
    target_spacing: float | None = None,
    method: str = "model",
    model: str | os.PathLike[str] | None = None,
    device: str = "auto",
    series_uid: str | None = None,
    progress: bool = False,
    force: bool = False,
    fast: bool = False,
    uncertainty: bool = False,
) -> Any:
    """Synthesize the slices between the acquired ones.

    Args:
        image: a :class:`Volume`, a ``SimpleITK.Image``, or a path (NIfTI/NRRD/MHA file
            or DICOM folder).
        scale: the factor ``r`` (2-8); the output has ``r * (D - 1) + 1`` slices.
            Defaults to the model's own scale for ``method="model"``, else 2.
        target_spacing: alternative to ``scale``: the wanted slice spacing in mm.
        method: a name from :func:`thinslice.methods.available`.
        model: a checkpoint for ``method="model"`` (default: the bundled model).
        device: ``auto``, ``cpu``, ``cuda[:N]`` or ``mps``.
        force: upsample values that do not look like CT (see
            :func:`thinslice.checks.ct_value_problem`) with a warning instead of refusing.
        fast: with the model, fuse only the coronal and sagittal views (faster; measured
            cost in BENCHMARKS.md).
        uncertainty: also return the per-voxel disagreement between the model's views
            (HU, same grid as the result; 0 at acquired slices). Model only.

    Raises:
        InputError: unreadable input, fewer than 3 slices, NaN/Inf voxels, or (without
            ``force``) values that do not look like CT or a constant volume.
        ResourceError: the job would not fit in the free memory (checked before it starts).

    Returns:
        A :class:`Volume` for a path or a Volume, a ``SimpleITK.Image`` for an Image;
        with ``uncertainty=True`` a pair ``(result, uncertainty)`` of that kind.

    Example:
        >>> thin = thinslice.upsample("ct_5mm.nii.gz", scale=2)   # doctest: +SKIP
        >>> thinslice.save(thin, "ct_2.5mm.nii.gz")                 # doctest: +SKIP
    """
    from thinslice.io import from_sitk, load, to_sitk

    if uncertainty and method != "model":
        raise ConfigError(f"an uncertainty map needs --method model (the views' disagreement), not {method}")
    if fast and method != "model":
        raise ConfigError(f"--fast applies to --method model, not {method}")
    options: dict[str, Any] = {}
    if method == "model":
        options = {"model": model, "device": device, "progress": progress, "fast": fast}
    fn = get_method(method, **options)  # validate the method (and load a model) before the scan
    is_sitk = type(image).__name__ == "Image" and type(image).__module__.startswith("SimpleITK")
    if isinstance(image, Volume):
        volume = image
    elif is_sitk:
        volume = from_sitk(image)
    else:
        volume = load(image, series_uid=series_uid)
    result = upsample_checked(volume, fn, method, scale=scale, target_spacing=target_spacing, force=force)
    if not uncertainty:
        return to_sitk(result) if is_sitk else result
    spread = uncertainty_volume(result, fn)
    return (to_sitk(result), to_sitk(spread)) if is_sitk else (result, spread)


def uncertainty_volume(result: Volume, fn: Method) -> Volume:
    """The last run's per-voxel disagreement between views (float32 HU) on ``result``'s grid."""
    spread = getattr(fn, "last_uncertainty", None)
    if spread is None or spread.shape != result.data.shape:
        raise ConfigError("this method gives no uncertainty map; use --method model")
    out = result.with_data(np.asarray(spread, dtype=np.float32))
    out.name = f"{result.name}_uncertainty"
    return out


def upsample_checked(
    volume: Volume,
    fn: Method,
    method: str,
    *,
    scale: int | None = None,
    target_spacing: float | None = None,
    force: bool = False,
) -> Volume:
    """The checks and the work of :func:`upsample` for a loaded volume and a built method
    ``fn`` (named ``method``); a batch builds the method once and calls this per volume.

    Raises:
        InputError, ConfigError, ModelError, ResourceError: as :func:`upsample`.
    """
    from thinslice.checks import check_ct_values, require_usable

    require_usable(volume)
    check_ct_values(volume, force=force)
    default = int(getattr(fn, "scale", 2))
    r = resolve_scale(volume, scale, target_spacing, default)
    check_scale = getattr(fn, "check_scale", None)  # e.g. a model made for another factor
    if callable(check_scale):
        check_scale(r)
    check_resources(volume, r, method, fn)
    log.info("%s: %d slices at %.4g mm -> x%d with %s", volume.name, volume.num_slices, volume.slice_spacing, r, method)
    return upsample_volume(volume, fn, r)


def check_resources(volume: Volume, r: int, method: str, fn: Method | None = None) -> None:
    """Refuse, before any work, a job whose memory estimate exceeds what is free.

    Host memory for the output and the method's workspace, and for the network on CUDA
    also the device memory of one batch (see :mod:`thinslice.resources`).

    Raises:
        ResourceError: with the estimate, the free memory and what to change.
    """
    from thinslice.resources import cuda_free_memory, model_device_bytes, require_memory, upsample_bytes

    device = getattr(getattr(fn, "synthesizer", None), "device", None)
    what = f"upsampling {volume.name} {'x'.join(map(str, volume.data.shape))} x{r} with {method}"
    hint = memory_hint(str(device) if device is not None else None)
    require_memory(upsample_bytes(volume.data.shape, r, method), what, hint)
    free = cuda_free_memory(device)
    if method == "model" and free is not None:
        require_memory(model_device_bytes(volume.data.shape, r), what, hint, free=free, where=str(device))


def memory_hint(device: str | None = None) -> str:
    """The ways out of a job too big for the memory, in one clause."""
    options = ["crop the scan", "use a smaller --scale"]
    if device is not None and device != "cpu":
        options.insert(0, "try --device cpu")
    return ", ".join(options[:-1]) + " or " + options[-1]
