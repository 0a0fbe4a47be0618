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
from typing import Annotated, Any

import typer

from thinslice import __version__
from thinslice.errors import ConfigError, ThinsliceError

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
    input: Annotated[
        str, typer.Option("-i", "--input", help="NIfTI/NRRD/MHA file or DICOM folder; for a batch, a folder or CSV.")
    ],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Output file (.nii.gz, .nii, .nrrd, .mha); for a batch, a folder.")
    ],
    scale: Annotated[int | None, typer.Option("--scale", "-r", help="Factor r (2-8).")] = None,
    target_spacing: Annotated[float | None, typer.Option("--target-spacing", help="Wanted slice spacing, mm.")] = None,
    method: Annotated[str, typer.Option("--method", "-m", help="Synthesis method (see `thinslice info`).")] = "model",
    model: Annotated[
        Path | None, typer.Option("--model", help="Checkpoint for --method model (default: the bundled model).")
    ] = None,
    fast: Annotated[bool, typer.Option("--fast", help="Model: fuse two views instead of three (faster).")] = False,
    uncertainty: Annotated[
        Path | None, typer.Option("--uncertainty", help="Model: also write the views' disagreement (HU) here.")
    ] = None,
    series_uid: Annotated[str | None, typer.Option("--series-uid", help="Series to read from a DICOM folder.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing output; upsample values that do not look like CT.")
    ] = False,
    device: Device = "auto",
    resume: Annotated[
        bool, typer.Option("--continue", help="Batch: skip cases whose output is complete; redo the rest.")
    ] = False,
    report: Annotated[
        Path | None, typer.Option("--report", help="Batch: JSON report path (default: OUT/thinslice_report.json).")
    ] = None,
    csv_column: Annotated[
        str | None, typer.Option("--csv-column", help="Batch: CSV column of the paths (default: path, else the first).")
    ] = None,
    output_format: Annotated[str, typer.Option("--output-format", help="Batch: nii.gz, nii, nrrd or mha.")] = "nii.gz",
) -> None:
    """Synthesize thin slices between the acquired ones and write the result.

    Batch mode when -i is a .csv, or -i is a folder and -o is a folder (an existing one,
    or a name without a dot): every scan and DICOM series found becomes one case; run it
    under `torchrun --nproc-per-node=N` to share the cases between processes.
    """
    from thinslice.io import check_output_path, load, save
    from thinslice.upsampling import upsample as run

    if _is_batch(input, output):
        if series_uid is not None:
            raise ConfigError("--series-uid picks one series; in a batch every series is its own case")
        if uncertainty is not None:
            raise ConfigError("--uncertainty names one file; it applies to single scans, not batches")
        options = {"scale": scale, "target_spacing": target_spacing, "method": method, "model": model}
        options |= {"device": device, "fast": fast, "resume": resume, "force": force, "report": report}
        _upsample_batch(input, output, csv_column=csv_column, output_format=output_format, **options)
        return
    batch_only = {"--continue": resume, "--report": report, "--csv-column": csv_column}
    batch_only["--output-format"] = output_format != "nii.gz"
    given = [name for name, value in batch_only.items() if value]
    if given:
        raise ConfigError(f"{', '.join(given)} only apply to batch runs (-i FOLDER or CSV, -o FOLDER)")
    check_output_path(output, force=force, sources=[input])
    if uncertainty is not None:
        check_output_path(uncertainty, force=force, sources=[input, str(output)])
    volume = load(input, series_uid=series_uid)
    result = run(
        volume,
        scale,
        target_spacing=target_spacing,
        method=method,
        model=model,
        device=device,
        progress=show_progress(),
        force=force,
        fast=fast,
        uncertainty=uncertainty is not None,
    )
    if uncertainty is not None:
        result, spread = result
        save(spread, uncertainty, force=force)
        log.info("wrote %s: disagreement between views, HU (mean %.1f)", uncertainty, float(spread.data.mean()))
    save(result, output, force=force)
    log.info(
        "wrote %s: %d slices at %.4g mm (was %d at %.4g mm)",
        output,
        result.num_slices,
        result.slice_spacing,
        volume.num_slices,
        volume.slice_spacing,
    )


def _is_batch(input: str, output: Path) -> bool:
    """A CSV in, or a folder in and a folder out (existing, or a name without a dot)."""
    if input.lower().endswith(".csv"):
        return True
    return Path(input).is_dir() and (output.is_dir() or "." not in output.name)


def _upsample_batch(input: str, output: Path, **options: Any) -> None:
    from thinslice.batch import upsample_batch
    from thinslice.errors import BatchError

    report = upsample_batch(input, output, progress=show_progress(), **options)
    if report.failed:
        n = len(report.failed)
        raise BatchError(f"{n} of {len(report.cases)} case(s) failed (listed above and in {report.path})")


