"""Fusing the views into the output as they arrive, in one output-sized buffer.

The views' running mean lives in a single buffer: float32 normalised values, or, when the
output is int16 (CT as read), the output array itself holding the mean in steps of 1/8 HU.
The last view turns each finished slab into output values through ``finish`` (clip,
HU, rounding), so besides the input no other volume-sized array exists: the peak memory of
a synthesis stays under 2.5 times the output's size in float32 (measured in BENCHMARKS.md). The spread (the
uncertainty map) and median fusion keep what they need besides, and only when asked.

Views run in a fixed order, the axial one first: it estimates only the rows between
acquired slices, so the last view, a through-plane one, finishes every row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from thinslice.errors import ModelError

#: int16 codes per unit of the normalised window: 4096 HU / 32768 = 1/8 HU per step; the
#: codes cover normalised [-0.5, 1.5), HU -3072..5120, beyond the [0, 1] the output keeps.
CODE_STEPS = 32768.0
CODE_OFFSET = 0.5

#: ``finish(index, fused)``: write the fused normalised values of ``index`` to the output.
Finish = Callable[[tuple, Tensor], None]

SR_VIEWS = ("coronal", "sagittal")


def ordered(views: Sequence[str]) -> tuple[str, ...]:
    """``views`` with the axial one first (the mean does not depend on the order)."""
    return tuple(sorted(views, key=lambda v: v != "axial"))


def encode(values: Tensor) -> Tensor:
    """Normalised values -> int16 codes (1/8 HU steps)."""
    codes = values.mul(CODE_STEPS).sub_(CODE_STEPS * (1 - CODE_OFFSET)).round_()
    return codes.clamp_(-32768, 32767).to(torch.int16)


def decode(codes: Tensor) -> Tensor:
    """int16 codes -> normalised float32 values."""
    return codes.to(torch.float32).div_(CODE_STEPS).add_(1 - CODE_OFFSET)


class ViewFusion:
    """The running mean (or the median) of the views, per output voxel.

    Args:
        shape: the output ``(N, H, W)``.
        r: the factor; rows ``k * r`` are the acquired positions.
        views: in the order they will be added (:func:`ordered`).
        fusion: ``mean``, or ``median`` (with three views or more).
        spread: also keep the views' spread (one more float32 buffer).
        store: where the mean lives: a float32 or int16 (coded) tensor of ``shape``; by
            default a new float32 one.
        finish: called with each slab of the last view's fused values; without it, the
            fused values stay in ``store`` (float32) for :meth:`result`.
    """

    def __init__(
        self,
        shape: tuple[int, int, int],
        r: int,
        views: Sequence[str],
        *,
        fusion: str = "mean",
        spread: bool = False,
        store: Tensor | None = None,
        finish: Finish | None = None,
    ) -> None:
        self.shape, self.r, self.views = shape, r, tuple(views)
        self.finish = finish
        self.median = fusion == "median" and len(self.views) >= 3
        self.store = torch.zeros(shape, dtype=torch.float32) if store is None else store
        self.coded = self.store.dtype == torch.int16
        if self.coded and finish is None:
            raise ValueError("a coded store needs a finish step")
        self.m2 = torch.zeros(shape, dtype=torch.float32) if spread and not self.median else None
        self.stack = torch.zeros((len(self.views), *shape), dtype=torch.float32) if self.median else None
        # views already added before each view, for rows between acquired slices and at them
        sr = [v for v in self.views if v in SR_VIEWS]
        self.before = {v: (i, sr.index(v) if v in sr else 0) for i, v in enumerate(self.views)}
        self.last = self.views[-1]
        self.n_sr = len(sr)
        acquired = torch.zeros(shape[0], dtype=torch.bool)
        acquired[::r] = True
        self._acquired = acquired.view(-1, 1, 1)

    def add(self, view: str, index: tuple, values: Tensor) -> None:
        """Fuse one slab of ``view``'s estimate (normalised, CPU or device)."""
        values = values.to("cpu", torch.float32)
        if self.stack is not None:
            self.stack[self.views.index(view)][index] = values
            return
        k_syn, k_acq = self.before[view]
        if view == "axial" or k_syn == k_acq:  # rows between acquired slices only, or alike
            count: Tensor | float = float(k_syn)
        else:
            count = torch.where(self._acquired, float(k_acq), float(k_syn))
        finishing = view == self.last and self.finish is not None
        if isinstance(count, float) and count == 0:
            new = values
        else:
            # the running mean: prev + (values - prev) / (count + 1), where count > 0
            prev = decode(self.store[index]) if self.coded else self.store[index]
            delta = values - prev
            if isinstance(count, float):
                step = delta.div_(count + 1) if self.m2 is None else delta / (count + 1)
                new = prev.add_(step) if self.coded or finishing else prev + step
            else:  # rows this view is the first to see hold no mean yet (any value, even NaN)
                new = torch.where(count == 0, values, prev + delta / (count + 1))
                delta = torch.where(count == 0, 0.0, delta)
            if self.m2 is not None:
                self.m2[index] += delta * (values - new)
        if finishing:
            assert self.finish is not None
            self.finish(index, new)
        else:
            self.store[index] = encode(new) if self.coded else new

    def complete(self) -> None:
        """After the last view: median fusion's finish, slab by slab."""
        if self.stack is None:
            return
        n = self.shape[0]
        for k0 in range(0, n, 16):
            index = (slice(k0, min(n, k0 + 16)),)
            fused = self.stack[(slice(None), *index)].median(dim=0).values
            if self.finish is not None:
                self.finish(index, fused)
            else:
                self.store[index] = fused

    def result(self) -> Tensor:
        """The fused normalised volume (without ``finish``)."""
        return self.store

    def spread(self) -> Tensor | None:
        """The views' standard deviation per voxel (normalised units), or None."""
        if self.stack is not None:
            return self.stack.std(dim=0, unbiased=False)
        if self.m2 is None:
            return None
        n_syn, n_acq = len(self.views), max(1, self.n_sr)
        counts = torch.where(self._acquired, float(n_acq), float(n_syn))
        return self.m2.div_(counts).clamp_(min=0).sqrt_()


