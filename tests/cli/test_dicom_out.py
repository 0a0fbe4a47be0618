"""`thinslice upsample` back to DICOM, and `--preview`, as a user runs them.

The DICOM series written by the command is read back with SimpleITK, thinslice, pydicom
and dcm2niix and compared with the NIfTI output of the same job.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import matplotlib.image
import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

import thinslice
from tests.conftest import (
    DICOM_CROP,
    LIMB_CROP,
    PATIENT_ID,
    SERIES_UID,
    STUDY_UID,
    dcm2niix,
    filled_dicom,
    rotation_30_20,
    tilted_dicom,
)
from thinslice.cli import main
from thinslice.evaluation import figures
from thinslice.io import dicom_write

LINEAR = ["--scale", "2", "--method", "linear"]


def headers(folder: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(f) for f in sorted(folder.iterdir())]


def sitk_series(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    (series,) = reader.GetGDCMSeriesIDs(str(folder))
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), series))
    return reader.Execute()


def same_image(a: sitk.Image, b: sitk.Image) -> None:
    assert a.GetSize() == b.GetSize()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))
    for get in ("GetOrigin", "GetSpacing", "GetDirection"):
        np.testing.assert_allclose(getattr(a, get)(), getattr(b, get)(), atol=1e-4)


def one_error_line(capfd: pytest.CaptureFixture[str]) -> str:
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.fixture(scope="module")
def ct(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return filled_dicom(tmp_path_factory.mktemp("in") / "ct")


def test_dicom_series_round_trip(ct: Path, tmp_path: Path) -> None:
    """`-o OUT/` with a DICOM series in: a derived series that reads back as the NIfTI of the same job."""
    out, nifti = tmp_path / "thin", tmp_path / "thin.nii.gz"
    assert main(["-q", "upsample", "-i", str(ct), "-o", f"{out}/", *LINEAR]) == 0
    assert main(["-q", "upsample", "-i", str(ct), "-o", str(nifti), *LINEAR]) == 0
    reference = sitk.ReadImage(str(nifti))
    # 8 slices 3 mm thick, 2 mm apart -> 1 mm: 15 from the first centre to the last, and one
    # more past each (inside the 3 mm slices' profile)
    assert reference.GetSize() == (64, 64, 17)
    same_image(sitk_series(out), reference)
    back, thin = thinslice.load(out), thinslice.load(nifti)
    np.testing.assert_array_equal(back.data, thin.data)
    assert back.geometry.slice_axis == thin.geometry.slice_axis
    np.testing.assert_allclose(back.geometry.spacing, thin.geometry.spacing, atol=1e-4)
    np.testing.assert_allclose(back.geometry.origin, thin.geometry.origin, atol=1e-4)

    sources, written = headers(ct), headers(out)
    assert len(written) == 17
    uids = {str(ds.SOPInstanceUID) for ds in written}
    assert len(uids) == 17 and not uids & {str(ds.SOPInstanceUID) for ds in sources}
    assert [ds.InstanceNumber for ds in written] == list(range(1, 18))  # as the files are named
    written.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))  # numbered head to feet, as the source is
    for k, ds in enumerate(written):
        assert (ds.StudyInstanceUID, ds.PatientID, ds.SeriesNumber) == (STUDY_UID, PATIENT_ID, 1003)
        assert ds.FrameOfReferenceUID == sources[0].FrameOfReferenceUID and ds.SeriesInstanceUID != SERIES_UID
        assert ds.SeriesDescription == "CT Body 3.0 thinslice x2 1.0 mm"
        derivation = str(ds.DerivationDescription)
        assert derivation.startswith(f"thinslice {thinslice.__version__}: linear, x2") and "2.0 -> 1.0 mm" in derivation
        assert list(ds.ImageType[:2]) == ["DERIVED", "SECONDARY"] and ds.InstanceNumber == 17 - k
        assert float(ds.SliceThickness) == float(ds.SpacingBetweenSlices) == 1.0
        assert list(ds.WindowCenter) == list(sources[0].WindowCenter) and ds.PixelRepresentation == 1
        assert ds.ContributingEquipmentSequence[0].Manufacturer == "thinslice"
        assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == SERIES_UID and ds.SourceImageSequence
        np.testing.assert_allclose(ds.ImagePositionPatient, thin.geometry.slice_position(k), atol=1e-4)

    converted, log = dcm2niix(out, tmp_path / "dcm2niix")
    assert not any(word in log for word in ("Warning", "Unable", "variable")), log
    ours, theirs = (nib.as_closest_canonical(nib.load(str(p))) for p in (nifti, converted))
    assert theirs.shape == ours.shape
    np.testing.assert_allclose(theirs.affine, ours.affine, atol=1e-3)
    np.testing.assert_array_equal(theirs.get_fdata(), ours.get_fdata())

    # a rerun replaces the series (with --overwrite) under the same UIDs
    again = ["-q", "upsample", "-i", str(ct), "-o", str(out), *LINEAR, "--overwrite", "--output-format", "dicom"]
    assert main(again) == 0
    assert {str(ds.SOPInstanceUID) for ds in headers(out)} == uids


def test_oblique_series_round_trip(tmp_path: Path) -> None:
    ct = filled_dicom(tmp_path / "oblique", rotation=rotation_30_20())
    out, nifti = tmp_path / "thin", tmp_path / "thin.nii.gz"
    assert main(["-q", "upsample", "-i", str(ct), "-o", str(out), *LINEAR]) == 0
    assert main(["-q", "upsample", "-i", str(ct), "-o", str(nifti), *LINEAR]) == 0
    reference = sitk.ReadImage(str(nifti))
    assert np.abs(np.asarray(reference.GetDirection())).max() < 0.95  # no axis along a patient axis
    same_image(sitk_series(out), reference)
    np.testing.assert_array_equal(thinslice.load(out).data, thinslice.load(nifti).data)


def test_tilted_series_upsamples_on_its_planes_and_goes_back_untilted(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A gantry-tilted series in, the bundled model, a DICOM series out: the job runs on
    the planes' orthogonal grid, says so, and what it writes reads back (thinslice, dcm2niix)
    as that grid, with nothing left to undo."""
    ct, tilt = tilted_dicom(tmp_path / "tilted", rows_per_slice=1)
    out, nifti = tmp_path / "thin", tmp_path / "thin.nii.gz"
    assert main(["upsample", "-i", str(ct), "-o", str(out), "--scale", "2", "--new-study"]) == 0
    assert f"gantry tilt of {tilt:.1f}°" in capfd.readouterr().err
    assert main(["-q", "upsample", "-i", str(ct), "-o", str(nifti), "--scale", "2"]) == 0
    grid = thinslice.load(ct).geometry
    back, thin = thinslice.load(out), thinslice.load(nifti)
    assert "gantry tilt" not in capfd.readouterr().err  # the written series is not sheared
    assert back.data.shape == thin.data.shape == (15, 64 + 7, 64)
    np.testing.assert_array_equal(back.data, thin.data)
    np.testing.assert_allclose(back.geometry.direction, grid.direction, atol=1e-6)
    np.testing.assert_allclose(back.geometry.origin, grid.origin, atol=1e-4)
    assert back.slice_spacing == pytest.approx(grid.spacing[2] / 2, abs=1e-4)
    converted, log = dcm2niix(out, tmp_path / "dcm2niix")
    assert "Gantry Tilt" not in log and "gantry tilt" not in log, log
    ours, theirs = (nib.as_closest_canonical(nib.load(str(p))) for p in (nifti, converted))
    np.testing.assert_allclose(theirs.affine, ours.affine, atol=1e-3)
    np.testing.assert_array_equal(theirs.get_fdata(), ours.get_fdata())


