"""The one process-group helper, for training and batch runs alike.

``torchrun`` starts the processes and sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``;
without it there is one process and nothing here talks to anyone. With several, each
process picks its own GPU (``cuda:LOCAL_RANK``) when the device is ``auto`` or ``cuda``,
and joins a gloo (CPU) or NCCL (GPU) group.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from thinslice.device import resolve_device
from thinslice.errors import ConfigError, ThinsliceError

T = TypeVar("T")
#: How long the ranks wait for each other (a crashed rank ends the run sooner: torchrun
#: stops every worker when one fails).
WAIT = timedelta(hours=24)


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the run: ``rank`` of ``world_size``, ``local_rank`` on its machine."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> DistEnv:
        """Read torchrun's variables (one process when they are absent).

        Raises:
            ConfigError: the variables are not integers or do not fit together.
        """
        try:
            world = int(os.environ.get("WORLD_SIZE") or 1)
            rank = int(os.environ.get("RANK") or 0)
            local = int(os.environ.get("LOCAL_RANK") or 0)
        except ValueError as err:
            raise ConfigError(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers ({err})") from err
        if world < 1 or not 0 <= rank < world:
            raise ConfigError(f"RANK={rank} and WORLD_SIZE={world} do not fit; start several processes with torchrun")
        return cls(world, rank, local)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, spec: str) -> torch.device:
        """The device this process uses: ``auto``/``cuda`` become ``cuda:LOCAL_RANK`` (modulo
        the GPU count) when several processes share a machine.

        Raises:
            ConfigError: ``spec`` is not a device available here.
        """
        device = resolve_device(spec)
        if self.enabled and device.type == "cuda" and spec.strip().lower() in ("auto", "cuda"):
            device = torch.device("cuda", self.local_rank % torch.cuda.device_count())
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return device


@contextmanager
def process_group(env: DistEnv, device: torch.device | None = None) -> Iterator[DistEnv]:
    """Join the group of all ranks for the block (NCCL on CUDA, gloo otherwise); nothing
    happens for a single process. A group already joined is kept and left open.

    Raises:
        ConfigError: the processes cannot meet (not started by torchrun).
    """
    joined = False
    if env.enabled and not dist.is_initialized():
        backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
        try:
            dist.init_process_group(backend, rank=env.rank, world_size=env.world_size, timeout=WAIT)
        except (ValueError, RuntimeError) as err:
            raise ConfigError(
                f"WORLD_SIZE={env.world_size} but the processes cannot meet ({err}); start them with torchrun"
            ) from err
        joined = True
    try:
        yield env
        if joined and dist.is_initialized():
            dist.barrier()  # no rank tears the group down while another still uses it
    finally:
        if joined and dist.is_initialized():
            dist.destroy_process_group()


def from_rank0(env: DistEnv, make: Callable[[], T]) -> T:
    """``make()`` on rank 0, its value (or its :class:`ThinsliceError`) on every rank."""
    if not env.enabled:
        return make()
    payload: list[Any] = [(None, None)]
    if env.is_main:
        try:
            payload = [(make(), None)]
        except ThinsliceError as err:
            payload = [(None, err)]
    dist.broadcast_object_list(payload, src=0)
    value, error = payload[0]
    if error is not None:
        raise error
    return value  # type: ignore[no-any-return]


def gather_objects(env: DistEnv, part: T) -> list[T]:
    """Every rank's ``part``, in rank order, on every rank."""
    if not env.enabled:
        return [part]
    parts: list[Any] = [None] * env.world_size
    dist.all_gather_object(parts, part)
    return parts


def all_gather_tensor(env: DistEnv, tensor: torch.Tensor, device: torch.device) -> list[torch.Tensor]:
    """Every rank's copy of ``tensor`` (same shape on all ranks), on the CPU."""
    if not env.enabled:
        return [tensor.clone()]
    comm = device if dist.get_backend() == "nccl" else torch.device("cpu")
    local = tensor.to(comm)
    parts = [torch.empty_like(local) for _ in range(env.world_size)]
    dist.all_gather(parts, local)
    return [p.cpu() for p in parts]


def any_rank(env: DistEnv, flag: bool, device: torch.device) -> bool:
    """Whether ``flag`` holds on any rank (every rank gets the same answer), so that all
    stop together: a rank that stopped alone would leave the others waiting for it."""
    if not env.enabled:
        return flag
    comm = device if dist.get_backend() == "nccl" else torch.device("cpu")
    value = torch.tensor([int(flag)], device=comm)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def broadcast_flags(env: DistEnv, flags: tuple[bool, ...], device: torch.device) -> tuple[bool, ...]:
    """Rank 0's booleans (stop, save, ...) on every rank."""
    if not env.enabled:
        return flags
    comm = device if dist.get_backend() == "nccl" else torch.device("cpu")
    values = torch.tensor([int(f) for f in flags], device=comm)
    dist.broadcast(values, src=0)
    return tuple(bool(v) for v in values.tolist())
