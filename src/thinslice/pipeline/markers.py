"""Done-markers of a batch's outputs: when an output counts as complete for ``--resume``.

After an output is renamed into place, a sidecar ``<output>.done.json`` records the
recipe (the settings that decide the content, and what made it: the thinslice version and
fingerprints of its code and of the method's checkpoints), the output's size (a series
folder: the sum of its files' sizes) and a fingerprint (SHA-256) of the input's bytes. An
output is complete when its marker matches all of them as they are now.

The device, and the dtype ``--precision auto`` picks on it, are left out: they change an
output only at the level of rounding (BENCHMARKS.md: within 0.01 dB), and a batch started
on a GPU may be finished on a CPU. A ``--precision`` asked for is a setting.
"""

from __future__ import annotations

import functools
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from thinslice import __version__
from thinslice.io.atomic import write_json
from thinslice.io.headers import detached_data_file, require_regular_file
from thinslice.io.walk import files_below
from thinslice.methods import Method

MARKER_SUFFIX = ".done.json"
#: The settings that decide an output's content.
RECIPE_SETTINGS = ("method", "model", "scale", "target_spacing", "slice_thickness", "output_thickness",
                   "keep_acquired", "adapt", "new_study", "all_views", "precision")  # fmt: skip


def marker_path(out: Path) -> Path:
    return out.with_name(out.name + MARKER_SUFFIX)


def recipe(settings: dict[str, Any], fn: Method) -> dict[str, Any]:
    """What a marker must match besides the input and the output: the settings that decide
    the content, and what made it (:func:`made_with`)."""
    return {"settings": {k: settings[k] for k in RECIPE_SETTINGS}, "made_with": made_with(fn)}


def made_with(fn: Method) -> dict[str, str]:
    """What makes an output besides the settings: the thinslice version, a fingerprint of its
    code (a checkout changed within a version counts as another) and of the method's
    checkpoints (a model replaced under the same path counts as another)."""
    checkpoints = _sha256({p.name: p for p in fn.checkpoints()})
    return {"thinslice": __version__, "code": code_fingerprint(), "checkpoints": checkpoints}


@functools.cache
def code_fingerprint() -> str:
    """SHA-256 of the thinslice package's Python sources (names and bytes)."""
    package = Path(__file__).resolve().parents[1]
    return _sha256({str(p.relative_to(package)): p for p in sorted(package.rglob("*.py"))})


def fingerprint(source: Path, exclude: Path | None = None) -> str:
    """SHA-256 of an input's bytes: a file (with the data file a ``.mhd`` or ``.nhdr`` names),
    or every file (names and bytes) under a DICOM folder, as reading it finds them
    (:func:`thinslice.io.walk.files_below`; those under ``exclude``, the output folder, left out).

    Raises:
        InputError: a file is not a regular file (a FIFO would block the read) or its header
            names a data file thinslice refuses.
    """
    if not source.is_dir():
        require_regular_file(source)
        parts = {source.name: source}
        if (data := detached_data_file(source)) is not None:
            require_regular_file(data, f"{data} (the data file named in {source.name})")
            parts[data.name] = data
        return _sha256(parts)
    resolved = None if exclude is None else exclude.resolve()
    return _sha256({str(p.relative_to(source)): p for p in sorted(files_below(source, exclude=resolved))})


def write_marker(out: Path, made: dict[str, Any], input_sha256: str, **facts: Any) -> None:
    """Mark ``out`` complete: the recipe it was ``made`` by, the input's fingerprint, its size,
    the time and the ``facts`` worth keeping (atomically)."""
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    write_json(
        marker_path(out), {**made, "input_sha256": input_sha256, "bytes": _size(out), **facts, "finished": stamp}
    )


def is_complete(out: Path, made: dict[str, Any], input_sha256: str) -> bool:
    """The output exists, and its marker names the same recipe (:func:`recipe`), the output's
    size and the input's fingerprint as it is now (:func:`fingerprint`)."""
    marker = read_marker(out)
    if marker is None or any(marker.get(k) != v for k, v in made.items()):
        return False
    try:
        return bool(marker["bytes"] == _size(out) and marker["input_sha256"] == input_sha256)
    except (OSError, KeyError, TypeError):
        return False


def made_otherwise(out: Path, made: dict[str, Any]) -> bool:
    """The output's marker names the same settings but another version or model (a marker
    written before markers recorded them counts as another)."""
    marker = read_marker(out)
    return (
        marker is not None
        and marker.get("settings") == made["settings"]
        and marker.get("made_with") != made["made_with"]
    )


def read_marker(out: Path) -> dict[str, Any] | None:
    """The marker of ``out`` as written (None when there is none or it is unreadable)."""
    try:
        marker = json.loads(marker_path(out).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def _sha256(files: dict[str, Path]) -> str:
    """SHA-256 over each file's name and bytes, in the order given."""
    sha = hashlib.sha256()
    for name, path in files.items():
        sha.update(name.encode() + b"\0")
        with path.open("rb") as fh:
            while block := fh.read(1 << 20):
                sha.update(block)
    return sha.hexdigest()


def _size(out: Path) -> int:
    """Bytes of an output file, or of all files in an output folder (a DICOM series)."""
    if out.is_dir():
        return sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return out.stat().st_size
