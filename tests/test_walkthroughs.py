"""The one-example walkthroughs of the notebooks (dissam.repro.figures, last section): each shows what the
step really computes (the panels are the sample's channels, the boxes are the components, the marked
maximum is the metric's maxF, the counted points are HCE)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from dissam import losses
from dissam.data.enrichment import connected_components, enrich_mask
from dissam.data.folders import list_pairs
from dissam.data.prompts import box_from_mask
from dissam.data.splits import TRAIN_SPLIT, VAL_SPLIT
from dissam.data.transforms import make_input
from dissam.metrics import image_metrics
from dissam.metrics.hce import hce
from dissam.model import build_gt_encoder, build_refiner
from dissam.model.checkpoint import save_gt_encoder
from dissam.repro import figures, runs, stages
from dissam.repro.config import get_profile
from matplotlib.patches import Rectangle


@pytest.fixture(scope="module")
def profile(tiny_data, tmp_path_factory):
    """The tiny profile on the session's data, its run folder in a temporary folder: the training split's
    stage-1 cache and an (untrained) GT-encoder checkpoint exist."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DISSAM_RUNS", str(tmp_path_factory.mktemp("runs")))
        p = get_profile("tiny")
        p.data.root = tiny_data
        torch.manual_seed(0)
        save_gt_encoder(build_gt_encoder(width=p.train.width), p.gt_encoder_checkpoint)
        yield p


@pytest.fixture(scope="module")
def manifests(profile):
    return stages.cache_stage1(profile, [TRAIN_SPLIT, VAL_SPLIT], progress=False)


def _gt_with_parts() -> np.ndarray:
    gt = np.zeros((64, 64), np.uint8)
    gt[2:20, 2:20] = 255  # 324 px
    gt[30:40, 40:60] = 255  # 200 px
    gt[50:60, 5:15] = 255  # 100 px
    gt[62, 62] = 255  # a speck: under 0.4% of the image
    return gt


def _pairs(profile):
    """(pred, gt) pairs of the tiny validation split: stage-1 masks, a blurred soft map, and extremes."""
    import cv2

    out = []
    preds = runs.predictions(profile, runs.STAGE1, VAL_SPLIT)
    for pair in list_pairs(stages.split_dir(profile, VAL_SPLIT)):
        _, gt = pair.load()
        out += [(preds[pair.stem], gt), (cv2.GaussianBlur(gt, (9, 9), 3), gt), (np.roll(gt, 7, axis=1), gt)]
    gt = out[0][1]
    return out + [(np.zeros_like(gt), gt), (np.full_like(gt, 255), gt)]


def test_score_curves_mark_the_metrics_maxf_and_meane(profile, manifests):
    for pred, gt in _pairs(profile)[:6]:
        values = image_metrics(pred, gt)
        ax_f, ax_e, _ = figures.score_curves_figure(pred, gt).axes
        f_line = next(line for line in ax_f.lines if line.get_label() == "F")
        marker = next(line for line in ax_f.lines if line.get_label().startswith("maxF"))
        assert len(f_line.get_ydata()) == 256
        assert f_line.get_ydata().max() == pytest.approx(values["maxF"], abs=1e-12)
        assert marker.get_ydata()[0] == pytest.approx(values["maxF"], abs=1e-12)
        assert np.mean(ax_e.lines[0].get_ydata()) == pytest.approx(values["meanE"], abs=1e-12)


def test_hce_regions_count_what_hce_counts(profile, manifests):
    sides = np.zeros(2, int)
    for pred, gt in _pairs(profile):
        regions = figures.hce_regions(pred, gt)
        assert regions.hce == hce(pred, gt)
        sides += len(regions.fp_points), len(regions.fn_points)
        p, g = pred > 128, gt > 128
        assert not (regions.fp & ~(p & ~g)).any()  # relaxed FP lies in the false positives
        for points, region in ((regions.fp_points, regions.fp), (regions.fn_points, regions.fn)):
            assert region[points[:, 1], points[:, 0]].all()  # every counted point is on its region
        fig = figures.hce_figure(np.dstack([gt] * 3), pred, gt, regions)
        assert sum(len(c.get_offsets()) for c in fig.axes[2].collections) == regions.hce
    assert (sides > 0).all()  # both sides were counted somewhere: the check is not vacuous


def test_evaluation_walkthrough_on_one_image(profile, manifests):
    values, curves, hce_fig = figures.evaluation_walkthrough(profile, method=runs.STAGE1)
    stem = list_pairs(stages.split_dir(profile, VAL_SPLIT))[0].stem
    row = values.iloc[0]
    assert stem in values.index[0] and set(row.index) >= {"maxF", "meanE", "HCE"}
    f_line = next(line for line in curves.axes[0].lines if line.get_label() == "F")
    assert f_line.get_ydata().max() == pytest.approx(row["maxF"])
    assert f"HCE {int(row['HCE'])} " in hce_fig.axes[2].get_title()


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
