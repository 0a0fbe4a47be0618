"""Options shared by the commands: declared once, with one help text each.

``-q``/``-v`` are accepted before the subcommand and after it (as users type them);
:func:`configure` applies whichever was given.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

log = logging.getLogger("thinslice")
_state = {"verbose": 0, "quiet": False}

Inputs = Annotated[
    list[str],
    typer.Option("-i", "--input", help="NIfTI/NRRD/MHA file or DICOM folder, a folder of them or a CSV."),
]
EvaluateInputs = Annotated[
    list[str],
    typer.Option(
        "-i",
        "--input",
        help="NIfTI/NRRD/MHA file or DICOM folder: thin scans to score (repeat -i), or with "
        "--reference the thick series.",
    ),
]
Scale = Annotated[
    int | None,
    typer.Option("--scale", "-r", help="Factor r (2-8). Default: the model's own with --method model, else 2."),
]
ScaleTwo = Annotated[int | None, typer.Option("--scale", "-r", help="Factor r (2-8). Default: 2.")]
TargetSpacing = Annotated[float | None, typer.Option("--target-spacing", help="Wanted slice spacing, mm.")]
Model = Annotated[
    Path | None, typer.Option("--model", help="Checkpoint for the model method (default: the bundled models).")
]
AllViews = Annotated[
    bool, typer.Option("--all-views", help="Model: also fuse the axial network's view (three views; slower).")
]
Precision = Annotated[
    str,
    typer.Option("--precision", help="Model: auto (bfloat16 where the CPU/GPU has it natively), float32 or bfloat16."),
]
Fast = Annotated[bool, typer.Option("--fast", hidden=True, help="Deprecated: two views are now the default.")]
Device = Annotated[str, typer.Option("--device", help="Where the network runs: auto, cpu, cuda, cuda:N or mps.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace existing output.")]
AcceptNonCT = Annotated[
    bool, typer.Option("--accept-non-ct", help="Go ahead with values that do not look like CT in HU (with a warning).")
]
Force = Annotated[bool, typer.Option("--force", hidden=True, help="Deprecated: --overwrite plus --accept-non-ct.")]
Resume = Annotated[bool, typer.Option("--resume", help="Batch: skip the cases a previous run finished.")]
ResumeTraining = Annotated[
    bool,
    typer.Option(
        "--resume",
        help="Continue the training in the checkpoint at -o, on the scans it began with, with its seed, crops, "
        "slice thicknesses and settings.",
    ),
]
ScaleTraining = Annotated[
    int | None,
    typer.Option(
        "--scale", "-r", help="Factor r (2-8). Default: the resumed checkpoint's, else the --config's, else 2."
    ),
]
SliceThickness = Annotated[
    float | None,
    typer.Option(
        "--slice-thickness",
        help="Thickness (mm) of the input slices, over what the file says (DICOM SliceThickness); "
        "default: what it says, else the slice spacing.",
    ),
]
Method = Annotated[str, typer.Option("--method", "-m", help="Synthesis method (see `thinslice info`).")]
OutputThickness = Annotated[
    float | None,
    typer.Option(
        "--output-thickness",
        help="Thickness (mm) of the output slices; default their spacing. Thicker averages them over it.",
    ),
]
KeepAcquired = Annotated[
    bool,
    typer.Option(
        "--keep-acquired",
        help="Keep thick acquired slices unchanged (else re-estimated); the output spans first to last slice.",
    ),
]
Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="Only warnings and errors; no progress bars.")]
Verbose = Annotated[int, typer.Option("-v", "--verbose", count=True, help="More detail; -v shows tracebacks.")]


def configure(verbose: int = 0, quiet: bool = False) -> None:
    """Set up logging from ``-v``/``-q`` given before or after the subcommand."""
    _state["verbose"] = max(int(_state["verbose"]), verbose)
    _state["quiet"] = bool(_state["quiet"]) or quiet
    level = logging.WARNING if _state["quiet"] else logging.DEBUG if _state["verbose"] else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)
    # pydicom's notes on odd but readable or writable values (and on the damaged files
    # thinslice names itself) are for -v only. It both logs and warns each; a filter on the
    # handlers, since importing pydicom resets its logger's level.
    if not _state["verbose"]:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_no_pydicom_notes)
        warnings.filterwarnings("ignore", category=UserWarning, module="pydicom")


def _no_pydicom_notes(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR or not record.name.startswith("pydicom")


def verbose() -> bool:
    return bool(_state["verbose"])


def show_progress() -> bool:
    """Progress bars only on an interactive terminal and without ``-q``."""
    return not _state["quiet"] and sys.stderr.isatty()


def deprecated(old: str, new: str) -> None:
    """Warn once that ``old`` is spelled ``new`` now."""
    log.warning("warning: %s is deprecated; use %s", old, new)


def reset() -> None:
    """Forget the flags of a previous in-process run (tests call ``main`` repeatedly)."""
    _state.update(verbose=0, quiet=False)
