"""Frozen configuration of the networks (:class:`ModelConfig`) and of training (:class:`TrainConfig`).

Both are stored as plain dicts inside every checkpoint, so a model can be rebuilt from the
checkpoint alone. A TOML file may hold a ``[model]`` and a ``[train]`` table (with an
optional ``[train.weights]`` sub-table); unknown keys are rejected by name::

    [model]
    scale = 2
    base = "linear"

    [train]
    lr = 3e-4
    crop_sizes = [[2, 64, 13]]

    [train.weights]
    consistency = 0.15
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from thinslice.errors import ConfigError

SCALES = (2, 3, 4, 5, 6)
BASES = ("linear", "cubic")
FUSIONS = ("mean", "median")
NETWORKS = ("both", "axial", "sr")

T = TypeVar("T")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}{hint}")


def _check_positive(owner: object, *names: str) -> None:
    for name in names:
        value = getattr(owner, name)
        if value <= 0:
            raise ConfigError(f"{name} must be positive, got {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    """What the networks look like and how intensities are normalised.

    Attributes:
        scale: slice upsampling factor r (2..6); a volume of D slices becomes r*(D-1)+1.
        axial_width: feature channels of :class:`~thinslice.nets.AxialInterpolator`.
        axial_blocks: residual channel-attention blocks of the axial network.
        sr_width: feature channels of :class:`~thinslice.nets.ThroughPlaneSR`.
        sr_groups: residual groups of the through-plane network.
        sr_blocks: residual channel-attention blocks per group.
        sr_unshuffle: in-plane space-to-depth factor of the through-plane network (1 = off);
            trades in-plane resolution of the features for speed.
        memory: use the prototype memory module in the axial network (METHOD.md step 5).
        memory_items: number of memory prototypes.
        base: classical interpolation along the slice axis on which the networks add a
            residual (``linear`` or ``cubic``); an untrained model reproduces it exactly.
        fusion: how the three views are combined at inference (``mean`` or ``median``).
        hu_min: lower end of the HU window mapped to 0.
        hu_max: upper end of the HU window mapped to 1.
    """

    scale: int = 2
    axial_width: int = 16
    axial_blocks: int = 3
    sr_width: int = 16
    sr_groups: int = 2
    sr_blocks: int = 2
    sr_unshuffle: int = 2
    memory: bool = False
    memory_items: int = 10
    base: str = "linear"
    fusion: str = "mean"
    hu_min: float = -1024.0
    hu_max: float = 3072.0

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ConfigError(f"scale must be an integer in 2..6, got {self.scale!r}")
        _check_positive(self, "axial_width", "axial_blocks", "sr_width", "sr_groups", "sr_blocks")
        _check_positive(self, "sr_unshuffle", "memory_items")
        _check_choice("base", self.base, BASES)
        _check_choice("fusion", self.fusion, FUSIONS)
        if not self.hu_max > self.hu_min:
            raise ConfigError(f"hu_max ({self.hu_max}) must exceed hu_min ({self.hu_min})")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ModelConfig:
        """Build from a plain mapping (as stored in a checkpoint); unknown keys raise."""
        return _from_mapping(cls, values, "model")

    @classmethod
    def from_toml(cls, path: str | Path) -> ModelConfig:
        """Read the ``[model]`` table of a TOML file."""
        return load_config(path)[0]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class LossWeights:
    """Weights of every loss term (METHOD.md: L1 1, wavelet 0.1, consistency 0.15 per view pair).

    Attributes:
        l1: L1 reconstruction of slices predicted from the coarser copy.
        wavelet: high-frequency wavelet loss of the same predictions.
        consistency: robust axial-vs-coronal and axial-vs-sagittal agreement at spacing sz/r
            (each pair weighted by this).
        consistency_level2: the same one level finer (sz/r^2), networks on their own output.
        smore: in-plane self-supervision of the through-plane network (SMORE-style).
        compactness: memory-module compactness loss.
        separateness: memory-module separateness loss.
    """

    l1: float = 1.0
    wavelet: float = 0.1
    consistency: float = 0.15
    consistency_level2: float = 0.15
    smore: float = 1.0
    compactness: float = 0.1
    separateness: float = 0.1

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if getattr(self, f.name) < 0:
                raise ConfigError(f"loss weight {f.name} must be >= 0, got {getattr(self, f.name)}")


DEFAULT_CROP_SIZES: tuple[tuple[int, int, int], ...] = (
    (2, 64, 13),
    (3, 48, 19),
    (4, 32, 33),
    (5, 32, 26),
    (6, 32, 37),
)


@dataclass(frozen=True)
class TrainConfig:
    """How to train (self-supervised, on the observed volumes only).

    Attributes:
        lr: Adam learning rate (betas 0.9, 0.99).
        warmup_steps: the learning rate ramps up linearly over this many steps.
        batch_size: crops per step and per process.
        crop_sizes: ``(scale, in-plane size, slices)`` per scale; slices = r^2*k+1. A volume
            smaller than the crop gets a smaller crop.
        weights: the loss weights.
        consistency_fraction: fraction of voxels (the best-agreeing ones) that count in the
            cross-view consistency.
        consistency_lines: how many coronal and sagittal images per crop the through-plane
            network processes for the consistency terms (cost bound).
        consistency_gaps: how many neighbouring gaps per crop the consistency terms cover
            (cost bound; the second level works on the same block).
        second_level: also enforce consistency one level finer (sz/r^2).
        wavelet: use the wavelet high-frequency loss.
        smore: also train the through-plane network on axial images degraded along one
            in-plane axis to the slice spacing (SMORE idea).
        smore_images: axial images per step for that.
        networks: which networks to train and use: ``both``, ``axial`` or ``sr`` (ablations).
        checkpoint_minutes: write a checkpoint at least this often.
        val_fraction: fraction of each volume's last in-plane columns held back for validation.
        val_every: validate every this many steps.
        grad_clip: clip the gradient norm to this (0 = off).
        ema: decay of the exponential moving average of the weights that inference uses
            (0 = use the last step's weights).
    """

    lr: float = 1e-3
    warmup_steps: int = 50
    batch_size: int = 2
    crop_sizes: tuple[tuple[int, int, int], ...] = DEFAULT_CROP_SIZES
    weights: LossWeights = field(default_factory=LossWeights)
    consistency_fraction: float = 0.25
    consistency_lines: int = 8
    consistency_gaps: int = 2
    second_level: bool = True
    wavelet: bool = True
    smore: bool = True
    smore_images: int = 8
    networks: str = "both"
    checkpoint_minutes: float = 5.0
    val_fraction: float = 0.15
    val_every: int = 50
    grad_clip: float = 1.0
    ema: float = 0.99

    def __post_init__(self) -> None:
        _check_positive(self, "lr", "batch_size", "consistency_lines", "consistency_gaps", "checkpoint_minutes")
        _check_positive(self, "val_every", "smore_images")
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 < self.consistency_fraction <= 1.0:
            raise ConfigError(f"consistency_fraction must be in (0, 1], got {self.consistency_fraction}")
        if not 0.0 <= self.val_fraction < 0.5:
            raise ConfigError(f"val_fraction must be in [0, 0.5), got {self.val_fraction}")
        if not 0.0 <= self.ema < 1.0:
            raise ConfigError(f"ema must be in [0, 1), got {self.ema}")
        if self.grad_clip < 0:
            raise ConfigError(f"grad_clip must be >= 0, got {self.grad_clip}")
        _check_choice("networks", self.networks, NETWORKS)
        for entry in self.crop_sizes:
            if len(entry) != 3:
                raise ConfigError(f"crop_sizes entries are [scale, size, slices], got {entry!r}")
            r, size, slices = entry
            if size < 8 or slices < r + 1:
                raise ConfigError(f"crop for scale {r} must be at least 8 pixels and r+1 slices, got {entry!r}")

    def crop_for(self, scale: int) -> tuple[int, int]:
        """``(in-plane size, slices)`` of training crops at ``scale``."""
        for r, size, slices in self.crop_sizes:
            if r == scale:
                return int(size), int(slices)
        raise ConfigError(
            f"crop_sizes has no entry for scale {scale} (has {', '.join(str(e[0]) for e in self.crop_sizes)})"
        )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a plain mapping (as stored in a checkpoint); unknown keys raise."""
        return _from_mapping(cls, values, "train")

    @classmethod
    def from_toml(cls, path: str | Path) -> TrainConfig:
        """Read the ``[train]`` table of a TOML file."""
        return load_config(path)[1]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(path: str | Path) -> tuple[ModelConfig, TrainConfig]:
    """Read ``[model]`` and ``[train]`` from a TOML file; missing tables give defaults.

    Raises:
        ConfigError: the file is missing or not TOML, or holds unknown tables or keys.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError as err:
        raise ConfigError(f"config file {path} not found") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from err
    unknown = sorted(set(doc) - {"model", "train"})
    if unknown:
        raise ConfigError(f"config file {path}: unknown table(s) {', '.join(unknown)} (expected model, train)")
    try:
        model = ModelConfig.from_dict(doc.get("model", {}))
        train = TrainConfig.from_dict(doc.get("train", {}))
    except ConfigError as err:
        raise ConfigError(f"config file {path}: {err}") from err
    return model, train


# Backwards-friendly alias: ``from_toml(path)`` reads both tables.
from_toml = load_config


def _from_mapping(cls: type[T], values: Mapping[str, Any], where: str) -> T:
    """Build dataclass ``cls`` from a mapping, checking key names and simple types."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"[{where}] must be a table, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hints.append(f"{key} (did you mean {close[0]}?)" if close else key)
        raise ConfigError(f"unknown key(s) in [{where}]: {', '.join(hints)}")
    hints_by_name = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        kind = hints_by_name[key]
        if kind is LossWeights:
            kwargs[key] = _from_mapping(LossWeights, value, f"{where}.{key}")
        else:
            kwargs[key] = _coerce(value, kind, f"{where}.{key}")
    return cls(**kwargs)


def _coerce(value: Any, kind: Any, name: str) -> Any:
    """Check a TOML value against a field type (bool/int/float/str/nested tuples)."""
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {value!r}")
        return value
    if typing.get_origin(kind) is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} must be a list, got {value!r}")
        args = typing.get_args(kind)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], name) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{name} must have {len(args)} entries, got {value!r}")
        return tuple(_coerce(v, a, name) for v, a in zip(value, args, strict=True))
    return value
