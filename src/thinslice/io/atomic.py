"""The one way thinslice writes a file: a hidden partial file beside it, then a rename.

A process killed while writing leaves at most a hidden ``.NAME.<host>-<pid>.<random>.part``
file, never a half-written file at the name the user asked for; the next write of the
same output removes such leftovers of dead processes on this machine. Images, checkpoints,
JSON reports and markers all go through :func:`atomic_path`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

from thinslice.errors import OutputError

log = logging.getLogger(__name__)


def writer_tag() -> str:
    """``<host>-<pid>`` of this process, as put in the names of its partial files."""
    return f"{re.sub(r'[^A-Za-z0-9_]', '_', socket.gethostname()) or 'host'}-{os.getpid()}"


@contextlib.contextmanager
def atomic_path(out: str | os.PathLike[str], *, suffix: str = "") -> Iterator[Path]:
    """Yield a hidden partial path next to ``out``; rename it onto ``out`` when the block ends.

    The partial file is created empty (with the umask's permissions, unlike ``mkstemp``'s
    0600) before the block runs. If the block raises, the partial file is removed and
    ``out`` is untouched.

    Args:
        out: the final path.
        suffix: appended to the partial name, for writers that pick the format from the
            extension (``".nii.gz"``).

    Raises:
        OutputError: the folder does not take new files.
    """
    out = Path(out)
    remove_stale_parts(out)
    tmp = out.parent / f".{out.name}.{writer_tag()}.{secrets.token_hex(4)}.part{suffix}"
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as err:
        raise OutputError(f"cannot write in {out.parent}: {err.strerror or err}; choose another output") from err
    try:
        yield tmp
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(out: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``out`` atomically, flushed to disk before the rename."""
    out = Path(out)
    with atomic_path(out) as tmp, tmp.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    return out


def write_json(out: str | os.PathLike[str], data: object) -> Path:
    """Write ``data`` as indented JSON to ``out`` atomically."""
    return write_text(out, json.dumps(data, indent=2, allow_nan=True) + "\n")


def remove_stale_parts(out: Path) -> None:
    """Delete partial files of ``out`` left by processes on this machine that were killed.

    Only POSIX (a process is alive if ``kill(pid, 0)`` finds it); files of live or remote
    processes are left alone.
    """
    if os.name != "posix":
        return
    host = writer_tag().rsplit("-", 1)[0]
    pattern = re.compile(rf"\.{re.escape(out.name)}\.{re.escape(host)}-(\d+)\.[0-9a-f]+\.part.*")
    try:
        names = [e.name for e in os.scandir(out.parent) if e.name.startswith(".")]
    except OSError:
        return
    for name in names:
        match = pattern.fullmatch(name)
        if match is None or int(match.group(1)) == os.getpid() or _alive(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):
            (out.parent / name).unlink()
            log.info("removed %s, left by an interrupted run", out.parent / name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True
