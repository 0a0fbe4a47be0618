"""The training loop: self-supervised, on the observed volumes only.

One process, or several under ``torchrun`` (DistributedDataParallel; see
:mod:`thinslice.distributed`). Rank 0 validates, shows progress and writes checkpoints
(atomically, every ``checkpoint_minutes`` and at the end); every rank samples its own crops
(seed + rank). A checkpoint holds the optimiser, the step and every rank's RNG states, so a
killed run resumes exactly where its last checkpoint left it.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import math
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from thinslice import grid
from thinslice.checks import positive, whole
from thinslice.ct import require_usable
from thinslice.device import keep_freed_memory
from thinslice.distributed import DistEnv, all_gather_tensor, any_rank, broadcast_flags, process_group
from thinslice.errors import ConfigError, Interrupted, OutputError
from thinslice.io import load
from thinslice.io.atomic import check_destination
from thinslice.memory import require_memory
from thinslice.model.checkpoint import load_checkpoint, model_config_of, save_checkpoint
from thinslice.model.config import ModelConfig
from thinslice.model.inference import WEIGHT_LIMIT, autocast_for
from thinslice.training.config import TrainConfig, load_config, recipe_for
from thinslice.training.data import CropSampler, prepare_volumes
from thinslice.training.objective import DistillationModel
from thinslice.training.validation import Validator
from thinslice.volume import Volume

log = logging.getLogger(__name__)


def train(
    volumes: Sequence[Volume | str | os.PathLike[str] | np.ndarray] | Volume | str | os.PathLike[str] | np.ndarray,
    output: str | Path,
    config: TrainConfig | None = None,
    model_config: ModelConfig | None = None,
    *,
    steps: int | None = None,
    minutes: float | None = None,
    resume: bool = False,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
    init: str | Path | None = None,
    overwrite: bool = False,
    disposable: bool = False,
) -> Path:
    """Train a model self-supervised on the observed volumes; write a checkpoint.

    Args:
        volumes: the observed thick-slice volumes (``Volume``, a path to read, or a
            ``(D, H, W)`` HU array; arrays carry no spacing, so SMORE is skipped for them),
            or one of them. Only these are used.
        output: checkpoint path (rewritten every ``config.checkpoint_minutes`` and at the
            end, atomically).
        config: training settings; None: as :func:`~thinslice.training.config.recipe_for`
            the volumes says (a thick-slice model unless every slice is thin).
        model_config: network settings (scale, widths, base interpolation, ...); None: as
            for ``config``, at scale 2.
        steps: total optimisation steps (counting those of a resumed checkpoint).
        minutes: wall-clock budget of this call; with ``steps`` whichever ends first.
        resume: continue from ``output`` if it exists (same step, optimizer, RNG, configs).
        seed: seed; rank k samples with ``seed + k``. Deterministic on CPU.
        device: ``auto|cpu|cuda|cuda:N|mps`` (under torchrun CUDA uses LOCAL_RANK).
        progress: tqdm bar on rank 0 with losses and validation PSNR.
        init: start from this checkpoint's weights (fine-tuning; a fresh optimizer and
            ``config``'s rate), unless ``resume`` finds a checkpoint at ``output``.
        overwrite: start over on a checkpoint at ``output`` (without ``resume``). By
            default, as on the command line, a file at ``output``, even one another run
            writes as this one starts, stops the run instead: hours of training are the
            costliest thing to lose.
        disposable: the checkpoint is scratch, used once and removed (``--adapt``): it is
            written at the end only, never on an interruption.

    Returns:
        the checkpoint path.

    Raises:
        ConfigError: neither steps nor minutes, or not a whole number of steps or a
            positive number of minutes; a resumed checkpoint with another model config.
        InputError: a volume is too small for the scale.
        OutputError: ``output`` exists (without ``overwrite`` or ``resume``) or cannot be
            written (a folder, a missing or read-only folder: checked before training).
    """
    if steps is None and minutes is None:
        raise ConfigError("give a training length: steps or minutes")
    if steps is not None:
        whole(steps, "steps", lo=1)  # 0 would write an untrained model
    if minutes is not None:
        positive(minutes, "minutes")
    if isinstance(volumes, str | os.PathLike | Volume) or (isinstance(volumes, np.ndarray) and volumes.ndim == 3):
        volumes = [volumes]  # one scan, not the letters of its path or its slices
    if not volumes:
        raise ConfigError("give at least one scan to train on")
    paths = tuple(v for v in volumes if isinstance(v, str | os.PathLike))
    check_destination(output, overwrite=True, what="checkpoint", inputs=paths)  # now, not after training
    scans: list[Volume | np.ndarray] = [load(v) if isinstance(v, str | os.PathLike) else v for v in volumes]
    for given in volumes:  # files are checked as they are read
        if isinstance(given, Volume):
            require_usable(given)
    if config is None or model_config is None:
        scale = model_config.scale if model_config is not None else ModelConfig().scale
        recipe_model, recipe_train = load_config(base=recipe_for(scans, scale))
        config = config or recipe_train
        model_config = model_config or recipe_model
    output = Path(output)
    env = DistEnv.from_env()
    dev = env.device(device)
    keep_freed_memory()  # activations reused batch to batch, not faulted in again
    with process_group(env, dev), warnings.catch_warnings():
        # a 1 x 1 kernel's gradient comes back with other strides on its size-1 axes: the same
        # memory layout, which DDP still warns about on every rank (ignored for this run only)
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        try:
            return _train(
                scans, output, config, model_config, steps=steps, minutes=minutes, resume=resume, seed=seed,
                env=env, dev=dev, progress=progress, init=init, overwrite=overwrite, disposable=disposable,
            )  # fmt: skip
        except Interrupted as err:
            if err.kept is None and output.exists() and not disposable:  # before this run saved anything
                err.kept = untouched(output, resume)
            raise


def untouched(output: Path, resume: bool) -> str:
    """What an interruption keeps of a checkpoint this run has not yet written: the run it
    continues, or (starting over) an earlier one, which --resume would continue, not this."""
    if resume:
        return f"checkpoint {output} as it was (continue with --resume)"
    return f"the earlier checkpoint {output}, untouched (this run wrote none)"


def _train(
    volumes: Sequence[Volume | np.ndarray],
    output: Path,
    config: TrainConfig,
    model_config: ModelConfig,
    *,
    steps: int | None,
    minutes: float | None,
    resume: bool,
    seed: int,
    env: DistEnv,
    dev: torch.device,
    progress: bool,
    init: str | Path | None,
    overwrite: bool,
    disposable: bool,
) -> Path:
    """:func:`train` once the process group is joined."""
    # a new name is claimed by the run's first checkpoint, which replaces nothing: of two runs
    # started on one name, the one that saves second stops instead of overwriting the other
    claimed = output.exists() and (overwrite or resume)
    if output.exists() and not claimed:
        raise OutputError(f"{output} exists; pass --resume to continue it or --overwrite to start over")
    # and a file this run read or wrote that has changed since is another run's progress:
    # this run stops rather than overwrite it (two resumes of one checkpoint, say)
    known = _file_id(output)
    ckpt = None
    digests = _digests(volumes)
    if len(set(digests)) < len(digests):  # it would weigh twice, and a resume could not tell
        raise ConfigError("the same scan is given twice; give each scan once")
    scans = dict(zip(digests, (v.thickness if isinstance(v, Volume) else None for v in volumes), strict=True))
    if resume and output.exists():
        ckpt = load_checkpoint(output)
        stored = model_config_of(ckpt, output)
        if stored != model_config:
            raise ConfigError(
                f"{output} was trained with another model config ({_differences(stored, model_config)}); "
                "resume with the same settings or train a new model"
            )
        began = ckpt.get("scans")
        if began is not None and set(began) != set(scans):  # another run's data would be trained on silently
            raise ConfigError(
                f"{output} was trained on other scans than these; --resume continues a run on the scans it "
                "began with: give those, or train a new checkpoint"
            )
        if began is not None and began != scans:  # the thicknesses it began with, as its configs
            if env.is_main:
                log.warning("warning: resuming %s with the slice thicknesses it began with", output)
            volumes = [_with_thickness(v, began[key]) for v, key in zip(volumes, digests, strict=True)]
            scans = began
        if ckpt.get("train_config"):
            stored_train = TrainConfig.from_dict(ckpt["train_config"])
            if stored_train != config and env.is_main:
                log.warning(
                    "warning: resuming %s with the training settings it began with (%s)",
                    output, _differences(stored_train, config),
                )  # fmt: skip
            config = stored_train
        seed = int(ckpt.get("seed", seed))
    elif resume:
        log.info("no checkpoint at %s yet; starting a new run", output)
    elif output.exists() and env.is_main:
        log.warning("overwriting %s", output)

    if dev.type == "cpu":  # a batch too large for memory was killed by the kernel, without a word
        require_memory(_step_bytes(config, model_config), f"training with batch_size {config.batch_size}",
                       "lower batch_size or crop_sizes in the [train] table of --config")  # fmt: skip
    observed = prepare_volumes(volumes, model_config, config.val_fraction)
    torch.manual_seed(seed)  # identical initial weights on every rank
    model = DistillationModel(model_config, config).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.99))
    generator = torch.Generator().manual_seed(seed + env.rank)
    torch.manual_seed(seed + env.rank)
    step, elapsed_before = 0, 0.0
    metrics: dict[str, float] = {}
    if ckpt is not None:
        if ckpt.get("optimizer") is not None:
            optimizer.load_state_dict(ckpt["optimizer"])
        step = int(ckpt.get("step", 0))
        elapsed_before = float(ckpt.get("elapsed_s", 0.0))
        if env.is_main:
            log.info("resuming %s from step %d", output, step)
        metrics = dict(ckpt.get("metrics") or {})
        rng = ckpt.get("rng")
        if rng and len(rng.get("sampler", [])) == env.world_size:
            generator.set_state(rng["sampler"][env.rank])
            torch.set_rng_state(rng["torch"][env.rank])
        else:
            log.warning("checkpoint RNG states do not fit %d process(es); reseeding", env.world_size)
            generator.manual_seed(seed + env.rank + 1_000_003 * step)
    # exponential moving average of the weights: what inference uses (steadier than SGD's last step)
    if ckpt is None and init is not None:
        start_from = load_checkpoint(init)
        if model_config_of(start_from, init) != model_config:
            raise ConfigError(f"{init} has another model config than the one to train; fine-tune with its own")
        model.load_weights(start_from["weights"])
    averaged = copy.deepcopy(model).requires_grad_(False)
    if ckpt is not None:
        averaged.load_weights(ckpt["weights"])
        model.load_weights(ckpt.get("train_weights") or ckpt["weights"])
    runner: nn.Module = model
    if env.enabled:
        runner = nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    sampler = CropSampler(observed, model_config, config, generator)
    validator = Validator(observed, model_config, config.profile) if env.is_main else None

    def checkpoint() -> None:
        nonlocal claimed, known
        for net in (model, averaged):
            if not all(bool(torch.isfinite(p).all()) for p in net.parameters()):
                raise _diverged(step, "the weights hold NaN/Inf", config.lr, output)  # after step ``step``
            largest = max(float(p.detach().abs().max()) for p in net.parameters())
            if largest > WEIGHT_LIMIT:  # finite, but no model would load it (a loss that saturates)
                raise _diverged(step, f"the weights reach {largest:.3g}", config.lr, output)
        states = all_gather_tensor(env, generator.get_state(), dev)
        torch_states = all_gather_tensor(env, torch.get_rng_state(), dev)
        failed: OutputError | None = None
        now = _file_id(output) if env.is_main else None
        if now is not None and claimed and now != known:
            failed = OutputError(
                f"{output} was rewritten by another run while this one trained; stopping at step {step} "
                "rather than overwrite it (train one run per checkpoint)"
            )
        elif env.is_main:
            try:
                save_checkpoint(
                    output,
                    weights=_cpu(averaged.weights()),
                    train_weights=_cpu(model.weights()),
                    model_config=model_config,
                    networks=config.networks,
                    train_config=config.to_dict(),
                    optimizer=optimizer.state_dict(),
                    step=step,
                    seed=seed,
                    world_size=env.world_size,
                    rng={"sampler": states, "torch": torch_states},
                    metrics=metrics,
                    elapsed_s=elapsed_before + time.monotonic() - start,
                    scans=scans,
                    overwrite=claimed and now is not None,
                )
                known = _file_id(output)
            except OutputError as err:
                failed = err
        if any_rank(env, failed is not None, dev):  # every rank stops, or the others wait forever
            raise failed or OutputError(f"rank 0 could not write {output}; see its message")
        claimed = True

    start = last_save = time.monotonic()
    deadline = start + 60.0 * minutes if minutes is not None else math.inf
    interval = math.inf if disposable else 60.0 * config.checkpoint_minutes
    bar = tqdm(
        total=steps,
        initial=step,
        desc="train",
        disable=not (progress and env.is_main),
        dynamic_ncols=True,
    )
    if validator is not None:  # of these scans, never a resumed run's stale one
        metrics["val_base"] = validator.baseline
    model.train()
    validated = -1
    try:
        while steps is None or step < steps:
            now = time.monotonic()
            stop, save = broadcast_flags(env, (now >= deadline, now - last_save >= interval), dev)
            if stop:
                break
            batch = sampler.sample().to(dev)
            for group in optimizer.param_groups:  # linear warm-up, a function of the step only
                group["lr"] = config.lr * min(1.0, (step + 1) / max(1, config.warmup_steps))
            with autocast_for(dev, torch.bfloat16 if dev.type == "cuda" else torch.float32):  # mixed precision on GPUs
                losses = runner(batch)
            total = float(losses["total"].detach())
            if any_rank(env, not math.isfinite(total), dev):  # all ranks stop, or the rest wait forever
                raise _diverged(  # in the step that would be number step + 1
                    step + 1, f"loss {total}" if not math.isfinite(total) else "loss on another rank", config.lr, output
                )
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            if config.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            step += 1
            _update_average(averaged, model, config.ema, step)
            metrics.update({k: float(v.detach()) for k, v in losses.items()})
            if validator is not None and step % config.val_every == 0:
                metrics["val_psnr"], validated = validator(averaged, dev), step
                log.debug("step %d %s", step, _postfix(metrics))
            bar.update()
            bar.set_postfix(_postfix(metrics), refresh=False)
            if save:
                checkpoint()
                last_save = time.monotonic()
    except (KeyboardInterrupt, Interrupted) as err:
        if not env.enabled and not disposable:
            log.warning("interrupted at step %d; saving %s", step, output)
            checkpoint()
            if isinstance(err, Interrupted):
                err.kept = f"checkpoint {output} at step {step} (continue with --resume)"
        raise
    finally:
        bar.close()
    if validator is not None and validated != step:
        metrics["val_psnr"] = validator(averaged, dev)
    checkpoint()
    if env.is_main:
        log.info(
            "trained %d steps; validation PSNR %.2f dB (base interpolation %.2f dB)",
            step,
            metrics.get("val_psnr", float("nan")),
            metrics.get("val_base", float("nan")),
        )
    return output


def _file_id(path: Path) -> tuple[int, int, int, int] | None:
    """What tells one version of a file from the next (an atomic write makes a new inode);
    None when there is none."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _diverged(step: int, what: str, lr: float, output: Path) -> ConfigError:
    """The error for a run that diverged in step number ``step`` (counted from 1)."""
    kept = f"{output} keeps its last good checkpoint" if output.exists() else "no checkpoint was written"
    return ConfigError(
        f"training diverged at step {step}: {what}; {kept}. Lower lr (now {lr:g}) or raise "
        "warmup_steps/grad_clip in the config"
    )


