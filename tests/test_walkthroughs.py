"""The drawings of one example that notebooks 00-03 show (dissam.repro.figures, last section): each draws
what it is given, and what it draws is what the step computed (the boxes are the components, the panels
are the input channels, the feature MSEs add up to the feature term, the marked maximum is the metric's
maxF, the counted points are HCE)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from matplotlib.patches import Rectangle

from dissam import losses
from dissam.data.enrichment import connected_components, enrich_mask
from dissam.data.prompts import box_from_mask
from dissam.data.transforms import make_input
from dissam.metrics import DISMetrics
from dissam.metrics.hce import hce, hce_regions
from dissam.model import build_gt_encoder, build_refiner
from dissam.repro import figures


def _gt_with_parts() -> np.ndarray:
    gt = np.zeros((64, 64), np.uint8)
    gt[2:20, 2:20] = 255  # 324 px
    gt[30:40, 40:60] = 255  # 200 px
    gt[50:60, 5:15] = 255  # 100 px
    gt[62, 62] = 255  # a speck: under 0.4% of the image
    return gt


def _pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    """(pred, gt) pairs: a blurred (soft) map, a shifted mask, a mask with a hole and a distant blob, and extremes."""
    gt = np.zeros((64, 80), np.uint8)
    cv2.circle(gt, (30, 30), 16, 255, -1)
    cv2.line(gt, (2, 55), (78, 58), 255, 2)
    holed = gt.copy()
    cv2.circle(holed, (30, 30), 7, 0, -1)
    cv2.rectangle(holed, (60, 4), (76, 20), 255, -1)
    return [(cv2.GaussianBlur(gt, (9, 9), 3), gt), (np.roll(gt, 7, axis=1), gt), (holed, gt),
            (np.zeros_like(gt), gt), (np.full_like(gt, 255), gt)]


def test_components_figure_boxes_every_component_largest_first():
    gt = _gt_with_parts()
    fig = figures.components_figure(np.dstack([gt] * 3), gt)
    boxes = [p for p in fig.axes[1].patches if isinstance(p, Rectangle)]
    components = connected_components(gt)
    assert len(boxes) == len(components) == 4
    drawn = [(int(b.get_x() + 0.5), int(b.get_y() + 0.5), int(b.get_x() + 0.5 + b.get_width()),
              int(b.get_y() + 0.5 + b.get_height())) for b in boxes]
    assert drawn == [box_from_mask(c) for c in components]  # numbered as connected_components orders them
    assert [t.get_text() for t in fig.axes[1].texts] == ["1", "2", "3", "4"]
    assert f"-> {len(enrich_mask(gt, 'filtered'))} training samples" in fig.get_suptitle()
    assert f"-> {len(enrich_mask(gt, 'components'))} training samples" in \
        figures.components_figure(np.dstack([gt] * 3), gt, "components").get_suptitle()


def test_grid_draws_the_boxes_it_is_given():
    gt = _gt_with_parts()
    fig = figures.grid([[(gt, "GT", (2, 2, 20, 20)), (gt, "no box")]])
    (box,) = [p for p in fig.axes[0].patches if isinstance(p, Rectangle)]
    assert (box.get_x() + 0.5, box.get_y() + 0.5, box.get_width(), box.get_height()) == (2, 2, 18, 18)
    assert not fig.axes[1].patches
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), gt)


def test_input_panels_are_the_inputs_channels():
    gt = _gt_with_parts()
    image = np.dstack([gt, 255 - gt, np.full_like(gt, 100)])
    box = box_from_mask(gt)
    x = make_input(image, gt, box, 32)
    fig = figures.input_panels(x)
    assert len(fig.axes) == 5
    for c, ax in enumerate(fig.axes):
        np.testing.assert_allclose(ax.images[0].get_array(), x[c] + (0.5 if c < 3 else 0.0), atol=1e-6)
    assert x[4].max() == 1.0 and x[3].max() > 0  # a box and a mask are there


def test_feature_pairs_show_the_pairs_the_feature_loss_compares():
    torch.manual_seed(0)
    refiner, encoder = build_refiner(width=0.125).eval(), build_gt_encoder(width=0.125).eval()
    x, gt = torch.rand(2, 5, 64, 64) - 0.5, (torch.rand(2, 1, 64, 64) > 0.5).float()
    with torch.no_grad():
        _, features = refiner(x)
        _, gt_features = encoder(gt)
    fig = figures.feature_pairs_figure(features, gt_features, sample=1)
    assert len(fig.axes) == 12
    shown = [float(ax.get_title().split("MSE ")[1]) for ax in fig.axes[:6]]
    np.testing.assert_allclose(sum(shown), float(losses.feature_mse(features, gt_features)), rtol=1e-2)
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), gt_features[0][1].mean(0).numpy(), rtol=1e-5)
    np.testing.assert_allclose(fig.axes[6].images[0].get_array(), features[0][1].mean(0).numpy(), rtol=1e-5)


def test_score_curves_mark_the_metrics_maxf_and_meane():
    for pred, gt in _pairs():
        result = DISMetrics().measure(pred, gt)
        ax_f, ax_e, _ = figures.score_curves_figure(result).axes
        f_line = next(line for line in ax_f.lines if line.get_label() == "F")
        marker = next(line for line in ax_f.lines if line.get_label().startswith("maxF"))
        assert len(f_line.get_ydata()) == 256
        assert f_line.get_ydata().max() == pytest.approx(result.values["maxF"], abs=1e-12)
        assert marker.get_ydata()[0] == pytest.approx(result.values["maxF"], abs=1e-12)
        assert np.mean(ax_e.lines[0].get_ydata()) == pytest.approx(result.values["meanE"], abs=1e-12)


def test_hce_figure_marks_every_point_hce_counts():
    counted = 0
    for pred, gt in _pairs():
        regions = hce_regions(pred, gt)
        fig = figures.hce_figure(np.dstack([gt] * 3), pred, gt, regions)
        assert sum(len(c.get_offsets()) for c in fig.axes[2].collections) == regions.hce == hce(pred, gt)
        assert fig.axes[2].get_title().startswith(f"HCE {regions.hce} = ")
        counted += regions.hce
    assert counted > 0


def test_training_curves_are_drawn_against_iterations():
    history = [{"iteration": i, "seconds": 0.5 * i, "total": 10.0 / i, "bce": 1.0 / i} for i in range(1, 41)]
    for h in history[9::10]:
        h.update(val_maxF=0.5 + h["iteration"] / 100, val_MAE=0.1 - h["iteration"] / 1000)
    fig = figures.training_curves(history, reference={"maxF": 0.8, "MAE": 0.05})
    ax_loss, ax_f, ax_mae = fig.axes
    assert all(ax.get_xlabel() == "iteration" for ax in fig.axes)
    assert list(ax_loss.lines[0].get_xdata()) == list(range(1, 41))
    refined = next(line for line in ax_f.lines if line.get_label() == "refined (val)")
    assert list(refined.get_xdata()) == [10, 20, 30, 40]
    assert list(refined.get_ydata()) == pytest.approx([0.6, 0.7, 0.8, 0.9])
    assert any(list(line.get_ydata()) == [0.05, 0.05] for line in ax_mae.lines)  # stage 1's MAE, dashed
