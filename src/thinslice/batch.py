"""Batch upsampling: every scan under a folder (or listed in a CSV), resumable, and
sharded over the processes of ``torchrun``.

A *case* is one NIfTI/NRRD/MHA file or one DICOM series. Outputs mirror the inputs'
relative paths under the output folder, always in one format (``.nii.gz`` by default):

- ``IN/p1/ct.nrrd`` -> ``OUT/p1/ct.nii.gz``;
- the DICOM files directly inside ``IN/p1/series3/`` -> ``OUT/p1/series3.nii.gz``; when that
  folder holds several series, ``OUT/p1/series3_<SeriesInstanceUID>.nii.gz`` each;
- CSV rows (column ``--csv-column``, else ``path``, else the first; the first row is the
  header): paths relative to the CSV's folder mirror from there, other paths mirror their
  absolute path; a folder row is read like ``-i FOLDER`` (one case per series in it);
- two cases that would get the same output name (``ct.nii.gz`` and ``ct.nrrd``) both get
  ``_<8 hex digits>`` (a hash of their input path) appended to the name instead.

Complete: after each output is renamed into place (atomically), a sidecar
``<output>.done.json`` records the settings and the output's size. With ``resume=True``
(``--continue``) a case is skipped when its marker exists, names the same settings and
matches the output's size; anything else (no output, an output without a marker from a
crash, other settings) is computed again and replaces that output.

A case that fails is reported with its reason and the batch goes on. Under ``torchrun``
(``WORLD_SIZE`` > 1) rank 0 lists the cases and broadcasts the list, case ``i`` of the
sorted list runs on rank ``i % WORLD_SIZE``, results are gathered over a gloo process
group, and rank 0 writes the JSON report (atomically).

Example:
    >>> report = upsample_batch("scans/", "thin/", scale=2, method="cubic")  # doctest: +SKIP
    >>> report.counts                                                         # doctest: +SKIP
    {'done': 40, 'skipped': 0, 'failed': 1}
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from thinslice.errors import ConfigError, InputError, OutputError, ThinsliceError

log = logging.getLogger(__name__)
T = TypeVar("T")

REPORT_NAME = "thinslice_report.json"
MARKER_SUFFIX = ".done.json"
OUTPUT_FORMATS = ("nii.gz", "nii", "nrrd", "mha")
CSV_COLUMN = "path"
#: Extensions never probed as DICOM (companions of other formats, documents, archives).
_NOT_DICOM = {".raw", ".zraw", ".gz", ".json", ".csv", ".txt", ".md", ".png", ".jpg", ".pdf", ".zip", ".pt", ".xml"}
#: How long the ranks wait for each other at the end (a crashed rank ends the run sooner:
#: torchrun stops every worker when one fails).
_WAIT = timedelta(hours=24)


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


@dataclass
class CaseResult:
    """What happened to one case. ``status`` is ``done``, ``skipped`` or ``failed``."""

    name: str
    input: str
    series_uid: str | None
    output: str
    status: str
    reason: str = ""
    rank: int = 0
    seconds: float = 0.0
    input_slices: int | None = None
    output_slices: int | None = None
    scale: int | None = None


@dataclass
class BatchReport:
    """All case results (sorted by output name) and the settings of the run."""

    cases: list[CaseResult]
    settings: dict[str, Any]
    world_size: int = 1
    seconds: float = 0.0
    path: Path | None = None
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def counts(self) -> dict[str, int]:
        return {s: sum(c.status == s for c in self.cases) for s in ("done", "skipped", "failed")}

    @property
    def failed(self) -> list[CaseResult]:
        return [c for c in self.cases if c.status == "failed"]

    def to_dict(self) -> dict[str, Any]:
        from thinslice import __version__

        done = self.counts["done"]
        return {
            "thinslice": __version__,
            "created": self.created,
            "settings": self.settings,
            "world_size": self.world_size,
            "seconds": round(self.seconds, 3),
            "cases_per_hour": round(3600 * done / self.seconds, 1) if self.seconds > 0 and done else None,
            "counts": {"total": len(self.cases), **self.counts},
            "cases": [asdict(c) for c in self.cases],
        }

    def summary(self, max_failures: int = 20) -> str:
        """A few lines: the counts, each failure with its reason, the report path."""
        n = self.counts
        procs = f" on {self.world_size} processes" if self.world_size > 1 else ""
        lines = [
            f"batch: {len(self.cases)} case(s) in {self.seconds:.1f} s{procs}: {n['done']} done, "
            f"{n['skipped']} skipped (already complete), {n['failed']} failed"
        ]
        lines += [f"  failed: {c.name}: {c.reason}" for c in self.failed[:max_failures]]
        if len(self.failed) > max_failures:
            lines.append(f"  ... and {len(self.failed) - max_failures} more failure(s), listed in the report")
        if self.path is not None:
            lines.append(f"report: {self.path}")
        return "\n".join(lines)


def upsample_batch(
    input: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    scale: int | None = None,
    target_spacing: float | None = None,
    method: str = "model",
    model: str | os.PathLike[str] | None = None,
    device: str = "auto",
    fast: bool = False,
    resume: bool = False,
    force: bool = False,
    report: str | os.PathLike[str] | None = None,
    csv_column: str | None = None,
    output_format: str = "nii.gz",
    progress: bool = False,
) -> BatchReport:
    """Upsample every case under a folder or listed in a CSV; never stops at a bad case.

    Under ``torchrun`` each process takes its share of the cases (see the module doc);
    every process returns the same merged report.

    Args:
        input: a folder (searched recursively) or a ``.csv`` file.
        output_dir: where outputs go (created if missing); must not be ``input`` itself.
        scale, target_spacing, method, model, device, fast: as for :func:`thinslice.upsample`;
            the method (and model) is built once per process and reused for every case.
        resume: skip cases whose output is complete (``--continue``); other existing
            outputs are replaced.
        force: replace existing outputs (otherwise an existing output fails its case), and
            upsample values that do not look like CT (as :func:`thinslice.upsample`).
        report: where rank 0 writes the JSON report; default ``output_dir/thinslice_report.json``.
        csv_column: the CSV column holding the paths (default ``path``, else the first column).
        output_format: ``nii.gz``, ``nii``, ``nrrd`` or ``mha``.
        progress: show a progress bar over the cases (rank 0 only).

    Returns:
        The :class:`BatchReport`; ``report.failed`` lists the failed cases.

    Raises:
        ConfigError, InputError, OutputError: a problem with the whole batch (bad option,
            missing input folder, unusable CSV, unwritable output folder); nothing was run.
    """
    from thinslice.degrade import check_scale
    from thinslice.methods import get_method

    start = time.perf_counter()
    src, out_dir = Path(input), Path(output_dir)
    report_path = Path(report) if report is not None else out_dir / REPORT_NAME
    if output_format.lstrip(".") not in OUTPUT_FORMATS:
        raise ConfigError(f"unknown output format {output_format!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
    output_format = output_format.lstrip(".")
    if scale is not None and target_spacing is not None:
        raise ConfigError("give either --scale or --target-spacing, not both")
    if scale is not None:
        check_scale(scale)
    settings: dict[str, Any] = {
        "input": str(src.absolute()),
        "output_dir": str(out_dir.absolute()),
        "method": method,
        "model": None if model is None else str(Path(model).absolute()),
        "fast": fast,
        "scale": scale,
        "target_spacing": target_spacing,
        "output_format": output_format,
    }
    with _ProcessGroup.from_env() as group:
        options: dict[str, Any] = {}
        if method == "model":
            options = {"model": model, "device": group.device(device), "progress": False, "fast": fast}
        fn = get_method(method, **options)
        cases = group.from_rank0(lambda: _prepare(src, out_dir, report_path, csv_column, output_format))
        mine = cases[group.rank :: group.world_size]
        run = _CaseRunner(fn, out_dir, settings, scale, target_spacing, resume, force, group)
        results = run.all(mine, progress=progress and group.rank == 0)
        merged = sorted((r for part in group.gather(results) for r in part), key=lambda r: r.name)
        batch = BatchReport(merged, settings, group.world_size, time.perf_counter() - start, report_path)
        if group.rank == 0:
            _write_json(report_path, batch.to_dict())
            level = logging.WARNING if batch.failed else logging.INFO
            log.log(level, "%s", batch.summary())
    return batch


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
    exclude = Path(os.path.abspath(output_dir)) if output_dir is not None else None
    ext = "." + output_format.lstrip(".")
    if not src.exists():
        raise InputError(f"input not found: {src}; check the path")
    if src.is_file() and src.name.lower().endswith(".csv"):
        cases = [c for row in _csv_rows(src, csv_column) for c in _cases_of_path(row, src.parent, ext)]
    elif src.is_dir():
        cases = _walk(src, exclude, ext)
    else:
        cases = _cases_of_path(src, src.parent, ext)
    return _unique_names(cases)


def _prepare(src: Path, out_dir: Path, report: Path, csv_column: str | None, output_format: str) -> list[Case]:
    """Rank 0's setup: check the output folder and the report's, create them, list the cases."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"output {out_dir} is a file; batch runs need an output folder")
    if src.is_dir() and out_dir.absolute() == src.absolute():
        raise OutputError(f"output folder {out_dir} is the input folder; choose another -o")
    cases = find_cases(src, out_dir, csv_column=csv_column, output_format=output_format)
    for folder in (out_dir, report.parent):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(f"cannot create the folder {folder}: {err.strerror}") from err
        if not os.access(folder, os.W_OK):
            raise OutputError(f"folder {folder} is not writable; choose another -o or --report")
    if not cases:
        log.warning("no scans found in %s (NIfTI, NRRD, MHA files or DICOM series)", src)
    return cases


