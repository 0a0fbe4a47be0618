"""The preview figure: windows chosen from the content, orientation for display."""

from __future__ import annotations

import numpy as np

from tests.conftest import CHEST_CROP, DICOM_CROP
from thinslice.evaluation import figures
from thinslice.io import load
from thinslice.volume import Geometry, Volume


def test_windows_follow_the_content() -> None:
    assert figures.choose_windows(load(CHEST_CROP).data) == [figures.SOFT_TISSUE, figures.LUNG]
    soft = load(DICOM_CROP).data  # skin edge: air, fat, soft tissue
    assert figures.choose_windows(soft) == [figures.SOFT_TISSUE]
    bony = soft.copy()
    bony[:, :4, :] = 1200  # a bone edge: 6 % of the voxels
    assert figures.choose_windows(bony) == [figures.SOFT_TISSUE, figures.BONE]
    (mr,) = figures.choose_windows(np.linspace(0, 4000, 8 * 16 * 16).reshape(8, 16, 16))  # no air: not CT
    assert mr.name == "p1-p99" and 0 < mr.lo < 100 and 3900 < mr.hi < 4000
    assert (figures.LUNG.lo, figures.LUNG.hi, figures.SOFT_TISSUE.label) == (-1350, 150, "soft tissue W400 L40")


def test_views_put_superior_up_and_keep_the_physical_aspect() -> None:
    data = np.arange(5 * 4 * 6, dtype=np.float32).reshape(5, 4, 6)  # (D, H, W)
    up = Volume(data, Geometry((0.5, 0.8, 3.0), (0, 0, 0), (1, 0, 0, 0, 1, 0, 0, 0, 1)))
    coronal, sagittal = figures._views(up)
    np.testing.assert_array_equal(coronal.image, data[:, 2, :])
    np.testing.assert_array_equal(sagittal.image, data[:, :, 3])
    assert (coronal.aspect, sagittal.aspect) == (3.0 / 0.5, 3.0 / 0.8)
    assert (coronal.height_mm, coronal.width_mm, sagittal.width_mm) == (15.0, 3.0, 3.2)
    # slices running downwards (feet first), x to the patient's right: both flipped for display
    down = Volume(data, Geometry((0.5, 0.8, 3.0), (0, 0, 0), (-1, 0, 0, 0, 1, 0, 0, 0, -1)))
    coronal, _ = figures._views(down)
    np.testing.assert_array_equal(coronal.image, data[::-1, 2, ::-1])


def _coordinates(geometry: Geometry, size: tuple[int, int, int], axis: int) -> Volume:
    """A volume whose every voxel holds its own LPS coordinate ``axis`` (mm)."""
    index = np.stack(np.meshgrid(*(np.arange(n) for n in size), indexing="ij"), axis=-1)  # (i, j, k, 3)
    direction = np.asarray(geometry.direction, float).reshape(3, 3)
    lps = np.asarray(geometry.origin) + (index * np.asarray(geometry.spacing)) @ direction.T
    return Volume.from_itk_array(np.ascontiguousarray(lps[..., axis].transpose(2, 1, 0)), geometry)


def test_views_of_slices_that_are_not_axial_are_named_and_oriented_as_their_planes() -> None:
    """Coronal or sagittal slices, stored any way round: each view is named for its plane
    and drawn as radiologists read it (row 0 at the bottom): superior up in coronal and
    sagittal views, anterior up in axial ones, patient right on the left, anterior on the
    left of sagittal views. Both views were called coronal and sagittal, and drawn as
    such, whatever the slices were."""
    rotations = {  # columns: ITK axes i, j, k in LPS; k (the slices) along y, x, or y reversed
        "coronal slices": (1, 0, 0, 0, 0, 1, 0, -1, 0),
        "sagittal slices": (0, 0, 1, 1, 0, 0, 0, -1, 0),
        "coronal slices, rows down, left to right": (-1, 0, 0, 0, 0, -1, 0, 1, 0),
    }
    for case, direction in rotations.items():
        geometry = Geometry((0.7, 0.9, 4.0), (10.0, -20.0, 30.0), direction)
        x, y, z = (figures._views(_coordinates(geometry, (6, 5, 7), a)) for a in range(3))
        planes = {"coronal slices": ("axial", "sagittal"), "sagittal slices": ("axial", "coronal")}
        names = planes.get(case, planes["coronal slices"])
        for v, name in enumerate(names):
            assert (x[v].name, y[v].name, z[v].name) == (name, name, name), case
            up = y[v].image if name == "axial" else z[v].image
            assert np.all(np.diff(up, axis=0) * (-1 if name == "axial" else 1) > 0), (case, name)
            across = y[v].image if name == "sagittal" else x[v].image
            assert np.all(np.diff(across, axis=1) > 0), (case, name)


def test_noisy_air_around_the_body_is_not_lung() -> None:
    """The noise of the air around a pelvis reaches -900 HU in some scans: a share of it in
    the lung range chose the lung window over bone. Lung itself, cut by a crop or not,
    still does."""
    rng = np.random.default_rng(0)
    data = -1000 + rng.normal(0, 50, (6, 64, 64))  # air around the body: 16 % of it above -950
    data[:, 8:56, 8:56] = 40.0  # soft tissue
    data[:, 30:36, 30:36] = 1200.0  # bone: 0.9 % of the voxels
    assert figures.choose_windows(data) == [figures.SOFT_TISSUE, figures.BONE]
    lung = -820 + rng.normal(0, 30, (6, 28, 20))
    data[:, 12:40, 12:32] = lung  # lung inside the chest wall
    assert figures.choose_windows(data) == [figures.SOFT_TISSUE, figures.LUNG]
    cropped = np.full((6, 64, 64), 40.0)  # a crop inside the body, through the lung
    cropped[:, 12:40, 0:20] = lung
    assert figures.choose_windows(cropped) == [figures.SOFT_TISSUE, figures.LUNG]
    data[:, 10:54, 10:40] = -960 + rng.normal(0, 30, (6, 44, 30))  # emphysema: a median below -950, inside the body
    assert figures.choose_windows(data) == [figures.SOFT_TISSUE, figures.LUNG]
