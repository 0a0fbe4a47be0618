"""The acquisition model: slice profiles and thick-slice simulation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from thinslice.errors import ConfigError
from thinslice.profile import (
    SOFT_PROFILE,
    average_slices,
    equivalent_softness,
    estimate_softness,
    estimate_softness_of,
    profile_degrade,
    profile_degrade_torch,
    profile_matrix,
    slice_profile_kernel,
    smore_pair,
    soft_weight,
    thin_weight,
)


@pytest.mark.parametrize("thickness", [1.0, 2.0, 2.5, 3.0, 5.0, 3.7])
@pytest.mark.parametrize("softness", [0.0, 1.5])
def test_kernel_sums_to_one_and_is_symmetric(thickness: float, softness: float) -> None:
    taps = slice_profile_kernel(thickness, 1.0, softness)
    assert len(taps) % 2 == 1
    assert taps.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(taps, taps[::-1], atol=1e-12)
    assert (taps >= 0).all()


def test_kernel_exact_partial_taps() -> None:
    np.testing.assert_allclose(slice_profile_kernel(5.0, 1.0), np.full(5, 0.2))
    np.testing.assert_allclose(slice_profile_kernel(2.0, 1.0), [0.25, 0.5, 0.25])
    # 3 mm box on a 1.25 mm grid: 2.4 samples wide -> 0.7 of each end cell
    np.testing.assert_allclose(slice_profile_kernel(3.0, 1.25), np.array([0.7, 1.0, 0.7]) / 2.4)
    assert slice_profile_kernel(1.0, 1.0).tolist() == [1.0]


def test_softness_widens_the_profile() -> None:
    hard, soft = slice_profile_kernel(3.0, 1.0), slice_profile_kernel(3.0, 1.0, softness=2.0)
    var = lambda t: float((t * (np.arange(len(t)) - len(t) // 2) ** 2).sum())  # noqa: E731
    assert var(soft) > var(hard)


def test_ramp_keeps_its_value_at_the_centre() -> None:
    thin = np.arange(40, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    thick, pos = profile_degrade(thin, 1.0, 5.0, 5.0, axis=0, offset=5.0)
    inside = (pos >= 3) & (pos <= 36)  # box fully inside the data
    np.testing.assert_allclose(thick[inside, 0], pos[inside], atol=1e-4)
    # fractional positions and a non-integer thickness keep a ramp too
    thick, pos = profile_degrade(thin, 1.0, 2.7, 3.3, axis=0, offset=4.6)
    inside = (pos >= 3) & (pos <= 36)
    np.testing.assert_allclose(thick[inside, 1], pos[inside], atol=1e-4)


def test_step_gives_the_exact_partial_average() -> None:
    thin = np.zeros(30, np.float32)
    thin[15:] = 1.0  # cells 15.. are 1: the edge sits at 14.5
    thick, pos = profile_degrade(thin, 1.0, 1.0, 4.0, offset=0.0)
    # box [p-2, p+2] over the edge at 14.5: fraction above it
    expected = np.clip((pos + 2.0 - 14.5) / 4.0, 0.0, 1.0)
    np.testing.assert_allclose(thick, expected, atol=1e-6)


def test_overlap_and_gaps() -> None:
    thin = np.zeros(41, np.float32)
    thin[20] = 1.0
    # thickness 3 > spacing 2 (overlap): the impulse is seen by two neighbouring slices
    thick, pos = profile_degrade(thin, 1.0, 2.0, 3.0, offset=1.0)
    seen = pos[thick > 0]
    assert set(seen.tolist()) == {19.0, 21.0}
    np.testing.assert_allclose(thick[thick > 0], [1 / 3, 1 / 3], atol=1e-6)
    # thickness 1 < spacing 4 (gaps): an impulse between slices is not seen at all
    thick, pos = profile_degrade(thin, 1.0, 4.0, 1.0, offset=2.0)
    assert 20 not in pos.tolist()
    assert np.all(thick == 0)


def test_averaging_slices_is_the_profile_at_their_own_spacing() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(17, 3, 2)).astype(np.float32)
    for width in (2.0, 2.5, 3.0):
        expected, _ = profile_degrade(x, 1.0, 1.0, width, axis=0)
        np.testing.assert_allclose(average_slices(x, width), expected, atol=1e-5)
    assert average_slices(x.astype(np.int16), 2.0).dtype == np.float32


def test_overlap_reads_as_softness_to_a_model_of_contiguous_slices() -> None:
    """A box two spacings wide has the second moment of a one-spacing box widened by a
    Gaussian of FWHM sqrt(3/12) * 2.355 spacings; contiguous slices keep their softness."""
    assert equivalent_softness(1.0, 0.7) == pytest.approx(0.7)
    assert equivalent_softness(2.0) == pytest.approx(2.3548 * np.sqrt(3 / 12), rel=1e-4)
    assert equivalent_softness(0.5) == 0.0  # gaps: narrower than a contiguous box
    assert soft_weight(1.0, 0.3) == 0.0 and soft_weight(1.0, SOFT_PROFILE) == 1.0  # contiguous: the estimate
    assert soft_weight(1.2, 0.0) == 0.0  # a little overlap: the profile models alone
    assert soft_weight(1.5, 0.0) == pytest.approx((equivalent_softness(1.5) - 0.5) / 0.5)  # blended, about half
    assert 0.9 < soft_weight(1.75, None) < 1.0 and soft_weight(2.0, None) == 1.0  # overlap, even unestimated
    assert soft_weight(1.5, 0.3) > soft_weight(1.5, 0.0)  # overlap and a softened box together


def test_slices_with_gaps_share_between_thin_and_thick_slice_models() -> None:
    """The thin-slice models' share falls with the log of the thickness, from 1 at one
    output spacing (decimation-like) to 0 at ``r`` of them (contiguous)."""
    assert thin_weight(0.5, 2) == 1.0 and thin_weight(0.2, 5) == 1.0
    assert thin_weight(1.0, 2) == 0.0 and thin_weight(1.5, 3) == 0.0
    assert thin_weight(0.6, 2) == pytest.approx(np.log(2 / 1.2) / np.log(2))
    shares = [thin_weight(t, 5) for t in (0.3, 0.5, 0.7, 0.9)]
    assert shares == sorted(shares, reverse=True) and 0 < shares[-1] < shares[0] < 1


def test_non_integer_ratio_positions_and_shape() -> None:
    thin = np.random.default_rng(0).normal(size=(50, 4, 5)).astype(np.float32)
    thick, pos = profile_degrade(thin, 0.8, 3.0, 3.0, axis=0)
    np.testing.assert_allclose(pos, np.arange(len(pos)) * 3.75)
    assert pos[-1] <= 49 < pos[-1] + 3.75
    assert thick.shape == (len(pos), 4, 5)
    # other axes: same operator
    thick2, _ = profile_degrade(np.moveaxis(thin, 0, 2), 0.8, 3.0, 3.0, axis=2)
    np.testing.assert_allclose(np.moveaxis(thick2, 2, 0), thick, atol=1e-5)


def test_matrix_rows_sum_to_one() -> None:
    m, _ = profile_matrix(37, 1.0, 2.6, 4.1, offset=0.3, softness=1.0)
    np.testing.assert_allclose(m.sum(axis=1), 1.0)


def test_torch_matches_numpy() -> None:
    img = np.random.default_rng(1).random((3, 6, 40)).astype(np.float32)
    ref, _ = profile_degrade(img, 1.0, 3.5, 3.5, axis=2, offset=0.5)
    out = profile_degrade_torch(torch.from_numpy(img), 1.0, 3.5, 3.5, offset=0.5)
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-5)


def test_smore_pair_shapes_and_alignment() -> None:
    img = torch.arange(64, dtype=torch.float32).repeat(2, 8, 1)  # ramp along x
    pair = smore_pair(img, 1.25, 5, offset=0.0)
    assert pair is not None
    low, target = pair
    assert target.shape[-2] == 5 * (low.shape[-2] - 1) + 1
    assert low.shape[:2] == (2, 1) and low.shape[-1] == 8
    # the thick rows sit at the target rows 0, r, 2r (a ramp away from the edges agrees)
    np.testing.assert_allclose(low[0, 0, 1:-1, 0], target[0, 0, 5:-5:5, 0], atol=1e-4)
    assert smore_pair(img[..., :5], 1.25, 5) is None


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError):
        slice_profile_kernel(0.0, 1.0)
    with pytest.raises(ConfigError):
        profile_degrade(np.zeros(3), 1.0, 1.0, 1.0, offset=5.0)


def test_smore_pair_thick_profile_follows_the_slice_thickness() -> None:
    # a parabola: the box average of width w around c is c^2 + w^2 / 12
    x = torch.arange(96, dtype=torch.float32)
    img = (x**2).repeat(1, 4, 1)
    step, r = 1.25, 4
    contiguous = smore_pair(img, step, r)
    overlapping = smore_pair(img, step, r, thickness=2.0)  # slices twice as thick as their spacing
    assert contiguous is not None and overlapping is not None
    (thin_in, target), (thick_in, target2) = contiguous, overlapping
    torch.testing.assert_close(target, target2)  # the thin target does not change
    w = r * step
    gain = (thick_in - thin_in)[0, 0, 2:-2, 0]  # away from the edges
    torch.testing.assert_close(gain, torch.full_like(gain, ((2 * w) ** 2 - w**2) / 12), atol=0.3, rtol=0)


def test_smore_pair_softens_only_the_thick_profile_when_asked() -> None:
    # a parabola: a kernel of variance v raises its average by v, so a Gaussian of FWHM s
    # on top of the box adds (s / 2.3548)^2 to the thick samples and nothing to the target
    x = torch.arange(96, dtype=torch.float32)
    img = (x**2).repeat(1, 4, 1)
    step, r, fwhm = 1.25, 4, 3.0
    box, soft = smore_pair(img, step, r), smore_pair(img, step, r, thick_softness=fwhm)
    assert box is not None and soft is not None
    torch.testing.assert_close(box[1], soft[1])
    gain = (soft[0] - box[0])[0, 0, 3:-3, 0]  # away from the edges
    torch.testing.assert_close(gain, torch.full_like(gain, (fwhm / 2.3548) ** 2), atol=0.3, rtol=0)


def test_softness_estimate_follows_the_profile_of_a_real_scan(chest_field, chest_ct) -> None:
    """Thick copies of real thin CT made with softer and softer profiles: the estimate,
    from the thick scan alone, rises with the softness, reads boxes below SOFT_PROFILE and
    the softest at or above it."""
    from thinslice.evaluation.degrade import degrade_array

    thin = chest_field.data.astype(np.float32)
    spacing = 2 * chest_field.slice_spacing
    estimates = []
    for softness in (0.0, 0.5, 1.0, 1.5):
        thick = chest_field.with_data(degrade_array(thin, 2, "profile", softness=softness).data, spacing)
        estimates.append(estimate_softness(thick))
        array = estimate_softness_of(thick.data, thick.voxel_spacing, thick.thickness)
        assert array == estimates[-1]  # the array form reads the same
    assert estimates == sorted(estimates) and estimates[0] < SOFT_PROFILE <= estimates[2] < estimates[3], estimates
    assert estimate_softness(thick.with_data(thick.data[:6])) is None  # too short to tell
    assert estimate_softness(thick.with_data(np.full_like(thick.data, -1000))) is None  # air only
    # a 37 mm wide crop holds too little anatomy to stand for the slice axis
    small = chest_ct.with_data(degrade_array(chest_ct.data.astype(np.float32), 2, "profile").data, spacing)
    assert estimate_softness(small) is None


@pytest.mark.parametrize(
    "call",
    [
        lambda: equivalent_softness(0.0, 0.0),
        lambda: equivalent_softness(1.0, -0.5),
        lambda: soft_weight(1.0, float("nan")),
        lambda: soft_weight(-3.0, 0.0),
    ],
    ids=["thickness 0", "softness -0.5", "softness nan", "thickness -3"],
)
def test_the_profile_rules_refuse_thicknesses_and_softnesses_they_cannot_mean(call) -> None:
    """These used to answer (0.0, 0.5, a blend weight) for arguments no scan can have."""
    with pytest.raises(ConfigError):
        call()
