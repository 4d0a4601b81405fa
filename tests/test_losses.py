"""DIS-SAM loss terms against hand-computed values, and the fp32 / autocast-off structure."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dissam import losses
from dissam.losses import bce, dis_sam_loss, feature_mse, ortho_frobenius, ortho_l1, ortho_penalty, soft_iou
from dissam.model import build_gt_encoder, build_refiner


def _img(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).reshape(1, 1, 2, 2)


P = _img([[1.0, 0.5], [0.0, 0.25]])
G = _img([[1.0, 1.0], [0.0, 0.0]])


def test_bce_hand_value_summed_over_maps():
    # per pixel -log(p) where g=1, -log(1-p) where g=0; torch clamps log at -100 (p=1, g=1 -> 0).
    one = (0.0 + -math.log(0.5) + 0.0 + -math.log(0.75)) / 4
    assert bce([P], G).item() == pytest.approx(one, rel=1e-6)
    assert bce([P, P, G], G).item() == pytest.approx(2 * one, rel=1e-6)


def test_soft_iou_hand_value_per_image_then_batch_mean():
    # inter = 1 + 0.5 = 1.5; union = sum(p + g - p g) = 1 + 1 + 0 + 0.25 = 2.25 -> 1 - 1.5 / 2.25 = 1/3
    assert soft_iou([P], G).item() == pytest.approx(1 / 3, rel=1e-6)
    p2 = torch.cat([P, G]), torch.cat([G, G])  # second image perfect: loss 0
    assert soft_iou([p2[0]], p2[1]).item() == pytest.approx((1 / 3 + 0) / 2, rel=1e-6)
    assert soft_iou([P, P], G).item() == pytest.approx(2 / 3, rel=1e-6)
    # per-image mean, not pooled over the batch: pooled would give 1 - 3.5 / 4.25
    assert soft_iou([p2[0]], p2[1]).item() != pytest.approx(1 - 3.5 / 4.25, rel=1e-3)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        bce([P], torch.zeros(1, 1, 3, 3))


def test_feature_mse_hand_value_and_gt_detached():
    f = [torch.zeros(1, 2, 1, 1, requires_grad=True), torch.ones(1, 1, 2, 1, requires_grad=True)]
    g = [torch.tensor([1.0, 3.0]).reshape(1, 2, 1, 1).requires_grad_(), torch.ones(1, 1, 2, 1).requires_grad_()]
    loss = feature_mse(f, g)
    assert loss.item() == pytest.approx((1 + 9) / 2 + 0.0)
    loss.backward()
    assert f[0].grad is not None and all(t.grad is None for t in g)
    with pytest.raises(ValueError):
        feature_mse(f, g[:1])


def _toy() -> nn.Module:
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2), nn.Conv2d(2, 2, 1, bias=False), nn.Flatten(),
                          nn.Linear(2, 1))
    with torch.no_grad():
        model[0].weight.fill_(1.0)  # W = [[1], [1]]: W W^T - I = [[0, 1], [1, 0]]
        model[0].bias.fill_(5.0)  # biases never count
        model[1].weight.fill_(3.0)  # BatchNorm scale: frobenius skips it; l1 takes w w^T - I = [[8, 9], [9, 8]]
        model[2].weight.copy_(torch.eye(2).reshape(2, 2, 1, 1))  # orthonormal rows: 0
        model[4].weight.copy_(torch.tensor([[2.0, 0.0]]))  # Linear: W W^T - I = [[3]]
    return model


def test_ortho_frobenius_hand_value_convs_only():
    assert ortho_frobenius(_toy()).item() == pytest.approx(math.sqrt(2), rel=1e-6)
    assert ortho_penalty(_toy(), "frobenius").item() == pytest.approx(math.sqrt(2), rel=1e-6)


def test_ortho_l1_hand_value_every_non_bias_parameter():
    """The authors' code: every parameter without "bias" in its name, BatchNorm scales included."""
    assert ortho_l1(_toy()).item() == pytest.approx(2 + 34 + 0 + 3, rel=1e-6)
    assert ortho_penalty(_toy(), "l1").item() == pytest.approx(39, rel=1e-6)
    with pytest.raises(ValueError):
        ortho_penalty(_toy(), "l2")


def test_dis_sam_loss_combines_weighted_terms():
    torch.manual_seed(0)
    maps = [P, P.clone()]
    f = [torch.zeros(1, 2, 1, 1)]
    g = [torch.ones(1, 2, 1, 1)]
    total, terms = dis_sam_loss(maps, G, f, g, model=_toy(), w_bce=20, w_iou=0.5, w_feature=1, w_ortho=1e-6)
    assert set(terms) == {"bce", "iou", "feature", "ortho", "total"}
    assert all(isinstance(v, float) for v in terms.values())
    assert terms["bce"] == pytest.approx(bce(maps, G).item())
    assert terms["iou"] == pytest.approx(2 / 3, rel=1e-6)
    assert terms["feature"] == pytest.approx(1.0) and terms["ortho"] == pytest.approx(math.sqrt(2), rel=1e-6)
    expected = 20 * terms["bce"] + 0.5 * terms["iou"] + 1.0 + 1e-6 * math.sqrt(2)
    assert total.item() == pytest.approx(expected, rel=1e-6) and terms["total"] == pytest.approx(expected, rel=1e-6)
    _, l1 = dis_sam_loss(maps, G, model=_toy(), ortho="l1")
    assert l1["ortho"] == pytest.approx(39.0)


def test_dis_sam_loss_skips_absent_terms():
    total, terms = dis_sam_loss([P], G, features=None, gt_features=None, model=_toy(), w_ortho=0)
    assert terms["feature"] == 0.0 and terms["ortho"] == 0.0
    assert total.item() == pytest.approx(20 * terms["bce"] + 0.5 * terms["iou"], rel=1e-6)


def test_loss_runs_fp32_with_autocast_off_inside_cpu_autocast(monkeypatch):
    """Under CUDA autocast, F.binary_cross_entropy on probabilities raises; the loss must switch autocast
    off itself. CPU autocast does not raise, so record the state where it matters instead."""
    seen = []
    real = F.binary_cross_entropy

    def spy(p, g, *args, **kwargs):
        seen.append((torch.is_autocast_enabled(), torch.is_autocast_enabled("cpu"), p.dtype, g.dtype))
        return real(p, g, *args, **kwargs)

    monkeypatch.setattr(losses.F, "binary_cross_entropy", spy)
    torch.manual_seed(0)
    model, encoder = build_refiner(5, 0.125), build_gt_encoder(0.125)
    x, gt = torch.randn(2, 5, 32, 32), (torch.rand(2, 1, 32, 32) > 0.5).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        maps, feats = model(x)
        with torch.no_grad():
            _, gfeats = encoder(gt)
        assert feats[0].dtype == torch.bfloat16  # the forward really ran in autocast
        assert maps[0].dtype == torch.float32  # ... and the side maps left it in fp32
        total, terms = dis_sam_loss(maps, gt, feats, gfeats, model=model)
    assert len(seen) == 6
    assert all(state == (False, False, torch.float32, torch.float32) for state in seen)
    assert total.dtype == torch.float32 and math.isfinite(terms["total"])
    total.backward()
    assert model.conv_in.weight.grad is not None and torch.isfinite(model.conv_in.weight.grad).all()