def test_nifti_to_dicom_needs_a_template(ct: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    nifti = thinslice.save(thinslice.load(ct), tmp_path / "ct.nii.gz")
    out = tmp_path / "thin"
    assert main(["upsample", "-i", str(nifti), "-o", str(out), "--output-format", "dicom", *LINEAR]) == 2
    assert "cannot write DICOM from ct.nii.gz" in one_error_line(capfd) and not out.exists()
    other = filled_dicom(tmp_path / "other", series_uid="1.2.826.0.1.3680043.8.498.3333")
    capfd.readouterr()
    assert main(["-q", "upsample", "-i", str(nifti), "-o", f"{out}/", "--dicom-template", str(ct), *LINEAR]) == 0
    written = headers(out)
    assert {(ds.PatientID, ds.StudyInstanceUID) for ds in written} == {(PATIENT_ID, STUDY_UID)}
    assert written[0].ReferencedSeriesSequence[0].SeriesInstanceUID == SERIES_UID
    from_dicom = tmp_path / "from_dicom.nii.gz"
    assert main(["-q", "upsample", "-i", str(ct), "-o", str(from_dicom), *LINEAR]) == 0
    np.testing.assert_array_equal(thinslice.load(out).data, thinslice.load(from_dicom).data)
    # a DICOM input is its own template; a template elsewhere in space is refused
    assert main(["upsample", "-i", str(ct), "-o", str(tmp_path / "x"), "--dicom-template", str(other)]) == 2
    assert "a DICOM series is its own template" in one_error_line(capfd)
    moved = tmp_path / "moved.nii.gz"
    image = sitk.ReadImage(str(nifti))
    image.SetOrigin(tuple(np.add(image.GetOrigin(), (0, 0, 100.0))))
    sitk.WriteImage(image, str(moved))
    assert main(["upsample", "-i", str(moved), "-o", str(tmp_path / "y"), "--dicom-template", str(ct), *LINEAR]) == 2
    assert "lies outside the DICOM template series" in one_error_line(capfd)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_a_dcm2niix_file_goes_back_as_its_source_is_shown(ct: Path, tmp_path: Path) -> None:
    """dcm2niix flips the rows and may reverse the slices; written back with the series as
    template, the new series runs as its source does (orientation, normal, numbering), so
    a viewer shows it the same way up, with the same voxels at the same places."""
    converted, _ = dcm2niix(ct, tmp_path / "dcm2niix")
    assert nib.load(converted).affine[1, 1] > 0  # RAS rows: LPS column cosines (0, -1, 0)
    out, direct = tmp_path / "thin", tmp_path / "direct"
    assert main(["-q", "upsample", "-i", str(converted), "-o", f"{out}/", "--dicom-template", str(ct), *LINEAR]) == 0
    assert main(["-q", "upsample", "-i", str(ct), "-o", f"{direct}/", *LINEAR]) == 0
    source, back, straight = headers(ct)[0], headers(out), headers(direct)
    assert [list(map(float, ds.ImageOrientationPatient)) for ds in back] == [
        list(map(float, source.ImageOrientationPatient))
    ] * len(back)
    for mine, theirs in zip(back, straight, strict=True):  # the same files, one by one
        assert mine.InstanceNumber == theirs.InstanceNumber
        np.testing.assert_allclose(mine.ImagePositionPatient, theirs.ImagePositionPatient, atol=1e-3)
        assert float(mine.SliceLocation) == pytest.approx(float(theirs.SliceLocation), abs=1e-3)
        np.testing.assert_array_equal(mine.pixel_array, theirs.pixel_array)


def test_a_file_without_a_thickness_takes_the_templates(
    ct: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str], one_thread: None
) -> None:
    """A NIfTI made elsewhere from the series says nothing of its slice thickness (3 mm
    slices every 2 mm here); with the series as --dicom-template, the bundled model is run
    for the template's SliceThickness, as on the series itself, not for contiguous slices."""
    image = nib.load(thinslice.save(thinslice.load(ct), tmp_path / "noted.nii.gz"))
    image.header["descrip"] = b""  # as dcm2niix or another converter leaves it: no thinslice note
    plain = tmp_path / "ct.nii.gz"
    nib.save(image, plain)
    assert thinslice.load(plain).slice_thickness is None and thinslice.load(ct).slice_thickness == 3.0
    capfd.readouterr()
    assert main(["upsample", "-i", str(plain), "-o", f"{tmp_path / 'thin'}/", "--dicom-template", str(ct)]) == 0
    assert "slice thickness 3 mm, from the DICOM template's SliceThickness" in capfd.readouterr().err
    assert main(["-q", "upsample", "-i", str(ct), "-o", str(tmp_path / "series.nii.gz")]) == 0
    assert main(["-q", "upsample", "-i", str(plain), "-o", str(tmp_path / "assumed.nii.gz")]) == 0
    from_template, from_series = thinslice.load(tmp_path / "thin"), thinslice.load(tmp_path / "series.nii.gz")
    np.testing.assert_allclose(from_template.data, from_series.data, atol=1.0)  # DICOM keeps whole HU
    # read as contiguous 2 mm slices, the output neither reaches into the 3 mm end slices
    # (one slice fewer at each end) nor holds the same voxels where the two grids meet
    assumed = thinslice.load(tmp_path / "assumed.nii.gz").data
    assert assumed.shape[0] == from_series.data.shape[0] - 2
    assert np.abs(assumed - from_series.data[1:-1]).max() > 20
    # info -i says what upsample does: with the template, the template's thickness and grid
    capfd.readouterr()
    assert main(["info", "-i", str(plain), "--dicom-template", str(ct)]) == 0
    with_template = capfd.readouterr().out
    assert main(["info", "-i", str(ct)]) == 0
    on_series = capfd.readouterr().out
    assert "3 mm thick (as read, overlapping)" in with_template
    assert with_template.splitlines()[2:] == on_series.splitlines()[2:]  # the same grid, made by the same models
    assert f"to {len(from_series.data)} slices" in with_template
    assert main(["info", "-i", str(plain)]) == 0
    assert "assumed: contiguous" in capfd.readouterr().out
    assert main(["info", "-i", str(ct), "--dicom-template", str(ct)]) == 2
    assert "a DICOM series is its own template" in one_error_line(capfd)


