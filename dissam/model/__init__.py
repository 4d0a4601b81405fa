"""Stage-2 models: the IS-Net refiner (5 input channels), the GT encoder, checkpoints, inference."""
from __future__ import annotations

from .gt_encoder import ISNetGTEncoder, build_gt_encoder
from .isnet import ISNetDIS, build_refiner

__all__ = ["ISNetDIS", "ISNetGTEncoder", "build_refiner", "build_gt_encoder"]
