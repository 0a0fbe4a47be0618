"""Batch upsampling: every case of a folder or CSV (see :mod:`.cases`), resumable, and
sharded over the processes of ``torchrun``.

Outputs: one file per case, or with ``output_format="dicom"`` one derived DICOM series
(a folder, see :mod:`thinslice.io.dicom_write`) per DICOM case; with ``preview`` also one
PNG per case (input beside output) and an ``index.html`` gallery next to the report.

Complete: after each output is renamed into place (atomically), a sidecar
``<output>.done.json`` records the settings, what made the output (the thinslice version
and a fingerprint of the method's checkpoints), its size and a fingerprint of the input
(:mod:`.markers`). With ``resume=True`` (``--resume``) a case is skipped when its marker
exists and matches all of them as they are now; anything else (no output, an output
without a marker from a crash, other settings, another thinslice version or model, an
input replaced by another scan) is computed again and replaces that output, so that one
batch never mixes outputs of two versions.

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
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from thinslice import __version__
from thinslice.distributed import DistEnv, from_rank0, gather_objects, process_group
from thinslice.errors import InputError, Interrupted, OutputError, ThinsliceError
from thinslice.io import check_output_path, load, save, stem_of
from thinslice.io.atomic import write_json
from thinslice.io.dicom_write import check_series_output, read_template
from thinslice.methods import Method, method_class
from thinslice.pipeline.cases import Case
from thinslice.pipeline.destinations import REPORT_NAME, check_report, make_folders, prepare
from thinslice.pipeline.export import DICOM, not_dicom_input, write_preview, write_series
from thinslice.pipeline.export import output_format as checked_format
from thinslice.pipeline.gallery import check_gallery, write_gallery
from thinslice.pipeline.markers import (
    fingerprint,
    is_complete,
    made_otherwise,
    marker_path,
    read_marker,
    recipe,
    write_marker,
)
from thinslice.pipeline.plan import check_request
from thinslice.pipeline.upsample import build_method, upsample_checked

log = logging.getLogger(__name__)

GALLERY_NAME = "index.html"


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
    scale: float | None = None
    made_by: str | None = None  # e.g. "model profile_soft_x2.pt (bundled)": the checkpoint picked
    preview: str | None = None


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
    all_views: bool = False,
    precision: str = "auto",
    resume: bool = False,
    overwrite: bool = False,
    accept_non_ct: bool = False,
    slice_thickness: float | None = None,
    output_thickness: float | None = None,
    keep_acquired: bool = False,
    adapt: float | None = None,
    report: str | os.PathLike[str] | None = None,
    csv_column: str | None = None,
    output_format: str = "nii.gz",
    new_study: bool = False,
    preview: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> BatchReport:
    """Upsample every case under a folder or listed in a CSV; never stops at a bad case.

    Under ``torchrun`` each process takes its share of the cases (see the module doc);
    every process returns the same merged report.

    Args:
        input: a folder (searched recursively) or a ``.csv`` file.
        output_dir: where outputs go (created if missing); must not be ``input`` itself.
        scale, target_spacing, method, model, device, all_views, precision: as for :func:`thinslice.upsample`;
            the method (and model) is built once per process and reused for every case.
        resume: skip cases whose output is complete (``--resume``); other existing
            outputs are replaced.
        overwrite: replace existing outputs (otherwise an existing output fails its case).
        accept_non_ct: upsample values that do not look like CT (as :func:`thinslice.upsample`).
        slice_thickness, output_thickness, keep_acquired, adapt: as for :func:`thinslice.upsample`
            (``adapt`` fine-tunes a copy of the model on each case).
        report: where rank 0 writes the JSON report; default ``output_dir/thinslice_report.json``.
            An existing file there is replaced only when it is an earlier thinslice report
            or with ``overwrite``; a folder or an input is refused.
        csv_column: the CSV column holding the paths (default ``path``, else the first column).
        output_format: ``nii.gz``, ``nii``, ``nrrd``, ``mha``, or ``dicom``: a derived
            series of its study per DICOM case (``OUT/p1/series3/``); file cases then fail,
            as they name no patient or study.
        new_study: DICOM output: file each series in a new study (for sources without
            StudyInstanceUID).
        preview: a folder for one PNG per case (input beside output, mirroring the output
            names); rank 0 also writes ``index.html``, a gallery of every case with its
            status, next to the report.
        progress: show a progress bar over the cases (rank 0 only).

    Returns:
        The :class:`BatchReport`; ``report.failed`` lists the failed cases.

    Raises:
        ConfigError, InputError, OutputError: a problem with the whole batch (bad option,
            missing input folder, unusable CSV, unwritable output folder); nothing was run.
    """
    start = time.perf_counter()
    src, out_dir = Path(input), Path(output_dir)
    report_path = Path(report) if report is not None else out_dir / REPORT_NAME
    output_format = checked_format(output_format)
    settings: dict[str, Any] = {
        "input": str(src.absolute()),
        "output_dir": str(out_dir.absolute()),
        "method": method,
        "model": None if model is None else str(Path(model).absolute()),
        "all_views": all_views,
        "precision": precision,
        "scale": scale,
        "target_spacing": target_spacing,
        "output_format": output_format,
        "slice_thickness": slice_thickness,
        "output_thickness": output_thickness,
        "keep_acquired": keep_acquired,
        "adapt": adapt,
        "device": device,
        "new_study": new_study,
        "preview": None if preview is None else str(Path(preview).absolute()),
    }
    env = DistEnv.from_env()
    with process_group(env):  # gloo: the ranks exchange only the case list and the results
        cls = method_class(method)
        fn = build_method(
            method,
            model=model,
            device=str(env.device(device)) if "device" in cls.options else device,  # each rank its own GPU
            all_views=all_views,
            precision=precision,
            uncertainty=preview is not None and cls.gives_uncertainty,  # the previews show it
        )
        # the options once, before any folder or case: a bad one is one error, not one per case
        check_request(
            fn, scale=scale, target_spacing=target_spacing, slice_thickness=slice_thickness,
            output_thickness=output_thickness, adapt=adapt,
        )  # fmt: skip
        if preview is not None and env.is_main:  # someone's own index.html beside the report is kept
            check_gallery(report_path.parent / GALLERY_NAME, overwrite)
        cases = from_rank0(
            env, lambda: prepare(src, out_dir, report_path, csv_column, output_format, overwrite, resume)
        )
        mine = cases[env.rank :: env.world_size]
        run = _CaseRunner(fn, out_dir, settings, env, resume=resume, overwrite=overwrite, accept_non_ct=accept_non_ct)
        results = run.all(mine, progress=progress and env.is_main)
        merged = sorted((r for part in gather_objects(env, results) for r in part), key=lambda r: r.name)
        batch = BatchReport(merged, settings, env.world_size, time.perf_counter() - start, report_path)
        if env.is_main:
            check_report(report_path, overwrite, [c.source for c in cases])  # again: it may have appeared
            write_json(report_path, batch.to_dict())
            if preview is not None:
                check_gallery(report_path.parent / GALLERY_NAME, overwrite)  # again: it may have appeared
                gallery = write_gallery(report_path.parent / GALLERY_NAME, batch.to_dict())
                log.info("previews: %s", gallery)
            level = logging.WARNING if batch.failed else logging.INFO
            log.log(level, "%s", batch.summary())
    return batch


class _CaseRunner:
    """Runs cases one after the other with one method object, never raising for a case."""

    def __init__(
        self,
        fn: Method,
        out_dir: Path,
        settings: dict[str, Any],
        env: DistEnv,
        *,
        resume: bool,
        overwrite: bool,
        accept_non_ct: bool,
    ) -> None:
        self.fn, self.out_dir, self.settings = fn, out_dir, settings
        self.recipe = recipe(settings, fn)
        self.scale, self.target_spacing = settings["scale"], settings["target_spacing"]
        self.dicom, self.new_study = settings["output_format"] == DICOM, bool(settings["new_study"])
        self.previews = None if settings["preview"] is None else Path(settings["preview"])
        self.resume, self.overwrite, self.accept_non_ct, self.rank = resume, overwrite, accept_non_ct, env.rank
        self.tag = f"[rank {env.rank}] " if env.enabled else ""
        self.alone = not env.enabled

    def all(self, cases: list[Case], *, progress: bool) -> list[CaseResult]:
        results = []
        try:
            with logging_redirect_tqdm() if progress else contextlib.nullcontext():
                for case in tqdm(cases, desc="cases", unit="case", disable=not progress):
                    results.append(self.one(case))
        except Interrupted as err:
            done = sum(r.status != "failed" for r in results)
            err.kept = f"{done} finished case(s) in {self.out_dir} (rerun with --resume to do the rest)"
            raise
        return results

    def one(self, case: Case) -> CaseResult:
        out = self.out_dir / case.name
        result = CaseResult(case.name, str(case.source), case.series_uid, str(out.absolute()), "failed", rank=self.rank)
        t0 = time.perf_counter()
        picture = None
        if self.previews is not None:
            picture = self.previews / Path(case.name).parent / (stem_of(case.name) + ".png")
        if case.error is not None:
            result.reason = case.error
        else:
            try:
                print_ = self._fingerprint(case)  # once, before reading: what the marker describes
                if self.resume and is_complete(out, self.recipe, print_) and (picture is None or picture.is_file()):
                    result.status, result.reason = "skipped", "complete"
                    facts = read_marker(out) or {}  # what the run that made it knew
                    result.input_slices, result.output_slices = facts.get("input_slices"), facts.get("output_slices")
                    result.scale, result.made_by = facts.get("scale"), facts.get("made_by")
                    result.preview = None if picture is None else str(picture)
                    log.debug("%s%s: skipped, already complete", self.tag, case.name)
                    return result
                if self.resume and made_otherwise(out, self.recipe):
                    what = "made by another thinslice version or model; computing it again"
                    log.info("%s%s: %s", self.tag, case.name, what)
                self._upsample(case, out, result, picture, print_)
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

    def _fingerprint(self, case: Case) -> str:
        try:
            return fingerprint(case.source, self.out_dir.resolve())
        except OSError as err:
            raise InputError(f"cannot read {case.source}: {err.strerror or err}; check the path") from err

    def _upsample(self, case: Case, out: Path, result: CaseResult, picture: Path | None, print_: str) -> None:
        if self.out_dir.resolve() not in out.resolve().parents:  # names are sanitised in cases.py; never trust
            raise OutputError(f"output name {case.name!r} leads outside {self.out_dir}; refused")
        replace_existing = self.overwrite or self.resume  # resume: an incomplete output is ours to redo
        if out.exists() and not replace_existing:
            raise OutputError(f"output {out} already exists; pass --resume to keep it or --overwrite to replace it")
        if self.dicom and case.series_uid is None:
            raise not_dicom_input(case.source, batch=True)
        made = make_folders([out.parent] + ([picture.parent] if picture is not None else []), out)
        try:
            self._write(case, out, result, picture, print_, replace_existing)
        except BaseException:
            for folder in made if self.alone else []:  # no empty folders left (other ranks may be filling them)
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise

    def _write(
        self, case: Case, out: Path, result: CaseResult, picture: Path | None, print_: str, replace_existing: bool
    ) -> None:
        if self.dicom:
            check_series_output(out, overwrite=replace_existing, sources=[case.source])
        else:
            check_output_path(out, overwrite=replace_existing, sources=[str(case.source)])
        if picture is not None:
            check_output_path(  # a picture of the user's own is kept, as an output is
                picture, overwrite=replace_existing, sources=[str(case.source)], suffixes=(".png",), option="--preview"
            )
        volume = load(case.source, series_uid=case.series_uid)
        template = None
        if self.dicom:
            template = read_template(case.source, series_uid=case.series_uid, volume=volume, new_study=self.new_study)
        thin, spread = upsample_checked(
            volume,
            self.fn,
            scale=self.scale,
            target_spacing=self.target_spacing,
            accept_non_ct=self.accept_non_ct,
            slice_thickness=self.settings["slice_thickness"],
            output_thickness=self.settings["output_thickness"],
            keep_acquired=self.settings["keep_acquired"],
            adapt=self.settings["adapt"],
            device=self.settings["device"],
        )
        ratio = thin.meta["scale"]  # of the spacings (2.5); meta["factor"] is what the method ran at
        marker_path(out).unlink(missing_ok=True)
        if template is not None:
            write_series(
                thin, out, template=template, fn=self.fn, thick_spacing=volume.slice_spacing,
                overwrite=replace_existing, new_study=self.new_study,
            )  # fmt: skip
        else:
            save(thin, out, overwrite=replace_existing)
        result.input_slices, result.output_slices, result.scale = volume.num_slices, thin.num_slices, ratio
        result.made_by = thin.meta.get("made_by")
        if picture is not None:  # before the marker: a case without its picture is not complete
            result.preview = str(write_preview(volume, thin, picture, fn=self.fn, spread=spread))
        write_marker(
            out, self.recipe, print_, input=str(case.source), series_uid=case.series_uid,
            input_slices=volume.num_slices, output_slices=thin.num_slices, slice_spacing_mm=thin.slice_spacing,
            scale=ratio, made_by=result.made_by,
        )  # fmt: skip
