"""``upsample``: the main job, thick-slice volume in, thin-slice volume out.

The pipeline: read (or take) a volume, check it, resolve the factor with the method,
check memory, run the method, put the acquired slices back, return a volume with the
new slice spacing. Saving is the caller's step (:func:`thinslice.io.save`).
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
from thinslice.methods import Method, get_method, method_class, unused_options
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
    """Round and clip float HU into ``dtype`` (no-op conversion for float types)."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def resolve_scale(volume: Volume, scale: int | None, target_spacing: float | None, default: int) -> int:
    if scale is not None and target_spacing is not None:
        raise ConfigError("give either --scale or --target-spacing, not both")
    if target_spacing is not None:
        return grid.scale_for_spacing(volume.slice_spacing, target_spacing)
    return grid.check_scale(default if scale is None else scale)


def upsample_volume(volume: Volume, method: Method, r: int) -> tuple[Volume, Volume | None]:
    """Apply ``method`` at factor ``r``; acquired slices are copied bit-identically.

    The output keeps origin, direction and in-plane spacing; its slice spacing is the
    input's divided by ``r`` and output slice ``r * k`` is input slice ``k``.

    Returns:
        the result and, when the method gives one, its uncertainty (float32 HU).
    """
    try:
        result = method.run(volume.data.astype(np.float32), r)
    except MemoryError as err:  # the estimate in check_resources was too low
        raise ResourceError(f"ran out of memory upsampling {volume.name} x{r}; {memory_hint()}") from err
    expected = (grid.output_slices(volume.num_slices, r), *volume.data.shape[1:])
    if result.data.shape != expected:
        raise RuntimeError(f"method returned shape {result.data.shape}, expected {expected}")
    out = grid.keep_acquired(to_dtype(result.data, output_dtype(volume.data)), volume.data, r)
    upsampled = volume.with_data(out, volume.slice_spacing / r)
    source = upsampled.meta.pop("source", None)  # the result was not read from there...
    if source is not None:
        upsampled.meta["derived_from"] = source  # ...but save() must never overwrite it
    upsampled.meta["scale"] = r
    spread = None
    if result.uncertainty is not None:
        spread = upsampled.with_data(np.asarray(result.uncertainty, dtype=np.float32))
        spread.name = f"{volume.name}_uncertainty"
    return upsampled, spread


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
    accept_non_ct: bool = False,
    fast: bool = False,
    uncertainty: bool = False,
    force: bool | None = None,
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
        accept_non_ct: upsample values that do not look like CT (see
            :func:`thinslice.ct.ct_value_problem`) with a warning instead of refusing.
        fast: with the model, fuse only the coronal and sagittal views (faster; measured
            cost in BENCHMARKS.md).
        uncertainty: also return the per-voxel disagreement between the model's views
            (HU, same grid as the result; 0 at acquired slices). Model only.

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
    fn = build_method(method, model=model, device=device, progress=progress, fast=fast, uncertainty=uncertainty)
    is_sitk = type(image).__name__ == "Image" and type(image).__module__.startswith("SimpleITK")
    if isinstance(image, Volume):
        volume = image
    elif is_sitk:
        volume = from_sitk(image)
    else:
        volume = load(image, series_uid=series_uid)
    result, spread = upsample_checked(
        volume, fn, scale=scale, target_spacing=target_spacing, accept_non_ct=accept_non_ct
    )
    if not uncertainty:
        return to_sitk(result) if is_sitk else result
    assert spread is not None  # the method gives one (checked above)
    return (to_sitk(result), to_sitk(spread)) if is_sitk else (result, spread)


def build_method(
    method: str,
    *,
    model: str | os.PathLike[str] | None = None,
    device: str = "auto",
    progress: bool = False,
    fast: bool = False,
    uncertainty: bool = False,
) -> Method:
    """Build ``method`` (before any scan is read), refusing options it does not take.

    Raises:
        ConfigError: an unknown method, or an option (``model``, ``fast``,
            ``uncertainty``) the method does not take.
        ModelError: the checkpoint cannot be used.
    """
    unused = unused_options(method, model=model, fast=fast)
    if uncertainty and not method_class(method).gives_uncertainty:
        unused.append("uncertainty")
    if unused:
        flags = ", ".join(f"--{name}" for name in unused)
        raise ConfigError(f"{flags} applies to --method model, not {method}")
    return get_method(method, model=model, device=device, progress=progress, fast=fast)


def upsample_checked(
    volume: Volume,
    fn: Method,
    *,
    scale: int | None = None,
    target_spacing: float | None = None,
    accept_non_ct: bool = False,
) -> tuple[Volume, Volume | None]:
    """The checks and the work of :func:`upsample` for a loaded volume and a built method
    ``fn``; a batch builds the method once and calls this per volume.

    Returns:
        the result and the method's uncertainty map (or None).

    Raises:
        InputError, ConfigError, ModelError, ResourceError: as :func:`upsample`.
    """
    require_usable(volume)
    check_ct_values(volume, accept_non_ct=accept_non_ct)
    r = fn.check_scale(resolve_scale(volume, scale, target_spacing, fn.default_scale))
    check_resources(volume, r, fn)
    log.info(
        "%s: %d slices at %.4g mm -> x%d with %s", volume.name, volume.num_slices, volume.slice_spacing, r, fn.name
    )
    return upsample_volume(volume, fn, r)


def check_resources(volume: Volume, r: int, fn: Method) -> None:
    """Refuse, before any work, a job whose memory estimate exceeds what is free.

    Host memory for the output and the method's workspace, and accelerator memory for
    methods that use one (see :mod:`thinslice.memory`).

    Raises:
        ResourceError: with the estimate, the free memory and what to change.
    """
    what = f"upsampling {volume.name} {'x'.join(map(str, volume.data.shape))} x{r} with {fn.name}"
    hint = memory_hint(fn.device)
    require_memory(fn.host_bytes(volume.data.shape, r), what, hint)
    needed = fn.device_bytes(volume.data.shape, r)
    free = cuda_free_memory(fn.device)
    if needed is not None and free is not None:
        require_memory(needed, what, hint, free=free, where=str(fn.device))


def memory_hint(device: str | None = None) -> str:
    """The ways out of a job too big for the memory, in one clause."""
    options = ["crop the scan", "use a smaller --scale"]
    if device is not None and device != "cpu":
        options.insert(0, "try --device cpu")
    return ", ".join(options[:-1]) + " or " + options[-1]
