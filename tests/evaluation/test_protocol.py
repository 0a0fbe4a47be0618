"""The evaluation protocol on real CT."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from tests.conftest import CHEST_CROP, DICOM_CROP, LIMB_CROP, shared
from thinslice.evaluation.metrics import compare
from thinslice.evaluation.protocol import evaluate, format_table, markdown_rows
from thinslice.io import load
from thinslice.methods import get_method


def test_rows_match_a_manual_run_of_the_protocol():
    report = evaluate([CHEST_CROP], 4, degrade="decimate", methods=["cubic"])
    truth = load(CHEST_CROP).data.astype(np.float32)  # 33 = 4*8+1 slices
    manual = compare(truth, get_method("cubic")(truth[::4], 4), 4)
    row = report["rows"][0]
    for key, value in manual.items():
        assert row[key] == pytest.approx(value)
    assert row["seconds"] > 0 and row["slices_used"] == 33


def test_evaluate_by_default_measures_realistic_thick_slices_with_every_method(tmp_path):
    """No options: the measure of record (profile), the interpolations and the model."""
    from thinslice.cli import main

    out = tmp_path / "r.json"
    assert main(["-q", "evaluate", "-i", str(CHEST_CROP), "--device", "cpu", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["degrade"] == "profile" and report["scale"] == 2
    rows = {row["method"]: row for row in report["rows"]}
    assert list(rows) == ["linear", "cubic", "lanczos", "model"]
    assert rows["model"]["made_by"] == "model profile_x2.pt (bundled)"  # told the slices are thick
    assert rows["model"]["psnr_paper"] > rows["lanczos"]["psnr_paper"] + 1.0
    explicit = evaluate([CHEST_CROP], 2, degrade="profile", methods=["lanczos"])["rows"][0]
    assert explicit["psnr_paper"] == pytest.approx(rows["lanczos"]["psnr_paper"])


def test_slab_degradation_is_harder_than_decimation():
    dec = evaluate([CHEST_CROP], 2, degrade="decimate", methods=["linear"])["rows"][0]
    slab = evaluate([CHEST_CROP], 2, degrade="slab", methods=["linear"])["rows"][0]
    assert slab["psnr_paper"] < dec["psnr_paper"]


def test_trimming_is_reported(caplog):
    with caplog.at_level(logging.WARNING):
        report = evaluate([LIMB_CROP], 3, degrade="decimate", methods=["linear"])  # 25 slices -> 3*8+1
    assert report["rows"][0]["slices_used"] == 25 and report["rows"][0]["slices_total"] == 25
    report = evaluate([LIMB_CROP], 4, degrade="decimate", methods=["linear"])  # 25 = 4*6+1
    assert report["rows"][0]["slices_used"] == 25
    report = evaluate([CHEST_CROP], 3, degrade="decimate", methods=["linear", "cubic"])  # 33 -> 31
    assert report["rows"][0]["slices_used"] == 31
    table = format_table(report)
    assert "chest_crop trimmed to 31 of 33 slices" in table
    assert report["mean"]["linear"]["psnr_synth"] == pytest.approx(report["rows"][0]["psnr_synth"])


def test_full_thin_chest_ranks_interpolators_sensibly():
    report = evaluate([shared("aorta1.5mm_totalseg.nii.gz")], 2, degrade="decimate", methods=["linear", "cubic"])
    psnr = {r["method"]: r["psnr_synth"] for r in report["rows"]}
    assert all(25 < v < 60 for v in psnr.values())


def test_markdown_rows_for_benchmarks():
    report = evaluate([CHEST_CROP], 2, degrade="decimate", methods=["linear"])
    lines = markdown_rows(report).splitlines()
    assert lines[0].startswith("| volume | method | PSNR paper")
    row = report["rows"][0]
    assert lines[2] == (
        f"| chest_crop | linear | {row['psnr_paper']:.2f} | {row['psnr_synth']:.2f} | {row['psnr_body']:.2f} | "
        f"{row['ssim_axial']:.4f} | {row['ssim_coronal']:.4f} | {row['ssim_sagittal']:.4f} | {row['seconds']:.2f} |"
    )


def test_profile_protocol_scores_every_slice_and_keeps_nothing(tmp_path) -> None:
    """Under the realistic protocol the acquired positions are estimates too: a method that
    copies the thick slices is scored on them, and evaluate does not put them back."""
    from thinslice.cli import main

    report = evaluate([CHEST_CROP], 4, degrade="profile", methods=["linear"])
    row = report["rows"][0]
    decimated = evaluate([CHEST_CROP], 4, degrade="decimate", methods=["linear"])["rows"][0]
    # exact acquired slices lift the all-slice PSNR above the synthesized-only one by more
    # than thick acquired slices (averages over 4 mm, scored against the 1 mm truth) do
    gain_decimated = decimated["psnr_paper"] - decimated["psnr_synth"]
    assert gain_decimated > row["psnr_paper"] - row["psnr_synth"] + 0.3
    out = tmp_path / "r.json"
    assert main(["-q", "evaluate", "-i", str(CHEST_CROP), "-r", "4", "--degrade", "profile", "--thickness", "5",
                 "--methods", "linear", "--json", str(out)]) == 0  # fmt: skip
    assert '"thickness_mm": 5.0' in out.read_text()


def test_evaluate_softness_makes_the_thick_slices_softer(tmp_path, capsys) -> None:
    """``--softness``: the same scan under a softened profile is harder for interpolation,
    the report says the softness, and a softness without ``--degrade profile`` is refused."""
    from thinslice.cli import main

    box = evaluate([CHEST_CROP], 3, degrade="profile", methods=["linear"])
    soft = evaluate([CHEST_CROP], 3, degrade="profile", softness=1.0, methods=["linear"])
    assert soft["softness"] == 1.0 and box["softness"] == 0.0
    assert soft["rows"][0]["psnr_paper"] < box["rows"][0]["psnr_paper"] - 0.1
    out = tmp_path / "r.json"
    assert main(["-q", "evaluate", "-i", str(CHEST_CROP), "-r", "3", "--degrade", "profile", "--softness", "1",
                 "--methods", "linear", "--json", str(out)]) == 0  # fmt: skip
    assert '"softness": 1.0' in out.read_text()
    assert "scale x3, degrade profile (r x spacing thick, softness 1)" in capsys.readouterr().out
    assert (
        main(
            [
                "-q",
                "evaluate",
                "-i",
                str(CHEST_CROP),
                "--degrade",
                "decimate",
                "--softness",
                "0.5",
                "--methods",
                "linear",
            ]
        )
        != 0
    )
    assert "--softness applies to --degrade profile" in capsys.readouterr().err


def test_evaluate_reads_the_profile_as_upsample_does(chest_field) -> None:
    """The model in evaluate is told the voxel spacing, so it picks the checkpoint upsample
    would for the same thick slices, and the report names it."""
    soft = evaluate([chest_field], 2, degrade="profile", softness=1.5, methods=["model", "linear"], device="cpu")
    box = evaluate([chest_field], 2, degrade="profile", methods=["model"], device="cpu")
    made_by = {row["method"]: row["made_by"] for row in soft["rows"]}
    assert made_by == {"model": "model profile_soft_x2.pt (bundled)", "linear": "linear"}
    assert box["rows"][0]["made_by"] == "model profile_x2.pt (bundled)"
    assert "note: sample_reference, model: model profile_soft_x2.pt (bundled)" in format_table(soft)


def test_too_few_slices_says_how_many_thick_slices_they_make(capsys):
    from thinslice.cli import main

    assert main(["-q", "evaluate", "-i", str(DICOM_CROP), "-r", "3", "--methods", "linear"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "8 slices, of which x3 (profile) makes 2 thick slices" in err
    assert "\n" not in err


def test_overlapping_truth_is_said_to_be_a_weaker_ground_truth(capsys):
    """3 mm slices every 2 mm as truth: scored, with a warning that says why to prefer
    contiguous thin slices; a contiguous scan gets none."""
    from thinslice.cli import main

    assert main(["-q", "evaluate", "-i", str(DICOM_CROP), "-r", "2", "--methods", "linear"]) == 0
    err = capsys.readouterr().err
    assert "slices are 3 mm thick every 2 mm (an overlapping reconstruction)" in err
    assert main(["-q", "evaluate", "-i", str(CHEST_CROP), "-r", "2", "--methods", "linear"]) == 0
    assert "overlapping" not in capsys.readouterr().err
