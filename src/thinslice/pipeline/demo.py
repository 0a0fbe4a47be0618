"""``thinslice demo``: the main job on the bundled sample, with a picture and numbers.

The sample is a 160 x 160 crop of a thin-slice (1 mm) chest CT, LIDC-IDRI-0314 (TCIA,
CC BY 3.0). ``sample_thick.nii.gz`` holds realistic 4 mm slices, each the average of the
1 mm slices over its 4 mm thickness (made by ``scripts/make_data.py``); the demo upsamples
it back to 1 mm, every output slice synthesized (one past each end slice's centre, inside
its 4 mm), and compares with the real 1 mm slices in ``sample_reference.nii.gz``, which the
upsampling never sees.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Any

from thinslice.errors import OutputError
from thinslice.evaluation.figures import compare_views
from thinslice.evaluation.metrics import compare
from thinslice.io import load, save
from thinslice.io.atomic import write_json
from thinslice.methods import method_class
from thinslice.pipeline.upsample import build_method, upsample_checked

log = logging.getLogger(__name__)


def sample_paths() -> tuple[Path, Path]:
    """Paths of the bundled thick sample and its 1 mm reference."""
    base = resources.files("thinslice") / "data"
    return Path(str(base / "sample_thick.nii.gz")), Path(str(base / "sample_reference.nii.gz"))


def run_demo(
    output_dir: str | Path, *, method: str = "model", device: str = "auto", progress: bool = False
) -> dict[str, Any]:
    """Upsample the sample with ``method`` (and cubic), write NIfTI + PNG + metrics JSON.

    Returns:
        ``{method: {metric: value}}`` against the reference slices.
    """
    methods = list(dict.fromkeys([method, "cubic"]))  # the chosen method, and cubic beside it
    device_of = {name: device if name == method else "auto" for name in methods}
    built = {  # a bad method or device stops the demo before its folder is made
        name: build_method(name, device=device_of[name], progress=progress,
                           uncertainty=method_class(name).gives_uncertainty)
        for name in methods
    }  # fmt: skip
    out = Path(output_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create demo folder {out}: {err.strerror}; choose another -o") from err
    thick_path, ref_path = sample_paths()
    thick, reference = load(thick_path), load(ref_path)
    r = round(thick.slice_spacing / reference.slice_spacing)
    results = {}
    spread = None
    for name, fn in built.items():
        results[name], made = upsample_checked(thick, fn, scale=r, device=device_of[name], progress=progress)
        if made is not None:
            spread = made
            save(spread, out / "sample_uncertainty.nii.gz", overwrite=True)
        save(results[name], out / f"sample_{name}.nii.gz", overwrite=True)
    # the results reach past the end thick slices' centres, as the reference does: the
    # acquired positions are thick slice k's, margin + r * k of the result
    margin = (results[method].num_slices - r * (thick.num_slices - 1) - 1) // 2
    metrics = {name: compare(reference.data, vol.data, r, first=margin) for name, vol in results.items()}
    panels = [(f"thick input ({thick.slice_spacing:g} mm)", thick)]
    panels += [(f"{name} (x{r})", results[name]) for name in reversed(methods)]
    panels.append((f"reference ({reference.slice_spacing:g} mm)", reference))
    figure = compare_views(
        panels, out / "sample_views.png", uncertainty=spread, title="thinslice demo: LIDC-IDRI-0314 chest crop"
    )
    write_json(out / "sample_metrics.json", metrics)
    print(
        f"demo: x{r} from {thick.slice_spacing:g} mm slices ({thick.thickness:g} mm thick) to "
        f"{reference.slice_spacing:g} mm; against the real 1 mm slices (PSNR_all: every output slice):"
    )
    print(f"  {'method':8s} {'PSNR_all':>9s} {'PSNR_syn':>9s} {'SSIM_ax':>8s} {'SSIM_cor':>8s} {'SSIM_sag':>8s}")
    for name, m in metrics.items():
        ssim = " ".join(f"{m[k]:8.4f}" for k in ("ssim_axial", "ssim_coronal", "ssim_sagittal"))
        print(f"  {name:8s} {m['psnr_paper']:9.2f} {m['psnr_synth']:9.2f} {ssim}")
    print(f"  wrote {out}/sample_*.nii.gz and {figure}")
    return metrics
