"""The ``thinslice`` command line: a thin shell over the Python API.

Heavy imports (torch, SimpleITK) happen inside the commands so ``--help`` is instant.
Every :class:`~thinslice.errors.ThinsliceError` becomes one line on stderr and exit
code 2 (with the traceback only under ``-v``); this is the one place that mapping lives.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from thinslice import __version__
from thinslice.errors import ThinsliceError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Thick-slice to thin-slice CT by self-supervised cross-view mutual distillation.",
)
log = logging.getLogger("thinslice")
_state = {"verbose": 0, "quiet": False}

Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"thinslice {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[int, typer.Option("-v", "--verbose", count=True, help="More detail; -v shows tracebacks.")] = 0,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Only warnings and errors; no progress bars.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    _state.update(verbose=verbose, quiet=quiet)
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)


def show_progress() -> bool:
    """Progress bars only on an interactive terminal and without ``-q``."""
    return not _state["quiet"] and sys.stderr.isatty()


@app.command()
def upsample(
    input: Annotated[str, typer.Option("-i", "--input", help="NIfTI/NRRD/MHA file or DICOM folder.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output file; .nii.gz, .nii, .nrrd or .mha.")],
    scale: Annotated[int | None, typer.Option("--scale", "-r", help="Factor r (2-8).")] = None,
    target_spacing: Annotated[float | None, typer.Option("--target-spacing", help="Wanted slice spacing, mm.")] = None,
    method: Annotated[str, typer.Option("--method", "-m", help="Synthesis method (see `thinslice info`).")] = "cubic",
    model: Annotated[Path | None, typer.Option("--model", help="Checkpoint for --method model.")] = None,
    series_uid: Annotated[str | None, typer.Option("--series-uid", help="Series to read from a DICOM folder.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output.")] = False,
    device: Device = "auto",
) -> None:
    """Synthesize thin slices between the acquired ones and write the result."""
    from thinslice.io import check_output_path, load, save
    from thinslice.upsampling import upsample as run

    check_output_path(output, force=force, sources=[input])
    volume = load(input, series_uid=series_uid)
    result = run(
        volume,
        scale,
        target_spacing=target_spacing,
        method=method,
        model=model,
        device=device,
        progress=show_progress(),
    )
    save(result, output, force=force)
    log.info(
        "wrote %s: %d slices at %.4g mm (was %d at %.4g mm)",
        output,
        result.num_slices,
        result.slice_spacing,
        volume.num_slices,
        volume.slice_spacing,
    )


@app.command()
def evaluate(
    inputs: Annotated[list[str], typer.Option("-i", "--input", help="Ground-truth volume(s); repeat -i.")],
    scale: Annotated[int, typer.Option("--scale", "-r", help="Degradation factor r.")] = 2,
    degrade: Annotated[str, typer.Option("--degrade", help="decimate or slab.")] = "decimate",
    methods: Annotated[str, typer.Option("--methods", help="Comma-separated method names.")] = "cubic,linear",
    model: Annotated[Path | None, typer.Option("--model", help="Checkpoint for the model method.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON.")] = None,
    device: Device = "auto",
) -> None:
    """Degrade each input, synthesize it back with each method, report PSNR/SSIM."""
    from thinslice.evaluate import evaluate as run
    from thinslice.evaluate import format_table

    names = [m.strip() for m in methods.split(",") if m.strip()]
    report = run(inputs, scale, degrade=degrade, methods=names, model=model, device=device, progress=show_progress())
    typer.echo(format_table(report))
    if json_out is not None:
        _write_json(json_out, report)
        log.info("wrote %s", json_out)


@app.command()
def info() -> None:
    """Versions, compute devices and available methods."""
    import platform

    import numpy
    import SimpleITK
    import torch

    from thinslice.methods import available

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
    typer.echo("methods:")
    for name, text in available().items():
        typer.echo(f"  {name:8s} {text}")


@app.command()
def demo(
    output_dir: Annotated[Path, typer.Option("-o", "--output-dir", help="Where to write the results.")] = Path(
        "demo_out"
    ),
    method: Annotated[str, typer.Option("--method", "-m", help="Method to show against the reference.")] = "cubic",
    device: Device = "auto",
) -> None:
    """Upsample the bundled sample scan and draw it against the reference slices."""
    from thinslice.demo import run_demo

    run_demo(output_dir, method=method, device=device, progress=show_progress())


def _write_json(path: Path, data: object) -> None:
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=f".{path.name}.", suffix=".part")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2, allow_nan=True)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app and map thinslice errors to exit code 2."""
    try:
        app(args=argv, standalone_mode=False)
    except ThinsliceError as err:
        if _state["verbose"]:
            logging.getLogger("thinslice").exception("error")
        typer.echo(f"error: {err}", err=True)
        return err.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except Exception as err:  # usage errors from the CLI parser (Typer's bundled click)
        if callable(getattr(err, "show", None)) and isinstance(getattr(err, "exit_code", None), int):
            err.show()  # type: ignore[attr-defined]
            return int(err.exit_code)  # type: ignore[attr-defined]
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
