"""The one way thinslice writes a file: a hidden partial file beside it, then a rename.

A process killed while writing leaves at most a hidden ``.NAME.<host>-<pid>.<random>.part``
file, never a half-written file at the name the user asked for; the next write of the
same output removes such leftovers of dead processes on this machine. Images, checkpoints,
JSON reports, pictures and markers all go through :func:`atomic_path`; formats that write a
header and a data file through :func:`atomic_files`; a DICOM series (a folder of files)
through :func:`atomic_folder`, the same mechanism for a folder.

Without ``overwrite`` a file is published with ``os.link``, which fails when the name
exists: the no-clobber check happens at the rename itself, so of two runs racing for the
same name one wins and the other gets "already exists", instead of silently replacing it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import re
import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from thinslice.errors import OutputError

log = logging.getLogger(__name__)


def writer_tag() -> str:
    """``<host>-<pid>`` of this process, as put in the names of its partial files."""
    return f"{re.sub(r'[^A-Za-z0-9_]', '_', socket.gethostname()) or 'host'}-{os.getpid()}"


@contextlib.contextmanager
def atomic_path(out: str | os.PathLike[str], *, suffix: str = "", overwrite: bool = True) -> Iterator[Path]:
    """Yield a hidden partial path next to ``out``; rename it onto ``out`` when the block ends.

    The partial file is created empty (with the umask's permissions, unlike ``mkstemp``'s
    0600) before the block runs. If the block raises (or the process is interrupted by a
    signal the CLI turns into an exception), the partial file is removed and ``out`` is
    untouched.

    Args:
        out: the final path.
        suffix: appended to the partial name, for writers that pick the format from the
            extension (``".nii.gz"``).
        overwrite: replace an existing ``out``; when False, an ``out`` that exists at the
            moment of publishing (even one another process wrote meanwhile) is kept and
            :class:`OutputError` raised.

    Raises:
        OutputError: the folder does not take new files, or ``out`` exists and not ``overwrite``.
    """
    out = Path(out)
    remove_stale_parts(out)
    tmp = part_name(out, suffix)
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as err:
        raise OutputError(f"cannot write in {out.parent}: {err.strerror or err}; choose another output") from err
    try:
        yield tmp
        publish(tmp, out, overwrite=overwrite)
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
    one deleted last, or renamed back if the second rename fails. A process killed in
    between leaves the old folder under its hidden ``.old`` name; the next write of
    ``out`` renames it back when ``out`` is missing (the previous output is kept, as
    for files), or deletes it when the new folder was published.

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


@contextlib.contextmanager
def atomic_files(out: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a hidden folder next to ``out`` in which to write ``out.name`` and its companion
    files (the ``.raw`` of a ``.mhd``) under their final names; publish them all when the
    block ends: companions first, ``out`` (the header that points at them) last.

    So a header never names a hidden partial file, and a rerun replaces the companions
    instead of orphaning them. On failure the folder and everything in it is removed.
    """
    out = Path(out)
    remove_stale_parts(out)
    tmp = part_name(out, "")
    try:
        tmp.mkdir(mode=0o777)
    except OSError as err:
        raise OutputError(f"cannot write in {out.parent}: {err.strerror or err}; choose another output") from err
    try:
        yield tmp
        names = sorted(e.name for e in os.scandir(tmp) if e.name != out.name) + [out.name]
        for name in names:
            publish(tmp / name, out.parent / name, overwrite=overwrite)
        tmp.rmdir()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def part_name(out: Path, suffix: str = "") -> Path:
    """The hidden partial name of ``out`` for this process: ``.NAME.<host>-<pid>.<hex>.part<suffix>``."""
    return out.parent / f".{out.name}.{writer_tag()}.{secrets.token_hex(4)}.part{suffix}"


def publish(tmp: Path, out: Path, *, overwrite: bool) -> None:
    """Move the finished file ``tmp`` to ``out``; without ``overwrite``, never over an existing file.

    The no-clobber case uses ``os.link`` (atomic, fails if ``out`` exists); on filesystems
    without hard links it falls back to a check just before ``os.replace``.
    """
    if overwrite:
        os.replace(tmp, out)
        return
    try:
        os.link(tmp, out)
    except FileExistsError as err:
        raise OutputError(
            f"output {out} already exists (written by another run meanwhile?); pass --overwrite to replace it"
        ) from err
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS):
            raise
        if out.exists() or out.is_symlink():  # no hard links here: check as late as possible
            raise OutputError(f"output {out} already exists; pass --overwrite to replace it") from err
        os.replace(tmp, out)
        return
    tmp.unlink()


