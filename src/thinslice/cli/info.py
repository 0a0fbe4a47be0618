"""``thinslice info``: versions, devices, methods and bundled models; with ``-i``, what
``upsample`` would read from a scan and make of it, without doing it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from thinslice import __version__
from thinslice.cli import options
from thinslice.errors import ConfigError


def info(
    scan: Annotated[
        Path | None,
        typer.Option("-i", "--input", help="A scan (file or DICOM folder): what upsample would read and do with it."),
    ] = None,
    scale: options.Scale = None,
    target_spacing: options.TargetSpacing = None,
    slice_thickness: options.SliceThickness = None,
    series_uid: Annotated[str | None, typer.Option("--series-uid", help="Series to read from a DICOM folder.")] = None,
    method: Annotated[
        str | None, typer.Option("--method", "-m", help="Synthesis method (default: model; see `thinslice info`).")
    ] = None,
    model: options.Model = None,
    output_thickness: options.OutputThickness = None,
    keep_acquired: options.KeepAcquired = False,
    dicom_template: Annotated[
        Path | None,
        typer.Option(
            "--dicom-template", help="The DICOM series a file was made from: its SliceThickness, as upsample takes it."
        ),
    ] = None,
) -> None:
    """Versions, compute devices and available methods; with -i, what upsample would make of a scan."""
    if scan is not None:
        from thinslice.io import load
        from thinslice.io.dicom_write import read_template
        from thinslice.pipeline.plan import check_template_source, describe, with_template_thickness
        from thinslice.pipeline.upsample import build_method

        check_template_source(scan, dicom_template)
        fn = build_method(method or "model", model=model, device="cpu")
        volume = load(scan, None if dicom_template is not None else series_uid)
        if dicom_template is not None:  # the study is checked when upsample writes (--new-study there)
            template = read_template(dicom_template, series_uid=series_uid, volume=volume, new_study=True)
            volume = with_template_thickness(volume, template.slice_thickness, slice_thickness)
        lines = describe(
            volume, fn, scale=scale, target_spacing=target_spacing, slice_thickness=slice_thickness,
            output_thickness=output_thickness, keep_acquired=keep_acquired,
        )  # fmt: skip
        for line in lines:
            typer.echo(line)
        return
    given = {"--scale": scale, "--target-spacing": target_spacing, "--slice-thickness": slice_thickness,
             "--series-uid": series_uid, "--model": model, "--output-thickness": output_thickness,
             "--keep-acquired": keep_acquired or None, "--dicom-template": dicom_template,
             "--method": method}  # fmt: skip
    unused = [flag for flag, value in given.items() if value is not None]
    if unused:
        verb = "applies" if len(unused) == 1 else "apply"
        raise ConfigError(f"{', '.join(unused)} {verb} to info -i SCAN (what upsample would make of it); give -i")
    import platform

    import numpy
    import SimpleITK
    import torch

    from thinslice.methods import available
    from thinslice.methods.learned import FAMILY_USE, bundled_models

    typer.echo(f"thinslice {__version__}")
    typer.echo(
        f"python {platform.python_version()}, torch {torch.__version__}, numpy {numpy.__version__}, "
        f"SimpleITK {SimpleITK.Version.VersionString()}"
    )
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        devices.append("mps")
    typer.echo(f"devices: {', '.join(devices)} (torch threads: {torch.get_num_threads()})")
    from thinslice.device import resolve_precision

    auto = "bf16" if resolve_precision("auto", torch.device("cpu")) == torch.bfloat16 else "float32"
    typer.echo(f"--precision auto on the CPU: {auto} convolutions")
    typer.echo("methods:")
    for name, text in available().items():
        typer.echo(f"  {name:8s} {text}")
    for family, use in FAMILY_USE.items():
        models = bundled_models(family)
        listed = ", ".join(f"x{r} ({p.name})" for r, p in sorted(models.items())) or "none"
        typer.echo(f"bundled models for {use}: {listed}")
    typer.echo("powers of these factors apply a model repeatedly; other ratios resample the next factor up")
