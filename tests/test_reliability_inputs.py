"""Second hostile pass (#9), the input side: untrusted headers, DICOM oddities, broken models.

Each bad input is made from the small crops in ``tests/data`` and run through the CLI (one
line, exit 2, nothing written, input unchanged) and the API (same error class and message),
as in :mod:`tests.test_reliability`. The cases that must now *work* (multi-frame CT,
MONOCHROME1, upper-case suffixes) are checked against the classic reading.
"""

from __future__ import annotations

import gzip
import os
import shutil
import struct
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import thinslice
from tests.conftest import DICOM_CROP, LIMB_CROP
from tests.test_reliability import (
    Case,
    _dicom_copy,
    _dicom_edit,
    _limb_array,
    _nifti1_header,
    _tiny_checkpoint,
    assert_one_line,
    digest,
    listing,
    run_cli,
)
from thinslice.errors import InputError, ModelError
from thinslice.io.dicom import read_series

# ----------------------------------------------------------------------------- builders


def _limb_nifti(folder: Path, name: str, edit: Callable[[nib.Nifti1Image], None]) -> Path:
    image = nib.load(str(LIMB_CROP))
    fresh = nib.Nifti1Image(np.asanyarray(image.dataobj), image.affine, image.header.copy())
    edit(fresh)
    nib.save(fresh, str(folder / name))
    return folder / name


def pixdim_zero(folder: Path) -> Path:
    """The slice spacing (pixdim[3], bytes 88-91) set to 0 in the header itself."""
    raw = bytearray(gzip.decompress(LIMB_CROP.read_bytes()))
    raw[88:92] = struct.pack("<f", 0.0)
    (folder / "pixdim0.nii.gz").write_bytes(gzip.compress(bytes(raw)))
    return folder / "pixdim0.nii.gz"


def qform_sform_disagree(folder: Path) -> Path:
    def edit(img: nib.Nifti1Image) -> None:
        shifted = img.affine.copy()
        shifted[:3, 3] += 10.0
        img.set_qform(img.affine, code=1)
        img.set_sform(shifted, code=1)

    return _limb_nifti(folder, "disagree.nii.gz", edit)


def sheared_sform(folder: Path) -> Path:
    def edit(img: nib.Nifti1Image) -> None:
        sheared = img.affine.copy()
        sheared[0, 2] = 0.5 * sheared[2, 2]
        img.set_sform(sheared, code=1)
        img.set_qform(None, code=0)

    return _limb_nifti(folder, "sheared.nii.gz", edit)


def flat_sform(folder: Path) -> Path:
    def edit(img: nib.Nifti1Image) -> None:
        flat = img.affine.copy()
        flat[:3, 2] = 0  # the slice axis of no length
        img.set_sform(flat, code=1)

    return _limb_nifti(folder, "flat.nii.gz", edit)


def _limb_mha(folder: Path, name: str = "scan.mha") -> Path:
    _, image = _limb_array()
    sitk.WriteImage(image, str(folder / "tmp.mha"), useCompression=False)
    (folder / "tmp.mha").rename(folder / name)
    return folder / name


def sheared_mha(folder: Path) -> Path:
    path = _limb_mha(folder)
    head, sep, data = path.read_bytes().partition(b"ElementDataFile = LOCAL\n")
    lines = [ln for ln in head.decode().splitlines() if not ln.startswith("TransformMatrix")]
    lines.append("TransformMatrix = 1 0 0 0.5 0.866025 0 0 0 1")
    path.write_bytes(("\n".join(lines) + "\n").encode() + sep + data)
    return path


def _detached_mha(folder: Path, data_file: str) -> Path:
    text = "ObjectType = Image\nNDims = 3\nDimSize = 8 8 4\nElementType = MET_UCHAR\n"
    (folder / "scan.mhd").write_text(text + f"ElementDataFile = {data_file}\n")
    return folder / "scan.mhd"


def data_file_etc_passwd(folder: Path) -> Path:
    return _detached_mha(folder, "/etc/passwd")


