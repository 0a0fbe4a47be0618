"""Training: configs, crops, a step that learns, exact resume, checkpoints, DDP under torchrun."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from thinslice.errors import ConfigError, InputError, OutputError
from thinslice.model.checkpoint import load_checkpoint
from thinslice.model.config import ModelConfig
from thinslice.model.inference import load_model
from thinslice.training.config import LossWeights, TrainConfig, load_config
from thinslice.training.data import CropSampler, degrade_inplane, prepare_volumes
from thinslice.training.loop import train
from thinslice.training.objective import DistillationModel
from thinslice.volume import Geometry, Volume

MODEL = ModelConfig(axial_width=8, axial_blocks=1, sr_width=8, sr_groups=1, sr_blocks=1)
TRAIN = TrainConfig(
    batch_size=1,
    crop_sizes=((2, 24, 5), (3, 24, 10)),
    consistency_lines=4,
    val_every=2,
    lr=1e-3,
)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def volume(small_ct: np.ndarray) -> Volume:
    """The small crop as a thick-slice Volume (every 2nd slice: 6.54 mm)."""
    geometry = Geometry((0.98, 0.98, 6.54), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    return Volume(np.ascontiguousarray(small_ct[::2, :40, :40]), geometry, "limb")


def test_config_toml_round_trip_and_unknown_keys(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(
        '[model]\nscale = 3\nbase = "cubic"\n[train]\nlr = 1\ncrop_sizes = [[3, 32, 19]]\n'
        "[train.weights]\nconsistency = 0.2\n"
    )
    model, train_cfg = load_config(good)
    assert model.scale == 3 and model.base == "cubic"
    assert train_cfg.lr == 1.0 and train_cfg.crop_for(3) == (32, 19)
    assert train_cfg.weights == LossWeights(consistency=0.2)
    assert TrainConfig.from_dict(train_cfg.to_dict()) == train_cfg
    assert ModelConfig.from_toml(good) == model
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nlearning_rate = 1e-4\nbatchsize = 2\n")
    with pytest.raises(ConfigError, match="batchsize \\(did you mean batch_size\\?\\), learning_rate"):
        load_config(bad)
    bad.write_text("[modle]\nscale = 2\n")
    with pytest.raises(ConfigError, match="modle"):
        load_config(bad)
    bad.write_text('[model]\nscale = "two"\n')
    with pytest.raises(ConfigError, match="integer"):
        load_config(bad)
    with pytest.raises(ConfigError, match="did you mean 'cubic'"):
        ModelConfig(base="cubik")
    with pytest.raises(ConfigError, match="no entry for scale 4"):
        TRAIN.crop_for(4)


def test_crops_fit_small_volumes(volume: Volume) -> None:
    cfg = replace(TRAIN, crop_sizes=((2, 64, 33),))  # larger than the volume
    observed = prepare_volumes([volume], MODEL, cfg.val_fraction)
    sampler = CropSampler(observed, MODEL, cfg, torch.Generator().manual_seed(0))
    batch = sampler.sample()
    d = volume.data.shape[0]
    n = batch.crop.shape[1]
    assert n <= d and (n - 1) % 2 == 0 and batch.crop.shape[2:] == (40, observed[0].train_w)
    assert float(batch.crop.min()) >= 0.0 and float(batch.crop.max()) <= 1.0
    assert batch.smore_in is not None and batch.smore_target is not None
    assert batch.smore_target.shape[2] == 2 * (batch.smore_in.shape[2] - 1) + 1
    with pytest.raises(InputError, match="needs at least 3"):
        prepare_volumes([volume.data[:2]], MODEL, 0.1)


def test_degrade_inplane_matches_decimation() -> None:
    images = torch.rand(3, 16, 40)
    lr, hr = degrade_inplane(images, ratio=3.3, scale=2)
    assert hr.shape == (3, 1, 2 * (lr.shape[2] - 1) + 1, 16)
    assert torch.equal(lr, hr[:, :, ::2])
    assert degrade_inplane(images[..., :4], ratio=3.3, scale=2) is None


def test_training_steps_lower_the_loss(volume: Volume) -> None:
    observed = prepare_volumes([volume], MODEL, 0.0)
    torch.manual_seed(0)
    sampler = CropSampler(observed, MODEL, TRAIN, torch.Generator().manual_seed(0))
    batch = sampler.sample()
    model = DistillationModel(MODEL, TRAIN)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.99))
    losses = []
    for _ in range(12):
        out = model(batch)
        assert {"rec_axial", "rec_sr", "smore", "cons1", "cons2", "total"} <= set(out)
        optimizer.zero_grad()
        out["total"].backward()
        optimizer.step()
        losses.append(float(out["total"].detach()))
    assert losses[-1] < losses[0]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    ckpt = load_checkpoint(path)
    return {f"{k}.{n}": t for k, sd in ckpt["weights"].items() for n, t in sd.items()}


def test_resume_continues_exactly(volume: Volume, tmp_path: Path) -> None:
    full = train([volume], tmp_path / "full.pt", TRAIN, MODEL, steps=4, progress=False, seed=3)
    part = tmp_path / "part.pt"
    train([volume], part, TRAIN, MODEL, steps=2, progress=False, seed=3)
    assert load_checkpoint(part)["step"] == 2
    train([volume], part, TRAIN, MODEL, steps=4, resume=True, progress=False, seed=3)
    a, b = load_checkpoint(full), load_checkpoint(part)
    assert a["step"] == b["step"] == 4
    assert a["optimizer"]["state"][0]["step"] == b["optimizer"]["state"][0]["step"]
    wa, wb = _weights(full), _weights(part)
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert torch.equal(a["rng"]["sampler"][0], b["rng"]["sampler"][0])
    with pytest.raises(ConfigError, match=r"another model config \(sr_width 8 there, 4 here\)"):
        train([volume], part, TRAIN, replace(MODEL, sr_width=4), steps=5, resume=True)


def test_interrupted_run_saves_and_resumes(volume: Volume, tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "model.pt"
    real_sample = CropSampler.sample
    calls = {"n": 0}

    def flaky(self):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_sample(self)

    monkeypatch.setattr(CropSampler, "sample", flaky)
    with pytest.raises(KeyboardInterrupt):
        train([volume], path, TRAIN, MODEL, steps=4, progress=False)
    ckpt = load_checkpoint(path)
    assert ckpt["step"] == 2
    monkeypatch.setattr(CropSampler, "sample", real_sample)
    train([volume], path, TRAIN, MODEL, steps=3, resume=True, progress=False)
    ckpt = load_checkpoint(path)
    assert ckpt["step"] == 3 and ckpt["thinslice_version"]
    assert ckpt["model_config"]["scale"] == 2 and ckpt["hu_window"] == [-1024.0, 3072.0]
    assert np.isfinite(ckpt["metrics"]["val_psnr"])
    out = load_model(path, device="cpu").upsample(volume.data)
    assert np.array_equal(out[::2], volume.data.astype(np.float32))


def test_two_runs_on_one_name_do_not_overwrite_each_other(volume: Volume, tmp_path: Path, monkeypatch) -> None:
    """A new run's first checkpoint replaces nothing: a run that finds its name taken (even
    by another run that wrote it after this one started) stops with a clear error and
    leaves the other run's file alone; its later checkpoints replace its own."""
    import thinslice.training.loop as loop
    from thinslice.errors import OutputError

    path = tmp_path / "model.pt"
    other = b"the other run's checkpoint"
    real_prepare = loop.prepare_volumes

    def other_run_writes_meanwhile(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        path.write_bytes(other)  # after the start-up check, before this run's first checkpoint
        return real_prepare(*args, **kwargs)

    monkeypatch.setattr(loop, "prepare_volumes", other_run_writes_meanwhile)
    with pytest.raises(OutputError, match="already exists .written by another run meanwhile"):
        train([volume], path, TRAIN, MODEL, steps=2, progress=False, overwrite=False)
    assert path.read_bytes() == other and [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    monkeypatch.setattr(loop, "prepare_volumes", real_prepare)
    with pytest.raises(OutputError, match="exists; pass --resume to continue it or --overwrite"):
        train([volume], path, TRAIN, MODEL, steps=2, progress=False)  # refused by default, as on the CLI
    assert path.read_bytes() == other
    path.unlink()
    steps_written = []
    real_save = loop.save_checkpoint
    monkeypatch.setattr(loop, "save_checkpoint", lambda *a, **k: steps_written.append(k["step"]) or real_save(*a, **k))
    every_step = replace(TRAIN, checkpoint_minutes=1e-9)  # a checkpoint after every step
    train([volume], path, every_step, MODEL, steps=2, progress=False, overwrite=False)
    assert steps_written == [1, 2, 2] and load_checkpoint(path)["step"] == 2

    # two resumes of one checkpoint: the one that finds the file rewritten by the other
    # since it last read or wrote it stops, and the other's file stays
    real_sample = CropSampler.sample

    def other_resume_saves_meanwhile(self):  # noqa: ANN001, ANN202
        if load_checkpoint(path)["step"] == 3:  # between this run's saves of steps 3 and 4
            path.write_bytes(other)
        return real_sample(self)

    monkeypatch.setattr(loop, "save_checkpoint", real_save)
    monkeypatch.setattr(CropSampler, "sample", other_resume_saves_meanwhile)
    with pytest.raises(OutputError, match="rewritten by another run while this one trained; stopping at step 4"):
        train([volume], path, every_step, MODEL, steps=5, resume=True, progress=False)
    assert path.read_bytes() == other


def test_scale_three_and_plain_arrays(small_ct: np.ndarray, tmp_path: Path) -> None:
    model = replace(MODEL, scale=3)
    path = train([small_ct[:10, :30, :30]], tmp_path / "x3.pt", TRAIN, model, steps=1, progress=False)
    synth = load_model(path, device="cpu")
    assert synth.scale == 3
    assert synth.upsample(small_ct[:4, :30, :30]).shape == (10, 30, 30)
    with pytest.raises(ConfigError, match="steps or minutes"):
        train([small_ct], tmp_path / "x.pt", TRAIN, model)


@pytest.mark.parametrize(
    ("networks", "memory", "views"),
    [("axial", True, ("axial",)), ("sr", False, ("coronal", "sagittal"))],
)
def test_ablations_train_and_load(volume: Volume, tmp_path: Path, networks: str, memory: bool, views) -> None:
    model = replace(MODEL, memory=memory, memory_items=4)
    config = replace(TRAIN, networks=networks, second_level=False, wavelet=False, smore=False)
    path = train([volume], tmp_path / "m.pt", config, model, steps=2, progress=False)
    ckpt = load_checkpoint(path)
    assert ckpt["networks"] == networks and ckpt["train_config"]["wavelet"] is False
    synth = load_model(path, device="cpu")
    assert synth.views == views
    assert synth.upsample(volume.data[:3]).shape == (5, 40, 40)


@pytest.mark.slow
def test_torchrun_ddp_on_cpu(volume: Volume, tmp_path: Path) -> None:
    sitk = pytest.importorskip("SimpleITK")
    image = sitk.GetImageFromArray(volume.data)
    image.SetSpacing((0.98, 0.98, 6.54))
    source = tmp_path / "thick.nii.gz"
    sitk.WriteImage(image, str(source))
    config = tmp_path / "tiny.toml"
    config.write_text(
        "[model]\naxial_width = 8\naxial_blocks = 1\nsr_width = 8\nsr_groups = 1\nsr_blocks = 1\n"
        "[train]\nbatch_size = 2\ncrop_sizes = [[2, 24, 5]]\nconsistency_lines = 4\n"  # 2: DDP warns of strides
    )
    output = tmp_path / "ddp.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2",
        "--standalone", "-m", "thinslice.cli", "train",
        "-i", str(source), "-o", str(output), "--steps", "3", "--config", str(config),
        "--device", "cpu", "--accept-non-ct",  # a crop inside the limb: no air, which the CT rule asks for
    ]  # fmt: skip
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    # one line per run, not per process, and no spurious DDP warning on every rank
    assert result.stderr.count("training x2 on 1 scan(s)") == 1 and result.stderr.count("wrote ") == 1
    assert "Warning" not in result.stderr, result.stderr[-2000:]
    ckpt = load_checkpoint(output)
    assert ckpt["step"] == 3 and ckpt["world_size"] == 2
    assert len(ckpt["rng"]["sampler"]) == 2
    assert not torch.equal(ckpt["rng"]["sampler"][0], ckpt["rng"]["sampler"][1])
    synth = load_model(output, device="cpu")
    assert synth.upsample(volume.data[:4]).shape == (7, 40, 40)


def test_profile_training_sharpens_and_loads(volume: Volume, tmp_path: Path) -> None:
    """Acquisition-model training: SMORE pairs from box profiles, a sharpening model."""
    mc = replace(MODEL, sharpen=True)
    tc = replace(TRAIN, profile=True)
    observed = prepare_volumes([volume], mc, 0.0)
    batch = CropSampler(observed, mc, tc, torch.Generator().manual_seed(0)).sample()
    assert batch.smore_in is not None and batch.smore_target is not None
    assert batch.smore_target.shape[-2] == 2 * (batch.smore_in.shape[-2] - 1) + 1
    out = train([volume], tmp_path / "p.pt", tc, mc, steps=3, device="cpu", progress=False)
    synth = load_model(out, "cpu")
    assert synth.config.sharpen
    thin = synth.upsample(volume.data[:5].astype(np.float32))
    assert thin.shape == (9, *volume.data.shape[1:])


def test_slice_thickness_reaches_the_training_pairs(volume: Volume, tmp_path: Path, capfd) -> None:
    from tests.conftest import LIMB_CROP
    from thinslice.cli import main

    thick = volume.with_data(volume.data, slice_thickness=2 * volume.slice_spacing)
    observed = prepare_volumes([volume, thick], MODEL, 0.0)
    assert [o.thickness for o in observed] == [1.0, 2.0]
    ckpt = tmp_path / "t.pt"
    base = ["-q", "train", "-i", str(LIMB_CROP), "-o", str(ckpt), "--steps", "2", "--device", "cpu"]
    assert main([*base, "--slice-thickness", "6"]) == 0 and ckpt.exists()
    assert main([*base, "--overwrite", "--slice-thickness", "-1"]) == 2
    assert capfd.readouterr().err.strip().splitlines()[-1] == (
        "error: --slice-thickness must be a positive number of mm, got -1.0"
    )


@pytest.mark.parametrize(
    ("option", "value", "line"),
    [
        ("--minutes", "0", "error: --minutes must be a positive number, got 0.0"),
        ("--steps", "-2", "error: --steps must be a whole number >= 1, got -2"),
    ],
)
def test_a_bad_training_length_names_its_flag_before_the_run_is_announced(tmp_path, capfd, option, value, line):
    from tests.conftest import LIMB_CROP
    from thinslice.cli import main

    args = ["train", "-i", str(LIMB_CROP), "-o", str(tmp_path / "n.pt"), option, value, "--device", "cpu"]
    assert main(args) == 2
    assert capfd.readouterr().err.strip().splitlines() == [line]
    assert not (tmp_path / "n.pt").exists()


def smore_pairs(volume: Volume, option: str, values: tuple[float, ...]) -> dict[float, tuple[torch.Tensor, ...]]:
    """The in-plane (SMORE) training pair of one profile-training step, per value of ``option``."""
    observed = prepare_volumes([volume], MODEL, 0.0)
    pairs = {}
    for value in values:
        config = TrainConfig(profile=True, crop_sizes=((2, 32, 9),), **{option: value})
        batch = CropSampler(observed, MODEL, config, torch.Generator().manual_seed(3)).sample()
        assert batch.smore_in is not None and batch.smore_target is not None
        pairs[value] = batch.smore_in, batch.smore_target
    return pairs


def test_profile_softness_softens_the_thick_training_input(volume: Volume) -> None:
    pairs = smore_pairs(volume, "profile_softness", (0.0, 1.0))
    torch.testing.assert_close(pairs[0.0][1], pairs[1.0][1])  # the thin target is the same
    rough = lambda t: float(t.diff(dim=-2).abs().mean())  # noqa: E731 - detail along the slice axis
    assert rough(pairs[1.0][0]) < 0.95 * rough(pairs[0.0][0])  # the thick input is smoother
    with pytest.raises(ConfigError, match="profile_softness"):
        TrainConfig(profile_softness=-0.1)


def test_profile_bell_makes_bell_shaped_thick_training_input(volume: Volume) -> None:
    """``profile_bell``: the thick slices of the in-plane pairs are a Gaussian as wide (FWHM)
    as the thickness, the same thin target; a bell of FWHM 5 samples has that spread."""
    from thinslice.profile import BELL_BOX, slice_profile_kernel

    pairs = smore_pairs(volume, "profile_bell", (0.0, 1.0))
    torch.testing.assert_close(pairs[0.0][1], pairs[1.0][1])  # the thin target is the same
    assert float((pairs[0.0][0] - pairs[1.0][0]).abs().max()) > 0.01  # the thick input is not a box
    taps = slice_profile_kernel(5.0 * BELL_BOX, 1.0, 5.0)
    k = np.arange(len(taps)) - len(taps) // 2
    sigma = 5.0 / (2 * np.sqrt(2 * np.log(2)))
    assert float((taps * k**2).sum()) == pytest.approx(sigma**2 + 1 / 12, rel=0.01)  # cell-integrated
    with pytest.raises(ConfigError, match="profile_bell"):
        TrainConfig(profile_bell=1.5)


def test_recipe_follows_the_slice_thickness(volume: Volume) -> None:
    """Thick slices (or unknown thickness, or plain arrays) train the thick-slice recipe; only
    scans whose slices are all thinner than the output's train the paper's objective."""
    from thinslice.training.config import THICK_SLICE_RECIPE, recipe_for

    thin = volume.with_data(volume.data, slice_thickness=1.0)  # 1 mm every 6.54 mm
    assert recipe_for([volume], 2) is THICK_SLICE_RECIPE
    assert recipe_for([volume.data], 2) is THICK_SLICE_RECIPE
    assert recipe_for([thin], 2) == {}
    assert recipe_for([thin, volume], 2) is THICK_SLICE_RECIPE
    assert recipe_for([volume.with_data(volume.data, slice_thickness=4.0)], 2) is THICK_SLICE_RECIPE  # > 6.54 / 2
    model, config = load_config(base=THICK_SLICE_RECIPE)
    assert model.sharpen and config.profile and not config.second_level and config.profile_softness == 1.0


def test_cli_train_makes_a_model_for_the_scans_slices(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """`thinslice train` on thick slices (the limb crop: 3.27 mm, contiguous) makes a model that
    re-estimates the acquired slices, as the bundled ones do; told the slices are 1 mm thick,
    one that keeps them (and upsample says so when it meets thick slices); --config's tables
    apply over the recipe; the thickness reaches the training."""
    from tests.conftest import LIMB_CROP
    from thinslice.cli import main
    from thinslice.io import load
    from thinslice.pipeline.upsample import upsample

    tiny = tmp_path / "tiny.toml"
    tiny.write_text(
        "[model]\naxial_width = 4\naxial_blocks = 1\nsr_width = 4\nsr_groups = 1\nsr_blocks = 1\n"
        "[train]\nbatch_size = 1\ncrop_sizes = [[2, 16, 9]]\nconsistency_lines = 2\nval_every = 100\n"
    )

    def trained(name: str, *extra: str) -> Path:
        ckpt = tmp_path / name
        args = ["train", "-i", str(LIMB_CROP), "-o", str(ckpt), "--steps", "3", "--device", "cpu", "--seed", "1"]
        assert main([*args, "--config", str(tiny), *extra]) == 0
        return ckpt

    thick, thin = trained("thick.pt"), trained("thin.pt", "--slice-thickness", "1")
    assert "a model that re-estimates every output slice" in capfd.readouterr().err
    stored = load_checkpoint(thick)
    assert stored["model_config"]["sharpen"] and stored["train_config"]["profile"]
    stored = load_checkpoint(thin)
    assert not stored["model_config"]["sharpen"] and not stored["train_config"]["profile"]
    wider = load_checkpoint(trained("wide.pt", "--slice-thickness", "6"))["weights"]["sr"]
    assert any(not torch.equal(v, load_checkpoint(thick)["weights"]["sr"][k]) for k, v in wider.items())

    scan = load(LIMB_CROP)
    acquired = scan.data.astype(np.float32)
    assert not np.array_equal(upsample(scan, 2, model=str(thick), device="cpu").data[::2], acquired)
    capfd.readouterr()
    kept = upsample(scan, 2, model=str(thin), device="cpu")
    assert np.array_equal(kept.data[::2], scan.data.astype(kept.data.dtype)) and kept.meta["acquired_kept"]
    assert "was trained for thin slices: it keeps the acquired 3.27 mm slices" in capfd.readouterr().err
    assert main(["info", "-i", str(LIMB_CROP), "--model", str(thin)]) == 0
    assert "the acquired slices kept unchanged" in capfd.readouterr().out
    assert main(["info", "-i", str(LIMB_CROP), "--model", str(thick)]) == 0
    assert "every slice synthesized, the acquired positions too" in capfd.readouterr().out

    args = ["-q", "train", "-i", str(LIMB_CROP), "-o", str(thin), "--steps", "5", "--device", "cpu", "--resume"]
    assert main([*args, "--config", str(tiny)]) == 0  # continues as it began: no --slice-thickness needed
    assert load_checkpoint(thin)["step"] == 5 and not load_checkpoint(thin)["model_config"]["sharpen"]
    tiny.write_text(tiny.read_text() + "profile = false\n")  # the [train] table is the last one
    stored = load_checkpoint(trained("own.pt"))
    assert stored["model_config"]["sharpen"] and not stored["train_config"]["profile"]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"minutes": float("nan")}, ConfigError, "minutes must be a positive number"),
        ({"minutes": 0}, ConfigError, "minutes must be a positive number"),
        ({"steps": 1.5}, ConfigError, "steps must be a whole number"),
        ({"steps": -1}, ConfigError, "steps must be a whole number"),
        ({"steps": 3, "output": "missing/m.pt"}, OutputError, "folder does not exist: missing; create it first"),
        ({"steps": 3, "output": "."}, OutputError, "is a folder"),
    ],
    ids=["nan minutes", "0 minutes", "1.5 steps", "-1 steps", "missing folder", "a folder"],
)
def test_bad_training_arguments_are_refused_before_any_step(volume, tmp_path, monkeypatch, kwargs, error, message):
    """A NaN budget used to train forever, and an unwritable checkpoint surfaced only at
    the first save, after minutes of training."""
    monkeypatch.chdir(tmp_path)
    output = kwargs.pop("output", "m.pt")
    started = []
    monkeypatch.setattr("thinslice.training.loop.prepare_volumes", lambda *a, **k: started.append(1))
    with pytest.raises(error, match=message):
        train([volume], output, TRAIN, MODEL, device="cpu", progress=False, **kwargs)
    assert not started and sorted(os.listdir(tmp_path)) == []


