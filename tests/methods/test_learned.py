"""The learned model through the product's real paths: API, CLI, bundled weights."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

import thinslice
from tests.conftest import LIMB_CROP
from thinslice.cli import main
from thinslice.errors import ConfigError, ModelError
from thinslice.methods.learned import FAMILIES, ModelMethod, bundled_model_path, bundled_models


def test_model_is_the_default_method_and_keeps_thin_acquired_slices():
    # slices thinner than the output's (decimation-like): kept bit-identical, no spread there
    src = thinslice.load(LIMB_CROP)
    thin_slices = src.slice_spacing / 2
    out, spread = thinslice.upsample(src, scale=2, uncertainty=True, slice_thickness=thin_slices)
    assert out.meta["scale"] == 2 and out.num_slices == 49 and out.meta["acquired_kept"]
    np.testing.assert_array_equal(out.data[::2], src.data)
    assert out.geometry.origin == src.geometry.origin
    assert spread.data.shape == out.data.shape and spread.geometry == out.geometry
    assert spread.data.dtype == np.float32 and (spread.data >= 0).all()
    assert np.all(spread.data[::2] == 0) and spread.data[1::2].mean() > 0
    linear = thinslice.upsample(src, scale=2, method="linear")
    assert np.abs(out.data[1::2].astype(float) - linear.data[1::2]).mean() > 0.5  # the network did something


def test_thick_acquired_slices_are_re_estimated_by_the_profile_model():
    # unknown thickness = the spacing (contiguous): thicker than the output slices
    src = thinslice.load(LIMB_CROP)
    out, spread = thinslice.upsample(src, scale=2, uncertainty=True)
    assert not out.meta["acquired_kept"] and out.thickness == pytest.approx(out.slice_spacing)
    changed = np.abs(out.data[::2].astype(float) - src.data)
    assert changed.mean() > 0.5 and changed.mean() < 60  # sharpened, not replaced by noise
    assert spread.data[::2].mean() > 0  # two through-plane views estimate them
    kept = thinslice.upsample(src, scale=2, keep_acquired=True)
    np.testing.assert_array_equal(kept.data[::2], src.data)


def test_bundled_models_cover_the_clinical_factors():
    assert {2, 3, 4, 5, 6} <= set(bundled_models("default"))  # thin slices (decimation-trained)
    assert {2, 3, 4, 5, 6} <= set(bundled_models("profile"))  # thick slices (acquisition model)
    assert {2, 3, 4, 5, 6} <= set(bundled_models("profile_soft"))  # thick slices, soft profiles
    assert bundled_model_path(8, "default") is not None  # x2 three times
    every = [p for family in FAMILIES for p in bundled_models(family).values()]
    assert len(every) == 15
    assert sum(p.stat().st_size for p in every) < 25 * 2**20  # the package stays small
    for path in every:  # trained on a GPU, stored on the CPU: loads without map_location
        torch.load(path, weights_only=True)
    method = ModelMethod(device="cpu")
    assert method.checkpoint_for(3, thickness=1 / 3).name == "default_x3.pt"  # thin slices at x3
    assert method.checkpoint_for(3, thickness=1.0).name == "profile_x3.pt"  # contiguous thick slices
    assert method.checkpoint_for(3, thickness=1.0, softness=0.3).name == "profile_x3.pt"  # reads like a box
    assert method.checkpoint_for(3, thickness=1.0, softness=0.8).name == "profile_soft_x3.pt"  # reads soft
    assert method.checkpoint_for(3, thickness=1 / 3, softness=0.8).name == "default_x3.pt"  # thin: no profile
    assert method.checkpoint_for(3, thickness=1.25, softness=0.0).name == "profile_x3.pt"  # overlap 1.25
    assert method.checkpoint_for(3, thickness=2.0, softness=0.0).name == "profile_soft_x3.pt"  # overlap 2: soft
    assert method.checkpoint_for(3, thickness=1.5, softness=0.0).name == "profile_soft_x3.pt"  # blend, soft 0.52
    assert method.checkpoint_for(2, thickness=0.6, softness=0.0).name == "default_x2.pt"  # gaps: thin share 0.74
    thin = thinslice.upsample(LIMB_CROP, scale=4)
    assert thin.num_slices == 4 * 24 + 1 + 2  # 3.27 mm slices reach one 0.82 mm slice past each end
    with pytest.raises(ModelError, match="x7"):
        thinslice.upsample(LIMB_CROP, scale=7)


def test_two_views_by_default_all_three_on_request():
    loaded = thinslice.load(LIMB_CROP)
    src = loaded.with_data(np.clip(loaded.data, -1024, 3072))  # inside the model's HU window
    two = thinslice.upsample(src, scale=2, keep_acquired=True, precision="float32")
    three = thinslice.upsample(src, scale=2, all_views=True, keep_acquired=True, precision="float32")
    np.testing.assert_array_equal(three.data[::2], src.data)
    assert not np.array_equal(two.data, three.data)
    # the two-view result is the mean of the coronal and sagittal network passes
    synth = ModelMethod(precision="float32")._synthesizer(bundled_model_path(2, "profile"))
    both = synth.upsample(src.data.astype(np.float32), 2, views="coronal,sagittal", keep_acquired=True)
    np.testing.assert_allclose(two.data, np.clip(np.rint(both), -32768, 32767), atol=1)
    with pytest.raises(ConfigError, match="--all-views applies to --method model"):
        thinslice.upsample(src, scale=2, method="cubic", all_views=True)


def test_a_device_is_refused_for_a_method_that_runs_on_the_cpu():
    """--device cuda with lanczos used to run on the CPU without a word (a typo too)."""
    src = thinslice.load(LIMB_CROP)
    for device in ("cuda", "cdua"):
        with pytest.raises(ConfigError, match="--device applies to --method model, not lanczos"):
            thinslice.upsample(src, scale=2, method="lanczos", device=device)
    cpu = thinslice.upsample(src, scale=2, method="lanczos", device="cpu")
    np.testing.assert_array_equal(cpu.data, thinslice.upsample(src, scale=2, method="lanczos").data)


def test_values_below_the_window_follow_linear_interpolation():
    """-3024 HU padding outside the field of view stays -3024 in synthesized slices."""
    src = thinslice.load(LIMB_CROP)
    data = src.data.copy()
    data[:, :, :10] = -3024
    out = thinslice.upsample(src.with_data(data), scale=2)
    padding = out.data[:, :, :8].astype(int)
    assert padding.max() <= -2974  # within 50 HU of -3024: the network only nudges it (it sees -1024 air)
    assert out.data[1::2, :, 20:].min() > -1100


def test_cli_writes_uncertainty_next_to_the_result(tmp_path):
    out, unc = tmp_path / "thin.nii.gz", tmp_path / "unc.nii.gz"
    assert main(["-q", "upsample", "-i", str(LIMB_CROP), "-o", str(out), "--uncertainty", str(unc)]) == 0
    a, b = sitk.ReadImage(str(out)), sitk.ReadImage(str(unc))
    assert a.GetSize() == b.GetSize() and a.GetSpacing() == b.GetSpacing() and a.GetOrigin() == b.GetOrigin()
    assert b.GetPixelID() == sitk.sitkFloat32


def test_kept_acquired_slices_are_certain(one_thread) -> None:
    """Thick slices kept with --keep-acquired are the input itself: the views' spread there
    is 0, as for thin slices (it was the model's spread at the slices it no longer holds)."""
    scan = thinslice.load(LIMB_CROP)
    thin, unc = thinslice.upsample(scan, 4, keep_acquired=True, uncertainty=True, device="cpu")
    np.testing.assert_array_equal(thin.data[::4], scan.data)
    assert not unc.data[::4].any() and unc.data[1::4].mean() > 1


def test_uncertainty_needs_the_model(tmp_path, capsys):
    code = main(
        [
            "upsample",
            "-i",
            str(LIMB_CROP),
            "-o",
            str(tmp_path / "o.nii.gz"),
            "--method",
            "cubic",
            "--uncertainty",
            str(tmp_path / "u.nii.gz"),
        ]
    )
    assert code == 2
    assert "--uncertainty applies to --method model" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_explicit_checkpoint_for_another_scale_is_refused_before_work():
    method = ModelMethod(bundled_model_path(2), device="cpu")
    assert method.default_scale == 2
    with pytest.raises(ModelError, match="not a power"):
        method.check_scale(3)
