"""``thinslice upsample``: one scan, or a batch of them."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from thinslice.cli import options
from thinslice.errors import BatchError, ConfigError

log = logging.getLogger("thinslice")


def upsample(
    inputs: options.Inputs,
    output: Annotated[
        str,
        typer.Option(
            "-o",
            "--output",
            help="Output file (.nii.gz, .nii, .nrrd, .mha), or a folder: a DICOM series (DICOM input), or a batch.",
        ),
    ],
    scale: options.Scale = None,
    target_spacing: options.TargetSpacing = None,
    method: options.Method = "model",
    model: options.Model = None,
    all_views: options.AllViews = False,
    precision: options.Precision = "auto",
    fast: options.Fast = False,
    uncertainty: Annotated[
        Path | None, typer.Option("--uncertainty", help="Model: also write the views' disagreement (HU) here.")
    ] = None,
    series_uid: Annotated[
        str | None, typer.Option("--series-uid", help="Series to read from a DICOM folder (or of --dicom-template).")
    ] = None,
    output_format: Annotated[
        str | None,
        typer.Option(
            "--output-format",
            help="dicom: a derived DICOM series (a folder) per scan. Batch: or nii.gz (default), nii, nrrd, mha.",
        ),
    ] = None,
    dicom_template: Annotated[
        Path | None,
        typer.Option("--dicom-template", help="DICOM output from a NIfTI/NRRD/MHA file: the series it was made from."),
    ] = None,
    new_study: Annotated[
        bool, typer.Option("--new-study", help="DICOM output: file the series in a new study (source has none).")
    ] = False,
    preview: Annotated[
        Path | None,
        typer.Option("--preview", help="PNG of input beside output; batch: a folder of them (+ index.html)."),
    ] = None,
    overwrite: options.Overwrite = False,
    accept_non_ct: options.AcceptNonCT = False,
    force: options.Force = False,
    device: options.Device = "auto",
    resume: options.Resume = False,
    continue_: Annotated[bool, typer.Option("--continue", hidden=True, help="Deprecated: --resume.")] = False,
    report: Annotated[
        Path | None, typer.Option("--report", help="Batch: JSON report path (default: OUT/thinslice_report.json).")
    ] = None,
    csv_column: Annotated[
        str | None, typer.Option("--csv-column", help="Batch: CSV column of the paths (default: path, else the first).")
    ] = None,
    slice_thickness: options.SliceThickness = None,
    output_thickness: options.OutputThickness = None,
    keep_acquired: options.KeepAcquired = False,
    adapt: Annotated[
        float | None,
        typer.Option("--adapt", metavar="MINUTES", help="Model: first fine-tune it on this scan for MINUTES."),
    ] = None,
    quiet: options.Quiet = False,
    verbose: options.Verbose = 0,
) -> None:
    """Synthesize thin slices from thick ones and write the result.

    One scan: -o names a file, or a folder for a derived DICOM series (the default for a
    DICOM series into a folder). Batch mode when -i is a .csv, or -i is a folder of scans
    and -o is a folder (an existing one, one ending in /, or a name without a dot): every
    scan and DICOM series found becomes one case; run it under `torchrun
    --nproc-per-node=N` to share the cases between processes.
    """
    options.configure(verbose, quiet)
    if fast:
        log.warning("warning: --fast is deprecated: two views are now the default (--all-views for three)")
    if force:
        options.deprecated("--force", "--overwrite and/or --accept-non-ct")
        overwrite = accept_non_ct = True
    if continue_:
        options.deprecated("--continue", "--resume")
        resume = True
    if len(inputs) != 1:
        raise ConfigError(f"give one -i (got {len(inputs)}); for several scans give a folder or a CSV")
    source = inputs[0]
    acquisition: dict[str, Any] = {"slice_thickness": slice_thickness, "output_thickness": output_thickness}
    acquisition |= {"keep_acquired": keep_acquired, "adapt": adapt}
    fmt = _output_format(output_format)
    if _is_batch(source, output, fmt, series_uid):
        if series_uid is not None:
            raise ConfigError("--series-uid picks one series; in a batch every series is its own case")
        if uncertainty is not None:
            raise ConfigError("--uncertainty names one file; it applies to single scans, not batches")
        if dicom_template is not None:
            raise ConfigError("--dicom-template names the series of one file; in a batch each DICOM series is its own")
        if preview is not None and preview.suffix.lower() == ".png":
            raise ConfigError(f"in a batch --preview names a folder for one PNG per case, not {preview.name}")
        settings: dict[str, Any] = {"scale": scale, "target_spacing": target_spacing, "method": method}
        settings |= {"model": model, "device": device, "all_views": all_views, "precision": precision}
        settings |= {"resume": resume, "report": report}
        settings |= {"overwrite": overwrite, "accept_non_ct": accept_non_ct, "new_study": new_study, **acquisition}
        _batch(source, Path(output), csv_column=csv_column, output_format=fmt or "nii.gz", preview=preview, **settings)
        return
    batch_only = {"--resume": resume, "--report": report, "--csv-column": csv_column}
    batch_only[f"--output-format {fmt}"] = fmt not in (None, "dicom")
    given = [name for name, value in batch_only.items() if value]
    if given:
        verb = "applies" if len(given) == 1 else "apply"
        raise ConfigError(f"{', '.join(given)} only {verb} to batch runs (-i FOLDER or CSV, -o FOLDER)")
    from thinslice.io.files import suffix_of

    from_template = Path(source).is_dir() or dicom_template is not None  # where patient and study come from
    dicom = fmt == "dicom" or (fmt is None and from_template and _names_folder(output))
    if dicom and suffix_of(output):
        raise ConfigError(f"DICOM output is a folder (one file per slice), but -o {output} names a file")
    from thinslice.pipeline.single import upsample_path

    upsample_path(
        source,
        Path(output),
        scale=scale,
        target_spacing=target_spacing,
        method=method,
        model=model,
        all_views=all_views,
        precision=precision,
        device=device,
        series_uid=series_uid,
        dicom=dicom,
        dicom_template=dicom_template,
        new_study=new_study,
        uncertainty=uncertainty,
        preview=preview,
        overwrite=overwrite,
        accept_non_ct=accept_non_ct,
        progress=options.show_progress(),
        **acquisition,
    )


def _output_format(value: str | None) -> str | None:
    from thinslice.pipeline.export import output_format

    return None if value is None else output_format(value)


def _names_folder(output: str) -> bool:
    """-o names a folder: it ends with a slash, exists as a folder, or has no dot in its name."""
    return output.endswith(("/", os.sep)) or Path(output).is_dir() or "." not in Path(output).name


def _is_batch(source: str, output: str, fmt: str | None, series_uid: str | None) -> bool:
    """A CSV in, or a folder of scans in and a folder out. A folder holding one DICOM
    series (or a series picked with --series-uid) into a folder is one scan, written as a
    DICOM series, unless --output-format asks for files."""
    if source.lower().endswith(".csv"):
        return True
    if not (Path(source).is_dir() and _names_folder(output)):
        return False
    if fmt not in (None, "dicom"):
        return True
    from thinslice.pipeline.cases import is_one_series

    return series_uid is None and not is_one_series(source)


def _batch(source: str, output: Path, **settings: Any) -> None:
    from thinslice.pipeline.batch import upsample_batch

    report = upsample_batch(source, output, progress=options.show_progress(), **settings)
    if report.failed:
        n = len(report.failed)
        raise BatchError(f"{n} of {len(report.cases)} case(s) failed (listed above and in {report.path})")
