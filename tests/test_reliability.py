"""A corpus of bad inputs, bad destinations and untrusted checkpoints.

Every case is made here from the small real crops in ``tests/data`` and run through the
command line (``thinslice.cli.main``, in-process, stderr caught at the file-descriptor
level so C++ messages count too; a few also as a real subprocess) and through the Python
API. The contract (RELIABILITY.md): exit code 2, exactly one line on stderr that names
the problem and the fix, no traceback (unless ``-v``), nothing left in the output folder
and the input's bytes unchanged.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import struct
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import torch

import thinslice
from tests.conftest import CHEST_CROP, DICOM_CROP, LIMB_CROP
from thinslice import grid
from thinslice import memory as resources
from thinslice.cli import main
from thinslice.ct import ct_value_problem
from thinslice.errors import ConfigError, InputError, ModelError, OutputError, ResourceError, ThinsliceError
from thinslice.memory import cuda_free_memory
from thinslice.methods import get_method
from thinslice.methods.classical import Linear
from thinslice.methods.learned import ModelMethod
from thinslice.pipeline.upsample import upsample_volume
from thinslice.volume import Geometry, Volume

# ----------------------------------------------------------------------------- builders
# Each builder writes one bad input under ``folder`` and returns its path.


def _limb_array() -> tuple[np.ndarray, sitk.Image]:
    image = sitk.ReadImage(str(LIMB_CROP))
    return sitk.GetArrayFromImage(image), image


def _like_limb(folder: Path, name: str, array: np.ndarray) -> Path:
    """``array`` (ITK order, the limb crop's shape) with the limb crop's geometry."""
    _, ref = _limb_array()
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(ref)
    sitk.WriteImage(image, str(folder / name))
    return folder / name


def _nifti1_header(shape: tuple[int, ...], datatype: int = 4, bitpix: int = 16) -> bytes:
    """A NIfTI-1 header written by hand (348 bytes + 4 extension bytes), no voxels."""
    header = bytearray(348)
    struct.pack_into("<i", header, 0, 348)
    dims = [len(shape), *shape] + [1] * (7 - len(shape))
    struct.pack_into("<8h", header, 40, *dims)
    struct.pack_into("<hh", header, 70, datatype, bitpix)
    struct.pack_into("<8f", header, 76, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    struct.pack_into("<ff", header, 108, 352.0, 1.0)  # vox_offset, scl_slope
    header[344:348] = b"n+1\0"
    return bytes(header) + b"\0" * 4


def _nifti2_header(shape: tuple[int, ...]) -> bytes:
    """A NIfTI-2 header (540 bytes + 4) declaring ``shape`` int16 voxels, none stored."""
    header = nib.Nifti2Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.int16)
    header["vox_offset"] = 544
    return header.binaryblock + b"\0" * 4


def missing(folder: Path) -> Path:
    return folder / "absent.nii.gz"


def empty_file(folder: Path) -> Path:
    (folder / "empty.nii.gz").write_bytes(b"")
    return folder / "empty.nii.gz"


def truncated_gz(folder: Path) -> Path:
    data = LIMB_CROP.read_bytes()
    (folder / "cut.nii.gz").write_bytes(data[: len(data) // 2])
    return folder / "cut.nii.gz"


def gzip_garbage(folder: Path) -> Path:
    junk = np.random.default_rng(0).bytes(4000)
    (folder / "garbage.nii.gz").write_bytes(b"\x1f\x8b\x08\x00" + junk)
    return folder / "garbage.nii.gz"


def gzipped_junk(folder: Path) -> Path:
    (folder / "junk.nii.gz").write_bytes(gzip.compress(np.random.default_rng(1).bytes(4000)))
    return folder / "junk.nii.gz"


def short_nii(folder: Path) -> Path:
    """An uncompressed NIfTI whose header claims twice the voxels the file holds."""
    full = gzip.decompress(LIMB_CROP.read_bytes())
    (folder / "short.nii").write_bytes(full[: len(full) // 2])
    return folder / "short.nii"


def short_in_gzip(folder: Path) -> Path:
    """A complete, valid gzip stream of a NIfTI cut in half: only the header tells."""
    full = gzip.decompress(LIMB_CROP.read_bytes())
    (folder / "short.nii.gz").write_bytes(gzip.compress(full[: len(full) // 2]))
    return folder / "short.nii.gz"


def huge_nifti2(folder: Path) -> Path:
    (folder / "huge.nii").write_bytes(_nifti2_header((60000, 60000, 60000)))
    return folder / "huge.nii"


def huge_nifti1_gz(folder: Path) -> Path:
    (folder / "huge.nii.gz").write_bytes(gzip.compress(_nifti1_header((32767, 32767, 32767))))
    return folder / "huge.nii.gz"


def huge_mha(folder: Path) -> Path:
    text = "ObjectType = Image\nNDims = 3\nDimSize = 60000 60000 60000\nElementType = MET_SHORT\n"
    (folder / "huge.mha").write_bytes((text + "ElementDataFile = LOCAL\n").encode() + b"\0" * 64)
    return folder / "huge.mha"


def truncated_mha(folder: Path) -> Path:
    _, image = _limb_array()
    sitk.WriteImage(sitk.GetImageFromArray(sitk.GetArrayFromImage(image)), str(folder / "full.mha"))
    data = (folder / "full.mha").read_bytes()
    (folder / "full.mha").unlink()
    (folder / "cut.mha").write_bytes(data[: len(data) // 2])
    return folder / "cut.mha"


def unknown_extension(folder: Path) -> Path:
    shutil.copy(LIMB_CROP, folder / "scan.dat")
    return folder / "scan.dat"


def two_d(folder: Path) -> Path:
    array, _ = _limb_array()
    sitk.WriteImage(sitk.GetImageFromArray(array[10]), str(folder / "slice.nii.gz"))
    return folder / "slice.nii.gz"


def four_d(folder: Path) -> Path:
    array, _ = _limb_array()
    stack = np.stack([array.T, array.T, array.T], axis=-1)  # (i, j, k, t)
    nib.save(nib.Nifti1Image(stack, np.diag([0.98, 0.98, 3.27, 1.0])), str(folder / "series4d.nii.gz"))
    return folder / "series4d.nii.gz"


def complex_voxels(folder: Path) -> Path:
    array, _ = _limb_array()
    nib.save(nib.Nifti1Image(array.T.astype(np.complex64), np.diag([0.98, 0.98, 3.27, 1.0])), folder / "c.nii.gz")
    return folder / "c.nii.gz"


def rgb_voxels(folder: Path) -> Path:
    array, _ = _limb_array()
    grey = np.clip(array.T, 0, 255).astype(np.uint8)
    rgb = np.empty(grey.shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    rgb["R"], rgb["G"], rgb["B"] = grey, grey, grey
    nib.save(nib.Nifti1Image(rgb, np.diag([0.98, 0.98, 3.27, 1.0])), folder / "rgb.nii.gz")
    return folder / "rgb.nii.gz"


def one_slice(folder: Path) -> Path:
    sitk.WriteImage(sitk.ReadImage(str(LIMB_CROP))[:, :, :1], str(folder / "one.nii.gz"))
    return folder / "one.nii.gz"


def two_slices(folder: Path) -> Path:
    sitk.WriteImage(sitk.ReadImage(str(LIMB_CROP))[:, :, :2], str(folder / "two.nii.gz"))
    return folder / "two.nii.gz"


def nan_voxels(folder: Path) -> Path:
    array = _limb_array()[0].astype(np.float32)
    array[3, 4, 5], array[7, 8, 9] = np.nan, np.inf
    return _like_limb(folder, "nan.nii.gz", array)


def nan_voxels_mha(folder: Path) -> Path:
    array = _limb_array()[0].astype(np.float32)
    array[3, 4, 5], array[7, 8, 9] = np.nan, -np.inf
    return _like_limb(folder, "nan.mha", array)


def constant(folder: Path) -> Path:
    return _like_limb(folder, "constant.nii.gz", np.full_like(_limb_array()[0], -1000))


def uint8_values(folder: Path) -> Path:
    array = _limb_array()[0].astype(np.float64)
    scaled = (array - array.min()) / (array.max() - array.min()) * 255
    return _like_limb(folder, "uint8.nii.gz", scaled.round().astype(np.uint8))


def mr_like(folder: Path) -> Path:
    array = _limb_array()[0].astype(np.float64)
    scaled = (array - array.min()) / (array.max() - array.min()) * 4000
    return _like_limb(folder, "mr.nii.gz", scaled.round().astype(np.int16))


def _dicom_copy(folder: Path, name: str = "series") -> list[Path]:
    """Copy the DICOM crop to ``folder/name``; its files sorted along the slice normal (z)."""
    shutil.copytree(DICOM_CROP, folder / name)
    return sorted((folder / name).iterdir(), key=lambda p: float(_ds(p).ImagePositionPatient[2]))


def _ds(path: Path) -> pydicom.Dataset:
    return pydicom.dcmread(path, stop_before_pixels=True)


def _dicom_edit(path: Path, **tags: object) -> None:
    ds = pydicom.dcmread(path)
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    ds.save_as(path)


def dicom_empty(folder: Path) -> Path:
    (folder / "series").mkdir()
    return folder / "series"


def dicom_mixed(folder: Path) -> Path:
    for k, path in enumerate(_dicom_copy(folder)):
        _dicom_edit(path, SeriesInstanceUID="1.2.826.0.1.3680043.10.1" if k < 4 else "1.2.826.0.1.3680043.10.2")
    return folder / "series"


def dicom_missing_slice(folder: Path) -> Path:
    _dicom_copy(folder)[4].unlink()
    return folder / "series"


def dicom_uneven(folder: Path) -> Path:
    for path in _dicom_copy(folder)[5:]:
        x, y, z = (float(v) for v in _ds(path).ImagePositionPatient)
        _dicom_edit(path, ImagePositionPatient=[x, y, z + 0.5])
    return folder / "series"


def dicom_tilted_uneven(folder: Path) -> Path:
    """Tilted (sheared positions), which is read, and one gap 2.5 mm where the rest are 2 mm."""
    for k, path in enumerate(_dicom_copy(folder)):
        x, y, z = (float(v) for v in _ds(path).ImagePositionPatient)
        _dicom_edit(path, ImagePositionPatient=[x, y + 0.7 * k, z + 0.5 * (k >= 5)], GantryDetectorTilt=19.3)
    return folder / "series"


def dicom_mr(folder: Path) -> Path:
    for path in _dicom_copy(folder):
        _dicom_edit(path, Modality="MR")
    return folder / "series"


def dicom_two_slices(folder: Path) -> Path:
    for path in _dicom_copy(folder)[2:]:
        path.unlink()
    return folder / "series"


def dicom_thickness_300(folder: Path) -> Path:
    """A damaged SliceThickness: 300 mm slices every 2 mm, in a stack of 8."""
    for path in _dicom_copy(folder):
        _dicom_edit(path, SliceThickness=300)
    return folder / "series"


def dicom_no_intercept_in_one(folder: Path) -> Path:
    path = _dicom_copy(folder)[3]
    ds = pydicom.dcmread(path)
    del ds.RescaleIntercept
    ds.save_as(path)
    return folder / "series"


def dicom_beside_nifti(folder: Path) -> Path:
    """A series folder that also holds a NIfTI file: which scan is meant?"""
    _dicom_copy(folder)
    shutil.copy(LIMB_CROP, folder / "series" / "limb.nii.gz")
    return folder / "series"


def dicom_two_patients(folder: Path) -> Path:
    _dicom_edit(_dicom_copy(folder)[5], PatientID="SOMEONE-ELSE")
    return folder / "series"


def dicom_zero_pixel(folder: Path) -> Path:
    for path in _dicom_copy(folder):
        _dicom_edit(path, PixelSpacing=[0, 0])
    return folder / "series"


def dicom_nan_position(folder: Path) -> Path:
    path = _dicom_copy(folder)[2]
    x, y, _ = (float(v) for v in _ds(path).ImagePositionPatient)
    with pytest.warns(UserWarning, match="Invalid value for VR DS"):  # as a damaged file would be
        _dicom_edit(path, ImagePositionPatient=[x, y, "NaN"])
    return folder / "series"


@dataclass(frozen=True)
class Case:
    """A bad input: how to make it, the error class and what its one line must say."""

    name: str
    build: Callable[[Path], Path]
    error: type[ThinsliceError]
    message: str  # a regular expression searched in the message


INPUT_CASES = [
    Case("missing path", missing, InputError, r"input not found: .*absent\.nii\.gz; check the path"),
    Case("empty file", empty_file, InputError, r"is empty \(0 bytes\); re-export"),
    Case("truncated .nii.gz", truncated_gz, InputError, r"is truncated: the gzip stream ends early.*re-export"),
    Case("gzip header then garbage", gzip_garbage, InputError, r"cannot read .*garbage\.nii\.gz: not a valid"),
    Case("gzip of random bytes", gzipped_junk, InputError, r"cannot read .*junk\.nii\.gz: not a valid"),
    Case("header claims more voxels (.nii)", short_nii, InputError, r"truncated: its header needs 205,152 bytes"),
    Case("header claims more voxels (.nii.gz)", short_in_gzip, InputError, r"header needs 205,152 .*unpacks to"),
    Case("60000^3 voxels (NIfTI-2)", huge_nifti2, InputError, r"declares 60000x60000x60000 = 216,000,000,000,000"),
    Case("32767^3 voxels (NIfTI-1)", huge_nifti1_gz, InputError, r"declares 32767x32767x32767 .*check its header"),
    Case("60000^3 voxels (MHA)", huge_mha, InputError, r"declares 60000x60000x60000 .*crop the scan"),
    Case("truncated .mha", truncated_mha, InputError, r"cut\.mha is truncated or its header is wrong: .*bytes\) but"),
    Case("unknown extension", unknown_extension, InputError, r"unsupported file type: scan\.dat; give a \.nii"),
    Case("2-D image", two_d, InputError, r"is a 2-D image \(64, 64\); thinslice needs a 3-D"),
    Case("4-D image", four_d, InputError, r"has 4 dimensions .*split 4-D series"),
    Case("complex voxels", complex_voxels, InputError, r"c\.nii\.gz holds complex of 32-bit float voxels, not one"),
    Case("RGB voxels", rgb_voxels, InputError, r"rgb\.nii\.gz holds vector of 8-bit .*thinslice needs a CT volume"),
    Case("1 slice", one_slice, InputError, r"has 1 slice \(64, 64, 1\).*at least 3 slices"),
    Case("2 slices", two_slices, InputError, r"has 2 slice\(s\) .*at least 3 slices"),
    Case("NaN/Inf voxels (NIfTI)", nan_voxels, InputError, r"holds 2 NaN/Inf voxels; fix or mask"),
    Case("NaN/Inf voxels (MHA)", nan_voxels_mha, InputError, r"holds 2 NaN/Inf voxels; fix or mask"),
    Case("constant volume", constant, InputError, r"every voxel is -1000: a constant volume .*--accept-non-ct"),
    Case("uint8 0..255", uint8_values, InputError, r"values range from 0 to 255 .*not look like CT.*--accept-non-ct"),
    Case("MR-like 0..4000", mr_like, InputError, r"values range from 0 to 4000 .*not look like CT.*--accept-non-ct"),
    Case("DICOM: empty folder", dicom_empty, InputError, r"no DICOM files found in .*pass a folder holding"),
    Case("DICOM: mixed series", dicom_mixed, InputError, r"holds 2 series: .*4 slices.*pass --series-uid UID"),
    Case("DICOM: missing slice", dicom_missing_slice, InputError, r"missing slice between .*export the complete"),
    Case("DICOM: uneven spacing", dicom_uneven, InputError, r"uneven slice spacing .*resample to even spacing"),
    Case("DICOM: tilted, uneven", dicom_tilted_uneven, InputError, r"uneven slice spacing .*resample to even spacing"),
    Case("DICOM: MR modality", dicom_mr, InputError, r"is MR, thinslice needs CT; pass a folder holding a CT"),
    Case("DICOM: 2 slices", dicom_two_slices, InputError, r"only 2 slice\(s\) in .*at least 3"),
    Case(
        "DICOM: one slice without RescaleIntercept",
        dicom_no_intercept_in_one,
        InputError,
        r"has no RescaleIntercept where other slices of the series have one.*fix or remove that slice",
    ),
    Case(
        "DICOM: NaN position",
        dicom_nan_position,
        InputError,
        r"cannot order the slices in .*: CT\..*\.dcm has no valid ImagePositionPatient; fix or remove that slice",
    ),
    Case("DICOM: PixelSpacing 0", dicom_zero_pixel, InputError, r"\.dcm in .* has PixelSpacing \[0\.0, 0\.0\] mm; fix"),
    Case("DICOM: two patients", dicom_two_patients, InputError, r"holds slices of 2 PatientIDs; split or fix"),
    Case("DICOM: 300 mm thick", dicom_thickness_300, InputError, r"slices 300 mm thick every 2 mm cannot be: its 8"),
]


# ----------------------------------------------------------------------------- checks


def digest(path: Path) -> str:
    """SHA-256 of a file, or of every file (names and bytes) under a folder."""
    sha = hashlib.sha256()
    if path.is_dir():
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            sha.update(str(item.relative_to(path)).encode() + b"\0" + item.read_bytes())
    elif path.exists():
        sha.update(path.read_bytes())
    else:
        return "absent"
    return sha.hexdigest()


def listing(folder: Path) -> set[str]:
    """Every file and folder under ``folder``, hidden ones included."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def run_cli(capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    """``thinslice ARGS`` in this process; the exit code and the non-empty stderr lines."""
    capfd.readouterr()
    code = main(list(args))
    err = capfd.readouterr().err
    return code, [line for line in err.splitlines() if line.strip()]


def assert_one_line(code: int, lines: list[str], message: str) -> None:
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: "), lines
    assert "Traceback" not in lines[0]
    assert re.search(message, lines[0]), lines[0]


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    return tmp_path / "in", tmp_path / "out"


# ----------------------------------------------------------------------------- input corpus


@pytest.mark.parametrize("case", INPUT_CASES, ids=[c.name for c in INPUT_CASES])
def test_bad_input_cli(case: Case, dirs: tuple[Path, Path], capfd: pytest.CaptureFixture[str]) -> None:
    src_dir, out_dir = dirs
    source = case.build(src_dir)
    before, inputs = digest(source), listing(src_dir)
    code, lines = run_cli(capfd, "upsample", "-i", str(source), "-o", str(out_dir / "thin.nii.gz"), "--scale", "2")
    assert_one_line(code, lines, case.message)
    assert listing(out_dir) == set()
    assert digest(source) == before and listing(src_dir) == inputs


@pytest.mark.parametrize("case", INPUT_CASES, ids=[c.name for c in INPUT_CASES])
def test_bad_input_api(case: Case, tmp_path: Path) -> None:
    source = case.build(tmp_path)
    before = digest(source)
    with pytest.raises(case.error, match=case.message):
        thinslice.upsample(source, scale=2)
    assert digest(source) == before


@pytest.mark.parametrize("build", [truncated_gz, huge_nifti2, dicom_mixed], ids=["truncated", "huge", "mixed"])
def test_bad_input_real_process(build: Callable[[Path], Path], dirs: tuple[Path, Path]) -> None:
    """The same contract from a real ``python -m thinslice.cli`` process."""
    src_dir, out_dir = dirs
    source = build(src_dir)
    before = digest(source)
    res = subprocess.run(
        [sys.executable, "-m", "thinslice.cli", "upsample", "-i", str(source), "-o", str(out_dir / "o.nii.gz")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and res.stderr.startswith("error: "), res.stderr
    assert listing(out_dir) == set() and digest(source) == before


def test_verbose_shows_the_traceback(dirs: tuple[Path, Path], capfd: pytest.CaptureFixture[str]) -> None:
    src_dir, out_dir = dirs
    code, lines = run_cli(capfd, "-v", "upsample", "-i", str(truncated_gz(src_dir)), "-o", str(out_dir / "o.nii.gz"))
    assert code == 2
    assert any("Traceback" in line for line in lines)
    assert lines[-1].startswith("error: ") and "truncated" in lines[-1]


def test_huge_header_fails_before_allocating(tmp_path: Path) -> None:
    """432 TB declared: refused from the header alone, with almost no memory touched."""
    tracemalloc.start()
    try:
        for build in (huge_nifti2, huge_nifti1_gz, huge_mha):
            with pytest.raises(InputError, match="declares"):
                thinslice.load(build(tmp_path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20


@pytest.mark.parametrize("build", [mr_like, uint8_values, constant], ids=["mr", "uint8", "constant"])
def test_accept_non_ct_upsamples_non_ct_values_with_a_warning(
    build: Callable[[Path], Path], dirs: tuple[Path, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    src_dir, out_dir = dirs
    source = build(src_dir)
    out = out_dir / "thin.nii.gz"
    code, lines = run_cli(capfd, "upsample", "-i", str(source), "-o", str(out), "--accept-non-ct", "--method", "linear")
    assert code == 0, lines
    warning = [line for line in lines if line.startswith("warning: ")]
    assert len(warning) == 1 and ("values range from" in warning[0] or "every voxel is" in warning[0])
    assert thinslice.load(out).num_slices == 49
    vol = thinslice.upsample(source, scale=2, method="linear", accept_non_ct=True)
    np.testing.assert_array_equal(vol.data[::2], thinslice.load(source).data)


def test_evaluate_refuses_non_ct_values_unless_accepted(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Its PSNR window is in HU, so an MR-like truth gives numbers that mean nothing."""
    source = mr_like(tmp_path)
    report = tmp_path / "report.json"
    args = ("evaluate", "-i", str(source), "--methods", "linear", "--json", str(report))
    code, lines = run_cli(capfd, *args)
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: mr: values range from 0 to 4000"), lines
    assert lines[0].endswith("pass --accept-non-ct to score it anyway") and not report.exists()
    with pytest.raises(InputError, match="to score it anyway"):
        thinslice.evaluate_pair(source, source, methods=["linear"])
    code, lines = run_cli(capfd, "-q", *args, "--accept-non-ct")
    assert code == 0 and report.exists()
    assert [line for line in lines if line.startswith("warning: mr: values range")], lines


def test_evaluate_checks_every_scan_before_scoring_any(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A bad last scan fails at once, not after the first ones' scoring; warnings from the
    check come once per scan, not again when it is scored."""
    scored: list[int] = []

    class Counted(Linear):
        def interpolate(self, data: np.ndarray, r: int) -> np.ndarray:
            scored.append(r)
            return super().interpolate(data, r)

    with pytest.raises(InputError, match=r"^mr: values range from 0 to 4000"):
        thinslice.evaluate([LIMB_CROP, mr_like(tmp_path)], methods=[Counted()])
    assert scored == []
    capfd.readouterr()
    code, lines = run_cli(capfd, "evaluate", "-i", str(LIMB_CROP), "-i", str(mr_like(tmp_path)), "--methods", "linear",
                          "--accept-non-ct")  # fmt: skip
    assert code == 0 and len([line for line in lines if line.startswith("warning: mr: values range")]) == 1, lines


def test_train_refuses_non_ct_values_and_no_steps(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """The networks scale intensities as HU, and zero steps would write an untrained model."""
    out = tmp_path / "m.pt"
    code, lines = run_cli(capfd, "train", "-i", str(mr_like(tmp_path)), "-o", str(out), "--steps", "2")
    assert code == 2 and len(lines) == 1 and lines[0].endswith("pass --accept-non-ct to train on it anyway"), lines
    code, lines = run_cli(capfd, "train", "-i", str(LIMB_CROP), "-o", str(out), "--steps", "0")
    assert_one_line(code, lines, r"--steps must be a whole number >= 1, got 0")
    assert not out.exists()


def test_a_series_folder_with_an_image_file_in_it_is_refused_for_one_output(
    dirs: tuple[Path, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    """Read as one scan, the series would be upsampled and the NIfTI file beside it left out
    without a word; as a batch (an output folder), both are cases."""
    src_dir, out_dir = dirs
    source = dicom_beside_nifti(src_dir)
    code, lines = run_cli(capfd, "upsample", "-i", str(source), "-o", str(out_dir / "thin.nii.gz"), "-m", "linear")
    assert_one_line(code, lines, r"holds 1 image file\(s\) \(limb\.nii\.gz, \.\.\.\), and a folder is read as one")
    assert listing(out_dir) == set()
    code, lines = run_cli(capfd, "-q", "upsample", "-i", str(source), "-o", f"{out_dir / 'batch'}/", "-m", "linear")
    assert code == 0 and sorted(p.name for p in (out_dir / "batch").glob("*.nii.gz")) == [
        "limb.nii.gz",
        "series.nii.gz",
    ]
    (source / "limb.nii.gz").unlink()  # an output written into the series folder is no other scan: rerun it
    args = ("-q", "upsample", "-i", str(source), "-o", str(source / "thin.nii.gz"), "-m", "linear")
    assert run_cli(capfd, *args)[0] == 0 and run_cli(capfd, *args, "--overwrite")[0] == 0


def test_a_slice_thickness_that_differs_within_a_series_is_told(
    dirs: tuple[Path, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    src_dir, out_dir = dirs
    files = _dicom_copy(src_dir)
    _dicom_edit(files[4], SliceThickness=1)
    code, lines = run_cli(capfd, "-q", "info", "-i", str(src_dir / "series"))
    assert code == 0 and [line for line in lines if line.startswith("warning: SliceThickness differs")] == [
        f"warning: SliceThickness differs within the series in {src_dir / 'series'} (1 to 3 mm); thinslice takes "
        "the first slice's: give --slice-thickness if another is right"
    ]


def test_ct_rule() -> None:
    """The rule in one place: air (min <= -500 HU), little above 4000 HU, not constant."""
    ct = thinslice.load(LIMB_CROP).data
    assert ct_value_problem(ct) is None
    assert ct_value_problem(thinslice.load(CHEST_CROP).data) is None
    assert ct_value_problem(thinslice.load(DICOM_CROP).data) is None
    padded = ct.copy()
    padded[0] = -3024  # padding outside the field of view is fine
    assert ct_value_problem(padded) is None
    metal = ct.copy()
    metal.flat[:10] = 12000  # a few metal voxels on an extended HU scale are fine
    assert ct_value_problem(metal) is None
    assert "0 to 4000" in (ct_value_problem(np.array([0, 1500, 4000], dtype=np.int16)) or "")
    assert "above 4000 HU" in (ct_value_problem((ct.astype(np.float32) + 1000) * 4 - 1000) or "")
    assert "constant" in (ct_value_problem(np.zeros((3, 4, 4))) or "")
    assert ct_value_problem(np.array([-0.5, 0.5])) is not None  # normalised MR


def test_volume_inputs_are_checked_too() -> None:
    """The API checks Volumes and SimpleITK images as it checks files."""
    geo = Geometry((1.0, 1.0, 3.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    with pytest.raises(InputError, match="2 slice"):
        thinslice.upsample(Volume(np.full((2, 4, 4), -1000, np.int16), geo), scale=2)
    data = np.linspace(-1000, 1000, 4 * 16, dtype=np.float32).reshape(4, 4, 4)
    data[1, 1, 1] = np.nan
    with pytest.raises(InputError, match="1 NaN/Inf"):
        thinslice.upsample(Volume(data, geo), scale=2)
    with pytest.raises(InputError, match="not look like CT"):
        thinslice.upsample(sitk.GetImageFromArray(np.arange(64, dtype=np.uint8).reshape(4, 4, 4)), scale=2)
    # evaluate and evaluate_pair too (a NaN scan got NaN rows, which the mean left out unsaid)
    truth = thinslice.load(LIMB_CROP)
    nan = truth.with_data(truth.data.astype(np.float32))
    nan.data[3, 5, 5] = np.nan
    for run in (
        lambda: thinslice.evaluate([nan, truth], methods=["linear"]),
        lambda: thinslice.evaluate_pair(nan, truth, methods=["linear"]),
    ):
        with pytest.raises(InputError, match="holds 1 NaN/Inf voxels"):
            run()
    with pytest.raises(InputError, match="1 slice"):  # scored at 47 dB as a "thick series"
        thinslice.evaluate_pair(truth.with_data(truth.data[:1]), truth, methods=["linear"])
    with pytest.raises(InputError, match="voxels of type complex64 are not CT values"):  # imaginary parts dropped
        Volume(np.zeros((4, 4, 4), np.complex64), geo)


def test_evaluate_refuses_methods_it_cannot_tell_apart() -> None:
    """Two methods of one name made one row, the last one's; a stray entry failed deep inside."""

    class Mine(Linear):
        name = "cubic"

    truth = thinslice.load(LIMB_CROP)
    with pytest.raises(ConfigError, match=r"two methods are named 'cubic'; give each method once"):
        thinslice.evaluate(truth, methods=["cubic", Mine()])
    with pytest.raises(ConfigError, match=r"methods takes names and thinslice.methods.Method instances, got None"):
        thinslice.evaluate(truth, methods=["linear", None])  # type: ignore[list-item]


# ----------------------------------------------------------------------------- destinations


def _proc_path(_: Path) -> Path:
    if not Path("/proc/self").is_dir():
        pytest.skip("needs Linux /proc")
    return Path("/proc/thinslice-out.nii.gz")


OUTPUT_CASES = [
    ("missing folder", lambda t: t / "out" / "nofolder" / "o.nii.gz", r"output folder does not exist: .*create it"),
    ("read-only place (/proc)", _proc_path, r"cannot write output in /proc: .*choose another -o"),
    ("a file used as folder", lambda t: t / "in" / "ct.nii.gz" / "o.nii.gz", r"is a file, not a folder; choose"),
    ("output is the input", lambda t: t / "in" / "ct.nii.gz", r"is the input file; choose another -o"),
    ("output is a hard link to the input", lambda t: t / "out" / "link.nii.gz", r"is the input file"),
    ("unknown output type", lambda t: t / "out" / "o.png", r"unsupported output type: o\.png; end the name"),
]


@pytest.mark.parametrize(("name", "where", "message"), OUTPUT_CASES, ids=[c[0] for c in OUTPUT_CASES])
def test_bad_destination(
    name: str, where: Callable[[Path], Path], message: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    source = tmp_path / "in" / "ct.nii.gz"
    shutil.copy(LIMB_CROP, source)
    out = where(tmp_path)
    if "hard link" in name:
        os.link(source, out)
    before, outs, touched = digest(source), listing(tmp_path / "out"), (tmp_path / "in").stat().st_mtime_ns
    code, lines = run_cli(capfd, "upsample", "-i", str(source), "-o", str(out), "--overwrite")
    assert_one_line(code, lines, message)
    with pytest.raises(OutputError, match=message):
        thinslice.save(thinslice.upsample(source, scale=2, method="linear"), out, overwrite=True)
    assert digest(source) == before
    assert listing(tmp_path / "out") == outs
    assert (tmp_path / "in").stat().st_mtime_ns == touched  # no probe file written beside the input either


def test_a_side_output_that_is_the_input_is_named_by_its_option(
    dirs: tuple[Path, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    src_dir, out_dir = dirs
    source = src_dir / "ct.nii.gz"
    shutil.copy(LIMB_CROP, source)
    args = ("upsample", "-i", str(source), "-o", str(out_dir / "thin.nii.gz"), "-m", "linear", "--overwrite")
    code, lines = run_cli(capfd, *args, "--uncertainty", str(source))
    assert_one_line(code, lines, r"is the input file; choose another --uncertainty \(inputs are never overwritten\)")
    assert listing(out_dir) == set()


def test_existing_output_needs_overwrite(dirs: tuple[Path, Path], capfd: pytest.CaptureFixture[str]) -> None:
    src_dir, out_dir = dirs
    out = out_dir / "thin.nii.gz"
    out.write_bytes(b"an earlier result")
    code, lines = run_cli(capfd, "upsample", "-i", str(LIMB_CROP), "-o", str(out))
    assert_one_line(code, lines, r"already exists; pass --overwrite to replace it")
    assert out.read_bytes() == b"an earlier result" and listing(out_dir) == {"thin.nii.gz"}
    with pytest.raises(OutputError, match="already exists"):
        thinslice.save(thinslice.load(LIMB_CROP), out)


def test_write_failure_becomes_output_error(dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure inside the write (disk full, the folder vanishing) is an OutputError."""
    _, out_dir = dirs

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("thinslice.io.atomic.os.replace", refuse)
    monkeypatch.setattr("thinslice.io.atomic.os.link", refuse)
    with pytest.raises(OutputError, match="cannot write .*Permission denied"):
        thinslice.save(thinslice.load(LIMB_CROP), out_dir / "o.nii.gz")
    assert listing(out_dir) == set()


# ----------------------------------------------------------------------------- resources


def test_job_too_big_for_memory_fails_fast(
    dirs: tuple[Path, Path], capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, out_dir = dirs
    free = 4 * 2**20  # reading the crop needs ~0.4 MiB, upsampling it x8 ~30 MiB
    monkeypatch.setattr(resources, "available_memory", lambda: free)
    code, lines = run_cli(capfd, "upsample", "-i", str(LIMB_CROP), "-o", str(out_dir / "o.nii.gz"), "--scale", "8")
    assert_one_line(code, lines, r"upsampling limb_crop 25x64x64 x8 with model needs about \d+ MiB but only 4 MiB")
    assert "crop the scan or use a smaller --scale" in lines[0]
    with pytest.raises(ResourceError, match="needs about"):
        thinslice.upsample(LIMB_CROP, scale=8)
    free = 2**18
    with pytest.raises(ResourceError, match=r"reading limb_crop\.nii\.gz needs about"):
        thinslice.load(LIMB_CROP)
    assert listing(out_dir) == set()


def test_device_memory_message() -> None:
    with pytest.raises(ResourceError, match=r"needs about 2\.0 GiB but only 1\.0 GiB of cuda:0 is free; try --device"):
        resources.require_memory(2**31, "upsampling ct", "try --device cpu", free=2**30, where="cuda:0")
    resources.require_memory(2**20, "upsampling ct", "", free=2**30, where="cuda:0")


def test_available_memory_reads_proc_meminfo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if Path("/proc/meminfo").exists():
        free = resources.available_memory()
        assert free is not None and free > 2**20
    monkeypatch.setattr(resources, "_MEMINFO", tmp_path / "absent")
    assert resources.available_memory() is None  # elsewhere: not checked
    resources.require_memory(2**60, "anything", "")  # unknown free memory never refuses


@pytest.mark.parametrize("method", ["cubic", "linear", "lanczos"])
def test_memory_estimate_bounds_the_real_peak(method: str) -> None:
    """The per-voxel constants of the methods cover what the methods allocate."""
    data = np.random.default_rng(0).integers(-1000, 1000, size=(12, 48, 48)).astype(np.int16)
    vol = Volume(data, Geometry((1.0, 1.0, 4.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1)))
    fn = get_method(method)
    upsample_volume(vol, fn, grid.Plan(2, 2.0))  # first use imports scipy.interpolate: not the data's memory
    for r in (2, 5):
        tracemalloc.start()
        try:
            upsample_volume(vol, fn, grid.Plan(r, 4.0 / r))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        estimate = fn.host_bytes(data.shape, r)
        assert peak <= estimate < 2 * peak + 2**20, (method, r, peak, estimate)


# ----------------------------------------------------------------------------- checkpoints


def _tiny_checkpoint(path: Path, scale: int = 2, **changes: object) -> Path:
    """A real (untrained) thinslice checkpoint with tiny networks; ``changes`` edit the dict."""
    import torch

    from thinslice.model.checkpoint import save_checkpoint
    from thinslice.model.config import ModelConfig
    from thinslice.model.nets import build_networks

    config = ModelConfig(scale=scale, axial_width=4, axial_blocks=1, sr_width=4, sr_groups=1, sr_blocks=1)
    axial, sr = build_networks(config, "both")
    assert axial is not None and sr is not None
    save_checkpoint(path, weights={"axial": axial.state_dict(), "sr": sr.state_dict()}, model_config=config)
    if changes:
        ckpt = torch.load(path, weights_only=True)
        ckpt.update(changes)
        torch.save(ckpt, path)
    return path


class _Payload:
    """Unpickling this creates a folder: proof that the loader ran code from the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str]]:
        return os.mkdir, (str(self.marker),)


def not_a_checkpoint(folder: Path) -> Path:
    (folder / "model.pt").write_text("weights are in the other folder\n")
    return folder / "model.pt"


def foreign_torch_file(folder: Path) -> Path:
    import torch

    torch.save({"state_dict": {"w": torch.zeros(3)}}, folder / "model.pt")
    return folder / "model.pt"


def newer_format(folder: Path) -> Path:
    return _tiny_checkpoint(folder / "model.pt", format_version=99, thinslice_version="9.0.0")


def other_scale(folder: Path) -> Path:
    return _tiny_checkpoint(folder / "model.pt", scale=3)


def weights_for_another_config(folder: Path) -> Path:
    ckpt = _tiny_checkpoint(folder / "model.pt")
    other = _tiny_checkpoint(folder / "other.pt", scale=3)
    import torch

    data, foreign = torch.load(ckpt, weights_only=True), torch.load(other, weights_only=True)
    data["weights"] = foreign["weights"]
    torch.save(data, ckpt)
    other.unlink()
    return ckpt


def pickled_object(folder: Path) -> Path:
    import torch

    ckpt = _tiny_checkpoint(folder / "model.pt")
    data = torch.load(ckpt, weights_only=True)
    data["metrics"] = _Payload(folder / "pwned")
    torch.save(data, ckpt)
    return ckpt


CHECKPOINT_CASES = [
    Case("not a checkpoint (text)", not_a_checkpoint, ModelError, r"model\.pt is not a thinslice checkpoint"),
    Case("another program's torch file", foreign_torch_file, ModelError, r"model\.pt is not a thinslice checkpoint"),
    Case("newer checkpoint format", newer_format, ModelError, r"checkpoint format 99; .*upgrade thinslice"),
    Case("checkpoint for another scale", other_scale, ModelError, r"this model upsamples x3; scale 2 is not a power"),
    Case("weights of another config", weights_for_another_config, ModelError, r"weights do not match the stored"),
    Case("pickled object inside", pickled_object, ModelError, r"holds Python objects that are not loaded for safety"),
]


@pytest.mark.parametrize("case", CHECKPOINT_CASES, ids=[c.name for c in CHECKPOINT_CASES])
def test_bad_checkpoint(case: Case, dirs: tuple[Path, Path], capfd: pytest.CaptureFixture[str]) -> None:
    src_dir, out_dir = dirs
    ckpt = case.build(src_dir)
    before = digest(src_dir)
    args = ["upsample", "-i", str(LIMB_CROP), "-o", str(out_dir / "o.nii.gz"), "--scale", "2"]
    code, lines = run_cli(capfd, *args, "--method", "model", "--model", str(ckpt), "--device", "cpu")
    assert_one_line(code, lines, case.message)
    with pytest.raises(case.error, match=case.message):
        thinslice.upsample(LIMB_CROP, scale=2, method="model", model=ckpt, device="cpu")
    assert not (src_dir / "pwned").exists()  # the pickled payload never ran
    assert digest(src_dir) == before and listing(out_dir) == set()


def test_good_tiny_checkpoint_runs(dirs: tuple[Path, Path], capfd: pytest.CaptureFixture[str]) -> None:
    """The control for the cases above: the same checkpoint, unedited, works."""
    src_dir, out_dir = dirs
    ckpt = _tiny_checkpoint(src_dir / "model.pt")
    out = out_dir / "o.nii.gz"
    args = ["upsample", "-i", str(LIMB_CROP), "-o", str(out), "--method", "model", "--model", str(ckpt)]
    code, lines = run_cli(capfd, *args, "--device", "cpu")
    assert code == 0, lines
    assert thinslice.load(out).num_slices == 2 * 24 + 1


# ----------------------------------------------------------------------------- fuzzing


@pytest.mark.parametrize("kind", ["header", "gzip"])
def test_corrupted_bytes_never_escape_as_anything_but_input_error(
    kind: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Random byte flips in the NIfTI header or in the compressed stream: the file either
    loads (an unused field) or gives an InputError; nothing printed, no other exception."""
    raw = LIMB_CROP.read_bytes()
    full = gzip.decompress(raw)
    rng = np.random.default_rng(7)
    outcomes = {"loaded": 0, "refused": 0}
    for i in range(40):
        data = bytearray(full if kind == "header" else raw)
        lo, hi = (0, 352) if kind == "header" else (20, len(raw) - 8)
        for _ in range(int(rng.integers(1, 4))):
            data[int(rng.integers(lo, hi))] ^= int(rng.integers(1, 256))  # always a change
        path = tmp_path / f"fuzz{i}.nii{'.gz' if kind == 'gzip' else ''}"
        path.write_bytes(bytes(data))
        try:
            thinslice.load(path)
            outcomes["loaded"] += 1
        except InputError:
            outcomes["refused"] += 1
    assert capfd.readouterr().err == ""
    if kind == "gzip":  # every flip in deflate data breaks the stream or its CRC
        assert outcomes == {"loaded": 0, "refused": 40}
    else:
        assert outcomes["refused"] > 0


def test_network_device_memory_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The model's batches must fit the device (CUDA free memory, simulated here). Methods
    name their device as a string ("cuda:0"), which the check took for no CUDA device: it
    never ran."""
    ckpt = _tiny_checkpoint(tmp_path / "model.pt")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (2**20, 2**34))
    monkeypatch.setattr(ModelMethod, "device", property(lambda self: "cuda:0"))  # as a GPU run names it
    with pytest.raises(ResourceError, match=r"with model needs about 0\.3 GiB but only 1 MiB of cuda:0 is free; try"):
        thinslice.upsample(LIMB_CROP, scale=2, method="model", model=ckpt, device="cpu")
    assert cuda_free_memory(torch.device("cuda", 1)) == 2**20 and cuda_free_memory("cpu") is None
    method = get_method("model", model=ckpt, device="cpu")
    assert method.device_bytes((400, 512, 512), 4) < 4 * 2**30  # a 512 x 512 CT fits a small GPU
