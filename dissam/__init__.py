"""dissam: a reproducibility package for DIS-SAM (Liu, Fu, Jiang, Zhao; ICME 2025, arXiv 2401.00248).

Stage 1 (SAM, HQ-SAM or an offline GrabCut stand-in) turns (image, box) into a coarse mask; stage 2, an
IS-Net refiner on (RGB, coarse mask, filled box), turns it into a highly accurate one.

Two floors: ``dissam`` itself is the method, usable without a profile (``coarse``, ``model``, ``losses``,
``metrics``, ``data``, ``predictor``, ``evaluation``, ``outputs``, ``variant``); ``dissam.repro`` is the
paper's reproduction on a profile (config, stages, training runs, the experiment list, tables, figures,
the notebook series, the acceptance check), built on the method and never imported by it. ``cli`` and
``widget`` are faces that may use both. Submodules import lazily, so ``import dissam`` stays cheap.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Variant": "dissam.variant",
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
