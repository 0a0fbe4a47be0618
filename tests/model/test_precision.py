"""The fast paths of synthesis: bf16 convolutions, the float32 switch, the fallback."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import thinslice
from tests.conftest import CHEST_CROP, LIMB_CROP
from thinslice import device
from thinslice.cli import main
from thinslice.errors import ConfigError
from thinslice.methods.learned import ModelMethod


@pytest.mark.parametrize("crop", [LIMB_CROP, CHEST_CROP], ids=["limb", "chest"])
def test_bf16_gives_the_float32_result_within_a_few_hu(crop, one_thread) -> None:
    volume = thinslice.load(crop)
    exact = thinslice.upsample(volume, scale=2, precision="float32").data.astype(np.float64)
    fast = thinslice.upsample(volume, scale=2, precision="bfloat16").data.astype(np.float64)
    diff = np.abs(fast - exact)
    # measured: mean 0.1 HU, at most 4 HU (the acquisition noise of CT is 10-20 HU)
    assert diff.mean() < 0.5 and diff.max() <= 8
    assert diff.max() > 0  # bf16 really ran: the results are not bit-identical


def test_auto_picks_bf16_only_where_the_cpu_has_it(monkeypatch) -> None:
    cpu = torch.device("cpu")
    assert device.resolve_precision("float32", cpu) == torch.float32  # the switch
    assert device.resolve_precision(" BFloat16 ", cpu) == torch.bfloat16
    monkeypatch.setattr(device, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert device.resolve_precision("auto", cpu) == torch.bfloat16
    monkeypatch.setattr(device, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    assert device.resolve_precision("auto", cpu) == torch.float32
    with pytest.raises(ConfigError, match="unknown precision 'half'"):
        device.resolve_precision("half", cpu)


def test_a_cpu_without_bf16_falls_back_to_the_float32_result(monkeypatch, one_thread) -> None:
    monkeypatch.setattr(device, "cpu_flags", lambda: frozenset())  # e.g. not Linux, or an older CPU
    volume = thinslice.load(LIMB_CROP)
    auto = thinslice.upsample(volume, scale=2)
    exact = thinslice.upsample(volume, scale=2, precision="float32")
    np.testing.assert_array_equal(auto.data, exact.data)
    assert ModelMethod().synthesizer.dtype == torch.float32


def test_precision_on_the_command_line(tmp_path, capfd) -> None:
    out = tmp_path / "thin.nii.gz"
    args = ["upsample", "-i", str(LIMB_CROP), "-o", str(out), "--scale", "2"]
    assert main(["-q", *args, "--precision", "float32"]) == 0
    exact = thinslice.load(out).data
    assert main(["-q", *args, "--overwrite"]) == 0  # auto
    assert np.abs(thinslice.load(out).data.astype(int) - exact).max() <= 8
    assert main(["-q", *args, "--overwrite", "--precision", "half"]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert err[-1] == "error: unknown precision 'half' (choose from auto, float32, bfloat16)"
    assert main(["-q", *args, "--overwrite", "--method", "cubic", "--precision", "float32"]) == 2
    assert "--precision applies to --method model" in capfd.readouterr().err
    assert main([*args, "--overwrite", "--fast"]) == 0  # the old flag: a note, then the usual run
    assert "warning: --fast is deprecated: two views are now the default" in capfd.readouterr().err


def test_freed_buffers_are_kept_then_returned() -> None:
    # glibc here: the setting applies (elsewhere it is skipped, and False says so)
    assert device.keep_freed_memory() is True
    device.release_freed_memory()
