"""``thinslice upsample``: one scan, or a batch of them."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from thinslice.cli import options
from thinslice.errors import BatchError, ConfigError

log = logging.getLogger("thinslice")


def upsample(
    inputs: options.Inputs,
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Output file (.nii.gz, .nii, .nrrd, .mha); for a batch, a folder.")
    ],
    scale: options.Scale = None,
    target_spacing: options.TargetSpacing = None,
    method: Annotated[str, typer.Option("--method", "-m", help="Synthesis method (see `thinslice info`).")] = "model",
    model: options.Model = None,
    fast: options.Fast = False,
    uncertainty: Annotated[
        Path | None, typer.Option("--uncertainty", help="Model: also write the views' disagreement (HU) here.")
    ] = None,
    series_uid: Annotated[str | None, typer.Option("--series-uid", help="Series to read from a DICOM folder.")] = None,
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
    output_format: Annotated[str, typer.Option("--output-format", help="Batch: nii.gz, nii, nrrd or mha.")] = "nii.gz",
    quiet: options.Quiet = False,
    verbose: options.Verbose = 0,
) -> None:
    """Synthesize thin slices between the acquired ones and write the result.

    Batch mode when -i is a .csv, or -i is a folder and -o is a folder (an existing one,
    or a name without a dot): every scan and DICOM series found becomes one case; run it
    under `torchrun --nproc-per-node=N` to share the cases between processes.
    """
    options.configure(verbose, quiet)
    if force:
        options.deprecated("--force", "--overwrite and/or --accept-non-ct")
        overwrite = accept_non_ct = True
    if continue_:
        options.deprecated("--continue", "--resume")
        resume = True
    if len(inputs) != 1:
        raise ConfigError(f"give one -i (got {len(inputs)}); for several scans give a folder or a CSV")
    source = inputs[0]
    if _is_batch(source, output):
        if series_uid is not None:
            raise ConfigError("--series-uid picks one series; in a batch every series is its own case")
        if uncertainty is not None:
            raise ConfigError("--uncertainty names one file; it applies to single scans, not batches")
        settings: dict[str, Any] = {"scale": scale, "target_spacing": target_spacing, "method": method}
        settings |= {"model": model, "device": device, "fast": fast, "resume": resume, "report": report}
        settings |= {"overwrite": overwrite, "accept_non_ct": accept_non_ct}
        _batch(source, output, csv_column=csv_column, output_format=output_format, **settings)
        return
    batch_only = {"--resume": resume, "--report": report, "--csv-column": csv_column}
    batch_only["--output-format"] = output_format != "nii.gz"
    given = [name for name, value in batch_only.items() if value]
    if given:
        raise ConfigError(f"{', '.join(given)} only apply to batch runs (-i FOLDER or CSV, -o FOLDER)")
    _single(source, output, scale, target_spacing, method, model, fast, uncertainty, series_uid, overwrite,
            accept_non_ct, device)  # fmt: skip


def _single(
    source: str,
    output: Path,
    scale: int | None,
    target_spacing: float | None,
    method: str,
    model: Path | None,
    fast: bool,
    uncertainty: Path | None,
    series_uid: str | None,
    overwrite: bool,
    accept_non_ct: bool,
    device: str,
) -> None:
    from thinslice.io import check_output_path, load, save
    from thinslice.pipeline.upsample import upsample as run

    check_output_path(output, overwrite=overwrite, sources=[source])
    if uncertainty is not None and uncertainty.absolute() == output.absolute():
        raise ConfigError(f"--uncertainty and -o name the same file ({output}); give the uncertainty its own name")
    if uncertainty is not None:
        check_output_path(uncertainty, overwrite=overwrite, sources=[source, str(output)])
    volume = load(source, series_uid=series_uid)
    result = run(
        volume,
        scale,
        target_spacing=target_spacing,
        method=method,
        model=model,
        device=device,
        progress=options.show_progress(),
        accept_non_ct=accept_non_ct,
        fast=fast,
        uncertainty=uncertainty is not None,
    )
    if uncertainty is not None:
        result, spread = result
        save(spread, uncertainty, overwrite=overwrite)
        log.info("wrote %s: disagreement between views, HU (mean %.1f)", uncertainty, float(spread.data.mean()))
    save(result, output, overwrite=overwrite)
    log.info(
        "wrote %s: %d slices at %.4g mm (was %d at %.4g mm)",
        output,
        result.num_slices,
        result.slice_spacing,
        volume.num_slices,
        volume.slice_spacing,
    )


def _is_batch(source: str, output: Path) -> bool:
    """A CSV in, or a folder in and a folder out (existing, or a name without a dot)."""
    if source.lower().endswith(".csv"):
        return True
    return Path(source).is_dir() and (output.is_dir() or "." not in output.name)


def _batch(source: str, output: Path, **settings: Any) -> None:
    from thinslice.pipeline.batch import upsample_batch

    report = upsample_batch(source, output, progress=options.show_progress(), **settings)
    if report.failed:
        n = len(report.failed)
        raise BatchError(f"{n} of {len(report.cases)} case(s) failed (listed above and in {report.path})")
