"""``thinslice demo``: the main job on the bundled sample, with a picture and numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from thinslice.cli import options


def demo(
    output_dir: Annotated[Path, typer.Option("-o", "--output-dir", help="Where to write the results.")] = Path(
        "demo_out"
    ),
    method: Annotated[
        str, typer.Option("--method", "-m", help="Method to show against cubic and the reference.")
    ] = "model",
    device: options.Device = "auto",
    quiet: options.Quiet = False,
    verbose: options.Verbose = 0,
) -> None:
    """Upsample the bundled sample scan and draw it against the reference slices."""
    from thinslice.pipeline.demo import run_demo

    options.configure(verbose, quiet)
    run_demo(output_dir, method=method, device=device, progress=options.show_progress())
