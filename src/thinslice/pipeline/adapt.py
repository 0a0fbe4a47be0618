"""``--adapt``: fine-tune the bundled model on the scan in hand before synthesizing it.

Self-supervised, as the method intends: the scan's own in-plane axes and slices are the
training signal (:mod:`thinslice.training`), starting from the bundled checkpoint the
acquisition calls for, at a tenth of the rate it was first trained at. For thick slices the
bundled profile models were trained on a range of slice profiles (a box softened by
Gaussians up to the thickness) and judge the blur from the image; adapting, the scan's own
profile is estimated from its spectra (:func:`thinslice.profile.estimate_softness`) and the
in-plane training pairs use that profile, softened by a further :data:`ADAPT_SOFTNESS_MARGIN`.
The adapted checkpoint lives in a temporary folder that is removed afterwards; nothing is
written next to the input or the output, and the bundled checkpoint is only read.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from thinslice.checks import positive
from thinslice.methods import Method
from thinslice.model.checkpoint import load_checkpoint, model_config_of
from thinslice.profile import estimate_softness
from thinslice.training.config import TrainConfig
from thinslice.training.loop import train
from thinslice.volume import Volume

log = logging.getLogger(__name__)
#: Learning rate of --adapt: a tenth of the bundled models' training rate (1e-3), so one scan
#: nudges the weights instead of pulling them away (BENCHMARKS.md: neither rate gained in
#: 1-2 minutes). Fixed, not relative to the checkpoint's last rate, which a decaying schedule
#: ends low.
ADAPT_LR = 1e-4
#: Crops per step: the CPU recipe's batch, so a minute on a laptop is many steps.
ADAPT_BATCH = 2
#: Added to the estimated softness for training: at the estimate itself the adapted network
#: sharpens too little along the slice axis (BENCHMARKS.md, "--adapt at the scan's own slice
#: profile"; chosen on one held-out scan at x2, checked on the other and at x3 and x5).
ADAPT_SOFTNESS_MARGIN = 0.5


@contextmanager
def adapted(
    fn: Method, volume: Volume, r: int, minutes: float, *, device: str = "auto", progress: bool = False
) -> Iterator[Method]:
    """``fn`` fine-tuned for ``minutes`` on ``volume`` (for the block; then cleaned up).

    Raises:
        ConfigError: the method has no weights to adapt, or ``minutes`` is not positive.
    """
    positive(minutes, "--adapt", "minutes")
    estimate = estimate_softness(volume)  # the method judges whether it matters (thick slices only)
    source = fn.checkpoint_for(r, volume.thickness / volume.slice_spacing, estimate)
    stored = load_checkpoint(source)
    model_config = model_config_of(stored, source)
    config = TrainConfig.from_dict(stored["train_config"]) if stored.get("train_config") else TrainConfig()
    config = dataclasses.replace(config, lr=ADAPT_LR, batch_size=ADAPT_BATCH, warmup_steps=0)  # fresh moments
    if config.profile:
        config = at_scan_profile(config, volume, estimate)
    with tempfile.TemporaryDirectory(prefix="thinslice-adapt-") as folder:
        checkpoint = Path(folder) / source.name
        log.info("adapting %s to %s for %.3g min", source.name, volume.name, minutes)
        train([volume], checkpoint, config, model_config, minutes=minutes, device=device, progress=progress,
              init=source, disposable=True)  # fmt: skip
        yield fn.with_checkpoint(checkpoint, source)  # in the source's place, in any blend of families


def at_scan_profile(config: TrainConfig, volume: Volume, estimate: float | None) -> TrainConfig:
    """``config`` training at the slice profile ``estimate`` made for ``volume`` (plus the
    margin); unchanged when the scan was too short to tell (None)."""
    if estimate is None:
        log.info(
            "%s is too small to estimate its slice profile: the box model adapted over the range of profiles it "
            "was trained on", volume.name,
        )  # fmt: skip
        return config
    softness = min(2.0, estimate + ADAPT_SOFTNESS_MARGIN)
    log.info(
        "slice profile of %s: a %.3g mm box softened by about %.1f of it; adapting at %.1f",
        volume.name,
        volume.thickness,
        estimate,
        softness,
    )
    return dataclasses.replace(config, profile_softness=softness, profile_softness_min=softness)
