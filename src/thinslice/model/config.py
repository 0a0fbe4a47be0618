"""Frozen configuration of the networks (:class:`ModelConfig`), stored in every checkpoint.

A model can be rebuilt from the checkpoint alone. The helpers here (:func:`from_mapping`,
:func:`check_choice`) also build :class:`~thinslice.training.config.TrainConfig`; unknown
keys are rejected by name.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from thinslice.checks import is_whole
from thinslice.ct import HU_WINDOW
from thinslice.errors import ConfigError
from thinslice.grid import check_scale

BASES = ("linear", "cubic")
FUSIONS = ("mean", "median")
NETWORKS = ("both", "axial", "sr")

T = TypeVar("T")


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}{hint}")


def check_positive(owner: object, *names: str) -> None:
    for name in names:
        value = getattr(owner, name)
        if value <= 0:
            raise ConfigError(f"{name} must be positive, got {value!r}")


#: Upper bounds of the network sizes: far above any useful model (the bundled ones use
#: 16 channels and 2-3 blocks), low enough that building the networks from an untrusted
#: checkpoint cannot exhaust memory or run for minutes.
LIMITS = {"axial_width": 256, "axial_blocks": 64, "sr_width": 256, "sr_groups": 16, "sr_blocks": 32,
          "sr_unshuffle": 8, "memory_items": 4096}  # fmt: skip


def check_limits(owner: object) -> None:
    """Refuse sizes above :data:`LIMITS` (a checkpoint's config is untrusted input)."""
    for name, limit in LIMITS.items():
        value = getattr(owner, name)
        if value > limit:
            raise ConfigError(f"{name} must be at most {limit}, got {value!r}")


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
        sharpen: the through-plane network also predicts the output rows at the acquired
            positions (a thick slice is not a thin one: it is deconvolved, see
            :mod:`thinslice.profile`), and inference replaces the acquired slices by the
            coronal/sagittal estimate instead of copying them. Train with
            ``TrainConfig.profile``.
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
    sharpen: bool = False
    hu_min: float = HU_WINDOW[0]
    hu_max: float = HU_WINDOW[1]

    def __post_init__(self) -> None:
        check_scale(self.scale)
        check_positive(self, "axial_width", "axial_blocks", "sr_width", "sr_groups", "sr_blocks")
        check_positive(self, "sr_unshuffle", "memory_items")
        check_limits(self)
        for name in ("hu_min", "hu_max"):
            if not math.isfinite(getattr(self, name)):
                raise ConfigError(f"{name} must be a finite number, got {getattr(self, name)!r}")
        check_choice("base", self.base, BASES)
        check_choice("fusion", self.fusion, FUSIONS)
        if not self.hu_max > self.hu_min:
            raise ConfigError(f"hu_max ({self.hu_max}) must exceed hu_min ({self.hu_min})")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ModelConfig:
        """Build from a plain mapping (as stored in a checkpoint); unknown keys raise."""
        return from_mapping(cls, values, "model")

    @classmethod
    def from_toml(cls, path: str | Path) -> ModelConfig:
        """Read the ``[model]`` table of a TOML file."""
        return from_mapping(cls, read_toml(path).get("model", {}), "model")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def read_toml(path: str | Path) -> dict[str, Any]:
    """A thinslice TOML file as a dict: tables ``model`` and ``train``, nothing else.

    Raises:
        ConfigError: the file is missing, not TOML, or holds unknown tables.
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
    return doc


def from_mapping(cls: type[T], values: Mapping[str, Any], where: str) -> T:
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
        if dataclasses.is_dataclass(kind):
            kwargs[key] = from_mapping(typing.cast(type, kind), value, f"{where}.{key}")
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
        if not is_whole(value):
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
