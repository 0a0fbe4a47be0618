"""Side-by-side benchmark: thinslice vs ECLARE (Remedios et al. 2025) on one held-out scan.

What it measures
    How close each method's thin slices come to real 1 mm slices when given a realistic
    thick scan: PSNR over all output slices inside the thick stack (``psnr_all``), over the
    synthesized slices only (``psnr_synth``), at the acquired positions (``psnr_acq``), and
    SSIM in the coronal and sagittal planes; plus the whole-process wall time of each run.
    Intensities as everywhere in thinslice (``thinslice.evaluation.metrics``): HU clipped
    to [-1024, 3072] and scaled to [0, 1].

On what data
    ``../shared/data/chest1mm_lidc0314.nii.gz`` (real 1 mm slices, LIDC-IDRI-0314; never
    used to train thinslice's bundled models). A crop: ``--crop`` x ``--crop`` pixels
    in-plane (0.78 mm pixels) centred on the body, ``--slices`` thin slices from the middle
    of the scan; this crop is the truth. The thick input is
    ``thinslice.evaluation.degrade.profile(truth, r, r * 1 mm, softness=S)``: box-profile
    slices ``r`` mm thick every ``r`` mm (contiguous; ``--softness S`` softens the box by a
    Gaussian of FWHM S x the thickness, as a scanner's reconstruction does; ``--shape
    gaussian``: a bell of FWHM ``r`` mm instead, like a helical scan's slice sensitivity
    profile, the file still saying ``r`` mm thick), slice 0 at truth slice 0; saved with
    ``thinslice.save`` (which writes the thickness into the NIfTI header notes).

The methods
    * ECLARE (PyPI ``eclare``, installed into its own venv ``benchmarks/.eclare-venv``,
      never into ``.venv``). ECLARE is self-supervised and **trains per scan, on that scan
      itself** (in-plane patches blurred with the slice profile and downsampled serve as
      training pairs), then super-resolves it. It is given the true slice profile
      (``--relative-slice-thickness`` = thickness / in-plane pixel size, profile ``rect``,
      i.e. a box like the degradation; so ESPRESO's profile estimation is skipped). ECLARE
      has no target-spacing option: it always outputs the slice axis at the in-plane pixel
      size (here 0.78 mm, factor ``round(r / 0.78, 3)``), keeping the field of view of the
      thick slices (edge to edge). Its output is resampled onto the 1 mm truth grid by
      physical position (cubic spline along the slice axis; a linear row too), see
      ``align_eclare``. Its training budget is cut to fit ``--minutes`` of wall time on ONE
      thread: the script times a few training steps and one inference slice first and sets
      ``--n-patches`` from that (ECLARE's default is 1,000,000 patches in batches of 128,
      made for a GPU). Batch size ``--eclare-batch`` (default 32, ECLARE's is 128).
    * thinslice: ``thinslice upsample -i thick.nii.gz -o out.nii.gz --target-spacing 1.0``
      with the bundled model (no flags: the thickness recorded in the file picks the profile
      family; with ``--thinslice-adapt M`` also ``--adapt M``), and ``--method
      lanczos|cubic|linear``; with
      ``--thinslice-model PATH`` also ``--model PATH``.

Everything heavy runs on one thread (OMP_NUM_THREADS=1, torch.set_num_threads(1)) under
``nice -n 19``. Output: a Markdown table on stdout and ``benchmarks/out/eclare_<date>.json``;
the NIfTI files under ``benchmarks/out/eclare_work/x<r>/``.

Usage (with the project's venv; the ECLARE venv is made on first use)::

    .venv/bin/python benchmarks/eclare_compare.py --scale 5 --crop 128 --minutes 15
    .venv/bin/python benchmarks/eclare_compare.py --scale 5 3 --minutes 15 --thinslice-model m.pt

A real pair instead (two reconstructions of one acquisition, e.g. 5 mm and 1 mm; files
or DICOM folders): ``--thick T --reference R`` crops the thick series in-plane (``--crop``,
0 for none) around the body, runs ECLARE on it given its true slice thickness (as read, e.g.
DICOM SliceThickness), and scores ECLARE beside linear, cubic, Lanczos and the bundled model
(``--thinslice-adapt M``: also ``--adapt M``) through ``thinslice.evaluate_pair``, the path
of ``thinslice evaluate --reference``: the reference's own slices and pixels, never
resampled (ECLARE's output, at its own slice spacing, is put onto the thick series' fine grid
by a cubic spline first). Whole-process times of ``thinslice upsample`` and of ECLARE are
printed beside. On a simulated pair it reproduces the numbers above exactly::

    .venv/bin/python benchmarks/eclare_compare.py --thick series_5mm/ --reference series_1mm/ \
        --crop 256 --minutes 20 --thinslice-adapt 2

Skips (exit 0, one line) when ``../shared/data`` is missing (not with ``--thick``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / "benchmarks" / ".eclare-venv"
VENV_PY = VENV / "bin" / "python"
ECLARE_VERSION = "1.0.1"
SCAN = "chest1mm_lidc0314.nii.gz"


def one_thread_env() -> dict[str, str]:
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        env[k] = "1"
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


# --------------------------------------------------------------------------- ECLARE venv
def ensure_venv(torch_spec: str) -> dict:
    """Make benchmarks/.eclare-venv with eclare (and torch) when it lacks them; report versions."""
    probe = "import importlib.metadata as m; print(m.version('eclare'), m.version('torch'))"
    ok = VENV_PY.exists() and subprocess.run([VENV_PY, "-c", probe], capture_output=True).returncode == 0
    if not ok:
        print(f"[setup] creating {VENV} and installing {torch_spec} + eclare=={ECLARE_VERSION}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        # torch first, pinned like the project's (a local +cpu wheel is preferred when pip has one)
        subprocess.run(
            [
                "nice",
                "-n",
                "19",
                VENV_PY,
                "-m",
                "pip",
                "install",
                "-q",
                *torch_spec.split(),
                f"eclare=={ECLARE_VERSION}",
            ],
            check=True,
        )
    out = subprocess.run([VENV_PY, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    size = subprocess.run(["du", "-sm", str(VENV)], capture_output=True, text=True).stdout.split()[0]
    return {"eclare": out[0], "torch": out[1], "venv_mb": int(size)}


# ------------------------------------------------------------------- ECLARE runner (venv)
def eclare_runner(argv: list[str]) -> None:
    """Runs INSIDE the ECLARE venv (no thinslice import): calibrate, then eclare.main."""
    p = argparse.ArgumentParser()
    p.add_argument("--in", dest="inp", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--thickness-mm", type=float, required=True)
    p.add_argument("--minutes", type=float, required=True)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--profile", default="rect")
    p.add_argument("--info", required=True)
    a = p.parse_args(argv)
    t_start = time.time()

    import random

    import nibabel as nib
    import numpy as np
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    random.seed(0)
    np.random.seed(0)
    import eclare.eclare as ee
    import eclare.main as em
    from eclare.models.wdsr import WDSR
    from eclare.utils.blur_kernel_ops import parse_kernel
    from eclare.utils.parse_image_file import parse_image
    from eclare.utils.train_set import TrainSet
    from torch.utils.data import DataLoader

    def one_process_loader(*args, **kw):  # ECLARE spawns min(8, threads) workers: keep it in-process
        kw["num_workers"] = 0
        kw["pin_memory"] = False
        return DataLoader(*args, **kw)

    ee.DataLoader = one_process_loader

    zooms = [float(z) for z in nib.load(a.inp).header.get_zooms()[:3]]
    inplane = min(sorted(zooms)[:2])
    rel = a.thickness_mm / inplane
    # --- calibration, with ECLARE's own shapes (see eclare.eclare.run_eclare) ---
    image, sep, _, lr_axis, *_ = parse_image(a.inp, normalize_image=True)
    ds = TrainSet(image=image, lr_axis=lr_axis, verbose=False)
    model = WDSR(n_resblocks=16, num_channels=256, scale=sep)
    pp = 8
    p2 = round(sep * max(model.calc_out_patch_size([pp, pp])))
    kernel = parse_kernel(None, a.profile, rel)
    ds.init_eclare((p2, pp), kernel, sep, 64)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    t0 = time.time()
    pairs = [ds[i] for i in range(a.batch)]
    data_s = time.time() - t0
    lr = torch.stack([x for x, _ in pairs])
    hr = torch.stack([y for _, y in pairs])
    times = []
    for _ in range(3):
        t0 = time.time()
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(lr), hr)
        loss.backward()
        opt.step()
        times.append(time.time() - t0)
    step_s = min(times[1:]) + data_s
    vol = np.moveaxis(image, lr_axis, 2)
    sl = torch.rand(1, 1, vol.shape[2], max(vol.shape[:2]))
    with torch.inference_mode():
        t0 = time.time()
        model(sl)
        infer_s = (time.time() - t0) * 2 * max(vol.shape[:2])  # 2 angles x one pass per row
    del model, opt, ds
    spent = time.time() - t_start
    train_s = a.minutes * 60 - spent - 1.15 * infer_s - 20
    n_steps = max(1, int(train_s / step_s))
    n_patches = n_steps * a.batch
    info = {
        "slice_separation": sep,
        "relative_slice_thickness": rel,
        "profile": a.profile,
        "lr_patch": list(lr.shape[2:]),
        "hr_patch": list(hr.shape[2:]),
        "batch": a.batch,
        "calib_step_s": step_s,
        "calib_infer_s_est": infer_s,
        "n_steps": n_steps,
        "n_patches": n_patches,
        "default_n_patches": 1000000,
        "default_batch": 128,
    }
    print("[eclare-runner]", json.dumps(info), flush=True)
    # --- the real run, through ECLARE's own command line ---
    em.main(
        [
            "--in-fpath",
            a.inp,
            "--out-dir",
            a.out_dir,
            "--batch-size",
            str(a.batch),
            "--n-patches",
            str(n_patches),
            "--relative-slice-thickness",
            f"{rel:.6f}",
            "--relative-slice-profile-type",
            a.profile,
            "--gpu-id",
            "-1",
        ]
    )
    info["runner_wall_s"] = time.time() - t_start
    Path(a.info).write_text(json.dumps(info))


# --------------------------------------------------------------------------- inputs
def body_crop(vol, z0: int, slices: int, crop: int):
    """Slices ``z0 .. z0 + slices`` of ``vol`` (a Volume with its slice axis third), cut
    in-plane to ``crop`` x ``crop`` pixels centred on the body (not the air or the table) of
    the middle slice; the geometry follows the cut. Returns it and its corner ``(y0, x0)``."""
    import numpy as np
    from scipy import ndimage

    from thinslice.volume import Geometry, Volume

    g = vol.geometry
    _, h, w = vol.data.shape
    mid = vol.data[z0 + slices // 2] > -500
    lab, n = ndimage.label(mid)
    if n > 1:
        mid = lab == 1 + int(np.argmax(ndimage.sum_labels(mid, lab, np.arange(1, n + 1))))
    ys, xs = np.nonzero(mid)
    cy, cx = (ys.min() + ys.max()) // 2, (xs.min() + xs.max()) // 2
    y0 = int(np.clip(cy - crop // 2, 0, max(0, h - crop)))
    x0 = int(np.clip(cx - crop // 2, 0, max(0, w - crop)))
    sub = np.ascontiguousarray(vol.data[z0 : z0 + slices, y0 : y0 + crop, x0 : x0 + crop])
    dirm = np.asarray(g.direction, float).reshape(3, 3)
    origin = np.asarray(g.origin, float) + dirm @ (np.asarray(g.spacing) * np.array([x0, y0, z0]))
    cut = Volume(sub, Geometry(g.spacing, tuple(origin), g.direction, 2), vol.name, {}, vol.slice_thickness)
    return cut, (y0, x0)


def build_inputs(
    data: Path,
    scan: str,
    work: Path,
    scales: list[int],
    crop: int,
    slices: int,
    softness: float = 0.0,
    shape: str = "box",
) -> dict:
    """Crop the truth, make the thick copies; returns paths and facts."""
    import thinslice
    from thinslice.evaluation.degrade import profile
    from thinslice.profile import BELL_BOX

    vol = thinslice.load(data / scan)
    assert vol.geometry.slice_axis == 2, vol.geometry
    z0 = (vol.data.shape[0] - slices) // 2
    truth, (y0, x0) = body_crop(vol, z0, slices, crop)
    truth.name = "truth"
    g, sub = truth.geometry, truth.data
    work.mkdir(parents=True, exist_ok=True)
    paths = {"truth": work / "truth.nii.gz"}
    thinslice.save(truth, paths["truth"], overwrite=True)
    for r in scales:
        if (slices - 1) % r:
            raise SystemExit(f"--slices {slices} must be r*k+1 for r={r}")
        mm = r * g.slice_spacing
        if shape == "gaussian":  # a bell of FWHM mm: a box too narrow to matter, softened by that FWHM
            thick = profile(truth, r, mm * BELL_BOX, softness=(1 + softness) / BELL_BOX)
            thick = thick.with_data(thick.data, slice_thickness=mm)  # what the file says: the nominal FWHM
        else:
            thick = profile(truth, r, mm, softness=softness)
        paths[r] = work / f"x{r}" / f"thick_{r * g.slice_spacing:g}mm.nii.gz"
        paths[r].parent.mkdir(exist_ok=True)
        thinslice.save(thick, paths[r], overwrite=True)
    return {"paths": paths, "crop_index_dhw": [z0, y0, x0], "shape": list(sub.shape), "spacing_xyz_mm": list(g.spacing)}


# --------------------------------------------------------------------------- runs
def timed(cmd: list, log: Path) -> tuple[int, float, str]:
    t0 = time.time()
    with open(log, "w") as fh:
        rc = subprocess.run(
            ["nice", "-n", "19", *map(str, cmd)], env=one_thread_env(), stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT
        ).returncode
    dt = time.time() - t0
    tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()][-1:] or [""]
    return rc, dt, tail[0]


def run_thinslice(thick: Path, wd: Path, model: str | None, spacing: float, adapt: float | None = None) -> dict:
    exe = ROOT / ".venv" / "bin" / "thinslice"
    runs = {"thinslice model (bundled)": []}
    if adapt:
        runs[f"thinslice model (bundled, --adapt {adapt:g})"] = ["--adapt", f"{adapt:g}"]
    if model:
        runs[f"thinslice model ({Path(model).name})"] = ["--model", model]
    for m in ("lanczos", "cubic", "linear"):
        runs[f"thinslice {m}"] = ["--method", m]
    res = {}
    for name, extra in runs.items():
        out = wd / (name.replace(" ", "_").replace("(", "").replace(")", "") + ".nii.gz")
        cmd = [
            exe,
            "upsample",
            "-i",
            thick,
            "-o",
            out,
            "--target-spacing",
            f"{spacing:g}",
            "--device",
            "cpu",
            "--overwrite",
            *extra,
        ]
        rc, dt, tail = timed(cmd, out.with_suffix("").with_suffix(".log"))
        res[name] = {
            "cmd": " ".join(map(str, cmd[:1] + [c for c in cmd[1:] if str(c) != "--overwrite"])),
            "rc": rc,
            "wall_s": dt,
            "path": out if rc == 0 else None,
            "note": "" if rc == 0 else tail,
        }
        print(f"[run] {name}: rc={rc} {dt:.1f}s {'' if rc == 0 else tail}", flush=True)
    return res


def run_eclare(thick: Path, wd: Path, label: str, a, thickness_mm: float) -> dict:
    info = wd / "eclare_runner.json"
    out = wd / "eclare" / thick.name.replace(".nii", "_eclare.nii")
    if a.reuse_eclare and out.exists() and info.exists():  # score an earlier run again
        ran = json.loads(info.read_text())
        print(f"[run] ECLARE {label}: reusing {out} ({ran['runner_wall_s']:.0f} s then)", flush=True)
        return {"rc": 0, "wall_s": ran["runner_wall_s"], "path": out, "note": "reused", "runner": ran}
    info.unlink(missing_ok=True)
    cmd = [
        VENV_PY,
        Path(__file__).resolve(),
        "--_eclare-runner",
        "--in",
        thick,
        "--out-dir",
        wd / "eclare",
        "--thickness-mm",
        float(thickness_mm),
        "--minutes",
        a.minutes,
        "--batch",
        a.eclare_batch,
        "--profile",
        a.eclare_profile,
        "--info",
        info,
    ]
    print(f"[run] ECLARE {label} (budget {a.minutes} min, 1 thread) ...", flush=True)
    rc, dt, tail = timed(cmd, wd / "eclare.log")
    print(f"[run] ECLARE: rc={rc} {dt:.1f}s {'' if rc == 0 else tail}", flush=True)
    return {
        "rc": rc,
        "wall_s": dt,
        "path": out if rc == 0 and out.exists() else None,
        "note": "" if rc == 0 else tail,
        "runner": json.loads(info.read_text()) if info.exists() else None,
    }


# --------------------------------------------------------------------------- scoring
def read_eclare(path: Path):
    """ECLARE's output as a Volume: near-isotropic, so its slice axis is the third by
    construction (as the thick input's)."""
    import SimpleITK as sitk

    from thinslice.volume import Geometry, Volume

    image = sitk.ReadImage(str(path))
    geometry = Geometry(image.GetSpacing(), image.GetOrigin(), image.GetDirection(), slice_axis=2)
    return Volume.from_itk_array(sitk.GetArrayFromImage(image), geometry)


def align_eclare(truth, path: Path, kind: str):
    """ECLARE's output resampled onto the truth's slices by physical position.

    Checks that in-plane size, spacing, direction and in-plane origin agree; projects
    each slice origin on the slice direction; interpolates along the slice axis only
    (``cubic``: not-a-knot cubic spline, ``linear``) at the truth slices' positions, which
    must all lie inside ECLARE's slice range.
    """
    import numpy as np
    from scipy.interpolate import make_interp_spline

    e = read_eclare(path)
    tg, eg = truth.geometry, e.geometry
    assert eg.slice_axis == tg.slice_axis == 2, (eg, tg)
    assert e.data.shape[1:] == truth.data.shape[1:], (e.data.shape, truth.data.shape)
    assert np.allclose(eg.direction, tg.direction, atol=1e-4), (eg.direction, tg.direction)
    assert np.allclose(eg.inplane_spacing, tg.inplane_spacing, atol=1e-4)
    nrm = tg.slice_direction
    off = np.asarray(eg.origin) - np.asarray(tg.origin)
    inplane_off = off - nrm * (off @ nrm)
    assert np.abs(inplane_off).max() < 1e-3, f"ECLARE output shifted in-plane by {inplane_off}"
    e_pos = np.array([eg.slice_position(k) @ nrm for k in range(e.num_slices)])
    t_pos = np.array([tg.slice_position(k) @ nrm for k in range(truth.num_slices)])
    assert e_pos[0] - 1e-6 <= t_pos.min() and t_pos.max() <= e_pos[-1] + 1e-6, (e_pos[[0, -1]], t_pos[[0, -1]])
    src = e.data.astype(np.float64)
    if kind == "linear":
        idx = (t_pos - e_pos[0]) / (e_pos[1] - e_pos[0])
        lo = np.clip(np.floor(idx).astype(int), 0, e.num_slices - 2)
        f = (idx - lo)[:, None, None]
        out = (1 - f) * src[lo] + f * src[lo + 1]
    else:
        out = make_interp_spline(e_pos, src, k=3, axis=0)(t_pos)
    facts = {
        "eclare_slices": e.num_slices,
        "eclare_spacing_mm": eg.slice_spacing,
        "eclare_first_mm_rel_truth0": float(e_pos[0] - t_pos[0]),
        "eclare_last_mm_rel_truth0": float(e_pos[-1] - t_pos[0]),
    }
    return out.astype(np.float32), facts


def score(truth_hu, pred_hu, r: int) -> dict:
    import numpy as np

    from thinslice.evaluation.metrics import compare, psnr, scale_hu

    m = compare(truth_hu, pred_hu, r)
    acq = np.arange(truth_hu.shape[0]) % r == 0
    m["psnr_acq"] = psnr(scale_hu(truth_hu[acq]), scale_hu(pred_hu[acq]))
    return m


def eclare_method(path: Path, thick):
    """ECLARE's output as a thinslice Method, for ``evaluate_pair``: its slices resampled
    (not-a-knot cubic spline, by physical position) onto the thick series' own fine grid,
    which the pair path then puts on the reference's positions as it does for every method."""
    import numpy as np
    from scipy.interpolate import make_interp_spline

    from thinslice.methods import Method, MethodResult

    e = read_eclare(path)
    eg, tg = e.geometry, thick.geometry
    assert e.data.shape[1:] == thick.data.shape[1:], (e.data.shape, thick.data.shape)
    assert np.allclose(eg.direction, tg.direction, atol=1e-4) and np.allclose(eg.inplane_spacing, tg.inplane_spacing)
    normal = tg.slice_direction
    e_pos = np.array([eg.slice_position(k) @ normal for k in range(e.num_slices)])
    spline = make_interp_spline(e_pos, e.data.astype(np.float64), k=3, axis=0)

    class Eclare(Method):
        name = "ECLARE"
        description = "ECLARE (Remedios et al. 2025), run per scan in its own venv"

        def run(self, data, r, *, thickness=1.0, spacing=None, dtype=None, padded=0):  # type: ignore[no-untyped-def]
            # fine slice k of the data given (its end slices repeated `padded` times) lies at
            # thick slice k / r - padded; past ECLARE's own slices (the padding, which the
            # caller crops away) its end slices stand in
            fine = np.array([tg.slice_position(k / r - padded) @ normal for k in range(r * (len(data) - 1) + 1)])
            return MethodResult(spline(np.clip(fine, e_pos.min(), e_pos.max())).astype(np.float32))

    return Eclare()


def real_pair(a) -> int:
    """``--thick T --reference R``: a real pair, ECLARE beside thinslice, scored by
    ``thinslice.evaluate_pair`` (the path of ``thinslice evaluate --reference``)."""
    import numpy as np
    import torch

    import thinslice
    from thinslice.evaluation.pair import evaluate_pair
    from thinslice.evaluation.protocol import COMPARED, format_table
    from thinslice.pipeline.adapt import adapted

    torch.set_num_threads(1)
    thick = thinslice.load(a.thick, a.series_uid)
    reference = thinslice.load(a.reference, a.reference_series_uid, series_option="--reference-series-uid")
    if thick.geometry.slice_axis != 2:
        raise SystemExit("the thick series' slice axis must be its third (as DICOM series and most files are)")
    if a.crop:
        thick, _ = body_crop(thick, 0, thick.num_slices, a.crop)
    wd = a.out / "eclare_work" / "pair"
    wd.mkdir(parents=True, exist_ok=True)
    path = wd / "thick.nii.gz"
    thinslice.save(thick, path, overwrite=True)
    report: dict = {"date": datetime.date.today().isoformat(), "command": " ".join(sys.argv)}
    report["thick"], report["reference"] = str(a.thick), str(a.reference)
    methods: list = list(COMPARED)
    if not a.skip_eclare:
        report["eclare_env"] = ensure_venv(a.torch_spec)
        ran = run_eclare(path, wd, "pair", a, thick.thickness)  # the true thickness
        report["eclare_run"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in ran.items()}
        if ran["path"] is not None:
            methods.append(eclare_method(ran["path"], thick))
    adapter = None
    if a.thinslice_adapt:
        minutes = a.thinslice_adapt
        adapter = (f"model --adapt {minutes:g}", lambda fn, t, r: adapted(fn, t, r, minutes, device="cpu"))
    scored = evaluate_pair(thick, reference, methods=methods, adapter=adapter, device="cpu")
    runs = run_thinslice(path, wd, None, reference.slice_spacing)  # whole-process times
    report.update(scored=scored, upsample_wall_s={k: v["wall_s"] for k, v in runs.items()})
    print(format_table(scored))
    if "eclare_run" in report:
        print(f"ECLARE: {report['eclare_run']['wall_s']:.0f} s whole process (1 thread, budget {a.minutes:g} min)")
    for name, seconds in report["upsample_wall_s"].items():
        print(f"{name}: {seconds:.1f} s whole process (thinslice upsample --target-spacing, 1 thread)")
    js = a.out / f"eclare_pair_{report['date']}.json"
    js.write_text(json.dumps(report, indent=1, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o)))
    print(f"wrote {js}")
    return 0


