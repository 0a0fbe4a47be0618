"""Fast gzip for the ``.nii.gz`` files thinslice writes."""

from __future__ import annotations

import os
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

#: Fast deflate: on CT it gives files about 4 % larger than level 6 in a third of the time.
GZIP_LEVEL = 1
_GZIP_BLOCK = 1 << 22


def gzip_file(src: Path, dst: Path, level: int = GZIP_LEVEL) -> None:
    """Compress ``src`` into ``dst`` on every core: one gzip member per 4 MiB block, as
    ``pigz`` does (zlib releases the GIL). Every gzip reader (zlib's ``gzread`` in ITK and
    FSL, Python's ``gzip`` in nibabel) joins the members into one stream."""

    def pack(block: bytes) -> bytes:
        packer = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: gzip header and CRC
        return packer.compress(block) + packer.flush()

    workers = max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1))
    with src.open("rb") as fin, dst.open("wb") as fout, ThreadPoolExecutor(workers) as pool:
        pending: deque[Future[bytes]] = deque()
        while block := fin.read(_GZIP_BLOCK):
            pending.append(pool.submit(pack, block))
            if len(pending) > 2 * workers:  # bounded memory: a few blocks in flight
                fout.write(pending.popleft().result())
        while pending:
            fout.write(pending.popleft().result())
