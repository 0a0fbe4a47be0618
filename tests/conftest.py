"""Shared fixtures: small real CT crops kept in the repo, and the full shared scans."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
LIMB_CROP = DATA / "limb_crop.nii.gz"
CHEST_CROP = DATA / "chest_crop.nii.gz"
DICOM_CROP = DATA / "dicom" / "chest_totalseg_crop"
#: The UIDs an archive would hold, for copies of DICOM_CROP (de-identified down to empty
#: Study/Series UIDs and PatientID).
STUDY_UID = "1.2.826.0.1.3680043.8.498.1111"
SERIES_UID = "1.2.826.0.1.3680043.8.498.2222"
PATIENT_ID = "TS-0001"


def shared(name: str) -> Path:
    """A scan from ../shared/data, or skip the test with a reason when it is absent."""
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"needs the full shared data: {path} not found")
    return path


@pytest.fixture
def small_ct() -> np.ndarray:
    """A real CT crop, (D, H, W) int16 HU: STS_002 limb, 25 x 64 x 64 at 3.27 mm."""
    from thinslice.io import load

    return load(LIMB_CROP).data


@pytest.fixture
def chest_ct():
    """A real thin-slice CT crop as a Volume: LIDC-IDRI-0314, 33 x 48 x 48 at 1 mm."""
    from thinslice.io import load

    return load(CHEST_CROP)


@pytest.fixture
def chest_field():
    """Real thin-slice CT with a field wide enough to read a slice profile from: the bundled
    sample's reference, LIDC-IDRI-0314, 63 x 160 x 160 at 1 mm (0.78 mm pixels)."""
    from importlib import resources

    from thinslice.io import load

    return load(Path(str(resources.files("thinslice") / "data" / "sample_reference.nii.gz")))


@pytest.fixture
def one_thread():
    """Torch on one thread for the test: tiny tensors gain nothing from threads, and on a
    shared 2-core CPU they lose a lot."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def rotation_30_20() -> np.ndarray:
    """30 degrees about z, then 20 degrees about x: an oblique but untilted orientation."""
    a, b = np.radians(30.0), np.radians(20.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rx @ rz


def filled_dicom(
    dst: Path, *, series_uid: str = SERIES_UID, rotation: np.ndarray | None = None, study_uid: str = STUDY_UID
) -> Path:
    """A copy of DICOM_CROP in the new folder ``dst`` with the UIDs an archive would hold
    (SOPInstanceUIDs kept unless ``series_uid`` differs from the default, then derived).

    With ``rotation``: rotated as a whole about its centre (ImageOrientationPatient and
    every ImagePositionPatient turned alike, so no tilt), and made non-square (40
    columns, 0.8 mm apart; rows stay 0.9765625 mm apart) to catch swapped axes.
    """
    import pydicom
    from pydicom.uid import CTImageStorage, generate_uid
    from pydicom.valuerep import format_number_as_ds

    dst.mkdir(parents=True)
    files = sorted(DICOM_CROP.glob("*.dcm"))
    centre = np.mean([np.asarray(pydicom.dcmread(f).ImagePositionPatient, float) for f in files], axis=0)
    for f in files:
        ds = pydicom.dcmread(f)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.PatientID = study_uid, series_uid, PATIENT_ID
        ds.SOPClassUID, ds.SeriesNumber = CTImageStorage, 3
        if series_uid != SERIES_UID:
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(
                entropy_srcs=[str(ds.SOPInstanceUID), series_uid]
            )
        if rotation is not None:
            iop = np.asarray(ds.ImageOrientationPatient, float)
            ipp = rotation @ (np.asarray(ds.ImagePositionPatient, float) - centre) + centre
            ds.ImageOrientationPatient = [
                format_number_as_ds(float(v)) for v in (*rotation @ iop[:3], *rotation @ iop[3:])
            ]
            ds.ImagePositionPatient = [format_number_as_ds(float(v)) for v in ipp]
            del ds.SliceLocation
            ds.PixelData = np.ascontiguousarray(ds.pixel_array[:, :40]).tobytes()
            ds.Columns, ds.PixelSpacing = 40, ["0.9765625", "0.8"]
        ds.save_as(dst / f.name, enforce_file_format=True)
    return dst


def tilted_dicom(dst: Path, rows_per_slice: float, cols_per_slice: float = 0.0) -> tuple[Path, float]:
    """A copy of DICOM_CROP in the new folder ``dst`` as a gantry-tilted scanner stores it:
    the table moves 4 mm along z per slice while the image planes lean about x, so that
    each slice starts ``rows_per_slice`` rows further along the columns' direction than the
    one before (and ``cols_per_slice`` along the rows', which no gantry makes but the
    geometry allows). The pixels are the crop's own. Returns the folder and the tilt (°).
    """
    import pydicom
    from pydicom.valuerep import format_number_as_ds

    step, pixel = 4.0, 0.9765625
    sin = rows_per_slice * pixel / step
    cos = float(np.sqrt(1 - sin**2))
    dst.mkdir(parents=True)
    files = sorted(DICOM_CROP.glob("*.dcm"), key=lambda f: float(pydicom.dcmread(f).ImagePositionPatient[2]))
    x, y, z = (float(v) for v in pydicom.dcmread(files[0]).ImagePositionPatient)
    tilt = float(np.degrees(np.arcsin(sin)))
    for k, f in enumerate(files):
        ds = pydicom.dcmread(f)
        ds.ImageOrientationPatient = [format_number_as_ds(v) for v in (1.0, 0.0, 0.0, 0.0, cos, sin)]
        ds.ImagePositionPatient = [format_number_as_ds(v) for v in (x + cols_per_slice * pixel * k, y, z + step * k)]
        ds.GantryDetectorTilt = format_number_as_ds(-tilt)
        del ds.SliceLocation
        ds.save_as(dst / f.name, enforce_file_format=True)
    return dst, tilt


def dcm2niix(series: Path, out: Path, pattern: str = "*.nii") -> tuple[Path, str]:
    """Convert a DICOM folder with dcm2niix (the PyPI package, in the test extra) into
    uncompressed NIfTI in the new folder ``out``; returns the one volume matching
    ``pattern`` (a tilted series gives two: as stored, and ``*_Tilt_*`` corrected) and
    dcm2niix's output.

    Fails the test when dcm2niix fails or makes more or less than one such volume."""
    import shutil
    import subprocess
    import sys

    exe = shutil.which("dcm2niix") or str(Path(sys.executable).with_name("dcm2niix"))
    if not Path(exe).is_file():
        pytest.fail("dcm2niix is not installed: pip install -e '.[test]' (it is in the test extra)")
    out.mkdir()
    run = subprocess.run(
        [exe, "-z", "n", "-b", "n", "-f", "converted", "-o", str(out), str(series)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    log = run.stdout + run.stderr
    assert run.returncode == 0, log
    volumes = sorted(out.glob(pattern))
    assert len(volumes) == 1, (volumes, log)
    return volumes[0], log