def fmt(x) -> str:
    return "–" if x is None else (f"{x:.4f}" if abs(x) < 1.5 else f"{x:.2f}")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--_eclare-runner":
        eclare_runner(sys.argv[2:])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--scale", type=int, nargs="+", default=[5], help="factor(s) r: r mm slices r mm thick -> 1 mm")
    p.add_argument("--crop", type=int, default=128, help="in-plane crop, pixels (default 128)")
    p.add_argument("--slices", type=int, default=61, help="thin slices in the truth crop, r*k+1 (default 61)")
    p.add_argument("--minutes", type=float, default=15, help="ECLARE wall-time budget per run (1 thread)")
    p.add_argument("--eclare-batch", type=int, default=32)
    p.add_argument("--eclare-profile", default="rect", help="ECLARE slice-profile type (rect = the box used)")
    p.add_argument("--thinslice-model", default=None, help="also run thinslice --model PATH")
    p.add_argument("--thinslice-adapt", type=float, default=None, help="also run thinslice --adapt MINUTES")
    p.add_argument("--softness", type=float, default=0.0, help="soften the thick box: Gaussian FWHM S x thickness")
    p.add_argument(
        "--shape",
        choices=("box", "gaussian"),
        default="box",
        help="slice profile of the thick slices: a box as wide as the thickness (default), or a Gaussian of "
        "FWHM the thickness (bell-shaped, like a helical scan's slice sensitivity profile)",
    )
    p.add_argument("--skip-eclare", action="store_true", help="thinslice rows only")
    p.add_argument("--reuse-eclare", action="store_true", help="score ECLARE's earlier output in the work folder")
    p.add_argument("--torch-spec", default="torch==2.13.0", help="torch requirement for the ECLARE venv")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--scan", default=SCAN, help=f"held-out scan in --data, its slices the truth (default {SCAN})")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    p.add_argument("--thick", type=Path, help="a real pair: the thick series (file or DICOM folder)")
    p.add_argument("--reference", type=Path, help="a real pair: the thin reconstruction of the same scan")
    p.add_argument("--series-uid", default=None, help="--thick: which series of a DICOM folder")
    p.add_argument("--reference-series-uid", default=None, help="--reference: which series of a DICOM folder")
    a = p.parse_args()
    if (a.thick is None) != (a.reference is None):
        p.error("give --thick and --reference together")
    if a.thick is not None:
        os.nice(19)
        return real_pair(a)
    if not (a.data / a.scan).exists():
        print(f"skipped: {a.data / a.scan} is missing (this benchmark needs ../shared/data)")
        return 0
    os.nice(19)
    import numpy as np

    import thinslice

    report = {
        "date": datetime.date.today().isoformat(),
        "command": " ".join(sys.argv),
        "scan": a.scan,
        "machine": f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} at start; 1 thread per run, nice 19",
        "metrics": "HU [-1024,3072] -> [0,1]; psnr_all = all truth slices from first to last thick slice "
        "centre (= psnr_paper); psnr_synth = slices not at acquired positions; psnr_acq = acquired "
        "positions; ssim_coronal/sagittal over all those slices",
        "softness": a.softness,
        "shape": a.shape,
        "scales": {},
    }
    if not a.skip_eclare:
        try:
            report["eclare_env"] = ensure_venv(a.torch_spec)
        except subprocess.CalledProcessError as exc:
            print(f"ECLARE could not be installed ({exc}); continuing with thinslice rows only")
            report["eclare_env"] = {"error": str(exc)}
            a.skip_eclare = True
    name = a.scan.split(".")[0] + (f"_soft{a.softness:g}" if a.softness else "") + ("_bell" if a.shape != "box" else "")
    work = a.out / "eclare_work" / name
    inputs = build_inputs(a.data, a.scan, work, a.scale, a.crop, a.slices, a.softness, a.shape)
    report["input"] = {k: v for k, v in inputs.items() if k != "paths"}
    truth = thinslice.load(inputs["paths"]["truth"])
    spacing = truth.slice_spacing
    for r in a.scale:
        thick = inputs["paths"][r]
        wd = thick.parent
        runs = run_thinslice(thick, wd, a.thinslice_model, spacing, a.thinslice_adapt)
        rows = {}
        if not a.skip_eclare:
            ec = run_eclare(thick, wd, f"x{r}", a, r * spacing)
            report.setdefault("eclare_runs", {})[f"x{r}"] = {
                k: (str(v) if isinstance(v, Path) else v) for k, v in ec.items()
            }
            for kind in ("cubic", "linear"):
                rows[f"ECLARE (resampled {kind} to the truth slices)"] = dict(ec)
                if ec["path"] is not None:
                    pred, facts = align_eclare(truth, ec["path"], kind)
                    rows[f"ECLARE (resampled {kind} to the truth slices)"].update(pred=pred, align=facts)
        for name, rr in runs.items():
            rows[name] = dict(rr)
            if rr["path"] is not None:
                out = thinslice.load(rr["path"])
                # upsample reaches past the end slices' centres (into their profile); this mode
                # scores from the first centre to the last, where the truth crop lies
                normal = truth.geometry.slice_direction
                shift = (np.asarray(truth.geometry.origin) - np.asarray(out.geometry.origin)) @ normal
                m = int(round(shift / spacing))
                assert abs(shift - m * spacing) < 1e-3 and m >= 0, shift
                assert out.data.shape[1:] == truth.data.shape[1:] and out.num_slices >= m + truth.num_slices
                rows[name]["pred"] = out.data[m : m + truth.num_slices]
        table = [
            "| method | PSNR all | PSNR synth | PSNR acquired | SSIM cor | SSIM sag | wall s |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        res = {}
        for name, row in rows.items():
            m = score(truth.data, row["pred"], r) if "pred" in row else None
            res[name] = {
                "metrics": m,
                "wall_s": row["wall_s"],
                "rc": row["rc"],
                "note": row.get("note", ""),
                "align": row.get("align"),
                "cmd": row.get("cmd"),
            }
            if m is None:
                table.append(f"| {name} | failed: {row.get('note', '')[:90]} | | | | | {row['wall_s']:.1f} |")
            else:
                table.append(
                    f"| {name} | {fmt(m['psnr_paper'])} | {fmt(m['psnr_synth'])} | {fmt(m['psnr_acq'])} | "
                    f"{fmt(m['ssim_coronal'])} | {fmt(m['ssim_sagittal'])} | {row['wall_s']:.1f} |"
                )
        report["scales"][f"x{r}"] = {"rows": res, "table": table}
        t = f"{r * spacing:g} mm"
        box = f"box softened by FWHM {a.softness:g} x thickness" if a.softness else "box"
        if a.shape == "gaussian":
            box = f"Gaussian of FWHM {t}" + (f", widened by {1 + a.softness:g}" if a.softness else "")
        shape = f"truth {inputs['shape']} (D,H,W)"
        print(f"\n### {a.scan} x{r}: {t} slices, {t} thick ({box}) -> {spacing:g} mm; {shape}\n")
        print("\n".join(table), flush=True)
    a.out.mkdir(parents=True, exist_ok=True)
    js = a.out / f"eclare_{work.name}_{report['date']}.json"
    js.write_text(json.dumps(report, indent=1, default=str))
    print(f"\nwrote {js}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
