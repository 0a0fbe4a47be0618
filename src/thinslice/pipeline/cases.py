"""Listing the cases of a batch: every scan under a folder, in a CSV, or one file.

A *case* is one NIfTI/NRRD/MHA file or one DICOM series. Outputs mirror the inputs'
relative paths under the output folder, always in one format (``.nii.gz`` by default;
for ``dicom`` the names have no extension: each is the folder of a derived series):

- ``IN/p1/ct.nrrd`` -> ``OUT/p1/ct.nii.gz``;
- the DICOM files directly inside ``IN/p1/series3/`` -> ``OUT/p1/series3.nii.gz``; when that
  folder holds several series, ``OUT/p1/series3_<SeriesInstanceUID>.nii.gz`` each;
- CSV rows (column ``--csv-column``, else ``path``, else the first; the first row is the
  header): paths relative to the CSV's folder mirror from there, other paths mirror their
  absolute path; a folder row is read like ``-i FOLDER`` (one case per series in it);
- a name taken from inside a file (the SeriesInstanceUID) is made one safe path component
  first (:func:`safe_component`: letters, digits, ``.``, ``_``, ``-``), so a crafted UID such
  as ``../../PWNED`` can never place an output outside the output folder;
- two cases that would get the same output name (``ct.nii.gz`` and ``ct.nrrd``) both get
  ``_<8 hex digits>`` (a hash of their input path) appended to the name instead.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import logging
import os
import re
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

from thinslice.errors import ConfigError, InputError, ThinsliceError
from thinslice.io import stem_of, suffix_of
from thinslice.io.dicom import list_series, series_uid_of
from thinslice.io.walk import NOT_DICOM_SUFFIXES, walk

log = logging.getLogger(__name__)

CSV_COLUMN = "path"
#: Extensions never probed as DICOM (companions of other formats, documents, archives).


@dataclass(frozen=True)
class Case:
    """One scan to upsample.

    Attributes:
        name: output path relative to the output folder, POSIX (``p1/ct.nii.gz``); unique.
        source: the input file or DICOM folder.
        series_uid: the DICOM series to read from ``source`` (None for files).
        error: why the case cannot run, found while listing (e.g. a CSV row that does not exist).
    """

    name: str
    source: Path
    series_uid: str | None = None
    error: str | None = None


def find_cases(
    input: str | os.PathLike[str],
    output_dir: str | os.PathLike[str] | None = None,
    *,
    csv_column: str | None = None,
    output_format: str = "nii.gz",
) -> list[Case]:
    """List the cases of a folder, a CSV or a single file, sorted by output name.

    Files and folders whose names start with a dot, and ``output_dir`` when it lies inside
    a searched folder, are left out. See the module doc for the naming rules.

    Raises:
        InputError: ``input`` does not exist, or the CSV cannot be read.
        ConfigError: ``csv_column`` is not a column of the CSV.
    """
    src = Path(os.path.abspath(input))
    exclude = Path(output_dir).resolve() if output_dir is not None else None
    ext = "" if output_format == "dicom" else "." + output_format.lstrip(".")
    if not src.exists():
        raise InputError(f"input not found: {src}; check the path")
    if src.is_file() and src.name.lower().endswith(".csv"):
        cases = [c for row in _csv_rows(src, csv_column) for c in _cases_of_path(row, src.parent, ext)]
    elif src.is_dir():
        cases = _walk(src, exclude, ext)
    else:
        cases = _cases_of_path(src, src.parent, ext)
    return _unique_names(cases)


def is_one_series(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` (searched recursively, hidden names left out) holds the DICOM
    images of exactly one series and no NIfTI/NRRD/MHA file: then it is one scan, not a
    batch. Stops reading at the second series found."""
    uids: set[str] = set()
    for here, files in walk(folder):
        for name in files:
            path = here / name
            if suffix_of(path):
                return False
            if Path(name).suffix.lower() not in NOT_DICOM_SUFFIXES and (uid := series_uid_of(path)) is not None:
                uids.add(uid)
                if len(uids) > 1:
                    return False
    return len(uids) == 1


def _walk(root: Path, exclude: Path | None, ext: str) -> list[Case]:
    """Every image file and every DICOM series under ``root`` (hidden names and ``exclude`` left out)."""
    cases: list[Case] = []
    dicom: dict[str, list[Path]] = defaultdict(list)  # series UID -> folders holding its files
    for here, files in walk(root, exclude=exclude):
        uids: set[str] = set()
        for name in files:
            path = here / name
            if suffix_of(path):
                cases.append(Case(_rename(path.relative_to(root), ext), path))
            elif Path(name).suffix.lower() not in NOT_DICOM_SUFFIXES:
                uid = series_uid_of(path)
                if uid is not None:
                    uids.add(uid)
        for uid in uids:
            dicom[uid].append(here)
    by_folder: dict[Path, list[str]] = defaultdict(list)
    for uid, places in dicom.items():
        for place in places:  # files of one series in a folder and its subfolders: read once, from the top
            if not any(other in place.parents for other in places):
                by_folder[place].append(uid)
    for place, place_uids in by_folder.items():
        label = place.relative_to(root) if place != root else Path(root.name or "dicom")
        for uid in sorted(place_uids):
            stem = label.name if len(place_uids) == 1 else f"{label.name}_{safe_component(uid)}"
            cases.append(Case((label.parent / (stem + ext)).as_posix(), place, uid))
    return cases


