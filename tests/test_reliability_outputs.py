"""Second hostile pass (#9), the output side: disk full, races, reports, batches, signals.

The contract of :mod:`tests.test_reliability` holds: one line and exit 2 (130/143 for
signals), nothing outside ``-o``, no input changed, no partial file at a final name.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

import thinslice
from tests.conftest import LIMB_CROP
from tests.test_reliability import _dicom_copy, assert_one_line, digest, listing, run_cli
from thinslice.errors import ConfigError, OutputError


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    return tmp_path / "in", tmp_path / "out"


def _args(src: Path, out: Path, *more: str) -> list[str]:
    return ["upsample", "-i", str(src), "-o", str(out), "-m", "linear", *more]


# ----------------------------------------------------------------------------- disk full


@pytest.mark.parametrize("name", ["thin.nii.gz", "thin.nii"])
def test_silent_short_write_is_caught_before_the_rename(
    name: str, dirs: tuple[Path, Path], capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ITK's NIfTI writer reports ENOSPC only on stderr; a file cut by a full disk must never
    be renamed into place. The writer here writes, then loses the second half, silently."""
    _, out_dir = dirs
    execute = sitk.ImageFileWriter.Execute

    def short_write(self: sitk.ImageFileWriter, *args: object) -> None:
        execute(self, *args)
        path = Path(self.GetFileName())
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    monkeypatch.setattr(sitk.ImageFileWriter, "Execute", short_write)
    code, lines = run_cli(capfd, *_args(LIMB_CROP, out_dir / name))
    assert code == 2 and re.search(r"cannot write .*(incomplete|were written).*is the disk full", lines[-1]), lines
    assert listing(out_dir) == set()