def test_refusals_leave_no_series(ct: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch) -> None:
    out = tmp_path / "thin"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    assert main(["upsample", "-i", str(ct), "-o", str(out), *LINEAR]) == 2
    assert "already holds files; pass --overwrite" in one_error_line(capfd)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]

    # the fixture as shipped has no StudyInstanceUID: refused, or a new study when asked
    fresh = tmp_path / "fresh"
    assert main(["upsample", "-i", str(DICOM_CROP), "-o", str(fresh), *LINEAR]) == 2
    assert "has no StudyInstanceUID" in one_error_line(capfd) and not fresh.exists()
    assert main(["-q", "upsample", "-i", str(DICOM_CROP), "-o", str(fresh), *LINEAR, "--new-study"]) == 0
    study = {str(ds.StudyInstanceUID) for ds in headers(fresh)}
    assert len(study) == 1 and study != {""}

    # a write that fails part-way leaves neither a series nor a hidden folder
    real, calls = dicom_write._write_file, []

    def failing(ds: pydicom.Dataset, path: Path) -> None:
        calls.append(path)
        if len(calls) > 5:
            raise OSError(28, "No space left on device")
        real(ds, path)

    monkeypatch.setattr(dicom_write, "_write_file", failing)
    capfd.readouterr()
    assert main(["-q", "upsample", "-i", str(ct), "-o", str(tmp_path / "half"), *LINEAR]) == 2
    assert "cannot write the DICOM series" in one_error_line(capfd) and len(calls) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh", "thin"]
    assert main(["-q", "upsample", "-i", str(ct), "-o", str(out), *LINEAR, "--overwrite"]) == 2
    assert [p.name for p in out.iterdir()] == ["mine.txt"]  # the old content is kept


