"""Reading and writing keep geometry exactly; bad paths get clear errors."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

import thinslice
from tests.conftest import CHEST_CROP, LIMB_CROP, shared
from thinslice import io
from thinslice.errors import ConfigError, InputError, OutputError
from thinslice.volume import Geometry, Volume


def test_load_matches_simpleitk_voxels_and_header():
    image = sitk.ReadImage(str(LIMB_CROP))
    volume = io.load(LIMB_CROP)
    assert volume.data.shape == (25, 64, 64)
    assert volume.geometry.slice_axis == 2
    assert volume.slice_spacing == pytest.approx(3.27, abs=1e-4)
    np.testing.assert_array_equal(volume.itk_array(), sitk.GetArrayFromImage(image))
    assert volume.geometry.origin == pytest.approx(image.GetOrigin())
    assert volume.geometry.direction == pytest.approx(image.GetDirection())


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_round_trip_every_format(tmp_path, suffix):
    volume = io.load(CHEST_CROP)
    out = io.save(volume, tmp_path / f"copy{suffix}")
    again = io.load(out)
    np.testing.assert_array_equal(again.data, volume.data)
    assert again.data.dtype == np.int16
    assert again.geometry.spacing == pytest.approx(volume.geometry.spacing)
    assert again.geometry.origin == pytest.approx(volume.geometry.origin)
    assert again.geometry.direction == pytest.approx(volume.geometry.direction)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_the_inputs_own_header_notes_are_kept_after_the_thickness(tmp_path, suffix):
    """A converter's description (NIfTI ``descrip``, the NRRD/MHA notes) survives thinslice's
    thickness note, through a second run too; NIfTI's 80-byte field is cut, never refused."""
    image = sitk.ReadImage(str(CHEST_CROP))
    image.SetMetaData("ITK_FileNotes", "TE=0;Time=101501.000;kernel=B30f")
    given = tmp_path / f"given{suffix}"
    sitk.WriteImage(image, str(given))
    volume = io.load(given)
    assert volume.meta["notes"] == "TE=0;Time=101501.000;kernel=B30f" and volume.slice_thickness is None
    first = io.load(io.save(volume.with_data(volume.data, slice_thickness=2.5), tmp_path / f"a{suffix}"))
    assert first.slice_thickness == pytest.approx(2.5) and first.meta["notes"] == volume.meta["notes"]
    second = io.load(io.save(first.with_data(first.data, slice_thickness=1.25), tmp_path / f"b{suffix}"))
    assert second.slice_thickness == pytest.approx(1.25) and second.meta["notes"] == volume.meta["notes"]
    written = sitk.ReadImage(str(tmp_path / f"b{suffix}")).GetMetaData("ITK_FileNotes")
    assert written == "thinslice slice_thickness=1.25; TE=0;Time=101501.000;kernel=B30f"  # not nested
    long = volume.with_data(volume.data, slice_thickness=volume.thickness)
    long.meta["notes"] = "x" * 200
    kept = io.load(io.save(long, tmp_path / f"long{suffix}"))
    note = f"thinslice slice_thickness={volume.thickness:.6g}; "
    assert kept.meta["notes"] == ("x" * 200 if suffix != ".nii.gz" else "x" * (79 - len(note)))


def test_slice_axis_is_largest_spacing_in_any_position(tmp_path):
    """A scan stored with its thick axis first (ITK axis 0) still upsamples that axis."""
    array = np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7)  # (k, j, i)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((4.0, 0.7, 0.7))
    image.SetOrigin((10.0, -5.0, 3.0))
    path = tmp_path / "thick_first.nii.gz"
    sitk.WriteImage(image, str(path))
    volume = io.load(path)
    assert volume.geometry.slice_axis == 0
    assert volume.data.shape == (7, 5, 6)  # i first
    np.testing.assert_array_equal(volume.itk_array(), array)
    assert io.choose_slice_axis((1.5, 1.5, 1.5)) == 2  # tie: third axis


