"""Will the job fit? Memory estimates, checked against what is free before work starts.

Host memory is ``MemAvailable`` from ``/proc/meminfo``, lowered to the room left under
a cgroup memory limit (containers) when there is one; elsewhere (no ``/proc``) nothing is
checked. CUDA memory is ``torch.cuda.mem_get_info``. The per-voxel costs below were
measured (tracemalloc and peak RSS; see RELIABILITY.md) on thinslice's own methods.
"""

from __future__ import annotations

import logging
from pathlib import Path

from thinslice.errors import ResourceError

log = logging.getLogger(__name__)

#: Bytes a method allocates while it runs, per output voxel and per input voxel (the
#: output itself, float32 copies, spline coefficients, rounding), measured with tracemalloc.
METHOD_BYTES_PER_VOXEL: dict[str, tuple[float, float]] = {
    "linear": (12.0, 4.0),
    "lanczos": (12.0, 4.0),
    "cubic": (12.0, 16.0),
}
#: For the network on the host (views accumulated on the CPU: sum, sum of squares,
#: result, spread, rounding): 24-25 B per output voxel measured by peak RSS (default
#: config, 40x512x512 x4 on the CPU), plus a margin; also used for unmeasured methods.
MODEL_BYTES_PER_VOXEL = (28.0, 8.0)
UNKNOWN_BYTES_PER_VOXEL = (28.0, 8.0)
#: Device memory of one batch of the network (8 images of the default widths), per pixel
#: of an axial image plus per pixel of a through-plane output image: activations measured
#: in float32 on the CPU (~1.5 kB per pixel at 256 x 256); bf16 autocast on CUDA needs less.
MODEL_DEVICE_BYTES_PER_PIXEL = 1500.0
#: Refuse when the estimate exceeds this share of the free memory.
SAFETY = 0.9
_MEMINFO = Path("/proc/meminfo")
_CGROUP_FILES = (
    (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current")),  # cgroup v2
    (
        Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),  # cgroup v1
        Path("/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ),
)


def available_memory() -> int | None:
    """Bytes of host memory a new allocation can get now, or ``None`` when unknown.

    ``MemAvailable`` (Linux), capped by ``limit - usage`` of the process's cgroup.
    """
    try:
        text = _MEMINFO.read_text()
    except OSError:
        return None
    free: int | None = None
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            free = int(line.split()[1]) * 1024
            break
    if free is None:
        return None
    for limit_file, usage_file in _CGROUP_FILES:
        try:
            limit_text = limit_file.read_text().strip()
            usage = int(usage_file.read_text().strip())
        except (OSError, ValueError):
            continue
        if limit_text.isdigit() and int(limit_text) < 2**60:  # "max" or a huge v1 value: no limit
            free = min(free, max(0, int(limit_text) - usage))
        break
    return free


def cuda_free_memory(device: object) -> int | None:
    """Free bytes on a CUDA device (``torch.cuda.mem_get_info``), ``None`` otherwise."""
    if getattr(device, "type", None) != "cuda":
        return None
    import torch

    try:
        free, _total = torch.cuda.mem_get_info(device)  # type: ignore[arg-type]
    except (RuntimeError, AssertionError):
        return None
    return int(free)


def upsample_bytes(shape: tuple[int, ...], r: int, method: str) -> int:
    """Host bytes ``upsample`` still needs for a ``(D, H, W)`` input already in memory.

    The output array and the method's workspace together (:data:`METHOD_BYTES_PER_VOXEL`).
    """
    d, h, w = (int(s) for s in shape[:3])
    n_in = d * h * w
    n_out = (r * (d - 1) + 1) * h * w
    per_out, per_in = METHOD_BYTES_PER_VOXEL.get(
        method, MODEL_BYTES_PER_VOXEL if method == "model" else UNKNOWN_BYTES_PER_VOXEL
    )
    return int(n_out * per_out + n_in * per_in)


def model_device_bytes(shape: tuple[int, ...], r: int) -> int:
    """Device bytes the network needs for a ``(D, H, W)`` input at factor ``r``.

    Batches go to the device one at a time and results come back to the host, so this
    depends on the image sizes, not on the volume: an axial ``H x W`` image and a
    through-plane ``r*(D-1)+1`` by ``max(H, W)`` image, plus 256 MiB for the weights
    and the CUDA context.
    """
    d, h, w = (int(s) for s in shape[:3])
    pixels = h * w + (r * (d - 1) + 1) * max(h, w)
    return int(MODEL_DEVICE_BYTES_PER_PIXEL * pixels) + 2**28


def require_memory(needed: int, what: str, hint: str, *, free: int | None = None, where: str = "memory") -> None:
    """Raise :class:`ResourceError` when ``needed`` bytes do not fit in what is free.

    Args:
        needed: estimated bytes.
        what: the job, for the message ("upsampling ct x4 with cubic").
        hint: what the user can do about it.
        free: free bytes; default: :func:`available_memory`. ``None`` means unknown:
            nothing is checked.
        where: "memory" or the device name, for the message.
    """
    if free is None and where == "memory":
        free = available_memory()
    if free is None:
        log.debug("%s needs about %s; free %s unknown, not checked", what, _gib(needed), where)
        return
    log.debug("%s needs about %s of %s free %s", what, _gib(needed), _gib(free), where)
    if needed > SAFETY * free:
        raise ResourceError(f"{what} needs about {_gib(needed)} but only {_gib(free)} of {where} is free; {hint}")


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 / 10 else f"{n / 2**20:.0f} MiB"