def data_file_outside(folder: Path) -> Path:
    (folder.parent / "outside.raw").write_bytes(b"\0" * 256)
    return _detached_mha(folder, "../outside.raw")


def data_file_fifo(folder: Path) -> Path:
    os.mkfifo(folder / "pipe.raw")
    return _detached_mha(folder, "pipe.raw")


def data_file_list(folder: Path) -> Path:
    (folder / "slice1.raw").write_bytes(b"\0" * 64)
    return _detached_mha(folder, "LIST")


def fifo_input(folder: Path) -> Path:
    os.mkfifo(folder / "fifo.nii.gz")
    return folder / "fifo.nii.gz"


def tiny_gz_huge_header(folder: Path) -> Path:
    """A 66-byte-class .nii.gz whose header claims 1100^3 int16 voxels (2.7 GB)."""
    (folder / "bomb.nii.gz").write_bytes(gzip.compress(_nifti1_header((1100, 1100, 1100))))
    return folder / "bomb.nii.gz"


def tiny_nrrd_huge_header(folder: Path) -> Path:
    text = "NRRD0004\ntype: short\ndimension: 3\nsizes: 1100 1100 1100\nencoding: gzip\n\n"
    (folder / "bomb.nrrd").write_bytes(text.encode() + gzip.compress(b"\0" * 64))
    return folder / "bomb.nrrd"


def beyond_float32(folder: Path) -> Path:
    array, _ = _limb_array()
    big = array.astype(np.float64)
    big[3, 10, 10] = 1e300
    return _limb_float(folder, big)


def _limb_float(folder: Path, array: np.ndarray) -> Path:
    _, ref = _limb_array()
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(ref)
    sitk.WriteImage(image, str(folder / "f64.nrrd"))
    return folder / "f64.nrrd"


def nifti_folder(folder: Path) -> Path:
    (folder / "scans").mkdir()
    shutil.copy(LIMB_CROP, folder / "scans" / "a.nii.gz")
    return folder / "scans"


def dicom_header_too_big(folder: Path) -> Path:
    files = _dicom_copy(folder)
    for path in files:
        _dicom_edit(path, Rows=2048, Columns=2048)
    return folder / "series"


def dicom_rgb_slice(folder: Path) -> Path:
    files = _dicom_copy(folder)
    _dicom_edit(files[3], SamplesPerPixel=3, PhotometricInterpretation="RGB")
    return folder / "series"


def dicom_bad_orientation(folder: Path) -> Path:
    files = _dicom_copy(folder)
    for path in files:
        _dicom_edit(path, ImageOrientationPatient=[1, 0, 0, 0.5, 0.5, 0])
    return folder / "series"


def dicom_damaged_file(folder: Path) -> Path:
    files = _dicom_copy(folder)
    data = files[4].read_bytes()
    files[4].write_bytes(data[:132] + b"\xff" * 40)  # the DICM preamble, then garbage
    return folder / "series"


