"""The derived DICOM series writer, on the real CT series in tests/data/dicom.

Each written series is read back with SimpleITK, thinslice, pydicom and dcm2niix and
compared with the volume that was written (and with thinslice's NIfTI of it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

import thinslice
from tests.conftest import DICOM_CROP, PATIENT_ID, SERIES_UID, STUDY_UID, dcm2niix, filled_dicom, rotation_30_20
from thinslice.errors import InputError, OutputError
from thinslice.io import atomic, dicom_write, load, save
from thinslice.io.dicom_write import read_template, write_dicom_series
from thinslice.volume import Geometry, Volume

DESCRIPTION = "CT Body 3.0 thinslice x2 1.0 mm"
DERIVATION = f"linear interpolation x2 (test), thinslice {thinslice.__version__}"


def _upsample_x2(volume: Volume) -> Volume:
    """Linear interpolation x2 along the slice axis (float32; midpoints are exact halves)."""
    d = volume.data.astype(np.float32)
    out = np.empty((2 * len(d) - 1, *d.shape[1:]), np.float32)
    out[::2], out[1::2] = d, (d[:-1] + d[1:]) / 2
    return volume.with_data(out, volume.slice_spacing / 2)


def _write(volume: Volume, out: Path, template: Path, **kwargs) -> Path:
    return write_dicom_series(volume, out, template=template, description=DESCRIPTION, derivation=DERIVATION, **kwargs)


def _headers(folder: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(f) for f in sorted(folder.iterdir())]


def _sitk_series(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def _same_geometry(a: Geometry, b: Geometry) -> None:
    np.testing.assert_allclose(a.spacing, b.spacing, atol=1e-4)
    np.testing.assert_allclose(a.origin, b.origin, atol=1e-4)
    np.testing.assert_allclose(a.direction, b.direction, atol=1e-4)
    assert a.slice_axis == b.slice_axis


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return filled_dicom(tmp_path_factory.mktemp("template") / "ct")


@pytest.fixture(scope="module")
def thin(template: Path) -> Volume:
    return _upsample_x2(load(template))


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory, template: Path, thin: Volume) -> Path:
    return _write(thin, tmp_path_factory.mktemp("written") / "thin", template)


def test_simpleitk_and_thinslice_read_back_the_volume_exactly(written: Path, thin: Volume, tmp_path: Path) -> None:
    assert thin.num_slices == 15 and not np.array_equal(thin.data, np.rint(thin.data))  # halves: the rescaled path
    nifti = sitk.ReadImage(str(save(thin, tmp_path / "thin.nii.gz")))
    image = _sitk_series(written)
    assert image.GetSize() == nifti.GetSize() == (64, 64, 15)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image).astype(np.float64), sitk.GetArrayFromImage(nifti))
    np.testing.assert_allclose(image.GetOrigin(), nifti.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(image.GetSpacing(), nifti.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(image.GetDirection(), nifti.GetDirection(), atol=1e-4)
    back = load(written)
    np.testing.assert_array_equal(back.data, thin.data)
    _same_geometry(back.geometry, thin.geometry)


def test_integer_hu_are_stored_unscaled_and_other_values_within_half_a_step(
    template: Path, thin: Volume, tmp_path: Path
) -> None:
    whole = thin.with_data(np.rint(thin.data).astype(np.int16))
    ds = pydicom.dcmread(next(_write(whole, tmp_path / "int", template).iterdir()))
    assert (float(ds.RescaleSlope), float(ds.RescaleIntercept), ds.PixelRepresentation) == (1.0, 0.0, 1)
    np.testing.assert_array_equal(load(tmp_path / "int").data, whole.data)
    noisy = thin.with_data(thin.data + np.random.default_rng(0).uniform(-0.5, 0.5, thin.data.shape).astype(np.float32))
    ds = pydicom.dcmread(next(_write(noisy, tmp_path / "float", template).iterdir()))
    slope = float(ds.RescaleSlope)
    assert 0 < slope <= 2**-3 and np.log2(slope) == round(np.log2(slope))  # a power of two: exact in text
    stored = np.stack([pydicom.dcmread(f).pixel_array for f in sorted((tmp_path / "float").iterdir())])
    assert np.abs(stored.astype(np.int32)).max() > 32767 // 2  # the smallest slope that fits int16
    error = np.abs(load(tmp_path / "float").data.astype(np.float64) - noisy.data)
    assert 0 < error.max() <= slope / 2 + 1e-6


def test_attributes_make_a_derived_series_of_the_same_study(written: Path, template: Path, thin: Volume) -> None:
    sources = _headers(template)
    source_sops = {str(ds.SOPInstanceUID) for ds in sources}
    by_z = sorted(sources, key=lambda ds: float(ds.ImagePositionPatient[2]))  # thin slice 2m is acquired slice m
    files = sorted(written.iterdir())
    headers = [pydicom.dcmread(f) for f in files]  # no force: preamble and file meta are present
    assert [ds.InstanceNumber for ds in headers] == list(range(1, thin.num_slices + 1))
    # numbered head to feet as the source is (its numbers fall as z grows): sorted by z here
    headers.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    assert len(headers) == thin.num_slices
    for k, ds in enumerate(headers):
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian and ds.SOPClassUID == CTImageStorage
        assert (ds.StudyInstanceUID, ds.PatientID) == (STUDY_UID, PATIENT_ID)
        assert ds.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
        assert ds.PatientWeight == sources[0].PatientWeight and ds.Manufacturer == "SIEMENS"
        assert list(ds.ConvolutionKernel) == list(sources[0].ConvolutionKernel) and ds.KVP == 120
        assert list(ds.WindowCenter) == [40, 300] and list(ds.WindowWidth) == [300, 1500]
        assert list(ds.ImageType[:2]) == ["DERIVED", "SECONDARY"]
        assert ds.InstanceNumber == thin.num_slices - k
        assert ds.SeriesNumber == 1003 and ds.SeriesDescription == DESCRIPTION
        assert ds.DerivationDescription == DERIVATION
        assert float(ds.SliceThickness) == float(ds.SpacingBetweenSlices) == 1.0
        np.testing.assert_allclose(ds.ImagePositionPatient, thin.geometry.slice_position(k), atol=1e-6)
        assert float(ds.SliceLocation) == pytest.approx(float(ds.ImagePositionPatient[2]))
        assert "AcquisitionTime" not in ds and not any(elem.tag.is_private for elem in ds)
        refs = [str(item.ReferencedSOPInstanceUID) for item in ds.SourceImageSequence]
        nearest = by_z[k // 2] if k % 2 == 0 else None
        expected = (
            [by_z[k // 2].SOPInstanceUID]
            if k % 2 == 0
            else [by_z[k // 2].SOPInstanceUID, by_z[k // 2 + 1].SOPInstanceUID]
        )
        assert sorted(refs) == sorted(expected)
        if nearest is not None:  # per-slice scanner values come from the nearest acquired slice
            assert ds.XRayTubeCurrent == nearest.XRayTubeCurrent and ds.CTDIvol == nearest.CTDIvol
        equipment = ds.ContributingEquipmentSequence[0]
        assert (equipment.Manufacturer, equipment.SoftwareVersions) == ("thinslice", thinslice.__version__)
        (series_ref,) = ds.ReferencedSeriesSequence
        assert series_ref.SeriesInstanceUID == SERIES_UID
        assert {str(i.ReferencedSOPInstanceUID) for i in series_ref.ReferencedInstanceSequence} == source_sops
    series_uids = {ds.SeriesInstanceUID for ds in headers}
    sops = [str(ds.SOPInstanceUID) for ds in headers]
    assert len(series_uids) == 1 and series_uids != {SERIES_UID}
    assert len(set(sops)) == len(sops) and not set(sops) & source_sops


def test_deterministic_uids_are_stable_across_writes(
    written: Path, template: Path, thin: Volume, tmp_path: Path
) -> None:
    def uids(folder: Path) -> list[str]:
        return [str(ds.SeriesInstanceUID) for ds in _headers(folder)[:1]] + [
            str(ds.SOPInstanceUID) for ds in _headers(folder)
        ]

    assert uids(_write(thin, tmp_path / "again", template)) == uids(written)
    fresh = uids(_write(thin, tmp_path / "random", template, deterministic_uids=False))
    assert not set(fresh) & set(uids(written))
    other = thin.with_data(thin.data + 1)  # other pixels, same texts and grid: never the same UIDs
    assert not set(uids(_write(other, tmp_path / "other", template))) & set(uids(written))


def test_dcm2niix_converts_to_the_same_volume_without_warnings(written: Path, thin: Volume, tmp_path: Path) -> None:
    converted, log = dcm2niix(written, tmp_path / "dcm2niix")
    assert not any(word in log for word in ("Warning", "Unable", "variable")), log
    ours = nib.as_closest_canonical(nib.load(str(save(thin, tmp_path / "thin.nii.gz"))))
    theirs = nib.as_closest_canonical(nib.load(str(converted)))
    assert theirs.shape == ours.shape == (64, 64, 15)
    np.testing.assert_allclose(theirs.affine, ours.affine, atol=1e-3)
    np.testing.assert_array_equal(theirs.get_fdata(), ours.get_fdata())


def test_oblique_series_round_trips(tmp_path: Path) -> None:
    template = filled_dicom(tmp_path / "oblique", rotation=rotation_30_20())
    thick = load(template)
    direction = np.asarray(thick.geometry.direction).reshape(3, 3)
    assert np.abs(direction).max(axis=0).max() < 0.95  # no axis is close to a patient axis
    assert thick.data.shape == (8, 64, 40) and thick.geometry.spacing[:2] == (0.8, 0.9765625)
    thin = _upsample_x2(thick)
    out = _write(thin, tmp_path / "thin", template)
    back = load(out)
    np.testing.assert_array_equal(back.data, thin.data)
    _same_geometry(back.geometry, thin.geometry)
    image = _sitk_series(out)
    np.testing.assert_allclose(image.GetDirection(), thin.geometry.direction, atol=1e-4)
    np.testing.assert_allclose(image.GetOrigin(), thin.geometry.origin, atol=1e-4)


def test_slice_axis_other_than_k_writes_the_same_slices(template: Path, thin: Volume, tmp_path: Path) -> None:
    """The same physical volume with ITK axes (k, i, j) and slice_axis 0: same data, same series."""
    g = thin.geometry
    d = np.asarray(g.direction).reshape(3, 3)
    permuted = Geometry(
        spacing=(g.spacing[2], g.spacing[0], g.spacing[1]),
        origin=g.origin,
        direction=tuple(d[:, [2, 0, 1]].ravel().tolist()),
        slice_axis=0,
    )
    volume = Volume.from_itk_array(np.transpose(thin.itk_array(), (1, 2, 0)), permuted, meta=thin.meta)
    np.testing.assert_array_equal(volume.data, thin.data)
    back = load(_write(volume, tmp_path / "thin", template))
    np.testing.assert_array_equal(back.data, thin.data)
    _same_geometry(back.geometry, thin.geometry)


def test_left_handed_grid_reads_back_reversed_at_the_same_positions(
    template: Path, thin: Volume, tmp_path: Path
) -> None:
    g = thin.geometry
    d = np.asarray(g.direction).reshape(3, 3) * [1, 1, -1]  # slices run against cross(row, column)
    x, y, z = (float(v) for v in g.slice_position(thin.num_slices - 1))
    flipped = Volume(thin.data[::-1].copy(), Geometry(g.spacing, (x, y, z), tuple(d.ravel().tolist())), meta=thin.meta)
    back = load(_write(flipped, tmp_path / "thin", template))
    np.testing.assert_array_equal(back.data, thin.data)
    _same_geometry(back.geometry, thin.geometry)


def test_existing_output_is_refused_then_replaced_with_overwrite(template: Path, thin: Volume, tmp_path: Path) -> None:
    out = tmp_path / "thin"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="already holds files"):
        _write(thin, out, template)
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"
    _write(thin, out, template, overwrite=True, slice_thickness=1.5)
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == thin.num_slices and "keep.txt" not in names
    assert float(pydicom.dcmread(out / names[0]).SliceThickness) == 1.5
    assert _hidden(tmp_path) == []


def test_the_volumes_thickness_is_the_series_thickness(tmp_path: Path) -> None:
    """The series as read (3 mm slices every 2 mm) goes back 3 mm thick, and an upsampled
    one as thick as it was made (it was written as thick as its spacing)."""
    scan = load(DICOM_CROP)
    as_read = _headers(_write(scan, tmp_path / "same", DICOM_CROP, new_study=True))
    assert {float(ds.SliceThickness) for ds in as_read} == {3.0} and float(as_read[0].SpacingBetweenSlices) == 2.0
    thick = thinslice.upsample(scan, 2, method="linear", output_thickness=3.0)
    assert {
        float(ds.SliceThickness) for ds in _headers(_write(thick, tmp_path / "up", DICOM_CROP, new_study=True))
    } == {3.0}


def test_template_without_study_uid_is_refused_unless_new_study(tmp_path: Path) -> None:
    thin = _upsample_x2(load(DICOM_CROP))  # the fixture as shipped: empty Study/Series UIDs
    with pytest.raises(InputError, match="no StudyInstanceUID"):
        write_dicom_series(thin, tmp_path / "thin", template=DICOM_CROP, description=DESCRIPTION, derivation="x")
    assert not (tmp_path / "thin").exists()
    description = "CT Body 3.0 thinslice ×2 1.0 mm"  # not ASCII: the series switches to UTF-8
    out = write_dicom_series(
        thin, tmp_path / "thin", template=DICOM_CROP, description=description, derivation="x", new_study=True
    )
    headers = _headers(out)
    assert len({ds.StudyInstanceUID for ds in headers}) == 1 and headers[0].StudyInstanceUID
    assert (headers[0].SpecificCharacterSet, headers[0].SeriesDescription) == ("ISO_IR 192", description)
    assert headers[0].PatientWeight == pydicom.dcmread(next(DICOM_CROP.iterdir())).PatientWeight
    # another series derived from the same source joins that new study, in the same patient space
    other = write_dicom_series(
        thin.with_data(thin.data + 1), tmp_path / "other", template=DICOM_CROP, description="x3", derivation="y",
        new_study=True,
    )  # fmt: skip
    again = _headers(other)[0]
    assert again.StudyInstanceUID == headers[0].StudyInstanceUID
    assert again.FrameOfReferenceUID == headers[0].FrameOfReferenceUID
    assert again.SeriesInstanceUID != headers[0].SeriesInstanceUID


def test_a_new_study_is_its_own_study(written: Path, template: Path, thin: Volume, tmp_path: Path) -> None:
    """The same job filed in the source's study and in a new one made the same series and
    instance UIDs under two studies (an archive holding one rejects or misfiles the other),
    and the new study claimed the old one's accession number, study ID and order."""
    source = tmp_path / "ordered"
    shutil.copytree(template, source)
    for path in source.iterdir():
        ds = pydicom.dcmread(path)
        ds.AccessionNumber, ds.StudyID = "ACC123", "7"
        item = pydicom.Dataset()
        item.RequestedProcedureID = "RP1"
        ds.RequestAttributesSequence = pydicom.Sequence([item])
        ds.save_as(path)
    own, new = (
        _headers(_write(thin, tmp_path / name, source, new_study=flag)) for name, flag in (("own", 0), ("new", 1))
    )
    assert new[0].StudyInstanceUID != own[0].StudyInstanceUID == STUDY_UID
    uids = lambda headers: {str(ds.SeriesInstanceUID) for ds in headers} | {str(ds.SOPInstanceUID) for ds in headers}  # noqa: E731
    assert not uids(own) & uids(new)
    assert uids(own) == uids(_headers(written))  # into the source's study: the UIDs as before
    assert (own[0].AccessionNumber, own[0].StudyID, len(own[0].RequestAttributesSequence)) == ("ACC123", "7", 1)
    assert (new[0].AccessionNumber, new[0].StudyID) == ("", "") and "RequestAttributesSequence" not in new[0]


