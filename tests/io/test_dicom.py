"""Tests for thinslice.io.dicom: series listing, geometry, HU values and every refusal.

The committed fixture is an 8-slice 64 x 64 crop of TotalSegmentator's chest series
(SliceThickness 3 mm, positions 2 mm apart; see tests/data/make_fixtures_dicom.py). Bad
series are made on the fly by editing copies of it with pydicom.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from tests.conftest import DICOM_CROP, dcm2niix, tilted_dicom
from tests.conftest import SHARED as SHARED_DATA
from thinslice.errors import InputError
from thinslice.io import save
from thinslice.io.dicom import SeriesInfo, list_series, read_series

CROP = DICOM_CROP
SHARED = SHARED_DATA


def _z(path: Path) -> float:
    return float(pydicom.dcmread(path, stop_before_pixels=True).ImagePositionPatient[2])


def _copy(tmp_path: Path, name: str = "series") -> list[Path]:
    """Copy the crop to ``tmp_path/name``; return its files sorted by z (the normal)."""
    folder = tmp_path / name
    shutil.copytree(CROP, folder)
    return sorted(folder.iterdir(), key=_z)


def _edit(path: Path, **tags: object) -> None:
    ds = pydicom.dcmread(path)
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    ds.save_as(path)


def _hu(path: Path) -> np.ndarray:
    ds = pydicom.dcmread(path)
    return ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def test_crop_geometry_uses_positions_not_thickness() -> None:
    files = sorted(CROP.iterdir(), key=_z)
    first = pydicom.dcmread(files[0])
    vol = read_series(CROP)
    assert vol.data.shape == (8, 64, 64)
    assert vol.data.dtype == np.int16
    assert vol.slice_spacing == pytest.approx(2.0)
    assert vol.slice_thickness == pytest.approx(3.0)
    assert vol.geometry.slice_axis == 2
    assert vol.geometry.spacing[:2] == pytest.approx([float(v) for v in first.PixelSpacing][::-1])
    assert vol.geometry.origin == pytest.approx([float(v) for v in first.ImagePositionPatient])
    iop = np.asarray(first.ImageOrientationPatient, dtype=float)
    expected = np.column_stack([iop[:3], iop[3:], np.cross(iop[:3], iop[3:])])
    assert np.allclose(np.reshape(vol.geometry.direction, (3, 3)), expected)
    assert vol.name == "CT Body 3.0"
    assert vol.meta["modality"] == "CT" and vol.meta["series_uid"] == ""
    assert vol.meta["source"] == str(CROP.resolve())  # absolute, as for files
    assert read_series(os.path.relpath(CROP)).meta["source"] == str(CROP.resolve())
    for k, path in enumerate(files):  # slice k sits where file k says it does
        ipp = [float(v) for v in pydicom.dcmread(path).ImagePositionPatient]
        assert vol.geometry.slice_position(k) == pytest.approx(ipp)


@pytest.mark.parametrize("k", [0, 3, 7])
def test_hu_equal_pydicom_rescaled_pixels(k: int) -> None:
    files = sorted(CROP.iterdir(), key=_z)
    vol = read_series(CROP)
    np.testing.assert_array_equal(vol.data[k], _hu(files[k]))


def test_non_integral_hu_become_float32(tmp_path: Path) -> None:
    files = _copy(tmp_path)
    for path in files:
        _edit(path, RescaleSlope=0.5, RescaleIntercept=-1024.25)
    vol = read_series(tmp_path / "series")
    assert vol.data.dtype == np.float32
    np.testing.assert_allclose(vol.data[2], _hu(files[2]), atol=1e-3)


def test_list_series_sorts_along_normal() -> None:
    [info] = list_series(CROP)
    assert isinstance(info, SeriesInfo)
    assert (info.uid, info.description, info.modality) == ("", "CT Body 3.0", "CT")
    assert info.num_slices == 8 and info.slice_spacing_mm == pytest.approx(2.0)
    z = [_z(p) for p in info.files]
    assert z == sorted(z) and len(set(z)) == 8


def test_non_dicom_files_are_skipped(tmp_path: Path) -> None:
    _copy(tmp_path)
    (tmp_path / "series" / "notes.txt").write_text("not a DICOM file\n")
    (tmp_path / "series" / "junk.bin").write_bytes(bytes(range(256)) * 4)
    assert read_series(tmp_path / "series").num_slices == 8
    assert len(list_series(tmp_path / "series")) == 1


def test_a_study_of_linked_folders_reads_like_the_series(tmp_path: Path) -> None:
    """A study folder assembled from symlinks (as PACS exports and study trees often are)
    is one scan wherever thinslice looks, each folder read once even through a link back
    up the tree; hidden files (a macOS ``._`` fork) are not read."""
    from thinslice.cli import main
    from thinslice.pipeline.cases import is_one_series

    study = tmp_path / "study"
    study.mkdir()
    (study / "series").symlink_to(DICOM_CROP.resolve(), target_is_directory=True)
    (study / "back").symlink_to(study, target_is_directory=True)  # a loop
    (study / "._IM0001").write_bytes(b"\x00\x05\x16\x07 not DICOM")
    direct = read_series(DICOM_CROP)
    linked = read_series(study)
    assert linked.num_slices == direct.num_slices and np.array_equal(linked.data, direct.data)
    assert is_one_series(study)
    for source, name in ((study, "linked.nii.gz"), (DICOM_CROP, "direct.nii.gz")):
        assert main(["-q", "upsample", "-i", str(source), "-o", str(tmp_path / name), "-r", "2", "-m", "linear"]) == 0
    assert np.array_equal(nib.load(tmp_path / "linked.nii.gz").dataobj, nib.load(tmp_path / "direct.nii.gz").dataobj)


def test_empty_or_junk_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no DICOM files found in"):
        read_series(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match=r"no DICOM files found.*1 non-DICOM"):
        read_series(tmp_path)
    with pytest.raises(InputError, match="not found"):
        read_series(tmp_path / "absent")


def test_several_series_need_a_uid(tmp_path: Path) -> None:
    uids = {"a": "1.2.826.0.1.3680043.10.1", "b": "1.2.826.0.1.3680043.10.2"}
    for name, uid in uids.items():
        files = _copy(tmp_path, name)
        keep = 8 if name == "a" else 5
        for path in files[keep:]:
            path.unlink()
        for path in files[:keep]:
            _edit(path, SeriesInstanceUID=uid, SeriesDescription=f"series {name}")
    found = {info.uid: info for info in list_series(tmp_path)}
    assert set(found) == set(uids.values())
    assert found[uids["b"]].num_slices == 5
    with pytest.raises(InputError) as err:
        read_series(tmp_path)
    message = str(err.value)
    assert "--series-uid" in message
    assert "\n" not in message  # one line: the series are listed "; "-separated
    lines = [entry for entry in message.split("; ") if "slices" in entry]
    assert len(lines) == 2
    assert any(uids["a"] in ln and "series a" in ln and "8 slices" in ln for ln in lines)
    assert any(uids["b"] in ln and "5 slices" in ln and "2 mm" in ln for ln in lines)
    vol = read_series(tmp_path, series_uid=uids["b"])
    assert vol.num_slices == 5 and vol.meta["series_uid"] == uids["b"]
    assert vol.name == "series b"
    with pytest.raises(InputError, match=r"'9\.9' not found.*1\.2\.826\.0\.1\.3680043\.10\.1"):
        read_series(tmp_path, series_uid="9.9")


def test_refuses_mr(tmp_path: Path) -> None:
    for path in _copy(tmp_path):
        _edit(path, Modality="MR")
    with pytest.raises(InputError, match="is MR, thinslice needs CT"):
        read_series(tmp_path / "series")


def test_refuses_fewer_than_three_slices(tmp_path: Path) -> None:
    for path in _copy(tmp_path)[2:]:
        path.unlink()
    with pytest.raises(InputError, match="only 2 slice"):
        read_series(tmp_path / "series")


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("ImageOrientationPatient", [1, 0, 0, 0, 0.99980003, 0.019996]),
        ("PixelSpacing", [0.9, 0.9]),
        ("Rows", 63),
    ],
)
def test_refuses_inconsistent_headers(tmp_path: Path, keyword: str, value: object) -> None:
    files = _copy(tmp_path)
    _edit(files[4], **{keyword: value})
    with pytest.raises(InputError, match=f"differing {keyword} within the series"):
        read_series(tmp_path / "series")


def _acquired_pixels(folder: Path):
    """Each file's HU and the world position (mm) of each of its pixels, as DICOM defines
    them from ImagePositionPatient, ImageOrientationPatient and PixelSpacing."""
    for path in sorted(folder.iterdir()):
        ds = pydicom.dcmread(path)
        iop, ipp = np.asarray(ds.ImageOrientationPatient, float), np.asarray(ds.ImagePositionPatient, float)
        row_sp, col_sp = (float(v) for v in ds.PixelSpacing)
        r, c = np.meshgrid(np.arange(ds.Rows), np.arange(ds.Columns), indexing="ij")
        yield _hu(path), ipp + (c[..., None] * col_sp) * iop[:3] + (r[..., None] * row_sp) * iop[3:]


def _index(vol, world: np.ndarray) -> np.ndarray:
    """Voxel index ``(slice, row, column)`` of world positions in ``vol``'s grid."""
    g = vol.geometry
    ijk = (world - np.asarray(g.origin)) @ np.reshape(g.direction, (3, 3)) / np.asarray(g.spacing)
    return ijk[..., ::-1]


