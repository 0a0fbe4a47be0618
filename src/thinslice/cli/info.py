"""``thinslice info``: versions, devices, methods and bundled models."""

from __future__ import annotations

import typer

from thinslice import __version__


def info() -> None:
    """Versions, compute devices and available methods."""
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
    typer.echo("methods:")
    for name, text in available().items():
        typer.echo(f"  {name:8s} {text}")
    for family, use in FAMILY_USE.items():
        models = bundled_models(family)
        listed = ", ".join(f"x{r} ({p.name})" for r, p in sorted(models.items())) or "none"
        typer.echo(f"bundled models for {use}: {listed}")
    typer.echo("powers of these factors apply a model repeatedly; other ratios resample the next factor up")
