"""The training-time score: max F-beta (mean per-image F curve) and MAE, cheap enough to validate with.

The same conventions as the evaluation metrics (beta^2 = 0.3, 256 thresholds, dataset maxF = max of the
mean F curve) but on network-size probability maps, without min-max scaling: a progress signal for
checkpoint selection, not a reported number (:class:`dissam.metrics.DISMetrics` gives those). :class:`RunningScores`
takes one batch at a time, so a validation pass holds one batch of maps, never the whole set.
"""
from __future__ import annotations

import torch

from .pixel import BETA2


def batch_f_curves(probs: torch.Tensor, gts: torch.Tensor) -> torch.Tensor:
    """Per-image F-beta curves ``[N, 256]`` (threshold t = 0..255) of ``probs`` against ``gts > 0.5``."""
    n = probs.shape[0]
    levels = (probs.reshape(n, -1).float().clamp(0, 1) * 255).round().long()
    fg = gts.reshape(n, -1) > 0.5
    offsets = torch.arange(n, device=levels.device).unsqueeze(1) * 256
    hist_fg = torch.bincount((levels + offsets)[fg], minlength=n * 256).reshape(n, 256).double()
    hist_bg = torch.bincount((levels + offsets)[~fg], minlength=n * 256).reshape(n, 256).double()
    tp = hist_fg.flip(1).cumsum(1).flip(1)  # predictions >= threshold t
    fp = hist_bg.flip(1).cumsum(1).flip(1)
    precision = tp / (tp + fp).clamp_min(1e-12)
    recall = tp / fg.sum(1, keepdim=True).double().clamp_min(1e-12)
    return (1 + BETA2) * precision * recall / (BETA2 * precision + recall).clamp_min(1e-12)


class RunningScores:
    """maxF and MAE accumulated batch by batch (sums of per-image F curves and absolute errors)."""

    def __init__(self) -> None:
        self.f_sum = torch.zeros(256, dtype=torch.float64)
        self.abs_err, self.pixels, self.images = 0.0, 0, 0

    def update(self, probs: torch.Tensor, gts: torch.Tensor) -> None:
        """Add a batch: ``probs`` and ``gts`` ``[N, 1, H, W]`` in [0, 1], scored on ``probs``' device."""
        probs, gts = probs.detach().float(), gts.detach().float().to(probs.device)
        self.f_sum += batch_f_curves(probs, gts).sum(0).cpu()
        self.abs_err += float((probs - gts).abs().sum())
        self.pixels += probs.numel()
        self.images += probs.shape[0]

    def result(self) -> dict[str, float]:
        if self.images == 0:
            raise ValueError("no image was scored")
        return {"maxF": float((self.f_sum / self.images).max()), "MAE": self.abs_err / self.pixels}


def quick_scores(probs: torch.Tensor, gts: torch.Tensor) -> dict[str, float]:
    """``probs`` [N,1,H,W] in [0,1], ``gts`` [N,1,H,W] in [0,1] -> {"maxF", "MAE"}."""
    scores = RunningScores()
    scores.update(probs, gts)
    return scores.result()