def safe_component(text: str, empty: str = "nouid") -> str:
    """``text`` as one harmless file-name component: every character other than letters,
    digits, ``.``, ``_`` and ``-`` becomes ``_``, leading dots go (no ``..``, no hidden
    names), at most 64 characters; ``empty`` when nothing is left.

    Example:
        >>> safe_component("../../PWNED")
        '_.._PWNED'
    """
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", text).lstrip(".")[:64]
    return cleaned or empty


def _cases_of_path(path: Path, base: Path, ext: str) -> list[Case]:
    """The case(s) of one CSV row or one input file: a file, or each series in a folder."""
    try:
        rel = path.relative_to(base)
    except ValueError:
        rel = Path(*path.parts[1:])  # outside the CSV's folder: mirror the absolute path
    if path.is_dir():
        try:
            series = list_series(path)
        except ThinsliceError as err:
            return [Case(_rename(rel, ext), path, error=str(err))]
        if not series:
            return [Case(_rename(rel, ext), path, error=f"no DICOM files found in {path}")]
        if len(series) == 1:
            return [Case(_rename(rel, ext), path, series[0].uid)]
        return [Case(_rename(rel.with_name(f"{rel.name}_{safe_component(s.uid)}"), ext), path, s.uid) for s in series]
    error = None
    if not path.exists():
        error = f"input not found: {path}; check the path"
    elif not suffix_of(path):
        error = f"unsupported file type: {path.name}; give a .nii, .nii.gz, .nrrd, .mha or .mhd file or a DICOM folder"
    return [Case(_rename(rel, ext), path, error=error)]


def _csv_rows(path: Path, column: str | None) -> list[Path]:
    """The paths in ``column`` of a CSV with a header row; relative ones are from the CSV's folder."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = [row for row in csv.reader(fh) if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"cannot read the CSV {path}: {err}") from err
    if not rows:
        raise InputError(f"the CSV {path} is empty; it needs a header row and one path per row")
    header = [h.strip() for h in rows[0]]
    lower = [h.lower() for h in header]
    if column is not None:
        if column not in header:
            close = difflib.get_close_matches(column, header, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"no column '{column}' in {path}; its columns are {', '.join(header)}.{hint}")
        index = header.index(column)
    else:
        index = lower.index(CSV_COLUMN) if CSV_COLUMN in lower else 0
        # a list without a header row: an image file named where the header should be
        first = Path(header[index]).expanduser() if header[index] and CSV_COLUMN not in lower else None
        if first is not None and suffix_of(first) and (path.parent / first).is_file():  # an absolute one too
            raise InputError(  # a list without a header row: its first scan would be left out unsaid
                f"the first row of {path} names a scan ({header[index]}) but is read as the header; add a header "
                f"row ('{CSV_COLUMN}') above the paths"
            )
    paths: list[Path] = []
    for row in rows[1:]:
        cell = row[index].strip() if index < len(row) else ""
        if cell:
            p = Path(cell).expanduser()
            paths.append(Path(os.path.abspath(p if p.is_absolute() else path.parent / p)))
    return list(dict.fromkeys(paths))  # drop repeated rows, keep the order


def _rename(rel: Path, ext: str) -> str:
    """``rel`` with its image suffix (if any) replaced by ``ext``, POSIX."""
    return (rel.parent / (stem_of(rel) + ext)).as_posix()


def _unique_names(cases: list[Case]) -> list[Case]:
    """Sorted by name; names that clash (ignoring case) get a hash of their input appended."""
    groups: dict[str, list[Case]] = defaultdict(list)
    for case in cases:
        groups[case.name.lower()].append(case)
    unique: list[Case] = []
    for group in groups.values():
        if len(group) == 1:
            unique.append(group[0])
            continue
        for case in group:
            digest = hashlib.sha1(f"{case.source}|{case.series_uid}".encode()).hexdigest()[:8]
            head, _, tail = case.name.rpartition("/")
            stem, dot, suffix = tail.partition(".")
            name = f"{head}/{stem}_{digest}{dot}{suffix}" if head else f"{stem}_{digest}{dot}{suffix}"
            log.warning("%s and %d other input(s) map to %s; writing %s", case.source, len(group) - 1, case.name, name)
            unique.append(replace(case, name=name))
    return sorted(unique, key=lambda c: c.name)
