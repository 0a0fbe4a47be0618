"""The one way thinslice writes a file: a hidden partial file beside it, then a rename.

A process killed while writing leaves at most a hidden ``.NAME.<host>-<pid>.<random>.part``
file, never a half-written file at the name the user asked for; the next write of the
same output removes such leftovers of dead processes on this machine. Images, checkpoints,
JSON reports, pictures and markers all go through :func:`atomic_path`; a DICOM series (a
folder of files) goes through :func:`atomic_folder`, the same mechanism for a folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
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


@contextlib.contextmanager
def atomic_folder(out: str | os.PathLike[str], *, replace: bool = False) -> Iterator[Path]:
    """Yield a new hidden folder next to ``out``; rename it onto ``out`` when the block ends.

    The folder (``.NAME.<host>-<pid>.<random>.part``) is created empty before the block
    runs. If the block raises, it is removed with everything in it and ``out`` is
    untouched. An empty ``out`` is simply replaced; an ``out`` that holds files is
    replaced only with ``replace=True``: it is renamed aside
    (``.NAME.<host>-<pid>.<random>.old``), the new folder renamed into place, and the old
    one deleted last, or renamed back if the second rename fails. (A process killed
    between the two renames leaves the old folder under its hidden ``.old`` name; it is
    never deleted automatically.)

    Raises:
        OutputError: the parent folder does not take new folders, ``out`` is a file, or
            ``out`` holds files and ``replace`` is False.
    """
    out = Path(out)
    remove_stale_parts(out)
    tag = f"{writer_tag()}.{secrets.token_hex(4)}"
    part = out.parent / f".{out.name}.{tag}.part"
    try:
        part.mkdir(mode=0o777)  # 0777 less the umask, like any new folder
    except OSError as err:
        raise OutputError(f"cannot write in {out.parent}: {err.strerror or err}; choose another output") from err
    try:
        yield part
        _move_folder_into_place(part, out, out.parent / f".{out.name}.{tag}.old", replace)
    except BaseException:
        shutil.rmtree(part, ignore_errors=True)
        raise


def _move_folder_into_place(part: Path, out: Path, old: Path, replace: bool) -> None:
    if out.is_dir() and not out.is_symlink() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists() and not out.is_symlink():
        os.rename(part, out)
        return
    if not out.is_dir() or out.is_symlink():
        raise OutputError(f"output {out} is a file, not a folder; choose another output")
    if not replace:
        raise OutputError(f"output folder {out} already holds files; pass --overwrite to replace them")
    os.rename(out, old)
    try:
        os.rename(part, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if old.exists():
        log.warning("could not delete the replaced folder %s; remove it by hand", old)


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
    """Delete partial files (or folders) of ``out`` left by processes on this machine that were killed.

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
        stale = out.parent / name
        with contextlib.suppress(OSError):
            if stale.is_dir() and not stale.is_symlink():  # a partial folder (atomic_folder)
                shutil.rmtree(stale)
            else:
                stale.unlink()
            log.info("removed %s, left by an interrupted run", stale)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True