def test_training_takes_paths_to_read(tmp_path) -> None:
    from tests.conftest import LIMB_CROP

    out = train([str(LIMB_CROP)], tmp_path / "p.pt", TRAIN, MODEL, steps=2, device="cpu", progress=False)
    assert load_checkpoint(out)["step"] == 2


def test_training_refuses_a_checkpoint_named_like_one_of_its_scans(tmp_path) -> None:
    """The API checks its destination as the CLI does: the checkpoint would replace a scan."""
    import shutil

    from tests.conftest import LIMB_CROP

    scan = shutil.copy(LIMB_CROP, tmp_path / "scan.pt")
    before = (tmp_path / "scan.pt").read_bytes()
    with pytest.raises(OutputError, match=r"checkpoint .*scan.pt is the input file; choose another checkpoint"):
        train([scan], scan, TRAIN, MODEL, steps=2, device="cpu", progress=False)
    assert (tmp_path / "scan.pt").read_bytes() == before


def test_a_resume_continues_only_the_run_it_began(volume: Volume, tmp_path: Path, caplog) -> None:
    """Other scans are refused (a resumed run reported the first scans' baseline against
    the new ones' score); the thicknesses and settings it began with are kept, aloud."""
    path = train(volume, tmp_path / "m.pt", TRAIN, MODEL, steps=2, device="cpu", progress=False)  # one scan
    other = volume.with_data(volume.data[:, ::-1].copy())
    with pytest.raises(ConfigError, match=r"m.pt was trained on other scans than these; --resume continues"):
        train([other], path, TRAIN, MODEL, steps=4, resume=True, device="cpu", progress=False)
    thicker = volume.with_data(volume.data, slice_thickness=9.0)
    with caplog.at_level("WARNING", logger="thinslice"):
        train([thicker], path, replace(TRAIN, lr=0.5), MODEL, steps=3, resume=True, device="cpu", progress=False)
    said = caplog.text
    assert "resuming" in said and "with the slice thicknesses it began with" in said
    assert "with the training settings it began with (lr 0.001 there, 0.5 here)" in said
    stored = load_checkpoint(path)
    assert stored["step"] == 3 and list(stored["scans"].values()) == [volume.thickness]
    assert stored["metrics"]["val_base"] == pytest.approx(load_checkpoint(path)["metrics"]["val_base"])
    with pytest.raises(ConfigError, match="the same scan is given twice"):
        train([volume, volume.with_data(volume.data.copy())], tmp_path / "twice.pt", TRAIN, MODEL, steps=2)
    with pytest.raises(ConfigError, match="steps must be a whole number >= 1, got 0"):
        train(volume, tmp_path / "zero.pt", TRAIN, MODEL, steps=0, device="cpu", progress=False)
    nan = volume.with_data(np.where(np.arange(volume.data.size).reshape(volume.data.shape) == 7, np.nan, 0.0))
    with pytest.raises(InputError, match="holds 1 NaN/Inf voxels"):  # not "training diverged ... lower lr"
        train(nan, tmp_path / "nan.pt", TRAIN, MODEL, steps=2, device="cpu", progress=False)
    assert not (tmp_path / "zero.pt").exists() and not (tmp_path / "nan.pt").exists()


