"""Will the job fit? Memory estimates, checked against what is free before work starts.

Host memory is ``MemAvailable`` from ``/proc/meminfo``, lowered to the room left under
a cgroup memory limit (containers) when there is one; elsewhere (no ``/proc``) nothing is
checked. CUDA memory is ``torch.cuda.mem_get_info``. What a job needs is the caller's
estimate (each method states its own, see :class:`thinslice.methods.Method`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from thinslice.errors import ResourceError

log = logging.getLogger(__name__)

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
    """Free bytes on a CUDA device (``"cuda:0"`` as methods name it, or a ``torch.device``)
    by ``torch.cuda.mem_get_info``; ``None`` for any other device or when unknown."""
    if not str(device).startswith("cuda"):
        return None
    import torch

    try:
        free, _total = torch.cuda.mem_get_info(torch.device(str(device)))
    except (RuntimeError, AssertionError, ValueError):
        return None
    return int(free)


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
