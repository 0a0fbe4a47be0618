"""Batch upsampling: case listing and naming, CSV input, failure isolation, --resume,
and a 2-process torchrun run (gloo on the CPU)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

import thinslice
from tests.conftest import CHEST_CROP, DICOM_CROP, LIMB_CROP
from thinslice.cli import main
from thinslice.errors import ConfigError, InputError
from thinslice.io import to_sitk
from thinslice.methods.learned import bundled_model_path
from thinslice.pipeline import markers
from thinslice.pipeline.batch import upsample_batch
from thinslice.pipeline.cases import find_cases
from thinslice.pipeline.markers import MARKER_SUFFIX

GOOD = ["chest/sub/chest_crop.nii.gz", "dicom/chest_totalseg_crop.nii.gz", "limb/limb_crop.nii.gz"]


def make_tree(root: Path) -> Path:
    """Two NIfTI scans in subfolders, a DICOM series, a broken file and a text file."""
    (root / "limb").mkdir(parents=True)
    (root / "chest" / "sub").mkdir(parents=True)
    shutil.copy(LIMB_CROP, root / "limb")
    shutil.copy(CHEST_CROP, root / "chest" / "sub")
    shutil.copytree(DICOM_CROP, root / "dicom" / DICOM_CROP.name)
    (root / "broken.nii.gz").write_bytes(os.urandom(2000))
    (root / "notes.txt").write_text("not a scan")
    return root


def read_report(path: Path) -> dict:
    return json.loads(path.read_text())


def by_name(report: dict) -> dict[str, dict]:
    names = [c["name"] for c in report["cases"]]
    assert len(names) == len(set(names)), names  # every case listed once
    return {c["name"]: c for c in report["cases"]}


def mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*.nii.gz")}


def test_folder_batch_isolates_failures_and_resumes(tmp_path, capsys):
    src, out = make_tree(tmp_path / "in"), tmp_path / "out"
    assert main(["upsample", "-i", str(src), "-o", str(out), "--scale", "2", "--method", "linear"]) == 2
    report = read_report(out / "thinslice_report.json")
    cases = by_name(report)
    assert sorted(cases) == sorted([*GOOD, "broken.nii.gz"])
    assert report["counts"] == {"total": 4, "done": 3, "skipped": 0, "failed": 1}
    assert "cannot read" in cases["broken.nii.gz"]["reason"]
    assert {c["made_by"] for c in cases.values() if c["status"] == "done"} == {"linear"}  # what made each
    assert sorted(mtimes(out)) == GOOD
    thin = thinslice.load(out / "limb" / "limb_crop.nii.gz")
    assert thin.num_slices == 2 * (thinslice.load(LIMB_CROP).num_slices - 1) + 1
    err = capsys.readouterr().err
    assert "3 done, 0 skipped (already complete), 1 failed" in err and "failed: broken.nii.gz: cannot read" in err

    before = mtimes(out)
    (out / "limb" / ("limb_crop.nii.gz" + MARKER_SUFFIX)).unlink()  # as if it crashed before the marker
    assert main(["upsample", "-i", str(src), "-o", str(out), "--scale", "2", "--method", "linear", "--resume"]) == 2
    cases = by_name(read_report(out / "thinslice_report.json"))
    assert [cases[n]["status"] for n in GOOD] == ["skipped", "skipped", "done"]
    skipped = cases[GOOD[0]]  # what the run that made it knew, from its marker (it was null)
    assert skipped["input_slices"] and skipped["output_slices"] and skipped["made_by"] == "linear"
    assert all(Path(c["output"]).is_absolute() for c in cases.values())  # as input and preview are
    after = mtimes(out)
    assert after["limb/limb_crop.nii.gz"] != before["limb/limb_crop.nii.gz"]
    assert {k: v for k, v in after.items() if "limb" not in k} == {k: v for k, v in before.items() if "limb" not in k}

    # without --resume or --overwrite, existing outputs stop the batch before anything is
    # written (each failed its case, and the earlier report was replaced by that record)
    report_path = tmp_path / "again.json"
    args = ["upsample", "-i", str(src), "-o", str(out), "-m", "linear", "--report", str(report_path)]
    capsys.readouterr()
    earlier = (out / "thinslice_report.json").read_text()
    assert main(args) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: 3 of the 4 outputs are in {out} already (such as chest/sub/chest_crop.nii.gz); pass --resume to "
        "keep the finished ones and do the rest, or --overwrite to do them all again"
    ]
    assert not report_path.exists() and (out / "thinslice_report.json").read_text() == earlier
    assert mtimes(out) == after


def test_a_file_where_a_case_folder_would_go_fails_that_case_plainly(tmp_path):
    """It read 'unexpected FileExistsError', as a bug would."""
    src, out = make_tree(tmp_path / "in"), tmp_path / "out"
    out.mkdir()
    (out / "limb").write_text("mine")
    cases = by_name(upsample_batch(src, out, scale=2, method="linear").to_dict())
    reason = cases["limb/limb_crop.nii.gz"]["reason"]
    assert reason.startswith("cannot make the folder for ") and "unexpected" not in reason
    assert (out / "limb").read_text() == "mine" and cases["chest/sub/chest_crop.nii.gz"]["status"] == "done"


def test_a_failed_case_leaves_no_empty_folders(tmp_path):
    """Its mirrored output and picture folders were made before it failed, and stayed."""
    src, out, pictures = tmp_path / "in", tmp_path / "out", tmp_path / "pictures"
    (src / "deep" / "er").mkdir(parents=True)
    (src / "deep" / "er" / "broken.nii.gz").write_bytes(os.urandom(2000))
    shutil.copy(LIMB_CROP, src / "limb.nii.gz")
    report = upsample_batch(src, out, scale=2, method="linear", preview=pictures)
    assert report.counts == {"done": 1, "skipped": 0, "failed": 1}
    assert not (out / "deep").exists() and not (pictures / "deep").exists()
    assert (out / "limb.nii.gz").is_file() and (pictures / "limb.png").is_file()


def test_resume_recomputes_what_another_version_or_model_made(tmp_path, capsys, monkeypatch):
    """An output is complete only for the thinslice code and the checkpoint that made it,
    and the precision asked for: a model replaced under the same path, a changed checkout,
    another ``--precision``, or a marker from before markers named them, is computed again
    (a batch never mixes outputs of two versions)."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    shutil.copy(LIMB_CROP, src)
    model = tmp_path / "model.pt"
    shutil.copy(bundled_model_path(2, "default"), model)
    args = ["upsample", "-i", str(src), "-o", str(out), "--scale", "2", "--model", str(model), "--resume"]
    output, marker = out / LIMB_CROP.name, out / (LIMB_CROP.name + MARKER_SUFFIX)

    def counts(*extra: str) -> dict[str, int]:
        assert main([*args, *extra]) == 0
        return read_report(out / "thinslice_report.json")["counts"]

    assert counts()["done"] == 1
    made_with = json.loads(marker.read_text())["made_with"]
    assert made_with["thinslice"] == thinslice.__version__
    assert len(made_with["checkpoints"]) == len(made_with["code"]) == 64
    assert counts()["skipped"] == 1  # the same model: complete
    assert counts("--precision", "float32")["done"] == 1  # another precision asked for
    assert counts("--precision", "float32")["skipped"] == 1
    with monkeypatch.context() as patch:
        patch.setattr(markers, "code_fingerprint", lambda: "0" * 64)  # as after a `git pull`
        assert counts("--precision", "float32")["done"] == 1
    assert counts()["done"] == 1

    first = output.read_bytes()
    shutil.copy(bundled_model_path(2, "profile"), model)  # another checkpoint under the same name
    capsys.readouterr()
    assert counts()["done"] == 1
    assert "made by another thinslice version or model; computing it again" in capsys.readouterr().err
    assert output.read_bytes() != first and json.loads(marker.read_text())["made_with"] != made_with

    old = json.loads(marker.read_text())
    del old["made_with"]  # as a marker written before markers named what made the output
    marker.write_text(json.dumps(old))
    assert counts()["done"] == 1
    assert "made_with" in json.loads(marker.read_text())


