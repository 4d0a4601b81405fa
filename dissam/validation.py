"""Cheap validation scores during training: max F-beta (mean per-image F curve) and MAE.

The same conventions as the evaluation metrics (beta^2 = 0.3, 256 thresholds, dataset maxF = max of the
mean F curve) but on network-size probability maps, without min-max scaling: a progress signal for
checkpoint selection, not a reported number (``dissam.metrics`` gives those).
"""
from __future__ import annotations

import torch

BETA2 = 0.3


def quick_scores(probs: torch.Tensor, gts: torch.Tensor) -> dict[str, float]:
    """``probs`` [N,1,H,W] in [0,1], ``gts`` [N,1,H,W] in {0,1} -> {"maxF", "MAE"}."""
    n = probs.shape[0]
    levels = (probs.reshape(n, -1).clamp(0, 1) * 255).round().long()
    fg = gts.reshape(n, -1) > 0.5
    offsets = torch.arange(n).unsqueeze(1) * 256
    hist_fg = torch.bincount((levels + offsets)[fg], minlength=n * 256).reshape(n, 256).double()
    hist_bg = torch.bincount((levels + offsets)[~fg], minlength=n * 256).reshape(n, 256).double()
    tp = hist_fg.flip(1).cumsum(1).flip(1)  # predictions >= threshold t, t = 0..255
    fp = hist_bg.flip(1).cumsum(1).flip(1)
    precision = tp / (tp + fp).clamp_min(1e-12)
    recall = tp / fg.sum(1, keepdim=True).double().clamp_min(1e-12)
    f = (1 + BETA2) * precision * recall / (BETA2 * precision + recall).clamp_min(1e-12)
    return {"maxF": float(f.mean(0).max()), "MAE": float((probs - gts).abs().mean())}
