"""thinslice: thick-slice to thin-slice CT by self-supervised cross-view mutual distillation.

The Python API (the CLI is a thin shell over it)::

    import thinslice
    thick = thinslice.load("ct_5mm.nii.gz")          # or a DICOM folder
    thin = thinslice.upsample(thick, scale=2)         # a Volume (or a SimpleITK.Image)
    thinslice.save(thin, "ct_2.5mm.nii.gz")
    report = thinslice.evaluate(["ct.nii.gz"], scale=5)  # realistic thick slices, every method
    pair = thinslice.evaluate_pair("ct_5mm/", "ct_1mm/")   # a real pair: two reconstructions

Method: Fang et al., "Incremental Cross-view Mutual Distillation for Self-supervised
Medical CT Synthesis", CVPR 2022 (arXiv 2112.10325).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Volume", "evaluate", "evaluate_pair", "load", "save", "upsample", "__version__"]

if TYPE_CHECKING:
    from thinslice.evaluation.pair import evaluate_pair
    from thinslice.evaluation.protocol import evaluate
    from thinslice.io import load, save
    from thinslice.pipeline.upsample import upsample
    from thinslice.volume import Volume

_LAZY = {
    "load": "thinslice.io.files",
    "save": "thinslice.io.files",
    "upsample": "thinslice.pipeline.upsample",
    "evaluate": "thinslice.evaluation.protocol",
    "evaluate_pair": "thinslice.evaluation.pair",
    "Volume": "thinslice.volume",
}


def __getattr__(name: str) -> Any:
    """Import the API on first use, so ``import thinslice`` and ``--help`` stay instant."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'thinslice' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The lazy API too, for tab completion and ``help(thinslice)``."""
    return sorted({*globals(), *_LAZY})
