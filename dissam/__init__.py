"""dissam: a reproducibility package for DIS-SAM (Liu, Fu, Jiang, Zhao; ICME 2025, arXiv 2401.00248).

Stage 1 (SAM, HQ-SAM or an offline GrabCut stand-in) turns (image, box) into a coarse mask; stage 2, an
IS-Net refiner on (RGB, coarse mask, filled box), turns it into a highly accurate one. Submodules import
lazily, so ``import dissam`` stays cheap and the pieces can be used alone.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "get_profile": "dissam.config",
    "notebook_profile": "dissam.config",
    "Profile": "dissam.config",
    "Variant": "dissam.config",
    "DisSam": "dissam.predictor",
    "DISMetrics": "dissam.metrics",
    "build_refiner": "dissam.model",
    "build_gt_encoder": "dissam.model",
    "build_coarse": "dissam.coarse",
    "cache_masks": "dissam.coarse",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dissam' has no attribute {name!r}")