INPUT_CASES = [
    Case("NIfTI pixdim 0", pixdim_zero, InputError, r"voxel size of \[.*0\.0\] mm \(pixdim 0.*fix the header"),
    Case("NIfTI qform and sform disagree", qform_sform_disagree, InputError, r"qform and an sform that disagree"),
    Case("NIfTI sheared sform", sheared_sform, InputError, r"sheared sform .*resample it to an orthogonal grid"),
    Case("NIfTI sform axis of no length", flat_sform, InputError, r"flat\.nii\.gz has an sform with an axis of no"),
    Case("MHA sheared direction", sheared_mha, InputError, r"sheared or non-orthogonal direction matrix .*60\.0°"),
    Case("MHA data file /etc/passwd", data_file_etc_passwd, InputError, r"names a data file outside its own folder"),
    Case("MHA data file ../outside", data_file_outside, InputError, r"folder \(\.\./outside\.raw -> .*outside\.raw\)"),
    Case("MHA data file is a FIFO", data_file_fifo, InputError, r"pipe\.raw .* is a FIFO \(named pipe\)"),
    Case("MHA data files as a LIST", data_file_list, InputError, r"spreads its voxels over several files \('LIST'\)"),
    Case("input is a FIFO", fifo_input, InputError, r"fifo\.nii\.gz is a FIFO \(named pipe\), not a regular file"),
    Case("tiny .nii.gz claiming 1100^3", tiny_gz_huge_header, InputError, r"compressed bytes cannot unpack to that"),
    Case("tiny NRRD claiming 1100^3", tiny_nrrd_huge_header, InputError, r"compressed data of \d+ bytes cannot"),
    Case("a voxel beyond float32", beyond_float32, InputError, r"1 voxel\(s\) beyond ±1e\+30 \(largest 1e\+300\)"),
    Case("folder of NIfTI files", nifti_folder, InputError, r"holds 1 image file\(s\) \(a\.nii\.gz, \.\.\.\), .*-o to"),
    Case("DICOM Rows x Columns beyond the pixels", dicom_header_too_big, InputError, r"claims 2048x2048 pixels"),
    Case("DICOM colour slice", dicom_rgb_slice, InputError, r"is a colour image \(RGB, 3 samples per pixel\)"),
    Case("DICOM non-unit orientation", dicom_bad_orientation, InputError, r"is not two orthogonal unit vectors"),
    Case("DICOM damaged file", dicom_damaged_file, InputError, r"missing slice .*unreadable file\(s\) there: CT\."),
]


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    return tmp_path / "in", tmp_path / "out"


@pytest.mark.parametrize("case", INPUT_CASES, ids=[c.name for c in INPUT_CASES])
def test_hostile_input(case: Case, dirs: tuple[Path, Path], capfd: pytest.CaptureFixture[str]) -> None:
    src_dir, out_dir = dirs
    source = case.build(src_dir)
    fifo = source.is_fifo() or any(p.is_fifo() for p in src_dir.iterdir())
    before = None if fifo else digest(source)
    code, lines = run_cli(capfd, "upsample", "-i", str(source), "-o", str(out_dir / "thin.nii.gz"), "-m", "linear")
    assert_one_line(code, lines, case.message)
    assert listing(out_dir) == set()
    if before is not None:
        assert digest(source) == before
    with pytest.raises(case.error, match=case.message):
        thinslice.upsample(source, scale=2, method="linear")


@pytest.mark.parametrize("build", [tiny_gz_huge_header, tiny_nrrd_huge_header, dicom_header_too_big])
def test_declared_size_is_checked_before_allocating(build: Callable[[Path], Path], tmp_path: Path) -> None:
    source = build(tmp_path)
    tracemalloc.start()
    with pytest.raises(InputError):
        thinslice.load(source)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50 * 2**20, peak


# ----------------------------------------------------------------------------- now read correctly


def test_upper_and_mixed_case_suffixes_read_and_write(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    reference = thinslice.load(LIMB_CROP)
    upper = _limb_mha(tmp_path, "SCAN.MHA")
    assert np.array_equal(thinslice.load(upper).data, reference.data)
    for name in ("Thin.Nii", "THIN.NII.GZ", "thin.Nrrd"):
        code, lines = run_cli(capfd, "upsample", "-i", str(upper), "-o", str(tmp_path / name), "-m", "linear")
        assert code == 0, lines
        assert thinslice.load(tmp_path / name).num_slices == 2 * 24 + 1


def test_monochrome1_ct_keeps_its_hu(tmp_path: Path) -> None:
    """ITK inverts MONOCHROME1 pixels; for CT that inverts the HU. pydicom reads them as stored."""
    files = _dicom_copy(tmp_path)
    for path in files:
        _dicom_edit(path, PhotometricInterpretation="MONOCHROME1")
    assert np.array_equal(read_series(tmp_path / "series").data, read_series(DICOM_CROP).data)


def _enhanced_ct(folder: Path, reverse: bool = True) -> Path:
    """The DICOM crop as one Enhanced CT file (frames in reverse order, geometry per frame)."""
    slices = sorted((pydicom.dcmread(p) for p in DICOM_CROP.iterdir()), key=lambda d: float(d.ImagePositionPatient[2]))
    if reverse:
        slices = slices[::-1]
    first = slices[0]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2.1", ds.file_meta.MediaStorageSOPInstanceUID
    copied = ("Modality", "SeriesInstanceUID", "StudyInstanceUID", "Rows", "Columns", "BitsAllocated", "BitsStored")
    for keyword in (*copied, "HighBit", "PixelRepresentation", "SamplesPerPixel", "PhotometricInterpretation"):
        setattr(ds, keyword, first.get(keyword))
    ds.NumberOfFrames = len(slices)
    shared = Dataset()
    orientation, measures, transform = Dataset(), Dataset(), Dataset()
    orientation.ImageOrientationPatient = first.ImageOrientationPatient
    measures.PixelSpacing, measures.SliceThickness = first.PixelSpacing, first.SliceThickness
    transform.RescaleSlope, transform.RescaleIntercept = first.RescaleSlope, first.RescaleIntercept
    transform.RescaleType = "HU"
    shared.PlaneOrientationSequence = Sequence([orientation])
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PixelValueTransformationSequence = Sequence([transform])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per = []
    for s in slices:
        item, position = Dataset(), Dataset()
        position.ImagePositionPatient = s.ImagePositionPatient
        item.PlanePositionSequence = Sequence([position])
        per.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per)
    ds.PixelData = np.stack([s.pixel_array for s in slices]).tobytes()
    (folder / "enhanced").mkdir()
    ds.save_as(folder / "enhanced" / "ct.dcm", enforce_file_format=True)
    return folder / "enhanced"


