"""Fusion streamed into the output: the int16 output holds the running mean itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.model.test_inference import make_synth
from thinslice.model.fusion import decode, encode, linear_at


def test_codes_keep_the_mean_to_an_eighth_of_a_hu() -> None:
    values = torch.linspace(-0.4, 1.4, 10001)  # normalised: HU -2662..6758
    back = decode(encode(values))
    assert (back - values).abs().max() * 4096 <= 1 / 16 + 1e-3
    assert decode(encode(torch.tensor([-3.0, 5.0]))).tolist() == pytest.approx([-0.5, 1.5], abs=1e-4)


@pytest.mark.parametrize("views", ["all", "coronal,sagittal", "axial", "coronal"])
def test_int16_output_is_the_rounded_float32_result(small_ct, views) -> None:
    synth = make_synth(2)
    exact = synth.upsample(small_ct, views=views)
    rounded = synth.upsample(small_ct, views=views, out_dtype=np.int16)
    assert rounded.dtype == np.int16
    # the mean kept in 1/8 HU steps between views moves a value across .5 now and then
    assert np.abs(rounded.astype(np.float64) - np.rint(exact)).max() <= 1
    np.testing.assert_array_equal(rounded[::2], small_ct)  # acquired slices kept exactly


def test_outside_the_window_follows_linear_interpolation_in_int16(small_ct) -> None:
    data = small_ct.copy()
    data[:, :4, :] = -3024  # padding outside the field of view, below the window
    synth = make_synth(2)
    out = synth.upsample(data, out_dtype=np.int16)
    assert out[:, :4, :].max() < -2900 and np.median(out[:, :4, :]) == -3024  # not clipped at -1024
    exact = synth.upsample(data)
    assert np.abs(out.astype(np.float64) - np.rint(exact)).max() <= 1
    # the axial view finishes a few rows at a time: each slab adds the excess of its own slices
    axial = synth.upsample(data, views="axial", batch_size=2)
    assert np.median(axial[:, :4, :]) == -3024  # (this untrained network moves some of it)
    data[5, 4:8, :] = 3500  # above the window, in one slice: it fades linearly to both neighbours
    lifted = synth.upsample(data, views="axial", batch_size=2) - synth.upsample(
        np.clip(data, None, 3072), views="axial", batch_size=2
    )
    np.testing.assert_allclose(
        lifted[[9, 10, 11], 4:8], np.broadcast_to([[[214]], [[428]], [[214]]], (3, 4, data.shape[2])), atol=0.5
    )
    assert np.abs(np.delete(lifted, [9, 10, 11], axis=0)).max() < 0.5


def test_sharpening_int16_output_with_spread(small_ct) -> None:
    synth = make_synth(2, sharpen=True)
    exact, spread = synth.upsample(small_ct, return_uncertainty=True)
    rounded, spread16 = synth.upsample(small_ct, return_uncertainty=True, out_dtype=np.int16)
    assert np.abs(rounded.astype(np.float64) - np.rint(exact)).max() <= 1
    np.testing.assert_allclose(spread16, spread, atol=0.2)  # HU; spread from the coded mean
    assert spread[::2].max() > 0  # acquired rows re-estimated by two views


def test_linear_at_output_rows() -> None:
    values = np.arange(4, dtype=np.float32).reshape(4, 1) * 10
    rows = np.arange(10)
    np.testing.assert_allclose(linear_at(values, rows, 3)[:, 0], np.arange(10) * 10 / 3, atol=1e-5)


def test_the_pipeline_holds_one_output_sized_array(one_thread) -> None:
    """No float32 copy of the output anywhere on the way to the int16 result (numpy's
    allocations, which tracemalloc sees; the normalised input is torch's)."""
    import tracemalloc

    import thinslice
    from tests.conftest import LIMB_CROP

    limb = thinslice.load(LIMB_CROP)
    volume = limb.with_data(np.tile(limb.data, (1, 4, 4)))  # 25 x 256 x 256 int16
    thinslice.upsample(volume.with_data(volume.data[:3]), scale=4)  # load the model first
    tracemalloc.start()
    try:
        out = thinslice.upsample(volume, scale=4)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.data.dtype == np.int16 and out.num_slices == 4 * 24 + 1 + 2  # one past each end centre
    float_copy = out.data.size * 4
    assert peak < out.data.nbytes + 0.5 * float_copy, (peak, out.data.nbytes)


def test_a_large_job_states_its_memory_estimate(monkeypatch, caplog) -> None:
    import logging

    import thinslice
    from tests.conftest import LIMB_CROP
    from thinslice.pipeline import upsample as pipeline

    monkeypatch.setattr(pipeline, "LARGE_JOB", 1000)  # bytes: every job is large here
    with caplog.at_level(logging.INFO, logger="thinslice"):
        thinslice.upsample(LIMB_CROP, scale=2, method="linear")
    said = [r.getMessage() for r in caplog.records if "GiB of memory besides the input" in r.getMessage()]
    assert said and said[0].startswith("upsampling limb_crop 25x64x64 x2 with linear needs about 0.0 GiB")
