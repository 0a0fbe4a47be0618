"""What a run writes besides the volume file: a derived DICOM series and a preview picture.

The pipeline decides what the derived series says about itself: its SeriesDescription
(``"<source description> thinslice x2 1.0 mm"``, at most 64 characters) and its
DerivationDescription (thinslice version, the method's :meth:`~thinslice.methods.Method.provenance`,
the factor and both spacings). The writing itself is :mod:`thinslice.io.dicom_write`'s.
"""

from __future__ import annotations

import os
from pathlib import Path

from thinslice import __version__
from thinslice.errors import ConfigError, InputError
from thinslice.evaluation.figures import compare_views
from thinslice.io import suffix_of
from thinslice.io.dicom_write import Template, write_dicom_series
from thinslice.methods import Method
from thinslice.volume import Volume

#: Output formats: a file per scan, or a derived DICOM series (a folder) per scan.
FILE_FORMATS = ("nii.gz", "nii", "nrrd", "mha")
DICOM = "dicom"
OUTPUT_FORMATS = (*FILE_FORMATS, DICOM)


def output_format(value: str) -> str:
    """``value`` as one of :data:`OUTPUT_FORMATS` (``.NII.GZ`` is ``nii.gz``).

    Raises:
        ConfigError: it is none of them.
    """
    fmt = value.lower().lstrip(".")
    if fmt not in OUTPUT_FORMATS:
        raise ConfigError(f"unknown output format {value!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
    return fmt


def mm(value: float) -> str:
    """A spacing for people: ``1.0``, ``2.5``, ``0.625``, ``0.333``."""
    text = f"{value:.3f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def ratio_text(thick_mm: float, thin_mm: float) -> str:
    """The factor between two spacings for people: ``2``, ``2.5``, ``3.27``."""
    return f"{round(thick_mm / thin_mm, 2):g}"


def series_texts(
    source_description: str,
    made_by: str,
    r: int,
    thick_mm: float,
    thin_mm: float,
    *,
    kept: bool = True,
    thickness_mm: float | None = None,
) -> tuple[str, str]:
    """``(SeriesDescription, DerivationDescription)`` of a derived series; ``made_by`` is what
    made it (a method's provenance, e.g. ``model profile_x2.pt (bundled)``). The description
    names the spacing, as clinical series names do; the derivation also names a thickness
    (``--output-thickness``) other than the spacing.

    Example:
        >>> series_texts("CT Body 3.0", "linear", 2, 2.0, 1.0)  # doctest: +SKIP
        ('CT Body 3.0 thinslice x2 1.0 mm', 'thinslice 0.1.0: linear, x2 along the slice axis, ...')
    """
    suffix = f"thinslice x{ratio_text(thick_mm, thin_mm)} {mm(thin_mm)} mm"
    base = " ".join(source_description.replace("\\", " ").split())[: 64 - len(suffix) - 1].rstrip()
    description = f"{base} {suffix}" if base else suffix
    derivation = (
        f"thinslice {__version__}: {made_by}, x{r} along the slice axis, slice spacing "
        f"{mm(thick_mm)} -> {mm(thin_mm)} mm"
        + (f", {mm(thickness_mm)} mm thick; " if thickness_mm and abs(thickness_mm - thin_mm) > 1e-3 else "; ")
        + ("acquired slices kept, the others synthesized" if kept else "every slice synthesized (thick input)")
    )
    return description, derivation


def not_dicom_input(source: str | os.PathLike[str], *, batch: bool = False) -> InputError:
    """The refusal for DICOM output from a file (without ``--dicom-template``)."""
    name = Path(source).name
    kind = "NIfTI/NRRD/MHA file" if suffix_of(source) else "file"
    what = f"cannot write DICOM from {name}: a {kind} names no patient or study, and thinslice never invents them"
    if batch:
        return InputError(f"{what}; in a batch, DICOM output is for DICOM series (files: --output-format nii.gz)")
    return InputError(
        f"{what}; pass --dicom-template SERIES_DIR (the DICOM series it was made from) or write a file (-o thin.nii.gz)"
    )


def write_series(
    thin: Volume,
    out: str | os.PathLike[str],
    *,
    template: Template,
    fn: Method,
    thick_spacing: float,
    overwrite: bool = False,
    new_study: bool = False,
) -> Path:
    """Write an upsampled volume as a derived series of ``template``'s study (atomically).

    Args:
        thin: the result of :func:`thinslice.pipeline.upsample.upsample_volume` (its
            ``meta["factor"]`` is the factor the method ran at).
        template: from :func:`thinslice.io.dicom_write.read_template`.
        fn: the method that made it (for the derivation text, when ``thin.meta`` does not
            say which checkpoint made it: ``made_by``).
        thick_spacing: the input's slice spacing, mm.
    """
    r = int(thin.meta["factor"])
    description, derivation = series_texts(
        template.description, thin.meta.get("made_by") or fn.provenance(r), r, thick_spacing, thin.slice_spacing,
        kept=bool(thin.meta.get("acquired_kept", True)), thickness_mm=thin.thickness,
    )  # fmt: skip
    return write_dicom_series(
        thin,
        out,
        template=template,
        description=description,
        derivation=derivation,
        overwrite=overwrite,
        new_study=new_study,
        slice_thickness=thin.thickness,
    )


def write_preview(
    thick: Volume, thin: Volume, path: str | os.PathLike[str], *, fn: Method, spread: Volume | None = None
) -> Path:
    """A PNG of the input beside the output (and the uncertainty map when there is one)."""
    ratio = ratio_text(thick.slice_spacing, thin.slice_spacing)
    panels = [
        (f"input, {mm(thick.slice_spacing)} mm ({thick.num_slices} slices)", thick),
        (f"{fn.name} x{ratio}, {mm(thin.slice_spacing)} mm ({thin.num_slices})", thin),
    ]
    return compare_views(panels, path, uncertainty=spread, title=thick.name)
