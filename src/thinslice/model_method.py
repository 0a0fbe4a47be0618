"""The learned model as a method of the registry (``--method model``).

Without ``--model``, the checkpoints bundled in ``thinslice/weights/default_x{r}.pt`` are
used: the one trained for the requested factor when it exists, otherwise a model whose
factor has the requested one as a power (x4 = the x2 model applied twice).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from thinslice.errors import ModelError

HU_PASSTHROUGH_NOTE = "values outside the model's HU window follow linear interpolation"


def bundled_models() -> dict[int, Path]:
    """Scale -> path of every default model shipped inside the package."""
    folder = Path(str(resources.files("thinslice") / "weights"))
    found = {}
    for path in sorted(folder.glob("default_x*.pt")) if folder.is_dir() else []:
        try:
            found[int(path.stem.removeprefix("default_x"))] = path
        except ValueError:
            continue
    return found


def bundled_model_path(scale: int = 2) -> Path | None:
    """The bundled model for ``scale`` (or one whose factor ``scale`` is a power of)."""
    models = bundled_models()
    if scale in models:
        return models[scale]
    for base, path in sorted(models.items()):
        k = base
        while k < scale:
            k *= base
        if k == scale:
            return path
    return None


class ModelMethod:
    """Callable ``(data, r) -> upsampled`` backed by a trained checkpoint.

    Attributes:
        scale: the default factor (the given model's own, else 2 for the bundled models).
        fast: use only the two through-plane views (about 3x less work, see BENCHMARKS.md).
        last_uncertainty: per-voxel disagreement between the views (HU) of the last call.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        device: str = "auto",
        progress: bool = False,
        fast: bool = False,
        **options: Any,
    ) -> None:
        self.device = device
        self.progress = progress
        self.options = options
        self.fast = fast
        self.last_uncertainty: np.ndarray | None = None
        self._loaded: dict[Path, Any] = {}
        if model is not None:
            self.path: Path | None = Path(model)
            self.scale = int(self._synthesizer(self.path).scale)
        else:
            self.path = None
            if not bundled_models():
                raise ModelError(
                    "no model given and this install has no bundled model; pass --model MODEL.pt "
                    "(train one with `thinslice train`)"
                )
            self.scale = 2 if 2 in bundled_models() else min(bundled_models())

    @property
    def synthesizer(self) -> Any:
        """The loaded model for the default factor (device, config, views)."""
        return self._synthesizer(self._path_for(self.scale))

    def _synthesizer(self, path: Path) -> Any:
        from thinslice.checkpoint import load_model

        if path not in self._loaded:
            self._loaded[path] = load_model(path, device=self.device)
        return self._loaded[path]

    def _path_for(self, r: int) -> Path:
        if self.path is not None:
            return self.path
        path = bundled_model_path(r)
        if path is None:
            have = ", ".join(f"x{s}" for s in sorted(bundled_models()))
            raise ModelError(
                f"no bundled model makes x{r} (bundled: {have}, and their powers); "
                "train one with `thinslice train --scale R` and pass --model"
            )
        return path

    def check_scale(self, r: int) -> None:
        """Refuse, before any work, a factor the model cannot make (not a power of its own).

        Raises:
            ModelError: naming the model's scale and the valid factors.
        """
        from thinslice.synthesize import _passes

        _passes(r, self._synthesizer(self._path_for(r)).scale)

    def __call__(self, data: np.ndarray, r: int) -> np.ndarray:
        synth = self._synthesizer(self._path_for(r))
        views = ("coronal", "sagittal") if self.fast and "coronal" in synth.views else "all"
        lo, hi = synth.config.hu_min, synth.config.hu_max
        clipped = np.clip(data, lo, hi) if (data.min() < lo or data.max() > hi) else data
        out, unc = synth.upsample(
            clipped, r, views=views, return_uncertainty=True, progress=self.progress, **self.options
        )
        if clipped is not data:  # e.g. -3024 HU padding outside the field of view
            from thinslice.methods import get_method

            linear = get_method("linear")
            out += linear(data, r) - linear(clipped, r)
        self.last_uncertainty = unc
        return out
