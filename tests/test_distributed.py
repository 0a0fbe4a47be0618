"""The process-group helpers with two real gloo processes (what torchrun gives each rank)."""

from __future__ import annotations

import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from thinslice.distributed import DistEnv, any_rank, broadcast_flags


def _rank(rank: int, port: int, out: Path) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        env, cpu = DistEnv(world_size=2, rank=rank, local_rank=rank), torch.device("cpu")
        answers = [
            any_rank(env, rank == 1, cpu),  # only rank 1 diverged: both must stop
            any_rank(env, False, cpu),
            broadcast_flags(env, (rank == 0, rank == 1), cpu) == (True, False),  # rank 0's flags
        ]
        (out / f"rank{rank}").write_text(",".join(str(a) for a in answers))
    finally:
        dist.destroy_process_group()


def test_a_flag_on_one_rank_reaches_every_rank(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank, args=(port, tmp_path), nprocs=2, join=True)
    assert (tmp_path / "rank0").read_text() == "True,False,True"
    assert (tmp_path / "rank1").read_text() == "True,False,True"


def test_one_process_answers_alone() -> None:
    assert any_rank(DistEnv(), True, torch.device("cpu")) is True
    assert any_rank(DistEnv(), False, torch.device("cpu")) is False
