"""Batch runs back to DICOM: a derived series per DICOM case, previews and the gallery,
and --resume over series folders."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from urllib.parse import unquote

import pydicom
import SimpleITK as sitk

import thinslice
from tests.conftest import LIMB_CROP, STUDY_UID, filled_dicom, rotation_30_20
from thinslice.cli import main
from thinslice.pipeline.markers import MARKER_SUFFIX

UID_A, UID_B = "1.2.826.0.1.3680043.8.498.10", "1.2.826.0.1.3680043.8.498.20"


def make_tree(root: Path) -> Path:
    """``mixed/``: one folder holding two series of one study; ``oblique/``: a rotated
    series; ``limb.nii.gz``: a file (no patient, no study: refused for DICOM output)."""
    for uid in (UID_A, UID_B):
        series = filled_dicom(root / uid, series_uid=uid)
        for f in series.iterdir():
            (root / "mixed").mkdir(exist_ok=True)
            f.rename(root / "mixed" / f"{uid[-2:]}_{f.name}")
        series.rmdir()
    filled_dicom(root / "oblique", series_uid="1.2.826.0.1.3680043.8.498.30", rotation=rotation_30_20())
    shutil.copy(LIMB_CROP, root / "limb.nii.gz")
    return root


def test_multi_series_folder_to_dicom_with_previews_and_resume(tmp_path: Path) -> None:
    src, out = make_tree(tmp_path / "in"), tmp_path / "out"
    args = ["-q", "upsample", "-i", str(src), "-o", str(out), "-r", "2", "-m", "linear", "--output-format", "dicom"]
    args += ["--preview", str(out / "previews")]
    assert main(args) == 2  # the NIfTI file fails its case; the series are written
    report = json.loads((out / "thinslice_report.json").read_text())
    cases = {c["name"]: c for c in report["cases"]}
    series = [f"mixed_{UID_A}", f"mixed_{UID_B}", "oblique"]
    assert sorted(cases) == sorted([*series, "limb"])
    assert [cases[n]["status"] for n in series] == ["done"] * 3
    assert cases["limb"]["status"] == "failed" and "cannot write DICOM from limb.nii.gz" in cases["limb"]["reason"]
    assert not (out / "limb").exists()

    new_uids = set()
    for name, uid in zip(series, (UID_A, UID_B, None), strict=True):
        folder = out / name
        reader = sitk.ImageSeriesReader()
        (found,) = reader.GetGDCMSeriesIDs(str(folder))  # one series per output folder
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), found))
        image = reader.Execute()
        expected = thinslice.upsample(src / ("mixed" if uid else "oblique"), 2, method="linear", series_uid=uid)
        reference = thinslice.io.to_sitk(expected)
        assert image.GetSize() == reference.GetSize()
        assert (sitk.GetArrayFromImage(image) == sitk.GetArrayFromImage(reference)).all()
        for get in ("GetOrigin", "GetSpacing", "GetDirection"):
            assert max(abs(a - b) for a, b in zip(getattr(image, get)(), getattr(reference, get)(), strict=True)) < 1e-4
        headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted(folder.iterdir())]
        assert {ds.StudyInstanceUID for ds in headers} == {STUDY_UID}
        if uid is not None:
            assert {ds.ReferencedSeriesSequence[0].SeriesInstanceUID for ds in headers} == {uid}
        new_uids |= {ds.SeriesInstanceUID for ds in headers}
        assert (out / (name + MARKER_SUFFIX)).is_file()
        assert Path(cases[name]["preview"]) == out / "previews" / f"{name}.png"
        assert (out / "previews" / f"{name}.png").stat().st_size > 1000
    assert len(new_uids) == 3 and not new_uids & {UID_A, UID_B}

    page = (out / "index.html").read_text()
    links = [unquote(h) for h in re.findall(r'<img src="([^"]+)"', page)]
    assert sorted(links) == sorted(f"previews/{n}.png" for n in series)
    assert all((out / link).is_file() for link in links)
    assert page.count('<tr class="done">') == 3 and page.count('<tr class="failed">') == 1
    assert "cannot write DICOM from limb.nii.gz" in page
    assert 'href="limb' not in page and all(f'href="{n}"' in page for n in series)  # no link to what was not made

    # --resume: complete series are skipped; one whose marker is gone is written again
    (out / (series[0] + MARKER_SUFFIX)).unlink()
    before = {n: sorted(p.stat().st_mtime_ns for p in (out / n).iterdir()) for n in series}
    assert main([*args, "--resume"]) == 2
    cases = {c["name"]: c for c in json.loads((out / "thinslice_report.json").read_text())["cases"]}
    assert [cases[n]["status"] for n in series] == ["done", "skipped", "skipped"]
    after = {n: sorted(p.stat().st_mtime_ns for p in (out / n).iterdir()) for n in series}
    assert after[series[0]] != before[series[0]] and {n: after[n] for n in series[1:]} == {
        n: before[n] for n in series[1:]
    }
    assert not [p for p in out.rglob(".*")]  # no partial folders or files left
