"""Classical interpolation along the slice axis: linear, Lanczos-3 and cubic B-spline."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import ClassVar

import numpy as np

from thinslice import grid
from thinslice.methods.base import Method, MethodResult
from thinslice.methods.registry import register


def polyphase(data: np.ndarray, r: int, kernel: Callable[[np.ndarray], np.ndarray], radius: int) -> np.ndarray:
    """Separable 1-D resampling along axis 0 with a symmetric kernel of support ``radius``.

    Output slice ``r * k + p`` is ``sum_m w_p[m] * data[k + m]`` with reflected edges; the
    weights of each phase are normalised to sum to 1.
    """
    d = data.shape[0]
    src = data.astype(np.float32, copy=False)
    out = np.empty((grid.output_slices(d, r), *data.shape[1:]), dtype=np.float32)
    grid.keep_acquired(out, src, r)
    offsets = np.arange(-radius + 1, radius + 1)
    for p in range(1, r):
        t = p / r
        w = kernel(offsets - t)
        w = (w / w.sum()).astype(np.float32)
        for k in range(d - 1):
            idx = np.abs(k + offsets)  # reflect at the start
            idx = np.where(idx > d - 1, 2 * (d - 1) - idx, idx)  # reflect at the end
            acc = np.zeros(data.shape[1:], dtype=np.float32)
            for wi, i in zip(w, idx, strict=True):
                if wi != 0:
                    acc += wi * src[i]
            out[r * k + p] = acc
    return out


def linear_kernel(x: np.ndarray) -> np.ndarray:
    return np.clip(1 - np.abs(x), 0, None)


def lanczos3_kernel(x: np.ndarray) -> np.ndarray:
    return np.where(np.abs(x) < 3, np.sinc(x) * np.sinc(x / 3), 0.0)


class Interpolator(Method):
    """A classical interpolator: the acquired slices as samples of a smooth signal. It knows
    nothing of slice thickness or voxel spacing, and returns float32."""

    passes_through = True

    @abstractmethod
    def interpolate(self, data: np.ndarray, r: int) -> np.ndarray:
        """``(r * (D - 1) + 1, H, W)`` float32 from ``data`` ``(D, H, W)``, acquired slices kept."""

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
        return MethodResult(self.interpolate(data, r))


@register
class Linear(Interpolator):
    name = "linear"
    description = "linear interpolation between neighbouring slices"
    host_bytes_per_voxel: ClassVar[tuple[float, float]] = (12.0, 4.0)

    def interpolate(self, data: np.ndarray, r: int) -> np.ndarray:
        return polyphase(data, r, linear_kernel, 1)


@register
class Lanczos(Interpolator):
    name = "lanczos"
    description = "Lanczos-3 windowed-sinc interpolation along the slice axis"
    host_bytes_per_voxel: ClassVar[tuple[float, float]] = (12.0, 4.0)

    def interpolate(self, data: np.ndarray, r: int) -> np.ndarray:
        return polyphase(data, r, lanczos3_kernel, 3)


@register
class Cubic(Interpolator):
    name = "cubic"
    description = "cubic B-spline interpolation along the slice axis (not-a-knot ends)"
    host_bytes_per_voxel: ClassVar[tuple[float, float]] = (12.0, 16.0)

    def interpolate(self, data: np.ndarray, r: int) -> np.ndarray:
        d = data.shape[0]
        if d < 4:
            return polyphase(data, r, linear_kernel, 1)
        from scipy import interpolate  # here: scipy.interpolate takes 0.2 s to import

        spline = interpolate.make_interp_spline(np.arange(d), data.astype(np.float32), k=3, axis=0)
        out = spline(np.arange(grid.output_slices(d, r)) / r).astype(np.float32)
        return grid.keep_acquired(out, data, r)
