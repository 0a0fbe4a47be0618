"""Checkpoints: atomic writing, safe loading, and rebuilding a ready-to-use model.

A checkpoint is a ``torch.save``'d dict of plain types and tensors only, so it loads with
``torch.load(..., weights_only=True)`` (a pickled object in it is refused, never run)::

    {
      "format": "thinslice-checkpoint", "format_version": 1,
      "thinslice_version": "0.1.0",
      "scale": 2, "hu_window": [-1024.0, 3072.0],
      "networks": "both",                        # which networks the weights hold
      "model_config": {...}, "train_config": {...},   # dataclasses as dicts
      "weights": {"axial": state_dict, "sr": state_dict},   # for inference (weight average)
      "train_weights": {...} | None,             # the optimiser's own weights (for resuming)
      "optimizer": optimizer.state_dict() | None,
      "step": 1200, "seed": 0, "world_size": 1,
      "rng": {"torch": [ByteTensor per rank], "sampler": [ByteTensor per rank]} | None,
      "metrics": {"val_psnr": 36.1, ...},
      "elapsed_s": 180.0,
    }
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

import thinslice
from thinslice.errors import ConfigError, ModelError, OutputError
from thinslice.io.atomic import atomic_path
from thinslice.model.config import ModelConfig

log = logging.getLogger(__name__)

FORMAT = "thinslice-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("thinslice_version", "scale", "hu_window", "networks", "model_config", "weights")


def save_checkpoint(
    path: str | Path,
    *,
    weights: Mapping[str, Mapping[str, torch.Tensor]],
    model_config: ModelConfig,
    networks: str = "both",
    train_config: Mapping[str, Any] | None = None,
    train_weights: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
    optimizer: Mapping[str, Any] | None = None,
    step: int = 0,
    seed: int = 0,
    world_size: int = 1,
    rng: Mapping[str, list[torch.Tensor]] | None = None,
    metrics: Mapping[str, float] | None = None,
    elapsed_s: float = 0.0,
    scans: Mapping[str, float | None] | None = None,
    overwrite: bool = True,
) -> Path:
    """Write a checkpoint atomically (see :mod:`thinslice.io.atomic`).

    An interrupted write leaves the previous checkpoint at ``path`` intact.

    Args:
        path: destination ``.pt`` file.
        weights: ``{"axial": state_dict, "sr": state_dict}`` (only the networks present):
            the weights inference uses (the moving average during training).
        train_weights: the optimiser's current weights, same layout (for resuming).
        model_config: rebuilds the networks.
        networks: ``both``, ``axial`` or ``sr``.
        train_config: ``TrainConfig.to_dict()`` (for resuming), optional.
        optimizer: ``optimizer.state_dict()``, optional.
        step: optimisation steps done.
        seed: the run's seed.
        world_size: processes that trained.
        rng: per-rank RNG states (``torch`` and ``sampler`` generators).
        metrics: last losses and validation PSNR.
        elapsed_s: training time so far, seconds.
        scans: each scan's digest and the slice thickness it is trained at (for resuming), optional.
        overwrite: replace a file at ``path``; when False, one that exists when the write
            is published (another run's) is kept and :class:`OutputError` raised.

    Returns:
        the path written.
    """
    path = Path(path)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "thinslice_version": thinslice.__version__,
        "scale": model_config.scale,
        "hu_window": [float(model_config.hu_min), float(model_config.hu_max)],
        "networks": networks,
        "model_config": model_config.to_dict(),
        "train_config": dict(train_config) if train_config is not None else None,
        "weights": {k: dict(v) for k, v in weights.items()},
        "train_weights": {k: dict(v) for k, v in train_weights.items()} if train_weights else None,
        "optimizer": optimizer,
        "step": int(step),
        "seed": int(seed),
        "world_size": int(world_size),
        "rng": dict(rng) if rng is not None else None,
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
        "elapsed_s": float(elapsed_s),
        "scans": dict(scans) if scans is not None else None,
    }
    if not path.parent.is_dir():
        raise OutputError(f"cannot write checkpoint {path}: folder {path.parent} does not exist")
    with atomic_path(path, overwrite=overwrite) as tmp, tmp.open("wb") as fh:
        torch.save(_on_cpu(payload), fh)
        fh.flush()
        os.fsync(fh.fileno())
    return path


def _on_cpu(value: Any) -> Any:
    """Every tensor moved to the CPU (the optimiser's moments and RNG states stay on the
    training device otherwise), so a checkpoint trained on a GPU loads anywhere."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, Mapping):
        return {k: _on_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_on_cpu(v) for v in value)
    return value


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and validate a checkpoint (tensors on the CPU).

    Raises:
        ModelError: missing file, not a thinslice checkpoint (including any file that
            would need to unpickle Python objects), written by a newer format, or
            incomplete.
    """
    path = Path(path)
    if not path.exists():
        raise ModelError(f"checkpoint {path} not found")
    if not path.is_file():
        raise ModelError(f"checkpoint {path} is not a file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only load failed" in str(err).lower() and "unsupported" in str(err).lower():
            raise ModelError(
                f"{path} is not a thinslice checkpoint: it holds Python objects that are not loaded for safety"
            ) from err
        raise ModelError(f"{path} is not a thinslice checkpoint (not a PyTorch weights file)") from err
    except Exception as err:  # torch raises many kinds for a foreign file
        raise ModelError(f"{path} is not a thinslice checkpoint (not a PyTorch weights file)") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ModelError(f"{path} is not a thinslice checkpoint")
    version = ckpt.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ModelError(f"{path} has an invalid checkpoint format version {version!r}")
    if version > FORMAT_VERSION:
        raise ModelError(
            f"{path} was written by thinslice {ckpt.get('thinslice_version', '?')} in checkpoint "
            f"format {version}; this thinslice {thinslice.__version__} reads up to format "
            f"{FORMAT_VERSION}: upgrade thinslice"
        )
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise ModelError(f"{path} is an incomplete thinslice checkpoint (missing {', '.join(missing)})")
    if ckpt["thinslice_version"] != thinslice.__version__:
        log.info(
            "checkpoint %s was written by thinslice %s (running %s)",
            path,
            ckpt["thinslice_version"],
            thinslice.__version__,
        )
    return ckpt


def model_config_of(ckpt: Mapping[str, Any], path: str | Path = "checkpoint") -> ModelConfig:
    """The :class:`ModelConfig` stored in a loaded checkpoint, cross-checked."""
    try:
        config = ModelConfig.from_dict(ckpt["model_config"])
    except ConfigError as err:
        raise ModelError(f"{path} has an invalid model config: {err}") from err
    if config.scale != ckpt["scale"] or [config.hu_min, config.hu_max] != list(ckpt["hu_window"]):
        raise ModelError(f"{path} is inconsistent: scale/HU window differ from its model config")
    return config
