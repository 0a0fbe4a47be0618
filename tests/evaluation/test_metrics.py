"""Each metric against a hand computation on a small case."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from thinslice.evaluation.metrics import body_mask, compare, scale_hu, synthesized_mask


def _case():
    rng = np.random.default_rng(0)
    truth = np.full((5, 16, 16), -1000.0, dtype=np.float32)
    truth[:, 3:13, 3:13] = 40.0 + rng.normal(0, 20, (5, 10, 10))
    pred = truth.copy()
    pred[1] += 100.0  # error on a synthesized slice (r=2: slices 1 and 3)
    return truth, pred


def test_psnr_by_hand():
    truth, pred = _case()
    m = compare(truth, pred, 2)
    mse_all = (100.0 / 4096) ** 2 * (16 * 16) / truth.size
    assert m["psnr_paper"] == pytest.approx(10 * math.log10(1 / mse_all), rel=1e-4)
    mse_synth = (100.0 / 4096) ** 2 / 2  # one of two synthesized slices is off by 100 HU
    assert m["psnr_synth"] == pytest.approx(10 * math.log10(1 / mse_synth), rel=1e-4)


def test_psnr_body_uses_window_and_mask():
    truth, pred = _case()
    pred[1, 0, 0] = 3000.0  # outside the body: must not count
    m = compare(truth, pred, 2)
    # inside the body, slice 1 is off by 100 HU in a 2000 HU window; slice 3 is exact
    tb = np.clip(truth[[1, 3]], -1000, 1000)
    pb = np.clip(pred[[1, 3]], -1000, 1000)
    body = body_mask(truth)[[1, 3]]
    mse = (((tb - pb) / 2000.0)[body] ** 2).mean()
    assert m["psnr_body"] == pytest.approx(10 * math.log10(1 / mse), rel=1e-4)
    assert body.sum() == 2 * 100


def test_ssim_planes_by_hand():
    truth, pred = _case()
    m = compare(truth, pred, 2)
    t, p = scale_hu(truth), scale_hu(pred)
    ax = np.mean([structural_similarity(t[k], p[k], data_range=1.0) for k in (1, 3)])
    cor = np.mean([structural_similarity(t[:, j, :], p[:, j, :], data_range=1.0, win_size=5) for j in range(16)])
    sag = np.mean([structural_similarity(t[:, :, i], p[:, :, i], data_range=1.0, win_size=5) for i in range(16)])
    assert m["ssim_axial"] == pytest.approx(ax, rel=1e-5)
    assert m["ssim_coronal"] == pytest.approx(cor, rel=1e-5)
    assert m["ssim_sagittal"] == pytest.approx(sag, rel=1e-5)
    assert m["ssim_axial"] < 1.0


def test_identical_volumes_score_perfect():
    truth, _ = _case()
    m = compare(truth, truth.copy(), 2)
    assert m["psnr_synth"] == math.inf
    assert m["ssim_axial"] == pytest.approx(1.0)


def test_scale_and_masks():
    np.testing.assert_allclose(scale_hu(np.array([-3024, -1024, 1024, 5000])), [0, 0, 0.5, 1])
    np.testing.assert_array_equal(synthesized_mask(7, 3), [False, True, True, False, True, True, False])
