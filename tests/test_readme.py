"""The README stays true: its Python API block runs as written (on the test crops, under the
names it uses), and its command lines use only options their commands take."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import typer

import thinslice
from tests.conftest import CHEST_CROP, LIMB_CROP, filled_dicom
from thinslice.cli import app
from thinslice.io.dicom_write import write_dicom_series

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_api_block() -> str:
    text = README.read_text()
    match = re.search(r"^## Python API\n+```python\n(.*?)^```", text, flags=re.S | re.M)
    assert match, "README.md has no ```python block under '## Python API'"
    return match.group(1)


def _the_readme_files(here: Path) -> None:
    """ct_5mm.nii.gz, ct.nii.gz, series_5mm/ + series_1mm/ and dicom/ct_3mm."""
    (here / "ct_5mm.nii.gz").write_bytes(LIMB_CROP.read_bytes())
    (here / "ct.nii.gz").write_bytes(CHEST_CROP.read_bytes())
    filled_dicom(here / "dicom" / "ct_3mm")
    thick = filled_dicom(here / "series_5mm")  # the pair's thin series made from it: a pair of one study
    thin = thinslice.upsample(thinslice.load(thick), scale=2, method="cubic")
    write_dicom_series(thin, here / "series_1mm", template=thick, description="thin", derivation="test")


def test_the_python_api_block_runs_as_written(tmp_path: Path, monkeypatch, one_thread) -> None:
    code = _python_api_block()
    assert "steps=5000" in code  # the one change made to run it fast
    code = code.replace("steps=5000", "steps=2")
    _the_readme_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    names = {"sitk_image": sitk.ReadImage("ct_5mm.nii.gz"), "paths": ["ct_5mm.nii.gz"]}
    exec(compile(code, str(README), "exec"), names)

    thick = thinslice.load("ct_5mm.nii.gz")
    saved = thinslice.load("ct_2.5mm.nii.gz")
    assert saved.num_slices == 2 * thick.num_slices - 1
    assert saved.slice_spacing == pytest.approx(thick.slice_spacing / 2)
    assert isinstance(names["image"], sitk.Image) and names["image"].GetSpacing()[2] == pytest.approx(1.0)
    assert names["uncertainty"].data.shape == thinslice.upsample(thick, scale=4, method="linear").data.shape
    assert (tmp_path / "my_x2.pt").stat().st_size > 0
    assert set(names["report"]["mean"]) == {"cubic", "linear"}  # the second report, decimation
    assert all(np.isfinite(m["psnr_paper"]) for m in names["report"]["mean"].values())
    assert {"model", "lanczos"} <= set(names["pair"]["mean"])
    assert thinslice.load("ct_1mm").slice_spacing == pytest.approx(1.0)
    assert (tmp_path / "ct_1mm.png").stat().st_size > 0
    # 8 slices 2 mm apart and 3 mm thick: 15 between the end centres and one more past each end
    assert thinslice.load("ct_thin").num_slices == 2 * 8 - 1 + 2


def test_every_option_the_readme_shows_is_one_its_command_takes() -> None:
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    takes = {name: {opt for p in cmd.params for opt in p.opts} for name, cmd in commands.items()}
    shown = 0
    blocks = re.findall(r"^```bash\n(.*?)^```", README.read_text(), flags=re.S | re.M)
    for line in "\n".join(blocks).splitlines():
        words = shlex.split(line.split(" #")[0].rstrip("\\")) if not line.startswith("#") else []
        while words and words[0] != "thinslice":  # torchrun ... --no-python thinslice ...
            words.pop(0)
        if len(words) < 2 or words[1] not in takes:
            continue
        flags = [w.split("=")[0] for w in words[2:] if w.startswith("-")]
        unknown = [f for f in flags if f not in takes[words[1]]]
        assert not unknown, f"README: `{line.strip()}`: thinslice {words[1]} takes no {unknown}"
        shown += len(flags)
    assert shown > 50  # the README's command lines were found