#: Host bytes a CPU training step holds per voxel of a thin crop (activations and their
#: gradients, both networks, 16 channels): 115-240 measured at x2 and x5 (peak RSS against
#: batch size, 2026-12-02), rounded up.
STEP_BYTES_PER_VOXEL = 256


def _step_bytes(config: TrainConfig, model_config: ModelConfig) -> int:
    """Estimated host memory of one training step on the CPU."""
    r = model_config.scale
    size, slices = config.crop_for(r)
    width = max(model_config.axial_width, model_config.sr_width) / 16
    return int(config.batch_size * size * size * grid.output_slices(slices, r) * STEP_BYTES_PER_VOXEL * width)


def _digests(volumes: Sequence[Volume | np.ndarray]) -> list[str]:
    """Each scan's digest: its voxels and spacings, what tells it from other scans."""
    out = []
    for v in volumes:
        data = v.data if isinstance(v, Volume) else v
        digest = hashlib.sha256(f"{data.shape} {data.dtype.str}".encode())
        if isinstance(v, Volume):
            digest.update(str(v.voxel_spacing).encode())
        for plane in data:
            digest.update(np.ascontiguousarray(plane).data.cast("B"))
        out.append(digest.hexdigest())
    return out


def _with_thickness(volume: Volume | np.ndarray, thickness: float | None) -> Volume | np.ndarray:
    if not isinstance(volume, Volume) or thickness is None:
        return volume
    return volume.with_data(volume.data, slice_thickness=thickness)


