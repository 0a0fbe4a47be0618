"""The slice grid: which factors thinslice makes, and where output slices lie.

The one place these rules are written down:

* a factor ``r`` is an integer from :data:`MIN_SCALE` to :data:`MAX_SCALE`;
* ``D`` slices become ``r * (D - 1) + 1``: the first slice keeps its position and output
  slice ``r * k`` lies on input slice ``k`` (both ends acquired);
* slices thicker than the output's cover anatomy past their centres, so the output
  reaches past the first and last acquired centres by as many output slices as fit,
  whole, inside those slices' profile (:func:`reach`, :meth:`Plan.margins`: 2 at each
  end from 5 mm to 1 mm), made from the end slices repeated (:func:`padding`);
* a target spacing that divides the slice spacing by such an integer (within 1 %) is made
  directly; any other finer target is made by synthesizing at the next factor up and
  resampling linearly (:func:`plan_for_spacing`);
* acquired slices no thicker than the output slices are kept bit-identical; thicker ones
  are re-estimated like every other output slice (:func:`keeps_acquired`);
* output slices are as thick as their spacing, unless asked thicker: then each is the
  average of the synthesized slices over that thickness, at the same position; they
  cannot be asked thinner than both their spacing and the input slices
  (:func:`output_thickness_width`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from thinslice.checks import whole
from thinslice.errors import ConfigError
from thinslice.volume import check_mm

MIN_SCALE = 2
MAX_SCALE = 8
#: How far (as a share of the ratio) a target spacing may be from an exact integer factor.
RATIO_TOLERANCE = 0.01


def check_scale(r: object) -> int:
    """Validate an integer upsampling factor (``MIN_SCALE`` to ``MAX_SCALE``).

    Raises:
        ConfigError: ``r`` is not an integer in range.
    """
    return whole(r, "scale", MIN_SCALE, MAX_SCALE)


def output_slices(num_slices: int, r: int) -> int:
    """Slices of the result: ``r * (D - 1) + 1``."""
    return r * (num_slices - 1) + 1


def usable_slices(num_slices: int, r: int) -> int:
    """Largest ``n <= num_slices`` with ``n = r * k + 1`` (both ends on the coarse grid)."""
    return r * ((num_slices - 1) // r) + 1


def keep_acquired(out: np.ndarray, acquired: np.ndarray, r: int) -> np.ndarray:
    """Put the acquired slices back at output slices ``r * k``, bit-identical; returns ``out``."""
    out[::r] = acquired.astype(out.dtype, copy=False)
    return out


@dataclass(frozen=True)
class Plan:
    """How to reach an output grid: synthesize at factor ``r``, then (for a ratio that is
    not a factor the method makes) resample the fine slices linearly onto the output grid.

    Attributes:
        r: the factor the method runs at.
        spacing: the output slice spacing, mm.
        positions: output slice ``k`` lies at fine slice ``positions[k]`` (fractional), or
            None when the output is the fine grid itself.
        reach: how far past the first and last acquired slices' centres output slices are
            also made, in output spacings (:func:`reach`; 0: from the first centre to the last).
    """

    r: int
    spacing: float
    positions: np.ndarray | None = None
    reach: float = 0.0

    def output_slices(self, num_slices: int) -> int:
        return len(self.fine_positions(num_slices))

    def margins(self, num_slices: int) -> tuple[int, int]:
        """Output slices past the first and past the last acquired slice's centre: as many,
        a step apart, as lie within :attr:`reach` of it (positions, if any, ascending)."""
        if self.reach == 0:
            return 0, 0
        inner = self._inner(num_slices)
        before = int(np.floor(self.reach + RATIO_TOLERANCE))
        short = (self.r * (num_slices - 1) - inner[-1]) / self.step  # a resampled grid can stop short of it
        return before, int(np.floor(short + self.reach + RATIO_TOLERANCE))

    def fine_positions(self, num_slices: int) -> np.ndarray:
        """Where each output slice lies on the fine grid of ``num_slices`` acquired slices
        (fine slice ``r * k`` on acquired slice ``k``; below 0 or above ``r * (D - 1)``:
        past the end slices' centres)."""
        inner = self._inner(num_slices)
        before, after = self.margins(num_slices)
        step = self.step
        ahead, behind = inner[0] - step * np.arange(before, 0, -1), inner[-1] + step * np.arange(1, after + 1)
        return np.concatenate([ahead, inner, behind])

    def with_reach(self, reach_mm: float) -> Plan:
        """The same plan, reaching ``reach_mm`` past each end slice's centre (:func:`reach`)."""
        return replace(self, reach=float(reach_mm) / self.spacing)

    def _inner(self, num_slices: int) -> np.ndarray:
        return np.arange(output_slices(num_slices, self.r), dtype=float) if self.positions is None else self.positions

    @property
    def step(self) -> float:
        """Fine slices per output slice (1 when the output is the fine grid)."""
        if self.positions is None or len(self.positions) < 2:
            return 1.0
        return abs(float(self.positions[1] - self.positions[0]))


def plan_for_spacing(
    num_slices: int,
    slice_spacing: float,
    target_spacing: float,
    makes: Callable[[int], bool],
    *,
    exact: bool = False,
) -> Plan:
    """The :class:`Plan` that turns ``num_slices`` slices ``slice_spacing`` mm apart into
    slices ``target_spacing`` mm apart, for a method that makes the factors ``makes`` accepts.

    An integer ratio the method makes is used directly. Otherwise (2.5 mm -> 1 mm, or 3 mm
    -> 1 mm with a method that makes only x2 and x4) the smallest factor ``r`` above the
    ratio that the method makes is synthesized, and the output slices, which start at the
    first slice and cover the stack, are linearly interpolated from those fine slices.
    With ``exact`` (an interpolation, whose slices at any factor are its interpolant
    sampled there) the smallest factor whose fine grid holds every output slice is used
    instead where there is one (x5 for 2.5 -> 1 mm), so each output slice is the
    interpolant at its own position, not a blend of two neighbours (BENCHMARKS.md,
    "Ratios that are not whole numbers").

    Raises:
        ConfigError: the target is not a positive number, not finer than the spacing, or
            finer than the largest factor reaches.
    """
    ratio = _ratio(slice_spacing, target_spacing)
    r = round(ratio)
    if abs(ratio - r) <= RATIO_TOLERANCE * ratio and MIN_SCALE <= r <= MAX_SCALE and makes(r):
        return Plan(int(r), slice_spacing / r)
    if ratio < 1 + RATIO_TOLERANCE:
        raise ConfigError(
            f"target spacing {target_spacing:g} mm is not finer than the slice spacing {slice_spacing:.4g} mm; "
            "thinslice only makes slices thinner"
        )
    candidates = range(max(MIN_SCALE, int(np.ceil(ratio - RATIO_TOLERANCE * ratio))), MAX_SCALE + 1)
    landing = [c for c in candidates if abs(c / ratio - round(c / ratio)) < 1e-3 and makes(c)] if exact else []
    for candidate in landing or candidates:
        if makes(candidate):
            count = int(np.floor((num_slices - 1) * ratio + 1e-6)) + 1
            positions = np.arange(count) * (candidate / ratio)
            return Plan(candidate, float(target_spacing), positions)
    raise ConfigError(
        f"target spacing {target_spacing:g} mm needs more than x{MAX_SCALE} from {slice_spacing:.4g} mm "
        "(or a factor this method does not make); choose a coarser target"
    )


def resample_slices(fine: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``fine`` ``(N, H, W)`` at fractional slice ``positions``;
    float32 out. A position on a fine slice returns that slice exactly."""
    lo = np.clip(np.floor(positions).astype(int), 0, fine.shape[0] - 1)
    hi = np.minimum(lo + 1, fine.shape[0] - 1)
    frac = (positions - lo).astype(np.float32)
    out = np.empty((len(positions), *fine.shape[1:]), dtype=np.float32)
    for k, (a, b, t) in enumerate(zip(lo, hi, frac, strict=True)):
        out[k] = fine[a] if t == 0 else (1 - t) * fine[a].astype(np.float32) + t * fine[b]
    return out


def overlapping(thickness: float, spacing: float) -> bool:
    """Whether slices ``thickness`` mm thick every ``spacing`` mm overlap (an overlapping
    reconstruction: each is an average over more than its spacing)."""
    return thickness > spacing * (1 + RATIO_TOLERANCE)


def reach(thickness: float, output_thickness: float) -> float:
    """How far (mm) past an end slice's centre an output slice ``output_thickness`` thick
    lies wholly inside that slice's profile, ``thickness`` wide: anatomy the acquisition
    covers, which a scanner's thin reconstruction of it shows. 0 for thin slices."""
    return max(0.0, (thickness - output_thickness) / 2)


def padding(positions: np.ndarray, num_slices: int, r: int) -> int:
    """Acquired slices to add at each end (copies of the end slice) so that the fine grid
    at factor ``r`` covers every fine position in ``positions``."""
    below = -float(np.min(positions))
    above = float(np.max(positions)) - r * (num_slices - 1)
    return max(0, int(np.ceil(max(below, above) / r - 1e-9)))


def pad_slices(data: np.ndarray, count: int) -> np.ndarray:
    """``data`` with its first and last slices repeated ``count`` times at each end (a
    copy; ``data`` itself when ``count`` is 0). Repeating beat mirroring and linear
    extrapolation for the slices past the ends (BENCHMARKS.md)."""
    if count == 0:
        return data
    return np.concatenate([np.repeat(data[:1], count, axis=0), data, np.repeat(data[-1:], count, axis=0)])


def keeps_acquired(thickness: float, output_spacing: float) -> bool:
    """Whether acquired slices go into the output unchanged: when they are no thicker than
    the output slices (decimation-like input). Thicker slices are averages over their
    thickness, so every output slice is synthesized, the acquired positions too."""
    return thickness <= output_spacing * (1 + RATIO_TOLERANCE)


def output_thickness_width(output_thickness: float | None, input_thickness: float, spacing: float) -> float:
    """The width, in output slices, of the box each output slice is averaged over to make
    it ``output_thickness`` mm thick (1.0: as synthesized, no averaging).

    A synthesized slice is as thick as its spacing, or (decimation-like input, kept)
    as thin as the input slices, so thinner than both is not something thinslice can make.

    Raises:
        ConfigError: ``output_thickness`` is thinner than both.
    """
    if output_thickness is None:
        return 1.0
    thinnest = min(input_thickness, spacing)
    if output_thickness < thinnest * (1 - RATIO_TOLERANCE):
        raise ConfigError(
            f"--output-thickness {output_thickness:g} mm is thinner than slices made {spacing:.4g} mm apart "
            f"from {input_thickness:.4g} mm slices can be ({thinnest:.4g} mm); give a finer --target-spacing "
            "or leave --output-thickness out"
        )
    width = output_thickness / spacing
    return width if width > 1 + RATIO_TOLERANCE else 1.0


def _ratio(slice_spacing: float, target_spacing: float) -> float:
    check_mm(target_spacing, "--target-spacing")
    ratio = slice_spacing / target_spacing
    if not np.isfinite(ratio) or ratio > 1e6:  # a target like 1e-300 mm
        raise ConfigError(
            f"target spacing {target_spacing:g} mm is not reachable from {slice_spacing:.4g} mm by a factor "
            f"from {MIN_SCALE} to {MAX_SCALE}"
        )
    return ratio