class OutputWriter:
    """The ``finish`` step: fused normalised slabs -> the output array.

    Undoes the HU window, adds back by linear interpolation what lay outside it (e.g.
    -3024 HU padding: the network sees the data clipped to its window), copies the
    acquired slices when they are kept, and rounds into the output's dtype.

    Args:
        out: the output ``(N, H, W)``; int16 and float32 outputs also hold the running
            mean (:meth:`store`).
        data: the input ``(D, H, W)`` in HU.
        r: the factor.
        window: the model's HU window ``(hu_min, hu_max)``.
        keep: copy the acquired slices into the output.
    """

    def __init__(self, out: np.ndarray, data: np.ndarray, r: int, window: tuple[float, float], keep: bool) -> None:
        self.out, self.data, self.r, self.keep = out, data, r, keep
        self.lo, self.hi = window
        self.outside = bool(data.min() < self.lo or data.max() > self.hi)
        self.limits = np.iinfo(out.dtype) if np.issubdtype(out.dtype, np.integer) else None

    def store(self) -> Tensor | None:
        """The output itself as the running mean's buffer, when its dtype allows."""
        if self.out.dtype in (np.int16, np.float32):
            return torch.from_numpy(self.out)
        return None

    def __call__(self, index: tuple, fused: Tensor) -> None:
        require_finite(fused, "output")
        hu = fused.clamp_(0.0, 1.0).mul_(self.hi - self.lo).add_(self.lo).numpy()
        first = index[0]
        rows = first.numpy() if isinstance(first, Tensor) else np.arange(self.out.shape[0])[first]
        rest = (slice(None), *index[1:])
        if self.outside:  # from the input slices these rows lie between only (an axial slab: a few)
            k0 = int(rows.min()) // self.r
            k1 = min(int(rows.max()) // self.r + 1, len(self.data) - 1)
            block = self.data[rest][k0 : k1 + 1].astype(np.float32)
            excess = block - np.clip(block, self.lo, self.hi)
            if excess.any():
                hu += linear_at(excess, rows - k0 * self.r, self.r)
        if self.keep:
            acquired = rows % self.r == 0
            if acquired.any():
                hu[acquired] = self.data[rest][rows[acquired] // self.r]
        if self.limits is not None:
            np.clip(np.rint(hu, out=hu), self.limits.min, self.limits.max, out=hu)
        self.out[(rows, *index[1:]) if isinstance(first, Tensor) else index] = hu

    def copy_acquired(self) -> None:
        """Put the acquired slices into the output (when no view estimated them)."""
        self.out[:: self.r] = self.data


def linear_at(values: np.ndarray, rows: np.ndarray, r: int) -> np.ndarray:
    """Linear interpolation of ``values`` ``(D, ...)`` along axis 0 at output ``rows``
    (row ``n`` lies at input position ``n / r``)."""
    k = rows // r
    t = ((rows % r) / r).astype(np.float32).reshape(-1, *[1] * (values.ndim - 1))
    upper = np.minimum(k + 1, values.shape[0] - 1)
    return values[k] * (1 - t) + values[upper] * t


def require_finite(values: Tensor, what: str, path: str | Path | None = None) -> None:
    """Refuse NaN or Inf in the network's ``values``: broken weights (NaN, or so large that
    they overflow) would otherwise come out as a constant volume, silently.

    Raises:
        ModelError: naming how many values are not finite.
    """
    if bool(torch.isfinite(values.sum())):  # NaN and Inf reach the sum: one pass, no mask
        return
    flat = values.reshape(-1)
    bad = sum(int(chunk.numel() - torch.isfinite(chunk).sum()) for chunk in flat.split(1 << 24))
    if bad:
        where = f" of {path}" if path is not None else ""
        raise ModelError(
            f"the network's {what}{where} holds {bad:,} NaN/Inf value(s): the model's weights are broken "
            "(NaN, or so large they overflow; a diverged training?); retrain it or use another model"
        )
