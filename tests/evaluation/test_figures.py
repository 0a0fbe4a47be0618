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