def _differences(stored: object, given: object) -> str:
    """The fields of two configs of one dataclass that differ: ``name STORED there, GIVEN here``."""
    names = [f.name for f in dataclasses.fields(stored)]  # type: ignore[arg-type]
    return ", ".join(
        f"{name} {getattr(stored, name)!r} there, {getattr(given, name)!r} here"
        for name in names
        if getattr(stored, name) != getattr(given, name)
    )


def _cpu(weights: dict[str, dict[str, Tensor]]) -> dict[str, dict[str, Tensor]]:
    return {k: {n: t.detach().cpu().clone() for n, t in sd.items()} for k, sd in weights.items()}


@torch.no_grad()
def _update_average(averaged: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """EMA of parameters and buffers; the decay ramps up so early weights fade fast."""
    rate = 1.0 - min(decay, (1.0 + step) / (10.0 + step))
    for avg, new in zip(averaged.state_dict().values(), model.state_dict().values(), strict=True):
        if avg.is_floating_point():
            avg.lerp_(new, rate)
        else:
            avg.copy_(new)


def _postfix(metrics: dict[str, float]) -> dict[str, str]:
    keys = ("total", "rec_axial", "rec_sr", "smore", "cons1", "cons2", "val_psnr", "val_base")
    return {k: f"{metrics[k]:.4g}" for k in keys if k in metrics}
