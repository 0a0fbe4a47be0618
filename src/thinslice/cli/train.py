"""``thinslice train``: the self-supervised trainer, on thick-slice scans alone."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from thinslice.cli import options
from thinslice.errors import ConfigError, Interrupted
from thinslice.volume import check_mm

log = logging.getLogger("thinslice")


def train(
    inputs: options.Inputs,
    output: Annotated[Path, typer.Option("-o", "--output", help="Checkpoint to write (and resume from).")],
    scale: options.ScaleTraining = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Total optimisation steps.")] = None,
    minutes: Annotated[float | None, typer.Option("--minutes", help="Wall-clock budget of this run.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML file with model and train tables.")] = None,
    crop: Annotated[
        tuple[int, int] | None,
        typer.Option(
            "--crop",
            help="Training crop: in-plane size and slices (rounded down to r·k+1; r²·k+1 suits the second level).",
            show_default=False,
        ),
    ] = None,
    slice_thickness: options.SliceThickness = None,
    resume: options.ResumeTraining = False,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Random seed (deterministic on CPU). Default: 0.", show_default=False)
    ] = None,
    overwrite: options.Overwrite = False,
    accept_non_ct: options.AcceptNonCT = False,
    force: options.Force = False,
    device: options.Device = "auto",
    quiet: options.Quiet = False,
    verbose: options.Verbose = 0,
) -> None:
    """Train the cross-view model self-supervised on thick-slice scans alone.

    Runs as one process or under `torchrun --nproc-per-node=N --no-python thinslice train ...`
    (DistributedDataParallel; gloo on CPU, NCCL on GPU).
    """
    from dataclasses import replace

    from thinslice.checks import positive, whole
    from thinslice.distributed import DistEnv
    from thinslice.training.config import load_config, recipe_for
    from thinslice.training.loop import train as run
    from thinslice.training.loop import untouched

    options.configure(verbose, quiet)
    if force:
        options.deprecated("--force", "--overwrite")
        overwrite = True
    if steps is None and minutes is None:
        raise ConfigError("give a training length: --steps N or --minutes M")
    if steps is not None:
        whole(steps, "--steps", lo=1)
    if minutes is not None:
        positive(minutes, "--minutes")
    if seed is not None:
        whole(seed, "--seed", hi=2**63 - 1)  # torch's range
    check_mm(slice_thickness, "--slice-thickness")
    if output.is_dir():
        raise ConfigError(f"-o {output} is a folder; give a checkpoint file name such as {output / 'model.pt'}")
    if output.suffix != ".pt":  # first: an -o that names a scan must not be met with "pass --overwrite"
        raise ConfigError(f"checkpoint name should end in .pt, got {output.name}")
    if resume and overwrite:
        raise ConfigError("--resume continues the checkpoint at -o and --overwrite starts it over; give one")
    if output.exists() and not (resume or overwrite):
        raise ConfigError(f"{output} exists; pass --resume to continue it or --overwrite to start over")
    from thinslice.io.atomic import check_destination

    check_destination(output, overwrite=True, what="-o", inputs=tuple(inputs))  # a folder, unwritable: now, not after
    load_config(config)  # its mistakes show before the scans are read
    stored = None
    if resume and output.exists():  # a run continues as it began
        from thinslice.model.checkpoint import load_checkpoint

        stored = load_checkpoint(output)
        if seed is not None:
            log.warning("warning: resuming %s with the seed it began with; ignoring --seed %d", output, seed)
    r = _scale(scale, config, stored)
    try:
        volumes = _training_volumes(inputs, accept_non_ct)
    except Interrupted as err:
        if output.exists():
            err.kept = untouched(output, resume)
        raise
    if slice_thickness is not None:  # the width of the thick profile in the training pairs
        volumes = [v.with_data(v.data, slice_thickness=slice_thickness) for v in volumes]
    recipe = recipe_for(volumes, r)  # --config's tables apply over it
    if stored is not None:
        recipe = {"model": stored["model_config"], "train": stored.get("train_config") or {}}
    model_cfg, train_cfg = load_config(config, base=recipe)
    model_cfg = replace(model_cfg, scale=r)
    if crop is not None:
        train_cfg = replace(train_cfg, crop_sizes=((r, crop[0], crop[1]),))
    main_process = DistEnv.from_env().is_main  # under torchrun: one line, not one per process
    if main_process:
        log.info(
            "training x%d on %d scan(s) -> %s: %s",
            r,
            len(volumes),
            output,
            "a model that re-estimates every output slice, the acquired positions too (for thick slices)"
            if model_cfg.sharpen
            else "a model that keeps the acquired slices (for slices no thicker than the output's)",
        )
    run(
        volumes,
        output,
        train_cfg,
        model_cfg,
        steps=steps,
        minutes=minutes,
        resume=resume,
        seed=seed or 0,
        device=device,
        progress=options.show_progress(),
        overwrite=overwrite,
    )
    if main_process:
        log.info("wrote %s", output)


def _scale(given: int | None, config: Path | None, stored: dict[str, Any] | None) -> int:
    """The factor to train: ``--scale``, else the resumed checkpoint's, else ``[model]
    scale`` in ``--config``, else 2; ``--scale`` and ``--config`` must agree.

    Raises:
        ConfigError: ``--scale`` and the config's scale differ, or the config's and the
            resumed checkpoint's.
    """
    from thinslice.model.config import read_toml

    in_config = (read_toml(config).get("model") or {}).get("scale") if config is not None else None
    if given is not None and in_config is not None and in_config != given:
        raise ConfigError(f"--scale {given} and [model] scale = {in_config} in {config} differ; give one")
    if given is not None:
        return given
    if stored is not None:
        began = int(stored["model_config"].get("scale", 2))
        if in_config is not None and in_config != began:
            raise ConfigError(f"[model] scale = {in_config} in {config}, but the resumed checkpoint is x{began}")
        return began
    return 2 if in_config is None else int(in_config)


def _training_volumes(inputs: list[str], accept_non_ct: bool) -> list[Any]:
    """Load every scan named or found under the inputs (files, DICOM series, folders); each
    must look like CT in HU, as the networks' intensity scaling assumes, unless accepted."""
    from thinslice.ct import check_ct_values
    from thinslice.errors import InputError
    from thinslice.io import load
    from thinslice.pipeline.cases import find_cases

    volumes = []
    seen: dict[tuple[str, str | None], str] = {}
    for item in inputs:
        cases = find_cases(item)
        if not cases:
            raise InputError(f"no scans found in {item}; give NIfTI/NRRD/MHA files or DICOM folders")
        for case in cases:
            if case.error:
                raise InputError(f"{case.source}: {case.error}")
            key = (str(Path(case.source).resolve()), case.series_uid)
            if key in seen:  # it would weigh twice in training
                raise InputError(f"{case.source} is given twice (as {seen[key]} and {item}); give each scan once")
            seen[key] = item
            volumes.append(load(case.source, series_uid=case.series_uid))
            check_ct_values(volumes[-1], accept_non_ct=accept_non_ct, verb="train on")
    return volumes