def test_a_new_study_is_one_per_patient_even_without_source_uids(tmp_path: Path) -> None:
    """Anonymised exports may leave the datasets' UIDs empty (the file meta keeps them):
    the new study and frame of reference still follow the patient, never the slice count,
    and the source slices are still referenced."""
    for patient in ("ONE", "ANOTHER"):
        shutil.copytree(DICOM_CROP, tmp_path / patient)
        for path in (tmp_path / patient).iterdir():
            ds = pydicom.dcmread(path)
            ds.PatientID, ds.SOPInstanceUID = patient, ""
            del ds.FrameOfReferenceUID
            ds.save_as(path)
    thin = _upsample_x2(load(DICOM_CROP))
    mine = _headers(_write(thin, tmp_path / "mine", tmp_path / "ONE", new_study=True))[0]
    theirs = _headers(_write(thin, tmp_path / "theirs", tmp_path / "ANOTHER", new_study=True))[0]
    assert theirs.PatientID == "ANOTHER" and theirs.StudyInstanceUID != mine.StudyInstanceUID
    assert theirs.FrameOfReferenceUID != mine.FrameOfReferenceUID  # both new, and not shared
    other = tmp_path / "ANOTHER"
    stored = {pydicom.dcmread(p).file_meta.MediaStorageSOPInstanceUID for p in other.iterdir()}
    assert {item.ReferencedSOPInstanceUID for item in theirs.SourceImageSequence} <= stored