def test_real_file_size_limit(dirs: tuple[Path, Path]) -> None:
    """The same with a real short write: RLIMIT_FSIZE in a child process (SIGXFSZ ignored)."""
    import subprocess
    import sys

    _, out_dir = dirs
    code = (
        "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN);"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (60000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]));"
        "from thinslice.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(thinslice.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    for name in ("thin.nii.gz", "thin.nii"):
        proc = subprocess.run([sys.executable, "-c", code, *_args(LIMB_CROP, out_dir / name, "-q")],
                              capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines()[-1].startswith("error: cannot write"), proc.stderr
    assert listing(out_dir) == set()


# ----------------------------------------------------------------------------- no clobber


def test_existence_is_checked_at_the_rename(
    dirs: tuple[Path, Path], capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs on one -o: the second to finish must not replace the first's result."""
    _, out_dir = dirs
    out = out_dir / "thin.nii.gz"
    execute = sitk.ImageFileWriter.Execute

    def other_run_finishes_first(self: sitk.ImageFileWriter, *args: object) -> None:
        out.write_bytes(b"the other run's result")
        execute(self, *args)

    monkeypatch.setattr(sitk.ImageFileWriter, "Execute", other_run_finishes_first)
    code, lines = run_cli(capfd, *_args(LIMB_CROP, out, "-q"))
    assert_one_line(code, lines, r"already exists \(written by another run meanwhile\?\); pass --overwrite")
    assert out.read_bytes() == b"the other run's result" and listing(out_dir) == {"thin.nii.gz"}


def test_detached_outputs_name_their_data_file_and_reruns_leave_no_orphans(
    dirs: tuple[Path, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    _, out_dir = dirs
    for name, data in (("thin.mhd", "thin.raw"), ("thin2.nhdr", "thin2.raw")):
        for extra in ((), ("--overwrite",)):
            code, lines = run_cli(capfd, *_args(LIMB_CROP, out_dir / name, *extra))
            assert code == 0, lines
        assert data in (out_dir / name).read_text(errors="replace")
        assert ".part" not in (out_dir / name).read_text(errors="replace")
        assert thinslice.load(out_dir / name).num_slices == 49
    assert listing(out_dir) == {"thin.mhd", "thin.raw", "thin2.nhdr", "thin2.raw"}
    # thin.nhdr would name thin.raw, thin.mhd's data: refused even with --overwrite, which
    # replaced it (thin.mhd then read half the slices of another scan, without a word)
    before = digest(out_dir / "thin.raw")
    for extra in ((), ("--overwrite",)):
        code, lines = run_cli(capfd, *_args(LIMB_CROP, out_dir / "thin.nhdr", *extra))
        assert code == 2 and len(lines) == 1, lines
        assert lines[0].startswith("error: thin.nhdr would write its data to thin.raw, which is there already")
    assert digest(out_dir / "thin.raw") == before and thinslice.load(out_dir / "thin.mhd").num_slices == 49
    assert listing(out_dir) == {"thin.mhd", "thin.raw", "thin2.nhdr", "thin2.raw"}


# ----------------------------------------------------------------------------- reports


def test_evaluate_json_is_checked_before_the_work(dirs: tuple[Path, Path], capfd: pytest.CaptureFixture[str]) -> None:
    src_dir, out_dir = dirs
    scan = src_dir / "ct.nii.gz"
    shutil.copy(LIMB_CROP, scan)
    before = digest(scan)
    cases = [
        (str(scan), r"--json .*ct\.nii\.gz is the input file; choose another --json"),
        (str(out_dir / "missing" / "r.json"), r"--json folder does not exist: .*missing; create it first"),
        ("/proc/r.json", r"cannot write --json in /proc"),
        (str(out_dir), r"--json .*out is a folder"),
    ]
    (out_dir / "old.json").write_text("{}")
    cases.append((str(out_dir / "old.json"), r"already exists; pass --overwrite to replace it"))
    for target, message in cases:
        code, lines = run_cli(capfd, "evaluate", "-i", str(scan), "--methods", "linear", "--json", target)
        assert_one_line(code, lines, message)
    assert digest(scan) == before and (out_dir / "old.json").read_text() == "{}"
    code, lines = run_cli(capfd, "evaluate", "-i", str(scan), "--methods", "linear", "--json",
                          str(out_dir / "old.json"), "--overwrite")  # fmt: skip
    assert code == 0 and "rows" in json.loads((out_dir / "old.json").read_text())
    same = str(out_dir / "pair.png")  # it ran every method, wrote the picture, then failed on its own PNG
    code, lines = run_cli(capfd, "evaluate", "-i", str(scan), "--reference", str(scan), "--methods", "linear",
                          "--json", same, "--preview", same)  # fmt: skip
    assert_one_line(code, lines, r"--json and --preview name the same file \(.*pair\.png\); give each its own name")
    assert not (out_dir / "pair.png").exists()


def _batch_input(src_dir: Path) -> Path:
    shutil.copy(LIMB_CROP, src_dir / "a.nii.gz")
    return src_dir


def test_batch_report_never_replaces_what_is_not_a_report(
    dirs: tuple[Path, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    src_dir, out_dir = dirs
    _batch_input(src_dir)
    before = digest(src_dir)
    notes = out_dir.parent / "notes.json"
    notes.write_text('{"mine": 1}')
    for report, message in (
        (src_dir / "a.nii.gz", r"--report .*a\.nii\.gz is an input of this batch"),
        (notes, r"exists and is not a thinslice report; pass --overwrite"),
        (out_dir, r"--report .*out is a folder; give a file name"),
    ):
        code, lines = run_cli(capfd, *_args(src_dir, out_dir, "--report", str(report)))
        assert_one_line(code, lines, message)
    assert digest(src_dir) == before and notes.read_text() == '{"mine": 1}'
    code, lines = run_cli(capfd, *_args(src_dir, out_dir / "b", "--report", str(out_dir / "r.json")))
    assert code == 0, lines
    code, lines = run_cli(capfd, *_args(src_dir, out_dir / "b", "--report", str(out_dir / "r.json"), "--resume"))
    assert code == 0, lines  # an earlier report is replaced
    # the gallery --preview writes beside the report: someone's own index.html is kept
    site = out_dir.parent / "site"
    site.mkdir()
    (site / "index.html").write_text("<html>my page</html>")
    previews = ["--report", str(site / "r.json"), "--preview", str(out_dir / "p")]
    code, lines = run_cli(capfd, *_args(src_dir, out_dir / "c", *previews))
    assert_one_line(code, lines, r"index\.html exists and is not a thinslice gallery, .*pass --overwrite")
    assert (site / "index.html").read_text() == "<html>my page</html>" and not (out_dir / "c").exists()
    for extra in (("--overwrite",), ("--resume",)):  # replaced when asked; then it is ours, replaced on a rerun
        code, lines = run_cli(capfd, *_args(src_dir, out_dir / "c", *previews, *extra))
        assert code == 0 and "thinslice" in (site / "index.html").read_text(), lines
    # a picture of the user's own where a case's would go is kept, as an output would be
    mine = out_dir / "q" / "a.png"
    mine.parent.mkdir()
    mine.write_bytes(b"my picture")
    code, lines = run_cli(capfd, *_args(src_dir, out_dir / "d", "--preview", str(mine.parent)))
    assert code == 2 and any("--preview" in line and "a.png already exists" in line for line in lines), lines
    assert mine.read_bytes() == b"my picture"


@pytest.mark.parametrize("how", ["symlink", "dotdot"])
def test_batch_output_that_is_the_input_folder_in_disguise(
    how: str, dirs: tuple[Path, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    src_dir, _ = dirs
    _batch_input(src_dir)
    before = listing(src_dir)
    if how == "symlink":
        disguised = src_dir.parent / "link"
        disguised.symlink_to(src_dir)
    else:
        disguised = src_dir / ".." / "in"
    code, lines = run_cli(capfd, *_args(src_dir, disguised))
    assert_one_line(code, lines, r"output folder .* is the input folder .*; choose another -o")
    assert listing(src_dir) == before


def test_output_folder_inside_the_input_is_not_searched(dirs: tuple[Path, Path], capfd: pytest.CaptureFixture[str]):
    src_dir, _ = dirs
    _batch_input(src_dir)
    (src_dir.parent / "link").symlink_to(src_dir)
    for _ in range(2):  # the second run must not find the first run's outputs as inputs
        code, lines = run_cli(capfd, *_args(src_dir, src_dir.parent / "link" / "thin", "--resume"))
        assert code == 0, lines
    assert {p.name for p in (src_dir / "thin").iterdir()} == {"a.nii.gz", "a.nii.gz.done.json", "thinslice_report.json"}


def test_resume_recomputes_an_input_replaced_by_another_scan(
    dirs: tuple[Path, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    src_dir, out_dir = dirs
    _batch_input(src_dir)
    assert run_cli(capfd, *_args(src_dir, out_dir))[0] == 0
    first = (out_dir / "a.nii.gz").read_bytes()
    assert run_cli(capfd, *_args(src_dir, out_dir, "--resume"))[0] == 0
    assert json.loads((out_dir / "thinslice_report.json").read_text())["counts"]["skipped"] == 1
    other = thinslice.load(LIMB_CROP)
    other.data[:] = np.flip(other.data, axis=2)  # another scan, same size
    mtime = (src_dir / "a.nii.gz").stat().st_mtime_ns
    thinslice.save(other, src_dir / "a.nii.gz", overwrite=True)
    os.utime(src_dir / "a.nii.gz", ns=(mtime, mtime))  # even with the old time stamp
    assert run_cli(capfd, *_args(src_dir, out_dir, "--resume"))[0] == 0
    assert json.loads((out_dir / "thinslice_report.json").read_text())["counts"]["done"] == 1
    assert (out_dir / "a.nii.gz").read_bytes() != first


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_series_uid_cannot_steer_the_output_path(dirs: tuple[Path, Path], capfd: pytest.CaptureFixture[str]) -> None:
    """A crafted SeriesInstanceUID with '../' (and one with '/', listed through a CSV)."""
    src_dir, out_dir = dirs
    files = _dicom_copy(src_dir)
    for i, path in enumerate(files):
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = "../../../../PWNED" if i < 4 else "1.2/3"
        ds.save_as(path)
    outside = set(os.listdir(out_dir.parent))
    code, lines = run_cli(capfd, *_args(src_dir, out_dir, "--accept-non-ct"))
    (src_dir.parent / "list.csv").write_text(f"path\n{src_dir / 'series'}\n")
    code2, lines2 = run_cli(capfd, *_args(src_dir.parent / "list.csv", out_dir / "csv", "--accept-non-ct"))
    assert not any("Traceback" in ln for ln in lines + lines2)
    assert set(os.listdir(out_dir.parent)) == outside | {"list.csv"}
    assert not Path("/PWNED.nii.gz").exists()
    names = {p.name for p in out_dir.rglob("*.nii.gz")}
    assert names and all(".." not in n.split("_")[0] and "/" not in n for n in names), names


# ----------------------------------------------------------------------------- signals


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_during_upsample(
    sig: int, code: int, dirs: tuple[Path, Path], capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, out_dir = dirs
    execute = sitk.ImageFileWriter.Execute

    def killed_mid_write(self: sitk.ImageFileWriter, *args: object) -> None:
        execute(self, *args)
        os.kill(os.getpid(), sig)

    monkeypatch.setattr(sitk.ImageFileWriter, "Execute", killed_mid_write)
    got, lines = run_cli(capfd, *_args(LIMB_CROP, out_dir / "thin.nii.gz", "-q"))
    assert got == code and len(lines) == 1, lines
    assert lines[0].startswith(f"interrupted by {signal.Signals(sig).name}; kept: no output"), lines
    assert listing(out_dir) == set()  # no hidden .part either


def _tiny_train_config(folder: Path, lr: float = 1e-3) -> Path:
    config = folder / "tiny.toml"
    config.write_text(
        "[model]\naxial_width = 4\naxial_blocks = 1\nsr_width = 4\nsr_groups = 1\nsr_blocks = 1\n"
        f"[train]\nbatch_size = 1\ncrop_sizes = [[2, 16, 5]]\nconsistency_lines = 2\nval_every = 100\nlr = {lr}\n"
    )
    return config


@pytest.mark.usefixtures("one_thread")
def test_sigterm_during_training_keeps_a_checkpoint(
    dirs: tuple[Path, Path], capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from thinslice.model.checkpoint import load_checkpoint
    from thinslice.training import loop

    src_dir, out_dir = dirs
    update = loop._update_average
    calls = {"n": 0}

    def term_at_step_3(*args: object) -> None:
        update(*args)  # type: ignore[arg-type]
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(loop, "_update_average", term_at_step_3)
    ckpt = out_dir / "model.pt"
    args = ["-q", "train", "-i", str(LIMB_CROP), "-o", str(ckpt), "--steps", "50", "--device", "cpu"]
    code, lines = run_cli(capfd, *args, "--config", str(_tiny_train_config(src_dir)))
    assert code == 143, lines
    assert lines[-1] == f"interrupted by SIGTERM; kept: checkpoint {ckpt} at step 3 (continue with --resume)"
    assert load_checkpoint(ckpt)["step"] == 3


@pytest.mark.usefixtures("one_thread")
def test_diverged_training_stops_without_a_nan_checkpoint(
    dirs: tuple[Path, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    src_dir, out_dir = dirs
    ckpt = out_dir / "model.pt"
    args = ["-q", "train", "-i", str(LIMB_CROP), "-o", str(ckpt), "--steps", "40", "--device", "cpu"]
    code, lines = run_cli(capfd, *args, "--config", str(_tiny_train_config(src_dir, lr=1e12)))
    assert_one_line(code, lines, r"training diverged at step \d+: .*no checkpoint was written\. Lower lr \(now 1e\+12")
    assert listing(out_dir) == set()


def test_train_output_problems_come_before_the_training(
    dirs: tuple[Path, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    _, out_dir = dirs
    for target, message in ((out_dir, r"-o .*out is a folder"), (Path("/proc/m.pt"), r"cannot write -o in /proc")):
        code, lines = run_cli(capfd, "train", "-i", str(LIMB_CROP), "-o", str(target), "--steps", "1")
        assert_one_line(code, lines, message)


# ----------------------------------------------------------------------------- options


def test_option_mistakes_give_one_line(dirs: tuple[Path, Path], capfd: pytest.CaptureFixture[str]) -> None:
    _, out_dir = dirs
    out = out_dir / "o.nii.gz"
    for extra, message in (
        (("--target-spacing", "nan"), r"--target-spacing must be a positive number of mm, got nan"),
        (("--target-spacing", "1e-300"), r"target spacing 1e-300 mm is not reachable"),
        (("--uncertainty", str(out)), r"--uncertainty and -o name the same file"),
        (("--uncertainty", str(out_dir / ".." / out_dir.name / "o.nii.gz")), r"--uncertainty and -o name the same"),
    ):
        code, lines = run_cli(capfd, *_args(LIMB_CROP, out, *extra))
        assert_one_line(code, lines, message)
    assert listing(out_dir) == set()


def test_api_save_refuses_to_replace_without_overwrite_even_in_a_race(tmp_path: Path) -> None:
    volume = thinslice.load(LIMB_CROP)
    thinslice.save(volume, tmp_path / "a.nii.gz")
    with pytest.raises(OutputError, match="already exists"):
        thinslice.save(volume, tmp_path / "a.nii.gz")
    with pytest.raises(ConfigError):
        thinslice.upsample(volume, 2, method="linear", target_spacing=float("nan"))
