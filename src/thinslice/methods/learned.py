"""The learned model as a method (``--method model``): the self-supervised cross-view networks.

Without ``--model``, the checkpoints bundled in ``thinslice/weights/`` are used. Three
families, picked by the acquisition:

* ``profile_x{r}.pt``: trained under the acquisition model (thick slices are averages
  over their thickness, a box softened by up to a Gaussian as wide); used for slices
  thicker than the output's, and it re-estimates every output slice, the acquired
  positions too;
* ``profile_soft_x{r}.pt``: the same, trained on softer profiles (Gaussians 1-2 times as
  wide as the thickness); used instead when the scan's slice profile looks that soft
  (:func:`thinslice.profile.estimate_softness` at least
  :data:`~thinslice.profile.SOFT_PROFILE`), where the plain profile model sharpens too
  little, and blended in with it as the slices overlap (from 1.24 spacings thick, alone
  from 1.78: :func:`thinslice.profile.soft_weight`; BENCHMARKS.md);
* ``default_x{r}.pt``: trained on thin slices (decimation); used for thin inputs, and it
  keeps the acquired slices; slices with gaps between them, thicker than the output's,
  blend it with the thick-slice models (:func:`thinslice.profile.thin_weight`).

Within a family, the model trained for the requested factor is used when it exists,
otherwise one whose factor has the requested one as a power (x4 = x2 applied twice); a
family that makes neither falls back to the other.
"""

from __future__ import annotations

import logging
import os
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from thinslice import grid
from thinslice.errors import ModelError
from thinslice.methods.base import Method, MethodResult
from thinslice.methods.registry import register

if TYPE_CHECKING:  # torch loads only when a model runs, so classical methods start fast
    from thinslice.model.inference import Synthesizer

log = logging.getLogger(__name__)
#: Every bundled family and what it is for, in the order a soft, a thick, then a thin
#: acquisition tries them.
FAMILY_USE = {
    "profile_soft": "thick slices with a soft slice profile",
    "profile": "thick slices",
    "default": "thin slices",
}
FAMILIES = tuple(FAMILY_USE)


def bundled_models(family: str = "default") -> dict[int, Path]:
    """Scale -> path of every model of ``family`` shipped inside the package."""
    folder = Path(str(resources.files("thinslice") / "weights"))
    found = {}
    for path in sorted(folder.glob(f"{family}_x*.pt")) if folder.is_dir() else []:
        try:
            found[int(path.stem.removeprefix(f"{family}_x"))] = path
        except ValueError:
            continue
    return found


def bundled_model_path(scale: int = 2, family: str = "default") -> Path | None:
    """The bundled model of ``family`` for ``scale`` (or one whose factor ``scale`` is a power of)."""
    models = bundled_models(family)
    if scale in models:
        return models[scale]
    for base, path in sorted(models.items()):
        k = base
        while k < scale:
            k *= base
        if k == scale:
            return path
    return None


def _thicker_than_output(thickness: float, r: int) -> bool:
    """Slices ``thickness`` spacings thick are thicker than the output's at factor ``r``:
    the profile families, which re-estimate the acquired slices, make them."""
    return not grid.keeps_acquired(thickness * r, 1.0)


#: A family's share of a blend below which it is left out (the rest renormalised): 4 mm
#: slices 4.002 mm apart would otherwise run a second model for 0.07 % of the output.
MIN_SHARE = 0.01

#: Device memory of one batch of the network (8 images of the default widths), per pixel
#: of an axial image plus per pixel of a through-plane output image: activations measured
#: in float32 on the CPU (~1.5 kB per pixel at 256 x 256); bf16 autocast on CUDA needs less.
DEVICE_BYTES_PER_PIXEL = 1500.0
#: Weights and the CUDA context.
DEVICE_BYTES_FIXED = 2**28