def test_gantry_tilt_is_undone_onto_an_orthogonal_grid(tmp_path: Path) -> None:
    """A tilted series (positions sheared against the planes) is read onto the orthogonal
    grid of its planes: every acquired pixel lands where its header puts it, with its value,
    and the grid grows so that none is lost."""
    folder, tilt = tilted_dicom(tmp_path / "tilted", rows_per_slice=1)
    vol = read_series(folder)
    direction = np.reshape(vol.geometry.direction, (3, 3))
    np.testing.assert_allclose(direction @ direction.T, np.eye(3), atol=1e-9)
    sin, cos = np.sin(np.radians(tilt)), np.cos(np.radians(tilt))
    np.testing.assert_allclose(direction[:, 1:], [[0, 0], [cos, -sin], [sin, cos]], atol=1e-9)
    assert vol.slice_spacing == pytest.approx(4.0 * cos)  # between the planes, not along the table
    assert vol.slice_thickness == pytest.approx(3.0)
    assert vol.data.shape == (8, 64 + 7, 64)
    covered = np.zeros(vol.data.shape, bool)
    for hu, world in _acquired_pixels(folder):
        index = _index(vol, world)
        whole = np.round(index).astype(int)
        np.testing.assert_allclose(index, whole, atol=1e-6)  # whole rows: copied, not interpolated
        np.testing.assert_array_equal(vol.data[tuple(np.moveaxis(whole, -1, 0))], hu)
        covered[tuple(np.moveaxis(whole, -1, 0))] = True
    assert covered.sum() == 8 * 64 * 64  # every acquired pixel has its own voxel
    assert np.all(vol.data[~covered] == vol.data.min())  # the rest is the series' padding

    # dcm2niix's tilt correction makes the same voxels (its origin differs; ours is the
    # one the pixels' headers give, checked above)
    ours = tmp_path / "ours.nii"
    save(vol, ours)
    theirs, _ = dcm2niix(folder, tmp_path / "dcm2niix", "*_Tilt_*.nii")
    ours_img, theirs_img = (nib.as_closest_canonical(nib.load(str(p))) for p in (ours, theirs))
    np.testing.assert_array_equal(theirs_img.get_fdata(), ours_img.get_fdata())


