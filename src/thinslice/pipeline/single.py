"""One scan from disk to disk: ``thinslice upsample -i IN -o OUT`` without a batch.

Every check that needs no voxels runs first (output paths, options, the method), then the
scan is read, the DICOM template checked, the work done, and the outputs written
atomically: the volume (a file, or a derived DICOM series with ``dicom=True``), then the
uncertainty map and the preview picture when asked for.

Example:
    >>> upsample_path("series/", "thin/", scale=2, method="linear", dicom=True,
    ...               preview="thin.png")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from thinslice.errors import ConfigError, InputError
from thinslice.io import check_output_path, load, save, suffix_of
from thinslice.io.dicom_write import check_series_output, read_template
from thinslice.io.walk import walk
from thinslice.methods import method_class
from thinslice.pipeline.export import not_dicom_input, write_preview, write_series
from thinslice.pipeline.plan import check_template_source, with_template_thickness
from thinslice.pipeline.upsample import build_method, upsample_checked
from thinslice.volume import Volume

log = logging.getLogger(__name__)


def upsample_path(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    scale: int | None = None,
    target_spacing: float | None = None,
    method: str = "model",
    model: str | os.PathLike[str] | None = None,
    all_views: bool = False,
    precision: str = "auto",
    device: str = "auto",
    series_uid: str | None = None,
    dicom: bool = False,
    dicom_template: str | os.PathLike[str] | None = None,
    new_study: bool = False,
    uncertainty: str | os.PathLike[str] | None = None,
    preview: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    accept_non_ct: bool = False,
    progress: bool = False,
    slice_thickness: float | None = None,
    output_thickness: float | None = None,
    keep_acquired: bool = False,
    adapt: float | None = None,
) -> Volume:
    """Upsample the scan at ``source`` and write it to ``output``.

    Args:
        source: a NIfTI/NRRD/MHA file or a DICOM folder.
        output: a file (format from its extension), or with ``dicom=True`` the folder
            for the derived DICOM series (one file per slice).
        scale, target_spacing, method, model, all_views, precision, device, accept_non_ct, slice_thickness,
            output_thickness, keep_acquired, adapt: as for :func:`thinslice.upsample`.
        series_uid: the series to read from a DICOM ``source``; for a file ``source``,
            the series of ``dicom_template`` to file the result with.
        dicom: write a derived DICOM series of the source's study.
        dicom_template: for ``dicom=True`` from a file: the DICOM series the file was
            made from (patient, study and frame of reference come from there).
        new_study: file the series in a new study (a source without StudyInstanceUID).
        uncertainty: also write the method's uncertainty map (HU) to this file.
        preview: also write a PNG of the input beside the output (and the uncertainty).
        overwrite: replace existing outputs.

    Returns:
        The upsampled volume.

    Raises:
        ConfigError, InputError, OutputError, ModelError, ResourceError: before any
            output is written, except a failed write (which leaves nothing behind).
    """
    source, output = Path(source), Path(output)
    if not source.exists():
        raise InputError(f"input not found: {source}; check the path")
    from_dicom = source.is_dir()
    if from_dicom:
        _check_only_a_series(source, output)
    if not dicom and (dicom_template is not None or new_study):
        raise ConfigError("--dicom-template and --new-study apply to DICOM output (--output-format dicom)")
    if dicom:
        check_template_source(source, dicom_template)
    if dicom and not from_dicom and dicom_template is None:
        raise not_dicom_input(source)
    if series_uid is not None and not from_dicom and dicom_template is None:
        raise ConfigError(f"--series-uid picks a series of a DICOM folder (or of --dicom-template); {source} is a file")
    if dicom:
        check_series_output(output, overwrite=overwrite, sources=[source, dicom_template])
    else:
        check_output_path(output, overwrite=overwrite, sources=[str(source)])
    if uncertainty is not None and Path(uncertainty).resolve() == output.resolve():  # however spelled
        raise ConfigError(f"--uncertainty and -o name the same file ({output}); give the uncertainty its own name")
    if uncertainty is not None:
        check_output_path(Path(uncertainty), overwrite=overwrite, sources=[str(source)], option="--uncertainty")
    if preview is not None:
        check_output_path(
            Path(preview), overwrite=overwrite, sources=[str(source)], suffixes=(".png",), option="--preview"
        )
    fn = build_method(
        method,
        model=model,
        device=device,
        progress=progress,
        all_views=all_views,
        precision=precision,
        # the preview shows the spread too, when the method has one
        uncertainty=uncertainty is not None or (preview is not None and method_class(method).gives_uncertainty),
    )
    volume = load(source, series_uid=series_uid if from_dicom else None)  # for a file: the template's series
    template = None
    if dicom:  # the template's problems (no study, another series) show before the work
        folder = source if dicom_template is None else Path(dicom_template)
        uid = None if from_dicom else series_uid  # a DICOM input picks its own series
        template = read_template(folder, series_uid=uid, volume=volume, new_study=new_study)
        volume = with_template_thickness(volume, template.slice_thickness, slice_thickness)
    thin, spread = upsample_checked(
        volume,
        fn,
        scale=scale,
        target_spacing=target_spacing,
        accept_non_ct=accept_non_ct,
        slice_thickness=slice_thickness,
        output_thickness=output_thickness,
        keep_acquired=keep_acquired,
        adapt=adapt,
        device=device,
        progress=progress,
    )
    if uncertainty is not None and spread is not None:
        save(spread, uncertainty, overwrite=overwrite)
        log.info("wrote %s: disagreement between views, HU (mean %.1f)", uncertainty, float(spread.data.mean()))
    if template is not None:
        write_series(
            thin, output, template=template, fn=fn, thick_spacing=volume.slice_spacing,
            overwrite=overwrite, new_study=new_study,
        )  # fmt: skip
    else:
        save(thin, output, overwrite=overwrite)
    log.info(
        "wrote %s: %d slices at %.4g mm (was %d at %.4g mm)%s; made by %s",
        output,
        thin.num_slices,
        thin.slice_spacing,
        volume.num_slices,
        volume.slice_spacing,
        " as a derived DICOM series" if template is not None else "",
        thin.meta.get("made_by", fn.name),
    )
    if preview is not None:
        write_preview(volume, thin, preview, fn=fn, spread=spread)
        log.info("wrote %s: input beside output", preview)
    return thin


def _check_only_a_series(folder: Path, output: Path) -> None:
    """A folder is read as one DICOM series; image files in it (a batch's folder, or files
    beside a series) leave open which scan was meant. The output itself, written there by
    an earlier run, is no such file."""
    images = [here / name for here, files in walk(folder) for name in files if suffix_of(name)]
    images = [path for path in images if path.resolve() != output.resolve()]
    if images:
        raise InputError(
            f"{folder} holds {len(images)} image file(s) ({images[0].name}, ...), and a folder is read as one DICOM "
            "series; give one scan with -i (a file, or a folder holding one series alone), or an output folder with "
            "-o to upsample them all (batch)"
        )
