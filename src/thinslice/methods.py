"""The slice-synthesis methods behind one interface.

A method is a callable ``method(data, r) -> upsampled`` where ``data`` is a
``(D, H, W)`` float32 HU array (slice axis first) and the result has ``r * (D - 1) + 1``
slices, output slice ``r * k`` being input slice ``k``. Methods work along the slice
axis only. :func:`get_method` builds one by name; the learned model registers itself
here as ``model``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from scipy import interpolate

from thinslice.errors import ConfigError


class Method(Protocol):
    def __call__(self, data: np.ndarray, r: int) -> np.ndarray: ...


_FACTORIES: dict[str, Callable[..., Method]] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register(name: str, description: str) -> Callable[[Callable[..., Method]], Callable[..., Method]]:
    """Decorator: register a factory ``(**options) -> Method`` under ``name``."""

    def wrap(factory: Callable[..., Method]) -> Callable[..., Method]:
        _FACTORIES[name] = factory
        _DESCRIPTIONS[name] = description
        return factory

    return wrap


def available() -> dict[str, str]:
    """Registered method names with a one-line description each."""
    return dict(_DESCRIPTIONS)


def get_method(name: str, **options: Any) -> Method:
    """Build the method called ``name``; unknown names get a did-you-mean error."""
    if name not in _FACTORIES:
        close = difflib.get_close_matches(name, list(_FACTORIES), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown method '{name}'; choose one of {', '.join(sorted(_FACTORIES))}.{hint}")
    return _FACTORIES[name](**options)


def _polyphase(data: np.ndarray, r: int, kernel: Callable[[np.ndarray], np.ndarray], radius: int) -> np.ndarray:
    """Separable 1-D resampling along axis 0 with a symmetric kernel of support ``radius``.

    Output slice ``r * k + p`` is ``sum_m w_p[m] * data[k + m]`` with reflected edges; the
    weights of each phase are normalised to sum to 1.
    """
    d = data.shape[0]
    src = data.astype(np.float32, copy=False)
    out = np.empty((r * (d - 1) + 1, *data.shape[1:]), dtype=np.float32)
    out[::r] = src
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


def _linear_kernel(x: np.ndarray) -> np.ndarray:
    return np.clip(1 - np.abs(x), 0, None)


def _lanczos3_kernel(x: np.ndarray) -> np.ndarray:
    return np.where(np.abs(x) < 3, np.sinc(x) * np.sinc(x / 3), 0.0)


@register("linear", "linear interpolation between neighbouring slices")
def linear(**_: Any) -> Method:
    return lambda data, r: _polyphase(data, r, _linear_kernel, 1)


@register("lanczos", "Lanczos-3 windowed-sinc interpolation along the slice axis")
def lanczos(**_: Any) -> Method:
    return lambda data, r: _polyphase(data, r, _lanczos3_kernel, 3)


@register("cubic", "cubic B-spline interpolation along the slice axis (not-a-knot ends)")
def cubic(**_: Any) -> Method:
    def run(data: np.ndarray, r: int) -> np.ndarray:
        d = data.shape[0]
        if d < 4:
            return _polyphase(data, r, _linear_kernel, 1)
        spline = interpolate.make_interp_spline(np.arange(d), data.astype(np.float32), k=3, axis=0)
        out = spline(np.arange(r * (d - 1) + 1) / r).astype(np.float32)
        out[::r] = data
        return out

    return run


@register("model", "the self-supervised cross-view networks (default; bundled model or --model)")
def model(model: Any = None, device: str = "auto", progress: bool = False, **options: Any) -> Method:
    from thinslice.model_method import ModelMethod

    return ModelMethod(model, device=device, progress=progress, **options)
