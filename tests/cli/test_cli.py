"""The command line as a user runs it: real files, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import thinslice
from tests.conftest import CHEST_CROP, DICOM_CROP, LIMB_CROP, shared
from thinslice.cli import main


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "thinslice.cli", *args], capture_output=True, text=True, timeout=300)


def test_upsample_nifti_end_to_end(tmp_path):
    out = tmp_path / "thin.nii.gz"
    res = run("upsample", "-i", str(LIMB_CROP), "-o", str(out), "--scale", "2", "--method", "linear")
    assert res.returncode == 0, res.stderr
    vol = thinslice.load(out)
    src = thinslice.load(LIMB_CROP)
    assert vol.num_slices == 49
    np.testing.assert_array_equal(vol.data[::2], src.data)
    assert "wrote" in res.stderr


def test_upsample_dicom_folder_to_nrrd(tmp_path):
    out = tmp_path / "thin.nrrd"
    args = ["-q", "upsample", "-i", str(DICOM_CROP), "-o", str(out), "--target-spacing", "1"]
    assert main([*args, "--keep-acquired"]) == 0
    vol = thinslice.load(out)
    src = thinslice.load(DICOM_CROP)  # 3 mm thick every 2 mm (overlapping)
    assert vol.slice_spacing == pytest.approx(1.0) and vol.slice_thickness == pytest.approx(1.0)
    assert vol.num_slices == 2 * (src.num_slices - 1) + 1
    assert vol.geometry.origin == pytest.approx(src.geometry.origin)
    np.testing.assert_array_equal(vol.data[::2], src.data)
    assert main([*args, "--overwrite"]) == 0  # by default the 3 mm slices are re-estimated too
    assert not np.array_equal(thinslice.load(out).data[::2], src.data)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-i", "missing.nii.gz", "-o", "{tmp}/o.nii.gz"], "input not found"),
        (["-i", str(LIMB_CROP), "-o", "{tmp}/o.nii.gz", "--method", "cubik"], "Did you mean 'cubic'"),
        (["-i", str(LIMB_CROP), "-o", "{tmp}/o.nii.gz", "--target-spacing", "5"], "not finer than the slice spacing"),
        (["-i", str(LIMB_CROP), "-o", "{tmp}/o.nii.gz", "--scale", "1"], "scale must be an integer"),
        (["-i", str(LIMB_CROP), "-o", "{tmp}/nofolder/o.nii.gz"], "output folder does not exist"),
        (["-i", str(LIMB_CROP), "-o", "{tmp}/o.png"], "unsupported output type"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(tmp_path, args, message):
    res = run("upsample", *[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in res.stderr
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(tmp_path):
    out = tmp_path / "o.nii.gz"
    assert main(["-q", "upsample", "-i", str(LIMB_CROP), "-o", str(out)]) == 0
    before = out.read_bytes()
    assert main(["-q", "upsample", "-i", str(LIMB_CROP), "-o", str(out), "--method", "linear"]) == 2
    assert out.read_bytes() == before
    assert main(["-q", "upsample", "-i", str(LIMB_CROP), "-o", str(out), "--method", "linear", "--overwrite"]) == 0
    assert out.read_bytes() != before


def test_output_equal_to_input_is_refused(tmp_path):
    src = tmp_path / "ct.nii.gz"
    src.write_bytes(LIMB_CROP.read_bytes())
    res = run("upsample", "-i", str(src), "-o", str(src), "--overwrite")
    assert res.returncode == 2 and "is the input file" in res.stderr
    assert src.read_bytes() == LIMB_CROP.read_bytes()


def test_tilted_series_with_uneven_gaps_refused_from_cli(tmp_path):
    res = run("-q", "upsample", "-i", str(shared("dicom/head_gantry_tilt")), "-o", str(tmp_path / "o.nii.gz"))
    assert res.returncode == 2  # one line: its two stacks' thicknesses (4 and 7 mm) are no warning before it
    assert res.stderr.strip().startswith("error: uneven slice spacing") and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.nii.gz").exists()


def test_version_info_and_help():
    assert run("--version").stdout.strip() == f"thinslice {thinslice.__version__}"
    info = run("info")
    assert info.returncode == 0
    for word in ("torch", "devices: cpu", "cubic", "lanczos", "linear", "model"):
        assert word in info.stdout
    assert "bundled models for thick slices with a soft slice profile: x2 (profile_soft_x2.pt)" in info.stdout
    assert "upsample" in run("--help").stdout
    ignored = run("info", "-r", "2", "--keep-acquired")  # they ask about a scan: without one, say so
    assert ignored.returncode == 2 and ignored.stderr.strip() == (
        "error: --scale, --keep-acquired apply to info -i SCAN (what upsample would make of it); give -i"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["upsample", "-i", "x", "-o", "y", "--bogus"], "error: No such option: --bogus"),
        (["upsample", "-i", "x", "-o", "y", "-r", "2.5"], "error: Invalid value for '--scale' / '-r'"),
        (["upsample"], "error: Missing option '-i' / '--input'; see 'thinslice upsample --help'"),
        (["bogus"], "error: No such command 'bogus'; see 'thinslice --help'"),
    ],
)
def test_usage_errors_are_one_line_too(args, message, capfd):
    assert main(args) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message), err


def test_info_says_what_upsample_would_read_and_do_without_doing_it(capsys):
    """``info -i``: the acquisition as read, the grid and the checkpoints, the very ones an
    upsample of the same scan then names, without writing or synthesizing anything."""
    cases = [
        ([str(LIMB_CROP)], {"scale": 2}),
        ([str(LIMB_CROP), "--slice-thickness", "1.5"], {"scale": 2, "slice_thickness": 1.5}),
        ([str(DICOM_CROP), "--target-spacing", "1"], {"target_spacing": 1.0}),
        (
            [str(LIMB_CROP), "--keep-acquired", "-m", "lanczos"],
            {"scale": 2, "keep_acquired": True, "method": "lanczos"},
        ),
        (
            [str(DICOM_CROP), "--target-spacing", "1", "--output-thickness", "2"],
            {"target_spacing": 1.0, "output_thickness": 2.0},
        ),
        ([str(DICOM_CROP), "--target-spacing", "1.2"], {"target_spacing": 1.2}),
        ([str(LIMB_CROP), "--target-spacing", "1", "--keep-acquired"], {"target_spacing": 1.0, "keep_acquired": True}),
        ([str(LIMB_CROP), "-m", "cubic"], {"scale": 2, "method": "cubic"}),
        (
            [str(LIMB_CROP), "--slice-thickness", "1.5", "--output-thickness", "3"],
            {"scale": 2, "slice_thickness": 1.5, "output_thickness": 3.0},
        ),
        ([str(LIMB_CROP), "--target-spacing", "1.308", "-m", "cubic"], {"target_spacing": 1.308, "method": "cubic"}),
    ]
    said = []
    for args, kwargs in cases:
        assert main(["info", "-i", *args]) == 0
        text = capsys.readouterr().out
        done = thinslice.upsample(args[0], **kwargs)
        assert f"to {done.num_slices} slices {done.slice_spacing:.4g} mm apart" in text
        assert f"made by: {done.meta['made_by']}\n" in text
        said.append(text)
    assert "25 slices 3.27 mm apart, 3.27 mm thick (assumed: contiguous;" in said[0]
    assert "every slice synthesized, the acquired positions too" in said[0] and "they look like CT" in said[0]
    assert "1.5 mm thick (as given by --slice-thickness, with gaps between them)" in said[1]
    assert "the acquired slices kept unchanged" in said[1] and "default_x2.pt" in said[1]
    assert "2 mm apart, 3 mm thick (as read, overlapping)" in said[2] and " + profile_soft_x2.pt " in said[2]
    assert "1 mm apart (1 past each end slice's centre)" in said[2] and "past each end" not in said[0]
    assert "the acquired slices kept unchanged" in said[3] and "made by: lanczos" in said[3]
    # 2 mm output slices fit wholly inside no 3 mm end slice: nothing past the ends
    assert "1 mm apart, each averaged over 2 mm, every slice synthesized" in said[4]
    # a grid from the first centre whose spacing does not divide the 14 mm span: one end reaches
    assert "13 slices 1.2 mm apart (1 past the last slice's centre)," in said[5]
    # 3.27 mm to 1 mm: kept at x4, then resampled; no output slice lies on an acquired one
    assert "the acquired slices kept on that grid, then resampled with the others" in said[6]
    # an interpolation passes through the acquired slices, thick or not: it said "synthesized"
    assert "the acquired slices kept unchanged" in said[7]
    scan = thinslice.load(LIMB_CROP)
    np.testing.assert_array_equal(thinslice.upsample(scan, 2, method="cubic").data[::2], scan.data)
    # thin slices kept, then averaged over 3 mm: no longer the acquired ones (it said "unchanged")
    assert "each averaged over 3 mm, the acquired slices kept on that grid, then averaged with the others" in said[8]
    # an interpolation makes 3.27 -> 1.308 mm (x2.5) at x5, every other slice taken (not "resampled")
    assert "upsample: x5, one slice in 2 of it taken, to 61 slices 1.308 mm apart" in said[9]
    assert "the acquired slices kept where the output grid has them" in said[9]
    capsys.readouterr()
    assert main(["info", "-i", str(LIMB_CROP), "-r", "2", "--target-spacing", "1"]) == 2
    assert capsys.readouterr().err.strip() == "error: give either --scale or --target-spacing, not both"
    assert (
        main(["info", "-i", str(DICOM_CROP), "--target-spacing", "1", "--output-thickness", "2", "--keep-acquired"])
        == 2
    )
    assert "--keep-acquired keeps the acquired slices unchanged, but --output-thickness 2" in capsys.readouterr().err


def test_evaluate_cli_writes_json(tmp_path):
    out = tmp_path / "report.json"
    res = run(
        "evaluate",
        "-i",
        str(CHEST_CROP),
        "-i",
        str(LIMB_CROP),
        "--scale",
        "2",
        "--methods",
        "cubic,linear",
        "--json",
        str(out),
    )
    assert res.returncode == 0, res.stderr
    report = json.loads(out.read_text())
    assert report["scale"] == 2 and report["degrade"] == "profile"  # the measure of record by default
    assert report["thinslice_version"] == thinslice.__version__
    assert {(r["volume"], r["method"]) for r in report["rows"]} == {
        ("chest_crop", "cubic"),
        ("chest_crop", "linear"),
        ("limb_crop", "cubic"),
        ("limb_crop", "linear"),
    }
    assert set(report["mean"]) == {"cubic", "linear"}
    assert "PSNR_syn" in res.stdout and "MEAN" in res.stdout
    assert "limb_crop trimmed to 25 of 25" not in res.stdout  # 25 = 2*12+1: no trimming


def test_demo_writes_volume_figure_and_metrics(tmp_path):
    res = run("demo", "-o", str(tmp_path / "d"))
    assert res.returncode == 0, res.stderr
    files = {p.name for p in (tmp_path / "d").iterdir()}
    expected = {"sample_model.nii.gz", "sample_cubic.nii.gz", "sample_uncertainty.nii.gz", "sample_views.png"}
    assert expected | {"sample_metrics.json"} <= files
    assert (tmp_path / "d" / "sample_views.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((tmp_path / "d" / "sample_metrics.json").read_text())
    # the bundled model never saw this chest scan; it must beat cubic on it, in every metric
    for key in ("psnr_synth", "ssim_axial", "ssim_coronal", "ssim_sagittal"):
        assert metrics["model"][key] > metrics["cubic"][key], key
    assert "PSNR_syn" in res.stdout
    for bad in (["-m", "bogus"], ["-m", "linear", "--device", "cuda"]):  # refused before the folder is made
        res = run("demo", "-o", str(tmp_path / "bad"), *bad)
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["info", "-i", str(LIMB_CROP)],
        ["upsample", "-i", str(LIMB_CROP), "-o", "out.nii.gz", "-m", "linear"],
        ["evaluate", "-i", str(LIMB_CROP), "--methods", "linear"],
    ],
    ids=["info", "upsample", "evaluate"],
)
def test_a_series_uid_for_a_file_is_refused_not_ignored(args, tmp_path, monkeypatch, capfd) -> None:
    """--series-uid picks a series of a DICOM folder; given with a file it used to be ignored."""
    monkeypatch.chdir(tmp_path)
    assert main([*args, "--series-uid", "1.2.3"]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--series-uid picks a series of a DICOM folder" in err[0] and "is a file" in err[0]
    assert not list(tmp_path.iterdir())
