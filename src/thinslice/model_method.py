"""The learned model as a method of the registry (``--method model``)."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from thinslice.errors import ModelError


def bundled_model_path() -> Path | None:
    """The default model shipped inside the package, if this build has one."""
    path = Path(str(resources.files("thinslice") / "weights" / "default.pt"))
    return path if path.is_file() else None


class ModelMethod:
    """Callable ``(data, r) -> upsampled`` backed by a trained checkpoint.

    Attributes:
        scale: the model's native factor (used when the caller gives no scale).
        last_uncertainty: per-voxel disagreement between the views (HU) of the last call.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        device: str = "auto",
        progress: bool = False,
        **options: Any,
    ) -> None:
        from thinslice.checkpoint import load_model

        path = Path(model) if model is not None else bundled_model_path()
        if path is None:
            raise ModelError(
                "no model given and this install has no bundled model; pass --model MODEL.pt "
                "(train one with `thinslice train`)"
            )
        self.path = path
        self.synthesizer = load_model(path, device=device)
        self.scale = int(self.synthesizer.scale)
        self.progress = progress
        self.options = options
        self.last_uncertainty: np.ndarray | None = None

    def check_scale(self, r: int) -> None:
        """Refuse, before any work, a factor the model cannot make (not a power of its own).

        Raises:
            ModelError: naming the model's scale and the valid factors.
        """
        from thinslice.synthesize import _passes

        _passes(r, self.scale)

    def __call__(self, data: np.ndarray, r: int) -> np.ndarray:
        out, unc = self.synthesizer.upsample(data, r, return_uncertainty=True, progress=self.progress, **self.options)
        self.last_uncertainty = unc
        return out
