"""The fast .nii.gz writer: blocks compressed on all cores, read back by every reader."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import SimpleITK as sitk

import thinslice
from tests.conftest import CHEST_CROP
from thinslice.io.compress import gzip_file
from thinslice.io.headers import gzip_payload_size


def test_blocks_join_into_the_original_bytes(tmp_path) -> None:
    raw = tmp_path / "raw.bin"
    payload = np.random.default_rng(0).integers(-1024, 3000, 5_000_000, dtype=np.int16).tobytes()  # 10 MB
    raw.write_bytes(payload)
    packed = tmp_path / "raw.bin.gz"
    gzip_file(raw, packed)
    data = packed.read_bytes()
    assert data.count(b"\x1f\x8b\x08") >= 3  # several gzip members (4 MiB blocks)
    assert gzip.decompress(data) == payload
    assert gzip_payload_size(packed) == len(payload)


def test_a_saved_volume_reads_back_in_sitk_and_nibabel(tmp_path) -> None:
    chest = thinslice.load(CHEST_CROP)
    big = chest.with_data(np.tile(chest.data, (2, 8, 8)))  # 66 x 384 x 384 int16: 19 MB, 5 blocks
    out = thinslice.save(big, tmp_path / "big.nii.gz")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial files left
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out))), big.data)
    np.testing.assert_array_equal(np.asarray(nib.load(out).dataobj).transpose(2, 1, 0), big.data)
    assert thinslice.load(out).thickness == big.thickness  # the header notes survive
