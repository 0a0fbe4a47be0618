"""``thinslice evaluate``: degrade ground-truth scans, synthesize them back, score each method."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from thinslice.cli import options

log = logging.getLogger("thinslice")


def evaluate(
    inputs: options.Inputs,
    scale: options.Scale = None,
    degrade: Annotated[
        str, typer.Option("--degrade", help="profile (realistic thick slices), decimate (the paper's) or slab.")
    ] = "decimate",
    thickness: Annotated[
        float | None,
        typer.Option("--thickness", help="--degrade profile: slice thickness in mm (default: r x the spacing)."),
    ] = None,
    softness: Annotated[
        float,
        typer.Option(
            "--softness",
            help="--degrade profile: soften the box by a Gaussian of FWHM this fraction of the thickness (0: box).",
        ),
    ] = 0.0,
    methods: Annotated[str, typer.Option("--methods", help="Comma-separated method names.")] = "cubic,linear",
    model: options.Model = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON.")] = None,
    all_views: options.AllViews = False,
    precision: options.Precision = "auto",
    fast: options.Fast = False,
    overwrite: options.Overwrite = False,
    device: options.Device = "auto",
    quiet: options.Quiet = False,
    verbose: options.Verbose = 0,
) -> None:
    """Degrade each input, synthesize it back with each method, report PSNR/SSIM."""
    from thinslice.evaluation.protocol import evaluate as run
    from thinslice.evaluation.protocol import format_table
    from thinslice.io.atomic import check_destination, write_json

    options.configure(verbose, quiet)
    if fast:
        log.warning("warning: --fast is deprecated: two views are now the default (--all-views for three)")
    if json_out is not None:  # before the work, not after it
        check_destination(json_out, overwrite=overwrite, what="--json", inputs=tuple(inputs))
    names = [m.strip() for m in methods.split(",") if m.strip()]
    report = run(
        inputs,
        2 if scale is None else scale,
        degrade=degrade,
        methods=names,
        model=model,
        device=device,
        progress=options.show_progress(),
        all_views=all_views,
        precision=precision,
        thickness=thickness,
        softness=softness,
    )
    typer.echo(format_table(report))
    if json_out is not None:
        write_json(json_out, report, overwrite=overwrite)
        log.info("wrote %s", json_out)