def test_failure_part_way_leaves_no_folder_and_keeps_the_old_series(
    template: Path, thin: Volume, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real, calls = dicom_write._write_file, []

    def failing(ds: pydicom.Dataset, path: Path) -> None:
        calls.append(path)
        if len(calls) > 3:
            raise OSError(28, "No space left on device")
        real(ds, path)

    monkeypatch.setattr(dicom_write, "_write_file", failing)
    with pytest.raises(OutputError, match="No space left"):
        _write(thin, tmp_path / "thin", template)
    assert len(calls) == 4 and not (tmp_path / "thin").exists() and _hidden(tmp_path) == []
    old = tmp_path / "old"
    old.mkdir()
    (old / "keep.txt").write_text("mine")
    calls.clear()
    with pytest.raises(OutputError):
        _write(thin, old, template, overwrite=True)
    assert [p.name for p in old.iterdir()] == ["keep.txt"] and _hidden(tmp_path) == []
    monkeypatch.setattr(dicom_write, "_write_file", real)
    rename, renames = os.rename, []

    def failing_rename(src: Path, dst: Path) -> None:  # set the old series aside, then fail
        renames.append(dst)
        if len(renames) == 2:
            raise OSError(13, "Permission denied")
        rename(src, dst)

    monkeypatch.setattr(atomic.os, "rename", failing_rename)
    with pytest.raises(OutputError, match="Permission denied"):
        _write(thin, old, template, overwrite=True)
    monkeypatch.undo()
    assert len(renames) == 3 and renames[-1] == old  # the third rename put the old series back
    assert [p.name for p in old.iterdir()] == ["keep.txt"] and _hidden(tmp_path) == []


def test_inputs_are_never_overwritten_and_foreign_volumes_refused(template: Path, thin: Volume, tmp_path: Path) -> None:
    before = sorted(p.name for p in template.iterdir())
    with pytest.raises(OutputError, match="input"):
        _write(thin, template, template, overwrite=True)
    with pytest.raises(OutputError, match="input"):
        _write(thin, template.parent, template, overwrite=True)
    assert sorted(p.name for p in template.iterdir()) == before
    g = thin.geometry
    moved = Volume(
        thin.data, Geometry(g.spacing, (g.origin[0], g.origin[1], g.origin[2] + 100.0), g.direction), meta={}
    )
    with pytest.raises(InputError, match="outside"):
        _write(moved, tmp_path / "moved", template)
    with pytest.raises(InputError, match="read from series"):
        write_dicom_series(
            thin, tmp_path / "x", template=DICOM_CROP, description=DESCRIPTION, derivation="x", new_study=True
        )
    assert _hidden(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_checked_template_is_reused_and_the_study_rule_holds(template: Path, thin: Volume, tmp_path: Path) -> None:
    checked = read_template(template, volume=thin)
    assert (checked.uid, checked.study_uid, checked.description) == (SERIES_UID, STUDY_UID, "CT Body 3.0")
    out = _write(thin, tmp_path / "thin", checked)
    np.testing.assert_array_equal(load(out).data, thin.data)
    with pytest.raises(InputError, match="no StudyInstanceUID.*--new-study"):
        read_template(DICOM_CROP)
    assert read_template(DICOM_CROP, new_study=True).study_uid == ""


def test_partial_folders_of_dead_processes_are_removed(template: Path, thin: Volume, tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = atomic.writer_tag().rsplit("-", 1)[0]
    stale = tmp_path / f".thin.{host}-{dead.pid}.0123abcd.part"
    stale.mkdir()
    (stale / "IM00001.dcm").write_bytes(b"half")
    live = tmp_path / f".thin.{host}-{os.getpid() + 0}.0123abcd.part"  # this process: never removed
    live.mkdir()
    _write(thin, tmp_path / "thin", template)
    assert not stale.exists() and live.exists()


def test_a_folder_set_aside_by_a_killed_overwrite_comes_back(template: Path, thin: Volume, tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = atomic.writer_tag().rsplit("-", 1)[0]
    aside = tmp_path / f".thin.{host}-{dead.pid}.0123abcd.old"  # killed between the two renames
    aside.mkdir()
    (aside / "IM00001.dcm").write_bytes(b"the previous series")
    atomic.remove_stale_parts(tmp_path / "thin")
    assert not aside.exists() and (tmp_path / "thin" / "IM00001.dcm").read_bytes() == b"the previous series"
    aside.mkdir()  # killed after publishing, before deleting the old folder: it goes
    (aside / "IM00001.dcm").write_bytes(b"older")
    atomic.remove_stale_parts(tmp_path / "thin")
    assert not aside.exists() and (tmp_path / "thin" / "IM00001.dcm").read_bytes() == b"the previous series"


@pytest.mark.parametrize("shift", [0.0, 0.3], ids=["int16 HU", "rescaled"])
def test_the_sources_padding_value_is_kept_for_the_same_hu(tmp_path: Path, shift: float) -> None:
    """A scanner marks pixels outside its field of view with PixelPaddingValue; the derived
    series marks the same HU, in its own stored values, and holds nothing below it."""
    source = filled_dicom(tmp_path / "padded")
    for f in source.iterdir():  # unsigned, intercept -1024: stored 0 is -1024 HU
        ds = pydicom.dcmread(f)
        pixels = ds.pixel_array.copy()
        pixels[:10] = 0  # rows outside the field of view
        ds.PixelData = pixels.tobytes()
        ds.add_new((0x0028, 0x0120), "US", 0)  # PixelPaddingValue, as the pixels are unsigned
        ds.save_as(f, enforce_file_format=True)
    thick = load(source)
    thin = _upsample_x2(thick)
    thin = thin.with_data(np.rint(thin.data) + np.float32(shift))  # shifted: not integral, a slope below 1
    thin.data[:, :10] = -1024.0
    thin.data[1, 0, 0] = -1030.0  # an interpolation's undershoot below the padding
    headers = _headers(_write(thin, tmp_path / "out", source))
    slope, intercept = float(headers[0].RescaleSlope), float(headers[0].RescaleIntercept)
    assert (slope < 1) == (shift != 0)
    for ds in headers:
        pad = int(ds.PixelPaddingValue)
        assert pad * slope + intercept == -1024.0
        stored = ds.pixel_array
        assert stored.min() == pad and np.all(stored[:10] == pad)
    # a source without one gives none
    plain_source = filled_dicom(tmp_path / "plain")
    plain = _headers(_write(_upsample_x2(load(plain_source)), tmp_path / "out2", plain_source))
    assert "PixelPaddingValue" not in plain[0]


def test_type_2_attributes_the_source_lacks_are_written_empty(tmp_path: Path) -> None:
    """A CT image must carry its Type 2 attributes (an archive may refuse it otherwise):
    copied when the source has them, present and empty when it does not. dciodvfy found
    PatientPosition (2C, required for CT) and PositionReferenceIndicator missing."""
    TYPE_2 = ("PatientBirthDate", "PatientSex", "AccessionNumber", "PatientPosition", "PositionReferenceIndicator")
    source = filled_dicom(tmp_path / "src")
    for f in source.iterdir():
        ds = pydicom.dcmread(f)
        for keyword in TYPE_2:
            if keyword in ds:
                delattr(ds, keyword)
        ds.save_as(f, enforce_file_format=True)
    (ds, *_) = _headers(_write(_upsample_x2(load(source)), tmp_path / "out", source))
    for keyword in TYPE_2:
        assert keyword in ds and ds[keyword].is_empty, keyword
    assert ds.PatientID == PATIENT_ID and ds.KVP == 120  # what the source has is still copied


def test_a_series_inside_the_input_folder_and_a_checked_template_without_study_are_refused(tmp_path: Path) -> None:
    """A series written inside the input folder would become part of the input (a second
    series there); a template read for a new study still needs new_study when writing."""
    source = filled_dicom(tmp_path / "src")
    thin = _upsample_x2(load(source))
    with pytest.raises(OutputError, match="lies inside the input folder"):
        _write(thin, source / "thin", source)
    assert sorted(p.name for p in source.iterdir()) == sorted(p.name for p in DICOM_CROP.iterdir())
    bare = read_template(DICOM_CROP, new_study=True)  # the fixture as shipped: no StudyInstanceUID
    with pytest.raises(InputError, match="no StudyInstanceUID"):
        write_dicom_series(
            _upsample_x2(load(DICOM_CROP)), tmp_path / "t", template=bare, description="x", derivation="y"
        )
    assert not (tmp_path / "t").exists()
