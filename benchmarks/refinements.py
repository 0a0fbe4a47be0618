"""Three ideas for more quality from the bundled models as they are, measured (BENCHMARKS.md).

On the held-out crops of ``thick_slices.py`` (box profile unless said; PSNR over all
slices, HU [-1024, 3072] scaled to [0, 1]), each against the bundled model with no flags:

* ``consistency``: project the model's output onto the volumes whose box averages are the
  acquired thick slices (the least change, smoothed along the slice axis by ``mu``, that
  makes re-degrading the output give the input back). Worth it only if the networks'
  output disagrees with what was acquired.
* ``finer``: synthesize at a larger factor (output spacing nearer the in-plane pixel, the
  scale the networks learned from) and average those slices over the truth's thickness.
* ``passes``: x8, which no bundled model makes directly: the rule (the x2 model of the
  family the acquisition picks, three times) against x4 then x2, with the second pass by
  the thick-slice (``profile``) or thin-slice (``default``) family, and x2 then x4; box,
  softened boxes (``--softness``) and decimation (``default`` family throughout).

    OMP_NUM_THREADS=1 python benchmarks/refinements.py consistency finer passes
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import numpy as np
import torch
from thick_slices import SCANS, SHARED, crop, held_out_thick

import thinslice
from thinslice.evaluation.metrics import psnr, scale_hu
from thinslice.methods.learned import bundled_model_path
from thinslice.profile import BELL_BOX, profile_matrix, slice_profile_kernel
from thinslice.volume import Volume

CHEST, LIMB = "chest1mm_lidc0314", "limb3mm_sts002"


def score(truth: np.ndarray, out: Volume | np.ndarray) -> float:
    data = out.data if isinstance(out, Volume) else out
    return round(psnr(truth, scale_hu(np.asarray(data, dtype=np.float32))), 2)


def model(volume: Volume, r: int, family: str | None = None, scale: int | None = None) -> Volume:
    """The bundled model (no flags), or ``family``'s checkpoint for ``scale`` (default r)."""
    path = None if family is None else bundled_model_path(scale or r, family)
    return thinslice.upsample(volume, r, method="model", model=path, device="cpu")


def consistency() -> list[dict]:
    rows = []
    for name, r in [(LIMB, 2), (LIMB, 3), (CHEST, 2), (CHEST, 3), (CHEST, 5)]:
        truth, thick = held_out_thick(name, r)
        out = model(thick, r).data.astype(np.float64)
        n = len(out)
        degrade, _ = profile_matrix(n, 1.0, float(r), float(r), count=thick.num_slices)
        residual = thick.data - np.tensordot(degrade, out, axes=(1, 0))
        row = {"scan": name, "r": r, "model": score(truth, out), "residual_hu_rms": round(float(residual.std()), 2)}
        steps = np.diff(np.eye(n), axis=0)
        for mu in (0.0, 0.1, 1.0, 10.0):
            normal = degrade.T @ degrade + mu * steps.T @ steps + 1e-3 * np.eye(n)
            correction = np.linalg.solve(normal, degrade.T)
            row[f"projected mu={mu:g}"] = score(truth, out + np.tensordot(correction, residual, axes=(1, 0)))
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def finer() -> list[dict]:
    rows = []
    for name, r, factors in [(LIMB, 2, (4, 6)), (LIMB, 3, (6,)), (CHEST, 2, (4,)), (CHEST, 3, (6,))]:
        truth, thick = held_out_thick(name, r)
        row = {"scan": name, "r": r, "model": score(truth, model(thick, r))}
        for f in factors:
            k = f // r  # fine slices per truth slice
            fine = model(thick, f).data.astype(np.float32)
            row[f"x{f}, averaged"] = score(truth, np.asarray(_average(fine, k)[::k]))
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def _average(data: np.ndarray, width: int) -> np.ndarray:
    from scipy import ndimage

    return ndimage.convolve1d(data, slice_profile_kernel(float(width), 1.0), axis=0, mode="nearest")


def passes(softness: list[float]) -> list[dict]:
    ways: dict[str, Callable[[Volume, str], Volume]] = {
        "x2 x2 x2 (the rule)": lambda v, fam: model(v, 8, fam, 2),
        "x4 then x2 thin-slice": lambda v, fam: model(model(v, 4, fam), 2, "default"),
        "x4 then x2 same family": lambda v, fam: model(model(v, 4, fam), 2, fam),
        "x2 then x4 same family": lambda v, fam: model(model(v, 2, fam), 4, fam),
    }
    rows = []
    file, _, size, slices = SCANS[CHEST]
    volume = crop(thinslice.load(SHARED / file), size, slices)
    inputs: list[tuple[str, str, np.ndarray, Volume]] = []
    for s in softness:
        truth, thick = held_out_thick(CHEST, 8, softness=s)
        inputs.append((f"profile, softness {s:g}", "profile", truth, thick))
    # a bell of FWHM 8 slices (as softness.py --shape gaussian), the file saying 8 mm thick
    truth, thick = held_out_thick(CHEST, 8, overlap=BELL_BOX, softness=1 / BELL_BOX)
    inputs.append(("bell", "profile", truth, thick.with_data(thick.data, slice_thickness=thick.slice_spacing)))
    thin = volume.data.astype(np.float32)
    kept = volume.with_data(np.ascontiguousarray(thin[::8]), volume.slice_spacing * 8, slice_thickness=1.0)
    inputs.append(("decimate", "default", scale_hu(thin[: 8 * (kept.num_slices - 1) + 1]), kept))
    for label, family, truth, thick in inputs:
        lanczos = thinslice.upsample(thick, 8, method="lanczos")
        row: dict = {"scan": CHEST, "r": 8, "input": label, "lanczos": score(truth, lanczos)}
        for way, make in ways.items():
            row[way] = score(truth, make(thick, family))
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ideas", nargs="+", choices=("consistency", "finer", "passes"))
    parser.add_argument("--softness", nargs="+", type=float, default=[0.0, 0.5, 1.0], help="passes: profiles")
    args = parser.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"needs the shared scans in {SHARED}")
    torch.set_num_threads(1)
    for idea in args.ideas:
        print(f"## {idea}", flush=True)
        if idea == "consistency":
            consistency()
        elif idea == "finer":
            finer()
        else:
            passes(args.softness)


if __name__ == "__main__":
    main()
