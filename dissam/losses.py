"""DIS-SAM's training loss: 20*BCE + 0.5*IoU + 1*feature MSE + 1e-6*ORTHO (paper eq. 3).

BCE and IoU are summed over the six side outputs, the feature MSE over the six (refiner, GT
encoder) feature pairs. ORTHO comes in the paper's form (Frobenius norm of W W^T - I per conv
layer) and the authors' code form (elementwise L1 sum over all non-bias weights).

Everything here runs in fp32 with autocast switched off: under CUDA autocast,
``binary_cross_entropy`` on probabilities raises (CPU autocast does not), so the forward pass may
be autocast but the loss never is (docs/conventions.md, "Training").
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

OrthoVariant = Literal["frobenius", "l1"]


@contextlib.contextmanager
def fp32_region(*tensors: torch.Tensor) -> Iterator[None]:
    """Autocast off for CPU and for the device type of ``tensors`` (e.g. CUDA)."""
    devices = {"cpu"} | {t.device.type for t in tensors if isinstance(t, torch.Tensor)}
    with contextlib.ExitStack() as stack:
        for dev in sorted(devices):
            stack.enter_context(torch.autocast(device_type=dev, enabled=False))
        yield


def _check_pair(p: torch.Tensor, g: torch.Tensor, what: str) -> None:
    if p.shape != g.shape:
        raise ValueError(f"{what}: prediction {tuple(p.shape)} and target {tuple(g.shape)} differ in shape")


def bce(maps: Sequence[torch.Tensor], gt: torch.Tensor) -> torch.Tensor:
    """Sum over side outputs of the mean binary cross-entropy between probabilities and ``gt`` in [0, 1]."""
    with fp32_region(gt):
        g = gt.float()
        total = g.new_zeros(())
        for p in maps:
            _check_pair(p, g, "bce")
            total = total + F.binary_cross_entropy(p.float(), g)
        return total


def soft_iou(maps: Sequence[torch.Tensor], gt: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Paper eq. 2 per side output: 1 - sum(p*g) / sum(p + g - p*g) per image, mean over the batch;
    summed over side outputs. ``eps`` only guards an empty union (then the term is 1)."""
    with fp32_region(gt):
        g = gt.float().flatten(1)
        total = g.new_zeros(())
        for p in maps:
            _check_pair(p, gt, "soft_iou")
            p = p.float().flatten(1)
            inter = (p * g).sum(1)
            union = (p + g - p * g).sum(1)
            total = total + (1.0 - inter / union.clamp_min(eps)).mean()
        return total


def feature_mse(features: Sequence[torch.Tensor], gt_features: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum over the six pairs of the mean squared error; the GT encoder's side is detached."""
    if len(features) != len(gt_features):
        raise ValueError(f"feature_mse: {len(features)} refiner features but {len(gt_features)} GT features")
    with fp32_region(*features):
        total = features[0].new_zeros((), dtype=torch.float32)
        for f, g in zip(features, gt_features):
            _check_pair(f, g, "feature_mse")
            total = total + F.mse_loss(f.float(), g.detach().float())
        return total


def _gram_minus_identity(weight: torch.Tensor) -> torch.Tensor:
    w = weight.float().reshape(weight.shape[0], -1)
    return w @ w.t() - torch.eye(w.shape[0], device=w.device, dtype=w.dtype)


def _sum(values: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(values).sum() if values else torch.zeros(())


def ortho_frobenius(model: nn.Module) -> torch.Tensor:
    """Paper: sum over conv layers of ||W W^T - I||_F, W = filters flattened to [out, in*k*k]."""
    with fp32_region():
        return _sum([torch.linalg.matrix_norm(_gram_minus_identity(m.weight), ord="fro")
                     for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)])


def ortho_l1(model: nn.Module) -> torch.Tensor:
    """Authors' code: elementwise L1 sum of (W W^T - I) over every parameter whose name has no "bias",
    each viewed as ``[shape[0], -1]``: conv filters and BatchNorm scales alike (a BN scale ``[C]``
    gives the ``C x C`` matrix ``w w^T - I``)."""
    with fp32_region():
        return _sum([_gram_minus_identity(p).abs().sum() for name, p in model.named_parameters()
                     if "bias" not in name])


_ORTHO = {"frobenius": ortho_frobenius, "l1": ortho_l1}


def gt_encoder_loss(maps: Sequence[torch.Tensor], gt: torch.Tensor, kind: str = "bce") -> torch.Tensor:
    """The GT encoder's loss on its side outputs: ``"bce"`` (IS-Net: BCE summed over the six) or
    ``"bce_iou"`` (the authors' code: 20 BCE + 0.5 IoU)."""
    if kind == "bce":
        return bce(maps, gt)
    if kind == "bce_iou":
        return 20.0 * bce(maps, gt) + 0.5 * soft_iou(maps, gt)
    raise ValueError(f"unknown GT-encoder loss {kind!r}; use 'bce' or 'bce_iou'")


def ortho_penalty(model: nn.Module, variant: OrthoVariant = "frobenius") -> torch.Tensor:
    """``variant`` "frobenius" (paper) or "l1" (authors' code)."""
    if variant not in _ORTHO:
        raise ValueError(f"unknown ORTHO variant {variant!r}; choose one of {', '.join(_ORTHO)}")
    return _ORTHO[variant](model)


def dis_sam_loss(maps: Sequence[torch.Tensor], gt: torch.Tensor,
                 features: Sequence[torch.Tensor] | None = None,
                 gt_features: Sequence[torch.Tensor] | None = None,
                 model: nn.Module | None = None,
                 w_bce: float = 20.0, w_iou: float = 0.5, w_feature: float = 1.0, w_ortho: float = 1e-6,
                 ortho: OrthoVariant = "frobenius") -> tuple[torch.Tensor, dict[str, float]]:
    """The DIS-SAM loss in fp32 with autocast off. Returns (total, terms) where ``terms`` holds the
    unweighted ``bce``, ``iou``, ``feature``, ``ortho`` and the weighted ``total`` as floats.
    The feature term is skipped (0) without both feature lists or at weight 0; ORTHO likewise
    without a model or at weight 0."""
    with fp32_region(gt, *maps):
        l_bce = bce(maps, gt)
        l_iou = soft_iou(maps, gt)
        total = w_bce * l_bce + w_iou * l_iou
        zero = l_bce.new_zeros(())
        l_feat = l_ortho = zero
        if features is not None and gt_features is not None and w_feature != 0:
            l_feat = feature_mse(features, gt_features)
            total = total + w_feature * l_feat
        if model is not None and w_ortho != 0:
            l_ortho = ortho_penalty(model, ortho).to(total.device)
            total = total + w_ortho * l_ortho
        # One device->host copy for all the logged numbers.
        values = torch.stack([l_bce, l_iou, l_feat, l_ortho, total]).detach().tolist()
        return total, dict(zip(("bce", "iou", "feature", "ortho", "total"), values))
