"""The main job end to end: geometry, acquired slices, scale and spacing options."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

import thinslice
from tests.conftest import LIMB_CROP, shared
from thinslice.errors import ConfigError
from thinslice.grid import Plan, plan_for_spacing


def _assert_geometry_kept(src, out, r, margin=0):
    """``out`` is ``src`` at ``r`` times the slices, reaching ``margin`` output slices past
    each end slice's centre, with the acquired slices where they were."""
    first = np.asarray(src.geometry.origin) - margin * src.slice_spacing / r * src.geometry.slice_direction
    np.testing.assert_allclose(out.geometry.origin, first, atol=1e-6)
    assert out.geometry.direction == src.geometry.direction
    assert out.geometry.inplane_spacing == src.geometry.inplane_spacing
    assert out.slice_spacing == pytest.approx(src.slice_spacing / r)
    assert out.num_slices == r * (src.num_slices - 1) + 1 + 2 * margin
    np.testing.assert_array_equal(out.data[margin : out.num_slices - margin : r], src.data)
    for k in (0, 1, out.num_slices - 1):  # slice k sits at first + k * spacing / r
        expected = first + k * src.slice_spacing / r * src.geometry.slice_direction
        np.testing.assert_allclose(out.geometry.slice_position(k), expected, atol=1e-6)


@pytest.mark.parametrize("method", ["linear", "cubic", "lanczos"])
@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_file_round_trip_keeps_geometry_and_acquired_slices(tmp_path, method, suffix):
    src = thinslice.load(LIMB_CROP)
    out_path = thinslice.save(thinslice.upsample(LIMB_CROP, scale=3, method=method), tmp_path / f"thin{suffix}")
    out = thinslice.load(out_path)
    assert out.data.dtype == np.int16
    # 3.27 mm slices (contiguous) -> 1.09 mm: one more slice past each end slice's centre,
    # inside its profile; an interpolator goes through the acquired slices
    _assert_geometry_kept(src, out, 3, margin=1)
    header = sitk.ReadImage(str(out_path))
    assert header.GetSpacing()[2] == pytest.approx(3.27 / 3, abs=1e-5)


def test_oblique_direction_and_thick_first_axis(tmp_path):
    """Geometry with a rotated direction and the thick axis stored first survives."""
    rng = np.random.default_rng(1)
    array = rng.integers(-1000, 1000, size=(6, 7, 5), dtype=np.int16)  # (k, j, i): i is thick
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((5.0, 0.9, 0.9))
    c, s = np.cos(0.3), np.sin(0.3)
    image.SetDirection((c, -s, 0, s, c, 0, 0, 0, 1))
    image.SetOrigin((12.5, -40.0, 7.25))
    path = tmp_path / "oblique.nii.gz"
    sitk.WriteImage(image, str(path))
    src = thinslice.load(path)
    assert src.geometry.slice_axis == 0
    out = thinslice.upsample(src, scale=2, keep_acquired=True)  # 5 mm slices: else re-estimated
    _assert_geometry_kept(src, out, 2)
    written = sitk.ReadImage(str(thinslice.save(out, tmp_path / "out.nii.gz")))
    assert written.GetSize() == (9, 7, 6)
    np.testing.assert_allclose(written.GetSpacing(), (2.5, 0.9, 0.9), atol=1e-6)
    np.testing.assert_allclose(written.GetDirection(), image.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(written.GetOrigin(), image.GetOrigin(), atol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written)[:, :, ::2], array)


def test_simpleitk_image_in_simpleitk_image_out():
    image = sitk.ReadImage(str(LIMB_CROP))
    out = thinslice.upsample(image, scale=2)
    assert isinstance(out, sitk.Image)
    assert out.GetSize() == (64, 64, 49)
    assert out.GetOrigin() == pytest.approx(image.GetOrigin())


def test_target_spacing_picks_the_integer_factor():
    out = thinslice.upsample(LIMB_CROP, target_spacing=3.27 / 4)
    assert out.num_slices == 4 * 24 + 1 + 2  # and one past each end slice's centre (1.5 fit in)
    assert plan_for_spacing(25, 5.0, 1.25, lambda r: True) == Plan(4, 1.25)
    with pytest.raises(ConfigError, match="not finer than the slice spacing"):
        plan_for_spacing(25, 5.0, 6.0, lambda r: True)
    with pytest.raises(ConfigError, match="needs more than x8"):
        plan_for_spacing(25, 5.0, 0.5, lambda r: True)
    with pytest.raises(ConfigError, match="either --scale or --target-spacing"):
        thinslice.upsample(LIMB_CROP, scale=2, target_spacing=1.0)


def test_float_input_keeps_float_values(tmp_path):
    array = (np.random.default_rng(2).normal(0, 300, size=(5, 8, 8))).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.7, 0.7, 2.0))
    out = thinslice.upsample(image, scale=2, keep_acquired=True)
    result = sitk.GetArrayFromImage(out)
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result[::2], array)


def test_full_abdomen_scan_x2():
    src = thinslice.load(shared("abd5mm_crlm1004.nii.gz"))
    out = thinslice.upsample(src, scale=2, method="linear")
    _assert_geometry_kept(src, out, 2)


def test_a_method_of_ones_own_upsamples_as_its_name_does() -> None:
    """upsample takes a Method instance, as evaluate does (it failed inside difflib)."""
    from thinslice.methods.classical import Linear

    scan = thinslice.load(LIMB_CROP)
    np.testing.assert_array_equal(
        thinslice.upsample(scan, 2, method=Linear()).data, thinslice.upsample(scan, 2, method="linear").data
    )
    with pytest.raises(ConfigError, match="method takes a name or a thinslice.methods.Method instance, got None"):
        thinslice.upsample(scan, 2, method=None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="apply to the model by name, not linear"):
        thinslice.upsample(scan, 2, method=Linear(), uncertainty=True)