def panel_boxes(png: Path) -> list[tuple[int, int, int, int]]:
    """(left, right, top, bottom) pixel boxes of the pictures in the first row of a preview."""
    image = matplotlib.image.imread(str(png))[..., :3]
    dpi = figures.DPI
    top = int((figures.HEAD_IN + figures.TITLE_IN) * dpi) + 2
    band = image[top : top + int(figures._ROW_IN[0] * dpi) - 4, int(figures.LABEL_IN * dpi) - 2 :]
    drawn = np.flatnonzero((band < 0.99).any(axis=(0, 2)))
    runs = np.split(drawn, np.flatnonzero(np.diff(drawn) > 1) + 1)
    boxes = []
    for run in runs:
        cols = image[:, int(figures.LABEL_IN * dpi) - 2 + run[0] : int(figures.LABEL_IN * dpi) - 2 + run[-1] + 1]
        rows = np.flatnonzero((cols[top - 2 : top + int(figures._ROW_IN[1] * dpi)] < 0.99).any(axis=(1, 2)))
        first_rows = np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1)[0]
        boxes.append((int(run[0]), int(run[-1]), int(first_rows[0]), int(first_rows[-1])))
    return boxes


def test_preview_shows_input_and_output_at_the_physical_aspect(ct: Path, tmp_path: Path) -> None:
    png = tmp_path / "preview.png"
    assert main(["-q", "upsample", "-i", str(ct), "-o", str(tmp_path / "thin"), *LINEAR, "--preview", str(png)]) == 0
    height, width = matplotlib.image.imread(str(png)).shape[:2]
    thick = thinslice.load(ct)
    assert figures.choose_windows(thick.data) == [figures.SOFT_TISSUE]  # no lung, little bone in this crop
    # coronal: 16 mm by 62.5 mm, more than FLATTEST times as wide as tall: its middle 50 columns
    shown = np.ceil(figures.FLATTEST * 8 * 2.0 / 0.9765625) * 0.9765625
    row_in = max(figures._ROW_IN[0], figures.PANEL_IN * (8 * 2.0) / shown)
    assert width == round(figures.DPI * (figures.LABEL_IN + 2 * (figures.PANEL_IN + figures.GAP_IN)))
    assert height == round(figures.DPI * (figures.HEAD_IN + figures.TITLE_IN + 2 * (row_in + figures.GAP_IN)))
    boxes = panel_boxes(png)
    assert len(boxes) == 2  # input and output (linear gives no uncertainty map)
    for left, right, top, bottom in boxes:
        # 16 mm of input; the output's 17 slices 1 mm apart reach past the end slices' centres
        assert 0.97 * 16 / shown <= (bottom - top + 1) / (right - left + 1) <= 1.03 * 17 / shown