def test_a_thick_first_axis_stays_the_slice_axis_when_its_output_is_read_back(tmp_path):
    """Upsampled, the thick axis 0 is no longer three times as wide as the pixels, so its
    spacing alone would take the third axis for the slices: the note names the axis, for
    files and for SimpleITK images alike."""
    chest = thinslice.load(CHEST_CROP)  # 1 mm slices, 0.78 mm pixels
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.moveaxis(chest.data[::4], 0, 2)))  # slices along i
    image.SetSpacing((4.0, 0.78125, 0.78125))
    source, out = tmp_path / "sagittal.nii.gz", tmp_path / "thin.nii.gz"
    sitk.WriteImage(image, str(source))
    thinslice.save(thinslice.upsample(source, 4, method="linear"), out)
    thin = thinslice.load(out)
    assert thin.geometry.slice_axis == 0 and thin.slice_spacing == pytest.approx(1.0) and thin.thickness == 1.0
    assert thin.num_slices == 4 * (thinslice.load(source).num_slices - 1) + 1 + 2  # and one past each end
    again = thinslice.upsample(sitk.ReadImage(str(out)), scale=2, method="linear")
    assert again.GetSpacing() == pytest.approx((0.5, 0.78125, 0.78125))  # along axis 0 again
    assert "thinslice slice_thickness=0.5 slice_axis=0" in again.GetMetaData("ITK_FileNotes")
    assert io.from_sitk(again).geometry.slice_axis == 0 and io.from_sitk(again).thickness == 0.5
    axial = tmp_path / "axial.nii.gz"  # the third axis goes unnamed
    thinslice.save(thinslice.upsample(CHEST_CROP, 2, method="linear"), axial)
    assert sitk.ReadImage(str(axial)).GetMetaData("descrip") == "thinslice slice_thickness=0.5"


@pytest.mark.parametrize(("slope", "kept"), [(1.0, np.int16), (2.0, np.int16), (0.5, np.float32)])
def test_integers_stored_with_a_whole_rescale_read_as_integers(tmp_path, slope, kept):
    """dcm2niix writes CT as its stored values with the DICOM rescale (scl_inter -1024):
    ITK reads scaled voxels as float, but whole HU come back as int16, so the output is
    int16 as for unscaled integer input; a fractional slope keeps float."""
    import nibabel as nib

    image = nib.load(CHEST_CROP)
    hu = np.asarray(image.dataobj).astype(np.int32)
    stored = np.round((hu + 1024) / slope).astype(np.uint16)
    scaled = nib.Nifti1Image(stored, image.affine, image.header.copy())
    scaled.header.set_data_dtype(np.uint16)
    scaled.header.set_slope_inter(slope, -1024)
    path = tmp_path / "scaled.nii.gz"
    scaled.to_filename(path)
    volume = io.load(path)
    assert volume.data.dtype == kept
    np.testing.assert_array_equal(volume.data, (stored * slope - 1024).transpose(2, 1, 0))
    out = tmp_path / "thin.nii.gz"
    thinslice.save(thinslice.upsample(path, 2, method="linear"), out)
    assert nib.load(out).get_data_dtype() == (np.int16 if kept == np.int16 else np.float32)


@pytest.mark.parametrize(("factor", "warned"), [(1e-3, True), (1.0, False), (1e3, True)])
def test_a_voxel_size_no_ct_has_is_warned_of(tmp_path, caplog, factor, warned):
    """A header in metres (or microns) reads as a scan 1000 times too small (or large)."""
    image = sitk.ReadImage(str(LIMB_CROP))
    image.SetSpacing(tuple(s * factor for s in image.GetSpacing()))
    path = tmp_path / "scaled.nii.gz"
    sitk.WriteImage(image, str(path))
    with caplog.at_level("WARNING", logger="thinslice"):
        volume = io.load(path)
    assert volume.slice_spacing == pytest.approx(3.27 * factor, rel=1e-6)
    said = [r.getMessage() for r in caplog.records if "outside the 0.01-100 mm CT has" in r.getMessage()]
    assert len(said) == (1 if warned else 0) and (not warned or "is its header in another unit?" in said[0])


@pytest.mark.parametrize("pixels", [0.78, 1.0, 1.25])
def test_thin_slices_finer_than_their_pixels_stay_along_the_third_axis(tmp_path, pixels):
    """Thin CT (0.5-0.625 mm slices) often has larger pixels than slice spacing; its slices
    are still the third axis, not an in-plane axis that happens to be wider."""
    image = sitk.GetImageFromArray(np.zeros((9, 6, 7), np.int16) - 1000)
    image.SetSpacing((pixels, pixels, 0.5))
    path = tmp_path / "thin.nii.gz"
    sitk.WriteImage(image, str(path))
    volume = io.load(path)
    assert volume.geometry.slice_axis == 2 and volume.slice_spacing == pytest.approx(0.5)
    assert volume.data.shape == (9, 6, 7)