def test_gantry_tilt_by_fractions_of_a_pixel(tmp_path: Path) -> None:
    """Shears of a fraction of a pixel are undone by interpolation, in the right direction:
    the read grid, sampled where the header puts each acquired pixel, gives its value back."""
    from scipy import ndimage

    folder, _ = tilted_dicom(tmp_path / "tilted", rows_per_slice=0.6, cols_per_slice=-0.3)
    vol = read_series(folder)
    assert vol.data.shape == (8, 64 + 5, 64 + 3)  # ceil(7 * 0.6) rows, ceil(7 * 0.3) columns
    errors, shifted = [], []
    for hu, world in _acquired_pixels(folder):
        index = _index(vol, world)
        k = int(round(index[0, 0, 0]))
        assert np.allclose(index[..., 0], k, atol=1e-6)  # each file is one plane of the grid
        plane = vol.data[k].astype(float)
        back = ndimage.map_coordinates(plane, np.moveaxis(index[..., 1:], -1, 0), order=3, mode="nearest")
        wrong = ndimage.map_coordinates(
            plane, np.moveaxis(2 * np.round(index[..., 1:]) - index[..., 1:], -1, 0), order=3
        )
        inner = (slice(3, -3), slice(3, -3))
        errors.append(np.abs(back - hu)[inner])
        shifted.append(np.abs(wrong - hu)[inner])
    assert np.median(np.concatenate(errors)) < 5.0  # HU: a shift there and back
    assert np.median(np.concatenate(shifted)) > 3 * np.median(np.concatenate(errors))  # a shift matters here
    plain = read_series(DICOM_CROP)  # the same pixels unsheared: the spline adds no value beyond their range
    assert plain.data.min() <= vol.data.min() and vol.data.max() <= plain.data.max()
    assert vol.data.dtype == plain.data.dtype == np.int16  # whole HU in, whole HU out (int16 files)