def test_derived_series_names_the_checkpoint_that_made_it(ct: Path, tmp_path: Path, one_thread: None) -> None:
    """Thick DICOM slices through the bundled model: the derivation names the checkpoints
    the run picked (not the thin-slice family's: this series is 3 mm slices every 2 mm, so
    the two thick-slice families blended) and says every slice was synthesized."""
    out = tmp_path / "thin"
    assert main(["-q", "upsample", "-i", str(ct), "-o", f"{out}/", "--scale", "2"]) == 0
    derivation = str(headers(out)[0].DerivationDescription)
    assert "model profile_x2.pt 0.48 + profile_soft_x2.pt 0.52 (bundled), x2" in derivation, derivation
    assert derivation.endswith("every slice synthesized (thick input)")


def test_a_thickness_other_than_the_spacing_is_named_in_the_derivation(ct: Path, tmp_path: Path) -> None:
    """The series is named by its spacing (1.0 mm), as clinical series are; with
    --output-thickness 3 only SliceThickness said the slices were 3 mm thick."""
    out = tmp_path / "thin"
    assert (
        main(["-q", "upsample", "-i", str(ct), "-o", f"{out}/", "-r", "2", "-m", "linear", "--output-thickness", "3"])
        == 0
    )
    (first, *_) = headers(out)
    assert float(first.SliceThickness) == 3.0 and str(first.SeriesDescription).endswith("x2 1.0 mm")
    assert "slice spacing 2.0 -> 1.0 mm, 3.0 mm thick; every slice synthesized" in str(first.DerivationDescription)