def test_an_adapt_checkpoint_is_never_saved_on_an_interruption(volume: Volume, tmp_path: Path, monkeypatch) -> None:
    """--adapt's scratch checkpoint is removed with its folder: saving it on Ctrl-C cost time
    and said "continue with --resume" of a file about to vanish."""
    from thinslice.errors import Interrupted

    real_sample = CropSampler.sample
    calls = {"n": 0}

    def interrupted(self):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == 3:
            raise Interrupted(2, "SIGINT")
        return real_sample(self)

    monkeypatch.setattr(CropSampler, "sample", interrupted)
    path = tmp_path / "adapt.pt"
    with pytest.raises(Interrupted) as caught:
        train(volume, path, replace(TRAIN, checkpoint_minutes=1e-9), MODEL, steps=5, device="cpu", progress=False,
              disposable=True)  # fmt: skip
    assert caught.value.kept is None and not path.exists()
    calls["n"] = 0
    with pytest.raises(Interrupted) as caught:  # a run of its own keeps what it did
        train(volume, tmp_path / "own.pt", TRAIN, MODEL, steps=5, device="cpu", progress=False)
    assert caught.value.kept == f"checkpoint {tmp_path / 'own.pt'} at step 2 (continue with --resume)"

    def interrupted_early(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - while the scans are prepared
        raise Interrupted(2, "SIGINT")

    monkeypatch.setattr("thinslice.training.loop.prepare_volumes", interrupted_early)
    for resume, said in ((True, "as it was (continue with --resume)"), (False, "untouched (this run wrote none)")):
        with pytest.raises(Interrupted) as caught:  # before this run's first save: the file as it was
            train(volume, tmp_path / "own.pt", TRAIN, MODEL, steps=9, device="cpu", progress=False,
                  resume=resume, overwrite=not resume)  # fmt: skip
        assert caught.value.kept is not None and caught.value.kept.endswith(said), caught.value.kept


def test_cli_train_options_that_would_be_lost_or_mistaken(tmp_path: Path, capfd) -> None:
    from tests.conftest import LIMB_CROP
    from thinslice.cli import main

    tiny = tmp_path / "tiny.toml"
    tiny.write_text(
        "[model]\nscale = 3\naxial_width = 8\naxial_blocks = 1\nsr_width = 8\nsr_groups = 1\nsr_blocks = 1\n"
        "[train]\nbatch_size = 1\nval_every = 2\n"
    )
    out = tmp_path / "m.pt"
    base = ["-q", "train", "-i", str(LIMB_CROP), "-o", str(out), "--device", "cpu", "--config", str(tiny)]
    assert main([*base, "--steps", "2"]) == 0  # no --scale: the config's, not 2
    assert load_checkpoint(out)["model_config"]["scale"] == 3
    capfd.readouterr()
    lines = []
    fresh = ["-o", str(tmp_path / "fresh.pt")]  # -o given twice: the last one counts
    for extra in (["--scale", "2", *fresh], ["--resume", "--overwrite"], ["--seed", str(2**64), *fresh]):
        assert main([*base, "--steps", "3", *extra]) == 2
        lines += capfd.readouterr().err.strip().splitlines()
    assert lines == [
        f"error: --scale 2 and [model] scale = 3 in {tiny} differ; give one",
        "error: --resume continues the checkpoint at -o and --overwrite starts it over; give one",
        f"error: --seed must be an integer from 0 to {2**63 - 1}, got {2**64}",
    ]
    assert main(["train", "-i", str(LIMB_CROP), "-o", str(out), "--steps", "3", "--resume", "--seed", "7"]) == 0
    said = capfd.readouterr().err
    assert f"warning: resuming {out} with the seed it began with; ignoring --seed 7" in said
    assert load_checkpoint(out)["step"] == 3 and load_checkpoint(out)["model_config"]["scale"] == 3  # its own x3
    other = tmp_path / "x2.toml"
    other.write_text("[model]\nscale = 2\n")
    resumed = ["train", "-i", str(LIMB_CROP), "-o", str(out), "--steps", "4", "--resume"]
    assert main([*resumed, "--config", str(other)]) == 2
    assert capfd.readouterr().err.strip().endswith(f"[model] scale = 2 in {other}, but the resumed checkpoint is x3")
    scan = tmp_path / "scan.nii.gz"
    scan.write_bytes(LIMB_CROP.read_bytes())
    for args in (["-o", str(scan), "--overwrite"], ["-i", str(LIMB_CROP), "-o", str(tmp_path / "twice.pt")]):
        assert main(["train", "-i", str(scan) if "-i" not in args else str(LIMB_CROP), *args, "--steps", "2"]) == 2
        lines.append(capfd.readouterr().err.strip())
    assert lines[-2] == "error: checkpoint name should end in .pt, got scan.nii.gz"
    assert lines[-1].startswith(f"error: {LIMB_CROP} is given twice") and lines[-1].endswith("give each scan once")
    assert scan.read_bytes() == LIMB_CROP.read_bytes() and not (tmp_path / "twice.pt").exists()


def test_a_batch_too_large_for_memory_is_refused_before_training(volume: Volume, tmp_path: Path) -> None:
    """The kernel killed such a run (exit 137, no message) once its first step allocated."""
    from thinslice.errors import ResourceError

    with pytest.raises(ResourceError, match=r"training with batch_size 10000000 needs about .* GiB but only"):
        train(volume, tmp_path / "big.pt", replace(TRAIN, batch_size=10**7), MODEL, steps=2, device="cpu")
    assert not (tmp_path / "big.pt").exists()
