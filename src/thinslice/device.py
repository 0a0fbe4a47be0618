"""Choosing the torch device (``auto|cpu|cuda|cuda:N|mps``) and the arithmetic it runs in
(``auto|float32|bfloat16``)."""

from __future__ import annotations

import ctypes
import ctypes.util
import difflib
import functools
import logging
import re
from pathlib import Path

import torch

from thinslice.errors import ConfigError

log = logging.getLogger(__name__)

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
PRECISIONS = ("auto", "float32", "bfloat16")
#: CPU flags (Linux /proc/cpuinfo) of native bf16 dot products; without them oneDNN
#: emulates bf16 and is slower than float32.
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
_CPUINFO = Path("/proc/cpuinfo")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """Turn a device string into a :class:`torch.device` that exists on this machine.

    Args:
        spec: ``"auto"`` (CUDA if present, else MPS, else CPU), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"`` or ``"mps"``. Case and surrounding blanks are ignored.

    Raises:
        ConfigError: the string is not a device name (with a "did you mean" hint) or the
            device is not available here.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = str(spec).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "mps":
        if not _mps_available():
            raise ConfigError("device 'mps' is not available on this machine; use --device cpu")
        return torch.device("mps")
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if match:
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {spec!r} requested but CUDA is not available "
                "(no GPU or a CPU-only torch); use --device cpu or --device auto"
            )
        index = int(match.group(1) or 0)
        count = torch.cuda.device_count()
        if index >= count:
            raise ConfigError(
                f"device {spec!r} does not exist: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})"
            )
        return torch.device("cuda", index)
    close = difflib.get_close_matches(text, ["auto", "cpu", "cuda", "mps"], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown device {spec!r}{hint} (choose from {', '.join(DEVICE_CHOICES)})")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from ``/proc/cpuinfo``; empty where unknown (not Linux)."""
    try:
        text = _CPUINFO.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def check_precision(spec: str) -> str:
    """``spec`` normalised (``auto``, ``float32`` or ``bfloat16``).

    Raises:
        ConfigError: ``spec`` is not one of :data:`PRECISIONS`.
    """
    text = str(spec).strip().lower()
    if text not in PRECISIONS:
        raise ConfigError(f"unknown precision {spec!r} (choose from {', '.join(PRECISIONS)})")
    return text


def resolve_precision(spec: str, device: torch.device) -> torch.dtype:
    """The dtype the networks' convolutions run in on ``device``.

    ``auto`` is bfloat16 where the hardware computes it natively (a CUDA GPU with bf16,
    a CPU with AVX-512 BF16 or AMX; measured in BENCHMARKS.md: same quality within
    0.01 dB, about a quarter less time) and float32 everywhere else; ``float32`` and
    ``bfloat16`` force one (bfloat16 is then emulated where the hardware lacks it).

    Raises:
        ConfigError: ``spec`` is not one of :data:`PRECISIONS`.
    """
    text = check_precision(spec)
    if text != "auto":
        return torch.bfloat16 if text == "bfloat16" else torch.float32
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu" and cpu_flags() & BF16_CPU_FLAGS:
        return torch.bfloat16
    return torch.float32


#: glibc ``mallopt`` parameters, and the values set: the largest mmap threshold glibc
#: accepts (32 MiB) and a heap that keeps up to 1 GiB of freed memory.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD, _TRIM_THRESHOLD = 32 << 20, 1 << 30


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def release_freed_memory() -> None:
    """Give the heap's freed buffers back to the system (after a synthesis, before the
    output is written: they would otherwise add to the peak). glibc only."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim(0)


@functools.lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Let glibc's heap keep freed activation buffers for the next batch (once per process).

    By default glibc serves each multi-megabyte activation tensor with a fresh ``mmap`` and
    returns it on free, so every batch page-faults its memory in again: measured on x2
    synthesis of a 512 x 512 x 101 CT, 27 million page faults and twice the time. The
    peak memory is unchanged (the same buffers are reused). Elsewhere (not glibc) nothing
    is changed.

    Returns:
        whether the setting was applied.
    """
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None:
        return False
    applied = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    log.debug("glibc heap keeps freed buffers: %s", applied)
    return applied
