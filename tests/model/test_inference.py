"""Inference, checkpoints and the device helper, on a small real CT crop."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.interpolate import make_interp_spline

import thinslice
from thinslice.device import resolve_device
from thinslice.errors import ConfigError, ModelError
from thinslice.model.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint
from thinslice.model.config import ModelConfig
from thinslice.model.inference import Synthesizer, load_model
from thinslice.model.nets import build_networks

pytestmark = pytest.mark.usefixtures("one_thread")


TINY = dict(axial_width=8, axial_blocks=1, sr_width=8, sr_groups=1, sr_blocks=1)


def make_synth(scale: int = 2, perturb: bool = True, precision: str = "float32", **kwargs) -> Synthesizer:
    """A small model; ``perturb`` gives its zero-initialised tails random weights. float32:
    these tests check exact properties (bf16 has its own tests in test_precision.py)."""
    config = ModelConfig(scale=scale, **{**TINY, **kwargs})
    torch.manual_seed(0)
    axial, sr = build_networks(config)
    if perturb:
        for net in (axial, sr):
            torch.nn.init.normal_(net.tail.weight, std=0.01)
    return Synthesizer(axial, sr, config, device="cpu", precision=precision)


@pytest.fixture
def crop(small_ct: np.ndarray) -> np.ndarray:
    return small_ct[:9, :40, :36]


@pytest.mark.parametrize("scale", [2, 3, 4, 5])
def test_upsample_shapes_and_acquired_slices_bit_identical(crop: np.ndarray, scale: int) -> None:
    synth = make_synth(scale)
    out, spread = synth.upsample(crop, return_uncertainty=True)
    d = crop.shape[0]
    assert out.shape == spread.shape == (scale * (d - 1) + 1, *crop.shape[1:])
    assert out.dtype == np.float32
    assert np.array_equal(out[::scale], crop.astype(np.float32))
    assert np.all(spread[::scale] == 0) and np.all(spread >= 0) and spread.max() > 0
    assert np.all(np.isfinite(out))


def test_untrained_model_is_the_base_interpolation(crop: np.ndarray) -> None:
    synth = make_synth(2, perturb=False, base="cubic")
    out = synth.upsample(crop)
    clipped = np.clip(crop.astype(np.float64), -1024, 3072)
    cubic = make_interp_spline(np.arange(len(crop)) * 2, clipped, k=3, axis=0)(np.arange(out.shape[0]))
    np.testing.assert_allclose(out, np.clip(cubic, -1024, 3072), atol=0.05)


def test_power_scales_repeat_and_others_are_refused(crop: np.ndarray) -> None:
    synth = make_synth(2)
    x4 = synth.upsample(crop, 4)
    assert x4.shape[0] == 4 * (crop.shape[0] - 1) + 1
    assert np.array_equal(x4[::4], crop.astype(np.float32))
    once = synth.upsample(crop)
    np.testing.assert_array_equal(x4[::2], once)
    with pytest.raises(ModelError, match="valid: 2, 4, 8"):
        synth.upsample(crop, 3)


def test_batching_and_views(crop: np.ndarray) -> None:
    synth = make_synth(3)
    a = synth.upsample(crop, batch_size=1)
    b = synth.upsample(crop, batch_size=64)
    np.testing.assert_allclose(a, b, atol=1e-3)
    single = synth.upsample(crop, views="coronal")
    _, spread = synth.upsample(crop, views=["coronal"], return_uncertainty=True)
    assert single.shape == a.shape and float(spread.max()) == 0.0
    with pytest.raises(ConfigError, match="unknown view"):
        synth.upsample(crop, views="axal")


def test_median_fusion_and_missing_network(crop: np.ndarray) -> None:
    out = make_synth(2, fusion="median").upsample(crop)
    assert np.array_equal(out[::2], crop.astype(np.float32))
    config = ModelConfig(**TINY)
    _, sr = build_networks(config, "sr")
    synth = Synthesizer(None, sr, config, device="cpu")
    assert synth.views == ("coronal", "sagittal")
    with pytest.raises(ModelError, match="axial"):
        synth.upsample(crop, views="axial")


def _save(synth: Synthesizer, path: Path) -> Path:
    weights = {"axial": synth.axial.state_dict(), "sr": synth.sr.state_dict()}
    return save_checkpoint(path, weights=weights, model_config=synth.config)


def test_checkpoint_round_trip(tmp_path: Path, crop: np.ndarray) -> None:
    synth = make_synth(2)
    path = _save(synth, tmp_path / "model.pt")
    loaded = load_model(path, device="cpu", precision="float32")
    assert loaded.scale == 2 and loaded.config == synth.config
    np.testing.assert_array_equal(loaded.upsample(crop), synth.upsample(crop))
    ckpt = load_checkpoint(path)
    assert ckpt["thinslice_version"] == thinslice.__version__
    assert ckpt["hu_window"] == [-1024.0, 3072.0] and ckpt["format_version"] == FORMAT_VERSION


class _Payload:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (Path.touch, (Path(self.marker),))


def test_pickled_object_is_refused_and_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pt"
    torch.save({"format": "thinslice-checkpoint", "payload": _Payload(str(marker))}, path)
    with pytest.raises(ModelError, match="not a thinslice checkpoint"):
        load_model(path)
    assert not marker.exists()
    path.write_bytes(pickle.dumps(_Payload(str(marker)), protocol=2))
    with pytest.raises(ModelError, match="not a thinslice checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()


def test_foreign_and_broken_files_raise_model_error(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a model")
    with pytest.raises(ModelError, match="is not a thinslice checkpoint"):
        load_model(text)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(ModelError, match="is not a thinslice checkpoint"):
        load_checkpoint(plain)
    with pytest.raises(ModelError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    newer = _save(make_synth(2), tmp_path / "newer.pt")
    ckpt = torch.load(newer, weights_only=True)
    ckpt["format_version"] = FORMAT_VERSION + 1
    torch.save(ckpt, newer)
    with pytest.raises(ModelError, match="upgrade thinslice"):
        load_model(newer)


def test_interrupted_write_keeps_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    synth = make_synth(2)
    path = _save(synth, tmp_path / "model.pt")
    before = path.read_bytes()

    def broken_save(obj, fh) -> None:  # noqa: ANN001
        fh.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        _save(synth, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ConfigError, match="did you mean 'cuda'"):
        resolve_device("cdua")
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda:0")
    else:
        with pytest.raises(ConfigError, match="does not exist"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_sharpen_network_changes_acquired_rows_and_inference_uses_them() -> None:
    from thinslice.model.config import ModelConfig
    from thinslice.model.inference import Synthesizer
    from thinslice.model.nets import ThroughPlaneSR, build_networks

    torch.manual_seed(0)
    net = ThroughPlaneSR(scale=3, sharpen=True)
    x = torch.rand(2, 1, 5, 12)
    assert torch.equal(net(x)[:, :, ::3], x)  # zero-initialised tail: base interpolation
    torch.nn.init.normal_(net.tail.weight, std=0.1)
    out = net(x)
    assert out.shape == (2, 1, 13, 12)
    assert not torch.allclose(out[:, :, ::3], x)
    cfg = ModelConfig(scale=3, sharpen=True)
    axial, sr = build_networks(cfg)
    sr.load_state_dict(net.state_dict())
    synth = Synthesizer(axial, sr, cfg, device="cpu")
    vol = np.random.default_rng(0).uniform(-500, 500, (4, 12, 12)).astype(np.float32)
    sharp, unc = synth.upsample(vol, return_uncertainty=True)
    assert not np.allclose(sharp[::3], vol)
    assert np.isfinite(unc).all()
    kept = synth.upsample(vol, keep_acquired=True)
    np.testing.assert_array_equal(kept[::3], vol)
    # the acquired rows come from the two through-plane views only
    only_sr = synth.upsample(vol, views="coronal,sagittal")
    np.testing.assert_allclose(sharp[::3], only_sr[::3], atol=1e-2)
