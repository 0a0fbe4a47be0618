"""Networks and losses: shapes for every scale, sub-pixel alignment, residual start, losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.interpolate import make_interp_spline

from thinslice.errors import ConfigError
from thinslice.model.config import ModelConfig
from thinslice.model.inference import normalize
from thinslice.model.nets import (
    AxialInterpolator,
    ThroughPlaneSR,
    build_networks,
    interpolate_slices,
    interpolation_matrix,
)
from thinslice.training.losses import reconstruction_loss, robust_consistency, wavelet_loss

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def ct01(small_ct: np.ndarray) -> torch.Tensor:
    """The small real CT crop, normalised to [0, 1]."""
    return normalize(small_ct, -1024.0, 3072.0)


@pytest.mark.parametrize("scale", [2, 3, 4, 5])
def test_axial_shapes_and_untrained_is_linear(ct01: torch.Tensor, scale: int) -> None:
    net = AxialInterpolator(scale, width=8, blocks=1)
    pair = torch.stack([ct01[:3, :31, :29], ct01[1:4, :31, :29]], dim=1)  # odd sizes pad
    out = net(pair)
    assert out.shape == (3, scale - 1, 31, 29)
    t = torch.arange(1, scale).view(1, -1, 1, 1) / scale
    assert torch.allclose(out, pair[:, :1] * (1 - t) + pair[:, 1:] * t, atol=1e-7)


@pytest.mark.parametrize("scale", [2, 3, 4, 5])
def test_through_plane_shapes_and_alignment(ct01: torch.Tensor, scale: int) -> None:
    net = ThroughPlaneSR(scale, width=8, groups=1, blocks=1)
    torch.nn.init.normal_(net.tail.weight, std=0.1)  # a non-trivial residual
    image = ct01[:7, 10, :37].reshape(1, 1, 7, 37)
    out = net(image)
    assert out.shape == (1, 1, scale * 6 + 1, 37)
    # output row k*r is input row k exactly; only the rows between change
    assert torch.equal(out[:, :, ::scale], image)
    base = interpolate_slices(image, scale, "linear", dim=-2)
    assert not torch.allclose(out, base)


def test_through_plane_untrained_equals_cubic_spline(ct01: torch.Tensor) -> None:
    net = ThroughPlaneSR(3, width=8, groups=1, blocks=1, base="cubic")
    image = ct01[:9, 20].reshape(1, 1, 9, -1)
    expected = make_interp_spline(np.arange(9), image[0, 0].double().numpy(), k=3, axis=0)(np.arange(25) / 3)
    np.testing.assert_allclose(net(image)[0, 0].detach().numpy(), expected, atol=1e-6)


def test_interpolation_matrix_degrades_gracefully() -> None:
    assert interpolation_matrix(2, 4, "cubic").shape == (5, 2)  # linear when too few samples
    m = interpolation_matrix(6, 2, "cubic")
    assert torch.equal(m[::2], torch.eye(6))
    with pytest.raises(ConfigError, match="cubic"):
        interpolation_matrix(6, 2, "cubc")


def test_one_class_per_role_for_every_scale() -> None:
    for scale in (2, 3, 4, 5, 6):
        axial, sr = build_networks(ModelConfig(scale=scale, axial_width=8, sr_width=8))
        assert type(axial) is AxialInterpolator and type(sr) is ThroughPlaneSR
    with pytest.raises(ConfigError, match="from 2 to 8"):
        ThroughPlaneSR(9)
    with pytest.raises(ConfigError, match="scale"):
        ModelConfig(scale=1)


def test_memory_module_is_optional_and_trains(ct01: torch.Tensor) -> None:
    plain = AxialInterpolator(2, width=8, blocks=1)
    assert plain.memory is None
    net = AxialInterpolator(2, width=8, blocks=1, memory=True, memory_items=4)
    pair = torch.stack([ct01[:2, :16, :16], ct01[1:3, :16, :16]], dim=1)
    out, aux = net(pair, return_aux=True)
    assert set(aux) == {"compactness", "separateness"}
    (out.mean() + aux["compactness"] + aux["separateness"]).backward()
    assert net.memory is not None and net.memory.items.grad is not None


def test_reconstruction_loss_parts(ct01: torch.Tensor) -> None:
    a, b = ct01[:4, :32, :32], ct01[1:5, :32, :32]
    total, parts = reconstruction_loss(a, b)
    assert torch.isclose(total, parts["l1"] + 0.1 * parts["wavelet"])
    assert float(wavelet_loss(a, a)) == 0.0
    assert float(wavelet_loss(a, b)) > 0.0
    assert float(wavelet_loss(ct01[:2, :3, :40], ct01[1:3, :3, :40])) >= 0.0  # tiny image
    squared, parts2 = reconstruction_loss(a, b, l1_weight=0.0, l2_weight=100.0, use_wavelet=False)
    assert "l1" in parts2 and torch.isclose(squared, 100.0 * ((a - b) ** 2).mean())


def test_robust_consistency_ignores_the_worst_voxels() -> None:
    a = torch.zeros(100)
    b = torch.zeros(100)
    b[:10] = 5.0  # one view plainly wrong on 10 % of voxels
    assert float(robust_consistency(a, b, 0.25)) == 0.0
    assert float(robust_consistency(a, b, 1.0)) == pytest.approx(2.5)
    a.requires_grad_(True)
    b2 = (b + 0.1).requires_grad_(True)
    robust_consistency(a, b2, 0.5).backward()
    assert a.grad is not None and b2.grad is not None and float(b2.grad.abs().sum()) > 0