class _CaseRunner:
    """Runs cases one after the other with one method object, never raising for a case."""

    def __init__(
        self,
        fn: Any,
        out_dir: Path,
        settings: dict[str, Any],
        scale: int | None,
        target_spacing: float | None,
        resume: bool,
        force: bool,
        group: _ProcessGroup,
    ) -> None:
        self.fn, self.out_dir, self.recipe = fn, out_dir, _recipe(settings)
        self.scale, self.target_spacing = scale, target_spacing
        self.resume, self.force, self.rank = resume, force, group.rank
        self.tag = f"[rank {group.rank}] " if group.world_size > 1 else ""

    def all(self, cases: list[Case], *, progress: bool) -> list[CaseResult]:
        from tqdm.auto import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        results = []
        with logging_redirect_tqdm() if progress else contextlib.nullcontext():
            for case in tqdm(cases, desc="cases", unit="case", disable=not progress):
                results.append(self.one(case))
        return results

    def one(self, case: Case) -> CaseResult:
        out = self.out_dir / case.name
        result = CaseResult(case.name, str(case.source), case.series_uid, str(out), "failed", rank=self.rank)
        t0 = time.perf_counter()
        if case.error is not None:
            result.reason = case.error
        elif self.resume and _is_complete(out, self.recipe):
            result.status, result.reason = "skipped", "complete"
            log.debug("%s%s: skipped, already complete", self.tag, case.name)
            return result
        else:
            try:
                self._upsample(case, out, result)
                result.status = "done"
            except ThinsliceError as err:
                result.reason = str(err)
            except Exception as err:  # a bug or an odd file must not end the batch; report it
                result.reason = f"unexpected {type(err).__name__}: {err} (rerun this case alone with -v)"
                log.debug("%s%s failed", self.tag, case.name, exc_info=True)
        result.seconds = round(time.perf_counter() - t0, 3)
        if result.status == "failed":
            log.warning("%s%s: failed: %s", self.tag, case.name, result.reason)
        else:
            slices = f"{result.input_slices} -> {result.output_slices} slices"
            log.info("%s%s: %s in %.1f s", self.tag, case.name, slices, result.seconds)
        return result

    def _upsample(self, case: Case, out: Path, result: CaseResult) -> None:
        from thinslice.io import check_output_path, load, save
        from thinslice.upsampling import upsample_checked

        marker = _marker(out)
        replace_existing = self.force or self.resume  # resume: an incomplete output is ours to redo
        if out.exists() and not replace_existing:
            raise OutputError(f"output {out} already exists; pass --continue to keep it or --force to replace it")
        out.parent.mkdir(parents=True, exist_ok=True)
        check_output_path(out, force=replace_existing, sources=[str(case.source)])
        volume = load(case.source, series_uid=case.series_uid)
        thin = upsample_checked(
            volume,
            self.fn,
            self.recipe["method"],
            scale=self.scale,
            target_spacing=self.target_spacing,
            force=self.force,
        )
        r = int(thin.meta["scale"])
        marker.unlink(missing_ok=True)
        save(thin, out, force=replace_existing)
        result.input_slices, result.output_slices, result.scale = volume.num_slices, thin.num_slices, r
        _write_json(
            marker,
            {
                "settings": self.recipe,
                "input": str(case.source),
                "series_uid": case.series_uid,
                "bytes": out.stat().st_size,
                "input_slices": volume.num_slices,
                "output_slices": thin.num_slices,
                "slice_spacing_mm": thin.slice_spacing,
                "scale": r,
                "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )


def _marker(out: Path) -> Path:
    return out.with_name(out.name + MARKER_SUFFIX)


def _recipe(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings that decide an output's content (what a done-marker must match)."""
    return {k: settings[k] for k in ("method", "model", "scale", "target_spacing")}


def _is_complete(out: Path, recipe: dict[str, Any]) -> bool:
    """The output exists, and its marker names the same recipe and the output's size."""
    try:
        marker = json.loads(_marker(out).read_text())
        return bool(marker["settings"] == recipe and marker["bytes"] == out.stat().st_size)
    except (OSError, ValueError, KeyError, TypeError):
        return False


# --- listing the cases ---------------------------------------------------------------


def _walk(root: Path, exclude: Path | None, ext: str) -> list[Case]:
    """Every image file and every DICOM series under ``root`` (hidden names and ``exclude`` left out)."""
    from thinslice.io import suffix_of

    cases: list[Case] = []
    dicom: dict[str, list[Path]] = defaultdict(list)  # series UID -> folders holding its files
    seen: set[tuple[int, int]] = set()
    for folder, dirs, files in os.walk(root, onerror=_unreadable, followlinks=True):
        here = Path(folder)
        stat = here.stat()
        if (stat.st_dev, stat.st_ino) in seen:  # a symlink loop
            dirs[:] = []
            continue
        seen.add((stat.st_dev, stat.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (exclude is None or here / d != exclude))
        uids: set[str] = set()
        for name in sorted(f for f in files if not f.startswith(".")):
            path = here / name
            if suffix_of(path):
                cases.append(Case(_rename(path.relative_to(root), ext), path))
            elif Path(name).suffix.lower() not in _NOT_DICOM:
                uid = _dicom_series_uid(path)
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
            stem = label.name if len(place_uids) == 1 else f"{label.name}_{uid or 'nouid'}"
            cases.append(Case((label.parent / (stem + ext)).as_posix(), place, uid))
    return cases


def _unreadable(err: OSError) -> None:
    log.warning("cannot list %s (%s); its scans are left out", err.filename, err.strerror)


def _cases_of_path(path: Path, base: Path, ext: str) -> list[Case]:
    """The case(s) of one CSV row or one input file: a file, or each series in a folder."""
    from thinslice.dicom import list_series
    from thinslice.io import suffix_of

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
        return [Case(_rename(rel.with_name(f"{rel.name}_{s.uid or 'nouid'}"), ext), path, s.uid) for s in series]
    error = None
    if not path.exists():
        error = f"input not found: {path}; check the path"
    elif not suffix_of(path):
        error = f"unsupported file type: {path.name}; give a .nii, .nii.gz, .nrrd, .mha or .mhd file or a DICOM folder"
    return [Case(_rename(rel, ext), path, error=error)]


def _csv_rows(path: Path, column: str | None) -> list[Path]:
    """The paths in ``column`` of a CSV with a header row; relative ones are from the CSV's folder."""
    import difflib

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
    paths: list[Path] = []
    for row in rows[1:]:
        cell = row[index].strip() if index < len(row) else ""
        if cell:
            p = Path(cell).expanduser()
            paths.append(Path(os.path.abspath(p if p.is_absolute() else path.parent / p)))
    return list(dict.fromkeys(paths))  # drop repeated rows, keep the order


def _rename(rel: Path, ext: str) -> str:
    """``rel`` with its image suffix (if any) replaced by ``ext``, POSIX."""
    from thinslice.io import stem_of

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


def _dicom_series_uid(path: Path) -> str | None:
    """The SeriesInstanceUID of a DICOM image file ("" when empty), None for other files."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    for force in (False, True):  # force only for files without the DICM preamble
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=force)
        except InvalidDicomError:
            continue
        except Exception:  # noqa: BLE001 - unreadable or not DICOM at all
            return None
        return str(ds.get("SeriesInstanceUID", "") or "").strip() if "Rows" in ds else None
    return None


# --- processes --------------------------------------------------------------------------


class _ProcessGroup:
    """The torchrun process (RANK of WORLD_SIZE), with a gloo group when WORLD_SIZE > 1."""

    def __init__(self, rank: int, world_size: int, local_rank: int) -> None:
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank

    @classmethod
    def from_env(cls) -> _ProcessGroup:
        try:
            world = int(os.environ.get("WORLD_SIZE") or 1)
            rank = int(os.environ.get("RANK") or 0)
            local = int(os.environ.get("LOCAL_RANK") or 0)
        except ValueError as err:
            raise ConfigError(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers ({err})") from err
        if world < 1 or not 0 <= rank < world:
            raise ConfigError(f"RANK={rank} and WORLD_SIZE={world} do not fit; start several processes with torchrun")
        return cls(rank, world, local)

    def __enter__(self) -> _ProcessGroup:
        if self.world_size > 1:
            import torch.distributed as dist

            try:
                dist.init_process_group("gloo", rank=self.rank, world_size=self.world_size, timeout=_WAIT)
            except (ValueError, RuntimeError) as err:
                raise ConfigError(
                    f"WORLD_SIZE={self.world_size} but the processes cannot meet ({err}); start them with torchrun"
                ) from err
        return self

    def __exit__(self, *exc: object) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()

    def device(self, device: str) -> str:
        """``auto``/``cuda`` become ``cuda:LOCAL_RANK`` when several processes share a machine's GPUs."""
        if self.world_size == 1 or device.strip().lower() not in ("auto", "cuda"):
            return device
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return f"cuda:{self.local_rank % count}" if count else device

    def from_rank0(self, make: Callable[[], T]) -> T:
        """``make()`` on rank 0, its value (or its error) on every rank."""
        if self.world_size == 1:
            return make()
        import torch.distributed as dist

        payload: list[Any] = [(None, None)]
        if self.rank == 0:
            try:
                payload = [(make(), None)]
            except ThinsliceError as err:
                payload = [(None, err)]
        dist.broadcast_object_list(payload, src=0)
        value, error = payload[0]
        if error is not None:
            raise error
        return value  # type: ignore[no-any-return]

    def gather(self, part: list[CaseResult]) -> list[list[CaseResult]]:
        """Every rank's results, on every rank."""
        if self.world_size == 1:
            return [part]
        import torch.distributed as dist

        parts: list[Any] = [None] * self.world_size
        dist.all_gather_object(parts, part)
        return parts


def _write_json(path: Path, data: object) -> None:
    """Write JSON atomically: a temporary file in the same folder, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