@app.command()
def evaluate(
    inputs: Annotated[list[str], typer.Option("-i", "--input", help="Ground-truth volume(s); repeat -i.")],
    scale: Annotated[int, typer.Option("--scale", "-r", help="Degradation factor r.")] = 2,
    degrade: Annotated[str, typer.Option("--degrade", help="decimate or slab.")] = "decimate",
    methods: Annotated[str, typer.Option("--methods", help="Comma-separated method names.")] = "cubic,linear",
    model: Annotated[Path | None, typer.Option("--model", help="Checkpoint for the model method.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON.")] = None,
    fast: Annotated[bool, typer.Option("--fast", help="Model: fuse two views instead of three.")] = False,
    device: Device = "auto",
) -> None:
    """Degrade each input, synthesize it back with each method, report PSNR/SSIM."""
    from thinslice.evaluate import evaluate as run
    from thinslice.evaluate import format_table

    names = [m.strip() for m in methods.split(",") if m.strip()]
    report = run(
        inputs, scale, degrade=degrade, methods=names, model=model, device=device, progress=show_progress(), fast=fast
    )
    typer.echo(format_table(report))
    if json_out is not None:
        _write_json(json_out, report)
        log.info("wrote %s", json_out)


@app.command()
def train(
    inputs: Annotated[
        list[str],
        typer.Option("-i", "--input", help="Observed scans: files, DICOM folders or folders of them; repeat -i."),
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Checkpoint to write (and resume from).")],
    scale: Annotated[int, typer.Option("--scale", "-r", help="Factor r the model learns (2-6).")] = 2,
    steps: Annotated[int | None, typer.Option("--steps", help="Total optimisation steps.")] = None,
    minutes: Annotated[float | None, typer.Option("--minutes", help="Wall-clock budget of this run.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML file with model and train tables.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the checkpoint at -o.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (deterministic on CPU).")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing checkpoint instead of resuming.")] = False,
    device: Device = "auto",
) -> None:
    """Train the cross-view model self-supervised on thick-slice scans alone.

    Runs as one process or under `torchrun --nproc-per-node=N --no-python thinslice train ...`
    (DistributedDataParallel; gloo on CPU, NCCL on GPU).
    """
    from dataclasses import replace

    from thinslice.config import ModelConfig, TrainConfig, load_config
    from thinslice.training import train as run

    if steps is None and minutes is None:
        raise ConfigError("give a training length: --steps N or --minutes M")
    if output.exists() and not (resume or force):
        raise ConfigError(f"{output} exists; pass --resume to continue it or --force to start over")
    if output.suffix != ".pt":
        raise ConfigError(f"checkpoint name should end in .pt, got {output.name}")
    if not output.parent.is_dir():
        raise ConfigError(f"output folder does not exist: {output.parent}; create it first")
    model_cfg, train_cfg = load_config(config) if config else (ModelConfig(), TrainConfig())
    model_cfg = replace(model_cfg, scale=scale)
    volumes = _training_volumes(inputs)
    log.info("training x%d on %d scan(s) -> %s", scale, len(volumes), output)
    run(
        volumes,
        output,
        train_cfg,
        model_cfg,
        steps=steps,
        minutes=minutes,
        resume=resume,
        seed=seed,
        device=device,
        progress=show_progress(),
    )
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    log.info("wrote %s", output)


def _training_volumes(inputs: list[str]) -> list[Any]:
    """Load every scan named or found under the inputs (files, DICOM series, folders)."""
    from thinslice.batch import find_cases
    from thinslice.errors import InputError
    from thinslice.io import load

    volumes = []
    for item in inputs:
        cases = find_cases(item)
        if not cases:
            raise InputError(f"no scans found in {item}; give NIfTI/NRRD/MHA files or DICOM folders")
        for case in cases:
            if case.error:
                raise InputError(f"{case.source}: {case.error}")
            volumes.append(load(case.source, series_uid=case.series_uid))
    return volumes


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
    from thinslice.model_method import bundled_models

    models = bundled_models()
    listed = ", ".join(f"x{r} ({p.name})" for r, p in sorted(models.items())) or "none"
    typer.echo(f"bundled models: {listed}; powers of these factors apply a model repeatedly")


@app.command()
def demo(
    output_dir: Annotated[Path, typer.Option("-o", "--output-dir", help="Where to write the results.")] = Path(
        "demo_out"
    ),
    method: Annotated[
        str, typer.Option("--method", "-m", help="Method to show against cubic and the reference.")
    ] = "model",
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
        typer.echo("error: " + " ".join(str(err).split()), err=True)  # always one line
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
