"""Stage-2 models: the IS-Net refiner (5 input channels), the GT encoder, checkpoints, fast inference."""
from __future__ import annotations

from .checkpoint import (
                         CheckpointError,
                         atomic_torch_save,
                         load_checkpoint,
                         load_gt_encoder,
                         load_refiner,
                         save_gt_encoder,
                         save_refiner,
)
from .gt_encoder import ISNetGTEncoder, build_gt_encoder
from .inference import optimize_for_inference, predict_prob
from .isnet import ISNetDIS, build_refiner

__all__ = [
    "ISNetDIS", "ISNetGTEncoder", "build_refiner", "build_gt_encoder",
    "CheckpointError", "atomic_torch_save", "load_checkpoint", "save_refiner", "load_refiner",
    "save_gt_encoder", "load_gt_encoder", "optimize_for_inference", "predict_prob",
]
