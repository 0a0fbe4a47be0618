"""Scoring on a real thick/thin pair (``thinslice evaluate --reference``), on real CT.

The pairs here are made from the bundled sample's real 1 mm slices: the thick series is
their average over a box, placed in patient coordinates where a scanner would put it, so
the answer is known and the code path is the one a real pair takes.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

import thinslice
from thinslice.cli import main
from thinslice.errors import InputError
from thinslice.evaluation import figures
from thinslice.evaluation.metrics import psnr, scale_hu
from thinslice.evaluation.pair import evaluate_pair, on_reference
from thinslice.evaluation.protocol import evaluate, format_table
from thinslice.methods import get_method
from thinslice.profile import average_slices, profile_degrade
from thinslice.volume import Volume


def thick_series(thin: Volume, r: int, first: float) -> Volume:
    """Slices ``r`` thin slices thick and apart, the first centred on thin slice ``first``."""
    data, _ = profile_degrade(thin.data.astype(np.float32), 1.0, float(r), float(r), axis=0, offset=first)
    count = int((thin.num_slices - 0.5 - r / 2 - first) // r) + 1  # every box inside the thin scan
    spacing = r * thin.slice_spacing
    geometry = replace(thin.geometry.with_slice_spacing(spacing), origin=tuple(thin.geometry.slice_position(first)))
    return Volume(data[:count], geometry, "thick", {}, spacing)


def test_a_pair_scores_like_the_protocol_on_the_same_slices(chest_field, one_thread) -> None:
    """A thick series placed where the profile protocol puts it gives the protocol's numbers,
    and the model beats interpolation on it."""
    r = 2
    first = 1  # the protocol's first box, its radius
    thick = thick_series(chest_field, r, first)
    report = evaluate_pair(thick, chest_field, methods=["linear", "model"], device="cpu")
    protocol = evaluate([chest_field], r, degrade="profile", methods=["linear", "model"], device="cpu")
    for mine, theirs in zip(report["rows"], protocol["rows"], strict=True):
        assert mine["slices_used"] == theirs["slices_used"] == 61
        assert mine["psnr_paper"] == pytest.approx(theirs["psnr_paper"], abs=1e-6)
        assert mine["psnr_synth"] == pytest.approx(theirs["psnr_synth"], abs=1e-6)
    linear, model = report["rows"]
    assert model["psnr_paper"] > linear["psnr_paper"] + 2
    assert model["made_by"] == "model profile_x2.pt (bundled)"
    table = format_table(report)
    assert table.startswith("real pair: 2 mm slices 2 mm thick, against sample_reference (1 mm apart, 1 mm thick)")
    assert "61 of the reference's 63 slices lie within thick's stack" in table


def test_a_pair_scores_the_slices_past_the_ends_like_the_protocol(chest_field) -> None:
    """5 mm slices: the reference slices up to 2 mm past the end centres, inside the end
    slices, are scored, each method given the end slices repeated there, as the protocol
    and upsample do: the same rows."""
    thick = thick_series(chest_field, 5, 2)  # the protocol's first 5-slice box is centred on slice 2
    report = evaluate_pair(thick, chest_field, methods=["linear", "lanczos"])
    protocol = evaluate([chest_field], 5, degrade="profile", methods=["linear", "lanczos"])
    for mine, theirs in zip(report["rows"], protocol["rows"], strict=True):
        assert mine["slices_used"] == theirs["slices_used"] == 5 * (thick.num_slices - 1) + 1 + 4
        assert mine["psnr_paper"] == pytest.approx(theirs["psnr_paper"], abs=1e-6)
        assert mine["psnr_synth"] == pytest.approx(theirs["psnr_synth"], abs=1e-6)


def test_reference_slices_between_the_grid_and_stacked_the_other_way(chest_field) -> None:
    """Thick slices centred half a thin slice off the reference's: each method is scored
    at the reference's own positions (here linear interpolation, checked by hand); the
    same reference stored feet-first scores the same."""
    thick = thick_series(chest_field, 2, 1.5)
    report = evaluate_pair(thick, chest_field, methods=["linear"])
    row = report["rows"][0]
    # thin slice 1 lies 0.5 mm before the first centre (1.5), wholly inside that 2 mm slice:
    # scored too, as upsample makes it (the end slice repeated past its centre)
    inside = np.arange(1, 1 + row["slices_used"])
    last = 1.5 + 2 * (thick.num_slices - 1)
    assert inside[-1] <= last + 0.5 < inside[-1] + 1
    t = np.clip((inside - 1.5) / 2, 0, thick.num_slices - 1)
    lo = np.minimum(np.floor(t).astype(int), thick.num_slices - 2)
    w = (t - lo)[:, None, None]
    by_hand = (1 - w) * thick.data[lo] + w * thick.data[lo + 1]
    truth = chest_field.data[inside].astype(np.float32)
    assert row["psnr_paper"] == pytest.approx(psnr(scale_hu(truth), scale_hu(by_hand)), abs=1e-4)
    direction = np.asarray(chest_field.geometry.direction, float).reshape(3, 3)
    direction[:, chest_field.geometry.slice_axis] *= -1
    flipped_geometry = replace(
        chest_field.geometry,
        origin=tuple(chest_field.geometry.slice_position(chest_field.num_slices - 1)),
        direction=tuple(direction.ravel()),
    )
    flipped = Volume(chest_field.data[::-1].copy(), flipped_geometry, "feet_first")
    again = evaluate_pair(thick, flipped, methods=["linear"])["rows"][0]
    assert again["slices_used"] == row["slices_used"]
    assert again["psnr_paper"] == pytest.approx(row["psnr_paper"], abs=1e-6)


def test_a_method_is_scored_at_its_own_slices_on_reference_positions_between(chest_field, one_thread) -> None:
    """2 mm slices against 1 mm ones centred half-way (slab edges aligned, as a scanner
    makes them): each method runs at the multiple of the factor whose slices fall on the
    reference's, x4 here, instead of having its x2 slices resampled linearly onto them,
    which scored cubic and the model partly as linear interpolation (0.7 dB less for cubic).
    No reference slice is at an acquired position: every one counts as synthesized."""
    thick = thick_series(chest_field, 2, 1.5)
    report = evaluate_pair(thick, chest_field, methods=["linear", "cubic", "model"], device="cpu")
    inside = np.arange(1, 1 + report["rows"][0]["slices_used"])
    truth = scale_hu(chest_field.data[inside].astype(np.float32))
    for row in report["rows"]:
        assert row["factor"] == 4 and row["psnr_synth"] == row["psnr_paper"]
        method = row["method"]
        fine = thinslice.upsample(thick, 4, method=method, device="cpu" if method == "model" else "auto")
        # output slice k of the x4 upsample lies at thin slice 1 + k / 2 (one before the first centre)
        at_reference = fine.data[2 * (inside - 1)].astype(np.float32)
        assert row["psnr_paper"] == pytest.approx(psnr(truth, scale_hu(at_reference)), abs=1e-3), method
    linear, cubic, model = (row["psnr_paper"] for row in report["rows"])
    assert model > cubic > linear + 1
    assert on_reference(get_method("cubic"), 3, np.array([0.0, 1 / 3, 0.5])) == 6


def test_a_reference_on_the_upsample_grid_scores_what_upsample_writes(chest_field, one_thread) -> None:
    """2.5 mm slices against the 1 mm ones, which lie on the grid `upsample --target-spacing
    1` writes: each method is scored as upsample makes that grid. evaluate ran the model at
    x5 (the multiple landing on the reference) where upsample runs x3 and resamples, and on
    overlapping slices it reported the model 1.9 dB below the file upsample writes. An
    interpolation makes such a ratio at the landing multiple in upsample too (its slices
    are then its interpolant at each output position, not a blend of two)."""
    thick = thick_series(chest_field, 2.5, 2)  # type: ignore[arg-type]
    report = evaluate_pair(thick, chest_field, methods=["cubic", "model"], device="cpu")
    first = 2  # thin slice of the first thick centre; the output reaches no further back here
    for row in report["rows"]:
        written = thinslice.upsample(thick, target_spacing=1.0, method=row["method"], device="cpu")
        assert row["factor"] == written.meta["factor"] == (5 if row["method"] == "cubic" else 3)
        start = int(round((written.geometry.slice_position(0) - chest_field.geometry.slice_position(0))[2]))
        inside = np.arange(first, first + row["slices_used"])
        truth = scale_hu(chest_field.data[inside].astype(np.float32))
        made = scale_hu(written.data[inside - start].astype(np.float32))
        assert row["psnr_paper"] == pytest.approx(psnr(truth, made), abs=1e-3), row["method"]
    cubic_x5 = thinslice.upsample(thick, 5, method="cubic")
    cubic_1mm = thinslice.upsample(thick, target_spacing=1.0, method="cubic")
    z5, z1 = (np.array([v.geometry.slice_position(i)[2] for i in range(v.num_slices)]) for v in (cubic_x5, cubic_1mm))
    same = [int(np.argmin(abs(z5 - z))) for z in z1]
    assert np.allclose(z5[same], z1, atol=1e-4)
    np.testing.assert_array_equal(cubic_1mm.data, cubic_x5.data[same])  # its x5 slices, picked


def test_thicker_reference_slices_are_matched_by_averaging(chest_field, one_thread) -> None:
    """A reference of 2 mm slices 1 mm apart (its real 1 mm slices averaged over 2 mm) is
    compared with output slices averaged over 2 mm, which the same slices scored as 1 mm
    thick would not be: the header's thickness decides the output's profile."""
    thick = thick_series(chest_field, 2, 1)
    wide = average_slices(chest_field.data, 2.0)
    as_2mm = chest_field.with_data(wide, slice_thickness=2.0)
    as_1mm = chest_field.with_data(wide, slice_thickness=1.0)
    averaged = evaluate_pair(thick, as_2mm, methods=["model"], device="cpu")
    assert averaged["reference_thickness"] == 2.0
    plain = evaluate_pair(thick, as_1mm, methods=["model"], device="cpu")
    assert averaged["rows"][0]["psnr_paper"] > plain["rows"][0]["psnr_paper"] + 1


def field(volume: Volume, rows: slice, cols: slice, flip_cols: bool = False) -> Volume:
    """``volume`` reconstructed over part of its field of view, as a targeted thin series is
    (its columns stored the other way round with ``flip_cols``)."""
    data = volume.data[:, rows, cols]
    g = volume.geometry
    direction = np.asarray(g.direction, float).reshape(3, 3)
    origin = np.asarray(g.origin, float) + direction[:, 1] * g.spacing[1] * rows.start
    origin = origin + direction[:, 0] * g.spacing[0] * (cols.stop - 1 if flip_cols else cols.start)
    if flip_cols:
        data, direction[:, 0] = data[:, :, ::-1], -direction[:, 0]
    geometry = replace(g, origin=tuple(origin), direction=tuple(direction.ravel()))
    return Volume(np.ascontiguousarray(data), geometry, "field", {}, volume.slice_thickness)


def test_a_reference_over_another_field_of_view_is_scored_where_both_see(chest_field, one_thread) -> None:
    """A thin series reconstructed over part of the field (columns stored either way round)
    is scored over its own pixels, each method's slices resampled onto them: linear
    interpolation, which treats every pixel alike, scores exactly as on a thick series cut
    to the same field, and the model still leads it."""
    assert chest_field.geometry.slice_axis == 2  # data axes 1, 2 are ITK y, x
    thick = thick_series(chest_field, 2, 1)
    rows, cols = slice(20, 120), slice(30, 150)
    part = field(chest_field, rows, cols)
    report = evaluate_pair(thick, part, methods=["linear", "model"], device="cpu")
    assert report["reference_pixels"] == [100, 120]
    same_grid = evaluate_pair(field(thick, rows, cols), part, methods=["linear"])
    assert same_grid["reference_pixels"] is None
    linear, model = report["rows"]
    assert linear["psnr_paper"] == pytest.approx(same_grid["rows"][0]["psnr_paper"], abs=1e-3)
    assert model["psnr_paper"] > linear["psnr_paper"] + 2
    mirrored = evaluate_pair(thick, field(chest_field, rows, cols, flip_cols=True), methods=["linear"])
    assert mirrored["rows"][0]["psnr_paper"] == pytest.approx(linear["psnr_paper"], abs=1e-3)
    assert "scored over the 100 x 120 reference pixels both fields cover" in format_table(report)


def test_a_reference_with_finer_pixels_is_matched_pixel_for_pixel(chest_field) -> None:
    """A reference with pixels half as wide: each method's slices are resampled onto them at
    the right place. Scored against the reference's own pixels, linear interpolation lands
    where it does on the common grid; shifted by one reference pixel it would lose dB."""
    from scipy import ndimage

    thick = thick_series(chest_field, 2, 1)
    g = chest_field.geometry
    data = chest_field.data.astype(np.float32)
    fine = ndimage.affine_transform(data, [1.0, 0.5, 0.5], output_shape=(len(data), 319, 319), order=3)
    geometry = replace(g, spacing=(g.spacing[0] / 2, g.spacing[1] / 2, g.spacing[2]))
    reference = Volume(fine, geometry, "fine", {}, chest_field.slice_thickness)
    report = evaluate_pair(thick, reference, methods=["linear"])
    assert report["reference_pixels"] == [319, 319]
    common = evaluate_pair(thick, chest_field, methods=["linear"])["rows"][0]["psnr_paper"]
    assert report["rows"][0]["psnr_paper"] == pytest.approx(common, abs=0.5)
    off = np.asarray(g.origin) + np.asarray(g.direction, float).reshape(3, 3)[:, 0] * g.spacing[0] / 2
    shifted = Volume(fine, replace(geometry, origin=tuple(off)), "fine", {}, chest_field.slice_thickness)
    assert evaluate_pair(thick, shifted, methods=["linear"])["rows"][0]["psnr_paper"] < common - 2


def test_pairs_that_are_not_two_reconstructions_of_one_scan_are_refused(chest_field) -> None:
    thick = thick_series(chest_field, 2, 1)
    g = chest_field.geometry
    aside = np.asarray(g.origin) + np.asarray(g.direction, float).reshape(3, 3)[:, 0] * 400.0
    with pytest.raises(InputError, match="share 0 pixels of their fields of view"):
        evaluate_pair(thick, Volume(chest_field.data, replace(g, origin=tuple(aside)), "aside"), methods=["linear"])
    direction = np.asarray(g.direction, float).reshape(3, 3)[:, [1, 0, 2]]  # rows and columns swapped
    swapped = Volume(chest_field.data.transpose(0, 2, 1).copy(), replace(g, direction=tuple(direction.ravel())), "t")
    with pytest.raises(InputError, match="in-plane axes of the reference t are rotated"):
        evaluate_pair(thick, swapped, methods=["linear"])
    with pytest.raises(InputError, match="is not finer than"):
        evaluate_pair(chest_field, thick, methods=["linear"])
    far = replace(chest_field.geometry, origin=tuple(chest_field.geometry.slice_position(500)))
    with pytest.raises(InputError, match="fewer than two slices of the reference"):
        evaluate_pair(thick, Volume(chest_field.data, far, "elsewhere"), methods=["linear"])


def test_evaluate_reference_on_the_command_line(
    tmp_path: Path, chest_field, capfd: pytest.CaptureFixture[str], one_thread
) -> None:
    thick, ref = tmp_path / "thick.nii.gz", tmp_path / "thin.nii.gz"
    thinslice.save(thick_series(chest_field, 2, 1), thick)
    thinslice.save(chest_field, ref)
    before = thick.read_bytes(), ref.read_bytes()
    out, picture = tmp_path / "pair.json", tmp_path / "pair.png"
    args = ["-q", "evaluate", "-i", str(thick), "--reference", str(ref), "--device", "cpu", "--json", str(out)]
    assert main([*args, "--preview", str(picture)]) == 0
    table = capfd.readouterr().out
    assert "real pair: 2 mm slices 2 mm thick" in table
    # one column each: the thick series, the four methods, the reference
    width = round(figures.DPI * (figures.LABEL_IN + 6 * (figures.PANEL_IN + figures.GAP_IN)))
    assert plt.imread(picture).shape[1] == width
    report = json.loads(out.read_text())
    assert [row["method"] for row in report["rows"]] == ["linear", "cubic", "lanczos", "model"]
    assert (report["thick_source"]["source"], report["reference_source"]["source"]) == (str(thick), str(ref))
    assert report["alignment"]["best_offset_mm"] == 0
    best = max(row["psnr_paper"] for row in report["rows"][:3])
    assert report["rows"][3]["psnr_paper"] > best + 2
    assert (thick.read_bytes(), ref.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pair.json", "pair.png", "thick.nii.gz", "thin.nii.gz"]
    for extra, message in (
        (["--degrade", "profile"], "--degrade simulates thick slices"),
        (["-i", str(ref)], "scores one thick series against it; got 2 inputs"),
    ):
        assert main(["evaluate", "-i", str(thick), "--reference", str(ref), *extra]) == 2
        err = capfd.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert main(["evaluate", "-i", str(thick), "--slice-thickness", "3"]) == 2
    assert "--slice-thickness applies to --reference" in capfd.readouterr().err
    assert main(["evaluate", "-i", str(thick), "--adapt", "1"]) == 2
    assert "--adapt applies to --reference" in capfd.readouterr().err
    assert main(["evaluate", "-i", str(thick), "--preview", str(tmp_path / "p.png")]) == 2
    assert "--preview applies to --reference" in capfd.readouterr().err
    assert main(["evaluate", "-i", str(thick), "--reference", str(ref), "--json", str(ref), "--overwrite"]) == 2
    assert "is an input" in capfd.readouterr().err


def test_evaluate_reference_with_adapt_scores_the_adapted_model_too(
    tmp_path: Path, chest_field, capfd: pytest.CaptureFixture[str], one_thread
) -> None:
    """--adapt beside --reference: the model fine-tuned on the thick series (a copy, in a
    temporary folder) gets its own row next to the bundled one; nothing else is written."""
    thick, ref = tmp_path / "thick.nii.gz", tmp_path / "thin.nii.gz"
    thinslice.save(thick_series(chest_field, 2, 1), thick)
    thinslice.save(chest_field, ref)
    out = tmp_path / "pair.json"
    args = ["-q", "evaluate", "-i", str(thick), "--reference", str(ref), "--methods", "model", "--device", "cpu"]
    assert main([*args, "--adapt", "0.05", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [row["method"] for row in rows] == ["model", "model --adapt 0.05"]
    assert rows[1]["made_by"] == "model profile_x2.pt (bundled, adapted to the scan)"
    assert rows[1]["psnr_paper"] != rows[0]["psnr_paper"]  # the weights moved
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pair.json", "thick.nii.gz", "thin.nii.gz"]
    g = chest_field.geometry
    aside = tmp_path / "aside.nii.gz"
    far = np.asarray(g.origin) + np.asarray(g.direction, float).reshape(3, 3)[:, 0] * 400.0
    thinslice.save(Volume(chest_field.data, replace(g, origin=tuple(far)), "aside"), aside)
    assert main(["evaluate", "-i", str(thick), "--reference", str(aside), "--adapt", "5"]) == 2
    assert "share 0 pixels of their fields of view" in capfd.readouterr().err  # refused before the minutes


def test_two_series_of_one_study_folder_are_told_apart_by_uid(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], one_thread
) -> None:
    """Two reconstructions often share a study folder: -i and --reference may name the same
    folder, each with its series UID. Here the thin series is thinslice's own derived 1 mm
    series of the 2 mm one, written into the folder: scored against it, the model that made
    it agrees to within the int16 rounding, so the positions line up exactly."""
    from tests.conftest import filled_dicom

    study = tmp_path / "study"
    filled_dicom(study / "thick")
    assert main(["-q", "upsample", "-i", str(study / "thick"), "-o", f"{study / 'thin'}/", "--scale", "2"]) == 0
    uids = {name: str(thinslice.load(study / name).meta["series_uid"]) for name in ("thick", "thin")}
    args = ["-q", "evaluate", "-i", str(study), "--reference", str(study), "--methods", "model,linear"]
    out = tmp_path / "pair.json"
    assert main([*args, "--series-uid", uids["thick"], "--reference-series-uid", uids["thin"], "--json", str(out)]) == 0
    model, linear = json.loads(out.read_text())["rows"]
    assert model["psnr_paper"] > 70 and linear["psnr_paper"] < model["psnr_paper"] - 20
    capfd.readouterr()
    assert main([*args, "--series-uid", uids["thick"]]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds 2 series" in err[0] and "pass --reference-series-uid UID" in err[0], err


def test_a_targeted_thin_series_in_the_same_study_is_scored_over_its_field(tmp_path: Path, one_thread) -> None:
    """Through DICOM, oblique and with rectangular pixels (rows 0.98 mm, columns 0.8 mm apart):
    the thin series is thinslice's own derived series of the thick one, written again over a
    smaller, off-centre field of view. Scored over that field, the model that made it still
    agrees with it to within the int16 rounding: rows and columns map onto the right pixels."""
    from tests.conftest import filled_dicom, rotation_30_20
    from thinslice.io.dicom_write import write_dicom_series

    study = tmp_path / "study"
    filled_dicom(study / "thick", rotation=rotation_30_20())
    assert main(["-q", "upsample", "-i", str(study / "thick"), "-o", f"{study / 'thin'}/", "--scale", "2"]) == 0
    thin = thinslice.load(study / "thin")
    h, w = thin.data.shape[1:]
    rows, cols = slice(4, h - 9), slice(7, w - 3)
    write_dicom_series(
        field(thin, rows, cols), study / "field", template=study / "thick", description="targeted field",
        derivation="a crop of thinslice's derived series",
    )  # fmt: skip
    uids = {name: str(thinslice.load(study / name).meta["series_uid"]) for name in ("thick", "field")}
    out = tmp_path / "pair.json"
    args = ["-q", "evaluate", "-i", str(study), "--reference", str(study), "--methods", "model,linear"]
    args += ["--series-uid", uids["thick"], "--reference-series-uid", uids["field"]]
    assert main([*args, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["reference_pixels"] == [rows.stop - rows.start, cols.stop - cols.start]
    model, linear = report["rows"]
    assert model["psnr_paper"] > 70 and linear["psnr_paper"] < model["psnr_paper"] - 20


def test_a_method_of_ones_own_is_scored_beside_the_bundled_ones(chest_field) -> None:
    """evaluate_pair and evaluate take Method instances too (a peer's result wrapped as one):
    scored by the same path, under their own name; one that makes linear's slices scores
    as linear, also past the end slices' centres, where its run (written without the
    ``padded`` argument) is given the end slices repeated."""
    from thinslice.methods import Method, MethodResult, get_method

    class Mine(Method):
        name = "mine"
        description = "linear interpolation, made elsewhere"

        def run(self, data, r, *, thickness=1.0, spacing=None, dtype=None):  # type: ignore[no-untyped-def]
            return MethodResult(get_method("linear").run(data, r).data)

    report = evaluate_pair(thick_series(chest_field, 2, 1), chest_field, methods=["linear", Mine(), "cubic"])
    rows = {row["method"]: row for row in report["rows"]}
    assert list(rows) == ["linear", "mine", "cubic"]
    assert rows["mine"]["psnr_paper"] == rows["linear"]["psnr_paper"] != rows["cubic"]["psnr_paper"]
    degraded = {row["method"]: row for row in evaluate([chest_field], 2, methods=["linear", Mine()])["rows"]}
    assert degraded["mine"]["psnr_paper"] == degraded["linear"]["psnr_paper"]  # the protocol takes them too
    past = {row["method"]: row for row in evaluate([chest_field], 5, methods=["linear", Mine()])["rows"]}
    assert past["mine"]["slices_used"] == past["linear"]["slices_used"] == 5 * 11 + 1 + 4  # 2 past each end
    assert past["mine"]["psnr_paper"] == past["linear"]["psnr_paper"]


def test_a_pair_whose_headers_misplace_the_thick_slices_is_flagged(chest_field, caplog) -> None:
    """The reference averaged over the thick slices' thickness lines up with them where the
    headers put them; a thick series labelled 2 mm off (a mislabelled pair) is flagged with
    the offset that fits, in the log and the report, and a true pair is not."""
    thick = thick_series(chest_field, 5, 2)
    with caplog.at_level("WARNING", logger="thinslice"):
        true = evaluate_pair(thick, chest_field, methods=["linear"])["alignment"]
    assert true["best_offset_mm"] == 0 and not caplog.records
    moved = thick.geometry.slice_position(0) + 2.0 * np.asarray(thick.geometry.slice_direction)
    mislabelled = replace(thick, geometry=replace(thick.geometry, origin=tuple(float(v) for v in moved)))
    with caplog.at_level("WARNING", logger="thinslice"):
        report = evaluate_pair(mislabelled, chest_field, methods=["linear"])
    assert report["alignment"]["best_offset_mm"] == pytest.approx(-2.0)
    assert report["alignment"]["best_consistency_psnr"] > report["alignment"]["consistency_psnr"] + 5
    assert "matches them best -2 mm along the slices" in caplog.text
    # half a reference slice off: every score shifts, and whole-slice offsets could not tell
    half = thick.geometry.slice_position(0) + 0.5 * np.asarray(thick.geometry.slice_direction)
    caplog.clear()
    with caplog.at_level("WARNING", logger="thinslice"):
        report = evaluate_pair(replace(thick, geometry=replace(thick.geometry, origin=tuple(half))), chest_field,
                               methods=["linear"])  # fmt: skip
    assert report["alignment"]["best_offset_mm"] == pytest.approx(-0.5)
    assert "matches them best -0.5 mm along the slices" in caplog.text
    # other anatomy at the same positions: not two reconstructions of one acquisition
    other = replace(chest_field, data=np.ascontiguousarray(chest_field.data[::-1]))
    caplog.clear()
    with caplog.at_level("WARNING", logger="thinslice"):
        report = evaluate_pair(thick, other, methods=["linear"])
    assert report["alignment"]["best_consistency_psnr"] < 25
    assert "do not look like two reconstructions of one acquisition" in caplog.text


def test_series_of_other_patients_or_frames_of_reference_are_flagged(chest_field, caplog) -> None:
    thick = thick_series(chest_field, 2, 1)
    thick.meta.update(frame_of_reference_uid="1.2.3", patient_id="A")
    reference = replace(chest_field, meta={**chest_field.meta, "frame_of_reference_uid": "1.2.4", "patient_id": "A"})
    with caplog.at_level("WARNING", logger="thinslice"):
        evaluate_pair(thick, reference, methods=["linear"])
    assert "different FrameOfReferenceUIDs (1.2.3, 1.2.4)" in caplog.text
    assert "PatientID" not in caplog.text  # the same patient


def test_the_preview_shows_the_thick_slices_in_the_references_order_and_extent(chest_field, monkeypatch) -> None:
    """The thick column is drawn with the reference's geometry: its slices in the reference's
    order (a feet-first reference turns them round) over the reference's extent only."""
    shown = {}
    monkeypatch.setattr(figures, "compare_views", lambda panels, path, **kw: shown.update(panels=panels))
    thick = thick_series(chest_field, 2, 1)
    direction = np.asarray(chest_field.geometry.direction, float).reshape(3, 3)
    direction[:, chest_field.geometry.slice_axis] *= -1
    last = tuple(chest_field.geometry.slice_position(62))
    reversed_geometry = replace(chest_field.geometry, origin=last, direction=tuple(direction.ravel()))
    feet_first = Volume(chest_field.data[::-1].copy(), reversed_geometry, "feet_first")
    evaluate_pair(thick, feet_first, methods=["linear"], preview="unused.png")
    np.testing.assert_array_equal(shown["panels"][0][1].data, thick.data[::-1])
    part = chest_field.with_data(chest_field.data[20:31].copy(), first=20)  # 10 mm: thick slices 9.5 to 14.5
    evaluate_pair(thick, part, methods=["linear"], preview="unused.png")
    np.testing.assert_array_equal(shown["panels"][0][1].data, thick.data[9:16])


