"""The acquisition model in the pipeline: slice thickness in and out, which slices are kept,
and every common clinical target grid (integer and non-integer ratios)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import thinslice
from tests.conftest import CHEST_CROP, DICOM_CROP, LIMB_CROP
from thinslice.cli import main
from thinslice.grid import keeps_acquired, plan_for_spacing, resample_slices


def test_thickness_from_dicom_from_the_flag_and_written_to_every_format(tmp_path: Path) -> None:
    series = thinslice.load(DICOM_CROP)
    assert series.slice_spacing == pytest.approx(2.0) and series.slice_thickness == pytest.approx(3.0)
    limb = thinslice.load(LIMB_CROP)
    assert limb.slice_thickness is None and limb.thickness == pytest.approx(limb.slice_spacing)
    for ext in ("nii.gz", "nrrd", "mha"):
        out = tmp_path / f"thin.{ext}"
        args = ["-q", "upsample", "-i", str(LIMB_CROP), "-o", str(out), "-r", "2", "-m", "linear"]
        assert main([*args, "--slice-thickness", "5", "--output-thickness", "2.5"]) == 0
        assert thinslice.load(out).slice_thickness == pytest.approx(2.5)
    default = thinslice.upsample(LIMB_CROP, scale=2, method="linear")
    assert default.thickness == pytest.approx(default.slice_spacing)  # output thickness = its spacing
    bad = ["-q", "upsample", "-i", str(LIMB_CROP), "-o", str(tmp_path / "x.nii.gz"), "--slice-thickness", "0"]
    assert main(bad) == 2


def test_keep_rule_follows_the_thickness() -> None:
    assert keeps_acquired(1.0, 1.0) and keeps_acquired(1.0, 2.5)  # decimation-like: kept
    assert not keeps_acquired(5.0, 1.0)  # 5 mm averages: re-estimated


def test_thick_slices_reach_past_their_centres_as_a_thin_reconstruction_does(chest_field, one_thread) -> None:
    """5 mm slices cover 2.5 mm past their centres: at 1 mm the output starts 2 mm before the
    first centre and ends 2 mm after the last, where a scanner's 1 mm series of the same
    acquisition has slices too. Those slices are the model's estimates, closer to the real
    1 mm slices than the end slice itself, and the protocol scores them like every other.
    --keep-acquired keeps the grid from the first centre to the last."""
    from thinslice.evaluation.degrade import degrade_array
    from thinslice.evaluation.metrics import psnr, scale_hu

    thin = chest_field.data.astype(np.float32)
    copy = degrade_array(thin, 5, "profile")  # 5 mm boxes every 5 mm, each inside the scan
    thick = chest_field.with_data(copy.data, 5.0, first=copy.first)  # centred on thin slice `first`
    out = thinslice.upsample(thick, target_spacing=1.0, device="cpu")
    truth = copy.truth(thin, 5, margin=2)
    assert out.num_slices == len(truth) == 5 * (thick.num_slices - 1) + 1 + 4
    np.testing.assert_allclose(out.geometry.slice_position(0), chest_field.geometry.slice_position(copy.first - 2))
    last = thick.geometry.slice_position(thick.num_slices - 1) + 2.0 * thick.geometry.slice_direction
    np.testing.assert_allclose(out.geometry.slice_position(out.num_slices - 1), last)
    ends = [0, 1, -2, -1]
    repeated = np.concatenate([np.repeat(copy.data[:1], 2, 0), np.repeat(copy.data[-1:], 2, 0)])
    score = lambda made: psnr(scale_hu(truth[ends]), scale_hu(made))  # noqa: E731
    assert score(out.data[ends].astype(np.float32)) > score(repeated) + 0.5
    report = thinslice.evaluate([chest_field], 5, methods=["linear"])
    assert report["rows"][0]["slices_used"] == len(truth)  # the protocol scores the same slices
    kept = thinslice.upsample(thick, target_spacing=1.0, method="linear", keep_acquired=True)
    assert kept.num_slices == 5 * (thick.num_slices - 1) + 1 and kept.geometry.origin == thick.geometry.origin
    np.testing.assert_array_equal(kept.data[::5], thick.data)


@pytest.mark.parametrize("r", [2, 3, 4, 5, 6])
def test_every_factor_gives_the_right_grid_with_the_bundled_model(r: int, one_thread: None) -> None:
    chest = thinslice.load(CHEST_CROP)  # a crop with air in it, so it reads as CT
    thick = chest.with_data(chest.data[:24:4].copy(), slice_spacing=4.0)
    target = thick.slice_spacing / r
    out = thinslice.upsample(thick, target_spacing=target, device="cpu")
    # past each end slice's centre, as many output slices as fit whole inside its 4 mm
    margin = {2: 0, 3: 1, 4: 1, 5: 2, 6: 2}[r]
    assert out.num_slices == r * 5 + 1 + 2 * margin
    assert out.slice_spacing == pytest.approx(target)
    first = np.asarray(thick.geometry.origin) - margin * target * thick.geometry.slice_direction
    np.testing.assert_allclose(out.geometry.origin, first, atol=1e-9)
    assert out.geometry.direction == thick.geometry.direction
    assert out.geometry.inplane_spacing == thick.geometry.inplane_spacing
    # thickness = spacing (contiguous): every output slice is an estimate, but where the
    # model has nothing to add the acquired slice stays close
    assert np.abs(out.data[margin : out.num_slices - margin : r].astype(float) - thick.data).mean() < 40


def test_non_integer_ratio_resamples_the_fine_grid(tmp_path: Path) -> None:
    vol = thinslice.load(LIMB_CROP)  # 3.27 mm
    out = thinslice.upsample(vol, target_spacing=1.0, method="linear")
    span = (vol.num_slices - 1) * vol.slice_spacing  # 78.48 mm from the first centre to the last
    # and 1 mm slices wholly inside the 3.27 mm end slices: one at -1 mm, one at 79 mm
    assert out.num_slices == 1 + int(np.floor(span / 1.0 + 1e-6)) + 1 + 1
    assert out.slice_spacing == pytest.approx(1.0)
    # linear along z: slice k of the output is the linear blend of the two inputs around
    # k - 1 mm (past the ends: the end slice)
    z = np.clip((np.arange(out.num_slices) - 1.0) / vol.slice_spacing, 0, vol.num_slices - 1)
    lo = np.floor(z).astype(int).clip(0, vol.num_slices - 2)
    t = (z - lo)[:, None, None]
    expected = (1 - t) * vol.data[lo] + t * vol.data[lo + 1]
    assert np.abs(out.data - np.rint(expected)).max() <= 1
    # 2.5 mm -> 1 mm: x5 then every other fine slice, exactly
    plan = plan_for_spacing(9, 2.5, 1.0, lambda r: r in (2, 4, 8))
    assert plan.r == 4 and plan.spacing == 1.0 and len(plan.positions) == 21
    fine = np.arange(33, dtype=np.float32)[:, None, None] * np.ones((1, 2, 2), np.float32)
    np.testing.assert_allclose(resample_slices(fine, plan.positions)[:, 0, 0], np.arange(21) * 1.6, rtol=1e-6)


def test_thicker_output_slices_are_the_synthesized_ones_averaged_over_their_thickness(
    chest_field, one_thread: None
) -> None:
    """--output-thickness above the spacing averages every output slice over it, at its
    position (edges replicated), and that is closer to a real slice that thick than the
    thin synthesized slice declared thicker; the header says the thickness, and kept
    acquired slices are no longer called kept."""
    from thinslice.evaluation.degrade import degrade_array
    from thinslice.evaluation.metrics import psnr, scale_hu
    from thinslice.profile import average_slices

    thin = chest_field.data[:, 16:144, 16:144].astype(np.float32)  # 1 mm slices
    copy = degrade_array(thin, 2, "profile")
    thick = chest_field.with_data(copy.data, 2.0, slice_thickness=2.0)
    made = thinslice.upsample(thick, scale=2, device="cpu")
    wide = thinslice.upsample(thick, scale=2, device="cpu", output_thickness=2.0)
    assert wide.slice_spacing == pytest.approx(1.0) and wide.thickness == pytest.approx(2.0)
    # the taps of a 2-slice box centred on a slice: 1/4, 1/2, 1/4 (rounding to int16 aside)
    padded = np.concatenate([made.data[:1], made.data, made.data[-1:]]).astype(np.float32)
    by_hand = 0.25 * padded[:-2] + 0.5 * padded[1:-1] + 0.25 * padded[2:]
    assert np.abs(wide.data - by_hand).max() <= 1
    # a real 2 mm slice: the 1 mm truth averaged over 2 mm at the same positions
    truth_2mm = scale_hu(average_slices(thin, 2.0)[copy.first : copy.first + made.num_slices])
    score = lambda v: psnr(truth_2mm, scale_hu(v.data.astype(np.float32)))  # noqa: E731
    assert score(wide) > score(made) + 0.5
    # decimation-like input: its thin slices are kept, unless averaged into thicker ones
    sparse = chest_field.with_data(thin[::2].copy(), 2.0, slice_thickness=1.0)
    assert thinslice.upsample(sparse, scale=2, method="linear").meta["acquired_kept"] is True
    averaged = thinslice.upsample(sparse, scale=2, method="linear", output_thickness=3.0)
    assert averaged.meta["acquired_kept"] is False and averaged.thickness == pytest.approx(3.0)
    # thinner than the slices can be (1 mm apart, from 2 mm slices) is refused
    with pytest.raises(thinslice.errors.ConfigError, match="thinner than slices made 1 mm apart"):
        thinslice.upsample(thick, scale=2, method="linear", output_thickness=0.5)
    assert thinslice.upsample(sparse, scale=2, method="linear", output_thickness=1.0).thickness == pytest.approx(1.0)


def test_clinical_pairs_work_with_no_model_flag(one_thread: None) -> None:
    """5 -> 1, 5 -> 1.25, 5 -> 2.5, 3 -> 1, 2.5 -> 1 and 2 -> 1 mm with the bundled models."""
    base = thinslice.load(CHEST_CROP)
    crop = base.data[:5, :24, :24].copy()
    # output slices past each end slice's centre, wholly inside its profile: (T - t) / 2 mm
    pairs = ((5.0, 1.0, 2), (5.0, 1.25, 1), (5.0, 2.5, 0), (3.0, 1.0, 1), (2.5, 1.0, 0), (2.0, 1.0, 0))
    for spacing, target, margin in pairs:
        vol = base.with_data(crop, slice_spacing=spacing)
        out = thinslice.upsample(vol, target_spacing=target, device="cpu")
        assert out.slice_spacing == pytest.approx(target)
        assert out.num_slices == int(np.floor(4 * spacing / target + 1e-6)) + 1 + 2 * margin
        assert out.geometry.slice_position(margin) == pytest.approx(vol.geometry.slice_position(0))


def test_adapt_fine_tunes_a_copy_and_changes_the_output(tmp_path: Path, one_thread: None) -> None:
    from thinslice.methods.learned import bundled_model_path

    chest = thinslice.load(CHEST_CROP)
    thick = chest.with_data(chest.data[:25:4].copy(), slice_spacing=4.0)
    source = tmp_path / "thick.nii.gz"
    thinslice.save(thick, source)
    before_input, before_model = source.read_bytes(), bundled_model_path(2).read_bytes()
    plain = thinslice.upsample(source, scale=2, device="cpu")
    tuned = thinslice.upsample(source, scale=2, device="cpu", adapt=0.05)
    assert tuned.data.shape == plain.data.shape
    assert np.abs(tuned.data.astype(float) - plain.data).mean() > 0.01  # the weights moved
    assert source.read_bytes() == before_input and bundled_model_path(2).read_bytes() == before_model
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thick.nii.gz"]
    with pytest.raises(thinslice.errors.ConfigError, match="--adapt"):
        thinslice.upsample(source, scale=2, method="linear", adapt=0.05)


def test_adapt_trains_at_the_slice_profile_it_estimates(caplog, chest_field, one_thread: None) -> None:
    """Thick slices (a profile model): --adapt estimates the scan's slice profile and trains
    its in-plane pairs at that softness plus the margin, no longer over the trained range."""
    from thinslice.evaluation.degrade import degrade_array
    from thinslice.pipeline.adapt import ADAPT_SOFTNESS_MARGIN, at_scan_profile
    from thinslice.profile import estimate_softness
    from thinslice.training.config import TrainConfig

    chest = chest_field
    spacing = 2 * chest.slice_spacing
    trained = TrainConfig(profile=True, profile_softness=1.0)
    chosen = {}
    for softness in (0.0, 1.5):
        thick = degrade_array(chest.data.astype(np.float32), 2, "profile", softness=softness).data
        vol = chest.with_data(thick, spacing, slice_thickness=spacing)
        config = at_scan_profile(trained, vol, estimate_softness(vol))
        assert config.profile_softness == config.profile_softness_min >= ADAPT_SOFTNESS_MARGIN
        chosen[softness] = config.profile_softness
    assert chosen[1.5] >= chosen[0.0] + 0.6
    short = chest.with_data(thick[:6], spacing, slice_thickness=spacing)
    assert estimate_softness(short) is None
    assert at_scan_profile(trained, short, None) == trained  # too short to tell: the trained range
    with caplog.at_level("INFO", logger="thinslice"):
        out = thinslice.upsample(vol, scale=2, device="cpu", adapt=0.05)
    assert out.num_slices == 2 * (vol.num_slices - 1) + 1
    assert "slice profile of" in caplog.text and "adapting at" in caplog.text
    # a soft profile starts from the bundled model for soft profiles, and the result says so
    assert out.meta["made_by"] == "model profile_soft_x2.pt (bundled, adapted to the scan)"


def test_a_soft_slice_profile_gets_the_model_for_soft_profiles(caplog, chest_field) -> None:
    """Without --model, thick slices whose profile reads soft are made by the bundled model
    for soft profiles, which is closer to the truth there than the plain profile model, and
    the log suggests --adapt; plain boxes get the plain profile model, thin slices the
    default family, and the result says which checkpoint made it."""
    from thinslice.evaluation.degrade import degrade_array
    from thinslice.evaluation.metrics import psnr, scale_hu
    from thinslice.methods.learned import bundled_model_path

    thin = chest_field.data.astype(np.float32)
    spacing = 2 * chest_field.slice_spacing
    made_by, hints = {}, {}
    for softness in (0.0, 1.5):
        copy = degrade_array(thin, 2, "profile", softness=softness)
        thick = chest_field.with_data(copy.data, spacing)
        caplog.clear()
        with caplog.at_level("INFO", logger="thinslice"):
            out = thinslice.upsample(thick, scale=2, device="cpu")
        made_by[softness], hints[softness] = out.meta["made_by"], "--adapt 2" in caplog.text
    truth = scale_hu(copy.truth(thin, 2))
    plain = thinslice.upsample(thick, scale=2, device="cpu", model=bundled_model_path(2, "profile"))
    assert plain.meta["made_by"] == "model profile_x2.pt (--model)"
    assert psnr(truth, scale_hu(out.data.astype(np.float32))) > psnr(truth, scale_hu(plain.data.astype(np.float32))) + 1
    assert made_by == {0.0: "model profile_x2.pt (bundled)", 1.5: "model profile_soft_x2.pt (bundled)"}
    assert hints == {0.0: False, 1.5: True}
    caplog.clear()
    with caplog.at_level("INFO", logger="thinslice"):
        out = thinslice.upsample(chest_field.with_data(copy.data, spacing, slice_thickness=1.0), scale=2, device="cpu")
    assert out.meta["made_by"] == "model default_x2.pt (bundled)" and "slice profile" not in caplog.text


def thick_copy(thin_volume, r: int, thickness: float):
    """``thin_volume``'s 1 mm slices averaged over boxes ``thickness`` mm wide, ``r`` mm apart:
    the thin array, the :class:`ThickCopy` and the thick volume (its thickness stated)."""
    from thinslice.evaluation.degrade import degrade_array

    thin = thin_volume.data.astype(np.float32)
    copy = degrade_array(thin, r, "profile", thickness=thickness)
    return thin, copy, thin_volume.with_data(copy.data, float(r), slice_thickness=thickness)


def test_an_overlapping_reconstruction_gets_the_model_for_soft_profiles(caplog, chest_field, one_thread) -> None:
    """Slices twice as thick as their spacing (5 mm every 2.5 mm, here 4 mm every 2 mm) are
    as soft, to models trained on contiguous slices, as a box softened by 1.2 spacings:
    with no flags the soft-profile model makes them, closer to the truth than the plain
    profile model, also where the scan is too small to estimate its profile from."""
    from thinslice.evaluation.metrics import psnr, scale_hu
    from thinslice.methods.learned import bundled_model_path

    thin, copy, thick = thick_copy(chest_field, 2, 4.0)
    with caplog.at_level("INFO", logger="thinslice"):
        out = thinslice.upsample(thick, scale=2, device="cpu")
    assert out.meta["made_by"] == "model profile_soft_x2.pt (bundled)"
    assert "2 spacings thick, as soft as contiguous slices softened by 1.2" in caplog.text
    plain = thinslice.upsample(thick, scale=2, device="cpu", model=bundled_model_path(2, "profile"))
    truth = scale_hu(copy.truth(thin, 2, margin=1))  # 1 mm slices reach 1 mm into the 4 mm end slices
    score = lambda v: psnr(truth, scale_hu(v.data.astype(np.float32)))  # noqa: E731
    assert score(out) > score(plain) + 1
    small = thick.with_data(copy.data[:, :96, :96].copy())
    caplog.clear()
    with caplog.at_level("INFO", logger="thinslice"):
        assert thinslice.upsample(small, scale=2, device="cpu").meta["made_by"] == "model profile_soft_x2.pt (bundled)"
    # one line says both why no softness was read and what the overlap makes of the box (a sweep
    # read "looks softer than a box (softness about 0.0 ...)" as a contradiction)
    said = [r.getMessage() for r in caplog.records if "slice profile" in r.getMessage()]
    assert said == [
        "the slice profile looks softer than a box once the slices' overlap is counted (the scan is too small to "
        "estimate its softness from: taken "
        "for a box; 2 spacings thick, as soft as contiguous slices softened by 1.2): using the model for soft "
        "profiles; --adapt 2 (two minutes of fine-tuning on this scan) sharpens such scans further"
    ], said


def test_a_reconstruction_overlapping_by_half_a_slice_blends_the_two_models(caplog, chest_field, one_thread) -> None:
    """Slices 1.5 spacings thick lie between what the two thick-slice families were trained
    on: with no flags their outputs are blended by the weight the overlap gives, and the
    result is closer to the truth than the profile model alone."""
    from thinslice.evaluation.metrics import psnr, scale_hu
    from thinslice.methods.learned import bundled_model_path
    from thinslice.profile import soft_weight

    thin, copy, thick = thick_copy(chest_field, 2, 3.0)
    with caplog.at_level("INFO", logger="thinslice"):
        out = thinslice.upsample(thick, scale=2, device="cpu")
    assert out.meta["made_by"] == "model profile_x2.pt 0.48 + profile_soft_x2.pt 0.52 (bundled)"
    assert "blending the profile and soft-profile models, 0.48 / 0.52" in caplog.text
    plain, soft = (
        thinslice.upsample(thick, scale=2, device="cpu", model=bundled_model_path(2, family)).data.astype(np.float32)
        for family in ("profile", "profile_soft")
    )
    weight = soft_weight(1.5, 0.0)
    np.testing.assert_allclose(out.data, (1 - weight) * plain + weight * soft, atol=1e-2)
    truth = scale_hu(copy.truth(thin, 2, margin=1))  # 1 mm slices reach 1 mm into the 3 mm end slices
    assert psnr(truth, scale_hu(out.data)) > psnr(truth, scale_hu(plain)) + 0.2
    # --adapt fine-tunes the family with the largest share and uses it in its place
    tuned = thinslice.upsample(thick, scale=2, device="cpu", adapt=0.05)
    made_by = "model profile_x2.pt 0.48 + profile_soft_x2.pt (adapted) 0.52 (bundled, adapted to the scan)"
    assert tuned.meta["made_by"] == made_by
    assert np.abs(tuned.data - out.data).mean() > 0.01  # the adapted weights made their share


def test_slices_with_gaps_blend_the_thin_and_thick_slice_models(chest_field, one_thread) -> None:
    """Slices 0.6 of their spacing thick made 2 times finer are 1.2 output slices thick:
    between the thin-slice models (1) and the thick-slice ones (2). Both run and blend, by
    the log of the thickness; closer to the truth than the thick-slice model alone, and the
    acquired positions are estimates too (no longer copies)."""
    from thinslice.evaluation.metrics import psnr, scale_hu
    from thinslice.methods.learned import bundled_model_path

    thin, copy, thick = thick_copy(chest_field, 2, 1.2)
    out = thinslice.upsample(thick, scale=2, device="cpu")
    assert out.meta["made_by"] == "model default_x2.pt 0.74 + profile_x2.pt 0.26 (bundled)"
    assert out.meta["acquired_kept"] is False and not np.array_equal(out.data[::2], thick.data)
    plain = thinslice.upsample(thick, scale=2, device="cpu", model=bundled_model_path(2, "profile"))
    truth = scale_hu(copy.truth(thin, 2))
    assert psnr(truth, scale_hu(out.data)) > psnr(truth, scale_hu(plain.data.astype(np.float32))) + 0.5


def test_slices_a_hair_thinner_than_their_spacing_run_one_model(caplog, chest_field, one_thread) -> None:
    """4 mm slices 4.002 mm apart (as scanners store them) are contiguous: the thin-slice
    models' share (0.07 %) is under MIN_SHARE, so only the thick-slice model runs."""
    _, _, thick = thick_copy(chest_field, 2, 2.0)
    thick = thick.with_data(thick.data, slice_thickness=thick.slice_spacing * 0.9995)
    with caplog.at_level("INFO", logger="thinslice"):
        out = thinslice.upsample(thick, scale=2, device="cpu")
    assert out.meta["made_by"] == "model profile_x2.pt (bundled)"
    assert "blending" not in caplog.text


