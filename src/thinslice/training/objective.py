"""The training objective of incremental cross-view mutual distillation (Fang et al., CVPR 2022).

:class:`DistillationModel` holds both networks and computes every loss in ``forward`` (so
DistributedDataParallel sees the whole graph), on crops ``V`` from :mod:`.data`:

1. reconstruction: both networks predict ``V`` from ``V[::r]`` (L1 + wavelet);
2. SMORE (beyond the paper): the through-plane network restores axial images degraded
   along one in-plane axis to the slice spacing;
3. consistency: both networks applied to ``V`` itself must agree on the unobserved slices
   at spacing sz/r (axial vs coronal, axial vs sagittal; only the best-agreeing fraction of
   voxels counts);
4. incremental level: the networks applied to their own (detached) output, a window of it,
   must agree at sz/r^2.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from thinslice import grid
from thinslice.model.config import ModelConfig
from thinslice.model.nets import build_networks, interpolate_slices
from thinslice.training.config import TrainConfig
from thinslice.training.data import Batch, coarser_copy
from thinslice.training.losses import reconstruction_loss, robust_consistency


def _gap_rows(fine: Tensor, r: int) -> Tensor:
    """``(B, r*(n-1)+1, ...)`` -> the new rows ``(B, n-1, r-1, ...)`` of each gap."""
    b, length = fine.shape[:2]
    gaps = (length - 1) // r
    return fine[:, : gaps * r].reshape(b, gaps, r, *fine.shape[2:])[:, :, 1:]


class DistillationModel(nn.Module):
    """Both networks and the whole training objective in ``forward`` (so DDP sees it all).

    ``forward(batch)`` returns a dict of scalar losses with the weighted sum in ``"total"``.
    """

    def __init__(self, model_config: ModelConfig, config: TrainConfig) -> None:
        super().__init__()
        self.model_config = model_config
        self.config = config
        self.axial, self.sr = build_networks(model_config, config.networks)
        self.r = model_config.scale

    # -- helpers: each view's prediction of the fine volume, as tensors ------------
    def _axial_new(self, vol: Tensor, gaps: slice = slice(None)) -> tuple[Tensor, dict[str, Tensor]]:
        """Axial net on neighbour pairs of ``vol (B, n, h, w)`` -> ``(B, G, r-1, h, w)``.

        ``gaps`` selects which of the ``n - 1`` gaps to fill (all by default); the base
        interpolation always sees the whole of ``vol``.
        """
        assert self.axial is not None
        b, n, h, w = vol.shape
        base = interpolate_slices(vol, self.r, self.model_config.base, dim=1)
        base_new = _gap_rows(base, self.r)[:, gaps]
        pairs = torch.stack([vol[:, :-1], vol[:, 1:]], dim=2)[:, gaps]
        g = pairs.shape[1]
        out, aux = self.axial(pairs.reshape(-1, 2, h, w), base_new.reshape(-1, self.r - 1, h, w), return_aux=True)
        return out.view(b, g, self.r - 1, h, w), aux

    def _sr_views(self, vol: Tensor, lines_h: Tensor, lines_w: Tensor) -> tuple[Tensor, Tensor]:
        """Through-plane net on chosen coronal rows and sagittal columns of ``vol``.

        Returns:
            coronal ``(B, Lh, N, w)`` and sagittal ``(B, Lw, N, h)``, ``N = r*(n-1)+1``.
        """
        assert self.sr is not None
        b, n, h, w = vol.shape
        cor = vol[:, :, lines_h, :].permute(0, 2, 1, 3).reshape(-1, 1, n, w)
        sag = vol[:, :, :, lines_w].permute(0, 3, 1, 2).reshape(-1, 1, n, h)
        if h == w:
            both = self.sr(torch.cat([cor, sag]))
            out_cor, out_sag = both[: cor.shape[0]], both[cor.shape[0] :]
        else:
            out_cor, out_sag = self.sr(cor), self.sr(sag)
        fine = grid.output_slices(n, self.r)
        return out_cor.view(b, -1, fine, w), out_sag.view(b, -1, fine, h)

    def _sr_pairs(self, cor: Tensor, sag: Tensor) -> tuple[Tensor, Tensor]:
        """Through-plane net on coronal ``(B, Lh, n, w)`` and sagittal ``(B, Lw, n, h)`` images."""
        assert self.sr is not None
        b, _, n, w = cor.shape
        h = sag.shape[-1]
        fine = grid.output_slices(n, self.r)
        out_cor = self.sr(cor.reshape(-1, 1, n, w)).view(b, -1, fine, w)
        out_sag = self.sr(sag.reshape(-1, 1, n, h)).view(b, -1, fine, h)
        return out_cor, out_sag

    def _consistency(self, axial_new: Tensor, cor: Tensor, sag: Tensor, lines_h: Tensor, lines_w: Tensor) -> Tensor:
        """Robust agreement of the axial result with the coronal and sagittal ones."""
        frac = self.config.consistency_fraction
        cor_new = _gap_rows(cor.transpose(1, 2), self.r)  # (B, n-1, r-1, Lh, w)
        sag_new = _gap_rows(sag.transpose(1, 2), self.r)  # (B, n-1, r-1, Lw, h)
        ax_cor = axial_new[:, :, :, lines_h, :]
        ax_sag = axial_new[:, :, :, :, lines_w].transpose(-1, -2)
        return robust_consistency(ax_cor, cor_new, frac) + robust_consistency(ax_sag, sag_new, frac)

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        cfg, wts, r = self.config, self.config.weights, self.r
        vol = batch.crop
        low = coarser_copy(vol, r, cfg.profile)
        losses: dict[str, Tensor] = {}
        total = vol.new_zeros(())
        recon = lambda p, t: reconstruction_loss(  # noqa: E731
            p, t, l1_weight=wts.l1, wavelet_weight=wts.wavelet, l2_weight=wts.l2, use_wavelet=cfg.wavelet
        )[0]
        lh, lw = batch.lines_h, batch.lines_w
        # 1. reconstruction of the observed crop from its coarser copy
        if self.axial is not None:
            pred, aux = self._axial_new(low)
            losses["rec_axial"] = recon(pred.flatten(0, 2), _gap_rows(vol, r).flatten(0, 2))
            total = total + losses["rec_axial"]
            if aux:
                losses["memory"] = wts.compactness * aux["compactness"]
                losses["memory"] = losses["memory"] + wts.separateness * aux["separateness"]
                total = total + losses["memory"]
        if self.sr is not None:
            cor, sag = self._sr_views(low, lh, lw)
            cor_t = vol[:, :, lh, :].transpose(1, 2)
            sag_t = vol[:, :, :, lw].permute(0, 3, 1, 2)
            losses["rec_sr"] = 0.5 * (recon(cor, cor_t) + recon(sag, sag_t))
            total = total + losses["rec_sr"]
            # 2. SMORE: in-plane axis degraded to the slice spacing, at the target spacing
            if batch.smore_in is not None and wts.smore > 0:
                losses["smore"] = recon(self.sr(batch.smore_in), batch.smore_target)
                total = total + wts.smore * losses["smore"]
        if self.axial is None or self.sr is None:
            losses["total"] = total
            return losses
        # 3. cross-view consistency at spacing sz/r (no ground truth), on a block of gaps
        b, n, h, w = vol.shape
        gaps = slice(batch.gap0, min(n - 1, batch.gap0 + cfg.consistency_gaps))
        ax1, _ = self._axial_new(vol, gaps)
        cor1, sag1 = self._sr_views(vol, lh, lw)
        rows = slice(gaps.start * r, gaps.stop * r + 1)  # the block on the sz/r grid
        cor1, sag1 = cor1[:, :, rows], sag1[:, :, rows]
        losses["cons1"] = self._consistency(ax1, cor1, sag1, lh, lw)
        total = total + wts.consistency * losses["cons1"]
        # 4. incremental: networks on their own (detached) output, spacing sz/r^2
        if cfg.second_level and wts.consistency_level2 > 0:
            size = cor1.shape[2]
            slab = torch.empty(b, size, h, w, dtype=vol.dtype, device=vol.device)
            slab[:, ::r] = vol[:, gaps.start : gaps.stop + 1]
            slab[:, :-1].view(b, -1, r, h, w)[:, :, 1:] = ax1.detach().to(vol.dtype)
            ax2, _ = self._axial_new(slab)
            cor2, sag2 = self._sr_pairs(cor1.detach(), sag1.detach())
            losses["cons2"] = self._consistency(ax2, cor2, sag2, lh, lw)
            total = total + wts.consistency_level2 * losses["cons2"]
        losses["total"] = total
        return losses

    def weights(self) -> dict[str, dict[str, Tensor]]:
        """State dicts per network, for checkpoints."""
        out = {}
        if self.axial is not None:
            out["axial"] = self.axial.state_dict()
        if self.sr is not None:
            out["sr"] = self.sr.state_dict()
        return out

    def load_weights(self, weights: dict[str, dict[str, Tensor]]) -> None:
        for name, net in (("axial", self.axial), ("sr", self.sr)):
            if net is not None:
                net.load_state_dict(weights[name])