def test_preview_adds_the_uncertainty_map_of_the_model(tmp_path: Path, one_thread: None) -> None:
    png = tmp_path / "preview.png"
    args = ["-q", "upsample", "-i", str(LIMB_CROP), "-o", str(tmp_path / "thin.nii.gz"), "--scale", "2"]
    assert main([*args, "--preview", str(png)]) == 0
    assert len(panel_boxes(png)) == 3
    assert matplotlib.image.imread(str(png)).shape[1] == round(
        figures.DPI * (figures.LABEL_IN + 3 * (figures.PANEL_IN + figures.GAP_IN))
    )


REFUSALS = {  # case -> (arguments after `upsample`, the start of the one error line)
    "NIfTI to DICOM without a template": (
        ["-i", "{nii}", "-o", "{tmp}/thin", "--output-format", "dicom"],
        "error: cannot write DICOM from ct.nii.gz: a NIfTI/NRRD/MHA file names no patient or study",
    ),
    "a template for a DICOM input": (
        ["-i", "{ct}", "-o", "{tmp}/thin", "--dicom-template", "{ct}"],
        "error: --dicom-template is for NIfTI/NRRD/MHA input; a DICOM series is its own template",
    ),
    "a template for file output": (
        ["-i", "{nii}", "-o", "{tmp}/thin.nii.gz", "--dicom-template", "{ct}"],
        "error: --dicom-template and --new-study apply to DICOM output (--output-format dicom)",
    ),
    "DICOM output to a file name": (
        ["-i", "{ct}", "-o", "{tmp}/thin.nii.gz", "--output-format", "dicom"],
        "error: DICOM output is a folder (one file per slice), but -o {tmp}/thin.nii.gz names a file",
    ),
    "no StudyInstanceUID": (
        ["-i", "{crop}", "-o", "{tmp}/thin"],
        "error: the DICOM series in {crop} has no StudyInstanceUID, so a derived series cannot join its study; "
        "pass --new-study",
    ),
    "output folder holds files": (["-i", "{ct}", "-o", "{full}"], "error: output folder {full} already holds files"),
    "output is the input": (
        ["-i", "{ct}", "-o", "{ct}", "--overwrite"],
        "error: output {ct} is or holds the input {ct}; choose another folder",
    ),
    "output parent missing": (
        ["-i", "{ct}", "-o", "{tmp}/no/thin/"],
        "error: the folder to hold thin does not exist: {tmp}/no; create it first",
    ),
    "preview not a PNG": (
        ["-i", "{ct}", "-o", "{tmp}/thin", "--preview", "{tmp}/p.jpg"],
        "error: unsupported --preview type: p.jpg; end the name with .png",
    ),
    "unknown output format": (
        ["-i", "{ct}", "-o", "{tmp}/thin", "--output-format", "png"],
        "error: unknown output format 'png'; choose one of nii.gz, nii, nrrd, mha, dicom",
    ),
    "batch with a template": (
        ["-i", "{tree}", "-o", "{tmp}/out", "--output-format", "dicom", "--dicom-template", "{ct}"],
        "error: --dicom-template names the series of one file; in a batch each DICOM series is its own",
    ),
    "batch preview as a file": (
        ["-i", "{tree}", "-o", "{tmp}/out", "--preview", "{tmp}/p.png"],
        "error: in a batch --preview names a folder for one PNG per case, not p.png",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_dicom_refusals_are_one_line(ct: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str], case: str) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep")
    (tmp_path / "tree").mkdir()
    shutil.copytree(ct, tmp_path / "tree" / "a")
    shutil.copy(LIMB_CROP, tmp_path / "tree" / "limb.nii.gz")
    names = {"ct": ct, "tmp": tmp_path, "crop": DICOM_CROP, "full": tmp_path / "full", "tree": tmp_path / "tree"}
    names["nii"] = thinslice.save(thinslice.load(ct), tmp_path / "ct.nii.gz")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    args, message = REFUSALS[case]
    assert main(["upsample", *(a.format(**names) for a in args), *LINEAR]) == 2
    assert one_error_line(capfd).startswith(message.format(**names))
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written
