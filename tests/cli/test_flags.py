"""The shared CLI flags: -q/-v on either side of the subcommand, the new names and the old spellings."""

from __future__ import annotations

from pathlib import Path

import pytest

import thinslice
from tests.conftest import LIMB_CROP
from thinslice.cli import main


def test_quiet_after_the_subcommand_is_accepted(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "thin.nii.gz"
    assert main(["upsample", "-i", str(LIMB_CROP), "-o", str(out), "--scale", "2", "-m", "linear", "-q"]) == 0
    assert thinslice.load(out).num_slices == 2 * (thinslice.load(LIMB_CROP).num_slices - 1) + 1
    assert capfd.readouterr().err == ""  # -q: no "wrote ..." line
    out2 = tmp_path / "thin2.nii.gz"
    assert main(["upsample", "-i", str(LIMB_CROP), "-o", str(out2), "--scale", "2", "-m", "linear"]) == 0
    assert "wrote" in capfd.readouterr().err  # and without -q the log line is there


def test_overwrite_and_accept_non_ct_are_separate(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "thin.nii.gz"
    args = ["upsample", "-i", str(LIMB_CROP), "-o", str(out), "-r", "2", "-m", "linear"]
    assert main(args) == 0
    assert main(args) == 2
    assert "pass --overwrite" in capfd.readouterr().err
    assert main([*args, "--accept-non-ct"]) == 2  # accepting non-CT values does not overwrite
    assert main([*args, "--overwrite"]) == 0


def test_old_spellings_still_work_with_a_deprecation_note(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "thin.nii.gz"
    args = ["upsample", "-i", str(LIMB_CROP), "-o", str(out), "-r", "2", "-m", "linear"]
    assert main(args) == 0
    capfd.readouterr()
    assert main([*args, "--force"]) == 0
    assert "--force is deprecated" in capfd.readouterr().err
    src = tmp_path / "in"
    src.mkdir()
    (src / "ct.nii.gz").write_bytes(LIMB_CROP.read_bytes())
    batch = ["upsample", "-i", str(src), "-o", str(tmp_path / "out"), "-r", "2", "-m", "linear"]
    assert main(batch) == 0
    capfd.readouterr()
    assert main([*batch, "--continue"]) == 0
    err = capfd.readouterr().err
    assert "--continue is deprecated" in err and "1 skipped" in err


def test_one_input_for_a_single_upsample(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "thin.nii.gz"
    assert main(["upsample", "-i", str(LIMB_CROP), "-i", str(LIMB_CROP), "-o", str(out)]) == 2
    assert "give one -i" in capfd.readouterr().err
    assert not out.exists()