def test_save_refuses_existing_output_without_overwrite(tmp_path):
    volume = io.load(LIMB_CROP)
    out = io.save(volume, tmp_path / "a.nii.gz")
    before = out.read_bytes()
    with pytest.raises(OutputError, match="already exists; pass --overwrite"):
        io.save(volume, out)
    assert out.read_bytes() == before
    io.save(volume, out, overwrite=True)


def test_save_refuses_to_overwrite_its_own_input(tmp_path):
    src = tmp_path / "in.nii.gz"
    src.write_bytes(LIMB_CROP.read_bytes())
    volume = io.load(src)
    with pytest.raises(OutputError, match="is the input file"):
        io.save(volume, src, overwrite=True)
    assert src.read_bytes() == LIMB_CROP.read_bytes()


def test_save_refuses_bad_destinations(tmp_path):
    volume = io.load(LIMB_CROP)
    with pytest.raises(OutputError, match="does not exist"):
        io.save(volume, tmp_path / "missing" / "x.nii.gz")
    with pytest.raises(OutputError, match="unsupported output type"):
        io.save(volume, tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_save_refuses_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    with pytest.raises(OutputError, match="cannot write output in .*Permission denied"):
        io.save(io.load(LIMB_CROP), folder / "x.nii.gz")


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path, monkeypatch):
    volume = io.load(LIMB_CROP)

    def broken_write(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk.ImageFileWriter, "Execute", broken_write)
    with pytest.raises(OutputError, match="disk full"):
        io.save(volume, tmp_path / "x.nii.gz")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"", "empty.nii.gz", "is empty"),
        (b"\x1f\x8b\x08\x00garbage" * 10, "junk.nii.gz", "cannot read"),
        (b"hello", "notes.txt", "unsupported file type"),
    ],
)
def test_load_refuses_bad_files(tmp_path, content, name, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        io.load(path)
    assert path.read_bytes() == content


def test_load_refuses_missing_path(tmp_path):
    with pytest.raises(InputError, match="not found"):
        io.load(tmp_path / "nope.nii.gz")


def test_load_refuses_truncated_nifti(tmp_path):
    full = tmp_path / "full.nii"
    io.save(io.load(LIMB_CROP), full)
    cut = tmp_path / "cut.nii"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(InputError, match="truncated"):
        io.load(cut)


@pytest.mark.parametrize(
    ("shape", "message"), [((64, 64), "2-D"), ((2, 8, 8), "2 slice"), ((3, 4, 8, 8), "4 dimensions")]
)
def test_load_refuses_wrong_dimensions(tmp_path, shape, message):
    path = tmp_path / "bad.nii.gz"
    array = np.zeros(shape, dtype=np.int16)
    image = sitk.GetImageFromArray(array, isVector=False)
    if len(shape) == 3:
        image.SetSpacing((0.8, 0.8, 3.0))
    sitk.WriteImage(image, str(path))
    with pytest.raises(InputError, match=message):
        io.load(path)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha"])
def test_load_refuses_nan_and_inf(tmp_path, suffix):
    import nibabel as nib

    array = np.zeros((8, 8, 5), dtype=np.float32)  # (i, j, k)
    array[2, 3, 3] = np.nan
    array[1, 1, 1] = np.inf
    path = tmp_path / f"nan{suffix}"
    if suffix == ".mha":
        sitk.WriteImage(sitk.GetImageFromArray(array.T.copy()), str(path))
    else:
        nib.save(nib.Nifti1Image(array, np.diag([0.8, 0.8, 3.0, 1.0])), str(path))
    with pytest.raises(InputError, match="2 NaN/Inf voxels"):
        io.load(path)


def test_geometry_slice_positions():
    geo = Geometry(spacing=(0.8, 0.8, 5.0), origin=(1.0, 2.0, 3.0), direction=(1, 0, 0, 0, 0, -1, 0, 1, 0))
    np.testing.assert_allclose(geo.slice_position(2), [1.0, 2.0 - 10.0, 3.0])
    half = geo.with_slice_spacing(2.5)
    assert half.origin == geo.origin and half.direction == geo.direction
    assert half.inplane_spacing == (0.8, 0.8)
    np.testing.assert_allclose(half.slice_position(4), geo.slice_position(2))


def test_full_shared_scans_load_with_expected_slice_axis():
    volume = io.load(shared("abd5mm_crlm1004.nii.gz"))
    assert volume.data.shape == (41, 512, 512)
    assert volume.slice_spacing == pytest.approx(5.0)
    assert isinstance(volume, Volume)


def test_json_reports_hold_null_for_what_could_not_be_scored(tmp_path):
    """A metric with nothing to score (NaN) or of identical images (inf) is null: standard
    JSON has neither, and strict readers refuse Python's NaN."""
    import json

    from thinslice.io.atomic import write_json

    path = write_json(tmp_path / "r.json", {"rows": [{"psnr": float("inf"), "ssim": float("nan"), "n": 3}], "x": 1.5})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in the JSON")) == {
        "rows": [{"psnr": None, "ssim": None, "n": 3}],
        "x": 1.5,
    }