def test_the_python_api_checks_the_preview_before_any_work(tmp_path: Path, chest_field) -> None:
    """evaluate_pair(preview=...) refuses what the command line refuses: an input as the
    picture (it used to be overwritten with PNG bytes), another format, an existing file."""
    from thinslice.errors import ConfigError, OutputError

    thick = tmp_path / "thick.nii.gz"
    thinslice.save(thick_series(chest_field, 2, 1), thick)
    before = thick.read_bytes()
    with pytest.raises(ConfigError, match="writes a PNG; give a name ending in .png, not thick.nii.gz"):
        evaluate_pair(thick, chest_field, methods=["linear"], preview=thick)
    with pytest.raises(ConfigError, match="writes a PNG"):
        evaluate_pair(thick, chest_field, methods=["linear"], preview=tmp_path / "p.jpg")
    (tmp_path / "p.png").write_bytes(b"mine")
    with pytest.raises(OutputError, match="exists"):
        evaluate_pair(thick, chest_field, methods="linear", preview=tmp_path / "p.png")
    assert thick.read_bytes() == before and (tmp_path / "p.png").read_bytes() == b"mine"
    report = evaluate_pair(thick, chest_field, methods="linear", preview=tmp_path / "p.png", overwrite=True)
    assert [row["method"] for row in report["rows"]] == ["linear"]  # one name, not its letters
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_takes_one_scan_or_a_list(chest_field) -> None:
    """A path (or Volume) on its own is one scan, not the letters of its name."""
    one = evaluate(chest_field, 2, methods="linear")
    listed = evaluate([chest_field], 2, methods=["linear"])
    assert len(one["rows"]) == len(listed["rows"]) == 1
    assert one["rows"][0]["psnr_paper"] == listed["rows"][0]["psnr_paper"]
    with pytest.raises(thinslice.errors.ConfigError, match="at least one scan"):
        evaluate([], 2, methods=["linear"])


def test_model_options_without_the_model_are_refused_as_upsample_refuses_them(chest_field) -> None:
    """evaluate(methods=['linear'], model=...) used to ignore the checkpoint silently."""
    for options in ({"model": "mine.pt"}, {"precision": "float32"}, {"all_views": True}, {"device": "cuda"}):
        with pytest.raises(thinslice.errors.ConfigError, match="applies to --method model, which is not among linear"):
            evaluate([chest_field], 2, methods=["linear"], **options)
        with pytest.raises(thinslice.errors.ConfigError, match="applies to --method model"):
            evaluate_pair(thick_series(chest_field, 2, 1), chest_field, methods=["linear"], **options)
    assert evaluate([chest_field], 2, methods=["linear"], device="cpu")["rows"]  # where linear runs anyway
