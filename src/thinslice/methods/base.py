"""What a slice-synthesis method is: the :class:`Method` interface and its result.

A caller (the upsample pipeline, a batch, the evaluation protocol) asks a method what
it can do (its factors, its memory needs, whether it gives an uncertainty map, which
options it takes) and never tests its name.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from thinslice import grid
from thinslice.errors import ConfigError, ThinsliceError
from thinslice.profile import average_slices


@dataclass(frozen=True)
class MethodResult:
    """What a method returns for a ``(D, H, W)`` input at factor ``r``.

    Attributes:
        data: ``(r * (D - 1) + 1, H, W)`` HU, float32 or the dtype asked for (see
            :meth:`Method.run`); output slice ``r * k`` on input slice ``k``.
        uncertainty: same shape, float32 HU (the spread of the estimates), or None.
        made_by: what made it, in a few words, when that depends on the input (a learned
            method names the checkpoint it picked); None: :meth:`Method.provenance`.
    """

    data: np.ndarray
    uncertainty: np.ndarray | None = None
    made_by: str | None = None


class Method(ABC):
    """Synthesizes the slices between acquired ones, along the slice axis (axis 0) only.

    Subclasses set :attr:`name` and :attr:`description`, implement :meth:`run`, and
    override what differs from a classical interpolator.

    Attributes:
        name: the registry name (``--method``).
        description: one line for ``thinslice info``.
        options: the user options this method takes (e.g. ``{"model", "all_views"}``); a
            front end refuses the others for this method.
        gives_uncertainty: :meth:`run` returns an uncertainty map.
        adaptable: it has a checkpoint that can be fine-tuned on the scan in hand
            (:meth:`checkpoint_for`, :meth:`with_checkpoint`; ``--adapt``).
        passes_through: an interpolation, whose output at the acquired positions is the
            acquired slices themselves, thick or thin: they are kept, and said to be.
        host_bytes_per_voxel: bytes it allocates per output and per input voxel while it
            runs (measured; see RELIABILITY.md), for :meth:`host_bytes`.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    options: ClassVar[frozenset[str]] = frozenset()
    gives_uncertainty: ClassVar[bool] = False
    adaptable: ClassVar[bool] = False
    passes_through: ClassVar[bool] = False
    host_bytes_per_voxel: ClassVar[tuple[float, float]] = (28.0, 8.0)

    @property
    def default_scale(self) -> int:
        """The factor used when the caller names none."""
        return 2

    @property
    def device(self) -> str | None:
        """Where the work runs (``"cpu"``, ``"cuda:0"``), or None for plain numpy."""
        return None

    def check_scale(self, r: object) -> int:
        """Validate the factor ``r`` for this method, before any work.

        Raises:
            ConfigError, ModelError: ``r`` is out of range or not one this method makes.
        """
        return grid.check_scale(r)

    def host_bytes(self, shape: tuple[int, ...], r: int) -> int:
        """Host bytes a run needs for a ``(D, H, W)`` input already in memory."""
        d, h, w = (int(s) for s in shape[:3])
        per_out, per_in = self.host_bytes_per_voxel
        return int(grid.output_slices(d, r) * h * w * per_out + d * h * w * per_in)

    def device_bytes(self, shape: tuple[int, ...], r: int) -> int | None:
        """Accelerator bytes a run needs, or None when it uses no accelerator memory."""
        return None

    def makes(self, r: int) -> bool:
        """Whether :meth:`check_scale` accepts ``r``."""
        try:
            self.check_scale(r)
        except ThinsliceError:
            return False
        return True

    def plan_for_spacing(self, num_slices: int, slice_spacing: float, target_spacing: float) -> grid.Plan:
        """How this method reaches ``target_spacing`` (:func:`thinslice.grid.plan_for_spacing`;
        an interpolation, which passes through its input, at a factor landing on every slice)."""
        return grid.plan_for_spacing(num_slices, slice_spacing, target_spacing, self.makes, exact=self.passes_through)

    def reestimates_acquired(self) -> bool:
        """Whether, given slices thicker than the output's, this method makes its own
        output at the acquired positions (:func:`thinslice.grid.keeps_acquired` says when
        it is asked to); False: it copies the acquired slices there whatever it is asked
        (an interpolation, :attr:`passes_through`, always does)."""
        return not self.passes_through

    def provenance(self, r: int) -> str:
        """What makes a result at factor ``r``, in a few words for a derived series or a
        report (the name, and for a learned method its model file)."""
        return self.name

    def checkpoints(self) -> list[Path]:
        """The files whose bytes decide this method's output besides its options (a learned
        method's checkpoints; none for a classical one), for a batch's done-markers."""
        return []

    def made_by(
        self, data: np.ndarray, r: int, *, thickness: float = 1.0, spacing: tuple[float, float, float] | None = None
    ) -> str:
        """What :meth:`run` would name as having made ``data``'s result at factor ``r``, without
        running it (the method; a learned one reads the acquisition to pick its checkpoints)."""
        return self.provenance(r)

    def checkpoint_for(self, r: int, thickness: float = 1.0, softness: float | None = None) -> Path:
        """The checkpoint :meth:`run` would use at factor ``r`` for slices ``thickness``
        spacings thick whose slice profile reads ``softness``
        (:func:`thinslice.profile.estimate_softness`; None: not known) (adaptable methods only).

        Raises:
            ConfigError: the method has no checkpoint.
        """
        raise ConfigError(f"method {self.name} has no trained weights to adapt; use --method model")

    def with_checkpoint(self, path: Path, source: Path | None = None) -> Method:
        """The same method running ``path``, a fine-tuned copy of its checkpoint ``source``
        (adaptable methods only)."""
        raise ConfigError(f"method {self.name} has no trained weights to adapt; use --method model")

    @abstractmethod
    def run(
        self,
        data: np.ndarray,
        r: int,
        *,
        thickness: float = 1.0,
        spacing: tuple[float, float, float] | None = None,
        dtype: np.dtype | None = None,
        padded: int = 0,
    ) -> MethodResult:
        """Upsample ``data`` ``(D, H, W)`` (HU) by ``r`` along axis 0.

        Args:
            data: the acquired slices, any real dtype (integer HU as read, or float).
            r: the factor.
            thickness: the slice thickness in units of the slice spacing (1: contiguous
                slices; larger: overlapping; 1/r or less: thin slices, as decimation
                gives). Methods that model the slice profile use it; interpolators don't.
            spacing: the voxel spacing (slice, row, column; mm), for methods that read the
                acquisition from the image (the model: how soft the slice profile looks);
                None: unknown.
            dtype: the dtype the caller will store (integer HU: rounded). A method may
                return it directly to save memory (the model does); None or ignored:
                float32, converted by the caller.
            padded: how many of ``data``'s slices at each end are copies of its end
                slices, added so that the output reaches past them
                (:func:`thinslice.grid.pad_slices`); a method that reads the acquisition
                from the image reads it without them.
        """

    def __call__(self, data: np.ndarray, r: int, *, thickness: float = 1.0) -> np.ndarray:
        """The upsampled array alone (see :meth:`run`)."""
        return self.run(data, r, thickness=thickness).data


