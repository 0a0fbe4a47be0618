"""Thick-slice simulation: decimation and slab averaging."""

from __future__ import annotations

import numpy as np
import pytest

import thinslice
from tests.conftest import LIMB_CROP
from thinslice.errors import ConfigError
from thinslice.evaluation import degrade
from thinslice.evaluation.degrade import decimate, slab, slab_array, slab_profile
from thinslice.grid import check_scale, usable_slices


def test_decimate_keeps_every_rth_slice_and_geometry(chest_ct):
    thick = decimate(chest_ct, 4)
    assert thick.num_slices == 9
    np.testing.assert_array_equal(thick.data, chest_ct.data[::4])
    assert thick.slice_spacing == pytest.approx(4 * chest_ct.slice_spacing)
    assert thick.geometry.origin == chest_ct.geometry.origin
    assert thick.geometry.inplane_spacing == chest_ct.geometry.inplane_spacing


@pytest.mark.parametrize("r", [2, 3, 4])
def test_slab_profile_spans_r_slices(r):
    profile = slab_profile(r)
    assert profile.sum() == pytest.approx(1.0)
    assert len(profile) == (r if r % 2 else r + 1)
    # the profile's width (sum of weights / peak weight) is exactly r slice spacings
    assert profile.sum() / profile.max() == pytest.approx(r)


def test_slab_averages_by_hand(chest_ct):
    data = chest_ct.data.astype(np.float32)
    thick = slab(chest_ct, 2)
    # slice 2 of the thick scan = 0.25*s3 + 0.5*s4 + 0.25*s5 of the thin one
    expected = 0.25 * data[3] + 0.5 * data[4] + 0.25 * data[5]
    np.testing.assert_allclose(thick.data[2], expected, atol=1e-3)
    # first slice: the profile is cut at the edge by repeating slice 0
    np.testing.assert_allclose(thick.data[0], 0.75 * data[0] + 0.25 * data[1], atol=1e-3)
    assert thick.slice_spacing == pytest.approx(2.0)
    r3 = slab_array(data, 3)
    np.testing.assert_allclose(r3[1], (data[2] + data[3] + data[4]) / 3, atol=1e-3)


def test_slab_blurs_but_decimate_does_not(chest_ct):
    data = chest_ct.data.astype(np.float32)
    assert np.abs(slab_array(data, 4) - data[::4]).mean() > 5.0


def test_usable_slices_and_scale_validation():
    assert usable_slices(48, 2) == 47
    assert usable_slices(41, 4) == 41
    for bad in (1, 0, 9, 2.5, True):
        with pytest.raises(ConfigError, match="scale must be an integer"):
            check_scale(bad)


def test_profile_degradation_says_its_thickness_and_averages(chest_ct) -> None:
    from thinslice.evaluation.degrade import degrade_array, profile

    truth = chest_ct.data[:21].astype(np.float32)
    copy = degrade_array(truth, 5, "profile")
    # boxes stay inside the data: the first thick slice is centred on thin slice 2 (covers 0..4)
    assert copy.thickness == 5.0 and copy.first == 2 and copy.data.shape == (4, *truth.shape[1:])
    np.testing.assert_allclose(copy.data[1], truth[5:10].mean(axis=0), atol=1e-3)  # box of 5 slices on slice 7
    assert copy.truth(truth, 5, margin=0).shape[0] == 16  # thin slices 2..17, first centre to last
    # and by default the two past each end centre that upsample makes inside the 5-slice boxes
    assert copy.margin(len(truth), 5) == 2 and copy.truth(truth, 5).shape[0] == 20  # thin slices 0..19
    assert copy.margin(18, 5) == 0  # thin slice 17 is the last: no room past it
    decimated = degrade_array(truth, 5, "decimate")
    assert decimated.thickness == 1.0 and decimated.first == 0  # the kept slices keep their own thickness
    vol = profile(chest_ct, 4, thickness_mm=6.0)
    assert vol.slice_spacing == pytest.approx(4 * chest_ct.slice_spacing) and vol.thickness == pytest.approx(6.0)
    with pytest.raises(ConfigError, match="applies to --degrade profile"):
        degrade_array(truth, 2, "slab", 3.0)


def test_softened_profile_keeps_its_tails_inside_and_blurs_more_than_the_box(chest_ct) -> None:
    """A box softened by a Gaussian: each thick slice is the thin signal weighted by the
    softened kernel, its first slice sits where the kernel's tails fit, and it is blurrier
    (further from the thin slice at its centre) than the plain box."""
    from thinslice.evaluation.degrade import degrade_array
    from thinslice.profile import slice_profile_kernel

    truth = chest_ct.data[:31].astype(np.float32)
    box = degrade_array(truth, 3, "profile")
    soft = degrade_array(truth, 3, "profile", softness=1.0)  # FWHM = the thickness, 3 slices
    taps = slice_profile_kernel(3.0, 1.0, 3.0)
    radius = len(taps) // 2
    assert soft.first == radius > box.first == 1 and soft.thickness == 3.0
    centre = soft.first + 3 * 2  # thick slice 2
    expected = np.tensordot(taps, truth[centre - radius : centre + radius + 1], axes=1)
    np.testing.assert_allclose(soft.data[2], expected, atol=1e-2)
    assert soft.truth(truth, 3).shape[0] == 3 * (len(soft.data) - 1) + 1 + 2  # and one past each end centre
    thin_at = lambda c: truth[c.first :: 3][: len(c.data)]  # noqa: E731
    assert np.abs(soft.data - thin_at(soft)).mean() > np.abs(box.data - thin_at(box)).mean()
    with pytest.raises(ConfigError, match="--softness applies to --degrade profile"):
        degrade_array(truth, 2, "decimate", softness=0.5)
    with pytest.raises(ConfigError, match="--softness must be a number >= 0"):
        degrade_array(truth, 2, "profile", softness=-1.0)


@pytest.mark.parametrize("softness", [float("nan"), float("inf"), -0.5])
def test_profile_refuses_a_softness_that_is_not_a_number_at_least_0(softness) -> None:
    """NaN gave a ValueError and inf an OverflowError from deep inside; -0.5 a message
    about converted values."""
    volume = thinslice.load(LIMB_CROP)
    with pytest.raises(ConfigError, match=f"--softness must be a number >= 0 .*got {softness}"):
        degrade.profile(volume, 2, softness=softness)


def test_too_few_slices_for_a_softened_profile_names_the_softness() -> None:
    """The Gaussian's tails lengthen the profile: the message said only the box's width."""
    too_few = r"24 slices are too few for profiles 37 slices long \(a 2-slice box softened by 5 of it\); give a scan"
    with pytest.raises(ConfigError, match=too_few + " with more slices or less --softness"):
        degrade.degrade_array(np.zeros((24, 4, 4), np.float32), 2, "profile", softness=5.0)
