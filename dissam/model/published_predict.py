"""The published IS-Net alone on a whole image, with the conventions of IS-Net's ``Inference.py``.

``Inference.py`` (xuebinqin/DIS) reads the image, resizes it to 1024 x 1024 (bilinear, half-pixel
centres, no antialiasing, truncated back to uint8), divides by 255 and subtracts 0.5 (mean 0.5, std
1.0), runs the network, upsamples maps[0] bilinearly to the image's size, min-max normalises it and
saves ``x255`` truncated to uint8. :class:`PublishedISNet` does the same with
:func:`dissam.data.transforms.make_input` / :func:`~dissam.data.transforms.to_original`, the resize and
normalisation the evaluation of the published IS-Net uses (:func:`dissam.repro.runs.refiner_predictions`).
One difference by design: images are read with their EXIF orientation applied (``Inference.py`` reads
the stored pixel order); the two agree on images without an orientation tag.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from ..data.transforms import make_input, to_original
from .checkpoint import CheckpointError, load_refiner
from .inference import optimize_for_inference, predict_prob

INPUT_SIZE = 1024  # Inference.py's input_size
InferencePath = Literal["eager", "optimized"]


def load_published_isnet(path: str | Path, device: str = "cpu") -> nn.Module:
    """The 3-channel IS-Net of ``path`` in eval mode: our converted checkpoint (``dissam weights isnet``)
    or the DIS release's ``isnet-general-use.pth`` / ``isnet.pth``. CheckpointError for a 5-channel
    refiner or anything else."""
    return load_refiner(path, in_ch=3).to(device).eval()


class PublishedISNet:
    """``predict(rgb)`` -> the map ``Inference.py`` saves, uint8 ``[H, W]`` in 0..255.

    ``path`` "optimized" (default) runs :func:`dissam.model.inference.optimize_for_inference`'s copy, as
    the evaluation tables do; "eager" the plain module. They differ by ~1e-7 in probability, which can
    move a saved level by one now and then. ``input_size``: the square the image is resized to
    (``Inference.py``'s 1024; smaller is faster and shows the network objects at a coarser scale)."""

    def __init__(self, model: nn.Module, device: str = "cpu", path: InferencePath = "optimized",
                 input_size: int = INPUT_SIZE) -> None:
        config = getattr(model, "config", None) or {}
        if int(config.get("in_ch", 3)) != 3:
            raise CheckpointError(f"the published IS-Net takes RGB alone; this model has {config.get('in_ch')} "
                                  "input channels")
        if path not in ("eager", "optimized"):
            raise ValueError(f"path must be 'eager' or 'optimized', not {path!r}")
        self.device, self.input_size = device, int(input_size)
        model = model.to(device).eval()
        self.model = optimize_for_inference(model) if path == "optimized" else model

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, device: str = "cpu", path: InferencePath = "optimized",
                        input_size: int = INPUT_SIZE) -> PublishedISNet:
        """From our converted checkpoint or an official IS-Net ``.pth`` (see :func:`load_published_isnet`)."""
        return cls(load_published_isnet(checkpoint, device), device, path, input_size)

    def prob(self, rgb: np.ndarray) -> np.ndarray:
        """maps[0] at the network's size: float32 ``[input_size, input_size]`` in [0, 1], for uint8 RGB ``[H, W, 3]``."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected a uint8 RGB image [H, W, 3], got {rgb.dtype} {tuple(rgb.shape)}")
        x = torch.from_numpy(make_input(rgb, None, None, self.input_size, in_ch=3))[None].to(self.device)
        return predict_prob(self.model, x).float().cpu().numpy()[0, 0]

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 ``[H, W]``: maps[0] upsampled to the image's size, min-max normalised, x255 truncated."""
        return to_original(self.prob(rgb), rgb.shape[0], rgb.shape[1], minmax=True)