def test_load_names_what_it_takes_when_given_something_else():
    for given, kind in ((np.zeros((3, 4, 4)), "ndarray"), (None, "NoneType"), (b"ct.nii", "bytes")):
        with pytest.raises(InputError, match=f"expected a path to a NIfTI/NRRD/MHA file or a DICOM folder, got {kind}"):
            io.load(given)


@pytest.mark.parametrize(
    "spacing", [(1.0, 1.0, 0.0), (1.0, 1.0, -3.0), (1.0, float("nan"), 1.0)], ids=["0", "-3", "nan"]
)
def test_a_geometry_needs_positive_spacings(spacing):
    """0, negative or NaN spacing used to pass and fail later: ZeroDivisionError in
    upsample, a negative output spacing, or a file that load then refused."""
    with pytest.raises(ConfigError, match="geometry spacings must be positive numbers of mm"):
        Geometry(spacing, (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))


def test_an_unknown_slice_thickness_stays_unknown_through_save_and_load(tmp_path):
    """A file that did not say how thick its slices are, saved again, still does not: its
    thickness is assumed (and logged as such) on the next read, not taken as read."""
    volume = io.load(LIMB_CROP)
    assert volume.slice_thickness is None
    again = io.load(io.save(volume, tmp_path / "again.nii.gz"))
    assert again.slice_thickness is None and again.thickness == pytest.approx(volume.thickness)
    thin = io.load(io.save(thinslice.upsample(volume, scale=2, method="linear"), tmp_path / "thin.nii.gz"))
    assert thin.slice_thickness == pytest.approx(volume.slice_spacing / 2)  # synthesized: as thick as apart


@pytest.mark.parametrize(("qform", "sform"), [(0, 2), (3, 4), (0, 0)], ids=["aligned", "talairach-mni", "none"])
def test_the_inputs_coordinate_codes_and_display_range_are_kept(tmp_path: Path, qform: int, sform: int) -> None:
    """ITK writes codes 1 (scanner) whatever the input said, and a display range of 0:
    an MNI-space scan came back claiming scanner coordinates. A file that states no space
    (0/0) keeps ITK's 1/1: with 0/0 readers would rebuild the grid from the voxel sizes,
    and an output that starts before the first slice (x3 of thick slices) would move."""
    image = nib.load(str(LIMB_CROP))
    header = image.header.copy()
    header.set_qform(image.affine, code=qform)
    header.set_sform(image.affine, code=sform)
    header["cal_min"], header["cal_max"] = -200, 300
    source = tmp_path / "coded.nii.gz"
    nib.save(nib.Nifti1Image(np.asanyarray(image.dataobj), None, header), str(source))  # the header as set
    for out in (tmp_path / "thin.nii.gz", tmp_path / "thin.nii"):
        thin = thinslice.upsample(thinslice.load(source), 3, method="linear")
        thinslice.save(thin, out)
        written, read = nib.load(str(out)).header, nib.load(str(source)).header
        assert (int(written["qform_code"]), int(written["sform_code"])) == (
            (qform, sform) if qform or sform else (1, 1)
        )
        np.testing.assert_allclose(thinslice.load(out).geometry.origin, thin.geometry.origin, atol=1e-4)
        assert (float(written["cal_min"]), float(written["cal_max"])) == (-200.0, 300.0)
        if sform or qform:  # the same space, so the same affine for the acquired slices
            np.testing.assert_allclose(nib.load(str(out)).affine[:, :2], nib.load(str(source)).affine[:, :2], atol=1e-4)
        assert read["sform_code"] == sform  # the input as it was
    # the model's uncertainty map: the same space, but not the CT's display range (0-100 HU shown flat)
    _, spread = thinslice.upsample(thinslice.load(source), 2, uncertainty=True, device="cpu")
    written = nib.load(str(thinslice.save(spread, tmp_path / "spread.nii.gz"))).header
    assert int(written["sform_code"]) == (sform if qform or sform else 1) and float(written["cal_max"]) == 0.0