def run_on_grid(
    method: Method,
    data: np.ndarray,
    plan: grid.Plan,
    *,
    thickness: float = 1.0,
    spacing: tuple[float, float, float] | None = None,
    keep_acquired: bool = False,
    dtype: np.dtype | None = None,
    output_width: float = 1.0,
) -> MethodResult:
    """Run ``method`` on ``data`` along ``plan``: at ``plan.r`` (on ``data`` with its end slices
    repeated, when the plan reaches past them), the acquired slices put back when
    ``keep_acquired``, then (for a ratio the method does not make) resampled onto the
    plan's grid, then (for output slices thicker than their spacing) averaged over their
    thickness. The one place both the upsample pipeline and the evaluation protocol
    turn a method's output into the output grid.

    Args:
        thickness: the slice thickness in units of the slice spacing (see :meth:`Method.run`).
        spacing: the voxel spacing of ``data`` (see :meth:`Method.run`).
        dtype: the dtype the caller stores (see :meth:`Method.run`); a ratio that needs
            resampling, or slices that need averaging, are made in float32.
        output_width: the output slices' thickness over their spacing
            (:func:`thinslice.grid.output_thickness_width`); above 1 each output slice is
            averaged over a box that wide.

    Raises:
        RuntimeError: the method returned the wrong shape (a bug).
    """
    r = plan.r
    positions = plan.fine_positions(data.shape[0])
    pad = grid.padding(positions, data.shape[0], r)
    positions = positions + r * pad  # on the fine grid of the padded slices
    direct = dtype if plan.positions is None and output_width == 1.0 else None
    padded = grid.pad_slices(data, pad)
    told = {"padded": pad} if _takes_padded(method) else {}  # a Method written before padding existed
    result = method.run(padded, r, thickness=thickness, spacing=spacing, dtype=direct, **told)
    expected = (grid.output_slices(padded.shape[0], r), *data.shape[1:])
    if result.data.shape != expected:
        raise RuntimeError(f"method {method.name} returned shape {result.data.shape}, expected {expected}")
    out, spread = result.data, result.uncertainty
    if keep_acquired:
        grid.keep_acquired(out[r * pad : len(out) - r * pad], data, r)
        if spread is not None:  # the acquired slices, put back, are certain: as a thin-slice model says
            spread[r * pad : len(spread) - r * pad : r] = 0
    if output_width != 1.0:  # on the fine grid, before resampling: measured 0.4 dB closer
        width = output_width * plan.step
        out = average_slices(out, width)
        # the spread of an average is at most the average spread: the map stays an upper bound
        spread = None if spread is None else average_slices(spread, width)
    if plan.positions is None:  # whole fine slices: a view, no copy
        first, last = int(round(positions[0])), int(round(positions[-1]))
        if (first, last + 1) != (0, len(out)):
            out = out[first : last + 1]
            spread = None if spread is None else spread[first : last + 1]
    else:
        out = grid.resample_slices(out, positions)
        spread = None if spread is None else grid.resample_slices(spread, positions)
    return MethodResult(out, spread, result.made_by)


def _takes_padded(method: Method) -> bool:
    """Whether ``method.run`` takes ``padded`` (every method here; one of a user's own,
    written before the output reached past the end slices, may not)."""
    params = inspect.signature(method.run).parameters.values()
    return any(p.name == "padded" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
