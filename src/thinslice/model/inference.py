"""Inference: synthesize the slices between acquired ones by fusing views.

The through-plane network, run on every coronal and every sagittal image, estimates every
output row; the axial network (when asked for, ``views="all"``) estimates the ``r - 1``
new slices of each gap from its two neighbours. The views are averaged (Fang et al.,
CVPR 2022, inference) as they arrive, into the output itself (:mod:`thinslice.model.fusion`);
thin acquired slices are copied back unchanged, thick ones re-estimated by a ``sharpen``
model. The spread of the views is the per-voxel uncertainty in HU.

Work is batched (axial pairs, coronal and sagittal images) and fused on the CPU, so peak
device memory is set by ``batch_size``, not by the volume; convolutions run in bf16 where
the hardware has it (:func:`thinslice.device.resolve_precision`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from thinslice import grid
from thinslice.checks import is_whole
from thinslice.device import keep_freed_memory, release_freed_memory, resolve_device, resolve_precision
from thinslice.errors import ConfigError, InputError, ModelError
from thinslice.grid import MAX_SCALE
from thinslice.model.checkpoint import load_checkpoint, model_config_of
from thinslice.model.config import ModelConfig
from thinslice.model.fusion import SR_VIEWS, Finish, OutputWriter, ViewFusion, ordered
from thinslice.model.nets import AxialInterpolator, ThroughPlaneSR, build_networks, interpolation_matrix

log = logging.getLogger(__name__)

VIEWS = ("axial", "coronal", "sagittal")


def normalize(hu: np.ndarray | Tensor, hu_min: float, hu_max: float) -> Tensor:
    """HU (any real dtype) -> a new float32 tensor in [0, 1] (clipped to the window), made
    in place: one copy of the volume, no temporaries."""
    x = torch.as_tensor(np.asarray(hu) if not isinstance(hu, Tensor) else hu)
    x = x.to(torch.float32, copy=True).contiguous()
    return x.clamp_(hu_min, hu_max).sub_(hu_min).div_(hu_max - hu_min)


def autocast_for(device: torch.device, dtype: torch.dtype = torch.float32):  # noqa: ANN201 - a context manager
    """Autocast to ``dtype`` on ``device`` (convolutions in bf16; the classical base and
    the sum with it stay float32); nothing for float32."""
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


@torch.inference_mode()
def synthesize_views(
    x: Tensor,
    scale: int,
    axial: AxialInterpolator | None,
    sr: ThroughPlaneSR | None,
    *,
    views: Sequence[str] = VIEWS,
    base: str = "linear",
    fusion: str = "mean",
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    spread: bool = False,
    progress: bool = False,
    keep_acquired: bool = True,
    dtype: torch.dtype = torch.float32,
    store: Tensor | None = None,
    finish: Finish | None = None,
) -> tuple[Tensor | None, Tensor | None]:
    """One application of the networks: ``(D, H, W)`` -> ``(r*(D-1)+1, H, W)``.

    Args:
        x: normalised volume ``(D, H, W)`` on the CPU, slice axis first.
        scale: r (must match the networks).
        axial: network for the axial view (needed when ``"axial"`` is in ``views``).
        sr: network for the coronal and sagittal views.
        views: which views to fuse.
        base: the classical interpolation the axial network refines (spline through all
            slices, as the through-plane network uses).
        fusion: ``mean`` or ``median``.
        batch_size: 2-D images (or axial pairs) per forward pass.
        device: where the networks run; results are accumulated on the CPU.
        spread: also return the per-voxel standard deviation across views.
        progress: show a tqdm bar.
        keep_acquired: copy the acquired slices into the output (thin input slices). When
            False (thick input slices, a ``sharpen`` network), the output at an acquired
            position is the mean of the coronal and sagittal views only: the axial network
            sees only the two thick slices around a gap and contributes to the new slices.
        dtype: what the convolutions compute in (:func:`thinslice.device.resolve_precision`).
        store, finish: stream the fused slabs to the output (see :class:`ViewFusion`);
            the acquired rows are then the caller's (``finish`` sees them as the views
            estimate them).

    Returns:
        the fused normalised volume (None with ``finish``) and the spread or None.
    """
    device = torch.device(device)
    d, h, w = x.shape
    r = scale
    n_out = grid.output_slices(d, r)
    if "axial" in views and axial is None:
        raise ModelError("this model has no axial network; choose views coronal,sagittal")
    if ("coronal" in views or "sagittal" in views) and sr is None:
        raise ModelError("this model has no through-plane network; choose views=axial")
    views = ordered(views)
    acc = ViewFusion((n_out, h, w), r, views, fusion=fusion, spread=spread, store=store, finish=finish)
    matrix = interpolation_matrix(d, r, base)
    flat = x.reshape(d, h * w)
    bs = max(1, int(batch_size))
    steps = 0
    if "axial" in views:
        steps += -(-(d - 1) // bs)
    steps += sum(-(-n // bs) for n, v in ((h, "coronal"), (w, "sagittal")) if v in views)
    bar = tqdm(total=steps, desc="synthesize", disable=not progress, leave=False)
    with autocast_for(device, dtype):
        for view in views:
            if view == "axial":
                assert axial is not None
                for g0 in range(0, d - 1, bs):
                    g1 = min(d - 1, g0 + bs)
                    gaps = torch.arange(g0, g1)
                    rows = (gaps[:, None] * r + torch.arange(1, r)[None, :]).flatten()
                    weights = matrix[rows]
                    used = torch.nonzero(weights.abs().amax(0) > 1e-9).flatten()
                    with torch.autocast(device.type, enabled=False):  # the base stays float32
                        base_vals = (weights[:, used] @ flat[used]).view(len(gaps), r - 1, h, w)
                    pair = torch.stack([x[g0:g1], x[g0 + 1 : g1 + 1]], dim=1)
                    out = axial(pair.to(device), base_vals.to(device))
                    acc.add(view, (rows,), out.reshape(-1, h, w))
                    bar.update()
                if acc.stack is not None:  # the median of the acquired rows counts the slice itself
                    acc.stack[0][::r] = x
            elif view == "coronal":
                assert sr is not None
                for h0 in range(0, h, bs):
                    h1 = min(h, h0 + bs)
                    images = x[:, h0:h1, :].permute(1, 0, 2).unsqueeze(1)  # (b, 1, D, W)
                    out = sr(images.to(device))[:, 0]  # (b, N, W)
                    acc.add(view, (slice(None), slice(h0, h1), slice(None)), out.permute(1, 0, 2))
                    bar.update()
            elif view == "sagittal":
                assert sr is not None
                for w0 in range(0, w, bs):
                    w1 = min(w, w0 + bs)
                    images = x[:, :, w0:w1].permute(2, 0, 1).unsqueeze(1)  # (b, 1, D, H)
                    out = sr(images.to(device))[:, 0]  # (b, N, H)
                    acc.add(view, (slice(None), slice(None), slice(w0, w1)), out.permute(1, 2, 0))
                    bar.update()
            else:
                raise ConfigError(f"unknown view {view!r}; choose from {', '.join(VIEWS)}")
    bar.close()
    acc.complete()
    spread_t = acc.spread()
    n_sr = sum(v in views for v in SR_VIEWS)
    if (keep_acquired or n_sr == 0) and spread_t is not None:
        spread_t[::r] = 0
    if finish is not None:
        return None, spread_t
    fused = acc.result()
    if keep_acquired or n_sr == 0:
        fused[::r] = x
    return fused, spread_t


def passes_for(scale: int, model_scale: int) -> int:
    """How many times a model of ``model_scale`` must run to reach ``scale`` (a power of
    it that :mod:`thinslice.grid` allows)."""
    valid = [model_scale**k for k in range(1, 5) if model_scale**k <= MAX_SCALE] or [model_scale]
    if not is_whole(scale) or scale not in valid:
        raise ModelError(
            f"this model upsamples x{model_scale}; scale {scale!r} is not a power of it "
            f"(valid: {', '.join(str(v) for v in valid)})"
        )
    return valid.index(int(scale)) + 1


N = TypeVar("N", bound=torch.nn.Module)


def _channels_last(net: N) -> N:
    """``net`` in eval mode with channels-last weights (torch's stubs lack this overload of ``to``)."""
    return net.to(memory_format=torch.channels_last).eval()  # type: ignore[call-overload,no-any-return]


class Synthesizer:
    """A trained model ready to upsample volumes (see :func:`thinslice.checkpoint.load_model`).

    Attributes:
        scale: the model's factor r.
        config: its :class:`~thinslice.model.config.ModelConfig`.
        device: where the networks run.
        dtype: what their convolutions compute in (``precision``).
        views: the views the model can produce.

    Example:
        >>> synth = load_model("model.pt")                      # doctest: +SKIP
        >>> thin, spread = synth.upsample(vol.data, return_uncertainty=True)  # doctest: +SKIP
    """

    def __init__(
        self,
        axial: AxialInterpolator | None,
        sr: ThroughPlaneSR | None,
        config: ModelConfig,
        device: str | torch.device = "auto",
        precision: str = "auto",
    ) -> None:
        if axial is None and sr is None:
            raise ModelError("a model needs at least one network")
        self.config = config
        self.scale = config.scale
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        keep_freed_memory()
        # channels-last weights let oneDNN/cuDNN pick their fastest convolution layout
        # (about 25% less time on this CPU, measured in BENCHMARKS.md)
        self.axial = _channels_last(axial.to(self.device)) if axial is not None else None
        self.sr = _channels_last(sr.to(self.device)) if sr is not None else None
        available = []
        if self.axial is not None:
            available.append("axial")
        if self.sr is not None:
            available += ["coronal", "sagittal"]
        self.views: tuple[str, ...] = tuple(available)

    def _resolve_views(self, views: str | Sequence[str]) -> tuple[str, ...]:
        if isinstance(views, str):
            views = self.views if views == "all" else [v.strip() for v in views.split(",")]
        chosen = tuple(dict.fromkeys(views))
        for view in chosen:
            if view not in VIEWS:
                raise ConfigError(f"unknown view {view!r}; choose all or from {', '.join(VIEWS)}")
            if view not in self.views:
                raise ModelError(f"this model cannot produce the {view} view (has {self.views})")
        if not chosen:
            raise ConfigError("choose at least one view")
        return chosen

    @torch.inference_mode()
    def upsample(
        self,
        data: np.ndarray,
        scale: int | None = None,
        *,
        views: str | Sequence[str] = "all",
        return_uncertainty: bool = False,
        batch_size: int = 8,
        progress: bool = False,
        keep_acquired: bool | None = None,
        out_dtype: np.dtype | type = np.float32,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Synthesize the slices between the acquired ones (and re-estimate those, unless
        ``keep_acquired``).

        Args:
            data: ``(D, H, W)`` volume in HU, slice axis first, ``D >= 2``.
            scale: output factor; the model's own or a power of it (applied repeatedly).
            views: ``"all"`` or a subset of ``axial``, ``coronal``, ``sagittal``.
            return_uncertainty: also return the per-voxel std across views (HU; 0 at
                acquired slices).
            batch_size: 2-D images per forward pass (bounds memory).
            progress: show progress bars.
            keep_acquired: copy the acquired slices unchanged (default: unless the model
                was trained to sharpen thick slices, ``config.sharpen``).
            out_dtype: the result's dtype; an integer one gets rounded HU, made slab by
                slab (int16: the result's own buffer holds the fusion, so the peak memory
                is about the result's size; see :mod:`thinslice.model.fusion`).

        Returns:
            ``(scale*(D-1)+1, H, W)`` HU in ``out_dtype``; with ``keep_acquired``, slices
            ``k*scale`` equal ``data[k]``. With ``return_uncertainty``, a tuple
            ``(volume, uncertainty)`` (float32 HU).

        Raises:
            InputError: ``data`` is not a 3-D volume with at least two slices.
            ModelError: ``scale`` is not a power of the model's scale.
        """
        arr = np.asarray(data)
        if arr.ndim != 3 or arr.shape[0] < 2 or min(arr.shape[1:]) < 1:
            raise InputError(f"expected a (D, H, W) volume with D >= 2, got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
            raise InputError(f"expected a real-valued volume, got dtype {arr.dtype}")
        passes = passes_for(self.scale if scale is None else scale, self.scale)
        chosen = self._resolve_views(views)
        cfg = self.config
        width = cfg.hu_max - cfg.hu_min
        r = self.scale
        keep = not cfg.sharpen if keep_acquired is None else keep_acquired
        current = arr
        uncertainty: np.ndarray | None = None
        for i in range(passes):
            x = normalize(current, cfg.hu_min, cfg.hu_max)
            n_out = grid.output_slices(current.shape[0], r)
            out = np.empty((n_out, *current.shape[1:]), out_dtype if i == passes - 1 else np.float32)
            writer = OutputWriter(out, current, r, (cfg.hu_min, cfg.hu_max), keep)
            _, spread = synthesize_views(
                x,
                r,
                self.axial,
                self.sr,
                views=chosen,
                base=cfg.base,
                fusion=cfg.fusion,
                batch_size=batch_size,
                device=self.device,
                spread=return_uncertainty,
                progress=progress,
                keep_acquired=keep,
                dtype=self.dtype,
                store=writer.store(),
                finish=writer,
            )
            del x
            release_freed_memory()  # the activations' buffers, before the next volume-sized step
            if not any(v in chosen for v in SR_VIEWS):  # the axial view estimates only new rows
                writer.copy_acquired()
            if return_uncertainty:
                assert spread is not None
                unc = spread.mul_(width).numpy()
                if uncertainty is not None and keep:
                    unc[::r] = uncertainty
                uncertainty = unc
            current = out
        result = np.asarray(current)
        if return_uncertainty:
            assert uncertainty is not None
            return result, uncertainty.astype(np.float32, copy=False)
        return result


#: Trained weights of these networks stay near 1 (the bundled ones below 2); a thousand is
#: a corrupt or diverged checkpoint, whose output would be clipped garbage, not an error.
WEIGHT_LIMIT = 1e3


def _check_shapes(path: str | Path, name: str, net: torch.nn.Module, stored: object) -> None:
    """The stored tensors have the names and shapes the config's network needs (checked
    before the weights are copied, with a one-line message)."""
    if not isinstance(stored, dict):
        raise ModelError(f"{path} has no valid weights for the {name} network")
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in stored.items() if isinstance(v, Tensor)}
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if missing or extra or wrong:
        parts = [f"{len(missing)} missing (e.g. {missing[0]})"] if missing else []
        parts += [f"{len(extra)} unexpected (e.g. {extra[0]})"] if extra else []
        parts += [f"{len(wrong)} of another shape (e.g. {wrong[0]}: {found[wrong[0]]}, config says "
                  f"{expected[wrong[0]]})"] if wrong else []  # fmt: skip
        raise ModelError(f"{path}: {name} weights do not match the stored config: {'; '.join(parts)}")
    for key, tensor in stored.items():
        if not (isinstance(tensor, Tensor) and tensor.is_floating_point()):
            continue
        if not bool(torch.isfinite(tensor).all()):
            raise ModelError(
                f"{path}: the {name} weights hold NaN/Inf values (in {key}): the checkpoint is broken "
                "(a diverged training?); retrain it or use another model"
            )
        if tensor.numel() and float(tensor.abs().max()) > WEIGHT_LIMIT:
            raise ModelError(
                f"{path}: the {name} weights reach {float(tensor.abs().max()):.3g} (in {key}), far beyond what "
                "training gives (about 1): the checkpoint is broken (a diverged training?); retrain it"
            )


def load_model(path: str | Path, device: str | torch.device = "auto", precision: str = "auto") -> Synthesizer:
    """Rebuild a :class:`Synthesizer` from a checkpoint alone.

    Args:
        path: checkpoint written by training.
        device: ``auto|cpu|cuda|cuda:N|mps``.
        precision: ``auto|float32|bfloat16`` (:func:`thinslice.device.resolve_precision`).

    Raises:
        ModelError: see :func:`load_checkpoint`; also when the weights do not fit the
            stored config.
    """
    ckpt = load_checkpoint(path)
    config = model_config_of(ckpt, path)  # bounded sizes (ModelConfig.LIMITS)
    if ckpt["networks"] not in ("both", "axial", "sr"):
        raise ModelError(f"{path} names unknown networks {ckpt['networks']!r}")
    weights = ckpt["weights"]
    if not isinstance(weights, dict):
        raise ModelError(f"{path} has no valid weights")
    with torch.device("meta"):  # shapes only, nothing allocated
        meta = build_networks(config, ckpt["networks"])
    for name, net in zip(("axial", "sr"), meta, strict=True):
        if net is not None:
            if name not in weights:
                raise ModelError(f"{path} has no weights for the {name} network")
            _check_shapes(path, name, net, weights[name])
    axial, sr = build_networks(config, ckpt["networks"])
    for name, net in (("axial", axial), ("sr", sr)):
        if net is None:
            continue
        try:
            net.load_state_dict(weights[name])
        except (RuntimeError, KeyError, TypeError) as err:
            raise ModelError(f"{path}: {name} weights do not match the stored config: {err}") from err
    return Synthesizer(axial, sr, config, device, precision)