def test_tilt_tag_with_unsheared_positions_reads_the_grid_they_give(tmp_path: Path) -> None:
    files = _copy(tmp_path)
    for path in files:
        _edit(path, GantryDetectorTilt=12.5)
    vol, plain = read_series(tmp_path / "series"), read_series(CROP)
    np.testing.assert_array_equal(vol.data, plain.data)
    assert vol.geometry == plain.geometry


def test_tilted_and_uneven_is_refused(tmp_path: Path) -> None:
    folder, _ = tilted_dicom(tmp_path / "tilted", rows_per_slice=1)
    last = sorted(folder.iterdir(), key=_z)[-1]
    x, y, z = (float(v) for v in pydicom.dcmread(last).ImagePositionPatient)
    _edit(last, ImagePositionPatient=[x, y, z + 1.5])
    with pytest.raises(InputError, match="uneven slice spacing in .*resample to even spacing first"):
        read_series(folder)


def _scout(path: Path, dst: Path, series_uid: str | None = None) -> None:
    """A localizer made from the slice at ``path``: a scout lies in another plane."""
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(path)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    if series_uid is not None:
        ds.SeriesInstanceUID = series_uid
    ds.save_as(dst)


def test_localizer_filed_in_the_series_is_left_out(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    files = _copy(tmp_path)
    _scout(files[3], files[3].with_name("scout.dcm"))
    with caplog.at_level("INFO", logger="thinslice.io.dicom"):
        vol = read_series(tmp_path / "series")
    plain = read_series(CROP)
    np.testing.assert_array_equal(vol.data, plain.data)
    assert vol.geometry == plain.geometry
    assert "left out 1 localizer image(s) (scouts) of the series" in caplog.text


def test_a_scout_series_beside_the_slices_needs_no_choice(tmp_path: Path) -> None:
    files = _copy(tmp_path)
    _scout(files[0], tmp_path / "series" / "scout.dcm", series_uid="1.2.3.4")
    assert [info.num_slices for info in list_series(tmp_path / "series")] == [8]
    assert read_series(tmp_path / "series").num_slices == 8
    for path in files:
        path.unlink()
    with pytest.raises(InputError, match=r"no DICOM files found in .*series \(1 localizer image\(s\) only\)"):
        read_series(tmp_path / "series")


def test_refuses_missing_slice(tmp_path: Path) -> None:
    files = _copy(tmp_path)
    files[4].unlink()
    where = f"{_z(files[3]):.2f} and {_z(files[5]):.2f} mm"
    with pytest.raises(InputError, match=f"missing slice between positions {where}"):
        read_series(tmp_path / "series")


def test_refuses_uneven_spacing(tmp_path: Path) -> None:
    for path in _copy(tmp_path)[5:]:
        ipp = [float(v) for v in pydicom.dcmread(path).ImagePositionPatient]
        _edit(path, ImagePositionPatient=[ipp[0], ipp[1], ipp[2] + 0.5])
    with pytest.raises(InputError, match=r"uneven slice spacing.*2\.5 mm.*median 2 mm"):
        read_series(tmp_path / "series")


def test_two_stacks_at_two_spacings_are_named(tmp_path: Path) -> None:
    """Head protocols scan the skull base thin and the rest thicker, in one series: the
    message names the stacks, so the user knows what to export."""
    files = _copy(tmp_path)
    z4 = _z(files[4])
    for k, path in enumerate(files[5:]):
        x, y, _ = (float(v) for v in pydicom.dcmread(path).ImagePositionPatient)
        _edit(path, ImagePositionPatient=[x, y, z4 + 2.5 + 3.0 * k])
    with pytest.raises(
        InputError,
        match=r"it is 2 stacks at different spacings, slices 1-5 \(-792\.50 to -784\.50 mm\) 2 mm apart and "
        r"slices 6-8 \(-782\.00 to -776\.00 mm\) 3 mm apart; .*export each stack as its own series",
    ):
        read_series(tmp_path / "series")


def test_refuses_duplicate_positions(tmp_path: Path) -> None:
    files = _copy(tmp_path)
    shutil.copy(files[3], files[3].with_name("copy.dcm"))
    with pytest.raises(InputError, match=f"duplicate slice position {_z(files[3]):.2f} mm"):
        read_series(tmp_path / "series")


def test_unreadable_pixels_become_input_error(tmp_path: Path) -> None:
    files = _copy(tmp_path)
    files[2].write_bytes(files[2].read_bytes()[:-4000])  # truncated pixel data
    with pytest.raises(InputError, match=f"{files[2].name} in .* claims 64x64 pixels .*truncated or a wrong header"):
        read_series(tmp_path / "series")


def test_truncated_compressed_pixels_become_input_error(tmp_path: Path) -> None:
    """The short-PixelData check covers uncompressed files only (a compressed stream has no
    size to expect); a cut compressed file must still stop with a clear error, not zeros."""
    from pydicom.uid import RLELossless

    files = _copy(tmp_path)
    for path in files:
        ds = pydicom.dcmread(path)
        ds.compress(RLELossless)
        ds.save_as(path)
    intact = read_series(tmp_path / "series")  # compressed and whole: read exactly
    np.testing.assert_array_equal(intact.data[2], _hu(files[2]))
    files[2].write_bytes(files[2].read_bytes()[:-1000])
    with pytest.raises(InputError, match=r"cannot read the pixels in .*series \(a truncated file"):
        read_series(tmp_path / "series")


@pytest.mark.skipif(not (SHARED / "dicom").is_dir(), reason=f"shared data not found at {SHARED}")
def test_full_chest_series_reads_at_position_spacing() -> None:
    vol = read_series(SHARED / "dicom" / "chest_totalseg")
    assert vol.data.shape == (20, 512, 512)
    assert vol.slice_spacing == pytest.approx(2.0)
    assert vol.slice_thickness == pytest.approx(3.0)


@pytest.mark.skipif(not (SHARED / "dicom").is_dir(), reason=f"shared data not found at {SHARED}")
def test_shared_tilted_series_with_uneven_gaps_is_refused() -> None:
    """GE's tilted head series is two stacks, 4 mm and 7 mm apart: the tilt could be undone, the two spacings not."""
    stacks = r"slices 1-14 \(-33\.67 to 18\.36 mm\) 4 mm apart and slices 15-28 \(19\.44 to 110\.42 mm\) 7 mm apart"
    with pytest.raises(InputError, match=rf"uneven slice spacing in .*head_gantry_tilt: it is 2 stacks .*{stacks}"):
        read_series(SHARED / "dicom" / "head_gantry_tilt")


def test_a_zero_slope_and_an_impossible_thickness_are_said(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Both read as readers read them (slope 1; slices contiguous), but aloud: a slope of 0
    would make every voxel its intercept, and a thickness of -3 mm is no thickness."""
    files = _copy(tmp_path)
    _edit(files[4], RescaleSlope=0)
    for path in files:
        _edit(path, SliceThickness=-3)
    with caplog.at_level("WARNING", logger="thinslice"):
        vol = read_series(tmp_path / "series")
    np.testing.assert_array_equal(
        vol.data[4], pydicom.dcmread(files[4]).pixel_array + float(pydicom.dcmread(files[4]).RescaleIntercept)
    )
    assert vol.slice_thickness is None  # taken as contiguous, as for a missing thickness
    said = [r.getMessage() for r in caplog.records]
    assert any(f"{files[4].name} in " in m and "RescaleSlope 0; reading it as 1" in m for m in said), said
    assert any("SliceThickness '-3" in m and "taking the slices as contiguous (2 mm" in m for m in said), said
