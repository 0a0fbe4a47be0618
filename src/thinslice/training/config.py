"""How to train (:class:`TrainConfig`, :class:`LossWeights`) and the TOML file that holds both tables.

A TOML file may hold a ``[model]`` and a ``[train]`` table (with an optional
``[train.weights]`` sub-table); unknown keys are rejected by name::

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thinslice import grid
from thinslice.errors import ConfigError
from thinslice.model.config import NETWORKS, ModelConfig, check_choice, check_positive, from_mapping, read_toml
from thinslice.volume import Volume


@dataclass(frozen=True)
class LossWeights:
    """Weights of every loss term (METHOD.md: L1 1, wavelet 0.1, consistency 0.15 per view pair).

    Attributes:
        l1: L1 reconstruction of slices predicted from the coarser copy.
        l2: squared-error reconstruction of the same predictions (0: METHOD.md's L1 alone).
        wavelet: high-frequency wavelet loss of the same predictions.
        consistency: robust axial-vs-coronal and axial-vs-sagittal agreement at spacing sz/r
            (each pair weighted by this).
        consistency_level2: the same one level finer (sz/r^2), networks on their own output.
        smore: in-plane self-supervision of the through-plane network (SMORE-style).
        compactness: memory-module compactness loss.
        separateness: memory-module separateness loss.
    """

    l1: float = 1.0
    l2: float = 0.0
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
        crop_sizes: ``(scale, in-plane size, slices)`` per scale; the slices are rounded down
            to ``r*k+1`` (the defaults are ``r^2*k+1``, whole blocks for the second
            consistency level). A volume smaller than the crop gets a smaller crop.
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
        profile: train under the acquisition model (:mod:`thinslice.profile`): the coarser
            copy of a crop is a box average over r slices (not ``V[::r]``), and the SMORE
            input is an in-plane axis averaged with the thick box profile and sampled at the
            thick spacing, its target the thin profile at the thin spacing (every row, the
            acquired positions included); the thin spacing is at least one pixel.
        profile_softness: with ``profile``, soften the thick box of each step's SMORE pairs
            by a Gaussian whose FWHM is drawn uniformly up to this fraction of the slice
            thickness (a reconstruction kernel's smoother slice profile), so the network
            meets a range of profiles and judges the blur from the image; 0 = a plain box.
        profile_softness_min: the lower end of that range (``--adapt`` trains at the one
            softness it estimates for the scan: both ends equal).
        profile_bell: with ``profile``, the share of steps whose thick slices in the SMORE
            pairs are a bell instead: a Gaussian whose FWHM is the slice thickness, as a
            helical scan's slice sensitivity profile is (:data:`thinslice.profile.BELL_BOX`).
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
    profile: bool = False
    profile_softness: float = 0.0
    profile_softness_min: float = 0.0
    profile_bell: float = 0.0
    networks: str = "both"
    checkpoint_minutes: float = 5.0
    val_fraction: float = 0.15
    val_every: int = 50
    grad_clip: float = 1.0
    ema: float = 0.99

    def __post_init__(self) -> None:
        check_positive(self, "lr", "batch_size", "consistency_lines", "consistency_gaps", "checkpoint_minutes")
        check_positive(self, "val_every", "smore_images")
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 < self.consistency_fraction <= 1.0:
            raise ConfigError(f"consistency_fraction must be in (0, 1], got {self.consistency_fraction}")
        if not 0.0 <= self.val_fraction < 0.5:
            raise ConfigError(f"val_fraction must be in [0, 0.5), got {self.val_fraction}")
        if not 0.0 <= self.ema < 1.0:
            raise ConfigError(f"ema must be in [0, 1), got {self.ema}")
        if not 0.0 <= self.profile_bell <= 1.0:
            raise ConfigError(f"profile_bell must be in [0, 1] (a share of the steps), got {self.profile_bell}")
        if not 0.0 <= self.profile_softness <= 2.0:
            raise ConfigError(f"profile_softness must be in [0, 2] (of the thickness), got {self.profile_softness}")
        if not 0.0 <= self.profile_softness_min <= self.profile_softness:
            raise ConfigError(
                f"profile_softness_min must be in [0, profile_softness], got {self.profile_softness_min} "
                f"with profile_softness {self.profile_softness}"
            )
        if self.grad_clip < 0:
            raise ConfigError(f"grad_clip must be >= 0, got {self.grad_clip}")
        check_choice("networks", self.networks, NETWORKS)
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
        return from_mapping(cls, values, "train")

    @classmethod
    def from_toml(cls, path: str | Path) -> TrainConfig:
        """Read the ``[train]`` table of a TOML file."""
        return load_config(path)[1]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: Tables as in a TOML file: ``{"model": {...}, "train": {...}}``.
Tables = Mapping[str, Mapping[str, Any]]

#: What a model for slices thicker than its output's is trained with (the clinical case, and
#: the bundled thick-slice family's recipe, MODEL.md): the coarser copies and in-plane pairs
#: made under the acquisition model, the acquired positions re-estimated (sharpened), the
#: thick boxes softened up to a Gaussian as wide as the thickness, as scanners' profiles are.
#: The dataclass defaults are the paper's objective (decimation), for thin slices.
THICK_SLICE_RECIPE: Tables = {
    "model": {"sharpen": True},
    "train": {"profile": True, "second_level": False, "profile_softness": 1.0},
}


def recipe_for(volumes: Sequence[Any], scale: int) -> Tables:
    """The tables training on ``volumes`` at ``scale`` starts from: :data:`THICK_SLICE_RECIPE`
    unless every volume's slices are no thicker than the output's would be (thin slices with
    gaps, which upsample keeps as acquired: :func:`thinslice.grid.keeps_acquired`). A volume
    that does not state its thickness counts as contiguous, the clinical norm; an array
    (no spacing) as thick."""
    thin = [isinstance(v, Volume) and grid.keeps_acquired(v.thickness, v.slice_spacing / scale) for v in volumes]
    return {} if thin and all(thin) else THICK_SLICE_RECIPE


def load_config(path: str | Path | None = None, *, base: Tables | None = None) -> tuple[ModelConfig, TrainConfig]:
    """Read ``[model]`` and ``[train]`` from a TOML file over ``base`` (tables of the same
    form, e.g. :func:`recipe_for`); what neither sets keeps the dataclass default.

    Raises:
        ConfigError: the file is missing or not TOML, or holds unknown tables or keys.
    """
    doc = read_toml(path) if path is not None else {}
    base = base or {}
    try:
        model = ModelConfig.from_dict({**base.get("model", {}), **doc.get("model", {})})
        train = TrainConfig.from_dict({**base.get("train", {}), **doc.get("train", {})})
    except ConfigError as err:
        raise ConfigError(f"config file {path}: {err}" if path is not None else str(err)) from err
    return model, train