def test_resume_reads_a_detached_data_file_and_a_fifo_fails_only_its_case(tmp_path):
    """An .mhd's voxels lie in the .raw beside it: changing them (same size, same time
    stamp) makes the output stale. A FIFO among the inputs fails its own case in one line
    instead of blocking the batch (in a subprocess, so a hang fails the test)."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    sitk.WriteImage(to_sitk(thinslice.load(LIMB_CROP)), str(src / "scan.mhd"), useCompression=False)
    raw = src / "scan.raw"
    os.mkfifo(src / "pipe.nii.gz")
    cmd = [sys.executable, "-m", "thinslice.cli", "upsample", "-i", str(src), "-o", str(out), "-m", "linear",
           "--scale", "2", "--resume"]  # fmt: skip

    def cases() -> dict[str, dict]:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        return by_name(read_report(out / "thinslice_report.json"))

    first = cases()
    assert first["scan.nii.gz"]["status"] == "done"
    assert first["pipe.nii.gz"]["status"] == "failed"
    assert "is a FIFO (named pipe), not a regular file" in first["pipe.nii.gz"]["reason"]
    assert cases()["scan.nii.gz"]["status"] == "skipped"
    made = (out / "scan.nii.gz").read_bytes()

    mtime = raw.stat().st_mtime_ns
    voxels = sitk.GetArrayFromImage(sitk.ReadImage(str(src / "scan.mhd")))
    np.ascontiguousarray(voxels[::-1]).tofile(raw)  # another scan, same size
    os.utime(raw, ns=(mtime, mtime))
    assert cases()["scan.nii.gz"]["status"] == "done"
    assert (out / "scan.nii.gz").read_bytes() != made


def test_names_mirror_inputs(tmp_path):
    src = tmp_path / "in"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    shutil.copy(LIMB_CROP, src / "a" / "ct.nii.gz")
    thinslice.save(thinslice.load(LIMB_CROP), src / "b" / "scan.nrrd")
    (src / "a" / ".hidden.nii.gz").write_bytes(b"x")
    # a folder holding two series: the copy gets another SeriesInstanceUID
    two = src / "pat" / "mixed"
    shutil.copytree(DICOM_CROP, two)
    for f in sorted(DICOM_CROP.iterdir()):
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = "1.2.3.4"
        ds.save_as(two / f"copy_{f.name}")
    # one series spread over a folder and its subfolder is one case, named after the top
    split = src / "split"
    (split / "more").mkdir(parents=True)
    files = sorted(DICOM_CROP.iterdir())
    for i, f in enumerate(files):
        shutil.copy(f, split / ("more" if i % 2 else "") / f.name)
    shutil.copytree(src / "a", src / "out" / "a")  # the output folder inside the input: left out
    cases = find_cases(src, src / "out")  # the crop's SeriesInstanceUID is empty: "nouid"
    assert [c.name for c in cases] == [
        "a/ct.nii.gz",
        "b/scan.nii.gz",
        "pat/mixed_1.2.3.4.nii.gz",
        "pat/mixed_nouid.nii.gz",
        "split.nii.gz",
    ]
    assert {c.series_uid for c in cases if c.name.startswith("pat/")} == {"1.2.3.4", ""}
    assert [c.name for c in find_cases(src / "b", output_format="mha")] == ["scan.mha"]
    assert [c.name for c in find_cases(split)] == ["split.nii.gz"]  # DICOM files directly in the input folder
    report = upsample_batch(src / "split", tmp_path / "split_out", scale=2, method="linear")
    assert report.counts["done"] == 1
    # 3 mm slices 2 mm apart, at 1 mm: one more past each end slice's centre, inside its profile
    assert thinslice.load(tmp_path / "split_out" / "split.nii.gz").num_slices == 2 * len(files) - 1 + 2

    clash = tmp_path / "clash"
    clash.mkdir()
    shutil.copy(LIMB_CROP, clash / "ct.nii.gz")
    shutil.copy(LIMB_CROP, clash / "CT.nii")  # same output name on a case-insensitive disk
    names = [c.name for c in find_cases(clash)]
    assert len(set(n.lower() for n in names)) == 2
    assert all(n.lower().startswith("ct_") and n.endswith(".nii.gz") for n in names)


def test_an_output_folder_inside_the_input_may_hold_only_outputs(tmp_path, capsys):
    """The search leaves the output folder out, so scans kept there would be skipped without
    a word: refused. A batch's own outputs there (with their done-markers) are fine."""
    src = tmp_path / "in"
    for name, crop in (("p1", LIMB_CROP), ("p2", CHEST_CROP)):
        (src / name).mkdir(parents=True)
        shutil.copy(crop, src / name / "ct.nii.gz")
    before = sorted(p.name for p in src.rglob("*"))
    assert main(["-q", "upsample", "-i", str(src), "-o", str(src / "p1"), "-r", "2", "-m", "linear"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds 1 scan(s) that are not outputs of a batch (such as ct.nii.gz)" in err[0], err
    assert sorted(p.name for p in src.rglob("*")) == before
    args = ["-q", "upsample", "-i", str(src), "-o", str(src / "thin"), "-r", "2", "-m", "linear"]
    assert main(args) == 0 and main([*args, "--resume"]) == 0
    report = json.loads((src / "thin" / "thinslice_report.json").read_text())
    assert [c["status"] for c in report["cases"]] == ["skipped", "skipped"]


def test_csv_input(tmp_path):
    data = tmp_path / "data"
    (data / "scans").mkdir(parents=True)
    shutil.copy(LIMB_CROP, data / "scans" / "limb.nii.gz")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(CHEST_CROP, elsewhere / "chest.nii.gz")
    table = data / "cases.csv"
    table.write_text(
        "case,path,note\n"
        "1,scans/limb.nii.gz,relative to the CSV\n"
        f"2,{elsewhere / 'chest.nii.gz'},absolute\n"
        f"3,{DICOM_CROP},a DICOM folder\n"
        "4,scans/missing.nii.gz,\n"
        "5,,empty cell: ignored\n"
    )
    out = tmp_path / "out"
    report = upsample_batch(table, out, scale=2, method="linear")
    cases = {c.name: c for c in report.cases}
    chest = (elsewhere / "chest.nii.gz").relative_to("/").as_posix()
    dicom = (DICOM_CROP.parent / (DICOM_CROP.name + ".nii.gz")).relative_to("/").as_posix()
    assert sorted(cases) == sorted(["scans/limb.nii.gz", chest, dicom, "scans/missing.nii.gz"])
    assert cases["scans/missing.nii.gz"].status == "failed" and "not found" in cases["scans/missing.nii.gz"].reason
    assert report.counts == {"done": 3, "skipped": 0, "failed": 1}
    assert (out / chest).is_file() and (out / dicom).is_file()

    # --csv-column picks another column; without a `path` column the first column is used
    (data / "other.csv").write_text("file\nscans/limb.nii.gz\n")
    assert [c.name for c in find_cases(data / "other.csv")] == ["scans/limb.nii.gz"]
    with pytest.raises(ConfigError, match="Did you mean 'path'"):
        find_cases(table, csv_column="paths")
    # a list without a header row: its first scan was taken for the header and left out
    (data / "bare.csv").write_text(f"scans/limb.nii.gz\n{elsewhere / 'chest.nii.gz'}\n")
    with pytest.raises(InputError, match=r"first row of .*bare.csv names a scan \(scans/limb.nii.gz\) but is read"):
        find_cases(data / "bare.csv")
    # ... but a header that happens to name a folder beside the CSV is a header
    (data / "path").mkdir()
    (data / "scans.csv").write_text("scans\nscans/limb.nii.gz\n")
    assert [c.name for c in find_cases(data / "scans.csv")] == ["scans/limb.nii.gz"]


def test_unexpected_errors_are_isolated_and_method_built_once(tmp_path, monkeypatch):
    import thinslice.pipeline.batch as batch

    src = make_tree(tmp_path / "in")
    (src / "broken.nii.gz").unlink()
    built = []
    real_build, real_load = batch.build_method, batch.load

    def counting_build(name, **options):
        built.append(name)
        return real_build(name, **options)

    def flaky_load(path, series_uid=None):
        if "chest_crop" in str(path):
            raise RuntimeError("disk hiccup")
        return real_load(path, series_uid=series_uid)

    monkeypatch.setattr(batch, "build_method", counting_build)
    monkeypatch.setattr(batch, "load", flaky_load)
    report = upsample_batch(src, tmp_path / "out", scale=3, method="cubic")
    assert built == ["cubic"]
    assert report.counts == {"done": 2, "skipped": 0, "failed": 1}
    assert "unexpected RuntimeError: disk hiccup" in report.failed[0].reason


def test_batch_options_checked(tmp_path):
    out = tmp_path / "o.nii.gz"
    assert main(["upsample", "-i", str(LIMB_CROP), "-o", str(out), "--resume"]) == 2  # single file: not a batch
    assert not out.exists()
    with pytest.raises(ConfigError, match="not both"):
        upsample_batch(DICOM_CROP.parent, tmp_path / "out", scale=2, target_spacing=1.0)
    args = ["upsample", "-i", str(DICOM_CROP.parent), "-o", str(tmp_path / "out"), "--series-uid", "1.2"]
    assert main(args) == 2  # --series-uid picks one scan (not found here), never a batch
    assert not (tmp_path / "out").exists()
    args = [*args[:-2], "--output-format", "nii.gz", "--series-uid", "1.2"]
    assert main(args) == 2  # a batch reads every series
    assert not (tmp_path / "out").exists()
    csv = tmp_path / "cases.csv"
    csv.write_text(f"path\n{LIMB_CROP}\n")
    assert main(["upsample", "-i", str(csv), "-o", str(tmp_path / "thin.nii.gz"), "-r", "2"]) == 2  # a file name
    assert not (tmp_path / "thin.nii.gz").exists() and not (tmp_path / "thin").exists()


def test_a_batch_with_no_scans_or_a_report_in_a_missing_folder_is_refused_first(tmp_path, capsys):
    """An empty folder or a header-only CSV is most likely a wrong -i (a single scan says
    so too); a --report folder is never made, only -o is. Nothing is created either way."""
    empty, csv = tmp_path / "empty", tmp_path / "cases.csv"
    empty.mkdir()
    csv.write_text("path\n")
    for source in (empty, csv):
        assert main(["-q", "upsample", "-i", str(source), "-o", str(tmp_path / "out"), "-r", "2", "-m", "linear"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: no scans found in {source}"), err
    src = make_tree(tmp_path / "in")
    report = tmp_path / "missing" / "report.json"
    args = ["-q", "upsample", "-i", str(src), "-o", str(tmp_path / "out"), "-r", "2", "-m", "linear"]
    assert main([*args, "--report", str(report)]) == 2
    assert capsys.readouterr().err.strip() == f"error: --report folder does not exist: {report.parent}; create it first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cases.csv", "empty", "in"]
    nested = tmp_path / "out" / "logs" / "report.json"  # inside -o: made with it
    assert main([*args, "--report", str(nested)]) == 2 and nested.exists()  # make_tree holds one broken scan


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--target-spacing", "0"], "error: --target-spacing must be a positive number of mm, got 0.0"),
        (
            ["--scale", "2", "--slice-thickness", "nan"],
            "error: --slice-thickness must be a positive number of mm, got nan",
        ),
        (
            ["--scale", "2", "--output-thickness", "-1"],
            "error: --output-thickness must be a positive number of mm, got -1.0",
        ),
        (
            ["--scale", "2", "--adapt", "1", "-m", "linear"],
            "error: --adapt fine-tunes trained weights; method linear has",
        ),
        (["--scale", "2", "--adapt", "-3"], "error: --adapt must be a positive number of minutes, got -3.0"),
        (["--scale", "9", "-m", "cubic"], "error: scale must be an integer from 2 to 8, got 9"),
        (["--scale", "2", "-m", "cubic", "--model", "mine.pt"], "error: --model applies to --method model, not"),
        (["--scale", "2", "-m", "cubic", "--device", "cuda"], "error: --device applies to --method model, not"),
    ],
)
def test_a_bad_option_stops_a_batch_in_one_line_before_anything_is_written(tmp_path, capsys, option, message):
    """An option that no case could run with is one error before any case, not one per
    case: exit 2, one line, no output folder, no report."""
    src, out = make_tree(tmp_path / "in"), tmp_path / "out"
    assert main(["upsample", "-i", str(src), "-o", str(out), *option]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), lines
    assert not out.exists()


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path):
    src, out = make_tree(tmp_path / "in"), tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    cmd += ["-m", "thinslice.cli", "-q", "upsample", "-i", str(src), "-o", str(out), "-r", "2", "-m", "linear"]

    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert res.returncode != 0, res.stderr  # the broken case fails the run
    assert "1 of 4 case(s) failed" in res.stderr
    report = read_report(out / "thinslice_report.json")
    cases = by_name(report)
    assert report["world_size"] == 2
    assert [cases[n]["status"] for n in GOOD] == ["done"] * 3
    assert {c["rank"] for c in cases.values()} == {0, 1}  # sorted cases dealt out in turn
    assert [cases[n]["rank"] for n in sorted(cases)] == [i % 2 for i in range(4)]
    assert cases["broken.nii.gz"]["status"] == "failed" and "cannot read" in cases["broken.nii.gz"]["reason"]
    assert sorted(mtimes(out)) == GOOD
    assert not [p for p in out.rglob(".*")]  # no temporary files left

    before = mtimes(out)
    res = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=240, env=env)
    assert res.returncode != 0, res.stderr
    cases = by_name(read_report(out / "thinslice_report.json"))
    assert [cases[n]["status"] for n in GOOD] == ["skipped"] * 3
    assert cases["broken.nii.gz"]["status"] == "failed"
    assert mtimes(out) == before
