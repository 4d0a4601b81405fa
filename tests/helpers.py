"""Helpers shared by several test modules (importable as ``helpers``: pytest puts tests/ on the path)."""
from __future__ import annotations

from pathlib import Path

import torch


def randomised_batchnorm(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-default BatchNorm statistics and affine terms, in eval mode: a load that silently skipped a
    tensor would show (conv weights already differ between two builds), and BN folding or an export
    is exercised for real."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.num_batches_tracked.fill_(seed + 3)
    return model.eval()


SAM_BOX = (12, 20, 150, 96)  # x0, y0, x1, y1 around the rectangle of sam_test_image


def sam_test_image() -> "np.ndarray":
    """What the SAM and HQ-SAM tests prompt: 120x200 uniform noise with a red 60x100 rectangle."""
    import numpy as np

    img = np.random.default_rng(0).integers(0, 255, (120, 200, 3)).astype(np.uint8)
    img[30:90, 40:140] = (230, 40, 40)
    return img


def saved_official_isnet(path: Path, width: float, seed: int) -> tuple[torch.nn.Module, Path]:
    """A random 3-channel IS-Net with non-default BatchNorm statistics (:func:`randomised_batchnorm`), saved
    at ``path`` as the DIS release saves it (a plain state dict); returns (the network in eval mode, path)."""
    from dissam.model import build_refiner

    torch.manual_seed(seed)
    net = randomised_batchnorm(build_refiner(in_ch=3, width=width))
    torch.save(net.state_dict(), path)
    return net.eval(), path
