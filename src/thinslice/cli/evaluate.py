"""``thinslice evaluate``: degrade ground-truth scans, synthesize them back, score each method;
or, with ``--reference``, score each method on a real thick/thin pair."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from thinslice.cli import options
from thinslice.errors import ConfigError

log = logging.getLogger("thinslice")


def evaluate(
    inputs: options.EvaluateInputs,
    scale: options.ScaleTwo = None,
    degrade: Annotated[
        str | None,
        typer.Option(
            "--degrade", help="profile (realistic thick slices, the default), decimate (the paper's) or slab."
        ),
    ] = None,
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
    reference: Annotated[
        Path | None,
        typer.Option(
            "--reference",
            help="A real pair: thin slices of the same scan as the one -i (file or DICOM folder); every method "
            "is scored at their positions. No degradation.",
        ),
    ] = None,
    slice_thickness: Annotated[
        float | None,
        typer.Option(
            "--slice-thickness", help="With --reference: thickness (mm) of the -i slices, over what the file says."
        ),
    ] = None,
    series_uid: Annotated[
        str | None, typer.Option("--series-uid", help="Series to read from a DICOM folder given with -i.")
    ] = None,
    reference_series_uid: Annotated[
        str | None,
        typer.Option("--reference-series-uid", help="Series to read from a DICOM folder given with --reference."),
    ] = None,
    adapt: Annotated[
        float | None,
        typer.Option(
            "--adapt",
            metavar="MINUTES",
            help="With --reference: also score the model fine-tuned on the thick series for MINUTES (as upsample "
            "--adapt).",
        ),
    ] = None,
    preview: Annotated[
        Path | None,
        typer.Option("--preview", help="With --reference: a PNG of the thick series, each method and the reference."),
    ] = None,
    methods: Annotated[
        str | None,
        typer.Option("--methods", help="Comma-separated method names (default: linear,cubic,lanczos,model)."),
    ] = None,
    model: options.Model = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON.")] = None,
    all_views: options.AllViews = False,
    precision: options.Precision = "auto",
    fast: options.Fast = False,
    overwrite: options.Overwrite = False,
    accept_non_ct: options.AcceptNonCT = False,
    device: options.Device = "auto",
    quiet: options.Quiet = False,
    verbose: options.Verbose = 0,
) -> None:
    """Degrade each input, synthesize it back with each method, report PSNR/SSIM.

    With --reference: -i is a thick series and --reference thin slices of the same scan
    (two reconstructions); every method makes the thin slices at the reference's positions
    from the thick series alone, and is scored against them.
    """
    from thinslice.evaluation.protocol import evaluate as run
    from thinslice.evaluation.protocol import format_table
    from thinslice.io.atomic import check_destination, write_json

    options.configure(verbose, quiet)
    if fast:
        log.warning("warning: --fast is deprecated: two views are now the default (--all-views for three)")
    if json_out is not None:  # before the work, not after it
        check_destination(json_out, overwrite=overwrite, what="--json", inputs=_read(inputs, reference))
    if preview is not None:
        if reference is None:
            raise ConfigError("--preview applies to --reference (a real pair)")
        from thinslice.evaluation.pair import check_preview

        check_preview(preview, overwrite=overwrite, inputs=_read(inputs, reference))
        if json_out is not None and Path(json_out).resolve() == Path(preview).resolve():
            raise ConfigError(f"--json and --preview name the same file ({preview}); give each its own name")
    common: dict[str, Any] = {"model": model, "device": device, "progress": options.show_progress()}
    if methods is not None:  # else the API's default, for a pair as for a degraded copy
        common["methods"] = _names(methods)
    common.update(all_views=all_views, precision=precision, accept_non_ct=accept_non_ct)
    uids: dict[str, Any] = {"series_uid": series_uid}
    if reference is not None:
        from thinslice.evaluation.pair import evaluate_pair

        given = {"--scale": scale, "--degrade": degrade, "--thickness": thickness, "--softness": softness or None}
        unused = [flag for flag, value in given.items() if value is not None]
        if unused:
            flags = ", ".join(unused)
            verb = "simulates" if len(unused) == 1 else "simulate"
            raise ConfigError(f"{flags} {verb} thick slices; with --reference the pair is real: drop them")
        if len(inputs) != 1:
            raise ConfigError(f"--reference scores one thick series against it; got {len(inputs)} inputs")
        common.update(preview=preview, overwrite=overwrite)
        uids["reference_series_uid"] = reference_series_uid
        adapter = None
        if adapt is not None:
            from thinslice.pipeline.adapt import adapted

            progress = common["progress"]
            adapter = (
                f"model --adapt {adapt:g}",
                lambda fn, thick, r: adapted(fn, thick, r, adapt, device=device, progress=progress),
            )
        report = evaluate_pair(inputs[0], reference, slice_thickness=slice_thickness, adapter=adapter, **uids, **common)
    else:
        if slice_thickness is not None:
            raise ConfigError("--slice-thickness applies to --reference (a real pair); a degraded copy's is known")
        if adapt is not None:
            raise ConfigError("--adapt applies to --reference (a real pair): the model is adapted to the thick series")
        if reference_series_uid is not None:
            raise ConfigError("--reference-series-uid applies to --reference")
        if degrade is not None:
            common["degrade"] = degrade
        report = run(
            inputs,
            2 if scale is None else scale,
            thickness=thickness,
            softness=softness,
            **uids,
            **common,
        )
    typer.echo(format_table(report))
    if json_out is not None:
        from thinslice import __version__

        write_json(json_out, {**report, "thinslice_version": __version__}, overwrite=overwrite)
        log.info("wrote %s", json_out)


def _read(inputs: list[str], reference: Path | None) -> tuple[str, ...]:
    """Every path the command reads (never to be written over)."""
    return (*inputs, *([] if reference is None else [str(reference)]))


def _names(methods: str) -> list[str]:
    return [m.strip() for m in methods.split(",") if m.strip()]