@register
class ModelMethod(Method):
    """A trained checkpoint (``--model``) or the bundled models, as a :class:`Method`.

    Args:
        model: checkpoint path; None for the bundled models.
        device: ``auto|cpu|cuda[:N]|mps``.
        progress: show progress bars.
        all_views: also fuse the axial network's view (three views; the default fuses the
            coronal and sagittal ones, which measured better: BENCHMARKS.md).
        precision: ``auto|float32|bfloat16``, what the convolutions compute in
            (:func:`thinslice.device.resolve_precision`).
        uncertainty: also return the views' spread (one more output-sized buffer).
        batch_size: 2-D images per forward pass.

    Raises:
        ModelError: the checkpoint is unusable, or no model is bundled.
    """

    name = "model"
    description = "the self-supervised cross-view networks (default; bundled model or --model)"
    options: ClassVar[frozenset[str]] = frozenset(
        {"model", "device", "progress", "all_views", "precision", "uncertainty"}
    )
    gives_uncertainty = True
    adaptable = True
    #: The output holds the fused views itself (int16 CT: 2 B per voxel, float32 input: 4 B)
    #: plus the spread when asked (4 B); the input normalised once (4 B per input voxel)
    #: and the network's batches. Measured by peak RSS at x4 on 512 x 512 x 100 and x 400
    #: (BENCHMARKS.md): about 5 B per output voxel besides start-up.
    host_bytes_per_voxel: ClassVar[tuple[float, float]] = (8.0, 8.0)

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        device: str = "auto",
        progress: bool = False,
        all_views: bool = False,
        precision: str = "auto",
        uncertainty: bool = False,
        batch_size: int = 8,
    ) -> None:
        from thinslice.device import check_precision

        self.precision = check_precision(precision)  # refused before any scan is read
        self.uncertainty = uncertainty
        self.device_spec = device
        self.progress = progress
        self.all_views = all_views
        self.batch_size = batch_size
        self._loaded: dict[Path, Synthesizer] = {}
        self._adapted: dict[Path, Path] = {}  # bundled checkpoint -> its copy fine-tuned on the scan
        if model is not None:
            self.path: Path | None = Path(model)
            self.origin = "--model"  # where the checkpoint came from, for what a result says made it
            self._scale = int(self._synthesizer(self.path).scale)  # validate before any scan is read
        else:
            self.path = None
            self.origin = "bundled"
            if not any(bundled_models(f) for f in FAMILIES):
                raise ModelError(
                    "no model given and this install has no bundled model; pass --model MODEL.pt "
                    "(train one with `thinslice train`)"
                )
            self._scale = 2

    @property
    def default_scale(self) -> int:
        return self._scale

    @property
    def synthesizer(self) -> Synthesizer:
        """The loaded model for the default factor (device, config, views)."""
        return self._synthesizer(self._path_for(self._scale))

    @property
    def device(self) -> str:
        return str(self.synthesizer.device)

    def _synthesizer(self, path: Path) -> Synthesizer:
        from thinslice.model.inference import load_model

        path = self._adapted.get(path, path)
        if path not in self._loaded:
            self._loaded[path] = load_model(path, device=self.device_spec, precision=self.precision)
        return self._loaded[path]

    def _path_for(self, r: int, thick: bool = False, soft: bool = False) -> Path:
        """The checkpoint for factor ``r``: ``--model``, else the bundled family that fits
        the acquisition (``thick``: slices thicker than the output's; ``soft``: and their
        profile looks soft), else the next one that makes ``r``."""
        if self.path is not None:
            return self.path
        order = FAMILIES if soft else FAMILIES[1:] if thick else FAMILIES[:0:-1]
        for family in order:
            path = bundled_model_path(r, family)
            if path is not None:
                if family != order[0]:
                    log.info("no bundled %s model makes x%d; using %s", order[0], r, path.name)
                return path
        have = ", ".join(f"x{k}" for k in sorted({k for f in FAMILIES for k in bundled_models(f)}))
        raise ModelError(
            f"no bundled model makes x{r} (they make {have} and powers of them); give --target-spacing MM "
            f"instead (made at the next factor up, then resampled), or train one with `thinslice train --scale {r}` "
            "and pass --model"
        )

    def check_scale(self, r: object) -> int:
        """Refuse, before any work, a factor the model cannot make (not a power of its own).

        Raises:
            ConfigError: ``r`` is not an integer factor in range.
            ModelError: naming the model's scale and the valid factors.
        """
        from thinslice.model.inference import passes_for

        r = super().check_scale(r)
        if self.path is not None:
            passes_for(r, self._synthesizer(self.path).scale)
        else:
            self._path_for(r)
        return r

    def checkpoint_for(self, r: int, thickness: float = 1.0, softness: float | None = None) -> Path:
        """The checkpoint with the largest share of such a scan (what ``--adapt`` fine-tunes)."""
        shares = self._shares_for(r, thickness, softness)
        return max(shares, key=lambda path: shares[path])

    def with_checkpoint(self, path: Path, source: Path | None = None) -> ModelMethod:
        """The same options with ``path``, a fine-tuned copy of ``source`` (``--adapt``), in
        its place: with ``--model`` the only checkpoint; with the bundled ones, ``source``
        wherever the choice of family (or a blend of families) uses it. Results say so."""
        bundled = self.path is None and source is not None
        tuned = ModelMethod(
            None if bundled else path,
            device=self.device_spec,
            progress=self.progress,
            all_views=self.all_views,
            precision=self.precision,
            uncertainty=self.uncertainty,
            batch_size=self.batch_size,
        )
        if bundled:
            assert source is not None
            tuned._adapted = {**self._adapted, source: path}
        tuned.origin = f"{self.origin}, adapted to the scan"
        return tuned

    def reestimates_acquired(self) -> bool:
        """The bundled thick-slice families do; a checkpoint of one's own when it was trained
        to (``ModelConfig.sharpen``, as ``thinslice train`` does on thick slices)."""
        return self.path is None or bool(self._synthesizer(self.path).config.sharpen)

    def checkpoints(self) -> list[Path]:
        """``--model``, or every bundled checkpoint (a scan's acquisition picks among them)."""
        if self.path is not None:
            return [self.path]
        return [path for family in FAMILIES for path in bundled_models(family).values()]

    def provenance(self, r: int) -> str:
        """``model default_x2.pt (bundled)``: the checkpoint that makes factor ``r`` from thin
        slices (a result's ``made_by`` names the one a run picked for its input)."""
        return self._describe(self._path_for(r))

    def _describe(self, path: Path) -> str:
        views = ", all three views" if self.all_views else ""
        return f"{self.name} {path.name} ({self.origin}{views})"

    def _read_profile(
        self, data: np.ndarray, spacing: tuple[float, float, float] | None, thickness: float
    ) -> float | None:
        """The softness of thick ``data``'s slice profile, estimated from the image (None when
        too small to tell), and the log line saying what it and the slices' overlap
        (``thickness`` in spacings) make of the soft-profile models' share."""
        from thinslice.profile import equivalent_softness, estimate_softness_of, soft_weight

        softness = None if spacing is None else estimate_softness_of(data, spacing, thickness * spacing[0])
        weight = soft_weight(thickness, softness)
        # one line: what was read, and what the overlap alone makes of a box when nothing could be
        notes = [
            "the scan is too small to estimate its softness from: taken for a box"
            if softness is None
            else f"softness about {softness:.1f} of the thickness"
        ]
        if thickness > 1 + grid.RATIO_TOLERANCE:
            equivalent = equivalent_softness(thickness, softness or 0.0)
            notes.append(f"{thickness:.2g} spacings thick, as soft as contiguous slices softened by {equivalent:.1f}")
        facts = f" ({'; '.join(notes)})"
        # an overlap alone can make a box-like profile soft: say so, or "softness 0.0" reads as a contradiction
        overlap = " once the slices' overlap is counted" if weight > soft_weight(1.0, softness) else ""
        if weight >= 1:
            looks, action = "softer than a box" + overlap, ": using the model for soft profiles"
            action += "; --adapt 2 (two minutes of fine-tuning on this scan) sharpens such scans further"
        elif weight > 0:
            looks = "between a box and a soft profile" + overlap
            action = f": blending the profile and soft-profile models, {1 - weight:.2f} / {weight:.2f}"
        else:
            looks, action = "like a box", ""
        log.info("the slice profile looks %s%s%s", looks, facts, action)
        return softness

    def device_bytes(self, shape: tuple[int, ...], r: int) -> int | None:
        """Accelerator bytes of one batch (results come back to the host batch by batch):
        an axial ``H x W`` image and a through-plane ``r*(D-1)+1`` by ``max(H, W)`` image."""
        d, h, w = (int(s) for s in shape[:3])
        pixels = h * w + grid.output_slices(d, r) * max(h, w)
        return int(DEVICE_BYTES_PER_PIXEL * pixels) + DEVICE_BYTES_FIXED

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
        shares = self._shares(data[padded : len(data) - padded], r, thickness, spacing)
        thick = _thicker_than_output(thickness, r)
        if len(shares) == 1:
            (path,) = shares
            return MethodResult(*self._synthesize(path, data, r, thick, dtype), self._made_by(shares))
        # between what the families were trained on, a blend is at or near the better one (BENCHMARKS.md)
        out: np.ndarray | None = None
        unc: np.ndarray | None = None
        for path, share in shares.items():
            part, spread = self._synthesize(path, data, r, thick, None)
            part *= np.float32(share)
            out = part if out is None else np.add(out, part, out=out)
            if spread is not None:
                unc = np.float32(share) * spread if unc is None else unc + np.float32(share) * spread
        assert out is not None
        return MethodResult(out, unc, self._made_by(shares))

    def made_by(
        self, data: np.ndarray, r: int, *, thickness: float = 1.0, spacing: tuple[float, float, float] | None = None
    ) -> str:
        return self._made_by(self._shares(data, r, thickness, spacing))

    def _made_by(self, shares: dict[Path, float]) -> str:
        """``model profile_x2.pt (bundled)``, or for a blend every checkpoint with its share."""
        if len(shares) == 1:
            return self._describe(next(iter(shares)))
        views = ", all three views" if self.all_views else ""
        parts = " + ".join(
            f"{path.name}{' (adapted)' if path in self._adapted else ''} {share:.2f}" for path, share in shares.items()
        )
        return f"{self.name} {parts} ({self.origin}{views})"

    def _shares(
        self, data: np.ndarray, r: int, thickness: float, spacing: tuple[float, float, float] | None
    ) -> dict[Path, float]:
        """:meth:`_shares_for` ``data``, its slice profile read from the image (thick slices
        and the bundled soft-profile family only)."""
        thick = _thicker_than_output(thickness, r)
        softness = None
        if thick and self.path is None and bundled_models(FAMILIES[0]):
            softness = self._read_profile(data, spacing, thickness)
        shares = self._shares_for(r, thickness, softness)
        thin = shares.get(self._path_for(r), 0.0) if thick and self.path is None else 0.0
        if 0 < thin < 1:
            log.info(
                "the slices are %.2g of their spacing thick (%.2g output spacings): blending the thin-slice and "
                "thick-slice models, %.2f / %.2f",
                thickness, thickness * r, thin, 1 - thin,
            )  # fmt: skip
        return shares

    def _shares_for(self, r: int, thickness: float, softness: float | None) -> dict[Path, float]:
        """The checkpoints that make slices ``thickness`` spacings thick with slice profile
        ``softness`` at factor ``r``, and each one's share of the output: one of them, or
        (between what the families were trained on) a blend: thin-slice and thick-slice
        models for slices with gaps (:func:`~thinslice.profile.thin_weight`), profile and
        soft-profile models for soft or overlapping ones (:func:`~thinslice.profile.soft_weight`)."""
        from thinslice.profile import soft_weight, thin_weight

        thick = _thicker_than_output(thickness, r)
        if not thick or self.path is not None:
            return {self._path_for(r, thick): 1.0}
        thin = thin_weight(thickness, r)
        soft = soft_weight(thickness, softness) if bundled_models(FAMILIES[0]) else 0.0
        shares: dict[Path, float] = {}
        for path, share in (
            (self._path_for(r), thin),
            (self._path_for(r, True), (1 - thin) * (1 - soft)),
            (self._path_for(r, True, soft=True), (1 - thin) * soft),
        ):
            if share > 0:
                shares[path] = shares.get(path, 0.0) + share
        kept = {path: share for path, share in shares.items() if share >= MIN_SHARE}
        total = sum(kept.values())
        return {path: share / total for path, share in kept.items()}

    def _synthesize(
        self, path: Path, data: np.ndarray, r: int, thick: bool, dtype: np.dtype | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The checkpoint at ``path`` on ``data``: the output (``dtype``, default float32)
        and the views' spread when asked for."""
        synth = self._synthesizer(path)
        # two views by default: the axial network's view lowered the fused result on every
        # held-out scan and factor (BENCHMARKS.md, "Two views or three") and costs a third
        views = "all" if self.all_views or "coronal" not in synth.views else ("coronal", "sagittal")
        result = synth.upsample(  # values outside the model's HU window follow linear interpolation
            data,
            r,
            views=views,
            return_uncertainty=self.uncertainty,
            progress=self.progress,
            batch_size=self.batch_size,
            keep_acquired=not (thick and synth.config.sharpen),
            out_dtype=np.float32 if dtype is None else dtype,
        )
        return result if isinstance(result, tuple) else (result, None)