def test_a_detached_output_named_relatively_is_replaced_with_overwrite(tmp_path: Path, monkeypatch) -> None:
    """Its own data file, named relatively, was taken for another header's and refused."""
    monkeypatch.chdir(tmp_path)
    scan = thinslice.load(LIMB_CROP)
    for name in ("out.mhd", "out2.nhdr"):
        thinslice.save(scan, name)
        thinslice.save(scan.with_data(scan.data + 1), name, overwrite=True)
        np.testing.assert_array_equal(thinslice.load(name).data, scan.data + 1)


def test_arrays_as_numpy_makes_them_are_taken(tmp_path: Path) -> None:
    """Big-endian voxels (as nibabel reads a big-endian file) reached torch and ITK, which
    refuse them; float16 and bool volumes, which upsample takes, could not be saved."""
    scan = thinslice.load(LIMB_CROP)
    swapped = scan.with_data(scan.data.astype(">i2"))
    assert swapped.data.dtype.isnative and np.array_equal(swapped.data, scan.data)
    np.testing.assert_array_equal(thinslice.upsample(swapped, 2).data, thinslice.upsample(scan, 2).data)
    for dtype in (np.float16, np.bool_):
        out = thinslice.save(scan.with_data(scan.data.astype(dtype)), tmp_path / f"{np.dtype(dtype).name}.nii.gz")
        np.testing.assert_array_equal(thinslice.load(out).data, scan.data.astype(dtype).astype(np.float32))


def test_a_file_beside_another_of_the_same_stem_is_read_itself(tmp_path: Path) -> None:
    """Asked for a.nii.gz, the NIfTI library opens a.nii when there is one: the header
    checked was one scan's, the voxels another's, and nothing said so."""
    shutil.copy(LIMB_CROP, tmp_path / "a.nii.gz")
    chest = nib.load(str(CHEST_CROP))
    nib.save(nib.Nifti1Image(np.asanyarray(chest.dataobj), chest.affine, chest.header), str(tmp_path / "a.nii"))
    np.testing.assert_array_equal(thinslice.load(tmp_path / "a.nii.gz").data, thinslice.load(LIMB_CROP).data)
    np.testing.assert_array_equal(thinslice.load(tmp_path / "a.nii").data, thinslice.load(CHEST_CROP).data)


@pytest.mark.parametrize("name", ["thin.nrrd", "thin.nhdr"])
def test_a_nrrd_carries_the_slice_thickness_in_its_own_field(tmp_path: Path, name: str) -> None:
    """NRRD has a field for slice thickness (``thicknesses``, per axis), which readers of the
    format take without knowing thinslice's note; it stayed empty. A NRRD another tool wrote
    with it gives its thickness, as a DICOM SliceThickness does."""
    scan = thinslice.load(LIMB_CROP)
    thin = thinslice.upsample(scan.with_data(scan.data, slice_thickness=4.0), 2, method="linear")
    out = thinslice.save(thin, tmp_path / name)
    header = out.read_bytes().split(b"\n\n")[0].decode("latin-1").splitlines()
    assert [ln for ln in header if ln.startswith("thicknesses:")] == [f"thicknesses: nan nan {thin.thickness:g}"]
    again = thinslice.load(out)  # the voxels after the longer header are intact
    np.testing.assert_array_equal(again.data, thin.data)
    assert again.geometry.spacing == pytest.approx(thin.geometry.spacing)
    assert not [p.name for p in tmp_path.iterdir() if p.name not in (name, "thin.raw.gz", "thin.raw")]

    image = sitk.ReadImage(str(LIMB_CROP))  # another tool's NRRD: the field alone, no thinslice note
    image.SetMetaData("NRRD_thicknesses[2]", "0")  # ITK writes the field from this key, a placeholder
    sitk.WriteImage(image, str(tmp_path / "other.nrrd"))
    raw = (tmp_path / "other.nrrd").read_bytes()
    assert b"thicknesses: nan nan 0\n" in raw
    (tmp_path / "other.nrrd").write_bytes(raw.replace(b"thicknesses: nan nan 0\n", b"thicknesses: nan nan 3.5\n", 1))
    assert thinslice.load(tmp_path / "other.nrrd").slice_thickness == pytest.approx(3.5)
    (tmp_path / "other.nrrd").write_bytes(raw.replace(b"thicknesses: nan nan 0\n", b"thicknesses: nan nan nan\n", 1))
    assert thinslice.load(tmp_path / "other.nrrd").slice_thickness is None