def write_text(out: str | os.PathLike[str], text: str, *, overwrite: bool = True) -> Path:
    """Write ``text`` to ``out`` atomically, flushed to disk before the rename.

    Raises:
        OutputError: the write fails (disk full, permissions), or ``out`` exists and not
            ``overwrite``; nothing is left at ``out`` or beside it.
    """
    out = Path(out)
    try:
        with atomic_path(out, overwrite=overwrite) as tmp, tmp.open("w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as err:
        raise OutputError(f"cannot write {out}: {err.strerror or err}") from err
    return out


def write_json(out: str | os.PathLike[str], data: object, *, overwrite: bool = True) -> Path:
    """Write ``data`` as indented JSON to ``out`` atomically (see :func:`write_text`).

    NaN and infinite numbers (a metric with nothing to score, the PSNR of identical
    images) are written as ``null``: standard JSON has neither, and strict readers refuse
    the file that Python's ``NaN`` makes."""
    return write_text(out, json.dumps(_finite(data), indent=2, allow_nan=False) + "\n", overwrite=overwrite)


def _finite(data: object) -> object:
    """``data`` with every non-finite float replaced by None (dicts, lists and tuples walked)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: _finite(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(value) for value in data]
    return data


def remove_stale_parts(out: Path) -> None:
    """Delete partial files (or folders) of ``out`` left by processes on this machine that were
    killed; a replaced folder they left aside (``.old``) goes back to ``out`` when ``out``
    is missing, and is deleted otherwise.

    Only POSIX (a process is alive if ``kill(pid, 0)`` finds it); files of live or remote
    processes are left alone.
    """
    if os.name != "posix":
        return
    host = writer_tag().rsplit("-", 1)[0]
    pattern = re.compile(rf"\.{re.escape(out.name)}\.{re.escape(host)}-(\d+)\.[0-9a-f]+\.(part.*|old)")
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
            if match.group(2) == "old" and not out.exists() and not out.is_symlink():
                os.rename(stale, out)  # killed between its two renames: the previous output back
                log.info("restored %s, set aside by an interrupted run", out)
                continue
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


def check_destination(
    out: str | os.PathLike[str],
    *,
    overwrite: bool,
    what: str = "output",
    option: str | None = None,
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    example: Path | None = None,
) -> Path:
    """Refuse, before any work, a file destination that cannot or must not be written: it
    is one of ``inputs`` (first: the probe would touch the input's folder); its folder is a
    file, missing, or does not take new files (probed: ``os.access`` says yes to root
    everywhere); it is a folder; it exists and not ``overwrite``. The one rule for every
    file thinslice writes (:func:`thinslice.io.files.check_output_path` adds the formats).

    Args:
        what: the destination, for the messages (``"output"``, ``"--json"``, ``"checkpoint"``).
        option: the option to change (default ``what``).
        inputs: the paths read (None entries are skipped).
        example: a file name to suggest when ``out`` is a folder.

    Raises:
        OutputError: naming ``what`` and the fix.
    """
    out, option = Path(out), option or what
    given = [src for src in inputs if src]
    for src in given:
        if same_file(src, out):
            noun = "the input file" if len(given) == 1 else "an input"
            raise OutputError(f"{what} {out} is {noun}; choose another {option} (inputs are never overwritten)")
    parent = out.parent if str(out.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"{what} folder {parent} is a file, not a folder; choose another {option}")
    if not parent.is_dir():
        raise OutputError(f"{what} folder does not exist: {parent}; create it first")
    if out.is_dir():
        raise OutputError(f"{what} {out} is a folder; give a file name" + (f" such as {example}" if example else ""))
    probe_write(parent, what, option)
    if (out.exists() or out.is_symlink()) and not overwrite:  # a dangling link too
        raise OutputError(f"{what} {out} already exists; pass --overwrite to replace it")
    return out


def probe_write(folder: Path, what: str = "output", option: str = "-o") -> None:
    """Create and delete a file in ``folder``: the honest test of writability (``os.access``
    says yes to root everywhere, even under ``/proc`` or on a read-only mount)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".thinslice-probe-", dir=folder)
    except OSError as err:
        raise OutputError(f"cannot write {what} in {folder}: {err.strerror or err}; choose another {option}") from err
    os.close(fd)
    os.unlink(probe)


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether ``a`` and ``b`` name one file or folder however spelled (``..``, symbolic or
    hard links); False when either is missing and they differ as written."""
    try:
        return Path(a).resolve() == Path(b).resolve() or os.path.samefile(a, b)
    except OSError:
        return False