def test_the_last_line_names_the_checkpoint_and_other_factors_are_explained(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o.nii.gz"
    assert main(["upsample", "-i", str(LIMB_CROP), "-o", str(out), "-r", "2"]) == 0
    last = capfd.readouterr().err.strip().splitlines()[-1]
    assert last.endswith("; made by model profile_x2.pt (bundled)"), last
    assert main(["upsample", "-i", str(LIMB_CROP), "-o", str(tmp_path / "p.nii.gz"), "-r", "7"]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "they make x2, x3, x4, x5, x6 and powers of them); give --target-spacing" in err[0]
    assert main(["upsample", "-i", str(LIMB_CROP), "-o", str(tmp_path / "thin")]) == 2
    assert "for a DICOM series in that folder, give --output-format dicom" in capfd.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--adapt", "0"], "--adapt must be a positive number of minutes"),
        (["--adapt", "1", "-m", "linear"], "method linear has none"),
        (["--slice-thickness", "nan"], "--slice-thickness must be a positive number"),
        (["--output-thickness", "-1"], "--output-thickness must be a positive number"),
        (["-r", "2", "--output-thickness", "1"], "is thinner than slices made 1.635 mm apart"),
        (["-r", "2", "--output-thickness", "4", "--keep-acquired"], "give one of them"),
        # thicker than the 25 slices of 3.27 mm cover: a typo, or a damaged SliceThickness
        (["--slice-thickness", "100"], "slices 100 mm thick every 3.27 mm cannot be: its 25 slices cover 81.75 mm"),
        (["-r", "2", "--output-thickness", "500"], "every output slice would average all of it"),
        (["--target-spacing", "0.3"], "needs more than x8"),
        (["--target-spacing", "4"], "not finer than the slice spacing"),
    ],
)
def test_acquisition_options_refused_in_one_line(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert main(["upsample", "-i", str(LIMB_CROP), "-o", str(tmp_path / "o.nii.gz"), *extra]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert list(tmp_path.iterdir()) == []
