"""Where a batch writes: its output folder and its report's, checked and made before any
case runs, and each case's folders (:func:`make_folders`, removed again when the case fails).

The rules: an output folder is never the input folder nor holds scans a batch did not make
when it lies inside it; outputs there already need --resume or --overwrite; the report
replaces only an earlier thinslice report (or anything with --overwrite), never an input.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from thinslice.errors import InputError, OutputError
from thinslice.io import stem_of, suffix_of
from thinslice.io.atomic import same_file
from thinslice.pipeline.cases import Case, find_cases
from thinslice.pipeline.markers import marker_path

log = logging.getLogger(__name__)

#: The report's name in the output folder when --report does not give one.
REPORT_NAME = "thinslice_report.json"


def check_no_scans_inside(out_dir: Path, src: Path, output_format: str) -> None:
    """Refuse an output folder inside the input folder that holds scans other than a batch's
    outputs (each has its done-marker): the search leaves the output folder out, so they
    would be skipped without a word."""
    if not out_dir.is_dir():
        return
    strays = [c.source for c in find_cases(out_dir, output_format=output_format) if not marker_path(c.source).exists()]
    if strays:
        raise OutputError(
            f"output folder {out_dir} lies inside the input folder {src} and holds {len(strays)} scan(s) that are not "
            f"outputs of a batch (such as {strays[0].relative_to(out_dir.resolve())}), which the search would leave "
            "out; choose an -o outside the input folder, or an empty one"
        )


def prepare(
    src: Path, out_dir: Path, report: Path, csv_column: str | None, output_format: str, overwrite: bool, resume: bool
) -> list[Case]:
    """Rank 0's setup: check the output folder and the report's, create them, list the cases.
    Without --resume or --overwrite, outputs there already stop the batch before anything
    is written (each would fail its case, and the report of the run that made them would
    be replaced by that record)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"output {out_dir} is a file; batch runs need an output folder")
    if not out_dir.exists() and suffix_of(out_dir):
        raise OutputError(
            f"a batch writes one output per scan into a folder, and -o {out_dir} names a file; give a folder such "
            f"as {out_dir.with_name(stem_of(out_dir))}"
        )
    if src.is_dir() and same_file(out_dir, src):  # also through a symlink or '..'
        raise OutputError(f"output folder {out_dir} is the input folder ({src.resolve()}); choose another -o")
    if src.is_dir() and src.resolve() in out_dir.resolve().parents:
        check_no_scans_inside(out_dir, src, output_format)
        log.info("the output folder %s lies inside the input folder; it is left out of the search", out_dir)
    if report.is_dir():
        raise OutputError(f"--report {report} is a folder; give a file name such as {report / REPORT_NAME}")
    cases = find_cases(src, out_dir.resolve(), csv_column=csv_column, output_format=output_format)
    if not cases:  # a wrong -i, most likely: before any folder is made
        raise InputError(f"no scans found in {src} (NIfTI, NRRD, MHA files or DICOM series); check -i")
    there = [c.name for c in cases if (out_dir / c.name).exists()]
    if there and not (overwrite or resume):
        raise OutputError(
            f"{len(there)} of the {len(cases)} outputs are in {out_dir} already (such as {there[0]}); pass --resume "
            "to keep the finished ones and do the rest, or --overwrite to do them all again"
        )
    check_report(report, overwrite, [c.source for c in cases])
    inside = report.parent.resolve() == out_dir.resolve() or out_dir.resolve() in report.parent.resolve().parents
    if not (inside or report.parent.is_dir()):  # as -o: only the output folder is made
        raise OutputError(f"--report folder does not exist: {report.parent}; create it first")
    for folder in (out_dir, report.parent):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(f"cannot create the folder {folder}: {err.strerror}") from err
        if not os.access(folder, os.W_OK):
            raise OutputError(f"folder {folder} is not writable; choose another -o or --report")
    return cases


def make_folders(folders: list[Path], out: Path) -> list[Path]:
    """Create ``folders`` (and their parents); return those created, deepest first.

    Raises:
        OutputError: one cannot be made (a file where a mirrored folder would go, say).
    """
    made: list[Path] = []
    for folder in folders:
        missing = [p for p in (folder, *folder.parents) if not p.exists()]
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(f"cannot make the folder for {out}: {err.strerror or err}") from err
        made += missing
    return made


def check_report(report: Path, overwrite: bool, inputs: list[Path]) -> None:
    """The report may replace only an earlier thinslice report (or anything with ``overwrite``),
    never an input, never a folder."""
    if report.is_dir():
        raise OutputError(f"--report {report} is a folder; give a file name such as {report / REPORT_NAME}")
    if not report.exists():
        return
    if any(same_file(report, src) or src.resolve() in report.resolve().parents for src in inputs):
        raise OutputError(f"--report {report} is an input of this batch; choose another --report")
    if overwrite:
        return
    try:
        previous = json.loads(report.read_text(encoding="utf-8"))
        ours = isinstance(previous, dict) and "thinslice" in previous and "cases" in previous
    except (OSError, ValueError):
        ours = False
    if not ours:
        raise OutputError(
            f"--report {report} exists and is not a thinslice report; pass --overwrite to replace it "
            "or choose another --report"
        )
