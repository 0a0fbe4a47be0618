"""Walking a folder tree the same way wherever thinslice looks for scans.

Symlinked folders are followed (a PACS export or a study tree is often assembled from
links), each real folder once (a link back up the tree would loop), and hidden names
(``.DS_Store``, macOS ``._`` forks, a batch's hidden work folders) are left out.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

#: Suffixes of files no folder of scans holds DICOM in (a header's data, reports, pictures,
#: archives), so that looking for a series never opens them as DICOM.
NOT_DICOM_SUFFIXES = frozenset(
    {".raw", ".zraw", ".gz", ".json", ".csv", ".txt", ".md", ".png", ".jpg", ".pdf", ".zip", ".pt", ".xml"}
)


def walk(root: str | os.PathLike[str], *, exclude: Path | None = None) -> Iterator[tuple[Path, list[str]]]:
    """``(folder, its visible file names)`` for ``root`` and every folder below it, in
    sorted order, symlinked folders followed once; ``exclude`` (resolved) and below skipped.
    An unreadable folder is logged and left out."""
    seen: set[tuple[int, int]] = set()
    for name, dirs, files in os.walk(root, onerror=_unreadable, followlinks=True):
        here = Path(name)
        stat = here.stat()
        if (stat.st_dev, stat.st_ino) in seen:  # reached again through a link
            dirs[:] = []
            continue
        seen.add((stat.st_dev, stat.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (here / d).resolve() != exclude)
        yield here, sorted(f for f in files if not f.startswith("."))


def files_below(root: str | os.PathLike[str], *, exclude: Path | None = None) -> Iterator[Path]:
    """Every visible file under ``root``, as :func:`walk` finds them."""
    for here, files in walk(root, exclude=exclude):
        for name in files:
            path = here / name
            if path.is_file():
                yield path


def _unreadable(err: OSError) -> None:
    log.warning("cannot list %s (%s); its scans are left out", err.filename, err.strerror)