def test_multiframe_enhanced_ct_reads_like_the_series(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    enhanced = read_series(_enhanced_ct(tmp_path))
    classic = read_series(DICOM_CROP)
    assert np.array_equal(enhanced.data, classic.data)
    assert np.allclose(enhanced.geometry.origin, classic.geometry.origin)
    assert np.allclose(enhanced.geometry.spacing, classic.geometry.spacing)
    assert np.allclose(enhanced.geometry.direction, classic.geometry.direction)
    out = tmp_path / "thin.nii.gz"
    code, lines = run_cli(capfd, "upsample", "-i", str(tmp_path / "enhanced"), "-o", str(out), "-m", "linear")
    assert code == 0, lines


def test_an_enhanced_ct_series_is_written_back_as_dicom(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Enhanced CT was read but could not be written back: "the DICOM template series ...
    lacks a valid orientation or position". Its frames are now the template's slices, and
    the derived series cites each frame it was computed from."""
    source = _enhanced_ct(tmp_path) / "ct.dcm"
    ds = pydicom.dcmread(source)
    ds.PatientID, ds.PatientName, ds.StudyInstanceUID, ds.SeriesInstanceUID = (
        "P7",
        "Doe^Jane",
        generate_uid(),
        generate_uid(),
    )
    ds.save_as(source)
    out = tmp_path / "thin"
    code, lines = run_cli(capfd, "upsample", "-i", str(source.parent), "-o", f"{out}/", "-m", "linear")
    assert code == 0, lines
    code, lines = run_cli(
        capfd, "upsample", "-i", str(source.parent), "-o", str(tmp_path / "thin.nii.gz"), "-m", "linear"
    )
    assert code == 0, lines
    written, expected = read_series(out), thinslice.load(tmp_path / "thin.nii.gz")
    np.testing.assert_array_equal(written.data, expected.data)
    np.testing.assert_allclose(written.geometry.origin, expected.geometry.origin, atol=1e-3)
    np.testing.assert_allclose(written.geometry.spacing, expected.geometry.spacing, atol=1e-4)
    slices = [pydicom.dcmread(p) for p in sorted(out.iterdir())]
    assert {(s.PatientID, s.StudyInstanceUID) for s in slices} == {("P7", ds.StudyInstanceUID)}
    cited = {int(item.ReferencedFrameNumber) for s in slices for item in s.SourceImageSequence}
    assert cited == set(range(1, int(ds.NumberOfFrames) + 1))  # every frame, by its number
    assert {item.ReferencedSOPInstanceUID for s in slices for item in s.SourceImageSequence} == {ds.SOPInstanceUID}
    (listed,) = slices[0].ReferencedSeriesSequence
    assert [i.ReferencedSOPInstanceUID for i in listed.ReferencedInstanceSequence] == [ds.SOPInstanceUID]  # once


def test_pydicom_warnings_stay_off_stderr_under_quiet(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    files = _dicom_copy(tmp_path)
    for path in files:
        ds = pydicom.dcmread(path)
        with pytest.warns(UserWarning):  # longer than LO allows: pydicom warns on reading and writing
            ds.SeriesDescription = ds.PatientID = "x" * 80
            ds.save_as(path)
    code, lines = run_cli(capfd, "-q", "upsample", "-i", str(tmp_path / "series"), "-o", str(tmp_path / "o.nii.gz"),
                          "-m", "linear")  # fmt: skip
    assert code == 0 and lines == [], lines
    # a derived DICOM series copies the overlong patient attribute: writing is as quiet
    code, lines = run_cli(capfd, "-q", "upsample", "-i", str(tmp_path / "series"), "-o", f"{tmp_path / 'thin'}/",
                          "-m", "linear", "--new-study")  # fmt: skip
    assert code == 0 and lines == [], lines
    assert len(list((tmp_path / "thin").iterdir())) == thinslice.load(tmp_path / "o.nii.gz").num_slices > len(files)


# ----------------------------------------------------------------------------- models


def _edited_weights(path: Path, fill: float) -> Path:
    import torch

    ckpt = _tiny_checkpoint(path)
    data = torch.load(ckpt, weights_only=True)
    for state in data["weights"].values():
        for tensor in state.values():
            if tensor.is_floating_point():
                tensor.fill_(fill)
    torch.save(data, ckpt)
    return ckpt


def nan_weights(folder: Path) -> Path:
    return _edited_weights(folder / "model.pt", float("nan"))


def huge_weights(folder: Path) -> Path:
    return _edited_weights(folder / "model.pt", 1e30)


def _config_edit(folder: Path, **changes: int) -> Path:
    import torch

    ckpt = _tiny_checkpoint(folder / "model.pt")
    data = torch.load(ckpt, weights_only=True)
    data["model_config"].update(changes)
    torch.save(data, ckpt)
    return ckpt


MODEL_CASES = [
    Case("NaN weights", nan_weights, ModelError, r"axial weights hold NaN/Inf values .*retrain it"),
    Case("huge weights", huge_weights, ModelError, r"axial weights reach 1e\+30 .*checkpoint is broken"),
    Case("large weights", lambda f: _edited_weights(f / "model.pt", 5e3), ModelError, r"weights reach 5e\+03"),
    Case("width 60000", lambda f: _config_edit(f, axial_width=60000), ModelError, r"axial_width must be at most 256"),
    Case("10^7 blocks", lambda f: _config_edit(f, sr_blocks=10**7), ModelError, r"sr_blocks must be at most 32"),
    Case(
        "config and tensors differ",
        lambda f: _config_edit(f, axial_width=8),
        ModelError,
        r"axial weights do not match the stored config: .*of another shape \(e\.g\. ",
    ),
]


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("case", MODEL_CASES, ids=[c.name for c in MODEL_CASES])
def test_broken_model(case: Case, dirs: tuple[Path, Path], capfd: pytest.CaptureFixture[str]) -> None:
    src_dir, out_dir = dirs
    ckpt = case.build(src_dir)
    args = ["upsample", "-i", str(LIMB_CROP), "-o", str(out_dir / "o.nii.gz"), "--scale", "2", "--device", "cpu"]
    code, lines = run_cli(capfd, "-q", *args, "--method", "model", "--model", str(ckpt))
    assert_one_line(code, lines, case.message)
    assert listing(out_dir) == set()


def test_power_scales_offered_are_ones_thinslice_accepts() -> None:
    from thinslice.model.inference import passes_for

    with pytest.raises(ModelError, match=r"this model upsamples x4; scale 3 is not a power of it \(valid: 4\)$"):
        passes_for(3, 4)
    with pytest.raises(ModelError, match=r"\(valid: 2, 4, 8\)$"):
        passes_for(16, 2)
