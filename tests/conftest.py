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
def one_thread():
    """Torch on one thread for the test: tiny tensors gain nothing from threads, and on a
    shared 2-core CPU they lose a lot."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
